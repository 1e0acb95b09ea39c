"""Decoder evaluation: scan rewrites θ + α·dec(h) over a grid and pick the strongest one that keeps the LMS.

Grid: the base model plus every (h, α) with h ∈ {strengthen_h(C) for each class C} (for two classes that is
h and −h, so each class's *weakening* direction is the other's strengthening one) and α from
``EvalConfig.alphas`` (default 0.001 … 100 in 1-2-5 steps). Every cell is evaluated once, inside
:func:`gradiend.rewrite.edited` (in place, restored bit-identically afterwards), with batched forward passes:

* ``p_<C>_other`` — mean P(C's words) on the rows whose factual class is not C (strengthening C should raise it);
* ``p_<C>_own`` — mean P(C's words) on C's own rows (weakening C should lower it);
* ``lms`` — :func:`gradiend.evaluate.lm_metrics.lms` on neutral text (plus ``nll``/``perplexity`` or ``accuracy``).

The resulting table (``metrics/decoder_grid.csv``) is the single source for selection, plots and the report.

Selection (:func:`select_rewrites`), per class C: *strengthen* maximises ``p_<C>_other`` over the cells with
h = strengthen_h(C); *weaken* (key ``<C>_weaken``) maximises ``1 − p_<C>_own`` over the cells that strengthen
another class. Policies: ``threshold`` — the best cell with LMS ≥ ``lms_ratio`` × base LMS; ``metric_x_lms`` —
the best value × LMS. A selection is ``useful`` only if it beats the base model (and, for ``threshold``, some cell
met the LMS floor); otherwise ``useful: false`` with the reason, and no rewrite should be saved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gradiend.constants import DECODER_GRID_FILE, DECODER_METRICS_FILE
from gradiend.errors import GradiendError
from gradiend.evaluate.config import DEFAULT_ALPHAS, POLICIES, EvalConfig, Policy
from gradiend.evaluate.encoder import cap_rows
from gradiend.evaluate.lm_metrics import ClassWords, LMSResult, class_probabilities, lms, lms_definition
from gradiend.io import write_json, write_with
from gradiend.lm.load import LoadedModel
from gradiend.rewrite import edited

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


def grid_cells(h_values: Sequence[float], alphas: Sequence[float]) -> list[tuple[float, float]]:
    """(h, α) of every cell: the base model (0, 0) first, then h descending × α ascending."""
    hs = sorted({float(h) for h in h_values}, reverse=True)
    return [(0.0, 0.0)] + [(h, float(a)) for h in hs for a in sorted(set(alphas))]


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
    rows: pd.DataFrame  # capped pair rows of the split, both classes
    words: ClassWords
    texts: list[str]
    exclude: list[str]


def measure(lm: LoadedModel, inputs: _GridInputs, objective: Any, config: EvalConfig) -> dict[str, float]:
    """P(class words) on other/own rows and the LMS of the model as it is now."""
    probs = class_probabilities(lm, inputs.rows, inputs.words, objective=objective, batch_size=config.batch_size)
    factual = inputs.rows["factual_class"].to_numpy()
    out: dict[str, float] = {}
    for cid in inputs.words.class_ids:
        values = probs[cid].to_numpy()
        out[f"p_{cid}_other"] = float(values[factual != cid].mean())
        out[f"p_{cid}_own"] = float(values[factual == cid].mean())
    score = lms(lm, inputs.texts, exclude_words=inputs.exclude, seed=config.seed, batch_size=config.batch_size)
    return {**_lms_fields(score), **out}


def decoder_grid(
    lm: LoadedModel,
    gradiend: Any,
    inputs: _GridInputs,
    config: EvalConfig,
    objective: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Evaluate every grid cell (base first); the model is restored after each cell."""
    if objective is None:
        from gradiend.lm.objectives import objective_for

        objective = objective_for(lm)
    h_values = [gradiend.strengthen_h(c) for c in inputs.words.class_ids]
    cells = grid_cells(h_values, config.alphas)
    records = []
    for i, (h, alpha) in enumerate(cells):
        with edited(lm, gradiend, h, alpha):
            measured = measure(lm, inputs, objective, config)
        records.append({"cell": cell_id(h, alpha), "h": h, "alpha": alpha, "is_base": alpha == 0, **measured})
        if progress is not None:
            progress(i + 1, len(cells))
    return pd.DataFrame(records)


def prepare_inputs(
    lm: LoadedModel,
    pairs: pd.DataFrame,
    neutral_texts: Sequence[str],
    classes: Sequence[str],
    config: EvalConfig,
    targets: Mapping[str, Sequence[str]] | None = None,
) -> _GridInputs:
    """Capped rows of the split (per factual class), class words with case variants, LMS texts."""
    rows = pairs[pairs["split"] == config.split]
    rows = rows[rows["factual_class"].isin(classes)]
    rows = cap_rows(rows, config.max_rows, config.seed, by="factual_class").reset_index(drop=True)
    missing = [c for c in classes if not (rows["factual_class"] == c).any()]
    if missing:
        raise GradiendError(f"split {config.split!r} has no pair rows of class(es) {missing}")
    targets = dict(targets) if targets is not None else class_targets(pairs, classes)
    texts = [t for t in neutral_texts if isinstance(t, str) and t.strip()][: config.max_lms_texts]
    if not texts:
        raise GradiendError("the decoder evaluation needs neutral texts for the LMS")
    words = ClassWords.build(lm.tokenizer, {c: targets[c] for c in classes})
    return _GridInputs(rows, words, texts, sorted({w for ws in targets.values() for w in ws}))


# --- selection --------------------------------------------------------------------------------------


