"""The Gradiend module: shapes, sign contract, importance, pruning and the on-disk format."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradiend.constants import FORMAT_VERSION, GRADIEND_CONFIG_FILE, WEIGHTS_FILE
from gradiend.errors import GradiendError
from gradiend.lm.params import ParamSelection, ParamSpec
from gradiend.model import Gradiend, GradiendMeta, canonical_directions, memory_estimate, topk_count


def _selection() -> ParamSelection:
    """A 4×5 parameter (all kept) and a 20-entry bias (12 positions kept): 32 input dimensions."""
    specs = (ParamSpec("a.weight", (4, 5), 7), ParamSpec("b.bias", (20,), 40))
    bias_kept = torch.tensor([0, 2, 4, 6, 8, 10, 12, 14, 15, 16, 17, 18], dtype=torch.int64)
    sel = ParamSelection(specs, (None, bias_kept), total_params=100)
    assert sel.input_dim == 32
    return sel


def _meta(source: str = "alternative", target: str = "diff") -> GradiendMeta:
    classes = ("3SG", "3PL")
    return GradiendMeta(
        selection=_selection(), base_model="offline:splade-tiny", model_family="masked", source=source,
        target=target, classes=classes, directions=canonical_directions(classes), training={"best_step": 40},
    )


def _weights(g: Gradiend) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in g.state_dict().items()}


def test_shapes_parameter_count_and_init_bounds():
    n = 64
    g = Gradiend(n, seed=0)
    assert g.encoder_weight.shape == (1, n) and g.encoder_bias.shape == (1,)
    assert g.decoder_weight.shape == (n, 1) and g.decoder_bias.shape == (n,)
    assert sum(p.numel() for p in g.parameters()) == 3 * n + 1
    assert g.encoder_weight.abs().max() <= 1 / math.sqrt(n)
    assert g.decoder_weight.abs().max() <= g.encoder_weight.abs().max()
    assert torch.equal(Gradiend(n, seed=0).encoder_weight, g.encoder_weight)
    assert not torch.equal(Gradiend(n, seed=1).encoder_weight, g.encoder_weight)


def test_encode_decode_math_batched_and_cast():
    g = Gradiend(8, latent_dim=2, activation_encoder="tanh", activation_decoder="id", seed=0)
    x = torch.randn(3, 8, dtype=torch.float64)
    h = g.encode(x)
    assert h.shape == (3, 2) and h.dtype == torch.float32
    expected = torch.tanh(x.float() @ g.encoder_weight.T + g.encoder_bias)
    torch.testing.assert_close(h, expected)
    decoded, encoded = g(x)
    torch.testing.assert_close(decoded, h @ g.decoder_weight.T + g.decoder_bias)
    assert torch.equal(encoded, h)
    assert g.encode(x[0]).shape == (2,)
    with pytest.raises(GradiendError, match=r"shape \(8,\) or \(B, 8\)"):
        g.encode(torch.zeros(7))


@pytest.mark.parametrize("name", ["relu", "gelu", "sigmoid", "silu", "ID", "leakyrelu", "elu", "smht"])
def test_other_activations_selectable(name):
    g = Gradiend(6, activation_encoder=name, activation_decoder=name, seed=0)
    assert torch.isfinite(g(torch.randn(6))[0]).all()


def test_unknown_activation_and_bad_dims_are_errors():
    with pytest.raises(GradiendError, match="unknown activation 'swish'"):
        Gradiend(4, activation_encoder="swish")
    with pytest.raises(GradiendError, match="latent_dim must be a positive int"):
        Gradiend(4, latent_dim=0)
    with pytest.raises(GradiendError, match="selection has 32 input dimensions"):
        Gradiend(31, meta=_meta())


def test_flip_sign_keeps_dec_enc_and_flips_directions():
    g = Gradiend(32, latent_dim=2, meta=_meta(), seed=3)
    x = torch.randn(5, 32)
    before, b_d = g(x)[0], g.decoder_bias.detach().clone()
    h_before = g.encode(x)
    g.flip_sign()
    torch.testing.assert_close(g(x)[0], before, rtol=0, atol=1e-6)
    torch.testing.assert_close(g.encode(x), -h_before)
    assert torch.equal(g.decoder_bias, b_d)
    assert g.meta.directions == {"3SG": -1, "3PL": 1}


def test_flip_sign_refused_for_non_odd_encoder():
    g = Gradiend(4, activation_encoder="sigmoid", seed=0)
    with pytest.raises(GradiendError, match="only .* are odd"):
        g.flip_sign()


@pytest.mark.parametrize(
    ("source", "target", "pos_h", "neg_h"),
    [("alternative", "diff", 1.0, -1.0), ("factual", "diff", -1.0, 1.0), ("diff", "diff", -1.0, 1.0),
     ("alternative", "factual", 1.0, -1.0), ("factual", "factual", -1.0, 1.0),
     # target = alternative reconstructs the gradient of the row's other token: the sign flips once more
     ("alternative", "alternative", -1.0, 1.0), ("factual", "alternative", 1.0, -1.0)],
)
def test_strengthen_h_follows_sign_contract(source, target, pos_h, neg_h):
    g = Gradiend(32, meta=_meta(source, target), seed=0)
    assert (g.strengthen_h("3SG"), g.strengthen_h("3PL")) == (pos_h, neg_h)
    g.flip_sign()  # the stored directions travel with the weights
    assert (g.strengthen_h("3SG"), g.strengthen_h("3PL")) == (-pos_h, -neg_h)
    with pytest.raises(GradiendError, match="class 'X' has no encoding direction"):
        g.strengthen_h("X")


def test_update_vector_is_decoder_output():
    g = Gradiend(16, seed=0)
    torch.testing.assert_close(g.update_vector(-1.0), -g.decoder_weight[:, 0] + g.decoder_bias)
    torch.testing.assert_close(g.update_vector(0), g.decoder_bias.detach())
    with pytest.raises(GradiendError, match="h must be a scalar or have 1 entries"):
        g.update_vector([1.0, 2.0])


def test_importance_kinds():
    g = Gradiend(3, latent_dim=2, init=False)
    with torch.no_grad():
        g.encoder_weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, -1.0]]))
        g.decoder_weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 0.5], [-3.0, 0.0]]))
        g.decoder_bias.copy_(torch.tensor([0.5, -2.0, 1.0]))
        g.encoder_bias.zero_()
    assert g.importance().tolist() == [2.0, 1.0, 3.0]
    assert g.importance("encoder-weight").tolist() == [1.0, 3.0, 1.5]
    assert g.importance("decoder-bias").tolist() == [0.5, 2.0, 1.0]
    assert g.importance("decoder-sum").tolist() == [0.5, 1.0, 2.0]
    assert g.topk(2).tolist() == [2, 0]
    assert g.topk(1, "encoder-weight").tolist() == [1]
    with pytest.raises(GradiendError, match="unknown importance kind"):
        g.importance("bias")


def test_topk_count_int_vs_fraction():
    assert topk_count(1, 10) == 1
    assert topk_count(1.0, 10) == 10
    assert topk_count(0.25, 10) == 3  # ceil
    assert topk_count(50, 10) == 10
    for bad in (0, 0.0, 1.5, True, "3"):
        with pytest.raises(GradiendError):
            topk_count(bad, 10)


def test_prune_equals_zeroing_dropped_dimensions_and_restricts_selection():
    g = Gradiend(32, meta=_meta(), seed=1)
    keep = g.topk(10)
    small = g.prune(keep)
    x = torch.randn(4, 32)
    zeroed = torch.zeros_like(x)
    zeroed[:, keep] = x[:, keep]
    kept_sorted = keep.sort().values
    torch.testing.assert_close(small.encode(x[:, kept_sorted]), g.encode(zeroed))
    torch.testing.assert_close(small.update_vector(1.0), g.update_vector(1.0)[kept_sorted])
    assert small.input_dim == 10
    assert torch.equal(small.selection.global_indices(), g.selection.global_indices()[kept_sorted])
    assert torch.equal(small.topk_global(10).sort().values, g.topk_global(10).sort().values)
    with pytest.raises(GradiendError, match="duplicates"):
        g.prune(torch.tensor([1, 1]))
    with pytest.raises(GradiendError, match=r"must lie in \[0, 32\)"):
        g.prune(torch.tensor([32]))


def test_save_load_bit_identical(tmp_path):
    g = Gradiend(32, latent_dim=2, activation_decoder="tanh", meta=_meta("diff"), seed=5).prune(torch.arange(1, 30))
    g.save_pretrained(tmp_path / "g")
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == sorted([WEIGHTS_FILE, GRADIEND_CONFIG_FILE])
    loaded = Gradiend.from_pretrained(tmp_path / "g")
    for (k, a), (k2, b) in zip(_weights(g).items(), _weights(loaded).items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    assert loaded.architecture() == g.architecture()
    m, lm = g.meta, loaded.meta
    assert (lm.base_model, lm.model_family, lm.source, lm.target) == ("offline:splade-tiny", "masked", "diff", "diff")
    assert lm.classes == ("3SG", "3PL") and lm.directions == {"3SG": 1, "3PL": -1}
    assert lm.training == {"best_step": 40} and lm.format_version == FORMAT_VERSION
    assert torch.equal(lm.selection.global_indices(), m.selection.global_indices())
    assert lm.selection.total_params == 100
    config = json.loads((tmp_path / "g" / GRADIEND_CONFIG_FILE).read_text())
    assert config["format_version"] == FORMAT_VERSION and config["parameters"][0]["name"] == "a.weight"


def test_save_overwrites_and_loads_with_dtype(tmp_path):
    g = Gradiend(8, seed=0)
    Gradiend(4, seed=0).save_pretrained(tmp_path / "g")
    g.save_pretrained(tmp_path / "g")
    loaded = Gradiend.from_pretrained(tmp_path / "g", dtype=torch.float64)
    assert loaded.input_dim == 8 and loaded.dtype == torch.float64 and loaded.selection is None
    assert torch.equal(loaded.encoder_weight.float(), g.encoder_weight)


def test_bad_directory_is_a_clear_error(tmp_path):
    with pytest.raises(GradiendError, match="is not a GRADIEND directory"):
        Gradiend.from_pretrained(tmp_path)
    (tmp_path / WEIGHTS_FILE).write_bytes(b"")
    (tmp_path / GRADIEND_CONFIG_FILE).write_text(json.dumps({"architectures": ["BertForMaskedLM"]}))
    with pytest.raises(GradiendError, match="base model directory"):
        Gradiend.from_pretrained(tmp_path)


def test_memory_estimate_formula():
    n = 440_000
    assert memory_estimate(n) == (3 * n + 1) * 4 * 4
    assert memory_estimate(n, optimizer=False) == (3 * n + 1) * 4
    assert memory_estimate(n, d=2, dtype=torch.bfloat16, optimizer=False) == (5 * n + 2) * 2


def test_without_decoder_bias_and_linear_encoder(tmp_path):
    g = Gradiend(6, activation_encoder="id", bias_decoder=False, seed=0)
    x = torch.randn(6)
    torch.testing.assert_close(g.encode(x), g.encoder_weight @ x + g.encoder_bias)  # "id" is the identity
    assert g.importance("decoder-bias").tolist() == [0.0] * 6 and sum(p.numel() for p in g.parameters()) == 13
    g.save_pretrained(tmp_path / "g")
    loaded = Gradiend.from_pretrained(tmp_path / "g")
    assert loaded.decoder_bias is None and torch.equal(loaded.decoder_weight, g.decoder_weight)


@settings(max_examples=25, deadline=None)
@given(keep=st.sets(st.integers(0, 31), min_size=1), seed=st.integers(0, 2**16), d=st.integers(1, 3))
def test_prune_then_encode_equals_zeroing_property(keep, seed, d):
    g = Gradiend(32, latent_dim=d, meta=_meta(), seed=seed)
    idx = torch.tensor(sorted(keep))
    x = torch.randn(3, 32, generator=torch.Generator().manual_seed(seed))
    zeroed = torch.zeros_like(x)
    zeroed[:, idx] = x[:, idx]
    torch.testing.assert_close(g.prune(idx).encode(x[:, idx]), g.encode(zeroed))
