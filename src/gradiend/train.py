"""Training a GRADIEND from a stream of gradient batches; the loop knows nothing about the language model.

``fit`` consumes :class:`~gradiend.gradients.types.GradientBatch` values (one AdamW step each), minimising the
MSE between dec(enc(source)) and target. Several seeds train side by side on the same stream: the gradients are
the expensive part and do not depend on the GRADIEND's seed, so each batch is computed once and fed to K
independent GRADIENDs (one optimizer over all of them; per-seed results are identical to single-seed runs).
Seeds therefore differ only in the GRADIEND's initialisation, never in the data or its order.

Every ``eval_every`` steps all seeds encode the validation gradients at once (one matrix product per chunk);
the Pearson correlation of the encodings with the ±1 labels picks each seed's best checkpoint, which is kept
as an in-memory copy (nothing is written per step). At the end each seed is sign-normalised (positive class →
+1), judged for convergence, and the best converged seed is returned, optionally post-pruned.

Post-pruning to the top-k decoder dimensions costs some encoding quality (on P1, 1 % of the dimensions:
validation correlation 0.9997 → 0.991). ``post_prune_steps`` > 0 continues training the pruned GRADIEND on the
same stream restricted to the kept dimensions, from the pruned weights, and keeps its best checkpoint
(evaluated from step 0, so the fine-tune never returns something worse on the validation set than the plain
pruned model). These steps are logged with ``phase = "post-prune"``.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from gradiend.checkpoint import CheckpointConfig, Checkpointer, Snapshot
from gradiend.devices import gradiend_device
from gradiend.errors import GradiendError
from gradiend.gradients.types import GradientBatch, GradientKind
from gradiend.model import ACTIVATIONS, ODD_ACTIVATIONS, Gradiend, GradiendMeta, activation_name, topk_count

_KINDS = ("factual", "alternative", "diff")
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the GRADIEND training loop (the rows per gradient belong to the gradient stage).

    ``steps`` = number of optimizer steps (the batches are re-iterated as needed; ``epochs`` is then ignored);
    None = ``epochs`` passes over the batches. A seed converges when, at its best checkpoint (step > 0),
    |corr| ≥ ``min_correlation`` and the two class means have opposite signs with |mean| ≥ ``min_class_mean``.
    ``post_prune_topk`` (int count or float fraction) keeps the top dimensions by decoder-weight importance;
    ``post_prune_steps`` more optimizer steps then fine-tune the pruned GRADIEND on the kept dimensions.
    """

    source: GradientKind = "alternative"
    target: GradientKind = "diff"
    lr: float = 1e-5
    weight_decay: float = 0.01
    latent_dim: int = 1
    activation_encoder: str = "tanh"
    activation_decoder: str = "id"
    steps: int | None = None
    epochs: int = 1
    eval_every: int = 20
    seeds: tuple[int, ...] = (0,)
    min_correlation: float = 0.5
    min_class_mean: float = 0.5
    fail_on_no_convergence: bool = False
    post_prune_topk: int | float | None = None
    post_prune_steps: int = 0
    post_prune_lr: float | None = None
    dtype: str = "float32"
    # where, not what: not fingerprinted; "auto" = the last GPU, else the CPU (gradiend.devices.gradiend_device)
    device: str = field(default="auto", metadata={"fingerprint": False})
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig, metadata={"fingerprint": False})

    def __post_init__(self) -> None:
        for name in ("source", "target"):
            if getattr(self, name) not in _KINDS:
                raise GradiendError(f"{name} must be one of {_KINDS}, got {getattr(self, name)!r}")
        if self.dtype not in _DTYPES:
            raise GradiendError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise GradiendError(f"seeds must be a non-empty tuple of distinct ints, got {self.seeds!r}")
        _check_positive(lr=self.lr, eval_every=self.eval_every, epochs=self.epochs, latent_dim=self.latent_dim)
        if self.post_prune_lr is not None:
            _check_positive(post_prune_lr=self.post_prune_lr)
        if self.steps is not None:
            _check_positive(steps=self.steps)
        if self.post_prune_topk is not None:
            topk_count(self.post_prune_topk, 1)
        if self.post_prune_steps < 0 or (self.post_prune_steps and self.post_prune_topk is None):
            raise GradiendError(f"post_prune_steps must be ≥ 0 and needs post_prune_topk; got {self.post_prune_steps} "
                                f"with post_prune_topk={self.post_prune_topk!r}")
        activation_name(self.activation_encoder)
        activation_name(self.activation_decoder)

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]


