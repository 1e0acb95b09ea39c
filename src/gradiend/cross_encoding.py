"""Cross-encoding over a shared pool of rows: how each GRADIEND encodes every transition and class of a study.

The pool holds the test rows of every data set the study's runs read (each data set once), capped per transition,
plus identity rows (alternative = factual) per class. Every GRADIEND encodes the whole pool with its own source
kind, so matrices over different data sets line up. From that long table (:data:`POOL_COLUMNS` + ``gradiend``,
``encoding``) three matrices follow, all *anchor-aligned*: each GRADIEND is oriented so that its own positive
group reads positive (its sign is measured on its own task's rows, not assumed from training):

* GRADIEND × transition — mean encoding of the rows of each transition ``A->B`` (identity rows ``A->A``);
* GRADIEND × class — mean encoding of the rows whose *source token* is of the class (identity rows excluded,
  since their ``diff`` gradient is zero);
* GRADIEND × GRADIEND — mean encoding, by the row's GRADIEND, of the column GRADIEND's trained rows whose source
  token is in the column's positive group (the diagonal is each GRADIEND on its own positive rows).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gradiend.errors import GradiendError
from gradiend.evaluate.encoder import cap_rows, source_columns
from gradiend.tasks import Task, identity_rows, transition_name

POOL_COLUMNS = ("dataset", "masked", "factual", "factual_class", "alternative", "alternative_class", "transition",
                "split", "sentence_id")


def pool_rows(pairs_by_dataset: Mapping[str, pd.DataFrame], max_rows: int | None, split: str = "test",
              seed: int = 0, class_order: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """The shared pool: each data set's ``split`` rows, capped per transition, with identity rows per class.

    Rows are ordered by data set, then factual and alternative class in ``class_order`` (a data set's feature
    order; default: order of appearance), so the matrices' columns come out in that order.
    """
    parts = []
    for dataset, pairs in pairs_by_dataset.items():
        rows = pairs[pairs["split"] == split]
        if rows.empty:
            raise GradiendError(f"data set {dataset!r} has no {split!r} rows to cross-encode")
        order = list((class_order or {}).get(dataset) or dict.fromkeys(rows["factual_class"].astype(str)))
        identity = [identity_rows(rows, c) for c in order]
        rows = pd.concat([rows, *identity], ignore_index=True)
        rows = rows.assign(transition=[transition_name(f, a) for f, a in
                                       zip(rows["factual_class"], rows["alternative_class"], strict=True)])
        rank = {c: i for i, c in enumerate(order)}
        rows = rows.assign(_f=rows["factual_class"].map(rank), _a=rows["alternative_class"].map(rank))
        rows = rows.sort_values(["_f", "_a"], kind="stable").drop(columns=["_f", "_a"]).reset_index(drop=True)
        parts.append(cap_rows(rows, max_rows, seed, by="transition").assign(dataset=dataset))
    return pd.concat(parts, ignore_index=True)[list(POOL_COLUMNS)]


def encode_pool(pool: pd.DataFrame, gradiends: Mapping[str, str],
                encode: Callable[[str, pd.DataFrame], np.ndarray]) -> pd.DataFrame:
    """The long table: every GRADIEND (name → its source kind) on every pool row, with the row's source class."""
    parts = []
    for name, source in tqdm(gradiends.items(), desc="cross-encoding", unit="GRADIEND", total=len(gradiends)):
        _, class_column = source_columns(source)
        parts.append(pool.assign(gradiend=name, encoding=encode(name, pool),
                                 source_class=pool[class_column].to_numpy()))
    return pd.concat(parts, ignore_index=True)


def orientation(long: pd.DataFrame, tasks: Mapping[str, Task]) -> dict[str, float]:
    """+1 or −1 per GRADIEND: the sign that makes its positive group read above its negative group on its rows."""
    signs = {}
    for name, task in tasks.items():
        own = _task_rows(long[long["gradiend"] == name], task)
        pos = own.loc[own["source_class"].map(task.label_of) > 0, "encoding"]
        neg = own.loc[own["source_class"].map(task.label_of) < 0, "encoding"]
        if pos.empty or neg.empty:
            raise GradiendError(f"the pool has no rows of both groups of {name!r} ({task.describe_groups()}); "
                                "cross-encode on a split where its classes have rows")
        signs[name] = 1.0 if pos.mean() >= neg.mean() else -1.0
    return signs


def aligned(long: pd.DataFrame, tasks: Mapping[str, Task]) -> pd.DataFrame:
    """The long table with each GRADIEND's encodings multiplied by its orientation sign."""
    signs = orientation(long, tasks)
    return long.assign(encoding=long["encoding"] * long["gradiend"].map(signs))


def _task_rows(rows: pd.DataFrame, task: Task) -> pd.DataFrame:
    trained = {transition_name(f, a) for f, a in task.transitions}
    return rows[rows["transition"].isin(trained)]


def _matrix(long: pd.DataFrame, column: str, order: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    table = long.pivot_table(index="gradiend", columns=column, values="encoding", aggfunc="mean")
    return table.reindex(index=list(order), columns=list(columns))


def transition_matrix(long: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """GRADIEND × transition: mean (aligned) encoding of each transition's rows, identity rows included."""
    return _matrix(long, "transition", order, list(dict.fromkeys(long["transition"])))


def class_matrix(long: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """GRADIEND × class: mean (aligned) encoding of the rows whose source token is of the class."""
    rows = long[long["factual_class"] != long["alternative_class"]]
    return _matrix(rows, "source_class", order, list(dict.fromkeys(long["factual_class"])))


def gradiend_matrix(long: pd.DataFrame, tasks: Mapping[str, Task]) -> pd.DataFrame:
    """GRADIEND × GRADIEND: row A's mean (aligned) encoding of column B's positive-group rows."""
    names = list(tasks)
    m = np.full((len(names), len(names)), np.nan)
    for j, b in enumerate(names):
        rows = _task_rows(long, tasks[b])
        rows = rows[rows["source_class"].map(tasks[b].label_of) > 0]
        means = rows.groupby("gradiend")["encoding"].mean()
        m[:, j] = [means.get(a, np.nan) for a in names]
    return pd.DataFrame(m, index=names, columns=names)


def column_groups(long: pd.DataFrame, column: str) -> dict[str, list[str]]:
    """Columns of a matrix grouped by data set, for the heatmap's brackets (``{dataset: [columns...]}``)."""
    return {str(ds): list(dict.fromkeys(g[column])) for ds, g in long.groupby("dataset", sort=False)}
