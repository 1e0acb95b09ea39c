"""Decoder grid and selection: synthetic grids for the policies, tiny models for the grid itself."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from gradiend.errors import GradiendError
from gradiend.evaluate.decoder import (
    DEFAULT_ALPHAS,
    EvalConfig,
    evaluate_decoder,
    select_rewrites,
    write_decoder_results,
)
from gradiend.evaluate.lm_metrics import class_probabilities, lms
from gradiend.lm.objectives import objective_for
from gradiend.lm.params import select_parameters
from gradiend.model import Gradiend, GradiendMeta, canonical_directions

CLASSES = ("3SG", "3PL")
H = {"3SG": 1.0, "3PL": -1.0}


def _grid(rows: list[tuple[float, float, float, float, float]]) -> pd.DataFrame:
    """(h, alpha, lms, p_3SG_other, p_3PL_own) per cell; the first row is the base model."""
    df = pd.DataFrame(rows, columns=["h", "alpha", "lms", "p_3SG_other", "p_3PL_own"])
    df["is_base"] = df["alpha"] == 0
    df["cell"] = [f"c{i}" for i in range(len(df))]
    df["p_3PL_other"], df["p_3SG_own"] = 0.1, 0.5
    return df


def test_default_alphas_are_one_two_five_up_to_100():
    assert DEFAULT_ALPHAS[:4] == (0.001, 0.002, 0.005, 0.01)
    assert DEFAULT_ALPHAS[-3:] == (20.0, 50.0, 100.0) and len(DEFAULT_ALPHAS) == 16


def test_threshold_picks_strongest_cell_under_the_lms_floor():
    grid = _grid([
        (0.0, 0.0, 0.50, 0.10, 0.60),
        (1.0, 0.1, 0.499, 0.20, 0.60),
        (1.0, 1.0, 0.496, 0.30, 0.60),  # strongest admissible: 0.496 >= 0.99 * 0.5
        (1.0, 10.0, 0.40, 0.90, 0.60),  # stronger but breaks the LMS
        (-1.0, 1.0, 0.498, 0.05, 0.40),  # weakens 3PL (p_3PL_own down)
    ])
    sel = select_rewrites(grid, H, "threshold", 0.99)
    assert sel["3SG"]["alpha"] == 1.0 and sel["3SG"]["h"] == 1.0 and sel["3SG"]["useful"] is True
    assert sel["3SG"]["value"] == 0.30 and sel["3SG"]["base_value"] == 0.10
    assert sel["3SG"]["lms_ratio"] == pytest.approx(0.992)
    assert sel["3PL_weaken"]["h"] == 1.0  # weakening 3PL uses the cells that strengthen 3SG
    product = select_rewrites(grid, H, "metric_x_lms", 0.99)
    assert product["3SG"]["alpha"] == 10.0 and product["3SG"]["useful"] is True  # 0.9·0.4 > 0.3·0.496


def test_no_cell_beats_base_means_no_useful_rewrite():
    grid = _grid([
        (0.0, 0.0, 0.50, 0.30, 0.60),
        (1.0, 0.1, 0.50, 0.30, 0.60),
        (1.0, 1.0, 0.50, 0.25, 0.60),
        (-1.0, 1.0, 0.50, 0.01, 0.60),
    ])
    for policy in ("threshold", "metric_x_lms"):
        sel = select_rewrites(grid, H, policy, 0.99)
        assert sel["3SG"]["useful"] is False and "beats the base model" in sel["3SG"]["reason"]
    broken = _grid([(0.0, 0.0, 0.50, 0.1, 0.6), (1.0, 0.1, 0.1, 0.9, 0.6), (-1.0, 0.1, 0.1, 0.1, 0.6)])
    sel = select_rewrites(broken, H, "threshold", 0.99)["3SG"]
    assert sel["useful"] is False and sel["alpha"] == 0.0 and sel["value"] == sel["base_value"] == 0.1
    assert "no cell keeps LMS" in sel["reason"]


def test_selection_and_config_validate_input():
    with pytest.raises(GradiendError, match="policy must be one of"):
        select_rewrites(_grid([(0.0, 0.0, 0.5, 0.1, 0.6)]), H, "best")
    with pytest.raises(GradiendError, match="exactly one base row"):
        select_rewrites(_grid([(1.0, 1.0, 0.5, 0.1, 0.6)]), H)
    with pytest.raises(GradiendError, match="alphas must be finite positive"):
        EvalConfig(alphas=(0.0, 1.0))
    with pytest.raises(GradiendError, match="lms_ratio"):
        EvalConfig(lms_ratio=1.5)


PAIRS = pd.DataFrame({
    "masked": ["Yesterday [MASK] cooked the soup.", "I think [MASK] went home early.",
               "Later [MASK] sang a song.", "In May [MASK] moved to Paris."],
    "factual": ["he", "she", "they", "they"],
    "factual_class": ["3SG", "3SG", "3PL", "3PL"],
    "alternative": ["they", "they", "he", "it"],
    "alternative_class": ["3PL", "3PL", "3SG", "3SG"],
    "split": "test", "doc_id": ["a", "b", "c", "d"], "sentence_id": [0, 1, 2, 3],
})
NEUTRAL = ["The river flows slowly through the old town.", "A bridge was built in 1890 over the water."]


def _gradiend(lm, seed: int = 0) -> Gradiend:
    sel = select_parameters(lm.model, layers=[1])
    meta = GradiendMeta(selection=sel, base_model=lm.name, model_family=lm.family.value, source="alternative",
                        classes=CLASSES, directions=canonical_directions(CLASSES))
    g = Gradiend(sel.input_dim, meta=meta, seed=seed)
    with torch.no_grad():
        g.decoder_weight.mul_(20.0)  # large enough that small α visibly moves the probabilities
    return g


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_grid_cells_restore_the_model_and_base_row_matches_direct_measures(make_tiny, tmp_path, kind):
    lm = make_tiny(kind, seed=2)
    gradiend = _gradiend(lm)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    config = EvalConfig(alphas=(0.5, 5.0), max_rows=2, max_lms_texts=5, search="grid", min_lms_tokens=1)
    result = evaluate_decoder(lm, gradiend, PAIRS, NEUTRAL, config)
    for k, v in lm.model.state_dict().items():
        assert torch.equal(v, before[k]), k

    grid = result.grid
    assert grid["cell"].tolist()[0] == "base" and len(grid) == 1 + 2 * 2
    for col in ("cell", "h", "alpha", "is_base", "lms", "p_3SG_other", "p_3SG_own", "p_3PL_other", "p_3PL_own"):
        assert col in grid.columns, col
    assert sorted(grid.loc[~grid["is_base"], "h"].unique()) == [-1.0, 1.0]

    words = {"3SG": ["he", "it", "she"], "3PL": ["they"]}
    probs = class_probabilities(lm, PAIRS, words)
    base = grid.iloc[0]
    assert base["p_3SG_other"] == pytest.approx(probs.loc[2:3, "3SG"].mean(), rel=1e-6)
    assert base["p_3PL_own"] == pytest.approx(probs.loc[2:3, "3PL"].mean(), rel=1e-6)
    assert base["lms"] == lms(lm, NEUTRAL, exclude_words=["he", "it", "she", "they"]).lms
    assert not np.isclose(grid["p_3SG_other"].iloc[1:], base["p_3SG_other"], rtol=1e-6, atol=0).all()

    summary = result.summary
    assert set(summary["selected"]) == {"3SG", "3PL", "3SG_weaken", "3PL_weaken"}
    assert summary["base"]["lms"] == base["lms"] and summary["policy"] == {"name": "threshold", "lms_ratio": 0.99}
    assert summary["n_rows"] == {"3SG": 2, "3PL": 2}
    grid_path, json_path = write_decoder_results(result, tmp_path)
    assert pd.read_csv(grid_path).shape == grid.shape
    assert json.loads(json_path.read_text())["selected"]["3SG"]["h"] == gradiend.strengthen_h("3SG")


def test_class_probabilities_sum_deduplicated_case_variants(tiny_bert, tiny_gpt2):
    rows = ["Yesterday [MASK] cooked the soup."]
    word = objective_for(tiny_bert).word_probabilities(tiny_bert.model, rows, ["he", "she"])
    got = class_probabilities(tiny_bert, rows, {"A": ["he", "she"], "B": ["they"]})
    assert got.columns.tolist() == ["A", "B"]
    assert got.loc[0, "A"] == pytest.approx(float(word.sum()), rel=1e-6)  # uncased: He/HE not counted again
    word = objective_for(tiny_gpt2).word_probabilities(tiny_gpt2.model, rows, ["he", "He", "HE"])
    got = class_probabilities(tiny_gpt2, rows, {"A": ["He"]})
    assert got.loc[0, "A"] == pytest.approx(float(word.sum()), rel=1e-6)


def test_grid_finds_a_useful_rewrite_along_a_known_good_direction(make_tiny):
    """dec(+1) = mean ∇(L_they − L_he) over 3PL rows: adding it is a descent step on "he", so P(3SG) must rise."""
    from gradiend.gradients import GradientComputer

    lm = make_tiny("gpt2", seed=4)
    gradiend = _gradiend(lm)
    rows_3pl = PAIRS[PAIRS["factual_class"] == "3PL"].assign(alternative="he")
    direction = GradientComputer(lm, gradiend.selection).mean_gradient(rows_3pl, "diff")
    with torch.no_grad():
        gradiend.decoder_weight.copy_(direction[:, None] / direction.norm())
        gradiend.decoder_bias.zero_()
    config = EvalConfig(alphas=(0.01, 0.1, 1.0), max_rows=2, max_lms_texts=5, lms_ratio=0.9, search="grid",
                        min_lms_tokens=1)
    result = evaluate_decoder(lm, gradiend, PAIRS, NEUTRAL, config)
    grid, selected = result.grid, result.summary["selected"]
    base = grid.iloc[0]
    up = grid[grid["h"] == gradiend.strengthen_h("3SG")].sort_values("alpha")
    assert (up["p_3SG_other"].to_numpy() > base["p_3SG_other"]).all()
    assert selected["3SG"]["useful"] is True and selected["3SG"]["value"] > selected["3SG"]["base_value"]
    assert selected["3SG"]["lms"] >= 0.9 * selected["3SG"]["base_lms"]


# --- adaptive search, degenerate base LMS, intervals ---------------------------------------------------------


class _CurveStore:
    """A planted LMS-ratio curve and probability curve per (h, α), answering the search's questions directly.

    Not a model stand-in: the search only asks "is this cell admissible?" and "what are its class
    probabilities?", and this answers from planted curves so the search's choices can be checked exactly.
    """

    def __init__(self, ratio, prob):
        self.ratio, self.prob = ratio, prob
        self.words = type("Words", (), {"class_ids": CLASSES})()
        self.probs, self.asked = {}, []

    def lms_decision(self, cell, threshold):
        self.asked.append(cell)
        return self.ratio(*cell) >= threshold

    def probabilities(self, cell):
        self.probs[cell] = self.prob(*cell)
        return self.probs[cell]


FACTUAL = np.array(["3PL", "3SG"])  # the planted probabilities have one 3PL row and one 3SG row


def _planted_prob(h, a):
    """[[P(3SG), P(3PL)] on the 3PL row, the same on the 3SG row]: each h strengthens its class as α grows."""
    s = np.log1p(a)
    if h > 0:
        return np.array([[0.1 + 0.05 * s, 0.6 - 0.03 * s], [0.5, 0.1]])
    return np.array([[0.1, 0.6], [0.5 - 0.03 * s, 0.1 + 0.05 * s]])


def _table(store, cells) -> pd.DataFrame:
    rows = []
    for h, a in [(0.0, 0.0), *cells]:
        p = store.prob(h, a)
        rows.append((h, a, store.ratio(h, a), p[0, 0], p[0, 1], p[1, 1], p[1, 0]))
    df = pd.DataFrame(rows, columns=["h", "alpha", "lms", "p_3SG_other", "p_3PL_own", "p_3PL_other", "p_3SG_own"])
    df["lms_ratio"], df["is_base"], df["cell"] = df["lms"], df["alpha"] == 0, [f"c{i}" for i in range(len(df))]
    return df


@pytest.mark.parametrize("curve", ["monotone", "dip_then_recover"])
def test_adaptive_search_selects_the_full_grids_cell_on_planted_curves(curve):
    from gradiend.evaluate.search import adaptive_search

    def ratio(h, a):  # LMS ratio falls with α (twice as fast along h = −1); optionally admissible again at α = 20
        if curve == "dip_then_recover" and a == 20.0:
            return 0.995
        return 1.0 - 0.004 * a * (1.0 if h > 0 else 2.0)

    store = _CurveStore(ratio, _planted_prob)
    boundaries = adaptive_search(store, H, DEFAULT_ALPHAS, 0.99, FACTUAL)
    assert boundaries == ({1.0: 2.0, -1.0: 1.0} if curve == "monotone" else {1.0: 20.0, -1.0: 20.0})
    full = select_rewrites(_table(store, [(h, a) for h in (1.0, -1.0) for a in DEFAULT_ALPHAS]), H)
    evaluated = [c for c in store.probs if c != (0.0, 0.0)]
    adaptive = select_rewrites(_table(store, evaluated), H)
    for key in full:
        assert (adaptive[key]["h"], adaptive[key]["alpha"]) == (full[key]["h"], full[key]["alpha"]), key
        assert adaptive[key]["useful"] and full[key]["useful"]
    assert full["3SG"]["alpha"] == boundaries[1.0]
    assert len(evaluated) <= 4  # probabilities around each boundary only, not on 32 cells
    assert len(store.asked) < 2 * len(DEFAULT_ALPHAS)


def test_adaptive_and_full_grid_agree_on_a_tiny_model(make_tiny):
    from gradiend.gradients import GradientComputer

    lm = make_tiny("gpt2", seed=4)
    gradiend = _gradiend(lm)
    rows_3pl = PAIRS[PAIRS["factual_class"] == "3PL"].assign(alternative="he")
    direction = GradientComputer(lm, gradiend.selection).mean_gradient(rows_3pl, "diff")
    with torch.no_grad():
        gradiend.decoder_weight.copy_(direction[:, None] / direction.norm())
        gradiend.decoder_bias.zero_()
    texts = NEUTRAL * 6
    base = dict(alphas=(0.01, 0.1, 1.0, 10.0, 100.0), max_rows=2, max_lms_texts=12, lms_ratio=0.9, min_lms_tokens=1)
    grid = evaluate_decoder(lm, gradiend, PAIRS, texts, EvalConfig(search="grid", **base)).summary
    adaptive = evaluate_decoder(lm, gradiend, PAIRS, texts, EvalConfig(search="adaptive", **base))
    assert adaptive.summary["search"]["name"] == "adaptive"
    assert adaptive.summary["search"]["cells_with_probabilities"] < grid["search"]["cells_with_probabilities"] == 10
    for key, entry in grid["selected"].items():
        got = adaptive.summary["selected"][key]
        assert (got["h"], got["alpha"], got["useful"]) == (entry["h"], entry["alpha"], entry["useful"]), key
        assert got["value"] == pytest.approx(entry["value"], rel=1e-6)
        assert got["lms_ratio"] == pytest.approx(entry["lms_ratio"], rel=1e-9)
    sel = adaptive.summary["selected"]["3SG"]
    assert sel["useful"] and sel["shift"]["ci"][0] > 0 and sel["n_lms_texts"] == 12
    assert sel["lms_ratio_ci"][0] <= sel["lms_ratio"] <= sel["lms_ratio_ci"][1]


def test_degenerate_base_lms_makes_no_rewrite_useful(make_tiny):
    from gradiend.evaluate.lm_metrics import LMSResult
    from gradiend.evaluate.selection import degenerate_base_lms, mark_degenerate
    from gradiend.lm.load import ModelFamily

    def planted(value, n_tokens=500, nll=1.0):
        return LMSResult(lms=value, family=ModelFamily.MASKED, n_tokens=n_tokens, accuracy=0.0, nll=nll)

    assert degenerate_base_lms(planted(0.5), 100) is None
    assert degenerate_base_lms(planted(0.0, nll=float("inf")), 100) == "base LMS is not finite (0.0)"
    assert degenerate_base_lms(planted(0.0, nll=None), 100) == "base LMS is 0"
    assert "fewer than the 100 needed" in degenerate_base_lms(planted(0.5, n_tokens=40), 100)
    grid = _grid([(0.0, 0.0, 0.0, 0.10, 0.60), (1.0, 1.0, 0.0, 0.90, 0.60), (-1.0, 1.0, 0.0, 0.05, 0.40)])
    selected = select_rewrites(grid.assign(lms_ratio=1.0), H)
    assert selected["3SG"]["useful"]  # the constraint "holds" trivially …
    mark_degenerate(selected, "base LMS is 0")
    assert all(not e["useful"] and e["reason"].startswith("base LMS is 0: the LMS constraint cannot be checked")
               for e in selected.values())

    lm = make_tiny("bert", seed=2)  # … and end to end: 2 short neutral texts hold far fewer than 100 masked tokens
    alphas = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
    result = evaluate_decoder(lm, _gradiend(lm), PAIRS, NEUTRAL, EvalConfig(alphas=alphas, max_rows=2))
    check = result.summary["lms_check"]
    assert check["degenerate"] and check["n_tokens"] < 100 and "min_lms_tokens" in check["reason"]
    assert all(not e["useful"] and "cannot be checked" in e["reason"] for e in result.summary["selected"].values())
    # nothing can be selected, so only a sparse grid is evaluated: every third α and the largest, per h
    search = result.summary["search"]
    assert search["name"] == "sparse_grid" and search["grid_cells"] == 14
    assert sorted(set(result.grid.loc[~result.grid["is_base"], "alpha"])) == [0.01, 0.1, 1.0]
    assert search["cells_evaluated"] == search["cells_with_probabilities"] == 6


def test_sparse_alphas_keep_every_third_and_the_largest():
    from gradiend.evaluate.search import sparse_alphas

    assert sparse_alphas(DEFAULT_ALPHAS) == [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]
    assert sparse_alphas((5.0, 1.0, 2.0, 1.0)) == [1.0, 5.0]
    assert sparse_alphas((0.3,)) == [0.3]


def test_lms_texts_take_the_split_first_then_the_other_splits():
    from gradiend.evaluate.encoder import lms_text_column

    neutral = pd.DataFrame({"text": ["a", "b", "c", "d", "e"],
                            "split": ["train", "test", "validation", "test", "train"]})
    assert lms_text_column(neutral, "test") == ["b", "d", "a", "c", "e"]
    assert lms_text_column(neutral, "all") == ["a", "b", "c", "d", "e"]
    assert lms_text_column(["x", "y"], "test") == ["x", "y"]


def test_shift_and_lms_ratio_intervals_cover_planted_effects():
    from gradiend.evaluate import stats
    from gradiend.evaluate.cells import ratio_replicates
    from gradiend.evaluate.lm_metrics import TextScores, lms_from_nll
    from gradiend.evaluate.selection import _mean_difference

    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(200):
        base = rng.uniform(0.05, 0.3, size=60)
        cell = base + 0.02 + rng.normal(0, 0.03, size=60)  # planted shift 0.02
        ci = stats.paired(_mean_difference, cell, base, 400, rng)["ci"]
        covered += ci[0] <= 0.02 <= ci[1]
    assert covered >= 180  # nominal 95 %: at least 90 % of 200 intervals cover the planted shift

    tokens = rng.integers(10, 30, size=80)
    base = TextScores(rng.gamma(4.0, 0.75, size=80) * tokens, tokens)  # NLL ≈ 3 per token
    cell = TextScores(base.nll * 1.2, tokens)  # every text 20 % worse: the ratio is known exactly
    planted = lms_from_nll(3.6 * base.nll.sum() / tokens.sum() / 3.0) / lms_from_nll(base.nll.sum() / tokens.sum())
    point = ratio_replicates(cell, base, np.arange(80))
    assert point == pytest.approx(planted)
    reps = ratio_replicates(cell, base, rng.integers(0, 80, size=(500, 80)))
    low, high = stats.interval(reps)
    assert low <= point <= high and high < 1.0


THREE = pd.concat([PAIRS, pd.DataFrame({
    "masked": ["Then [MASK] saw the sea.", "Now [MASK] know the way."], "factual": ["i", "i"],
    "factual_class": ["1SG", "1SG"], "alternative": ["he", "they"], "alternative_class": ["3SG", "3PL"],
    "split": "test", "doc_id": ["e", "f"], "sentence_id": [4, 5],
})], ignore_index=True)


def test_decoder_reads_every_class_and_selects_for_the_tasks_groups(make_tiny):
    """A pair task on a three-class data set: the groups get other/own columns and the selection, the third
    class its probability on every evaluated row; a merged task's groups pool their classes' words and rows."""
    from gradiend.tasks import Task

    lm = make_tiny("bert", seed=2)
    gradiend = _gradiend(lm)
    config = EvalConfig(alphas=(0.5,), max_rows=2, max_lms_texts=5, search="grid", min_lms_tokens=1)
    grid = evaluate_decoder(lm, gradiend, THREE, NEUTRAL, config).grid
    assert {"p_3SG_other", "p_3SG_own", "p_3PL_other", "p_3PL_own", "p_1SG_all"} <= set(grid.columns)
    rows = THREE[THREE["factual_class"] != "1SG"].reset_index(drop=True)
    probs = class_probabilities(lm, rows, {"1SG": ["i"]})
    assert grid.iloc[0]["p_1SG_all"] == pytest.approx(probs["1SG"].mean(), rel=1e-6)

    merged = Task.merged({"SG": ["1SG", "3SG"], "PL": ["3PL"]})
    gradiend.meta = GradiendMeta(selection=gradiend.selection, base_model=lm.name, model_family="masked",
                                 classes=merged.group_ids, directions={"SG": 1, "PL": -1}, task=merged.to_dict())
    result = evaluate_decoder(lm, gradiend, THREE, NEUTRAL, config)
    assert result.summary["n_rows"] == {"SG": 4, "PL": 2} and set(result.summary["selected"]) >= {"SG", "PL"}
    sg = class_probabilities(lm, THREE, {"SG": ["he", "i", "it", "she"]})["SG"]
    assert result.grid.iloc[0]["p_SG_other"] == pytest.approx(sg[THREE["factual_class"] == "3PL"].mean(), rel=1e-6)
    assert gradiend.strengthen_h("1SG") == gradiend.strengthen_h("SG")  # a member class stands for its group