def _choose(
    cells: pd.DataFrame, base_value: float, base_lms: float, policy: Policy, ratio: float
) -> tuple[pd.Series | None, bool, str]:
    """(chosen cell or None, useful, reason) among ``cells`` (columns h, alpha, value, lms, cell)."""
    cells = cells.sort_values("alpha", kind="stable")  # ties go to the gentler rewrite
    if policy == "threshold":
        admissible = cells[cells["lms"] >= ratio * base_lms]
        if admissible.empty:
            return None, False, f"no cell keeps LMS >= {ratio:g} x base LMS"
        best = admissible.loc[admissible["value"].idxmax()]
        if not best["value"] > base_value:
            return best, False, f"no cell with LMS >= {ratio:g} x base LMS beats the base model"
        return best, True, f"strongest cell with LMS >= {ratio:g} x base LMS"
    best = cells.loc[(cells["value"] * cells["lms"]).idxmax()]
    if not (best["value"] > base_value and best["value"] * best["lms"] > base_value * base_lms):
        return best, False, "no cell beats the base model in value x LMS"
    return best, True, "best value x LMS"


def _entry(
    cells: pd.DataFrame, h: float, metric: str, base_value: float, base_lms: float, policy: Policy, ratio: float
) -> dict[str, Any]:
    """One ``selected`` entry of decoder.json; without an admissible cell it describes the base model."""
    best, useful, reason = _choose(cells, base_value, base_lms, policy, ratio)
    if best is None:
        best = pd.Series({"h": h, "alpha": 0.0, "value": base_value, "lms": base_lms, "cell": "base"})
    return {
        "h": float(best["h"]), "alpha": float(best["alpha"]), "cell": str(best["cell"]), "metric": metric,
        "value": float(best["value"]), "base_value": float(base_value), "lms": float(best["lms"]),
        "base_lms": float(base_lms), "lms_ratio": float(best["lms"]) / base_lms if base_lms else None,
        "useful": useful, "reason": reason,
    }


def select_rewrites(
    grid: pd.DataFrame,
    strengthen_h: Mapping[str, float],
    policy: Policy = "threshold",
    lms_ratio: float = 0.99,
) -> dict[str, dict[str, Any]]:
    """Selected cell per class (strengthen, key C) and per class weakening (key ``C_weaken``) from a grid table.

    ``strengthen_h`` maps each class id to the h that strengthens it (``Gradiend.strengthen_h``); weakening C
    uses the cells of the other classes' h.
    """
    if policy not in POLICIES:
        raise GradiendError(f"selection policy must be one of {POLICIES}, got {policy!r}")
    is_base = grid["is_base"].astype(bool)
    if int(is_base.sum()) != 1:
        raise GradiendError(f"the decoder grid must hold exactly one base row, found {int(is_base.sum())}")
    base, cells = grid[is_base].iloc[0], grid[~is_base]
    out = {}
    for cid, h in strengthen_h.items():
        own = cells[np.isclose(cells["h"], h)].assign(value=cells[f"p_{cid}_other"])
        metric = f"P({cid} words | other rows)"
        out[cid] = _entry(own, h, metric, base[f"p_{cid}_other"], base["lms"], policy, lms_ratio)
        weak_h = [v for c, v in strengthen_h.items() if c != cid and not np.isclose(v, h)]
        weak = cells[np.isin(cells["h"], weak_h)].assign(value=1.0 - cells[f"p_{cid}_own"])
        if weak_h:
            metric = f"1 - P({cid} words | {cid} rows)"
            out[f"{cid}_weaken"] = _entry(
                weak, weak_h[0], metric, 1.0 - base[f"p_{cid}_own"], base["lms"], policy, lms_ratio
            )
    return out


# --- the stage --------------------------------------------------------------------------------------


def decoder_summary(
    grid: pd.DataFrame, selected: Mapping[str, Any], config: EvalConfig, lms_definition: str,
    n_rows: Mapping[str, int], n_texts: int,
) -> dict[str, Any]:
    """The ``metrics/decoder.json`` object."""
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
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
    }


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
    """Run the decoder grid on ``config.split`` and select rewrites; the base model is unchanged afterwards.

    ``targets`` overrides the class words (default: the words of each class in the pairs table).
    """
    config = config or EvalConfig()
    classes = tuple(gradiend.meta.classes or ())
    if len(classes) != 2:
        raise GradiendError("the GRADIEND has no (positive, negative) classes in its metadata; train it with classes")
    inputs = prepare_inputs(lm, pairs, neutral_texts, classes, config, targets)
    grid = decoder_grid(lm, gradiend, inputs, config, objective, progress)
    selected = select_rewrites(grid, {c: gradiend.strengthen_h(c) for c in classes}, config.policy, config.lms_ratio)
    counts = inputs.rows["factual_class"].value_counts()
    definition = lms_definition(lm.family)
    summary = decoder_summary(grid, selected, config, definition, {c: int(counts[c]) for c in classes},
                              len(inputs.texts))
    return DecoderResult(grid, summary)


def write_decoder_results(result: DecoderResult, metrics_dir: str | Path) -> tuple[Path, Path]:
    """Write ``decoder_grid.csv`` and ``decoder.json`` into ``metrics_dir`` (atomically); return both paths."""
    metrics_dir = Path(metrics_dir)
    grid_path, json_path = metrics_dir / DECODER_GRID_FILE, metrics_dir / DECODER_METRICS_FILE
    write_with(grid_path, lambda p: result.grid.to_csv(p, index=False))
    write_json(json_path, result.summary)
    return grid_path, json_path
