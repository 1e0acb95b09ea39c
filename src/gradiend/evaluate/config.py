"""Evaluation settings: one frozen config for the encoder evaluation, the decoder grid and selection."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from gradiend.errors import GradiendError


def _one_two_five(lowest: int = -3, highest: int = 2) -> tuple[float, ...]:
    """1-2-5 steps from 10**lowest to 10**highest, as exact decimal literals (0.001, 0.002, 0.005, …)."""
    values = [float(f"{m}e{e}") for e in range(lowest, highest + 1) for m in (1, 2, 5)]
    return tuple(v for v in values if v <= 10.0**highest)


DEFAULT_ALPHAS = _one_two_five()
#: the splits an evaluation can run on; "all" encodes every split (the ``split`` column tells them apart)
EVAL_SPLITS = ("train", "validation", "test", "all")
Policy = Literal["threshold", "metric_x_lms"]
POLICIES = ("threshold", "metric_x_lms")
SEARCHES = ("adaptive", "grid")
MIN_LMS_TOKENS = 100  # fewer scored tokens make the base LMS too noisy to anchor the LMS constraint


@dataclass(frozen=True)
class EvalConfig:
    """Encoder and decoder evaluation settings (the ``[eval]`` section of a run's config)."""

    split: str = "test"
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    max_rows: int | None = 500  # pair rows per class (decoder grid and encoder evaluation)
    max_lms_texts: int = 200  # neutral texts for the LMS
    lms_ratio: float = 0.99  # threshold policy: a rewrite must keep LMS >= lms_ratio * base LMS
    policy: Policy = "threshold"
    search: Literal["adaptive", "grid"] = "adaptive"  # which decoder cells are evaluated (evaluate/search.py)
    min_lms_tokens: int = MIN_LMS_TOKENS  # a base LMS on fewer scored tokens is degenerate: nothing is "useful"
    seed: int = 0
    bootstrap: int = 1000  # bootstrap samples for the encoder metrics' intervals
    batch_size: int = field(default=16, metadata={"fingerprint": False})

    def __post_init__(self) -> None:
        if self.split not in EVAL_SPLITS:
            raise GradiendError(f"[eval] split must be one of {', '.join(EVAL_SPLITS)}, got {self.split!r}")
        if not self.alphas or any(not math.isfinite(a) or a <= 0 for a in self.alphas):
            raise GradiendError(f"[eval] alphas must be finite positive learning rates, got {self.alphas}")
        if self.policy not in POLICIES:
            raise GradiendError(f"[eval] policy must be one of {POLICIES}, got {self.policy!r}")
        if not 0 < self.lms_ratio <= 1:
            raise GradiendError(f"[eval] lms_ratio must be in (0, 1], got {self.lms_ratio}")
        if self.search not in SEARCHES:
            raise GradiendError(f"[eval] search must be one of {SEARCHES}, got {self.search!r}")
        for name in ("max_lms_texts", "batch_size", "min_lms_tokens"):
            if getattr(self, name) < 1:
                raise GradiendError(f"[eval] {name} must be ≥ 1, got {getattr(self, name)}")
        if self.max_rows is not None and self.max_rows < 1:
            raise GradiendError(f"[eval] max_rows must be ≥ 1 or None, got {self.max_rows}")
        if self.bootstrap < 0:
            raise GradiendError(f"[eval] bootstrap must be ≥ 0, got {self.bootstrap}")
