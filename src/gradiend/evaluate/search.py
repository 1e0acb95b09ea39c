"""Which decoder cells to evaluate: the full grid, or the adaptive search that finds the same selection sooner.

``grid`` — every (h, α) with every row's class probabilities and the LMS on all texts.

``adaptive`` (threshold policy) — per h, in three steps:

1. **Strongest admissible α, from the top.** The α values are tried from the largest down with the sequential
   LMS test (:meth:`gradiend.evaluate.cells.CellStore.lms_decision`); the first admissible one is the boundary.
   A rewrite that breaks the model is rejected on the first 8 texts, so the cells above the boundary are cheap,
   and the boundary is exact whatever the shape of the LMS curve above it (no monotonicity is assumed there).
2. **Class probabilities where the selection needs them.** From the boundary downwards the probabilities of all
   classes are measured cell by cell (each cell checked admissible, since the LMS need not be monotone below the
   boundary either), while the cell just measured is the best so far for some selection metric on this h
   (P(C | other rows) for the classes h strengthens, 1 − P(D | D rows) for the classes it weakens). On the usual
   curves — probability rising with α — that is two cells: the boundary and the one below it.
3. Cells the search never needed stay unevaluated; the plot shows the evaluated ones.

The ``metric_x_lms`` policy has no threshold to search for: it gets the full grid. A degenerate base LMS has no
threshold either, and nothing will be called useful on it: it gets a sparse grid (every third α and the largest,
:func:`sparse_alphas`), enough for the plot and the record.

The selection then runs on the evaluated cells exactly as on the full grid; the selected cells' LMS is completed
on all texts for their intervals (:func:`gradiend.evaluate.decoder.evaluate_decoder`). What the adaptive search
can miss is a probability peak at a much smaller α behind a dip — the full grid (``[eval] search = "grid"``)
stays available for that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from gradiend.evaluate.cells import BASE, Cell, CellStore

Metric = tuple[int, bool, bool]  # (class index, on own rows?, maximise 1 − p?)


def grid_search(store: CellStore, h_values: Sequence[float], alphas: Sequence[float]) -> None:
    """Measure every cell fully: probabilities and the LMS on all texts."""
    for cell in [BASE] + [(h, a) for h in sorted(set(h_values), reverse=True) for a in sorted(set(alphas))]:
        store.probabilities(cell)
        store.lms_scores(cell)


def sparse_alphas(alphas: Sequence[float], every: int = 3) -> list[float]:
    """Every ``every``-th α from the smallest, and the largest (for 1-2-5 steps: the powers of ten)."""
    ordered = sorted(set(alphas))
    picked = ordered[::every]
    return picked if picked[-1] == ordered[-1] else [*picked, ordered[-1]]


def metrics_of_h(h: float, strengthen_h: Mapping[str, float], class_ids: Sequence[str]) -> list[Metric]:
    """The selection metrics the cells of ``h`` compete in: strengthen C (h = h_C), weaken D (h ≠ h_D)."""
    out = []
    for cid, hc in strengthen_h.items():
        k = list(class_ids).index(cid)
        out.append((k, False, False) if np.isclose(hc, h) else (k, True, True))
    return out


def adaptive_search(
    store: CellStore, strengthen_h: Mapping[str, float], alphas: Sequence[float], lms_ratio: float,
    factual: np.ndarray,
) -> dict[float, float | None]:
    """Run the adaptive search (module docstring); return the boundary α per h (None: no admissible α)."""
    ordered = sorted(set(alphas))
    boundaries = {}
    for h in sorted(set(strengthen_h.values()), reverse=True):
        top = next((i for i in reversed(range(len(ordered))) if store.lms_decision((h, ordered[i]), lms_ratio)), None)
        boundaries[h] = None if top is None else ordered[top]
        if top is not None:
            _walk_down(store, [(h, a) for a in reversed(ordered[: top + 1])], lms_ratio,
                       metrics_of_h(h, strengthen_h, store.words.class_ids), factual)
    return boundaries


def metric_value(probs: np.ndarray, metric: Metric, factual: np.ndarray, class_id: str) -> float:
    """Mean of one selection metric over its rows (own or other rows of the class)."""
    k, own, complement = metric
    rows = factual == class_id if own else factual != class_id
    value = float(probs[rows, k].mean())
    return 1.0 - value if complement else value


def _walk_down(store: CellStore, cells: list[Cell], lms_ratio: float, metrics: list[Metric],
               factual: np.ndarray) -> None:
    """Measure probabilities from the boundary down while each new cell is the best so far in some metric."""
    best = [-np.inf] * len(metrics)
    for i, cell in enumerate(cells):
        if i > 0 and not store.lms_decision(cell, lms_ratio):
            continue
        probs = store.probabilities(cell)
        values = [metric_value(probs, m, factual, store.words.class_ids[m[0]]) for m in metrics]
        improved = [v > b for v, b in zip(values, best, strict=True)]
        best = [max(v, b) for v, b in zip(values, best, strict=True)]
        if i > 0 and not any(improved):
            return
