"""Gradient batches for training and gradient matrices for in-training evaluation, from the pairs table.

A training batch holds rows of ONE transition (factual class → alternative class); its gradients are those
of the mean loss over the rows. The schedule is a pure, seeded function of the row groups, so a run is
reproducible and the schedule is testable without a language model.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
import torch

from gradiend.errors import GradiendError
from gradiend.gradients.compute import GradientComputer, check_kind
from gradiend.gradients.types import GradientBatch
from gradiend.tasks import Task, transition_name

log = logging.getLogger(__name__)

#: above this size a validation gradient matrix is refused (pre-prune or lower max_rows instead)
VALIDATION_MAX_BYTES = 4 * 1024**3
VALIDATION_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def needed_kinds(source: str, target: str) -> tuple[str, ...]:
    """Which of factual/alternative the configured source and target need (diff needs both)."""
    kinds = {check_kind(source), check_kind(target)}
    if "diff" in kinds:
        return ("factual", "alternative")
    return tuple(k for k in ("factual", "alternative") if k in kinds)


def even_shares(total: int, n_groups: int) -> list[int]:
    """``total`` split over ``n_groups`` as evenly as possible (the remainder to the first groups)."""
    per, extra = divmod(total, n_groups)
    return [per + (1 if i < extra else 0) for i in range(n_groups)]


def batch_schedule(
    sizes: Sequence[int], batch_rows: int, seed: int = 0, steps: int | None = None, epochs: int | None = None
) -> Iterator[tuple[int, list[int]]]:
    """(group, row positions) batches: each epoch shuffles every group and alternates groups batch by batch.

    The group that starts an epoch is drawn from the seeded generator; when a group runs out, the others
    continue. Every row is used once per epoch (the last batch of a group may be smaller). Stops after
    ``steps`` batches or ``epochs`` epochs, whichever comes first; neither given means one epoch.
    """
    if batch_rows < 1:
        raise GradiendError(f"batch_rows must be ≥ 1, got {batch_rows}")
    if steps is None and epochs is None:
        epochs = 1
    rng = random.Random(seed)
    done, epoch = 0, 0
    while (epochs is None or epoch < epochs) and (steps is None or done < steps):
        for item in _epoch(sizes, batch_rows, rng):
            if steps is not None and done >= steps:
                return
            yield item
            done += 1
        epoch += 1


def _epoch(sizes: Sequence[int], batch_rows: int, rng: random.Random) -> list[tuple[int, list[int]]]:
    queues = []
    for n in sizes:
        order = list(range(n))
        rng.shuffle(order)
        queues.append([order[i : i + batch_rows] for i in range(0, n, batch_rows)])
    start = rng.randrange(len(sizes))
    out = []
    while any(queues):
        for g in [*range(start, len(sizes)), *range(start)]:
            if queues[g]:
                out.append((g, queues[g].pop(0)))
    return out


def iter_training_batches(
    computer: GradientComputer,
    pairs: Any,
    *,
    task: Task,
    batch_rows: int = 32,
    source: str = "alternative",
    target: str = "diff",
    seed: int = 0,
    steps: int | None = None,
    epochs: int | None = None,
    skip: int = 0,
) -> Iterator[GradientBatch]:
    """Gradient batches over the ``train`` rows of the task's transitions (and its identity rows).

    Each batch holds rows of one transition and carries only the gradients that ``source``/``target`` need; its
    label follows the source token's group (0 for identity rows). The first ``skip`` batches of the schedule
    are passed over without computing their gradients (a training run resumed from a checkpoint).
    """
    groups = task.rows(pairs, "train")
    keys = list(groups)
    want = needed_kinds(source, target)
    src = check_kind(source)
    schedule = batch_schedule([len(groups[k]) for k in keys], batch_rows, seed, steps, epochs)
    for g, positions in itertools.islice(schedule, skip, None):
        factual_class, alternative_class = keys[g]
        rows = groups[keys[g]].iloc[positions]
        factual, alternative = computer.pair_gradients(rows, want=want)
        label = task.source_label(src, factual_class, alternative_class)
        yield GradientBatch(factual, alternative, label, transition_name(*keys[g]), len(positions))


def validation_rows(
    pairs: Any, *, task: Task, split: str = "validation", source: str = "alternative",
    max_rows: int = 200, seed: int = 0,
) -> tuple[Any, torch.Tensor]:
    """Up to ``max_rows`` rows of ``split`` (spread evenly over the task's transitions and identity classes,
    seeded) and their labels (+1/−1 per the source token's group, 0 for identity rows).

    The one choice of validation rows, whether their gradients are stored (:func:`validation_gradients`) or
    their encodings come from forward-mode AD at every evaluation (:mod:`gradiend.gradients.projections`).
    """
    src = check_kind(source)
    groups = task.rows(pairs, split)
    chosen = [g.sample(frac=1.0, random_state=seed).head(n)
              for g, n in zip(groups.values(), even_shares(max_rows, len(groups)), strict=True)]
    labels = [task.source_label(src, a, b) for (a, b), c in zip(groups, chosen, strict=True) for _ in range(len(c))]
    return pd.concat(chosen, ignore_index=True), torch.tensor(labels, dtype=torch.float32)


def validation_gradients(
    computer: GradientComputer,
    pairs: Any,
    *,
    task: Task,
    split: str = "validation",
    source: str = "alternative",
    max_rows: int = 200,
    seed: int = 0,
    max_bytes: int = VALIDATION_MAX_BYTES,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ``source`` gradients of the :func:`validation_rows` and their labels.

    Returns X [rows, input_dim] in ``dtype`` and labels [rows] (+1/−1 per the source token's group, 0 identity).
    Refuses a matrix over ``max_bytes``: pre-prune the selection, lower ``max_rows`` or store them in bfloat16 (half the bytes;
    the encodings computed from them differ by about 1e-3 relative).
    """
    if dtype not in VALIDATION_DTYPES.values():
        raise GradiendError(f"validation gradients are stored in one of {sorted(VALIDATION_DTYPES)}, got {dtype}")
    rows, labels = validation_rows(pairs, task=task, split=split, source=source, max_rows=max_rows, seed=seed)
    _check_memory(len(rows), computer.input_dim, max_bytes, dtype)
    x = torch.empty(len(rows), computer.input_dim, dtype=dtype)
    for i, grad in enumerate(computer.row_gradients(rows, check_kind(source))):
        x[i] = grad
    return x, labels


def _check_memory(n_rows: int, input_dim: int, max_bytes: int, dtype: torch.dtype = torch.float32) -> None:
    need = n_rows * input_dim * dtype.itemsize
    if need > max_bytes:
        hint = ", or store them as bfloat16 ([gradients] validation_dtype)" if dtype == torch.float32 else ""
        raise GradiendError(
            f"validation gradients need {need / 1024**3:.1f} GiB ({n_rows} rows × {input_dim} dims, {dtype}); "
            f"the limit is {max_bytes / 1024**3:.1f} GiB: pre-prune the selection or lower max_rows{hint}"
        )
    if need > max_bytes // 4:
        log.warning("validation gradients take %.1f GiB (%d rows × %d dims)", need / 1024**3, n_rows, input_dim)
