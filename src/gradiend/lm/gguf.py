"""Convert a GGUF checkpoint into a plain float32 Hugging Face directory (the offline model cache)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from gradiend._optional import require
from gradiend.io import atomic_dir


def load_gguf(path: Path, dtype: torch.dtype = torch.float32):
    """Load model and tokenizer from a ``.gguf`` file, dequantized to ``dtype``; returns a plain model.

    transformers keeps a ``quantization_config`` on GGUF-loaded models and then refuses ``save_pretrained``;
    rebuilding the model from its config and loading the dequantized state dict strictly gives a plain one.
    """
    require("gguf", "gguf", "loading .gguf models")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.tie_weights()
    model.eval()
    return model, tokenizer


def convert_gguf(path: Path, target: Path, provenance: dict[str, str] | None = None) -> Path:
    """Write ``path`` (GGUF) as a safetensors model directory with its tokenizer at ``target``, atomically."""
    model, tokenizer = load_gguf(path)
    with atomic_dir(target) as tmp:
        tmp.chmod(0o755)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "gradiend_source.json").write_text(json.dumps({"gguf": path.name, **(provenance or {})}))
    return target
