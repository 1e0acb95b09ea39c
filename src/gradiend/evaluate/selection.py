"""Selecting rewrites from the evaluated decoder cells, with intervals and an honest "useful".

Per class C: *strengthen* maximises ``p_<C>_other`` over the cells with h = strengthen_h(C); *weaken* (key
``<C>_weaken``) maximises ``1 − p_<C>_own`` over the cells that strengthen another class. Cells whose class
probabilities were not measured (adaptive search) do not compete. Policies: ``threshold`` — the best cell whose
LMS ratio (paired, against the base model on the same texts) is ≥ ``lms_ratio``; ``metric_x_lms`` — the best
value × LMS.

A selection is ``useful`` only when

* it beats the base model under the policy (and, for ``threshold``, some cell met the LMS floor);
* the 95 % bootstrap interval of its shift (value − base value, paired over the rows) lies above 0
  (:func:`attach_intervals`; with fewer than 2 rows or no bootstrap the point estimate decides, as said in the
  reason); and
* the base LMS is not degenerate (:func:`degenerate_base_lms`): a base LMS of 0, a non-finite one, or one
  estimated from fewer than ``min_lms_tokens`` scored tokens makes "LMS ≥ ratio × base" say nothing, so no cell
  is called useful on that basis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from gradiend.errors import GradiendError
from gradiend.evaluate import stats
from gradiend.evaluate.cells import BASE, CellStore, ratio_replicates
from gradiend.evaluate.config import POLICIES, Policy
from gradiend.evaluate.lm_metrics import LMSResult


def _choose(
    cells: pd.DataFrame, base_value: float, base_lms: float, policy: Policy, ratio: float
) -> tuple[pd.Series | None, bool, str]:
    """(chosen cell or None, useful, reason) among ``cells`` (columns h, alpha, value, lms, lms_ratio, cell)."""
    cells = cells[cells["value"].notna() & cells["lms"].notna()].sort_values("alpha", kind="stable")  # ties: gentler
    if policy == "threshold":
        admissible = cells[cells["lms_ratio"] >= ratio]
        if admissible.empty:
            return None, False, f"no cell keeps LMS >= {ratio:g} x base LMS"
        best = admissible.loc[admissible["value"].idxmax()]
        if not best["value"] > base_value:
            return best, False, f"no cell with LMS >= {ratio:g} x base LMS beats the base model"
        return best, True, f"strongest cell with LMS >= {ratio:g} x base LMS"
    if cells.empty:
        return None, False, "no cell was evaluated"
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
        best = pd.Series({"h": h, "alpha": 0.0, "value": base_value, "lms": base_lms, "cell": "base", "lms_ratio": 1.0})
    return {
        "h": float(best["h"]), "alpha": float(best["alpha"]), "cell": str(best["cell"]), "metric": metric,
        "value": float(best["value"]), "base_value": float(base_value), "lms": float(best["lms"]),
        "base_lms": float(base_lms), "lms_ratio": float(best["lms_ratio"]) if base_lms else None,
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
    uses the cells of the other classes' h. A grid without an ``lms_ratio`` column gets ``lms / base lms``.
    """
    if policy not in POLICIES:
        raise GradiendError(f"selection policy must be one of {POLICIES}, got {policy!r}")
    is_base = grid["is_base"].astype(bool)
    if int(is_base.sum()) != 1:
        raise GradiendError(f"the decoder grid must hold exactly one base row, found {int(is_base.sum())}")
    base = grid[is_base].iloc[0]
    cells = grid[~is_base]
    if "lms_ratio" not in cells:
        cells = cells.assign(lms_ratio=cells["lms"] / base["lms"] if base["lms"] else np.nan)
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


# --- degenerate base LMS ------------------------------------------------------------------------------------


def degenerate_base_lms(base: LMSResult, min_tokens: int) -> str | None:
    """Why the base LMS cannot anchor the LMS constraint, or None when it can (thresholds: module docstring)."""
    if not math.isfinite(base.lms) or base.nll is not None and not math.isfinite(base.nll):
        return f"base LMS is not finite ({base.lms})"
    if base.lms <= 0:
        return "base LMS is 0"
    if base.n_tokens < min_tokens:
        return f"base LMS rests on {base.n_tokens} scored tokens, fewer than the {min_tokens} needed (min_lms_tokens)"
    return None


def mark_degenerate(selected: dict[str, dict[str, Any]], reason: str) -> None:
    """Every selection becomes ``useful: false``: the LMS constraint could not be checked."""
    for entry in selected.values():
        entry["useful"] = False
        entry["reason"] = f"{reason}: the LMS constraint cannot be checked, so no rewrite is called useful"


# --- intervals ----------------------------------------------------------------------------------------------


def _rows_and_sign(key: str, class_ids: tuple[str, ...], factual: np.ndarray) -> tuple[int, np.ndarray, float]:
    """(class index, row mask, sign) of a selection key: C → P(C) on other rows; C_weaken → −P(C) on own rows."""
    cid, weaken = (key[: -len("_weaken")], True) if key.endswith("_weaken") and key not in class_ids else (key, False)
    k = class_ids.index(cid)
    return k, (factual == cid) if weaken else (factual != cid), -1.0 if weaken else 1.0


def _mean_difference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x - y).mean(axis=-1)


def attach_intervals(selected: dict[str, dict[str, Any]], store: CellStore, factual: np.ndarray,
                     n_boot: int, seed: int) -> None:
    """Add ``shift`` ({value, ci}) and ``lms_ratio_ci`` to every selection; "useful" needs the shift's CI > 0."""
    base_probs, base_scores = store.probabilities(BASE), store.lms_scores(BASE)
    for key, entry in selected.items():
        rng = np.random.default_rng(seed)
        cell = (entry["h"], entry["alpha"])
        if entry["alpha"] == 0 or cell not in store.probs:
            entry.update(shift={"value": 0.0, "ci": [None, None]}, lms_ratio_ci=[None, None])
            continue
        k, rows, sign = _rows_and_sign(key, store.words.class_ids, factual)
        x, y = sign * store.probs[cell][rows, k], sign * base_probs[rows, k]
        entry["shift"] = stats.paired(_mean_difference, x, y, n_boot, rng)
        scores = store.lms_scores(cell)
        n = len(scores)
        reps = ratio_replicates(scores, base_scores, rng.integers(0, n, size=(n_boot, n))) if n_boot and n > 1 else None
        entry["lms_ratio_ci"] = stats.interval(reps) if reps is not None else [None, None]
        entry["n_lms_texts"] = n
        _useful_by_interval(entry)


def _useful_by_interval(entry: dict[str, Any]) -> None:
    low, high = entry["shift"]["ci"]
    if not entry["useful"]:
        return
    if low is None:
        entry["reason"] += " (no interval: too few rows or no bootstrap; the point estimate decided)"
    elif low <= 0:
        entry["useful"] = False
        entry["reason"] = (f"the shift's 95% interval [{low:.3g}, {high:.3g}] includes no change "
                           f"(point estimate {entry['shift']['value']:.3g})")
