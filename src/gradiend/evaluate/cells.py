"""Measured decoder cells: class probabilities per row and LMS per text, computed lazily and kept per cell.

A cell is a rewrite θ + α·dec(h) (the base model is h = 0, α = 0). :class:`CellStore` applies a cell with
:func:`gradiend.rewrite.edited` only when something about it is asked that was not measured yet, and keeps

* the class probabilities of every evaluated row (``[rows, classes]``; classes in ``ClassWords`` order), and
* the per-text NLL sums of the LMS texts evaluated so far, always a *prefix* of one seeded permutation of the
  texts, so a cell's LMS can grow from a small sample to all texts without re-scoring a text.

These per-row and per-text values exist only for evaluated cells; they feed the selection's bootstrap
intervals (:mod:`gradiend.evaluate.decoder`) and the sequential LMS test of the adaptive search
(:mod:`gradiend.evaluate.search`).

**Sequential LMS test** (:meth:`CellStore.lms_decision`): the paired ratio LMS(cell) / LMS(base) on the same
texts is estimated on the first 8, 16, 32, … texts of the permutation; after each step a bootstrap interval over
those texts (:data:`SEQUENTIAL_BOOTSTRAP` replicates) decides: entirely ≥ the threshold → admissible, entirely
below → not admissible, otherwise the sample doubles. With all texts scored the point estimate decides, as in
the full grid. (Repeated looks widen the error rate somewhat beyond 5 %; cells near the threshold are the ones
that reach all texts, so the decision matters least where it is least certain.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradiend.evaluate.lm_metrics import ClassWords, LMSTexts, TextScores, lms_from_nll, text_scores
from gradiend.lm.load import LoadedModel
from gradiend.rewrite import edited

FIRST_SAMPLE = 8  # LMS texts in the first step of the sequential test
SEQUENTIAL_BOOTSTRAP = 200  # replicates per step of the sequential test
Cell = tuple[float, float]  # (h, alpha); (0.0, 0.0) is the base model
BASE: Cell = (0.0, 0.0)


def ratio_replicates(cell: TextScores, base: TextScores, idx: np.ndarray) -> np.ndarray:
    """LMS(cell) / LMS(base) over the texts ``idx`` (last axis), paired: both on the same texts."""
    def score(s: TextScores) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return lms_from_nll(s.nll[idx].sum(-1) / s.tokens[idx].sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(score(cell) / score(base), dtype=float)


@dataclass
class CellStore:
    """Lazily measured cells of one decoder evaluation (see the module docstring)."""

    lm: LoadedModel
    gradiend: Any
    rows: list[str]  # the masked sentences of the evaluated pair rows
    words: ClassWords
    texts: LMSTexts
    objective: Any
    batch_size: int
    seed: int
    probs: dict[Cell, np.ndarray] = field(default_factory=dict)
    scores: dict[Cell, TextScores] = field(default_factory=dict)
    on_measure: Callable[[], None] | None = None
    order: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.order = np.random.default_rng(self.seed).permutation(len(self.texts))

    @property
    def n_texts(self) -> int:
        return len(self.texts)

    def probabilities(self, cell: Cell) -> np.ndarray:
        """``[rows, classes]`` class probabilities of the cell (measured once)."""
        if cell not in self.probs:
            with edited(self.lm, self.gradiend, *cell):
                p = self.objective.word_probabilities(self.lm.model, self.rows, list(self.words.words),
                                                      batch_size=self.batch_size)
                self.probs[cell] = self.words.aggregate(p.detach().double().cpu()).numpy()
            self._measured()
        return self.probs[cell]

    def lms_scores(self, cell: Cell, n: int | None = None) -> TextScores:
        """Per-text scores of the first ``n`` texts of the permutation (all by default), extending the prefix."""
        n = self.n_texts if n is None else min(n, self.n_texts)
        have = self.scores.get(cell)
        done = 0 if have is None else len(have)
        if done < n:
            with edited(self.lm, self.gradiend, *cell):
                more = text_scores(self.lm, self.texts, self.order[done:n].tolist(), self.batch_size)
            self.scores[cell] = more if have is None else have.concat(more)
            self._measured()
        return self.scores[cell]

    def lms_ratio(self, cell: Cell) -> float:
        """Paired LMS ratio of the cell against the base model on the texts the cell was scored on."""
        scores = self.scores[cell]
        base = self.lms_scores(BASE)
        return float(ratio_replicates(scores, base, np.arange(len(scores))))

    def lms_decision(self, cell: Cell, threshold: float) -> bool:
        """Whether the cell keeps LMS ≥ ``threshold`` × base LMS (sequential test, module docstring)."""
        rng = np.random.default_rng(self.seed)
        base = self.lms_scores(BASE)
        n = FIRST_SAMPLE
        while True:
            scores = self.lms_scores(cell, n)
            k = len(scores)
            if k >= self.n_texts:
                return bool(ratio_replicates(scores, base, np.arange(k)) >= threshold)
            reps = ratio_replicates(scores, base, rng.integers(0, k, size=(SEQUENTIAL_BOOTSTRAP, k)))
            reps = reps[np.isfinite(reps)]
            if reps.size and np.percentile(reps, 2.5) >= threshold:
                return True
            if reps.size and np.percentile(reps, 97.5) < threshold:
                return False
            n = 2 * k

    def _measured(self) -> None:
        if self.on_measure is not None:
            self.on_measure()
