"""Encoder metrics on planted encodings tables (no model), neutral-row masking and labels."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from gradiend.errors import GradiendError
from gradiend.evaluate import stats
from gradiend.evaluate.encoder import (
    ENCODING_COLUMNS,
    EncoderResult,
    encoder_metrics,
    neutral_rows,
    pair_labels,
    write_encoder_results,
)
from gradiend.tasks import Task

CLASSES = ("3SG", "3PL")
TASK = Task.pair(*CLASSES)


def _table(pos: np.ndarray, neg: np.ndarray, neutral: np.ndarray | None = None) -> pd.DataFrame:
    neutral = np.zeros(0) if neutral is None else neutral
    n = len(pos) + len(neg) + len(neutral)
    return pd.DataFrame({
        "encoding": np.concatenate([pos, neg, neutral]),
        "label": [1.0] * len(pos) + [-1.0] * len(neg) + [0.0] * len(neutral),
        "class": ["3SG"] * len(pos) + ["3PL"] * len(neg) + ["neutral"] * len(neutral),
        "word": (["he", "she"] * len(pos))[: len(pos)] + ["they"] * len(neg) + ["river"] * len(neutral),
        "variant": ["pairs"] * (len(pos) + len(neg)) + ["neutral_text"] * len(neutral),
        "split": "test",
        "sentence_id": np.arange(n),
        "transition": ["3PL->3SG"] * len(pos) + ["3SG->3PL"] * len(neg) + ["neutral"] * len(neutral),
        "in_task": [True] * (len(pos) + len(neg)) + [False] * len(neutral),
    })


def _contains(metric: dict) -> bool:
    lo, hi = metric["ci"]
    return lo - 1e-12 <= metric["value"] <= hi + 1e-12


def test_perfect_separation():
    rng = np.random.default_rng(0)
    df = _table(0.9 + 0.05 * rng.random(30), -0.9 - 0.05 * rng.random(20), 0.1 * rng.standard_normal(10))
    m = encoder_metrics(df, CLASSES, n_boot=300, seed=1)
    assert m["auroc"]["value"] == 1.0 and m["auroc"]["ci"] == [1.0, 1.0]
    assert m["accuracy_binary"]["value"] == 1.0
    assert m["accuracy_ternary"]["value"] == 1.0  # neutral rows inside (−0.5, 0.5)
    assert m["pearson"]["value"] > 0.99
    assert m["spearman"]["value"] == pytest.approx(sps.spearmanr(df["encoding"][:50], df["label"][:50])[0])
    assert m["per_class"]["3SG"]["n"] == 30 and m["per_class"]["3PL"]["n"] == 20
    assert m["per_target"]["they"]["n"] == 20 and m["neutral"]["neutral_text"]["n"] == 10
    assert m["n_rows"] == 60 and m["classes"] == list(CLASSES) and m["split"] == "test"
    for key in ("pearson", "spearman", "accuracy_ternary", "accuracy_binary", "cohens_d", "auroc"):
        assert _contains(m[key]), key


def test_exact_pearson_one_and_known_cohens_d():
    pos, neg = np.array([1.0, 1.0, 1.0]), np.array([-1.0, -1.0, -1.0])
    assert encoder_metrics(_table(pos, neg), CLASSES, n_boot=50)["pearson"]["value"] == pytest.approx(1.0)
    pos, neg = np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 2.0])  # means 2 and 1, both std 1 → d = 1
    m = encoder_metrics(_table(pos, neg), CLASSES, n_boot=200, seed=3)
    assert m["cohens_d"]["value"] == pytest.approx(1.0)
    assert m["auroc"]["value"] == pytest.approx((6 + 0.5 * 2) / 9)  # pairs won: 6, ties: 2
    assert _contains(m["cohens_d"]) and _contains(m["auroc"])


def test_statistics_match_scipy_and_bootstrap_is_seeded():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal(40), rng.standard_normal(40)
    assert stats.pearson(x, y) == pytest.approx(sps.pearsonr(x, y)[0])
    assert stats.spearman(x, y) == pytest.approx(sps.spearmanr(x, y)[0])
    assert stats.auroc(x, y) == pytest.approx(sps.mannwhitneyu(x, y).statistic / 1600)
    batch = np.stack([x, y])
    assert np.allclose(stats.pearson(batch, batch[::-1]), [stats.pearson(x, y)] * 2)
    a = stats.paired(stats.pearson, x, y, 500, np.random.default_rng(9))
    b = stats.paired(stats.pearson, x, y, 500, np.random.default_rng(9))
    assert a == b and _contains(a)


def test_metrics_refuse_tables_without_both_classes():
    df = _table(np.array([1.0, 0.9]), np.zeros(0))
    with pytest.raises(GradiendError, match=r"both groups of the task; none for \[.negative.\]"):
        encoder_metrics(df, CLASSES)
    with pytest.raises(GradiendError, match="lacks columns"):
        encoder_metrics(df.drop(columns=["word"]), CLASSES)


def test_neutral_rows_mask_a_non_feature_word_with_left_context():
    texts = ["He said the theory was sound.", "They", "She and they left."]
    df = neutral_rows(texts, ["he", "she", "they"], variant="neutral_masked", seed=0, sentence_ids=[7, 8, 9])
    assert df["sentence_id"].tolist() == [7, 9]  # "They" alone has no maskable word
    for _, row in df.iterrows():
        assert row["masked"].count("[MASK]") == 1
        assert row["factual"] == row["alternative"]
        assert row["factual"].lower() not in {"he", "she", "they"}
        assert not row["masked"].startswith("[MASK]")
    assert df.loc[1, "factual"] == "left" and df.loc[1, "masked"] == "She and they [MASK]."
    again = neutral_rows(texts, ["he", "she", "they"], variant="neutral_masked", seed=0, sentence_ids=[7, 8, 9])
    assert again.equals(df)
    with pytest.raises(GradiendError, match="neutral variant"):
        neutral_rows(texts, [], variant="pairs")


def test_pair_labels_follow_the_source_token():
    pairs = pd.DataFrame({"factual": ["he", "they"], "factual_class": ["3SG", "3PL"],
                          "alternative": ["they", "she"], "alternative_class": ["3PL", "3SG"]})
    alt = pair_labels(pairs, TASK, "alternative")
    assert alt["label"].tolist() == [-1.0, 1.0] and alt["word"].tolist() == ["they", "she"]
    for source in ("factual", "diff"):
        fac = pair_labels(pairs, TASK, source)
        assert fac["label"].tolist() == [1.0, -1.0] and fac["class"].tolist() == ["3SG", "3PL"]
    with pytest.raises(GradiendError, match="unknown GRADIEND source"):
        pair_labels(pairs, TASK, "both")


def test_write_encoder_results(tmp_path):
    df = _table(np.array([0.8, 0.7, 0.9]), np.array([-0.8, -0.6]), np.array([0.0]))
    metrics = encoder_metrics(df, CLASSES, n_boot=20)
    table_path, json_path = write_encoder_results(EncoderResult(df, metrics), tmp_path / "metrics")
    assert pd.read_parquet(table_path).columns.tolist() == list(ENCODING_COLUMNS)
    assert json.loads(json_path.read_text())["pearson"] == metrics["pearson"]


PAIRS = pd.DataFrame({
    "masked": ["Yesterday [MASK] cooked the soup.", "I think [MASK] went home early.",
               "Later [MASK] sang a song.", "In May [MASK] moved to Paris.", "Then [MASK] left."],
    "factual": ["he", "she", "they", "they", "he"],
    "factual_class": ["3SG", "3SG", "3PL", "3PL", "3SG"],
    "alternative": ["they", "they", "he", "it", "they"],
    "alternative_class": ["3PL", "3PL", "3SG", "3SG", "3PL"],
    "split": ["test", "test", "test", "test", "train"],
    "doc_id": ["a", "b", "c", "d", "e"], "sentence_id": [0, 1, 2, 3, 4],
})
NEUTRAL = ["The river flows slowly through the old town.", "A bridge was built in 1890 over the water."]


def _hand_encoding(lm, gradiend, row: pd.DataFrame, kind: str) -> float:
    """Autograd on the objective's per-row loss, flattened over the selection, encoded."""
    import torch

    from gradiend.lm.objectives import objective_for

    params = gradiend.selection.parameters(lm.model)
    factual, alternative = objective_for(lm).row_losses(lm.model, row)
    loss = {"factual": factual, "alternative": alternative, "diff": factual - alternative}[kind][0]
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        return float(gradiend.encode(gradiend.selection.flatten(grads))[0])


