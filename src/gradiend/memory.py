"""The memory plan of a training run: what each device will hold, estimated before any gradient is computed.

A GRADIEND over n input dimensions trains 3n + 1 parameters per seed with AdamW state and a best-checkpoint copy;
its input is an n-vector per batch; stored validation gradients are a rows × n matrix; the base model holds its
weights, its activations for one batch and the autograd gradients of the selected parameters. Every one of these
sizes is known from the configuration, so :func:`plan_training` sums them per device, compares them with each
device's free memory (``torch.cuda.mem_get_info`` on a GPU, ``MemAvailable`` on the host) and
:meth:`MemoryPlan.check` refuses a run that cannot fit with the largest item and concrete ways out, instead of
failing at step 1 or at the first evaluation.

Items belong to a *phase*: ``all`` (alive for the whole stage), ``pre-prune`` (the full-selection importance
vectors, freed before the GRADIEND exists) or ``training``; a device's peak is its ``all`` items plus its larger
phase. Items already in memory when the plan is made (the loaded base model) are ``resident``: they count in the
peak but not against the free memory, which already excludes them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from gradiend.errors import GradiendError
from gradiend.io import write_json

log = logging.getLogger(__name__)

#: share of a device's free memory a plan may fill (the rest: allocator fragmentation, the CUDA context, Python)
HEADROOM = 0.9
#: activation elements kept for the backward pass per token and layer: ``a·hidden + b·intermediate``, plus
#: EMBEDDING_BUFFERS dense buffers of the input-embedding matrix's size (its dense gradient and the LM head's
#: working memory). Calibrated on CPU, float32, 16 rows, all backbone parameters: the peak of one factual +
#: alternative gradient minus the autograd gradients and flat vectors was 1.05 GB on SmolLM2-135M (1152 planned
#: tokens) and 55 MB on SPLADE-tiny (544 tokens); these factors give 1.03 GB and 53 MB.
ACTIVATION_HIDDEN_FACTOR = 4.6
ACTIVATION_INTERMEDIATE_FACTOR = 1.5
EMBEDDING_BUFFERS = 3
PHASES = ("all", "pre-prune", "training")
#: float32 n-vectors per seed alive during one training step (measured on the tiny models: 3.7-4.3), and the
#: extra ones of a bfloat16 GRADIEND (its output and gradients upcast for the float32 loss; measured 2.5-4.2)
STEP_VECTORS = 4
STEP_CAST_VECTORS = 3


@dataclass(frozen=True)
class MemoryItem:
    """One thing a device holds during training, in bytes."""

    name: str
    device: str
    bytes: int
    phase: str = "all"
    resident: bool = False  # already allocated when the plan was made (the loaded base model)


@dataclass(frozen=True)
class MemoryPlan:
    """The items of a run per device, each device's free memory (None: unknown) and the fit check."""

    items: tuple[MemoryItem, ...]
    free: Mapping[str, int | None]

    @property
    def devices(self) -> list[str]:
        return sorted({i.device for i in self.items})

    def peak(self, device: str, *, new_only: bool = False) -> int:
        """Bytes ``device`` holds at its peak (``new_only``: without what is already resident)."""
        mine = [i for i in self.items if i.device == device and not (new_only and i.resident)]
        always = sum(i.bytes for i in mine if i.phase == "all")
        return always + max((sum(i.bytes for i in mine if i.phase == p) for p in PHASES[1:]), default=0)

    @property
    def total(self) -> int:
        return sum(self.peak(d) for d in self.devices)

    def largest(self, device: str | None = None) -> MemoryItem:
        """The biggest item (on ``device`` if given)."""
        return max((i for i in self.items if device is None or i.device == device), key=lambda i: i.bytes)

    def overfull(self) -> list[str]:
        """Devices whose new allocations exceed :data:`HEADROOM` of their free memory."""
        return [d for d in self.devices
                if self.free.get(d) is not None and self.peak(d, new_only=True) > HEADROOM * self.free[d]]

    def check(self) -> None:
        """Raise a :class:`GradiendError` naming the largest item and the ways out when a device cannot fit."""
        full = self.overfull()
        if not full:
            return
        device = full[0]
        big = self.largest(device)
        raise GradiendError(
            f"the run does not fit on {device}: it needs about {_gib(self.peak(device, new_only=True))} more but only "
            f"{_gib(self.free[device] or 0)} are free; the largest item is {big.name} ({_gib(big.bytes)}). "
            f"Ways out: {_ways_out(big)}\n{self.describe()}"
        )

    def describe(self) -> str:
        """A table: one line per item, a peak and free line per device."""
        lines = ["memory plan (GiB):"]
        for device in self.devices:
            free = self.free.get(device)
            lines.append(f"  {device}: peak {self.peak(device) / 2**30:.2f}, free "
                         f"{'unknown' if free is None else f'{free / 2**30:.2f}'}")
            for i in sorted((i for i in self.items if i.device == device), key=lambda i: -i.bytes):
                lines.append(f"    {i.name:<40} {i.bytes / 2**30:8.3f}  ({i.phase}{', loaded' if i.resident else ''})")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "devices": {d: {"peak_bytes": self.peak(d), "free_bytes": self.free.get(d)} for d in self.devices},
            "total_bytes": self.total,
            "fits": not self.overfull(),
            "headroom": HEADROOM,
            "items": [asdict(i) for i in self.items],
        }

    def write(self, path: str | Path) -> Path:
        """The plan as JSON (``metrics/memory_plan.json`` of a run), written atomically."""
        return write_json(Path(path), self.to_json())


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _ways_out(item: MemoryItem) -> str:
    by_item = {
        "base model": "load the base model in bfloat16 ([model] dtype = \"bfloat16\") or shard it over several GPUs "
                      "([model] device = \"shard\")",
        "validation": "store the validation gradients in bfloat16 ([gradients] validation_dtype), use "
                      "validation_storage = \"forward\" or fewer validation_rows",
        "activations": "lower [gradients] rows_per_gradient or use bfloat16 weights",
    }
    first = next((v for k, v in by_item.items() if item.name.startswith(k)), None)
    general = ("pre-prune the selection ([gradients] pre_prune_topk, e.g. 0.01), narrow [model] params/layers, "
               "train fewer seeds, use a bfloat16 GRADIEND ([train] dtype) or put it on another device ([train] device)")
    return f"{first}; or {general}" if first else general


