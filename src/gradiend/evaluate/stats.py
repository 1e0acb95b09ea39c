"""Vectorised statistics with seeded bootstrap intervals (numpy only; rows along the last axis).

Every statistic takes arrays whose last axis holds the observations, so the same function computes the point
estimate (1-D input) and all bootstrap replicates at once (2-D input, one replicate per row).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import rankdata

CI_LEVEL = 0.95


def pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation along the last axis; NaN where either side has zero variance."""
    xm = x - x.mean(axis=-1, keepdims=True)
    ym = y - y.mean(axis=-1, keepdims=True)
    den = np.sqrt((xm**2).sum(axis=-1) * (ym**2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xm * ym).sum(axis=-1) / den
    return np.where(den > 0, np.clip(r, -1.0, 1.0), np.nan)


def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rank correlation (average ranks for ties) along the last axis."""
    return pearson(rankdata(x, axis=-1), rankdata(y, axis=-1))


def cohens_d(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """(mean_pos − mean_neg) / pooled standard deviation (ddof = 1); NaN when the pooled std is 0."""
    n1, n2 = pos.shape[-1], neg.shape[-1]
    pooled = ((n1 - 1) * pos.var(axis=-1, ddof=1) + (n2 - 1) * neg.var(axis=-1, ddof=1)) / (n1 + n2 - 2)
    diff = pos.mean(axis=-1) - neg.mean(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pooled > 0, diff / np.sqrt(pooled), np.nan)


def auroc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """P(a positive-class value > a negative-class value), ties counting ½ (Mann–Whitney U / n₁n₂)."""
    n1, n2 = pos.shape[-1], neg.shape[-1]
    ranks = rankdata(np.concatenate([pos, neg], axis=-1), axis=-1)
    u = ranks[..., :n1].sum(axis=-1) - n1 * (n1 + 1) / 2
    return u / (n1 * n2)


def interval(replicates: np.ndarray) -> list[float | None]:
    """Percentile 95% interval of bootstrap replicates (NaN replicates ignored)."""
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return [None, None]
    tail = (1 - CI_LEVEL) / 2 * 100
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return [float(lo), float(hi)]


def _value(v: np.ndarray | float) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def paired(
    stat: Callable[[np.ndarray, np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray, n_boot: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """``{"value", "ci"}`` of a statistic of paired observations, resampling rows."""
    value = _value(stat(x, y))
    if n_boot < 1 or x.size < 2:
        return {"value": value, "ci": [None, None]}
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    return {"value": value, "ci": interval(stat(x[idx], y[idx]))}


def two_sample(
    stat: Callable[[np.ndarray, np.ndarray], np.ndarray], pos: np.ndarray, neg: np.ndarray, n_boot: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """``{"value", "ci"}`` of a two-group statistic, resampling each group separately (stratified)."""
    value = _value(stat(pos, neg))
    if n_boot < 1 or pos.size < 2 or neg.size < 2:
        return {"value": value, "ci": [None, None]}
    ip = rng.integers(0, pos.size, size=(n_boot, pos.size))
    ineg = rng.integers(0, neg.size, size=(n_boot, neg.size))
    return {"value": value, "ci": interval(stat(pos[ip], neg[ineg]))}


def mean_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of positions where ``a == b`` (an accuracy) along the last axis."""
    return (a == b).mean(axis=-1)
