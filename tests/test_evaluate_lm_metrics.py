"""LMS: seeded and repeatable, masked LM never masks special tokens or feature words, causal NLL is shifted."""

from __future__ import annotations

import math

import pytest
import torch

from gradiend.errors import GradiendError
from gradiend.evaluate.lm_metrics import (
    case_variants,
    causal_token_nll,
    lms,
    masked_positions,
    word_pattern,
)
from gradiend.lm.forward import pad

TEXTS = [
    "The river flows slowly through the old town.",
    "She said that the bridge was built in 1890.",
    "They painted the walls blue and green last summer.",
    "A short one.",
    "He thinks the theory explains the weather there.",
]
FEATURE = ["he", "she", "they"]


def _hand_nll(model, tokenizer, texts):
    total, count = 0.0, 0
    with torch.no_grad():
        for t in texts:
            ids = torch.tensor([tokenizer(t)["input_ids"]])
            logits = model(input_ids=ids).logits[0]
            total += float(torch.nn.functional.cross_entropy(logits[:-1], ids[0, 1:], reduction="sum"))
            count += ids.shape[1] - 1
    return total, count


def test_masked_lms_is_seeded_and_repeatable(tiny_bert):
    first = lms(tiny_bert, TEXTS, exclude_words=FEATURE, seed=3)
    second = lms(tiny_bert, TEXTS, exclude_words=FEATURE, seed=3)
    assert first == second
    assert 0.0 <= first.accuracy <= 1.0 and first.lms == pytest.approx(1 / (1 + first.nll))
    assert first.n_tokens > 0
    plans = [masked_positions(tiny_bert, TEXTS, exclude_words=FEATURE, seed=s) for s in (3, 4)]
    assert plans[0] == masked_positions(tiny_bert, TEXTS, exclude_words=FEATURE, seed=3)
    assert plans[0] != plans[1]


def test_masked_lms_never_masks_special_tokens_or_feature_words(tiny_bert):
    tok = tiny_bert.tokenizer
    feature_ids = {tok.convert_tokens_to_ids(w) for w in FEATURE}
    special = set(tok.all_special_ids)
    for seed in range(20):
        for ids, positions in masked_positions(tiny_bert, TEXTS, exclude_words=FEATURE, seed=seed):
            assert positions, "every text with a candidate gets at least one mask"
            masked_ids = {ids[p] for p in positions}
            assert not masked_ids & special
            assert not masked_ids & feature_ids
    ids, positions = masked_positions(tiny_bert, ["the theory says there was a pathway"], exclude_words=["he"])[0]
    n_candidates = len(ids) - 2  # whole words only: "the", "theory", "there" stay candidates
    assert len(positions) == max(1, int(0.15 * n_candidates))


def test_whole_word_exclusion_not_substrings():
    pat = word_pattern(["he", "it"])
    assert [m.group(0) for m in pat.finditer("He said the item was it, she thinks.")] == ["He", "it"]
    assert word_pattern([]) is None


def test_masked_lms_is_the_pseudo_log_likelihood_at_the_masked_positions(tiny_bert):
    """Hand-computed: −log softmax of the original token at each masked position, masked all at once per text."""
    result = lms(tiny_bert, TEXTS, exclude_words=FEATURE, seed=5, batch_size=2)
    total, hits, count = 0.0, 0, 0
    for ids, positions in masked_positions(tiny_bert, TEXTS, exclude_words=FEATURE, seed=5):
        inputs = torch.tensor([ids])
        inputs[0, positions] = tiny_bert.tokenizer.mask_token_id
        with torch.no_grad():
            logp = torch.log_softmax(tiny_bert.model(input_ids=inputs).logits[0].double(), -1)
        total -= float(sum(logp[p, ids[p]] for p in positions))
        hits += sum(int(logp[p].argmax()) == ids[p] for p in positions)
        count += len(positions)
    assert result.n_tokens == count and result.accuracy == hits / count
    assert result.nll == pytest.approx(total / count, rel=1e-4)
    assert result.lms == pytest.approx(1 / (1 + total / count), rel=1e-4)


def test_masked_lms_stays_finite_and_informative_when_argmax_accuracy_is_zero(tiny_bert):
    """A random MLM head never predicts the right token (accuracy 0), yet its continuous LMS is finite and > 0."""
    result = lms(tiny_bert, TEXTS, exclude_words=FEATURE, seed=3)
    assert result.accuracy == 0.0
    assert math.isfinite(result.nll) and 0.0 < result.lms < 1.0


