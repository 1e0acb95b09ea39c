"""The one place that loads a base language model and its tokenizer.

Accepted specs: a Hugging Face hub id, a local model directory, a ``.gguf`` file, or ``offline:<name>``
(see :mod:`gradiend.assets`). The model family (masked LM or causal LM) is detected from the checkpoint;
a checkpoint without a language-modelling head is refused, since GRADIEND needs the LM loss.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gradiend import assets
from gradiend._malloc import keep_freed_memory
from gradiend.devices import DeviceSpec, model_device, place
from gradiend.errors import GradiendError

log = logging.getLogger(__name__)


class ModelFamily(str, enum.Enum):
    """What the base model predicts: a masked token (BERT-like) or the next token (GPT-2/Llama-like)."""

    MASKED = "masked"
    CAUSAL = "causal"


@dataclass
class LoadedModel:
    """A base model in eval mode, its tokenizer, its family and the spec it was loaded from.

    ``mlm_head``: an auxiliary masked-LM head (:mod:`gradiend.lm.mlm_head`) that the gradient stages read the
    LM loss through instead of next-token prediction; None for the model's own objective.
    """

    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers.PreTrainedTokenizerBase
    family: ModelFamily
    name: str
    mlm_head: Any = None  # gradiend.lm.mlm_head.MLMHead

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


_MASKED_SUFFIXES = ("ForMaskedLM",)
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
_EXPECTED = "a masked LM (…ForMaskedLM) or a causal LM (…ForCausalLM / …LMHeadModel)"


def family_from_architectures(architectures: list[str] | None, spec: str) -> ModelFamily:
    """Family from ``config.architectures``; raises when the checkpoint has no LM head."""
    archs = architectures or []
    if any(a.endswith(_MASKED_SUFFIXES) for a in archs):
        return ModelFamily.MASKED
    if any(a.endswith(_CAUSAL_SUFFIXES) for a in archs):
        return ModelFamily.CAUSAL
    raise GradiendError(
        f"model {spec!r} has no language-modelling head (architectures: {archs or 'unknown'}); "
        f"gradiend needs {_EXPECTED}"
    )


def family_of(model: Any) -> ModelFamily:
    """Family of an already-instantiated Hugging Face model."""
    return family_from_architectures([type(model).__name__], type(model).__name__)


def from_model(model: Any, tokenizer: Any, name: str | None = None) -> LoadedModel:
    """Wrap a model and tokenizer the caller already has (e.g. built from a config in a test)."""
    model.eval()
    _check_vocab(model, tokenizer, name or type(model).__name__)
    return LoadedModel(model, tokenizer, family_of(model), name or getattr(model, "name_or_path", "") or "model")


def load_model(
    spec: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | Mapping[str, Any] = "cpu",
) -> LoadedModel:
    """Load ``spec`` (hub id, local dir, ``.gguf`` file or ``offline:<name>``) in eval mode.

    ``device`` is a device, ``"auto"`` (the first GPU, else the CPU), ``"shard"`` (spread over the GPUs) or an
    accelerate device map (:mod:`gradiend.devices`). Raises :class:`GradiendError` with a one-line message for a
    spec that is not a usable model. For a CPU model, glibc malloc is tuned once per process to reuse freed large
    blocks (:mod:`gradiend._malloc`).
    """
    placement = model_device(device if isinstance(device, Mapping) else str(device))
    if placement == "cpu":
        keep_freed_memory()
    spec_str = str(spec)
    if assets.is_offline_name(spec_str):
        asset = assets.get_asset(spec_str)
        if asset.kind != "model":
            raise GradiendError(f"{spec_str!r} is a text asset, not a model; offline models: {_offline_models()}")
        path = assets.resolve(spec_str)
    else:
        path = Path(spec_str).expanduser()

    if path.suffix == ".gguf":
        if not path.is_file():
            raise GradiendError(f"GGUF file {spec_str!r} does not exist")
        from gradiend.lm.gguf import load_gguf

        try:
            model, tokenizer = load_gguf(path, dtype=dtype)
        except (ValueError, KeyError, IndexError, OSError) as exc:  # the reader's errors for a malformed file
            raise GradiendError(f"{spec_str} cannot be read as a GGUF model ({exc}); pass an intact .gguf file, "
                                "a model directory or a hub id") from None
        return _finish(place(model, placement, dtype), tokenizer, spec_str)

    if path.is_file():
        raise GradiendError(
            f"{spec_str!r} is a file, not a model; pass a model directory, a .gguf file, a hub id or offline:NAME"
        )
    if path.is_dir() and not (path / "config.json").is_file():
        raise GradiendError(f"directory {spec_str!r} is not a Hugging Face model directory (no config.json)")
    return _load_hf(str(path) if path.is_dir() else spec_str, spec_str, dtype, placement)


def _load_hf(source: str, spec: str, dtype: torch.dtype, placement: DeviceSpec) -> LoadedModel:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(source)
    except OSError as exc:
        raise GradiendError(
            f"cannot load model {spec!r}: not a local directory and not reachable as a hub id ({exc.__class__.__name__})"
        ) from exc
    family = family_from_architectures(getattr(config, "architectures", None), spec)
    auto = AutoModelForMaskedLM if family is ModelFamily.MASKED else AutoModelForCausalLM
    model, info = auto.from_pretrained(source, dtype=dtype, output_loading_info=True)
    missing = [k for k in info.get("missing_keys", []) if _is_head_key(k)]
    if missing:
        raise GradiendError(
            f"model {spec!r} lacks trained LM-head weights ({', '.join(sorted(missing)[:3])}); gradiend needs {_EXPECTED}"
        )
    tokenizer = AutoTokenizer.from_pretrained(source)
    return _finish(place(model, placement, dtype), tokenizer, spec)


def _is_head_key(key: str) -> bool:
    return key.startswith(("cls.", "lm_head.", "lm_head", "vocab_", "generator_lm_head", "pred_layer"))


def _finish(model: Any, tokenizer: Any, spec: str) -> LoadedModel:
    model.eval()
    family = family_of(model)
    _check_vocab(model, tokenizer, spec)
    if family is ModelFamily.MASKED and tokenizer.mask_token is None:
        raise GradiendError(f"masked LM {spec!r} has a tokenizer without a mask token")
    log.info("loaded %s (%s LM, %.1fM parameters)", spec, family.value, _n_params(model) / 1e6)
    return LoadedModel(model, tokenizer, family, spec)


def _check_vocab(model: Any, tokenizer: Any, spec: str) -> None:
    n_embed = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > n_embed:
        raise GradiendError(
            f"tokenizer of {spec!r} has {len(tokenizer)} tokens but the model embeds only {n_embed}: "
            "model and tokenizer do not belong together"
        )


def _n_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def _offline_models() -> str:
    return ", ".join(assets.PREFIX + a.name for a in assets.ASSETS.values() if a.kind == "model")
