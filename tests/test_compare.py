import numpy as np
import pytest

from gradiend.compare import (
    cosine_on_shared,
    grouped_share,
    overlap,
    overlap_matrices,
    simulate_expected_overlap,
    topk_from_importance,
    topk_table,
)
from gradiend.lm.params import ParamSpec


def _top(name, n=1000, k=50, seed=0, offset=0):
    rng = np.random.default_rng(seed)
    return topk_from_importance(name, np.arange(n) + offset, rng.random(n), k)


def test_topk_picks_largest_importance_and_sorts_indices():
    top = topk_from_importance("a", np.array([10, 11, 12, 13]), np.array([0.1, 0.9, 0.5, 0.9]), 2)
    assert top.indices.tolist() == [11, 13]
    assert top.importance.tolist() == [0.9, 0.9]


def test_self_overlap_is_k_with_tiny_p_value():
    a = _top("a", k=50)
    cell = overlap(a, a)
    assert cell.intersection == 50
    assert cell.overlap_coefficient == 1.0 and cell.jaccard == 1.0
    assert cell.expected == pytest.approx(50 * 50 / 1000)
    assert cell.p_value < 1e-50


def test_disjoint_selections_have_zero_overlap():
    a = _top("a", n=500, offset=0)
    b = _top("b", n=500, offset=500)  # differently selected parameters: disjoint global indices
    cell = overlap(a, b)
    assert cell.intersection == 0 and cell.jaccard == 0.0
    assert cell.p_value == 1.0


def test_chance_level_matches_simulation():
    a, b = _top("a", n=400, k=40, seed=1), _top("b", n=400, k=60, seed=2)
    expected = overlap(a, b).expected
    assert expected == pytest.approx(40 * 60 / 400)
    assert simulate_expected_overlap(400, 40, 60, trials=4000) == pytest.approx(expected, rel=0.05)


def test_overlap_matrix_is_symmetric_with_k_on_diagonal():
    sets = [_top(str(i), k=20 + i, seed=i) for i in range(3)]
    mats = overlap_matrices(sets)
    inter = mats["intersection"].to_numpy()
    assert np.array_equal(inter, inter.T)
    assert np.diag(inter).tolist() == [20, 21, 22]


def test_indices_map_back_to_parameter_and_coordinates():
    specs = [ParamSpec("emb.weight", (4, 3), 0), ParamSpec("layer.1.w", (2, 5), 12)]
    top = topk_from_importance("a", np.array([0, 5, 12, 21]), np.array([1.0, 4.0, 3.0, 2.0]), 4)
    table = topk_table(top, specs)
    assert table["parameter"].tolist() == ["emb.weight", "layer.1.w", "layer.1.w", "emb.weight"]
    assert table["coords"].tolist() == [(1, 2), (0, 0), (1, 4), (0, 0)]
    assert table["layer"].tolist()[1] == 1
    share = grouped_share({"a": table}, by="parameter")
    assert share.loc["emb.weight", "a"] == 0.5


def test_cosine_uses_full_norms():
    assert cosine_on_shared(np.array([0, 1]), np.array([1.0, 0.0]), np.array([0, 2]), np.array([1.0, 0.0])) == 1.0
    assert cosine_on_shared(np.array([0, 1]), np.array([1.0, 1.0]), np.array([1]), np.array([2.0])) == pytest.approx(
        1 / np.sqrt(2)
    )
