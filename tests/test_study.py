"""compare_runs on GRADIENDs built over a tiny model's parameter selection (planted top-k sets)."""

from __future__ import annotations

import json

import pytest
import torch

from gradiend.errors import GradiendError
from gradiend.lm.params import select_parameters
from gradiend.model import Gradiend, GradiendMeta
from gradiend.study import compare_runs


def _gradiend(selection, hot: slice, name: str) -> Gradiend:
    meta = GradiendMeta(selection=selection, base_model="tiny", model_family="masked", classes=("A", "B"),
                        directions={"A": 1, "B": -1})
    g = Gradiend(selection.input_dim, meta=meta, seed=0)
    with torch.no_grad():
        g.decoder_weight.mul_(1e-3)
        g.decoder_weight[hot, 0] = 1.0  # plant the top-k
    return g


@pytest.fixture
def three_runs(tmp_path, tiny_bert):
    selection = select_parameters(tiny_bert.model, ["bert.encoder.layer.*"])
    dirs = []
    for name, hot in (("a", slice(0, 100)), ("b", slice(50, 150)), ("c", slice(1000, 1100))):
        _gradiend(selection, hot, name).save_pretrained(tmp_path / name / "gradiend")
        dirs.append(tmp_path / name)
    return dirs


def test_compare_finds_planted_overlap(three_runs, tmp_path):
    out = tmp_path / "cmp"
    result = compare_runs(three_runs, out, topk=100, cross_encoding=False)
    inter = result.matrices["intersection"]
    assert inter.loc["a", "a"] == 100 and inter.loc["a", "b"] == 50 and inter.loc["a", "c"] == 0
    assert result.above_chance == [("a", "b")]
    assert result.matrices["overlap_coefficient"].loc["a", "b"] == 0.5
    assert result.matrices["cosine_decoder"].loc["a", "b"] > 0.4
    for name in ("overlap_heatmap.png", "cosine_heatmap.png", "topk_venn.png", "intersection.csv", "p_value.csv",
                 "topk/a.csv", "topk_share_by_layer.csv", "comparison.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    summary = json.loads((out / "comparison.json").read_text())
    assert summary["above_chance"] == [["a", "b"]]


def test_compare_needs_two_runs(three_runs, tmp_path):
    with pytest.raises(GradiendError, match="at least two runs"):
        compare_runs(three_runs[:1], tmp_path / "x", cross_encoding=False)