@dataclass(frozen=True)
class ValidationSet:
    """Validation rows (of the configured *source* kind) and their labels (+1 / −1 / 0): stored or projected.

    Stored: ``chunks`` is called once per evaluation and yields ``(x, labels)`` with x of shape (rows, n); a large
    model can stream chunks from disk. ``from_tensors`` wraps gradients already in memory.
    Projected: ``project`` maps the encoder weights of all seeds (K, n) to ``w · g_i`` per row (rows, K) without
    any g_i being stored (forward-mode AD, :func:`gradiend.stages.validation_set`); ``labels`` holds the labels.
    """

    chunks: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]] | None = None
    project: Callable[[torch.Tensor], torch.Tensor] | None = None
    labels: torch.Tensor | None = None
    input_dim: int = 0  # with ``project``: the n of the weights it takes

    @classmethod
    def from_tensors(cls, x: torch.Tensor, labels: torch.Tensor, chunk_rows: int | None = None) -> ValidationSet:
        """Chunks of ``chunk_rows`` rows (default: about 256 MiB of float32 each, since a bfloat16 ``x`` is
        upcast one chunk at a time for the encodings)."""
        if x.dim() != 2 or labels.shape != (x.shape[0],):
            raise GradiendError(f"validation x must be (rows, n) with one label per row; got {tuple(x.shape)}, "
                                f"{tuple(labels.shape)}")
        rows = chunk_rows or max(1, min(512, (256 * 2**20) // max(4 * x.shape[1], 1)))
        return cls(lambda: zip(x.split(rows), labels.split(rows), strict=True))


@dataclass(frozen=True)
class Scores:
    """Validation scores of one seed at one step (latent dimension 0)."""

    correlation: float
    mean_pos: float
    mean_neg: float

    def flipped(self) -> Scores:
        return Scores(-self.correlation, -self.mean_pos, -self.mean_neg)


@dataclass(frozen=True)
class SeedReport:
    """One seed's outcome, in the orientation of the returned (sign-normalised) GRADIEND."""

    seed: int
    best_step: int
    correlation: float | None
    mean_pos: float | None
    mean_neg: float | None
    converged: bool
    flipped: bool


@dataclass(frozen=True)
class FitResult:
    """The selected GRADIEND, every seed's best checkpoint, a seed report and the evaluation log.

    ``log`` follows the ``metrics/training.jsonl`` schema; ``best`` marks each seed's selected checkpoint and
    all values are in the orientation of the returned GRADIENDs.
    """

    gradiend: Gradiend
    best_seed: int
    seeds: tuple[SeedReport, ...]
    log: tuple[dict[str, Any], ...]
    models: Mapping[int, Gradiend] = field(repr=False)

    @property
    def converged(self) -> bool:
        """Whether the selected seed converged."""
        return next(r for r in self.seeds if r.seed == self.best_seed).converged


def fit(
    batches: Iterable[GradientBatch],
    *,
    input_dim: int,
    config: TrainConfig | None = None,
    validation: ValidationSet | None = None,
    template_meta: GradiendMeta | None = None,
    progress: bool = True,
    checkpoint: Checkpointer | None = None,
) -> FitResult:
    """Train one GRADIEND per seed on ``batches`` and return the best converged one (see module docstring).

    ``template_meta`` supplies the base model, parameter selection and classes; ``fit`` fills in source,
    target, class directions and the training summary. Without ``validation`` the last step is kept, no sign
    normalisation happens and no seed counts as converged. A NaN/inf loss raises :class:`GradiendError`.
    Memory: ``memory_estimate(n) + n·(3 params)`` bytes per seed (the best-checkpoint copy).

    With a ``checkpoint``, the loop's whole state is saved whenever it is due and training resumes from a
    checkpoint found there (the gradient stream continues at the saved position; the result equals an
    uninterrupted run's). The post-prune fine-tune is short and is redone on resume.
    """
    config = config if config is not None else TrainConfig()
    config = replace(config, device=gradiend_device(config.device))
    meta = replace(template_meta or GradiendMeta(), source=config.source, target=config.target)
    run = _Run([_new_model(input_dim, config, meta, seed) for seed in config.seeds], config, validation)
    snapshot = checkpoint.load() if checkpoint is not None else None
    if snapshot is not None:
        run.restore(snapshot)
    _loop(run, batches, config, input_dim, progress, desc="GRADIEND", checkpoint=checkpoint)
    _check_length(run.step, config)
    result = _finish(run, config)
    if config.post_prune_topk is None:
        return result
    return _post_prune(result, batches, config, validation, input_dim, progress, offset=run.step,
                       start=run.position.next_pass())


def _loop(run: _Run, batches: Iterable[GradientBatch], config: TrainConfig, input_dim: int, progress: bool,
          desc: str, keep: torch.Tensor | None = None, checkpoint: Checkpointer | None = None) -> None:
    """Evaluate at step 0, then one optimizer step per batch (restricted to ``keep``), evaluating as configured.

    A run restored from a checkpoint continues after its step (its step-0 evaluation is in the restored log).
    """
    bar = tqdm(total=_total_steps(batches, config), initial=run.step, disable=not progress, desc=desc, unit="step")
    if run.step == 0:
        run.evaluate(step=0, bar=bar)
    stream = _iter_batches(batches, config, run.position) if not _finished(run, config) else iter(())
    for batch in stream:
        source, target = _source_target(batch, config, input_dim)
        if keep is not None:
            source, target = source[keep], (target[keep] if target is not source else source[keep])
        run.train_step(source, target)
        if run.step % config.eval_every == 0:
            run.evaluate(run.step, bar)
        bar.update(1)
        if checkpoint is not None and checkpoint.due(run.step):
            checkpoint.save(run.snapshot())
        if _finished(run, config):
            break
    bar.close()
    if run.last_eval != run.step:
        run.evaluate(run.step, bar)


def _finished(run: _Run, config: TrainConfig) -> bool:
    return config.steps is not None and run.step >= config.steps


def _post_prune(result: FitResult, batches: Iterable[GradientBatch], config: TrainConfig,
                validation: ValidationSet | None, input_dim: int, progress: bool, offset: int,
                start: StreamPosition) -> FitResult:
    """Prune the selected GRADIEND to its top-k decoder dimensions; fine-tune it for ``post_prune_steps``.

    The pruned model is scored on the validation set (restricted to the kept dimensions) either way, so the
    summary records what pruning cost; the fine-tune's log entries continue the step count after ``offset``.
    """
    keep = torch.sort(result.gradiend.topk(config.post_prune_topk)).values  # type: ignore[arg-type]
    pruned = result.gradiend.prune(keep)
    sub = replace(config, seeds=(result.best_seed,), steps=config.post_prune_steps or None, epochs=1,
                  lr=_post_prune_lr(config, result.gradiend.input_dim, pruned.input_dim),
                  post_prune_topk=None, post_prune_steps=0, post_prune_lr=None)
    run = _Run([pruned], sub, _restricted(validation, keep), start)
    if config.post_prune_steps:
        _loop(run, batches, sub, input_dim, progress, desc="post-prune fine-tune", keep=keep.to(config.device))
        if run.step < config.post_prune_steps:
            raise GradiendError(
                f"post-prune fine-tuning got {run.step} of {config.post_prune_steps} batches: the gradient stream "
                "was used up by training (pass a re-iterable stream, e.g. a list, or set post_prune_steps = 0)"
            )
    else:
        run.evaluate(0, tqdm(disable=True))
    report = _restore_and_orient(run, 0, sub)
    first = run.log[0]
    summary = dict(pruned.meta.training)
    summary["post_prune"] = {
        "topk": config.post_prune_topk, "input_dim": pruned.input_dim, "steps": run.step,
        "lr": sub.lr, "correlation_after_prune": first["correlation"],
        "best_step": offset + report.best_step if config.post_prune_steps else summary["best_step"],
        "correlation": report.correlation, "mean_pos": report.mean_pos, "mean_neg": report.mean_neg,
    }
    pruned.meta = replace(pruned.meta, training=summary)
    log = list(result.log)
    if config.post_prune_steps:
        log = [dict(e, best=e["best"] and e["seed"] != result.best_seed) for e in log]  # the pruned model is the pick
        log += [dict(e, step=offset + e["step"], phase="post-prune") for e in _final_log(run.log, [report])]
    return replace(result, gradiend=pruned, log=tuple(log))


def _post_prune_lr(config: TrainConfig, before: int, after: int) -> float:
    """``post_prune_lr``, or by default ``lr · before / after``.

    Adam moves every weight by about lr per step whatever its gradient's size, so an encoding (a sum over the
    input dimensions) changes by about lr · n per step: on n/100 dimensions, the same lr would re-fit the
    encoder 100 times slower than it was fitted.
    """
    return config.post_prune_lr if config.post_prune_lr is not None else config.lr * before / max(after, 1)


def _restricted(validation: ValidationSet | None, keep: torch.Tensor) -> ValidationSet | None:
    """The validation set on the kept input dimensions only."""
    if validation is None:
        return None
    if validation.project is not None:
        full_dim = validation.input_dim

        def project(weight: torch.Tensor) -> torch.Tensor:  # zeros on the pruned dimensions: w·g over kept ones
            full = weight.new_zeros(weight.shape[0], full_dim)
            full[:, keep.to(weight.device)] = weight
            return validation.project(full)

        return ValidationSet(project=project, labels=validation.labels, input_dim=keep.numel())
    return ValidationSet(lambda: ((x[:, keep.to(x.device)], y) for x, y in validation.chunks()))


# --- the loop's state ----------------------------------------------------------------------------


@dataclass
class StreamPosition:
    """Where the loop is in the gradient stream: passes finished and batches taken from the current pass."""

    passes: int = 0
    in_pass: int = 0

    def next_pass(self) -> StreamPosition:
        """The start of the pass after the current one (a pass left part-way is not continued)."""
        return StreamPosition(self.passes + (1 if self.in_pass else 0), 0)


class _Run:
    """K seeds' models, one optimizer over all of them, the loss since the last evaluation, and the best copies."""

    def __init__(self, models: list[Gradiend], config: TrainConfig, validation: ValidationSet | None,
                 position: StreamPosition | None = None) -> None:
        self.models, self.config, self.validation = models, config, validation
        self.seeds = config.seeds
        self.optimizer = _optimizer([p for m in models for p in m.parameters()], config)
        self.position = position or StreamPosition()
        self.step, self.last_eval = 0, -1
        self.loss_sum = torch.zeros(len(models), dtype=torch.float64, device=models[0].device)
        self.loss_count = 0
        self.best: list[tuple[int, Scores | None, dict[str, torch.Tensor]] | None] = [None] * len(models)
        self.log: list[dict[str, Any]] = []

    def train_step(self, source: torch.Tensor, target: torch.Tensor) -> None:
        """One AdamW step for every seed on the same (source, target); the summed loss keeps seeds independent.

        The squared error is reduced in float32 whatever the GRADIEND's dtype (a bfloat16 mean over 10^7 entries
        would lose the small per-entry errors that carry the signal).
        """
        self.optimizer.zero_grad(set_to_none=True)
        target32 = target.float()
        losses = torch.stack([F.mse_loss(m(source)[0].float(), target32) for m in self.models])
        losses.sum().backward()
        self.optimizer.step()
        self.loss_sum += losses.detach().double()
        self.loss_count += 1
        self.step += 1

    def evaluate(self, step: int, bar: Any) -> None:
        """Log the mean loss since the last evaluation, score the validation set, update best checkpoints."""
        losses = self._take_losses(step)
        scores = _evaluate(self.models, self.validation) if self.validation is not None else None
        for k, seed in enumerate(self.seeds):
            s = scores[k] if scores is not None else None
            self._update_best(k, step, s)
            self.log.append(_log_entry(step, seed, losses[k] if losses else None, s))
        self.last_eval = step
        bar.set_postfix(_postfix(losses, scores), refresh=False)

    def _take_losses(self, step: int) -> list[float] | None:
        if self.loss_count == 0:
            return None
        losses = (self.loss_sum / self.loss_count).tolist()
        bad = [seed for seed, v in zip(self.seeds, losses, strict=True) if not torch.isfinite(torch.tensor(v))]
        if bad:
            raise GradiendError(
                f"training loss became NaN/inf by step {step} (seeds {bad}); check the gradients for NaN/inf, "
                "lower the learning rate, or train in float32"
            )
        self.loss_sum.zero_()
        self.loss_count = 0
        return losses

    def _update_best(self, k: int, step: int, scores: Scores | None) -> None:
        """Keep a copy when |corr| strictly improves (no validation: always the latest step)."""
        current = self.best[k]
        if current is not None and scores is not None and abs(scores.correlation) <= abs(current[1].correlation):
            return
        state = {name: t.detach().clone() for name, t in self.models[k].state_dict().items()}
        self.best[k] = (step, scores, state)

    def snapshot(self) -> Snapshot:
        """Everything the loop needs to continue exactly from here (see :mod:`gradiend.checkpoint`)."""
        tensors = {"loss_sum": self.loss_sum}
        for k, (m, best) in enumerate(zip(self.models, self.best, strict=True)):
            tensors.update({f"model.{k}.{n}": t for n, t in m.state_dict().items()})
            tensors.update({f"best.{k}.{n}": t for n, t in (best[2] if best else {}).items()})
        for idx, entry in self.optimizer.state_dict()["state"].items():
            tensors.update({f"optim.{idx}.{key}": t for key, t in entry.items()})
        best = [None if b is None else {"step": b[0], "scores": asdict(b[1]) if b[1] else None} for b in self.best]
        state = {"step": self.step, "last_eval": self.last_eval, "loss_count": self.loss_count, "best": best,
                 "position": [self.position.passes, self.position.in_pass], "log": self.log, "seeds": list(self.seeds)}
        return Snapshot(tensors, state)

    def restore(self, snapshot: Snapshot) -> None:
        """Continue from a :meth:`snapshot` (of the same configuration)."""
        t, s = snapshot.tensors, snapshot.state
        if s["seeds"] != list(self.seeds):
            raise GradiendError(f"the checkpoint is of seeds {s['seeds']}, this training of {list(self.seeds)}")
        device = self.models[0].device
        with torch.no_grad():
            for k, m in enumerate(self.models):
                m.load_state_dict(_prefixed(t, f"model.{k}.", device))
        self.best = [None if b is None else (b["step"], Scores(**b["scores"]) if b["scores"] else None,
                                             _prefixed(t, f"best.{k}.", device)) for k, b in enumerate(s["best"])]
        optim: dict[int, dict[str, torch.Tensor]] = {}
        for name, tensor in t.items():
            if name.startswith("optim."):
                _, idx, key = name.split(".", 2)
                optim.setdefault(int(idx), {})[key] = tensor
        groups = self.optimizer.state_dict()["param_groups"]
        self.optimizer.load_state_dict({"state": optim, "param_groups": groups})
        self.loss_sum = t["loss_sum"].to(device)
        self.step, self.last_eval, self.loss_count = s["step"], s["last_eval"], s["loss_count"]
        self.position = StreamPosition(*s["position"])
        self.log = list(s["log"])


def _prefixed(tensors: Mapping[str, torch.Tensor], prefix: str, device: torch.device) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v.to(device) for k, v in tensors.items() if k.startswith(prefix)}


def _new_model(input_dim: int, config: TrainConfig, meta: GradiendMeta, seed: int) -> Gradiend:
    return Gradiend(
        input_dim, config.latent_dim, config.activation_encoder, config.activation_decoder, meta=meta,
        dtype=config.torch_dtype, device=config.device, seed=seed,
    )


def _optimizer(params: list[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with the fused kernel where torch has one for the device, else the multi-tensor one."""
    fused = torch.device(config.device).type in ("cpu", "cuda")
    kernel = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, **kernel)


# --- the gradient stream -------------------------------------------------------------------------


def _iter_batches(batches: Iterable[GradientBatch], config: TrainConfig,
                  position: StreamPosition) -> Iterator[GradientBatch]:
    """``epochs`` passes, or (with ``steps``) as many passes as needed; a one-shot iterator gives one pass.

    Starts at ``position`` and advances it as batches are taken (a checkpoint records it).
    """
    reiterable = iter(batches) is not batches
    if config.steps is None and config.epochs > 1 and not reiterable:
        raise GradiendError("epochs > 1 needs re-iterable batches (a list or a cached store), not an iterator")
    passes = config.epochs if config.steps is None else None
    while passes is None or position.passes < passes:
        skipped = position.in_pass
        empty = True
        for batch in _one_pass(batches, position):
            empty = False
            position.in_pass += 1
            yield batch
        position.passes, position.in_pass = position.passes + 1, 0
        if (empty and not skipped) or not reiterable:
            return


def _one_pass(batches: Iterable[GradientBatch], position: StreamPosition) -> Iterator[GradientBatch]:
    """The current pass from ``position.in_pass`` on: a seekable stream skips without computing the batches."""
    seek = getattr(batches, "seek", None)
    if seek is not None:
        seek(position.passes, position.in_pass)
        return iter(batches)
    return itertools.islice(iter(batches), position.in_pass, None)


def _total_steps(batches: Iterable[GradientBatch], config: TrainConfig) -> int | None:
    if config.steps is not None:
        return config.steps
    return len(batches) * config.epochs if hasattr(batches, "__len__") else None  # type: ignore[arg-type]


def _check_length(steps: int, config: TrainConfig) -> None:
    if steps == 0:
        raise GradiendError("no gradient batches to train on: the gradient stage produced nothing")
    if config.steps is not None and steps < config.steps:
        warnings.warn(
            f"the gradient stream ended after {steps} of {config.steps} steps (a one-shot iterator is not "
            "re-iterated)", stacklevel=3,
        )


def _source_target(batch: GradientBatch, config: TrainConfig, input_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's source and target gradients on the training device and dtype."""
    source = _to_device(batch.get(config.source), config, input_dim)
    if config.target == config.source:
        return source, source
    return source, _to_device(batch.get(config.target), config, input_dim)


def _to_device(x: torch.Tensor, config: TrainConfig, input_dim: int) -> torch.Tensor:
    if x.shape != (input_dim,):
        raise GradiendError(f"gradient batch has shape {tuple(x.shape)}, expected ({input_dim},)")
    return x.to(device=config.device, dtype=config.torch_dtype, non_blocking=True)


# --- evaluation ----------------------------------------------------------------------------------


@torch.no_grad()
def _evaluate(models: list[Gradiend], validation: ValidationSet) -> list[Scores]:
    """Scores of every seed: each validation chunk is encoded by all seeds in one matrix product."""
    weight = torch.cat([m.encoder_weight[:1] for m in models])  # (K, n), latent dimension 0
    bias = torch.cat([m.encoder_bias[:1] for m in models])
    act = ACTIVATIONS[models[0].activation_encoder]
    if validation.project is not None:
        z = validation.project(weight).to(device=weight.device, dtype=weight.dtype)
        return _scores(act(z + bias).double().cpu(), validation.labels.double().cpu())
    encodings, labels = [], []
    for x, y in validation.chunks():
        x = x.to(device=weight.device, dtype=weight.dtype)
        if x.dim() != 2 or x.shape[1] != weight.shape[1] or y.shape != (x.shape[0],):
            raise GradiendError(f"validation chunk must be (rows, {weight.shape[1]}) with one label per row")
        encodings.append(act(F.linear(x, weight, bias)).double().cpu())
        labels.append(y.double().cpu())
    return _scores(torch.cat(encodings), torch.cat(labels))


def _scores(enc: torch.Tensor, labels: torch.Tensor) -> list[Scores]:
    """Pearson correlation with the labels (0 when either is constant) and the ±1 class means, per column."""
    pos, neg = labels > 0, labels < 0
    if not torch.isfinite(enc).all():
        raise GradiendError("validation encodings are NaN/inf: check the validation gradients for NaN/inf")
    if not (pos.any() and neg.any()):
        raise GradiendError("the validation set needs rows of both classes (labels +1 and −1)")
    ec, yc = enc - enc.mean(0), labels - labels.mean()
    denom = ec.norm(dim=0) * yc.norm()
    corr = torch.where(denom > 0, (ec * yc[:, None]).sum(0) / denom.clamp_min(1e-300), torch.zeros_like(denom))
    mean_pos, mean_neg = enc[pos].mean(0), enc[neg].mean(0)
    return [Scores(float(c), float(p), float(n)) for c, p, n in zip(corr, mean_pos, mean_neg, strict=True)]


def _log_entry(step: int, seed: int, loss: float | None, s: Scores | None) -> dict[str, Any]:
    return {
        "step": step, "seed": seed, "loss": loss,
        "correlation": s.correlation if s else None,
        "mean_pos": s.mean_pos if s else None,
        "mean_neg": s.mean_neg if s else None,
        "best": False, "phase": "train",
    }


def _postfix(losses: list[float] | None, scores: list[Scores] | None) -> dict[str, str]:
    out = {}
    if losses:
        out["loss"] = "/".join(f"{v:.3g}" for v in losses)
    if scores:
        out["corr"] = "/".join(f"{s.correlation:+.3f}" for s in scores)
    return out


# --- the end of training -------------------------------------------------------------------------


def _finish(run: _Run, config: TrainConfig) -> FitResult:
    """Restore best checkpoints, sign-normalise, judge convergence, pick a seed."""
    reports = [_restore_and_orient(run, k, config) for k in range(len(run.models))]
    log = _final_log(run.log, reports)
    chosen = _select(reports)
    if config.fail_on_no_convergence and not any(r.converged for r in reports):
        raise GradiendError(_no_convergence_message(reports, config))
    k = [r.seed for r in reports].index(chosen.seed)
    summary = _summary(run, config, reports, chosen)
    for m in run.models:
        m.meta = replace(m.meta, training=summary)
    selected = run.models[k]
    models = dict(zip(run.seeds, run.models, strict=True))
    return FitResult(selected, chosen.seed, tuple(reports), tuple(log), models)


def _restore_and_orient(run: _Run, k: int, config: TrainConfig) -> SeedReport:
    """Load seed k's best checkpoint; flip it (odd encoder activation) so the positive class encodes to +1.

    The decision uses latent dimension 0 (the one evaluated); with d > 1 all dimensions flip together, which is
    still an exact equivalence. A non-odd encoder cannot be flipped: its stored directions record the measured
    orientation instead, so ``strengthen_h`` stays correct.
    """
    step, scores, state = run.best[k]  # type: ignore[misc]
    model = run.models[k]
    model.load_state_dict(state)
    flipped = scores is not None and scores.correlation < 0
    directions = _directions(model.meta.classes, -1 if flipped else 1)
    model.meta = replace(model.meta, directions=directions)
    if flipped and model.activation_encoder in ODD_ACTIVATIONS:
        model.flip_sign()  # weights and stored directions flip together
        scores = scores.flipped()
    else:
        flipped = False
    converged = scores is not None and _converged(step, scores, config)
    values = asdict(scores) if scores is not None else dict.fromkeys(("correlation", "mean_pos", "mean_neg"))
    return SeedReport(run.seeds[k], step, **values, converged=converged, flipped=flipped)


def _directions(classes: tuple[str, str] | None, sign: int) -> dict[str, int]:
    return {} if classes is None else {classes[0]: sign, classes[1]: -sign}


def _converged(step: int, s: Scores, config: TrainConfig) -> bool:
    return (
        step > 0
        and abs(s.correlation) >= config.min_correlation
        and s.mean_pos * s.mean_neg < 0
        and min(abs(s.mean_pos), abs(s.mean_neg)) >= config.min_class_mean
    )


def _select(reports: list[SeedReport]) -> SeedReport:
    """The converged seed with the highest validation |corr|; among none converged, the highest |corr|."""
    pool = [r for r in reports if r.converged] or reports
    return max(pool, key=lambda r: abs(r.correlation) if r.correlation is not None else -1.0)


def _final_log(log: list[dict[str, Any]], reports: list[SeedReport]) -> list[dict[str, Any]]:
    """Mark each seed's best checkpoint and express flipped seeds' values in their final orientation."""
    by_seed = {r.seed: r for r in reports}
    out = []
    for entry in log:
        r = by_seed[entry["seed"]]
        e = dict(entry, best=entry["step"] == r.best_step)
        if r.flipped:
            e.update({k: -e[k] for k in ("correlation", "mean_pos", "mean_neg") if e[k] is not None})
        out.append(e)
    return out


def _summary(run: _Run, config: TrainConfig, reports: list[SeedReport], chosen: SeedReport) -> dict[str, Any]:
    """JSON-compatible training summary stored on the GRADIEND (config.json ``training``)."""
    return {
        "seed": chosen.seed,
        "best_step": chosen.best_step,
        "steps": run.step,
        "correlation": chosen.correlation,
        "mean_pos": chosen.mean_pos,
        "mean_neg": chosen.mean_neg,
        "converged": chosen.converged,
        "evaluated": run.validation is not None,
        "input_dim": run.models[0].input_dim,
        "seeds": [asdict(r) for r in reports],
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
    }


def _no_convergence_message(reports: list[SeedReport], config: TrainConfig) -> str:
    if all(r.correlation is None for r in reports):
        return "no seed converged: convergence needs a validation set (fit(..., validation=...))"
    rows = "; ".join(
        f"seed {r.seed}: best step {r.best_step}, corr {r.correlation}, means {r.mean_pos}/{r.mean_neg}"
        for r in reports
    )
    return (
        f"no seed converged (need |corr| ≥ {config.min_correlation}, class means of opposite sign with "
        f"|mean| ≥ {config.min_class_mean}, best step > 0): {rows}. Try more steps, a higher learning rate, "
        "more seeds, or more training rows per gradient"
    )


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not value > 0:
            raise GradiendError(f"{name} must be positive, got {value!r}")
