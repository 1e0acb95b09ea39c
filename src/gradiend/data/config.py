"""``DataConfig``: every knob of data creation, frozen, with plain field names that map 1:1 to TOML."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from gradiend.errors import GradiendError

SPLITS = ("train", "validation", "test")
ALTERNATIVES = ("one", "all", "paradigm")


@dataclass(frozen=True)
class DataConfig:
    """How raw text becomes the pairs and neutral tables.

    Attributes:
        seed: seeds document sampling, splits, balancing and alternative choice (same seed, same bytes).
        split_ratios: train / validation / test fractions (sum 1; a 0 leaves that split empty).
        max_rows_per_class: cap on masked occurrences per class (spread over the splits by ratio).
        equal_class_sizes: down-sample every class to the smallest one, within each split.
        balance_targets: down-sample each class so all its target words have equally many occurrences.
        neutral_size: number of neutral sentences (None: all).
        min_chars / max_chars: length filter on sentences (or windows), in characters.
        window: join non-overlapping windows of this many sentences into one text.
        sentence_splitter: ``"regex"`` (fast, abbreviation-aware) or ``"spacy"`` (sentencizer).
        min_left_context: minimum number of words before a target for it to be masked (0 keeps all).
        alternatives: per row and other class, ``"one"`` seeded random target of that class, ``"all"`` of them, or
            ``"paradigm"``: the word in the same cell of the paradigm, i.e. at the same position in the other
            class's target list (``MASC = ["he", "him", "his"]`` ↔ ``FEM = ["she", "her", "her"]``; all classes
            then list equally many targets).
        held_out_vocabulary: assign each target word to one split (rows follow their factual word, alternatives
            come from the same split; a sentence whose targets fall in different splits is dropped). Sentences
            still never share a split; documents may.
        excluded_words: extra whole words that keep a sentence out of the neutral table.
        spacy_model: spaCy pipeline for classes with POS/dependency/morphology constraints or lemmas.
    """

    seed: int = 42
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    max_rows_per_class: int | None = None
    equal_class_sizes: bool = False
    balance_targets: bool = False
    neutral_size: int | None = 1000
    min_chars: int = 10
    max_chars: int | None = 600
    window: int = 1
    sentence_splitter: str = "regex"
    min_left_context: int = 0
    alternatives: str = "one"
    held_out_vocabulary: bool = False
    excluded_words: tuple[str, ...] = ()
    spacy_model: str = "en_core_web_sm"

    def __post_init__(self) -> None:
        object.__setattr__(self, "split_ratios", tuple(float(r) for r in self.split_ratios))
        object.__setattr__(self, "excluded_words", tuple(self.excluded_words))
        self._validate()

    def _validate(self) -> None:
        r = self.split_ratios
        if len(r) != 3 or any(x < 0 for x in r) or not math.isclose(sum(r), 1.0, abs_tol=1e-6):
            raise GradiendError(f"split_ratios must be three non-negative fractions summing to 1, got {r}")
        if r[0] == 0:
            raise GradiendError("split_ratios: the train fraction must be > 0")
        for name in ("max_rows_per_class", "neutral_size"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise GradiendError(f"{name} must be >= 0 or None, got {v}")
        if self.window < 1 or self.min_chars < 0 or self.min_left_context < 0:
            raise GradiendError("window must be >= 1; min_chars and min_left_context must be >= 0")
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise GradiendError(f"max_chars ({self.max_chars}) is below min_chars ({self.min_chars})")
        if self.alternatives not in ALTERNATIVES:
            raise GradiendError(f"alternatives must be one of {list(ALTERNATIVES)}, got {self.alternatives!r}")
        if self.alternatives == "paradigm" and self.held_out_vocabulary:
            raise GradiendError('alternatives = "paradigm" and held_out_vocabulary contradict each other: a paradigm '
                                "alternative is a fixed word, which a held-out vocabulary may keep out of the row's split")
        if isinstance(self.excluded_words, str):
            raise GradiendError("excluded_words must be a list of words, not a string")

    @property
    def active_splits(self) -> tuple[str, ...]:
        """Split names with a non-zero ratio, in canonical order."""
        return tuple(s for s, x in zip(SPLITS, self.split_ratios, strict=True) if x > 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON/TOML-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DataConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error that names them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GradiendError(f"unknown data option(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
