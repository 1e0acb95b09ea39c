"""Parameter selection and the base model's global parameter index space.

The *global index space* of a base model is the concatenation of all its parameters, flattened, in
``model.named_parameters()`` order (tied weights counted once, under their first name). Every GRADIEND stores
the global index of each of its input dimensions, so GRADIENDs with different selections or pruning compare
in one space, and every index maps back to (parameter name, coordinate).

A :class:`ParamSelection` is the ordered list of selected parameters; the GRADIEND input vector is the
concatenation of the selected parameters' flattened gradients, optionally restricted to kept positions.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gradiend.errors import GradiendError


@dataclass(frozen=True)
class ParamSpec:
    """One selected base-model parameter and where it lives in the global index space."""

    name: str
    shape: tuple[int, ...]
    global_offset: int

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class ParamSelection:
    """Selected parameters in base-model order, plus the kept flat positions inside each (None = all).

    ``kept[i]`` holds sorted int64 positions into the flattened ``specs[i]``; the GRADIEND input dimension
    count is the sum of kept counts.
    """

    specs: tuple[ParamSpec, ...]
    kept: tuple[torch.Tensor | None, ...] = field(default=())
    total_params: int = 0  # size of the base model's global index space

    def __post_init__(self) -> None:
        if not self.kept:
            object.__setattr__(self, "kept", (None,) * len(self.specs))
        if len(self.kept) != len(self.specs):
            raise ValueError("kept must have one entry per selected parameter")

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def sizes(self) -> list[int]:
        """Number of GRADIEND input dimensions contributed by each selected parameter."""
        return [s.numel if k is None else int(k.numel()) for s, k in zip(self.specs, self.kept, strict=True)]

    @property
    def input_dim(self) -> int:
        return sum(self.sizes())

    def global_indices(self) -> torch.Tensor:
        """Global index of every input dimension, in input order (ascending, since specs are in model order)."""
        parts = []
        for spec, kept in zip(self.specs, self.kept, strict=True):
            local = torch.arange(spec.numel, dtype=torch.int64) if kept is None else kept
            parts.append(local + spec.global_offset)
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.int64)

    def restrict(self, keep: torch.Tensor) -> ParamSelection:
        """Keep only input dimensions ``keep`` (positions into the current input vector)."""
        keep = torch.as_tensor(keep, dtype=torch.int64).sort().values
        if keep.numel() and (keep[0] < 0 or keep[-1] >= self.input_dim):
            raise GradiendError(f"keep indices out of range for input_dim {self.input_dim}")
        bounds = torch.tensor([0, *torch.tensor(self.sizes()).cumsum(0).tolist()], dtype=torch.int64)
        cuts = torch.searchsorted(keep, bounds).tolist()  # keep is sorted: each parameter's keeps are one slice
        specs, kept = [], []
        for i, (spec, old) in enumerate(zip(self.specs, self.kept, strict=True)):
            if cuts[i] == cuts[i + 1]:
                continue
            sel = keep[cuts[i] : cuts[i + 1]] - int(bounds[i])
            specs.append(spec)
            kept.append(sel if old is None else old[sel])
        return ParamSelection(tuple(specs), tuple(kept), self.total_params)

    def locate(self, global_index: int) -> tuple[str, tuple[int, ...]]:
        """(parameter name, coordinate) of a global index that falls in a selected parameter."""
        for spec in self.specs:
            if spec.global_offset <= global_index < spec.global_offset + spec.numel:
                flat = global_index - spec.global_offset
                return spec.name, tuple(int(c) for c in torch.unravel_index(torch.tensor(flat), spec.shape))
        raise GradiendError(f"global index {global_index} is not in any selected parameter")

    def to_json(self) -> list[dict[str, Any]]:
        """Parameter map for config files (kept positions are stored separately as tensors)."""
        return [
            {"name": s.name, "shape": list(s.shape), "global_offset": s.global_offset, "selected": n}
            for s, n in zip(self.specs, self.sizes(), strict=True)
        ]

    def kept_tensors(self) -> dict[str, torch.Tensor]:
        """Kept positions keyed ``kept.<i>`` for parameters that are not fully selected (for safetensors)."""
        return {f"kept.{i}": k for i, k in enumerate(self.kept) if k is not None}

    @classmethod
    def from_json(cls, entries: Sequence[dict[str, Any]], kept: dict[str, torch.Tensor], total_params: int) -> ParamSelection:
        specs = tuple(ParamSpec(e["name"], tuple(e["shape"]), int(e["global_offset"])) for e in entries)
        kept_list = tuple(kept.get(f"kept.{i}") for i in range(len(specs)))
        return cls(specs, kept_list, total_params)

    # --- working with a live model -------------------------------------------------------------

    def parameters(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        """The selected parameter tensors of ``model`` (by name), in selection order."""
        named = dict(model.named_parameters())
        missing = [n for n in self.names if n not in named]
        if missing:
            raise GradiendError(
                f"base model has no parameter(s) {missing[:3]}: this GRADIEND belongs to a different model"
            )
        for spec in self.specs:
            if tuple(named[spec.name].shape) != tuple(spec.shape):
                raise GradiendError(
                    f"base model parameter {spec.name} has shape {tuple(named[spec.name].shape)} where the GRADIEND "
                    f"expects {tuple(spec.shape)}: this GRADIEND belongs to a different model"
                )
        return [named[n] for n in self.names]

    def flatten(
        self, tensors: Sequence[torch.Tensor], dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Per-parameter tensors (e.g. gradients) as one input vector (kept positions only), in ``dtype``, on
        ``device`` (default: the first tensor's).

        Writes each piece straight into one preallocated vector: no per-piece copies and no concatenation,
        which matters when the vector has 10^8 entries. The pieces of a sharded model are selected on their own
        device and copied device-to-device into the slice (no host round trip); the cast to ``dtype`` (float32
        for a bfloat16 model) happens in that copy.
        """
        if not tensors:
            return torch.empty(0, dtype=dtype or torch.float32)
        first = tensors[0]
        out = torch.empty(self.input_dim, dtype=dtype or first.dtype, device=device or first.device)
        start = 0
        for t, k, size in zip(tensors, self.kept, self.sizes(), strict=True):
            flat = t.reshape(-1)
            piece = flat if k is None else flat.index_select(0, k.to(t.device))
            out[start : start + size].copy_(piece, non_blocking=out.is_cuda)  # a GPU-to-host copy must block
            start += size
        return out

    def unflatten(self, vector: torch.Tensor) -> list[torch.Tensor]:
        """Split an input-space vector into per-parameter pieces (flat, kept positions only)."""
        return list(torch.split(vector, self.sizes()))

    @torch.no_grad()
    def add_to_model(self, model: torch.nn.Module, vector: torch.Tensor, scale: float = 1.0) -> None:
        """In place: θ[selected] += scale · vector (vector in input space).

        Each slice goes to its own parameter's device (the shard that holds it) and is added there in place.
        """
        for p, piece, k in zip(self.parameters(model), self.unflatten(vector), self.kept, strict=True):
            flat = p.view(-1)
            upd = piece.to(device=p.device, dtype=p.dtype) * scale
            if k is None:
                flat.add_(upd)
            else:
                flat.index_add_(0, k.to(p.device), upd)


