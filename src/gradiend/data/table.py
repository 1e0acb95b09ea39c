"""Bring your own table: import prepared masked rows as a feature data set (instead of mining raw text).

Schema (one row per masked target occurrence; column names as in our pairs table):

=====================  ========  ===========================================================================
column                 needed    meaning
=====================  ========  ===========================================================================
``masked``             yes       the sentence with exactly one ``[MASK]`` where the factual target stood
``factual``            yes       the masked word as it stood in the text (``Der``)
``factual_class``      yes       its class id (``masc_nom``)
``alternative``        no        a word of another class for the same slot (default: made per other class)
``alternative_class``  no        its class id (needed with ``alternative``)
``split``              no        ``train`` / ``validation`` / ``test`` (default: seeded split by document)
``doc_id``             no        document id (splits never cut a document; default: one per sentence)
``sentence_id``        no        integer id (default: one per distinct sentence)
=====================  ========  ===========================================================================

The published layouts are read too: ``label``/``label_class`` stand for ``factual``/``factual_class``, and a
Hugging Face dataset with one config per class (columns ``masked``, ``split``, ``label``) gives each config's rows
that class. Sources: ``.parquet``, ``.csv``, ``.jsonl`` files, a directory written by ``datasets``'
``save_to_disk``, or a Hugging Face dataset id (extra ``data``). Every row is validated on read; the first bad row
is named with its column.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gradiend._optional import require
from gradiend.constants import FORMAT_VERSION, MASK
from gradiend.data.config import SPLITS, DataConfig
from gradiend.data.corpus import TextSource, load_documents
from gradiend.data.features import Feature, FeatureClass, normalize_target, word_pattern
from gradiend.data.pairs import PAIR_COLUMNS, apply_case, pairs_frame
from gradiend.data.sentences import iter_sentences
from gradiend.data.splits import quotas
from gradiend.data.store import FeatureData, count_table, counts_dict
from gradiend.errors import GradiendError

log = logging.getLogger(__name__)

REQUIRED = ("masked", "factual", "factual_class")
ALIASES = {"label": "factual", "label_class": "factual_class"}
_READERS = {".parquet": pd.read_parquet, ".csv": pd.read_csv, ".jsonl": lambda p: pd.read_json(p, lines=True)}
STREAM_TABLE = 5


def read_table(source: str | os.PathLike[str] | pd.DataFrame, *, hf_config: str | None = None,
               classes: Sequence[str] = ()) -> pd.DataFrame:
    """The raw table of ``source`` with our column names (aliases of the published layouts renamed)."""
    frame = source.copy() if isinstance(source, pd.DataFrame) else _read_source(source, hf_config, classes)
    frame = frame.rename(columns={k: v for k, v in ALIASES.items() if k in frame.columns and v not in frame.columns})
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise GradiendError(f"table {_name(source)} lacks column(s) {missing}; it needs {list(REQUIRED)} (or the "
                            f"published 'label'/'label_class'); columns found: {[str(c) for c in frame.columns]}")
    return frame.reset_index(drop=True)


def _name(source: Any) -> str:
    return "(DataFrame)" if isinstance(source, pd.DataFrame) else repr(str(source))


def _read_source(source: str | os.PathLike[str], hf_config: str | None, classes: Sequence[str]) -> pd.DataFrame:
    path = Path(source)
    if path.is_file():
        reader = _READERS.get(path.suffix.lower())
        if reader is None:
            raise GradiendError(f"table {path} has an unsupported type; use {', '.join(_READERS)}, a saved "
                                "dataset directory or a Hugging Face dataset id")
        try:
            return reader(path)
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            raise GradiendError(f"table {path} could not be read as {path.suffix}: {exc}") from exc
    if path.suffix.lower() in _READERS:
        raise GradiendError(f"table file {str(source)!r} does not exist")
    datasets = require("datasets", "data", f"the table {str(source)!r}")
    if path.is_dir():
        return _frame_of(datasets.load_from_disk(str(path)))
    return _from_hub(datasets, str(source), hf_config, classes)


def _frame_of(ds: Any) -> pd.DataFrame:
    """A Dataset, or a DatasetDict whose keys are splits (they fill the ``split`` column when it is missing)."""
    if hasattr(ds, "to_pandas"):
        return ds.to_pandas()
    parts = []
    for key, part in ds.items():
        frame = part.to_pandas()
        if "split" not in frame.columns and key in SPLITS:
            frame["split"] = key
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def _from_hub(datasets: Any, name: str, hf_config: str | None, classes: Sequence[str]) -> pd.DataFrame:
    """One config, or (published per-class layout) every config named in ``classes`` / all of them."""
    if hf_config is not None:
        return _frame_of(datasets.load_dataset(name, hf_config))
    configs = list(classes) or datasets.get_dataset_config_names(name)
    if len(configs) <= 1:
        return _frame_of(datasets.load_dataset(name, configs[0] if configs else None))
    parts = []
    for config in configs:  # one config per class: its rows are that class's occurrences
        frame = _frame_of(datasets.load_dataset(name, config))
        parts.append(frame.assign(factual_class=config) if "factual_class" not in frame.columns else frame)
    return pd.concat(parts, ignore_index=True)


# --- validation -----------------------------------------------------------------------------------------------


def validate_table(frame: pd.DataFrame, where: str = "table") -> pd.DataFrame:
    """Check every row (text cells, exactly one ``[MASK]``, known splits, alternative with its class)."""
    has_alt = "alternative" in frame.columns or "alternative_class" in frame.columns
    if has_alt and not {"alternative", "alternative_class"} <= set(frame.columns):
        raise GradiendError(f"{where}: 'alternative' and 'alternative_class' come together; found only one of them")
    if frame.empty:
        raise GradiendError(f"{where} has no rows; it needs one row per masked occurrence")
    text_cols = [*REQUIRED, *(("alternative", "alternative_class") if has_alt else ())]
    for column in text_cols:
        _check_text_column(frame, column, where)
    counts = frame["masked"].str.count(re.escape(MASK))
    bad = np.flatnonzero(counts.to_numpy() != 1)
    if bad.size:
        i = int(bad[0])
        raise GradiendError(f"{where}: row {i + 1}, column 'masked' has {int(counts.iloc[i])} {MASK} markers, needs "
                            f"exactly one: {str(frame['masked'].iloc[i])[:80]!r}")
    if "split" in frame.columns:
        _check_values(frame, "split", SPLITS, where)
    if "sentence_id" in frame.columns and not pd.api.types.is_integer_dtype(frame["sentence_id"]):
        raise GradiendError(f"{where}: column 'sentence_id' must hold integers, found {frame['sentence_id'].dtype}")
    return frame


def _check_text_column(frame: pd.DataFrame, column: str, where: str) -> None:
    values = frame[column]
    ok = values.map(lambda v: isinstance(v, str) and bool(v.strip())).to_numpy(bool)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise GradiendError(f"{where}: row {i + 1}, column {column!r} must be non-empty text, got {values.iloc[i]!r}")


def _check_values(frame: pd.DataFrame, column: str, allowed: Sequence[str], where: str) -> None:
    ok = frame[column].isin(allowed).to_numpy(bool)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise GradiendError(f"{where}: row {i + 1}, column {column!r} is {frame[column].iloc[i]!r}; expected one of "
                            f"{list(allowed)}")


# --- from a validated table to a feature data set -------------------------------------------------------------


def import_table(
    source: str | os.PathLike[str] | pd.DataFrame,
    config: DataConfig | None = None,
    *,
    classes: Mapping[str, Sequence[str]] | None = None,
    neutral: TextSource | None = None,
    hf_config: str | None = None,
) -> FeatureData:
    """A feature data set from a prepared table (see the module docstring for the schema).

    ``classes`` optionally restricts and orders the classes (its word lists, when given, are the class targets,
    e.g. for ``alternatives = "paradigm"``); ``neutral`` is the text for neutral rows (default: the table's own
    sentences with the target restored, since the LMS and neutral encodings never mask a class word).
    """
    config = config or DataConfig()
    wanted = list(classes or {})
    frame = validate_table(read_table(source, hf_config=hf_config, classes=wanted), f"table {_name(source)}")
    frame = _restrict_classes(frame, wanted)
    feature = _feature(frame, classes or {})
    frame = _with_ids_and_splits(frame, config)
    frame = _cap(frame, config)
    pairs = _pairs(frame, feature, config)
    neutral_table = _neutral(frame, neutral, feature, config)
    meta = _meta(source, frame, pairs, neutral_table, feature, config)
    log.info("imported table %s: %d pairs rows over %d classes, %d neutral rows", _name(source), len(pairs),
             len(feature.classes), len(neutral_table))
    return FeatureData(pairs, neutral_table, meta, feature)


def _restrict_classes(frame: pd.DataFrame, wanted: list[str]) -> pd.DataFrame:
    present = list(dict.fromkeys(frame["factual_class"]))
    if not wanted:
        if len(present) < 2:
            raise GradiendError(f"the table has {len(present)} class(es) {present}; a feature needs at least two")
        return frame
    unknown = [c for c in wanted if c not in present]
    if unknown:
        raise GradiendError(f"class(es) {unknown} have no rows in the table; its classes: {', '.join(present)}")
    keep = frame["factual_class"].isin(wanted)
    if "alternative_class" in frame.columns:
        keep &= frame["alternative_class"].isin(wanted)
    return frame[keep].reset_index(drop=True)


def _feature(frame: pd.DataFrame, listed: Mapping[str, Sequence[str]]) -> Feature:
    order = list(listed) or list(dict.fromkeys(frame["factual_class"]))
    classes = []
    for cid in order:
        words = listed.get(cid) or _words(frame, cid)
        classes.append(FeatureClass(cid, tuple(words)))
    return Feature(tuple(classes), imported=True)


def _words(frame: pd.DataFrame, cid: str) -> list[str]:
    """Distinct target words of a class (case-folded; the lower-case form, as listed targets are)."""
    words = frame.loc[frame["factual_class"] == cid, "factual"].map(lambda w: normalize_target(w).casefold())
    if "alternative" in frame.columns:
        alt = frame.loc[frame["alternative_class"] == cid, "alternative"].map(lambda w: normalize_target(w).casefold())
        words = pd.concat([words, alt])
    return sorted(set(words))


def _with_ids_and_splits(frame: pd.DataFrame, config: DataConfig) -> pd.DataFrame:
    frame = frame.copy()
    restored = [m.replace(MASK, f, 1) for m, f in zip(frame["masked"], frame["factual"], strict=True)]
    if "sentence_id" not in frame.columns:
        frame["sentence_id"] = pd.Series(pd.factorize(pd.Series(restored))[0], dtype="int64")
    if "doc_id" not in frame.columns:
        frame["doc_id"] = frame["sentence_id"].astype(str)
    frame["doc_id"] = frame["doc_id"].astype(str)
    if "split" not in frame.columns:
        frame["split"] = _split_documents(frame["doc_id"], config, frame["factual_class"])
    return frame


def _split_documents(doc_ids: pd.Series, config: DataConfig, classes: pd.Series | None = None) -> list[str]:
    """Seeded split of the documents in the configured ratios (a document never spans two splits).

    With ``classes`` the split is stratified: the documents of the rarest class are divided first, then those of
    the next, so every class gets its share of every split.
    """
    rng = np.random.default_rng([config.seed, STREAM_TABLE])
    strata = [list(dict.fromkeys(doc_ids))] if classes is None else _strata(doc_ids, classes)
    split_of: dict[str, str] = {}
    for docs in strata:
        docs = [d for d in docs if d not in split_of]
        bounds = np.cumsum(quotas(len(docs), config.split_ratios))
        for rank, j in enumerate(rng.permutation(len(docs))):
            split_of[docs[j]] = SPLITS[int(np.searchsorted(bounds, rank, side="right"))]
    return [split_of[d] for d in doc_ids]


def _strata(doc_ids: pd.Series, classes: pd.Series) -> list[list[str]]:
    """The documents of each class, rarest class first."""
    by_class = pd.DataFrame({"doc": doc_ids.to_numpy(), "cls": classes.to_numpy()}).drop_duplicates()
    sizes = by_class["cls"].value_counts()
    order = sorted(sizes.index, key=lambda c: (sizes[c], str(c)))
    return [list(by_class.loc[by_class["cls"] == c, "doc"]) for c in order]


def _cap(frame: pd.DataFrame, config: DataConfig) -> pd.DataFrame:
    """At most ``max_rows_per_class`` occurrences per class (shared over the splits by ratio), seeded."""
    if config.max_rows_per_class is None:
        return frame
    caps = dict(zip(SPLITS, quotas(config.max_rows_per_class, config.split_ratios), strict=True))
    occurrence = frame[["masked", "factual", "factual_class", "split"]].drop_duplicates()
    kept = [g.sample(n=min(len(g), caps[split]), random_state=config.seed)
            for (_, split), g in occurrence.groupby(["factual_class", "split"], sort=True)]
    keys = pd.concat(kept)[["masked", "factual"]] if kept else occurrence.iloc[:0][["masked", "factual"]]
    return frame.merge(keys, on=["masked", "factual"], how="inner", sort=False)


def _pairs(frame: pd.DataFrame, feature: Feature, config: DataConfig) -> pd.DataFrame:
    if "alternative" in frame.columns:
        return pairs_frame({c: frame[c].tolist() for c in PAIR_COLUMNS})
    rng = np.random.default_rng([config.seed, STREAM_TABLE, 1])
    cols: dict[str, list[object]] = {c: [] for c in PAIR_COLUMNS}
    for row in frame.itertuples(index=False):
        own = feature.get(row.factual_class)
        for other in feature.classes:
            if other.id != own.id:
                for alt in _alternatives(row.factual, own, other, config, rng):
                    values = (row.masked, row.factual, own.id, alt, other.id, row.split, row.doc_id, row.sentence_id)
                    for c, v in zip(PAIR_COLUMNS, values, strict=True):
                        cols[c].append(v)
    return pairs_frame(cols)


def _alternatives(factual: str, own: FeatureClass, other: FeatureClass, config: DataConfig,
                  rng: np.random.Generator) -> list[str]:
    key = normalize_target(factual).casefold()
    listed = next((t for t in own.targets if t.casefold() == key), key)
    if config.alternatives == "paradigm":
        if listed not in own.targets or len(own.targets) != len(other.targets):
            raise GradiendError(f'alternatives = "paradigm": class {own.id!r} lists {list(own.targets)} and '
                                f"{other.id!r} lists {list(other.targets)}; list equally many words, {factual!r} among "
                                "them, in [data.classes]")
        chosen = [other.targets[own.targets.index(listed)]]
    elif config.alternatives == "all":
        chosen = list(other.targets)
    else:
        chosen = [other.targets[int(rng.integers(len(other.targets)))]]
    return [apply_case(factual, listed, alt) for alt in chosen]


def _neutral(frame: pd.DataFrame, neutral: TextSource | None, feature: Feature, config: DataConfig) -> pd.DataFrame:
    if neutral is None:
        restored = frame.drop_duplicates("sentence_id")
        texts = [m.replace(MASK, f, 1) for m, f in zip(restored["masked"], restored["factual"], strict=True)]
        table = pd.DataFrame({"text": texts, "split": restored["split"].tolist(),
                              "doc_id": restored["doc_id"].tolist(), "sentence_id": restored["sentence_id"].tolist()})
        log.info("no neutral text given: the table's own sentences serve as neutral text (class words are never "
                 "masked there)")
    else:
        table = _neutral_from_text(neutral, feature, config)
    if config.neutral_size is not None and len(table) > config.neutral_size:
        table = table.sample(n=config.neutral_size, random_state=config.seed).sort_index()
    return table.astype({"text": object, "split": object, "doc_id": object, "sentence_id": "int64"}).reset_index(drop=True)


def _neutral_from_text(neutral: TextSource, feature: Feature, config: DataConfig) -> pd.DataFrame:
    docs = load_documents(neutral, seed=config.seed)
    sentences = iter_sentences(docs, splitter=config.sentence_splitter, min_chars=config.min_chars,
                               max_chars=config.max_chars)
    pattern = word_pattern([t for c in feature.classes for t in c.targets] + list(config.excluded_words))
    kept = [s for s in sentences if pattern.search(s.text) is None]
    doc_ids = [s.doc_id for s in kept]
    return pd.DataFrame({"text": [s.text for s in kept], "split": _split_documents(pd.Series(doc_ids), config),
                         "doc_id": doc_ids, "sentence_id": [s.sentence_id for s in kept]})


def _meta(source: Any, frame: pd.DataFrame, pairs: pd.DataFrame, neutral: pd.DataFrame, feature: Feature,
          config: DataConfig) -> dict[str, Any]:
    from gradiend import __version__

    params = {"feature": feature.to_dict(), "config": config.to_dict()}
    digest = hashlib.sha256(pd.util.hash_pandas_object(pairs, index=False).to_numpy().tobytes())
    digest.update(pd.util.hash_pandas_object(neutral, index=False).to_numpy().tobytes())
    digest.update(repr(sorted(params.items())).encode())
    return {
        "format_version": FORMAT_VERSION, "gradiend_version": __version__, "fingerprint": digest.hexdigest(),
        **params, "source": {"table": "(DataFrame)" if isinstance(source, pd.DataFrame) else str(source)},
        "splits": list(SPLITS),
        "counts": counts_dict(count_table(pairs, neutral, feature.class_ids)),
        "corpus": {"table_rows": int(len(frame)), "occurrences_kept": int(len(frame.drop_duplicates(["masked", "factual"])))},
        "notes": "imported from a prepared table (gradiend.data.table)",
    }
