"""Apply a GRADIEND direction to its base model: θ' = θ + α · dec(h) on the selected parameter positions.

:func:`edited` applies the update in place for the duration of a ``with`` block and then restores θ
*bit-identically* from a copy of the touched entries taken beforehand (``(θ + u) − u`` is not ``θ`` in
floating point, and a deep copy of the whole model per grid cell is what made the published package slow).
:func:`rewrite_model` writes θ' as a standard Hugging Face model directory (safetensors + tokenizer +
``gradiend_rewrite.json``) that plain ``AutoModelFor…LM.from_pretrained`` loads; the in-memory model is left as
it was.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch

from gradiend.constants import REWRITE_META_FILE
from gradiend.errors import GradiendError
from gradiend.identity import check_base_model
from gradiend.io import atomic_dir, write_json
from gradiend.lm.load import LoadedModel
from gradiend.lm.params import ParamSelection


class Direction(Protocol):
    """What a rewrite needs from a GRADIEND: its parameter selection and its decoder output."""

    selection: ParamSelection

    def update_vector(self, h: float | Sequence[float]) -> torch.Tensor:
        """dec(h), flat over the selection's input dimensions."""
        ...


def _model_of(lm_or_model: LoadedModel | torch.nn.Module) -> torch.nn.Module:
    return lm_or_model.model if isinstance(lm_or_model, LoadedModel) else lm_or_model


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not math.isfinite(alpha):
        raise GradiendError(f"learning rate alpha must be a finite number, got {alpha}")
    return alpha


def update_vector(gradiend: Direction, h: float | Sequence[float]) -> torch.Tensor:
    """dec(h) as a detached 1-D tensor, checked against the selection's input dimension."""
    if gradiend.selection is None:
        raise GradiendError("this GRADIEND has no parameter selection: it is not tied to a base model")
    with torch.no_grad():
        vector = gradiend.update_vector(h).detach().reshape(-1)
    expected = gradiend.selection.input_dim
    if vector.numel() != expected:
        raise GradiendError(f"update vector has {vector.numel()} entries but the selection has {expected} inputs")
    return vector


def _snapshot(model: torch.nn.Module, selection: ParamSelection) -> list[torch.Tensor]:
    """Copies of the entries a rewrite will touch (whole tensor when all positions are kept)."""
    saved = []
    for p, kept in zip(selection.parameters(model), selection.kept, strict=True):
        flat = p.detach().view(-1)
        saved.append(flat.clone() if kept is None else flat.index_select(0, kept.to(p.device)))
    return saved


@torch.no_grad()
def _restore(model: torch.nn.Module, selection: ParamSelection, saved: list[torch.Tensor]) -> None:
    for p, kept, old in zip(selection.parameters(model), selection.kept, saved, strict=True):
        flat = p.view(-1)
        if kept is None:
            flat.copy_(old)
        else:
            flat.index_copy_(0, kept.to(p.device), old)


@contextmanager
def edited(
    lm_or_model: LoadedModel | torch.nn.Module, gradiend: Direction, h: float | Sequence[float], alpha: float
) -> Iterator[torch.nn.Module]:
    """Within the block the model has θ + α·dec(h) on the selected positions; afterwards exactly θ again.

    Yields the (same, edited) model. α = 0 touches nothing. Restoration also happens when the block raises. A
    model that is not the GRADIEND's base model (:func:`gradiend.identity.check_base_model`) is refused.
    """
    model = _model_of(lm_or_model)
    alpha = _check_alpha(alpha)
    if alpha == 0.0:
        yield model
        return
    check_base_model(gradiend, lm_or_model)
    vector = update_vector(gradiend, h)
    saved = _snapshot(model, gradiend.selection)
    try:
        gradiend.selection.add_to_model(model, vector, alpha)
        yield model
    finally:
        _restore(model, gradiend.selection, saved)


def rewrite_meta(
    lm: LoadedModel, h: float | Sequence[float], alpha: float, gradiend_path: str | Path | None, metrics: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Provenance written beside the rewritten weights."""
    return {
        "base_model": lm.name,
        "family": lm.family.value,
        "gradiend": str(gradiend_path) if gradiend_path is not None else None,
        "h": float(h) if isinstance(h, (int, float)) else [float(v) for v in h],
        "alpha": float(alpha),
        "formula": "theta' = theta + alpha * dec(h) on the GRADIEND's selected parameters",
        "metrics": dict(metrics or {}),
    }


def rewrite_model(
    lm: LoadedModel,
    gradiend: Direction,
    h: float | Sequence[float],
    alpha: float,
    out_dir: str | Path,
    metrics: Mapping[str, Any] | None = None,
    gradiend_path: str | Path | None = None,
) -> Path:
    """Write θ + α·dec(h) to ``out_dir`` as a Hugging Face model directory; return the directory.

    The directory holds safetensors weights, the config, the tokenizer and ``gradiend_rewrite.json``
    (base model, GRADIEND path, h, α, ``metrics``). It appears atomically: an interrupted write leaves the
    previous directory (or none). The in-memory ``lm`` is unchanged afterwards.
    """
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp, edited(lm, gradiend, h, alpha) as model:
        model.save_pretrained(tmp, safe_serialization=True)
        lm.tokenizer.save_pretrained(tmp)
        write_json(tmp / REWRITE_META_FILE, rewrite_meta(lm, h, alpha, gradiend_path, metrics))
    return out_dir


def rewrite_selected(
    lm: LoadedModel,
    gradiend: Direction,
    selected: Mapping[str, Any],
    out_dir: str | Path,
    gradiend_path: str | Path | None = None,
    force: bool = False,
) -> Path:
    """Save the rewrite a decoder evaluation selected (one ``decoder.json["selected"]`` entry).

    Refuses an entry marked ``useful: false`` (no cell beat the base model under the LMS constraint) unless
    ``force``: saving it would present an unchanged or damaged model as a rewrite.
    """
    if not selected.get("useful", False) and not force:
        reason = selected.get("reason", "the decoder evaluation found no useful rewrite")
        raise GradiendError(f"not saving a rewrite: {reason} (pass force=True to save it anyway)")
    kept = ("metric", "value", "base_value", "shift", "lms", "base_lms", "lms_ratio", "lms_ratio_ci", "useful", "reason")
    metrics = {k: selected[k] for k in kept if k in selected}
    return rewrite_model(lm, gradiend, selected["h"], selected["alpha"], out_dir, metrics, gradiend_path)
