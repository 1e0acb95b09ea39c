"""How many dimensions a top-k request means: one rule for pre-prune, post-prune and comparison."""

from __future__ import annotations

import math

from gradiend.errors import GradiendError


def topk_count(k: int | float, n: int) -> int:
    """Number of dimensions ``k`` asks for out of ``n``: an int count (capped) or a float fraction (ceil)."""
    if isinstance(k, bool) or not isinstance(k, (int, float)):
        raise GradiendError(f"top-k must be an int count or a float fraction, got {k!r}")
    if isinstance(k, float):
        if not 0.0 < k <= 1.0:
            raise GradiendError(f"a top-k fraction must be in (0, 1], got {k}")
        return max(1, math.ceil(k * n))
    if k < 1:
        raise GradiendError(f"a top-k count must be ≥ 1, got {k}")
    return min(k, n)
