"""Gemma-3-270m (offline:gemma3-270m): German probes, its SentencePiece tokenizations, a short English run.

The asset is installed on request (Gemma Terms of Use): the tests skip without it, except under CI=true, where
`make test` installs it and a missing asset is a failure.
"""

from __future__ import annotations

import os

import pytest
import torch

from gradiend import assets
from gradiend.lm.objectives import objective_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gemma():
    if not assets.is_installed(assets.get_asset("gemma3-270m")):
        message = "offline:gemma3-270m is not installed (gradiend assets install gemma3-270m)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + "; CI installs it in the Makefile")
        pytest.skip(message)
    from gradiend.lm import load_model

    return load_model("offline:gemma3-270m")


def _top5(lm, prompt: str) -> list[str]:
    ids = lm.tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        logits = lm.model(**ids).logits[0, -1]
    return [lm.tokenizer.decode(int(i)).strip() for i in logits.topk(5).indices]


def test_german_probe_continues_with_pronouns_and_articles(gemma):
    assert {"er", "die", "der"} <= set(_top5(gemma, "Der Arzt sagte, dass"))
    assert "she" in _top5(gemma, "The nurse said that")


def test_targets_follow_the_tokenization_of_each_position(gemma):
    """SentencePiece: a word after a space is a ▁-piece, the same word at the start of a text is not."""
    obj, tok = objective_for(gemma), gemma.tokenizer
    initial = obj.target("[MASK] Mann ist hier.", "Der")
    inner = obj.target("Ich sehe [MASK] Mann.", "der")
    capital = obj.target("Ich sehe [MASK] Mann.", "Der")
    assert tok.convert_ids_to_tokens(list(initial.pieces)) == ["Der"]
    assert tok.convert_ids_to_tokens(list(inner.pieces)) == ["▁der"]
    assert tok.convert_ids_to_tokens(list(capital.pieces)) == ["▁Der"]
    assert initial.ids[0] == tok.bos_token_id
    umlaut = obj.target("[MASK] macht den Meister.", "Übung")
    assert tok.decode(list(umlaut.pieces)) == "Übung"  # a multi-piece word with its umlaut intact


def test_class_probabilities_respect_capitalisation(gemma):
    probs = objective_for(gemma).word_probabilities(
        gemma.model, ["Ich sehe [MASK] Frau.", "[MASK] Hund bellt."], ["die", "Die", "der", "Der"])
    assert probs[0, 0] > 100 * probs[0, 1]  # inside a sentence the lower-case article
    assert probs[1, 3] > 100 * probs[1, 2]  # at the start the capitalised one


def test_short_english_run_converges(gemma):
    from gradiend.data import DataConfig, Feature, create_data
    from gradiend.evaluate import EvalConfig, evaluate_encoder
    from gradiend.stages import GradientConfig, select, train_gradiend
    from gradiend.train import TrainConfig

    feature = Feature.from_mapping({"3SG": ["he", "she", "it"], "3PL": ["they"]})
    data = create_data("offline:wiki-en", feature,
                       DataConfig(max_rows_per_class=40, seed=0, min_left_context=5, neutral_size=10))
    selection = select(gemma, params=("model.layers.17.mlp.*",))  # the last layer: the shortest backward
    result = train_gradiend(gemma, data, selection, GradientConfig(rows_per_gradient=4, validation_rows=12),
                            TrainConfig(lr=5e-4, steps=10, eval_every=5), progress=False)
    assert result.converged  # |corr| ≥ 0.5 and class means of opposite sign, |mean| ≥ 0.5, on validation rows
    enc = evaluate_encoder(gemma, result.gradiend, data.pairs, [], EvalConfig(max_rows=16, bootstrap=20))
    assert enc.metrics["pearson"]["value"] >= 0.8
    per_class = enc.metrics["per_class"]
    assert per_class["3SG"]["mean"] > 0 > per_class["3PL"]["mean"]
