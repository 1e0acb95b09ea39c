"""Rewriting: α = 0 is the identity, θ' − θ = α·dec(h) exactly where selected, bit-identical restore, save/reload."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from gradiend.constants import REWRITE_META_FILE
from gradiend.errors import GradiendError
from gradiend.io import read_json
from gradiend.lm.params import ParamSelection, select_parameters
from gradiend.rewrite import edited, rewrite_model


@dataclass
class LinearDecoder:
    """A stand-in GRADIEND decoder built from real tensors: dec(h) = h·W_d + b_d (d = 1)."""

    selection: ParamSelection
    weight: torch.Tensor
    bias: torch.Tensor

    def update_vector(self, h: float) -> torch.Tensor:
        return h * self.weight + self.bias


def _decoder(selection: ParamSelection, seed: int = 0) -> LinearDecoder:
    g = torch.Generator().manual_seed(seed)
    n = selection.input_dim
    return LinearDecoder(selection, torch.randn(n, generator=g), 0.1 * torch.randn(n, generator=g))


def _kept_selection(model: torch.nn.Module) -> ParamSelection:
    """Two attention parameters, keeping every third position (exercises kept indices)."""
    full = select_parameters(model, patterns=["*.layer.0.attention.self.query.*"])
    return full.restrict(torch.arange(0, full.input_dim, 3))


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_identical(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), k
        assert after[k].view(-1).view(torch.int32).equal(v.view(-1).view(torch.int32)), k  # bits, incl. −0.0


def test_alpha_zero_is_identity(make_tiny):
    lm = make_tiny("bert", seed=1)
    dec = _decoder(_kept_selection(lm.model))
    before = _state(lm.model)
    with edited(lm, dec, h=1.0, alpha=0.0) as model:
        _assert_identical(model, before)
    _assert_identical(lm.model, before)


def test_update_equals_alpha_times_decoder_on_kept_positions_only(make_tiny):
    lm = make_tiny("bert", seed=2)
    sel = _kept_selection(lm.model)
    dec = _decoder(sel)
    h, alpha = -1.0, 0.5
    before = _state(lm.model)
    expected = {name: before[name].clone().view(-1) for name in sel.names}
    for name, kept, piece in zip(sel.names, sel.kept, sel.unflatten(dec.update_vector(h)), strict=True):
        expected[name][kept] += piece * alpha
    with edited(lm, dec, h, alpha) as model:
        now = model.state_dict()
        for k, v in before.items():
            if k in expected:
                assert torch.equal(now[k].view(-1), expected[k]), k
                changed = (now[k].view(-1) != v.view(-1)).nonzero().view(-1)
                assert set(changed.tolist()) <= set(sel.kept[sel.names.index(k)].tolist())
                assert changed.numel() > 0
            else:
                assert torch.equal(now[k], v), k
    _assert_identical(lm.model, before)


def test_restore_is_bit_identical_after_large_update_and_on_error(make_tiny):
    lm = make_tiny("gpt2", seed=3)
    sel = select_parameters(lm.model, patterns=["transformer.h.1.*"])
    dec = _decoder(sel, seed=5)
    before = _state(lm.model)
    with edited(lm.model, dec, h=1.0, alpha=123.456):
        assert not torch.equal(lm.model.transformer.h[1].mlp.c_fc.weight, before["transformer.h.1.mlp.c_fc.weight"])
    _assert_identical(lm.model, before)
    with pytest.raises(RuntimeError, match="boom"), edited(lm, dec, h=-1.0, alpha=7.0):
        raise RuntimeError("boom")
    _assert_identical(lm.model, before)


def test_bad_inputs_raise_gradiend_error(make_tiny):
    lm = make_tiny("bert", seed=4)
    sel = _kept_selection(lm.model)
    short = LinearDecoder(sel, torch.zeros(3), torch.zeros(3))
    with pytest.raises(GradiendError, match="update vector has 3 entries"), edited(lm, short, 1.0, 1.0):
        pass
    with pytest.raises(GradiendError, match="finite"), edited(lm, _decoder(sel), 1.0, float("nan")):
        pass


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_rewritten_model_reloads_with_plain_automodel(make_tiny, tmp_path, kind):
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    lm = make_tiny(kind, seed=6)
    sel = select_parameters(lm.model, layers=[0])
    dec = _decoder(sel, seed=7)
    text = "The cook said that she added pepper." if kind == "llama" else "the cook said that [MASK] added pepper."
    inputs = lm.tokenizer(text, return_tensors="pt")
    before = _state(lm.model)
    with edited(lm, dec, 1.0, 0.05) as model, torch.no_grad():
        expected = model(**inputs).logits.softmax(-1)
    out = rewrite_model(lm, dec, 1.0, 0.05, tmp_path / "rewritten", metrics={"lms": 0.5}, gradiend_path="run/gradiend")
    _assert_identical(lm.model, before)

    auto = AutoModelForMaskedLM if kind == "bert" else AutoModelForCausalLM
    reloaded = auto.from_pretrained(out).eval()
    with torch.no_grad():
        got = reloaded(**inputs).logits.softmax(-1)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)
    with torch.no_grad():
        base = lm.model(**inputs).logits.softmax(-1)
    assert not torch.allclose(base, expected, atol=1e-6, rtol=0)
    meta = read_json(out / REWRITE_META_FILE)
    assert meta["h"] == 1.0 and meta["alpha"] == 0.05 and meta["metrics"] == {"lms": 0.5}
    assert meta["gradiend"] == "run/gradiend" and meta["base_model"] == lm.name
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not list(tmp_path.glob(".rewritten*"))  # no temporary directory left behind


def test_rewrite_selected_refuses_a_useless_selection(make_tiny, tmp_path):
    from gradiend.rewrite import rewrite_selected

    lm = make_tiny("bert", seed=8)
    dec = _decoder(_kept_selection(lm.model))
    useless = {"h": 1.0, "alpha": 0.0, "useful": False, "reason": "no cell keeps LMS >= 0.99 x base LMS"}
    with pytest.raises(GradiendError, match="no cell keeps LMS"):
        rewrite_selected(lm, dec, useless, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    chosen = {"h": -1.0, "alpha": 0.2, "useful": True, "value": 0.3, "base_value": 0.1, "lms": 0.5}
    out = rewrite_selected(lm, dec, chosen, tmp_path / "out")
    meta = read_json(out / REWRITE_META_FILE)
    assert (meta["h"], meta["alpha"]) == (-1.0, 0.2) and meta["metrics"]["value"] == 0.3
