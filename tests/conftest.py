"""Shared fixtures: tiny random models with real tokenizers (fast) and the packaged real models (slow).

Tests force CPU and offline mode: nothing here may reach the Hugging Face hub. Session-scoped models are
shared across tests; a test that edits weights must restore them (or use the ``make_tiny`` factory).
"""

from __future__ import annotations

import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["MPLBACKEND"] = "Agg"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from gradiend import assets
from gradiend.lm.load import LoadedModel, from_model, load_model


@pytest.fixture(scope="session")
def bert_tokenizer():
    """The real uncased WordPiece tokenizer of the packaged SPLADE-tiny model."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(assets.resolve("offline:splade-tiny"))


@pytest.fixture(scope="session")
def causal_tokenizer():
    """The real byte-level BPE tokenizer of the packaged SmolLM2 model (GPT-2 style, leading-space tokens)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(assets.resolve("offline:smollm2-135m"))
    return tok


def _tiny(kind: str, bert_tokenizer, causal_tokenizer, seed: int = 0) -> LoadedModel:
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(seed)
    if kind == "bert":
        cfg = BertConfig(
            vocab_size=len(bert_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=128,
        )
        return from_model(BertForMaskedLM(cfg), bert_tokenizer, name="tiny-bert")
    if kind == "gpt2":
        cfg = GPT2Config(
            vocab_size=len(causal_tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=128,
            bos_token_id=causal_tokenizer.bos_token_id, eos_token_id=causal_tokenizer.eos_token_id,
        )
        return from_model(GPT2LMHeadModel(cfg), causal_tokenizer, name="tiny-gpt2")
    if kind == "llama":
        cfg = LlamaConfig(
            vocab_size=len(causal_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128, tie_word_embeddings=True,
        )
        return from_model(LlamaForCausalLM(cfg), causal_tokenizer, name="tiny-llama")
    raise ValueError(kind)


@pytest.fixture(scope="session")
def make_tiny(bert_tokenizer, causal_tokenizer) -> Callable[..., LoadedModel]:
    """Factory for a fresh tiny random model: ``make_tiny("bert" | "gpt2" | "llama", seed=0)``."""
    return lambda kind, seed=0: _tiny(kind, bert_tokenizer, causal_tokenizer, seed)


def _saved_tiny(tmp_path_factory, make_tiny, name: str, seed: int) -> Path:
    path = tmp_path_factory.mktemp(name)
    lm = make_tiny("bert", seed=seed)
    lm.model.save_pretrained(path)
    lm.tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, make_tiny) -> Path:
    """A tiny random BERT (seed 3) saved as a Hugging Face model directory with its real tokenizer."""
    return _saved_tiny(tmp_path_factory, make_tiny, "tiny-bert", 3)


@pytest.fixture(scope="session")
def study_model_dir(tmp_path_factory, make_tiny) -> Path:
    """A tiny random BERT (seed 5) saved as a model directory: a study's base model, loadable by any process."""
    return _saved_tiny(tmp_path_factory, make_tiny, "tiny-bert-study", 5)


@pytest.fixture(scope="session")
def finished_tiny_run(tmp_path_factory, tiny_model_dir):
    """(config, run directory) of the whole pipeline on the tiny BERT (tests/test_pipeline.py's CONFIG).

    Shared: a test that damages it must leave it intact (re-run it) or work on a copy.
    """
    from gradiend.config import load_config
    from gradiend.pipeline import STAGES, run
    from test_pipeline import CONFIG

    out = tmp_path_factory.mktemp("finished-run")
    (out / "tiny.toml").write_text(CONFIG.format(out=out, model=tiny_model_dir))
    config = load_config(out / "tiny.toml")
    result = run(config, progress=False)
    assert result.ran == list(STAGES)
    return config, result.run_dir


@pytest.fixture(scope="session")
def tiny_bert(make_tiny) -> LoadedModel:
    return make_tiny("bert")


@pytest.fixture(scope="session")
def tiny_gpt2(make_tiny) -> LoadedModel:
    return make_tiny("gpt2")


@pytest.fixture(scope="session")
def tiny_llama(make_tiny) -> LoadedModel:
    return make_tiny("llama")


@pytest.fixture(params=["bert", "gpt2", "llama"])
def tiny_any(request, tiny_bert, tiny_gpt2, tiny_llama) -> LoadedModel:
    """Each tiny model in turn (one masked, two causal)."""
    return {"bert": tiny_bert, "gpt2": tiny_gpt2, "llama": tiny_llama}[request.param]


@pytest.fixture(scope="session")
def splade() -> LoadedModel:
    """The packaged SPLADE-tiny masked LM (real weights). Use in tests marked ``slow``."""
    return load_model("offline:splade-tiny")


@pytest.fixture(scope="session")
def smollm2() -> LoadedModel:
    """The packaged SmolLM2-135M causal LM (real weights). Use in tests marked ``slow``."""
    return load_model("offline:smollm2-135m")


@pytest.fixture(scope="session")
def wiki_path():
    """Path of the offline English Wikipedia JSON (an object of {title: {"extract": ...}})."""
    return assets.resolve("offline:wiki-en")
