"""Property-based tests: masking never loses or invents text; splitting and quotas conserve what they divide."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from gradiend.constants import MASK
from gradiend.data import DataConfig, Feature, create_data
from gradiend.data.balance import fill_quotas
from gradiend.data.corpus import Document
from gradiend.data.features import Matcher
from gradiend.data.pairs import apply_case
from gradiend.data.sentences import iter_sentences, split_sentences
from gradiend.data.splits import quotas

FEATURE = Feature.from_mapping({"3SG": ["he", "she", "it", "New York"], "3PL": ["they"]})
# target words, near misses (substrings, contractions, compounds) and plain words, in any case
WORDS = ["he", "she", "it", "they", "New York", "new  york", "the", "hen", "it's", "he-man", "shed", "They're",
         "them", "York", "walked", "Mr.", "U.S.", "e.g.", "apple"]
word = st.builds(lambda w, case: {0: w, 1: w.upper(), 2: w.title()}[case], st.sampled_from(WORDS),
                 st.integers(0, 2))
sep = st.sampled_from([" ", " ", ", ", "; ", ". ", "! ", "? ", "\n", " (", ") ", ' "'])
sentence = st.builds(lambda ws, ss: "".join(w + s for w, s in zip(ws, ss, strict=False)) + ".",
                     st.lists(word, min_size=1, max_size=12), st.lists(sep, min_size=12, max_size=12))
SEEDED = "In town he waited. Later they came. The weather was mild."  # both classes always occur


@settings(max_examples=150, deadline=None)
@given(sentence)
def test_every_match_is_a_whole_word_and_unmasks_to_the_sentence(text):
    for m in Matcher(FEATURE).find(text):
        masked = text[: m.start] + MASK + text[m.end :]
        assert masked.replace(MASK, m.text, 1) == text
        assert " ".join(m.text.split()).casefold() == m.target.casefold()
        assert m.start == 0 or not re.match(r"[\w-]", text[m.start - 1])
        assert m.end == len(text) or not re.match(r"[\w-]", text[m.end])


@settings(max_examples=40, deadline=None)
@given(st.lists(sentence, min_size=1, max_size=6), st.integers(0, 3))
def test_create_data_rows_restore_sentences_and_lose_no_occurrence(texts, seed):
    docs = [*texts, SEEDED]
    config = DataConfig(seed=seed, split_ratios=(1.0, 0.0, 0.0), min_chars=0, max_chars=None, neutral_size=None)
    data = create_data(docs, FEATURE, config)
    sents = iter_sentences([Document(str(i), t) for i, t in enumerate(docs)], min_chars=0)
    by_id = {s.sentence_id: s.text for s in sents}
    matcher = Matcher(FEATURE)
    assert len(data.pairs) == sum(len(matcher.find(s.text)) for s in sents)
    for masked, factual, sid in zip(data.pairs["masked"], data.pairs["factual"], data.pairs["sentence_id"],
                                    strict=True):
        assert masked.count(MASK) == 1
        assert masked.replace(MASK, factual, 1) == by_id[sid]
    assert set(data.neutral["text"]) == {s.text for s in sents if not matcher.find(s.text)}


@given(st.text(alphabet=st.sampled_from(list("ab .!?\n\"'MrDU")), max_size=80))
def test_sentence_splitter_keeps_every_character(text):
    assert "".join(split_sentences(text)).replace(" ", "") == "".join(text.split()).replace(" ", "")


@given(st.sampled_from(["he", "she", "it", "they"]), st.sampled_from(["they", "she", "we", "it"]),
       st.sampled_from(["lower", "upper", "title"]))
def test_apply_case_copies_the_factual_case(listed, alternative, case):
    factual = getattr(listed, case)() if case != "title" else listed.title()
    out = apply_case(factual, listed, alternative)
    assert out.casefold() == alternative.casefold()
    if case == "upper":
        assert out == alternative.upper()
    elif case == "title":
        assert out == alternative[0].upper() + alternative[1:]
    else:
        assert out == alternative


@given(st.integers(0, 10_000), st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3).filter(lambda r: sum(r) > 0))
def test_quotas_sum_to_total_and_stay_proportional(total, raw):
    ratios = [r / sum(raw) for r in raw]
    parts = quotas(total, ratios)
    assert sum(parts) == total
    assert all(abs(p - total * r) < 1 for p, r in zip(parts, ratios, strict=True))


@given(st.lists(st.integers(0, 50), min_size=1, max_size=6), st.integers(0, 400))
def test_fill_quotas_shares_budget_as_equally_as_possible(sizes, budget):
    take = fill_quotas(sizes, budget)
    assert sum(take) == min(budget, sum(sizes))
    assert all(0 <= t <= s for t, s in zip(take, sizes, strict=True))
    open_takes = [t for t, s in zip(take, sizes, strict=True) if t < s]
    if open_takes:  # a group that could take more has at most one less than any other group
        assert max(take) - min(open_takes) <= 1