@pytest.mark.parametrize(("kind", "source"), [("bert", "alternative"), ("gpt2", "diff")])
def test_evaluate_encoder_on_a_tiny_model(make_tiny, tmp_path, kind, source):
    import torch

    from gradiend.evaluate.config import EvalConfig
    from gradiend.evaluate.encoder import evaluate_encoder
    from gradiend.lm.params import select_parameters
    from gradiend.model import Gradiend, GradiendMeta, canonical_directions

    lm = make_tiny(kind, seed=3)
    sel = select_parameters(lm.model, layers=[1])
    meta = GradiendMeta(selection=sel, base_model=lm.name, model_family=lm.family.value, source=source,
                        classes=CLASSES, directions=canonical_directions(CLASSES))
    gradiend = Gradiend(sel.input_dim, meta=meta, seed=1)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    result = evaluate_encoder(lm, gradiend, PAIRS, NEUTRAL, EvalConfig(bootstrap=50))
    for k, v in lm.model.state_dict().items():
        assert torch.equal(v, before[k]), k

    table = result.encodings
    assert table.columns.tolist() == list(ENCODING_COLUMNS)
    assert table["variant"].value_counts().to_dict() == {"pairs": 4, "neutral_masked": 4, "neutral_text": 2}
    pairs = table[table["variant"] == "pairs"]
    expected_labels = [-1.0, -1.0, 1.0, 1.0] if source == "alternative" else [1.0, 1.0, -1.0, -1.0]
    assert pairs["label"].tolist() == expected_labels
    assert (table.loc[table["variant"] != "pairs", "label"] == 0).all()
    hand = _hand_encoding(lm, gradiend, PAIRS.iloc[[2]], source)
    assert pairs["encoding"].iloc[2] == pytest.approx(hand, rel=1e-4, abs=1e-6)
    assert result.metrics["n_rows"] == 10 and set(result.metrics["neutral"]) == {"neutral_masked", "neutral_text"}
    assert result.metrics["per_class"]["3SG"]["n"] == 2
