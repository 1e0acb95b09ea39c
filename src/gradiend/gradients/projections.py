"""Directional derivatives w·∇θ L_i for many rows at once, by forward-mode automatic differentiation.

Encoding a row with a GRADIEND needs only ``w_e · g_i`` (then the activation), not the gradient ``g_i`` itself.
That number is the derivative of the row's loss along ``w_e`` in weight space, which forward-mode AD gives for
every row of a batch from ONE forward pass with dual numbers — instead of one backward pass per row. The selected
parameters are swapped for dual tensors (primal = the weight, tangent = ``w_e`` scattered onto the kept positions,
zeros elsewhere) in every module slot that holds them, so tied weights (a head sharing the embedding) carry the
tangent too.

Forward-mode AD needs every op on the path to support it: PyTorch's fused CPU attention kernels do not, so the
model runs with the "eager" attention implementation inside :func:`directional_derivatives` (restored after).
Eager attention computes the same function with a different summation order (relative differences ~1e-4).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.autograd.forward_ad as fwAD

from gradiend.gradients.types import GradientKind
from gradiend.lm.objectives import Objective, as_pair_rows
from gradiend.lm.params import ParamSelection


def _tangents(selection: ParamSelection, params: Sequence[torch.Tensor], direction: torch.Tensor) -> list[torch.Tensor]:
    """``direction`` (input space) scattered onto full-shaped zero tensors, one per selected parameter."""
    out = []
    for p, piece, kept in zip(params, selection.unflatten(direction), selection.kept, strict=True):
        piece = piece.to(device=p.device, dtype=p.dtype)
        if kept is None:
            out.append(piece.reshape(p.shape))
        else:
            full = torch.zeros(p.numel(), device=p.device, dtype=p.dtype)
            full[kept.to(p.device)] = piece
            out.append(full.reshape(p.shape))
    return out


@contextmanager
def _dual_parameters(model: torch.nn.Module, params: Sequence[torch.Tensor], tangents: Sequence[torch.Tensor]) -> Iterator[None]:
    """Within the block, every module slot holding a selected parameter holds its dual tensor instead."""
    duals = {id(p): fwAD.make_dual(p.detach(), t) for p, t in zip(params, tangents, strict=True)}
    swapped: list[tuple[torch.nn.Module, str, torch.nn.Parameter]] = []
    try:
        for module in model.modules():
            for name, p in list(module._parameters.items()):
                if p is not None and id(p) in duals:
                    swapped.append((module, name, p))
                    module._parameters[name] = duals[id(p)]
        yield
    finally:
        for module, name, p in swapped:
            module._parameters[name] = p


@contextmanager
def _eager_attention(model: Any) -> Iterator[None]:
    config = getattr(model, "config", None)
    previous = getattr(config, "_attn_implementation", None)
    if previous in (None, "eager") or not hasattr(model, "set_attn_implementation"):
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


@torch.no_grad()
def directional_derivatives(
    model: Any,
    objective: Objective,
    selection: ParamSelection,
    rows: Any,
    kind: GradientKind,
    direction: torch.Tensor,
    chunk: int = 16,
) -> torch.Tensor:
    """``direction · ∇θ L_i`` for each row (float32, CPU), where L_i is the row's ``kind`` loss.

    ``kind`` = factual / alternative (that token's −log P) or diff (factual − alternative), as in
    :class:`gradiend.gradients.GradientComputer`.
    """
    params = selection.parameters(model)
    tangents = _tangents(selection, params, direction.detach().float())
    pair_rows = as_pair_rows(rows)
    out = []
    with _eager_attention(model), fwAD.dual_level(), _dual_parameters(model, params, tangents):
        for start in range(0, len(pair_rows), chunk):
            factual, alternative = objective.row_losses(model, pair_rows[start : start + chunk])
            loss = factual if kind == "factual" else alternative if kind == "alternative" else factual - alternative
            out.append(fwAD.unpack_dual(loss).tangent.float().cpu())
    return torch.cat(out) if out else torch.zeros(0)
