"""Decoder evaluation: rewrites θ + α·dec(h) and the strongest one that keeps the LMS.

Cells: the base model plus (h, α) with h ∈ {strengthen_h(C) for each class C} (for two classes that is
h and −h, so each class's *weakening* direction is the other's strengthening one) and α from
``EvalConfig.alphas`` (default 0.001 … 100 in 1-2-5 steps). ``[eval] search`` decides which cells are evaluated:
``adaptive`` (default; :mod:`gradiend.evaluate.search`) or the full ``grid``. A cell is evaluated inside
:func:`gradiend.rewrite.edited` (in place, restored bit-identically afterwards), with batched forward passes,
and only what the search asks for (:mod:`gradiend.evaluate.cells`):

* ``p_<C>_other`` — mean P(C's words) on the rows whose factual class is not C (strengthening C should raise it);
* ``p_<C>_own`` — mean P(C's words) on C's own rows (weakening C should lower it);
* ``lms`` — :func:`gradiend.evaluate.lm_metrics.lms` on neutral text (plus ``nll``/``perplexity``, and
  ``accuracy`` for masked LMs), ``n_lms_texts`` texts scored, ``lms_ratio`` paired against the base model.

The resulting table (``metrics/decoder_grid.csv``, evaluated cells only) is the single source for selection,
plots and the report; selection, intervals and "useful" are in :mod:`gradiend.evaluate.selection`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gradiend.constants import DECODER_GRID_FILE, DECODER_METRICS_FILE
from gradiend.errors import GradiendError
from gradiend.evaluate.cells import BASE, CellStore
from gradiend.evaluate.config import DEFAULT_ALPHAS, EvalConfig
from gradiend.evaluate.encoder import ALL_SPLITS, cap_rows, task_of
from gradiend.evaluate.lm_metrics import (
    ClassWords,
    LMSResult,
    class_probabilities,
    lms,
    lms_definition,
    prepare_lms_texts,
)
from gradiend.evaluate.search import adaptive_search, grid_search, sparse_alphas
from gradiend.evaluate.selection import (
    attach_intervals,
    degenerate_base_lms,
    mark_degenerate,
    select_rewrites,
)
from gradiend.io import write_json, write_with
from gradiend.lm.load import LoadedModel
from gradiend.tasks import Task

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_ALPHAS", "DecoderResult", "EvalConfig", "evaluate_decoder", "select_rewrites", "write_decoder_results",
]


@dataclass(frozen=True)
class DecoderResult:
    """The grid table (one row per cell) and the ``decoder.json`` summary derived from it."""

    grid: pd.DataFrame
    summary: dict[str, Any]


# --- the grid ---------------------------------------------------------------------------------------


def class_targets(pairs: pd.DataFrame, classes: Sequence[str]) -> dict[str, list[str]]:
    """Target words per class as used in the pairs table (factual and alternative), lower-cased and sorted."""
    out = {}
    for cid in classes:
        words = set(pairs.loc[pairs["factual_class"] == cid, "factual"].astype(str).str.lower())
        words |= set(pairs.loc[pairs["alternative_class"] == cid, "alternative"].astype(str).str.lower())
        if not words:
            raise GradiendError(f"class {cid!r} has no target words in the pairs table")
        out[cid] = sorted(words)
    return out


def cell_id(h: float, alpha: float) -> str:
    return "base" if alpha == 0 else f"h={h:+g},alpha={alpha:g}"


def _lms_fields(result: LMSResult) -> dict[str, float]:
    out = {"lms": result.lms}
    for key in ("nll", "perplexity", "accuracy"):
        value = getattr(result, key)
        if value is not None:
            out[key] = value
    return out


@dataclass(frozen=True)
class _GridInputs:
    rows: pd.DataFrame  # capped pair rows of the split, of the task's classes
    words: ClassWords  # the task's two groups first, then every other class of the data set
    texts: list[str]
    exclude: list[str]
    factual: np.ndarray  # each row's group id (the key of its own class in the selection)


def probability_columns(probs: np.ndarray | None, class_ids: Sequence[str], factual: np.ndarray) -> dict[str, float]:
    """``p_<G>_other`` / ``p_<G>_own`` for the task's groups (rows of the other group / its own rows) and
    ``p_<C>_all`` (all evaluated rows) for every other class of the data set; NaN where not measured."""
    groups = set(factual.tolist())
    out: dict[str, float] = {}
    for k, cid in enumerate(class_ids):
        if cid not in groups:
            out[f"p_{cid}_all"] = np.nan if probs is None else float(probs[:, k].mean())
            continue
        out[f"p_{cid}_other"] = np.nan if probs is None else float(probs[factual != cid, k].mean())
        out[f"p_{cid}_own"] = np.nan if probs is None else float(probs[factual == cid, k].mean())
    return out


def grid_table(store: CellStore, factual: np.ndarray) -> pd.DataFrame:
    """One row per evaluated cell (base first, then h descending × α ascending); unmeasured values are NaN.

    ``lms`` is the LMS on the ``n_lms_texts`` texts the cell was scored on and ``lms_ratio`` the paired ratio
    against the base model on those same texts (for the full grid: all texts, so ``lms / base lms``). ``factual``
    holds each row's group id (:func:`probability_columns`).
    """
    cells = sorted(set(store.probs) | set(store.scores), key=lambda c: (c != BASE, -c[0], c[1]))
    records = []
    for h, alpha in cells:
        rec: dict[str, Any] = {"cell": cell_id(h, alpha), "h": h, "alpha": alpha, "is_base": alpha == 0}
        scores = store.scores.get((h, alpha))
        if scores is not None:
            rec.update(_lms_fields(scores.result(store.texts.family)), n_lms_texts=len(scores),
                       lms_ratio=store.lms_ratio((h, alpha)))
        rec.update(probability_columns(store.probs.get((h, alpha)), store.words.class_ids, factual))
        records.append(rec)
    return pd.DataFrame(records)


def prepare_inputs(
    lm: LoadedModel,
    pairs: pd.DataFrame,
    neutral_texts: Sequence[str],
    task: Task | Sequence[str],
    config: EvalConfig,
    targets: Mapping[str, Sequence[str]] | None = None,
) -> _GridInputs:
    """Capped rows of the task's classes in the split (per factual class; ``split = "all"``: every split), the
    words of the task's groups and of every other class of the data set (with case variants), LMS texts.

    ``task`` may be two class ids (a pair). ``targets`` overrides the words per class or group.
    """
    task = task if isinstance(task, Task) else Task.pair(*task)
    rows = pairs if config.split == ALL_SPLITS else pairs[pairs["split"] == config.split]
    rows = rows[rows["factual_class"].isin(task.classes)]
    rows = cap_rows(rows, config.max_rows, config.seed, by="factual_class").reset_index(drop=True)
    missing = [c for c in task.classes if not (rows["factual_class"] == c).any()]
    if missing:
        raise GradiendError(f"split {config.split!r} has no pair rows of class(es) {missing}")
    words = _class_words(pairs, task, targets)
    texts = [t for t in neutral_texts if isinstance(t, str) and t.strip()][: config.max_lms_texts]
    if not texts:
        raise GradiendError("the decoder evaluation needs neutral texts for the LMS")
    factual = rows["factual_class"].map(task.group_of).to_numpy()
    return _GridInputs(rows, ClassWords.build(lm.tokenizer, words), texts,
                       sorted({w for ws in words.values() for w in ws}), factual)


def _class_words(pairs: pd.DataFrame, task: Task, targets: Mapping[str, Sequence[str]] | None) -> dict[str, list[str]]:
    """Words of the task's two groups (the union of their classes' words), then of every other class."""
    others = [c for c in dict.fromkeys(pairs["factual_class"].astype(str)) if c not in task.group_ids]
    if targets is not None:
        return {k: list(v) for k, v in targets.items()}
    per_class = class_targets(pairs, list(dict.fromkeys([*task.classes, *others])))
    words = {g: sorted({w for c in task.groups[g] for w in per_class[c]}) for g in task.group_ids}
    return {**words, **{c: per_class[c] for c in others}}


def measure(lm: LoadedModel, inputs: _GridInputs, objective: Any, config: EvalConfig) -> dict[str, float]:
    """P(class words) on other/own rows and the LMS (all texts) of the model as it is now (e.g. a saved rewrite)."""
    probs = class_probabilities(lm, inputs.rows, inputs.words, objective=objective, batch_size=config.batch_size)
    out = probability_columns(probs[list(inputs.words.class_ids)].to_numpy(), inputs.words.class_ids, inputs.factual)
    score = lms(lm, inputs.texts, exclude_words=inputs.exclude, seed=config.seed, batch_size=config.batch_size)
    return {**_lms_fields(score), **out}


# --- the stage --------------------------------------------------------------------------------------


def decoder_summary(
    grid: pd.DataFrame, selected: Mapping[str, Any], config: EvalConfig, lms_definition: str,
    n_rows: Mapping[str, int], n_texts: int, extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``metrics/decoder.json`` object (``extra``: ``lms_check``, ``search``)."""
    base = grid[grid["is_base"].astype(bool)].iloc[0]
    measured = [c for c in grid.columns if c not in ("cell", "h", "alpha", "is_base")]
    return {
        "base": {c: float(base[c]) for c in measured},
        "lms_definition": lms_definition,
        "policy": {"name": config.policy, "lms_ratio": config.lms_ratio},
        "selected": dict(selected),
        "split": config.split,
        "n_rows": dict(n_rows),
        "n_lms_texts": n_texts,
        **dict(extra or {}),
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
    }


