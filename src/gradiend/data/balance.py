"""Balancing of target occurrences within each split: cap per class, equal class sizes, equal target words.

Balancing works on occurrences (masked targets), before alternatives are expanded, so every alternative of
a kept occurrence stays. All sampling is seeded and the kept occurrences stay in corpus order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gradiend.data.config import SPLITS, DataConfig
from gradiend.data.features import Feature
from gradiend.data.pairs import Occurrence
from gradiend.data.splits import quotas

STREAM_BALANCE = 4


def fill_quotas(sizes: Sequence[int], budget: int) -> list[int]:
    """Water-filling: share ``budget`` as equally as possible over groups that hold ``sizes`` items each."""
    take = [0] * len(sizes)
    open_groups = [i for i, s in enumerate(sizes) if s > 0]
    while budget > 0 and open_groups:
        share = max(budget // len(open_groups), 1)
        for i in list(open_groups):
            add = min(share, sizes[i] - take[i], budget)
            take[i] += add
            budget -= add
            if take[i] == sizes[i]:
                open_groups.remove(i)
            if budget == 0:
                break
    return take


def balance(
    occurrences: Sequence[Occurrence], splits: Sequence[str], feature: Feature, config: DataConfig
) -> list[int]:
    """Indices (sorted) of the occurrences kept after capping and balancing, split by split."""
    caps = _split_caps(config)
    kept: list[int] = []
    for si, split in enumerate(SPLITS):
        by_class: list[list[int]] = [[] for _ in feature.classes]
        for i, (o, s) in enumerate(zip(occurrences, splits, strict=True)):
            if s == split:
                by_class[o.match.class_index].append(i)
        budgets = [_feasible(idx, occurrences, config) for idx in by_class]
        budgets = [min(b, caps[si]) if caps is not None else b for b in budgets]
        if config.equal_class_sizes:
            budgets = [min(budgets)] * len(budgets)
        for ci, idx in enumerate(by_class):
            rng = np.random.default_rng([config.seed, STREAM_BALANCE, si, ci])
            kept += _sample_class(idx, occurrences, budgets[ci], config.balance_targets, rng)
    return sorted(kept)


def _split_caps(config: DataConfig) -> list[int] | None:
    if config.max_rows_per_class is None:
        return None
    return quotas(config.max_rows_per_class, config.split_ratios)


def _by_target(idx: Sequence[int], occurrences: Sequence[Occurrence]) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for i in idx:
        groups.setdefault(occurrences[i].match.target, []).append(i)
    return [groups[t] for t in sorted(groups)]


def _feasible(idx: Sequence[int], occurrences: Sequence[Occurrence], config: DataConfig) -> int:
    """Largest class size possible: all rows, or with target balance (#targets seen) × (rarest target's count)."""
    if not config.balance_targets:
        return len(idx)
    groups = _by_target(idx, occurrences)
    return len(groups) * min(len(g) for g in groups) if groups else 0


def _sample_class(
    idx: Sequence[int], occurrences: Sequence[Occurrence], budget: int, per_target: bool, rng: np.random.Generator
) -> list[int]:
    groups = _by_target(idx, occurrences) if per_target else [list(idx)]
    take = fill_quotas([len(g) for g in groups], budget)
    out: list[int] = []
    for g, k in zip(groups, take, strict=True):
        out += g if k >= len(g) else [g[j] for j in rng.permutation(len(g))[:k]]
    return out
