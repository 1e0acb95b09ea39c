"""Pre-pruning: keep the top-k input dimensions by |mean source gradient| before the GRADIEND is allocated.

The mean of per-row gradients equals the gradient of the mean loss over those rows, so the importance of a
stratified sample is computed with batched forward/backward passes (``chunk_rows`` rows each) instead of one
backward per row. The result is ``selection.restrict(keep)``: later memory scales with k, and every kept
dimension keeps its global index in the base model's parameter space.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import pandas as pd
import torch

from gradiend.errors import GradiendError
from gradiend.gradients.batches import even_shares
from gradiend.gradients.compute import GradientComputer, check_kind
from gradiend.lm.params import ParamSelection
from gradiend.tasks import Task, transition_name
from gradiend.topk import topk_count

log = logging.getLogger(__name__)


def top_k_indices(importance: torch.Tensor, k: int) -> torch.Tensor:
    """Sorted positions of the k largest values; ties at the threshold go to the lowest positions.

    The threshold (the k-th largest value) comes from a partial sort of one copy of the values
    (``numpy.partition``); ``torch.topk`` with a large k kept a (value, index) pair per entry, which on a
    134M-parameter selection was 1.6 GB more at the pre-prune peak.
    """
    values = importance.detach().float().cpu()
    threshold = torch.as_tensor(np.partition(values.numpy(), values.numel() - k)[values.numel() - k])
    importance = values
    above = (importance > threshold).nonzero().squeeze(1)
    ties = (importance == threshold).nonzero().squeeze(1)[: k - above.numel()]
    return torch.cat([above, ties]).sort().values


def stratified_sample(groups: dict[tuple[str, str], pd.DataFrame], n_samples: int, seed: int) -> pd.DataFrame:
    """``n_samples`` rows split evenly over the transitions (remainder to the first), without replacement."""
    if n_samples < 1:
        raise GradiendError(f"n_samples must be ≥ 1, got {n_samples}")
    rng = random.Random(seed)
    parts = []
    for (key, rows), want in zip(groups.items(), even_shares(n_samples, len(groups)), strict=True):
        if want > len(rows):
            log.warning("pre-prune: %s has %d rows, fewer than the %d requested", transition_name(*key), len(rows), want)
        positions = rng.sample(range(len(rows)), min(want, len(rows)))
        parts.append(rows.iloc[positions])
    return pd.concat(parts, ignore_index=True)


def importance(computer: GradientComputer, rows: pd.DataFrame, source: str, chunk_rows: int = 16) -> torch.Tensor:
    """|mean over ``rows`` of the per-row ``source`` gradient|, from batched passes of ``chunk_rows`` rows."""
    total = torch.zeros(computer.input_dim, dtype=torch.float32)
    for start in range(0, len(rows), chunk_rows):
        part = rows.iloc[start : start + chunk_rows]
        total.add_(computer.mean_gradient(part, source).cpu(), alpha=len(part))
    return total.div_(len(rows)).abs_()  # in place: no further full-selection vectors


def pre_prune(
    computer: GradientComputer,
    pairs: Any,
    *,
    task: Task,
    source: str = "alternative",
    n_samples: int = 8,
    topk: float | int = 0.1,
    seed: int = 0,
) -> ParamSelection:
    """The computer's selection restricted to the top-k dimensions by |mean source gradient| on train rows."""
    check_kind(source)
    n = computer.input_dim
    k = topk_count(topk, n)
    if k == n:
        return computer.selection
    sample = stratified_sample(task.rows(pairs, "train"), n_samples, seed)
    keep = top_k_indices(importance(computer, sample, source), k)
    log.info("pre-prune kept %d of %d dimensions (%d sample rows, source %s)", k, n, len(sample), source)
    return computer.selection.restrict(keep)