def _search(store: CellStore, strengthen_h: Mapping[str, float], config: EvalConfig, factual: np.ndarray,
            degenerate: str | None) -> str:
    """Evaluate the cells the configured search needs; return the search actually run.

    The adaptive search needs the threshold policy and a base LMS to test against. With a degenerate base LMS
    nothing will be called useful, so a sparse grid is enough for the plot and the record; the ``metric_x_lms``
    policy gets the full grid.
    """
    if degenerate is not None:
        log.warning("decoder: %s; the LMS constraint cannot be checked, no rewrite will be called useful", degenerate)
    if config.search == "adaptive" and degenerate is not None:
        alphas = sparse_alphas(config.alphas)
        log.info("decoder: degenerate base LMS: evaluating %d of %d α values (all: [eval] search = \"grid\")",
                 len(alphas), len(config.alphas))
        grid_search(store, list(strengthen_h.values()), alphas)
        return "sparse_grid"
    if config.search == "grid" or config.policy != "threshold":
        if config.search == "adaptive":
            log.info("decoder: running the full grid (policy %r)", config.policy)
        grid_search(store, list(strengthen_h.values()), config.alphas)
        return "grid"
    adaptive_search(store, strengthen_h, config.alphas, config.lms_ratio, factual)
    return "adaptive"


