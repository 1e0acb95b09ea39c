"""Where the base model and the GRADIEND live: ``auto`` placement, explicit devices, and sharded base models.

``[model] device`` and ``[train] device`` default to ``"auto"``:

- no GPU: both on the CPU;
- one GPU: both on ``cuda:0`` (the GRADIEND is small next to the base model once pre-pruned);
- two or more GPUs: the base model on ``cuda:0``, the GRADIEND on the last GPU (``cuda:1`` of two), so its weights, AdamW state and
  best checkpoints never compete with the base model's activations.

``[model] device = "shard"`` spreads a base model larger than one GPU over all GPUs with accelerate's
``device_map="auto"`` (with three or more GPUs the GRADIEND's GPU is left out of the map, as in the reference
package's 3-device layout); a dict maps module names to devices (an accelerate device map). Any explicit device
(``"cpu"``, ``"cuda:2"``) is taken as given. :func:`layer_device_map` builds a map that splits a model's layers over
a list of devices, which also runs on the CPU (every entry ``"cpu"``): the sharded code path (accelerate hooks,
per-shard gradient gathering, per-shard rewriting) is tested without a GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from gradiend._optional import require
from gradiend.errors import GradiendError

log = logging.getLogger(__name__)

AUTO = "auto"
SHARD = "shard"
DeviceSpec = str | Mapping[str, Any]


def gpu_count() -> int:
    """CUDA devices visible to this process."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def model_device(spec: DeviceSpec = AUTO) -> DeviceSpec:
    """The base model's placement: a device string, ``"shard"`` or a device map (dicts pass through)."""
    if isinstance(spec, Mapping):
        return dict(spec)
    if spec == AUTO:
        return "cuda:0" if gpu_count() else "cpu"
    if spec == SHARD:
        return SHARD if gpu_count() else "cpu"
    return _checked(spec)


def gradiend_device(spec: str = AUTO) -> str:
    """The GRADIEND's device: explicit, or (``auto``) the last GPU (``cuda:1`` of two), ``cuda:0`` of one, else CPU.

    The last GPU is the one :func:`shard_devices` leaves out of a sharded base model from three GPUs on.
    """
    if spec != AUTO:
        return _checked(spec)
    n = gpu_count()
    return f"cuda:{n - 1}" if n else "cpu"


def _checked(spec: str) -> str:
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError) as exc:
        raise GradiendError(f"unknown device {spec!r}; use \"auto\", \"cpu\", \"cuda\", \"cuda:N\" or "
                            "(for the base model) \"shard\"") from exc
    if device.type == "cuda" and (device.index or 0) >= gpu_count():
        raise GradiendError(f"device {spec!r} is not available: this machine has {gpu_count()} GPU(s); "
                            "use device = \"auto\"")
    return spec


def shard_devices(n_gpus: int | None = None) -> list[int]:
    """The GPUs a ``"shard"`` base model spreads over: all, except the GRADIEND's (the last) from three on."""
    n = gpu_count() if n_gpus is None else n_gpus
    return list(range(n - 1)) if n >= 3 else list(range(n))


def layer_device_map(model: torch.nn.Module, devices: Sequence[str | int]) -> dict[str, str | int]:
    """An accelerate device map that splits ``model``'s transformer layers into contiguous runs over ``devices``.

    Modules before the layers (embeddings) go with the first run, modules after them (final norm, LM head) with
    the last, except an LM head tied to the input embeddings, which stays with them (one tensor, one device). On
    the CPU every entry may be ``"cpu"``: the same hooks and per-shard code paths run.
    """
    if not devices:
        raise GradiendError("layer_device_map needs at least one device")
    layers_name, layers = _layer_list(model)
    per = -(-len(layers) // len(devices))
    out: dict[str, str | int] = {f"{layers_name}.{i}": devices[min(i // per, len(devices) - 1)]
                                 for i in range(len(layers))}
    parts = layers_name.split(".")
    for depth, on_path in enumerate(parts):  # siblings of each module on the path to the layer list
        parent = ".".join(parts[:depth])
        before = True
        for child, _ in (model.get_submodule(parent) if parent else model).named_children():
            if child == on_path:
                before = False
                continue
            out[f"{parent}.{child}" if parent else child] = devices[0] if before else devices[-1]
    head = _tied_head(model)
    for key in out:  # the map entry that holds a tied head (``lm_head``, BERT's ``cls``) goes with the embeddings
        if head is not None and (head == key or head.startswith(key + ".")):
            out[key] = devices[0]
    return out


def _tied_head(model: torch.nn.Module) -> str | None:
    """The qualified name of an output-embedding module that shares its weight with the input embeddings."""
    get_out, get_in = getattr(model, "get_output_embeddings", None), getattr(model, "get_input_embeddings", None)
    head = get_out() if callable(get_out) else None
    if head is None or not callable(get_in) or head.weight is not get_in().weight:
        return None
    return next((n for n, m in model.named_modules() if m is head), None)


def _layer_list(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """The model's largest ``ModuleList`` (its transformer layers) and its qualified name."""
    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m)]
    if not lists:
        raise GradiendError(f"{type(model).__name__} has no layer list to split over devices")
    return max(lists, key=lambda nm: len(nm[1]))


def dispatch(model: torch.nn.Module, device_map: Mapping[str, Any]) -> torch.nn.Module:
    """Place ``model``'s modules per ``device_map`` with accelerate hooks that move activations between shards.

    Hooks are attached even when every entry is the same device (``force_hooks``), so a CPU-only map exercises
    the sharded forward and backward.
    """
    accelerate = require("accelerate", "gguf", "sharding a base model over devices")
    tied = getattr(model, "_tied_weights_keys", None)
    accelerate_log = logging.getLogger("accelerate.big_modeling")
    level = accelerate_log.level
    if all(str(v) == "cpu" for v in device_map.values()):  # it warns of CPU offloading, which a CPU map never does
        accelerate_log.setLevel(logging.ERROR)
    try:
        model = accelerate.dispatch_model(model, device_map=dict(device_map), force_hooks=True)
    finally:
        accelerate_log.setLevel(level)
    if tied:
        model.tie_weights()
    return model


def auto_device_map(model: torch.nn.Module, dtype: torch.dtype) -> dict[str, Any]:
    """accelerate's balanced map of ``model`` over :func:`shard_devices` (layers kept whole)."""
    accelerate = require("accelerate", "gguf", "sharding a base model over devices")
    no_split = getattr(model, "_no_split_modules", None) or []
    gpus = shard_devices()
    max_memory = accelerate.utils.get_balanced_memory(model, dtype=dtype, no_split_module_classes=no_split,
                                                      max_memory={i: torch.cuda.mem_get_info(i)[0] for i in gpus})
    return accelerate.infer_auto_device_map(model, max_memory=max_memory, no_split_module_classes=no_split,
                                            dtype=dtype)


def place(model: torch.nn.Module, spec: DeviceSpec, dtype: torch.dtype) -> torch.nn.Module:
    """``model`` on a resolved placement (:func:`model_device`): one device, ``"shard"`` or a device map."""
    if isinstance(spec, Mapping):
        return dispatch(model, spec)
    if spec == SHARD:
        device_map = auto_device_map(model, dtype)
        log.info("base model sharded over %s", sorted({str(v) for v in device_map.values()}))
        return dispatch(model, device_map)
    return model.to(spec)


def parameter_devices(model: torch.nn.Module) -> list[str]:
    """The distinct devices ``model``'s parameters live on, in parameter order."""
    out: list[str] = []
    for p in model.parameters():
        name = str(p.device)
        if name not in out:
            out.append(name)
    return out