# --- free memory ---------------------------------------------------------------------------------


def free_bytes(device: str) -> int | None:
    """Free memory of ``device`` now: ``torch.cuda.mem_get_info`` for a GPU, MemAvailable for the host."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev.index or 0)[0])
    if dev.type == "cpu":
        return _mem_available()
    return None


def _mem_available() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# --- the items of a training run -----------------------------------------------------------------


@dataclass(frozen=True)
class TrainingShape:
    """Everything :func:`plan_training` needs, in sizes (no model code): filled by :mod:`gradiend.stages`.

    ``selected_numel`` counts the selected parameters' entries per device (their autograd gradients);
    ``input_dim`` is the GRADIEND's n after pre-pruning, ``full_dim`` before it.
    """

    weights: Mapping[str, int]  # base model weight bytes per device
    selected_numel: Mapping[str, int]
    model_itemsize: int
    activation_bytes: int  # one batch's forward + backward working memory (:func:`activation_bytes`)
    input_dim: int
    full_dim: int
    pre_prune: bool
    n_flat: int  # n-vectors alive per training batch (factual, alternative, diff, casts)
    seeds: int
    latent_dim: int
    gradiend_itemsize: int
    gradiend_device: str
    validation_rows: int
    validation_itemsize: int | None  # None: forward-mode validation, nothing stored
    batched_backward: bool


def plan_training(shape: TrainingShape, free: Mapping[str, int | None] | None = None) -> MemoryPlan:
    """The per-device items of a training stage of ``shape``; ``free`` defaults to each device's free memory now."""
    items = [*_base_items(shape), *_gradiend_items(shape), *_validation_items(shape)]
    devices = sorted({i.device for i in items})
    free = dict(free) if free is not None else {d: free_bytes(d) for d in devices}
    return MemoryPlan(tuple(i for i in items if i.bytes > 0), free)