def _select_complete(store: CellStore, strengthen_h: Mapping[str, float], config: EvalConfig,
                     factual: np.ndarray) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Select; a selected cell whose LMS rests on a sample is scored on all texts and the selection repeated."""
    while True:
        grid = grid_table(store, factual)
        selected = select_rewrites(grid, strengthen_h, config.policy, config.lms_ratio)
        partial = {(e["h"], e["alpha"]) for e in selected.values()
                   if e["alpha"] != 0 and len(store.lms_scores((e["h"], e["alpha"]), 0)) < store.n_texts}
        if not partial:
            return grid, selected
        for cell in partial:
            store.lms_scores(cell)


def evaluate_decoder(
    lm: LoadedModel,
    gradiend: Any,
    pairs: pd.DataFrame,
    neutral_texts: Sequence[str],
    config: EvalConfig | None = None,
    *,
    targets: Mapping[str, Sequence[str]] | None = None,
    objective: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> DecoderResult:
    """Evaluate decoder cells on ``config.split`` (``config.search``) and select rewrites with intervals.

    The base model is unchanged afterwards. ``targets`` overrides the class words (default: the words of each
    class in the pairs table). ``progress(done, most)`` is called after every measurement.
    """
    config = config or EvalConfig()
    task = task_of(gradiend)
    classes = task.group_ids
    inputs = prepare_inputs(lm, pairs, neutral_texts, task, config, targets)
    if objective is None:
        from gradiend.lm.objectives import objective_for

        objective = objective_for(lm)
    texts = prepare_lms_texts(lm, inputs.texts, exclude_words=inputs.exclude, seed=config.seed)
    store = CellStore(lm, gradiend, list(inputs.rows["masked"]), inputs.words, texts, objective,
                      config.batch_size, config.seed)
    strengthen_h = {c: gradiend.strengthen_h(c) for c in classes}
    most = 2 * (1 + len(set(strengthen_h.values())) * len(config.alphas))
    if progress is not None:
        store.on_measure = lambda: progress(len(store.probs) + len(store.scores), most)
    factual = inputs.factual
    store.probabilities(BASE)
    base_lms = store.lms_scores(BASE).result(lm.family)
    degenerate = degenerate_base_lms(base_lms, config.min_lms_tokens)
    search = _search(store, strengthen_h, config, factual, degenerate)
    grid, selected = _select_complete(store, strengthen_h, config, factual)
    attach_intervals(selected, store, factual, config.bootstrap, config.seed)
    if degenerate is not None:
        mark_degenerate(selected, degenerate)
    counts = pd.Series(factual).value_counts()
    extra = {
        "lms_check": {"degenerate": degenerate is not None, "reason": degenerate, "n_tokens": base_lms.n_tokens,
                      "min_tokens": config.min_lms_tokens},
        "search": {"name": search, "cells_evaluated": int((~grid["is_base"]).sum()),
                   "cells_with_probabilities": len(store.probs) - 1, "grid_cells": most // 2 - 1,
                   "lms_texts_scored": int(sum(len(s) for s in store.scores.values()))},
    }
    summary = decoder_summary(grid, selected, config, lms_definition(lm.family),
                              {c: int(counts[c]) for c in classes}, len(texts), extra)
    return DecoderResult(grid, summary)


def write_decoder_results(result: DecoderResult, metrics_dir: str | Path) -> tuple[Path, Path]:
    """Write ``decoder_grid.csv`` and ``decoder.json`` into ``metrics_dir`` (atomically); return both paths."""
    metrics_dir = Path(metrics_dir)
    grid_path, json_path = metrics_dir / DECODER_GRID_FILE, metrics_dir / DECODER_METRICS_FILE
    write_with(grid_path, lambda p: result.grid.to_csv(p, index=False))
    write_json(json_path, result.summary)
    return grid_path, json_path