def test_lms_refuses_texts_without_candidates(tiny_bert, tiny_gpt2):
    with pytest.raises(GradiendError, match="no maskable tokens"):
        lms(tiny_bert, ["he she", "They"], exclude_words=FEATURE)
    with pytest.raises(GradiendError, match="at least one non-empty"):
        lms(tiny_gpt2, ["", "  "])


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_causal_nll_equals_hand_computed_shifted_cross_entropy(make_tiny, kind):
    lm = make_tiny(kind, seed=1)
    total, count = _hand_nll(lm.model, lm.tokenizer, TEXTS)
    result = lms(lm, TEXTS, batch_size=2)
    assert result.n_tokens == count
    assert result.nll == pytest.approx(total / count, rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(total / count), rel=1e-5)
    assert result.lms == pytest.approx(1 / (1 + total / count), rel=1e-6)
    rows = [lm.tokenizer(t)["input_ids"] for t in TEXTS]
    for side in ("left", "right"):
        batch = pad([tuple(r) for r in rows], 0, side, torch.device("cpu"))
        s, n = causal_token_nll(lm.model, batch.input_ids, batch.attention_mask)
        assert n == count
        assert s == pytest.approx(total, rel=1e-5), side


def test_causal_lms_skips_feature_words_as_targets(tiny_gpt2):
    text = ["She said that he would come back with them."]
    full = lms(tiny_gpt2, text)
    reduced = lms(tiny_gpt2, text, exclude_words=["he", "she"])
    assert reduced.n_tokens == full.n_tokens - 1  # "She" is first (never a target); " he" is dropped


def test_case_variants_dedupe_identical_tokenizations(bert_tokenizer, causal_tokenizer):
    assert case_variants(bert_tokenizer, ["he", "she"]) == ["he", "she"]  # uncased: He/HE are the same tokens
    assert case_variants(causal_tokenizer, ["he"]) == ["he", "He", "HE"]


NEUTRAL_SENTENCES = [
    "The river flows slowly through the old town before reaching the sea.",
    "A new bridge was built over the valley in the early twentieth century.",
    "The museum opened its doors to the public in the spring of 1923.",
    "Heavy rain caused flooding in several villages along the coast.",
    "The company produces steel, glass and other building materials.",
    "Most of the island is covered by dense tropical forest.",
    "The railway line connects the capital with the northern provinces.",
    "The cathedral is one of the largest churches in Europe.",
    "Wheat and barley are the main crops grown in the region.",
    "The festival attracts thousands of visitors every summer.",
    "The lake freezes completely during the coldest months of the year.",
    "The university was founded in 1850 and has eight faculties.",
    "The population of the city has doubled over the last thirty years.",
    "The album was recorded in London and released the following year.",
    "The mountain range forms a natural border between the two countries.",
    "The building was badly damaged by fire and later restored.",
    "The team won the national championship for the third time.",
    "The species feeds mainly on insects, seeds and small fruits.",
    "The castle overlooks the harbour and the surrounding hills.",
    "The newspaper was first published in the middle of the nineteenth century.",
]


@pytest.mark.slow
def test_smollm2_lms_is_a_plausible_next_token_measure(smollm2):
    result = lms(smollm2, NEUTRAL_SENTENCES, exclude_words=FEATURE)
    print(f"SmolLM2-135M: NLL {result.nll:.3f}, perplexity {result.perplexity:.2f}, LMS {result.lms:.4f}, "
          f"{result.n_tokens} tokens")
    assert 5 < result.perplexity < 200
    assert result.lms == pytest.approx(1 / (1 + result.nll))
    assert lms(smollm2, NEUTRAL_SENTENCES, exclude_words=FEATURE) == result


@pytest.mark.slow
def test_splade_tiny_masked_token_accuracy(splade):
    result = lms(splade, NEUTRAL_SENTENCES, exclude_words=FEATURE, seed=0)
    print(f"SPLADE-tiny masked-token accuracy: {result.accuracy:.4f} over {result.n_tokens} masked tokens")
    assert 0.0 <= result.accuracy <= 1.0 and result.n_tokens >= len(NEUTRAL_SENTENCES)
    assert lms(splade, NEUTRAL_SENTENCES, exclude_words=FEATURE, seed=0) == result