def _base_items(s: TrainingShape) -> Iterable[MemoryItem]:
    weights_total = sum(s.weights.values()) or 1
    grads_per_backward = 2 if s.batched_backward else 1
    for device, nbytes in s.weights.items():
        yield MemoryItem("base model weights", device, nbytes, resident=True)
        share = nbytes / weights_total  # activations spread like the layers (and so the weights) do
        yield MemoryItem("activations of one batch", device, int(s.activation_bytes * share))
    for device, numel in s.selected_numel.items():
        yield MemoryItem("autograd gradients", device, numel * s.model_itemsize * grads_per_backward, "training")
        if s.pre_prune:  # one mean gradient at a time
            yield MemoryItem("autograd gradients", device, numel * s.model_itemsize, "pre-prune")


def _gradiend_items(s: TrainingShape) -> Iterable[MemoryItem]:
    params = s.seeds * (2 * s.input_dim * s.latent_dim + s.latent_dim + s.input_dim)
    dev, size = s.gradiend_device, s.gradiend_itemsize
    yield MemoryItem("GRADIEND weights", dev, params * size, "training")
    yield MemoryItem("optimizer state (grad + AdamW moments)", dev, 3 * params * size, "training")
    yield MemoryItem("best checkpoints", dev, params * size, "training")
    # dec(enc(x)), its difference to the target, the squared error and their gradients: n-vectors per seed, in
    # float32 even for a bfloat16 GRADIEND (measured: the CPU kernels upcast)
    vectors = STEP_VECTORS + (STEP_CAST_VECTORS if size != 4 else 0)
    yield MemoryItem("training step working memory", dev, vectors * s.seeds * s.input_dim * 4, "training")
    yield MemoryItem("flat gradient vectors", dev, s.n_flat * s.input_dim * 4, "training")
    if s.pre_prune:  # a mean gradient, the running sum, the partial sort's copy (float32) and two masks (bool)
        yield MemoryItem("pre-prune importance vectors", "cpu", 3 * s.full_dim * 4 + 2 * s.full_dim, "pre-prune")


def _validation_items(s: TrainingShape) -> Iterable[MemoryItem]:
    if s.validation_itemsize is None:
        return
    nbytes = s.validation_rows * s.input_dim * s.validation_itemsize
    yield MemoryItem("validation gradients (stored)", "cpu", nbytes, "training")
    if s.validation_itemsize != s.gradiend_itemsize or s.gradiend_device != "cpu":
        chunk_rows = max(1, min(512, (256 * 2**20) // max(4 * s.input_dim, 1)))
        rows = min(chunk_rows, s.validation_rows)
        yield MemoryItem("validation chunk (cast)", s.gradiend_device, rows * s.input_dim * s.gradiend_itemsize,
                         "training")


def activation_bytes(model: Any, tokens: int) -> int:
    """Forward + backward working memory of one batch of ``tokens`` tokens (see the factors above)."""
    config = model.config
    hidden = _first_attr(config, ("hidden_size", "n_embd", "d_model", "dim"), 768)
    layers = _first_attr(config, ("num_hidden_layers", "n_layer", "num_layers", "n_layers"), 12)
    inner = _first_attr(config, ("intermediate_size", "n_inner", "ffn_dim", "hidden_dim"), None) or 4 * hidden
    embedding = model.get_input_embeddings().weight
    per_token = (ACTIVATION_HIDDEN_FACTOR * hidden + ACTIVATION_INTERMEDIATE_FACTOR * inner) * layers
    return int((per_token * tokens + EMBEDDING_BUFFERS * embedding.numel()) * embedding.element_size())


def _first_attr(config: Any, names: tuple[str, ...], default: int | None) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return default


def bytes_by_device(tensors: Iterable[torch.Tensor]) -> dict[str, int]:
    """Bytes of ``tensors`` per device (``cuda:0``, ``cpu``); each storage counted once (tied weights)."""
    seen: set[int] = set()
    out: dict[str, int] = {}
    for t in tensors:
        key = t.data_ptr()
        if key in seen or t.device.type == "meta":
            continue
        seen.add(key)
        name = device_name(t.device)
        out[name] = out.get(name, 0) + t.numel() * t.element_size()
    return out


def device_name(device: torch.device | str) -> str:
    """``cuda:0`` for a bare ``cuda``, ``cpu`` for the host: the keys of a plan."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda:{dev.index if dev.index is not None else torch.cuda.current_device()}"
    return dev.type