def global_offsets(model: torch.nn.Module) -> tuple[dict[str, int], int]:
    """Offset of each parameter in the global index space, and its total size."""
    offsets, total = {}, 0
    for name, p in model.named_parameters():
        offsets[name] = total
        total += p.numel()
    return offsets, total


def backbone_names(model: torch.nn.Module) -> list[str]:
    """Names of the backbone parameters (embeddings, attention, MLP, norms); prediction heads excluded.

    A head tied to the input embeddings is covered by the embedding parameter, since ``named_parameters``
    lists a tied tensor once.
    """
    prefix = getattr(model, "base_model_prefix", "")
    backbone = getattr(model, prefix, None) if prefix else None
    if backbone is None:
        return [n for n, _ in model.named_parameters()]
    ids = {id(p) for p in backbone.parameters()}
    return [n for n, p in model.named_parameters() if id(p) in ids]


_LAYER_RE = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)\.")


def layer_of(name: str) -> int | None:
    """Transformer layer number in a parameter name (``encoder.layer.3.…`` → 3), or None."""
    m = _LAYER_RE.search(name)
    return int(m.group(1)) if m else None


def select_parameters(
    model: torch.nn.Module,
    patterns: Iterable[str] | None = None,
    layers: Iterable[int] | None = None,
    include_heads: bool = False,
) -> ParamSelection:
    """Select parameters: the backbone by default, narrowed by glob ``patterns`` and/or ``layers``.

    Patterns are shell-style globs over parameter names (``*.attention.*``, ``bert.encoder.layer.1.*``);
    a pattern that matches nothing is an error, as is an empty selection. Only the selected parameters get
    ``requires_grad=True``; all others are frozen.
    """
    offsets, total = global_offsets(model)
    pool = [n for n, _ in model.named_parameters()] if include_heads else backbone_names(model)
    chosen = pool
    if patterns:
        patterns = list(patterns)
        for pat in patterns:
            if not any(fnmatch.fnmatchcase(n, pat) for n in pool):
                raise GradiendError(f"parameter pattern {pat!r} matches no parameter; e.g. {pool[:3]}")
        chosen = [n for n in chosen if any(fnmatch.fnmatchcase(n, pat) for pat in patterns)]
    if layers is not None:
        wanted = set(layers)
        chosen = [n for n in chosen if layer_of(n) in wanted]
    if not chosen:
        raise GradiendError("parameter selection is empty: check the patterns and layer range")
    named = dict(model.named_parameters())
    specs = tuple(ParamSpec(n, tuple(named[n].shape), offsets[n]) for n in chosen)
    selection = ParamSelection(specs, total_params=total)
    set_requires_grad(model, selection)
    return selection


def set_requires_grad(model: torch.nn.Module, selection: ParamSelection) -> None:
    """``requires_grad`` exactly on the selected parameters (saves the backward pass the rest)."""
    chosen = set(selection.names)
    for n, p in model.named_parameters():
        p.requires_grad_(n in chosen)
