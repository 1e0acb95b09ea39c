"""Which base model a GRADIEND belongs to, and the check that it is applied to that model.

A GRADIEND's input dimensions are positions inside named base-model parameters, so it is only meaningful on a
model whose selected parameters have the same names and shapes. The *identity* stored in a GRADIEND's config is
the base model's name plus a fingerprint (SHA-256) of the selected parameters' names and full shapes and the size
of the model's global index space. Applying a GRADIEND to a model whose fingerprint differs is an error that names
both models; a differing name alone (the same checkpoint loaded from a local copy, a fine-tune of the same
architecture) is only logged, since the shapes — what the arithmetic depends on — agree.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from gradiend.errors import GradiendError

log = logging.getLogger(__name__)


class BaseModelMismatchError(GradiendError):
    """A GRADIEND is applied to a model that is not (a copy of the architecture of) its base model."""


@dataclass(frozen=True)
class BaseModelIdentity:
    """Name and parameter fingerprint of a GRADIEND's base model (``config.json["base_model_identity"]``)."""

    name: str
    fingerprint: str
    total_params: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BaseModelIdentity:
        return cls(str(data.get("name", "")), str(data["fingerprint"]), int(data.get("total_params", 0)))


def fingerprint(shapes: Iterable[tuple[str, tuple[int, ...]]], total_params: int) -> str:
    """SHA-256 over ``name:shape`` of each selected parameter (in selection order) and the model's size."""
    digest = hashlib.sha256(f"total={int(total_params)}\n".encode())
    for name, shape in shapes:
        digest.update(f"{name}:{'x'.join(str(int(s)) for s in shape)}\n".encode())
    return digest.hexdigest()[:16]


def identity_of(name: str, selection: Any) -> BaseModelIdentity:
    """The identity a GRADIEND over ``selection`` (a :class:`~gradiend.lm.params.ParamSelection`) records."""
    shapes = [(s.name, tuple(s.shape)) for s in selection.specs]
    return BaseModelIdentity(name, fingerprint(shapes, selection.total_params), int(selection.total_params))


def model_name(lm_or_model: Any) -> str:
    """A model's name: a LoadedModel's spec, else the transformers ``name_or_path``, else its class name."""
    name = getattr(lm_or_model, "name", None)
    if isinstance(name, str) and hasattr(lm_or_model, "tokenizer"):
        return name
    return str(getattr(lm_or_model, "name_or_path", "") or type(lm_or_model).__name__)


def live_identity(lm_or_model: Any, names: Iterable[str], sized: bool = True) -> BaseModelIdentity:
    """The identity ``lm_or_model`` would have for a GRADIEND over the parameters ``names`` (missing: shape ()).

    ``sized=False`` leaves the model's size out (0), for selections that were built without one.
    """
    model = getattr(lm_or_model, "model", lm_or_model)
    params = dict(model.named_parameters())
    total = sum(p.numel() for p in params.values()) if sized else 0
    shapes = [(n, tuple(params[n].shape) if n in params else ()) for n in names]
    return BaseModelIdentity(model_name(lm_or_model), fingerprint(shapes, total), total)


_NOTED: set[tuple[str, str]] = set()  # (recorded, live) base-model names already logged as differing


def check_base_model(gradiend: Any, lm_or_model: Any) -> None:
    """Raise :class:`BaseModelMismatchError` unless ``lm_or_model`` matches ``gradiend``'s base model identity."""
    expected = gradiend_identity(gradiend)
    if expected is None:
        return
    live = live_identity(lm_or_model, gradiend.selection.names, sized=expected.total_params > 0)
    if live.fingerprint != expected.fingerprint:
        raise BaseModelMismatchError(
            f"this GRADIEND was trained on {expected.name or 'an unnamed model'!r} (parameter fingerprint "
            f"{expected.fingerprint}, {expected.total_params:,} parameters) but is applied to {live.name!r} "
            f"(fingerprint {live.fingerprint}, {live.total_params:,} parameters): the selected parameters' names or "
            "shapes differ; load the GRADIEND's base model (its config.json names it) and apply it to that"
        )
    if expected.name and live.name != expected.name and (expected.name, live.name) not in _NOTED:
        _NOTED.add((expected.name, live.name))  # once per process: the decoder applies a GRADIEND per cell
        log.info("GRADIEND base model %r applied to %r (same parameter fingerprint)", expected.name, live.name)


def gradiend_identity(gradiend: Any) -> BaseModelIdentity | None:
    """The identity a GRADIEND records: its base model's name and its selection's fingerprint (None: no selection).

    Derived from the selection, so GRADIENDs saved before identities were recorded are checked just the same.
    """
    if gradiend.selection is None:
        return None
    meta = getattr(gradiend, "meta", None)
    return identity_of(getattr(meta, "base_model", ""), gradiend.selection)
