"""The training stage as one call: parameter selection → (pre-prune) → gradient stream → ``fit``.

This is the only place where the language-model side (``gradiend.gradients``) meets the training loop
(``gradiend.train``), which itself knows nothing about language models.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from gradiend.checkpoint import Checkpointer
from gradiend.data import FeatureData
from gradiend.devices import gradiend_device
from gradiend.errors import GradiendError
from gradiend.gradients.batches import (
    VALIDATION_DTYPES,
    VALIDATION_MAX_BYTES,
    iter_training_batches,
    needed_kinds,
    validation_gradients,
    validation_rows,
)
from gradiend.gradients.compute import BATCHED_BACKWARD_MIN_PARAMS, GradientComputer
from gradiend.gradients.projections import directional_derivatives
from gradiend.gradients.prune import pre_prune
from gradiend.gradients.types import GradientBatch
from gradiend.lm.load import LoadedModel, ModelFamily
from gradiend.lm.params import ParamSelection, select_parameters
from gradiend.memory import (
    MemoryPlan,
    TrainingShape,
    activation_bytes,
    bytes_by_device,
    device_name,
    plan_training,
)
from gradiend.model import GradiendMeta, memory_estimate
from gradiend.tasks import Task, TaskConfig
from gradiend.topk import topk_count
from gradiend.train import FitResult, TrainConfig, ValidationSet, fit

log = logging.getLogger(__name__)

VALIDATION_STORAGES = ("auto", "stored", "forward")
#: measured cost of one stored per-row gradient over one forward-mode w·g per row (chunks of 16 rows), on
#: SmolLM2-135M (3.87 s vs 0.30 s: 12.9×) and SPLADE-tiny (0.14 s vs 0.010 s: 14.0×), 1 thread, all parameters
STORED_OVER_FORWARD_COST = 13.0


@dataclass(frozen=True)
class GradientConfig:
    """How the gradient stream is made from the pairs table (the ``[gradients]`` section).

    ``rows_per_gradient`` rows of one transition give one gradient (of their mean loss). ``pre_prune_topk``
    keeps the top dimensions by |mean source gradient| over ``pre_prune_samples`` stratified train rows before
    the GRADIEND is allocated (an int count or a fraction in (0, 1]). ``validation_rows`` rows of the
    validation split are encoded at every in-training evaluation. ``validation_storage`` says how
    (:func:`validation_storage`): "stored" computes one gradient per row once and keeps it in ``validation_dtype``
    ("bfloat16" halves the memory); "forward" stores nothing and recomputes ``w_e · g`` per row by forward-mode
    AD at every evaluation; "auto" (default) stores when that fits the budget and is cheaper.
    """

    rows_per_gradient: int = 32
    pre_prune_topk: int | float | None = None
    pre_prune_samples: int = 8
    validation_rows: int = 200
    validation_dtype: str = "float32"
    validation_storage: str = "auto"

    def __post_init__(self) -> None:
        for name in ("rows_per_gradient", "pre_prune_samples", "validation_rows"):
            if getattr(self, name) < 1:
                raise GradiendError(f"[gradients] {name} must be ≥ 1, got {getattr(self, name)}")
        if self.validation_dtype not in VALIDATION_DTYPES:
            raise GradiendError(f"[gradients] validation_dtype must be one of {sorted(VALIDATION_DTYPES)}, got "
                                f"{self.validation_dtype!r}")
        if self.validation_storage not in VALIDATION_STORAGES:
            raise GradiendError(f"[gradients] validation_storage must be one of {VALIDATION_STORAGES}, got "
                                f"{self.validation_storage!r}")


def select(lm: LoadedModel, params: Sequence[str] = (), layers: Sequence[int] | None = None) -> ParamSelection:
    """The parameters whose gradients the GRADIEND sees (whole backbone unless narrowed)."""
    return select_parameters(lm.model, list(params) or None, layers)


def train_gradiend(
    lm: LoadedModel,
    data: FeatureData,
    selection: ParamSelection,
    gradients: GradientConfig | None = None,
    train: TrainConfig | None = None,
    *,
    task: Task | None = None,
    progress: bool = True,
    memory_plan: str | Path | None = None,
    checkpoint: Checkpointer | None = None,
) -> FitResult:
    """Train a GRADIEND for ``task`` (default: the data set's two classes) on ``lm``'s selected parameters.

    A data set with more than two classes needs a ``task`` (e.g. ``Task.pair("3SG", "3PL")``): which classes form
    the positive and the negative group, which transitions train it and which classes enter as identity rows.
    Before any gradient, the run's memory plan is logged (and written to ``memory_plan`` when given) and a run
    that cannot fit its devices is refused (:meth:`gradiend.memory.MemoryPlan.check`).
    With a ``checkpoint``, training saves its state there when due and resumes from a checkpoint found there.
    """
    gradients = gradients or GradientConfig()
    train = train or TrainConfig()
    task = task or TaskConfig().resolve(data.feature.class_ids)
    task.check_classes(data.feature.class_ids)
    log.info("task %s: %s, %d transition(s), identity %s", task.name, task.describe_groups(), len(task.transitions),
             list(task.identity) or "none")
    device = gradiend_device(train.device)
    plan = training_plan(lm, data, task, selection, gradients, train, device)
    log.info("%s", plan.describe())
    if memory_plan is not None:
        plan.write(memory_plan)
    plan.check()  # before any gradient: a run that cannot fit stops here, not at step 1
    computer = GradientComputer(lm, selection, device=device)
    if gradients.pre_prune_topk is not None:
        selection = pre_prune(computer, data.pairs, task=task, source=train.source,
                              n_samples=gradients.pre_prune_samples, topk=gradients.pre_prune_topk,
                              seed=train.seeds[0])
        computer = GradientComputer(lm, selection, computer.objective, device)  # keeps the tokenization caches
    validation = validation_set(computer, data, task, gradients, train)
    def one_pass(index: int, skip: int) -> Iterator[GradientBatch]:  # with steps: one stream of `steps` batches
        return iter_training_batches(computer, data.pairs, task=task, batch_rows=gradients.rows_per_gradient,
                                     source=train.source, target=train.target, seed=train.seeds[0] + index,
                                     steps=train.steps, epochs=None if train.steps else 1, skip=skip)

    batches = _Passes(one_pass)
    meta = GradiendMeta(selection=selection, base_model=lm.name, model_family=lm.family.value,
                        classes=task.group_ids, task=task.to_dict())
    return fit(batches, input_dim=selection.input_dim, config=train, validation=validation,
               template_meta=meta, progress=progress, checkpoint=checkpoint)


def _evaluations(steps: int | None, eval_every: int) -> float:
    """In-training evaluations of one phase: step 0, every ``eval_every`` steps, the last step."""
    if steps is None:
        return math.inf  # epochs: unknown length, long enough that storing pays
    return 1 + steps // eval_every + (1 if steps % eval_every else 0)


def validation_storage(n_rows: int, input_dim: int, gradients: GradientConfig, train: TrainConfig) -> str:
    """"stored" or "forward" for the validation encodings (the rule, for ``validation_storage = "auto"``).

    Stored gradients cost one per-row gradient each (:data:`STORED_OVER_FORWARD_COST` forward-mode units) once
    and ``n_rows × input_dim`` values of memory; forward mode costs one unit per row, per seed and per
    evaluation (training: 1 + steps / eval_every, all seeds; post-prune: one seed). "auto" stores when the
    matrix fits :data:`gradiend.gradients.batches.VALIDATION_MAX_BYTES` and costs less than forward mode.
    """
    if gradients.validation_storage != "auto":
        return gradients.validation_storage
    units = len(train.seeds) * _evaluations(train.steps, train.eval_every)
    if train.post_prune_topk is not None:
        units += _evaluations(train.post_prune_steps or 0, train.eval_every) if train.post_prune_steps else 1
    need = n_rows * input_dim * VALIDATION_DTYPES[gradients.validation_dtype].itemsize
    return "stored" if need <= VALIDATION_MAX_BYTES and units > STORED_OVER_FORWARD_COST else "forward"


def validation_set(computer: GradientComputer, data: FeatureData, task: Task,
                   gradients: GradientConfig, train: TrainConfig) -> ValidationSet:
    """The validation rows as stored gradients or as forward-mode projections (:func:`validation_storage`)."""
    rows, labels = validation_rows(data.pairs, task=task, source=train.source,
                                   max_rows=gradients.validation_rows, seed=train.seeds[0])
    storage = validation_storage(len(rows), computer.input_dim, gradients, train)
    log.info("validation encodings of %d rows over %d dimensions: %s", len(rows), computer.input_dim,
             "stored per-row gradients" if storage == "stored" else "forward-mode w_e·g at every evaluation")
    if storage == "stored":
        x_val, y_val = validation_gradients(computer, data.pairs, task=task, source=train.source,
                                            max_rows=gradients.validation_rows, seed=train.seeds[0],
                                            dtype=VALIDATION_DTYPES[gradients.validation_dtype])
        return ValidationSet.from_tensors(x_val, y_val)

    def project(weight: torch.Tensor) -> torch.Tensor:  # (K, n) → (rows, K)
        return torch.stack([directional_derivatives(computer.lm.model, computer.objective, computer.selection, rows,
                                                    train.source, w) for w in weight.detach().float().cpu()], dim=1)

    return ValidationSet(project=project, labels=labels, input_dim=computer.input_dim)


class _Passes:
    """A re-iterable gradient stream: each iteration is one fresh pass (epoch), reshuffled with its own seed.

    ``fit`` runs ``epochs`` passes over a re-iterable stream; the gradients themselves are computed lazily.
    ``seek(pass, skip)`` makes the next iteration pass number ``pass`` from its ``skip``-th batch on, without
    computing the skipped gradients (``fit`` seeks before every pass; a resumed run seeks mid-pass).
    """

    def __init__(self, make: Callable[[int, int], Iterator[GradientBatch]]) -> None:
        self._make = make
        self._passes = 0
        self._skip = 0

    def seek(self, passes: int, skip: int) -> None:
        self._passes, self._skip = passes, skip

    def __iter__(self) -> Iterator[GradientBatch]:
        index, skip = self._passes, self._skip
        self._passes, self._skip = index + 1, 0
        return self._make(index, skip)


def gradiend_memory(input_dim: int, train: TrainConfig) -> int:
    """Bytes of training: every seed's GRADIEND with gradient, AdamW state and best checkpoint (seeds side by side)."""
    return memory_estimate(input_dim, train.latent_dim, train.torch_dtype) * 5 // 4 * len(train.seeds)


def training_plan(lm: LoadedModel, data: FeatureData, task: Task, selection: ParamSelection,
                  gradients: GradientConfig, train: TrainConfig, device: str) -> MemoryPlan:
    """The memory plan of :func:`train_gradiend` (:mod:`gradiend.memory`), from sizes only: no gradient computed.

    The GRADIEND's n is the pre-pruned count when ``pre_prune_topk`` is set; the validation storage follows the
    same rule as the run (:func:`validation_storage`).
    """
    full = selection.input_dim
    n = topk_count(gradients.pre_prune_topk, full) if gradients.pre_prune_topk is not None else full
    rows, _ = validation_rows(data.pairs, task=task, source=train.source, max_rows=gradients.validation_rows,
                              seed=train.seeds[0])
    stored = validation_storage(len(rows), n, gradients, train) == "stored"
    model = lm.model
    params = selection.parameters(model)
    selected: dict[str, int] = {}
    for p in params:
        selected[device_name(p.device)] = selected.get(device_name(p.device), 0) + p.numel()
    kinds = needed_kinds(train.source, train.target)
    shape = TrainingShape(
        weights=bytes_by_device([*model.parameters(), *model.buffers()]),
        selected_numel=selected,
        model_itemsize=params[0].element_size(),
        activation_bytes=activation_bytes(model, gradients.rows_per_gradient * _tokens_per_row(lm, data, task)),
        input_dim=n, full_dim=full, pre_prune=n < full,
        n_flat=len(kinds) + ("diff" in (train.source, train.target)) + (train.torch_dtype != torch.float32),
        seeds=len(train.seeds), latent_dim=train.latent_dim, gradiend_itemsize=train.torch_dtype.itemsize,
        gradiend_device=device_name(device), validation_rows=len(rows),
        validation_itemsize=VALIDATION_DTYPES[gradients.validation_dtype].itemsize if stored else None,
        batched_backward=len(kinds) > 1 and sum(p.numel() for p in params) >= BATCHED_BACKWARD_MIN_PARAMS,
    )
    return plan_training(shape)


def _tokens_per_row(lm: LoadedModel, data: FeatureData, task: Task, sample: int = 64) -> int:
    """Tokens one row feeds the forward pass: mean length of up to ``sample`` train rows (a causal LM scores the
    factual and the alternative continuation: two sequences)."""
    texts = [t for rows in task.rows(data.pairs, "train").values() for t in rows["masked"].head(sample)][:sample]
    if not texts:
        return 0
    lengths = [len(ids) for ids in lm.tokenizer(texts, add_special_tokens=True)["input_ids"]]
    per_sequence = math.ceil(sum(lengths) / len(lengths)) + 2  # the target word's pieces
    return per_sequence * (2 if lm.family is ModelFamily.CAUSAL else 1)
