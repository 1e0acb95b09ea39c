"""Sentence splitting, feature classes and the matcher: values, not just that they ran."""

from __future__ import annotations

import pytest

from gradiend.data import DataConfig, Feature, FeatureClass
from gradiend.data.corpus import Document
from gradiend.data.features import Matcher, word_pattern
from gradiend.data.pairs import apply_case
from gradiend.data.sentences import iter_sentences, split_sentences, windows
from gradiend.errors import GradiendError

PRONOUNS = Feature.from_mapping({"3SG": ["he", "she", "it"], "3PL": ["they"]})


def test_splitter_keeps_abbreviations_and_initials_together():
    text = "Mr. Smith met Dr. Jones in the U.S. on Monday. They talked, e.g. about Arthur C. Clarke. It ended!"
    assert split_sentences(text) == [
        "Mr. Smith met Dr. Jones in the U.S. on Monday.",
        "They talked, e.g. about Arthur C. Clarke.",
        "It ended!",
    ]


def test_splitter_breaks_on_lines_questions_and_quotes():
    assert split_sentences('He left.\nShe stayed? "Yes!" 3 dogs barked.') == [
        "He left.", "She stayed?", '"Yes!"', "3 dogs barked."
    ]


def test_splitter_needs_a_capital_or_digit_after_the_boundary():
    assert split_sentences("Er kam. Über Nacht blieb er. 3 Hunde. he said so.") == [
        "Er kam.", "Über Nacht blieb er.", "3 Hunde. he said so."
    ]


def test_windows_and_length_filters_and_dedup():
    assert windows(["a", "b", "c"], 2) == ["a b", "c"]
    docs = [Document("d1", "One two three. Short. Four five six."), Document("d2", "one, two three!")]
    sents = iter_sentences(docs, min_chars=7)
    # "Short." is too short; d2's sentence is a near-duplicate of d1's first (case and punctuation ignored)
    assert [(s.sentence_id, s.doc_id, s.text) for s in sents] == [(0, "d1", "One two three."), (1, "d1", "Four five six.")]
    assert [s.text for s in iter_sentences(docs, window=2)] == ["One two three. Short.", "Four five six.",
                                                                "one, two three!"]
    assert [s.text for s in iter_sentences(docs, max_chars=6)] == ["Short."]


def test_matcher_whole_words_case_and_contractions():
    found = Matcher(PRONOUNS).find("He said the theme of it-based he's work is that they, THEY and She won.")
    assert [(m.text, m.target, m.class_index) for m in found] == [
        ("He", "he", 0), ("they", "they", 1), ("THEY", "they", 1), ("She", "she", 0)
    ]


def test_matcher_multiword_targets_win_over_their_prefix():
    feature = Feature.from_mapping({"city": ["New York", "Paris"], "other": ["New"]})
    found = Matcher(feature).find("New   York is new, not Paris; new york too.")
    assert [(m.text, m.target) for m in found] == [("New   York", "New York"), ("new", "New"), ("Paris", "Paris"),
                                                  ("new york", "New York")]


def test_case_sensitive_class_matches_exact_case_only():
    feature = Feature((FeatureClass("abbr", ("US",), case_sensitive=True), FeatureClass("w", ("we",))))
    assert [m.text for m in Matcher(feature).find("Let us go to the US, we said.")] == ["US", "we"]


def test_word_pattern_matches_whole_words_only():
    pat = word_pattern(["he"])
    assert pat.search("the theme there") is None
    assert pat.search("and he left").group(0) == "he"


@pytest.mark.parametrize(
    ("factual", "listed", "alternative", "expected"),
    [("he", "he", "they", "they"), ("He", "he", "they", "They"), ("HE", "he", "they", "THEY"),
     ("They", "they", "she", "She"), ("I", "I", "we", "we"), ("New York", "New York", "paris", "paris")],
)
def test_apply_case_transfers_surface_case(factual, listed, alternative, expected):
    assert apply_case(factual, listed, alternative) == expected


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Feature.from_mapping({"A": ["he"], "B": ["He"]}), "target 'He' is in two classes ('A' and 'B')"),
        (lambda: Feature((FeatureClass("A", ("x",)), FeatureClass("A", ("y",)))), "duplicate class id(s) ['A']"),
        (lambda: Feature((FeatureClass("A", ("x",)),)), "at least two classes"),
        (lambda: FeatureClass("A", ()), "class 'A' needs at least one non-empty target"),
        (lambda: FeatureClass("A", "he"), "must be a list of words"),
        (lambda: FeatureClass.parse("3SG:he"), "must look like ID=word,word"),
        (lambda: FeatureClass("A", ("be good",), lemma=True), "single-word targets only"),
        (lambda: DataConfig(split_ratios=(0.5, 0.3, 0.3)), "summing to 1"),
        (lambda: DataConfig(alternatives="some"), "alternatives must be one of"),
        (lambda: DataConfig.from_dict({"seeed": 1}), "unknown data option(s) ['seeed']"),
    ],
)
def test_bad_definitions_raise_clear_errors(make, message):
    with pytest.raises(GradiendError) as err:
        make()
    assert message in str(err.value)


def test_feature_and_config_round_trip():
    feature = Feature((FeatureClass.parse("3SG=he, she ,it"), FeatureClass("3PL", ("they",), pos="PRON")))
    assert feature.positive.targets == ("he", "she", "it")
    assert Feature.from_dict(feature.to_dict()) == feature
    config = DataConfig(split_ratios=(0.7, 0.2, 0.1), excluded_words=("him",), max_rows_per_class=5)
    assert DataConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["split_ratios"] == [0.7, 0.2, 0.1]
