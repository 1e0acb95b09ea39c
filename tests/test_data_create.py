"""create_data on small synthetic corpora: schema, masking, splits, balancing, neutral text, errors, save/load."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pytest
from click.testing import CliRunner

from gradiend.cli import cli
from gradiend.constants import DATA_META_FILE, MASK, NEUTRAL_FILE, PAIRS_FILE
from gradiend.data import (
    PAIR_COLUMNS,
    DataConfig,
    Feature,
    FeatureData,
    create_data,
    load_data,
    load_documents,
)
from gradiend.errors import GradiendError

PRONOUNS = Feature.from_mapping({"3SG": ["he", "she", "it"], "3PL": ["they"]})


def town_docs(n: int = 60) -> list[str]:
    """Each document: one 'he', one 'they', one neutral sentence, and one with 'She' and 'it'."""
    return [
        f"In town {i} he opened a shop. Later they visited town {i} twice. "
        f"The weather in town {i} was mild. She said it was fine in {i}."
        for i in range(n)
    ]


def sentences_of(docs: list[str]) -> set[str]:
    from gradiend.data.sentences import split_sentences

    return {s for d in docs for s in split_sentences(d)}


@pytest.fixture(scope="module")
def town() -> tuple[list[str], object]:
    docs = town_docs()
    return docs, create_data(docs, PRONOUNS, DataConfig(seed=1))


def test_pairs_schema_and_masking_invariants(town):
    docs, data = town
    pairs = data.pairs
    assert tuple(pairs.columns) == PAIR_COLUMNS
    assert (pairs["masked"].str.count(MASK.replace("[", r"\[").replace("]", r"\]")) == 1).all()
    originals = sentences_of(docs)
    unmasked = [m.replace(MASK, f, 1) for m, f in zip(pairs["masked"], pairs["factual"], strict=True)]
    assert set(unmasked) <= originals
    # 4 occurrences per document: he, they, She, it
    assert Counter(pairs["factual"]) == {"he": 60, "they": 60, "She": 60, "it": 60}
    assert set(pairs.loc[pairs.factual_class == "3SG", "alternative"]) == {"they", "They"}
    assert set(pairs.loc[pairs.factual_class == "3PL", "alternative"]) <= {"he", "she", "it"}
    assert (pairs["factual_class"] != pairs["alternative_class"]).all()


def test_sentence_with_two_targets_gives_one_row_per_target_others_kept(town):
    _, data = town
    rows = data.pairs[data.pairs["masked"].str.contains("fine in 7.", regex=False)]
    assert sorted(rows["masked"]) == ["She said [MASK] was fine in 7.", "[MASK] said it was fine in 7."]
    assert rows["sentence_id"].nunique() == 1
    assert rows.set_index("factual")["alternative"].to_dict() == {"She": "They", "it": "they"}


def test_splits_group_documents_and_never_share_sentences(town):
    _, data = town
    both = pd.concat([data.pairs[["doc_id", "sentence_id", "split"]], data.neutral[["doc_id", "sentence_id", "split"]]])
    assert (both.groupby("doc_id")["split"].nunique() == 1).all()
    assert (both.groupby("sentence_id")["split"].nunique() == 1).all()
    assert set(data.pairs["sentence_id"]).isdisjoint(set(data.neutral["sentence_id"]))
    docs_per_split = data.pairs.groupby("split")["doc_id"].nunique().to_dict()
    assert docs_per_split == {"train": 48, "validation": 6, "test": 6}


def test_counts_in_meta_match_the_tables(town):
    _, data = town
    counts = data.meta["counts"]
    for cls in ("3SG", "3PL"):
        for split in ("train", "validation", "test"):
            expected = int(((data.pairs.factual_class == cls) & (data.pairs.split == split)).sum())
            assert counts[cls][split] == expected
    assert counts["3SG"]["total"] == 180 and counts["3PL"]["total"] == 60
    assert counts["neutral"]["total"] == len(data.neutral) == 60
    assert data.meta["gradiend_version"] and len(data.meta["fingerprint"]) == 64


def test_neutral_text_is_whole_word_free_of_targets_and_excluded_words():
    docs = town_docs(30)
    plain = create_data(docs, PRONOUNS, DataConfig(seed=0))
    # "The weather" contains "he" only inside words: it is still neutral
    assert plain.neutral["text"].str.startswith("The weather").all() and len(plain.neutral) == 30
    excluded = create_data(docs + ["A calm harbour town lies here."] * 1, PRONOUNS,
                           DataConfig(seed=0, excluded_words=("weather",)))
    assert list(excluded.neutral["text"]) == ["A calm harbour town lies here."]


def test_same_seed_same_bytes_other_seed_other_splits(tmp_path, town):
    docs, data = town
    again = create_data(docs, PRONOUNS, DataConfig(seed=1))
    data.save(tmp_path / "a")
    again.save(tmp_path / "b")
    for name in (PAIRS_FILE, NEUTRAL_FILE, DATA_META_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    other = create_data(docs, PRONOUNS, DataConfig(seed=2))
    assert other.meta["fingerprint"] != data.meta["fingerprint"]
    assert list(other.pairs["split"]) != list(data.pairs["split"])


def test_alternatives_all_and_min_left_context():
    docs = town_docs(20)
    feature = Feature.from_mapping({"SG": ["he", "she"], "PL": ["they", "we"]})
    data = create_data(docs, feature, DataConfig(alternatives="all"))
    he_rows = data.pairs[data.pairs["masked"].str.contains("town 3 [MASK] opened", regex=False)]
    assert sorted(he_rows["alternative"]) == ["they", "we"]
    she_rows = data.pairs[data.pairs["factual"] == "She"]
    assert set(she_rows["alternative"]) == {"They", "We"} and len(she_rows) == 40
    # min_left_context=1: sentence-initial "She" (0 words before) goes, "they" (1 word before) stays
    ctx = create_data(docs, feature, DataConfig(min_left_context=1))
    assert set(ctx.pairs["factual"]) == {"he", "they"}
    assert ctx.meta["corpus"]["dropped_by_min_left_context"] == 20


def test_cap_equal_sizes_and_target_balance():
    docs = town_docs(100)
    capped = create_data(docs, PRONOUNS, DataConfig(max_rows_per_class=50))
    assert capped.meta["counts"]["3SG"] == {"train": 40, "validation": 5, "test": 5, "total": 50}
    assert capped.meta["counts"]["3PL"] == {"train": 40, "validation": 5, "test": 5, "total": 50}
    equal = create_data(docs, PRONOUNS, DataConfig(equal_class_sizes=True))
    table = equal.counts()
    assert (table.loc["3SG"] == table.loc["3PL"]).all() and table.loc["3SG", "total"] == 100
    targets = create_data(docs, PRONOUNS, DataConfig(balance_targets=True, max_rows_per_class=60))
    per_word = targets.pairs[targets.pairs.factual_class == "3SG"].groupby(["split", targets.pairs.factual.str.lower()])
    sizes = per_word.size().unstack()
    assert (sizes.nunique(axis=1) == 1).all()  # he, she, it equally often in every split
    assert sizes.loc["train"].tolist() == [16, 16, 16]


def test_held_out_vocabulary_puts_each_word_in_one_split():
    words_a, words_b = ["he", "she", "it", "one"], ["they", "we", "you"]
    docs = [" ".join(f"On day {i} {w} painted fence {k}." for k, w in enumerate(words_a + words_b)) for i in range(30)]
    feature = Feature.from_mapping({"A": words_a, "B": words_b})
    data = create_data(docs, feature, DataConfig(held_out_vocabulary=True, seed=3))
    pairs = data.pairs
    assert (pairs.groupby(pairs["factual"].str.lower())["split"].nunique() == 1).all()
    assert set(pairs["split"]) == {"train", "validation", "test"}
    factual_split = dict(zip(pairs["factual"], pairs["split"], strict=True))
    assert all(factual_split[a] == s for a, s in zip(pairs["alternative"], pairs["split"], strict=True))


def test_documents_from_files_and_frames(tmp_path):
    texts = ["He ran home.", "", "They ran too."]
    (tmp_path / "c.txt").write_text("\n".join(texts))
    pd.DataFrame({"body": texts, "id": ["a", "b", "c"]}).to_csv(tmp_path / "c.csv", index=False)
    pd.DataFrame({"body": texts}).to_parquet(tmp_path / "c.parquet")
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"body": t}) for t in texts))
    (tmp_path / "w.json").write_text(json.dumps({"Apple": {"extract": "An apple."}, "Pear": {"extract": "A pear."}}))
    assert [(d.doc_id, d.text) for d in load_documents(tmp_path / "c.txt")] == [("0", texts[0]), ("2", texts[2])]
    assert [d.doc_id for d in load_documents(str(tmp_path / "c.csv"), text_column="body", id_column="id")] == ["a", "c"]
    for name in ("c.parquet", "c.jsonl"):
        assert [d.text for d in load_documents(tmp_path / name, text_column="body")] == [texts[0], texts[2]]
    assert [(d.doc_id, d.text) for d in load_documents(tmp_path / "w.json")] == [("Apple", "An apple."),
                                                                                 ("Pear", "A pear.")]
    sample = load_documents([f"t{i}" for i in range(50)], max_documents=5, seed=7)
    assert sample == load_documents([f"t{i}" for i in range(50)], max_documents=5, seed=7)
    assert len(sample) == 5 and [int(d.doc_id) for d in sample] == sorted(int(d.doc_id) for d in sample)


@pytest.mark.parametrize(
    ("texts", "feature", "kwargs", "message"),
    [
        (town_docs(20), Feature.from_mapping({"A": ["he"], "B": ["zebra"]}), {},
         "class 'B' (targets ['zebra']) matched nothing in 80 sentences"),
        (town_docs(2), PRONOUNS, {}, "class '3SG' has too few rows for the splits ['train', 'validation', 'test']"),
        (["", "  "], PRONOUNS, {}, "the corpus is empty"),
        (pd.DataFrame({"body": ["He ran."]}), PRONOUNS, {}, "has no column 'text'; columns: ['body']"),
        ("missing_file.csv", PRONOUNS, {}, "text file 'missing_file.csv' does not exist"),
        ("He ran home. They ran too.", PRONOUNS, {}, "is not a file, an offline asset or a dataset id"),
    ],
)
def test_bad_input_raises_clear_errors(texts, feature, kwargs, message):
    with pytest.raises(GradiendError) as err:
        create_data(texts, feature, DataConfig(), **kwargs)
    assert message in str(err.value)


def test_held_out_vocabulary_needs_a_word_per_split():
    with pytest.raises(GradiendError, match="class '3PL' has 1: \\['they'\\]"):
        create_data(town_docs(20), PRONOUNS, DataConfig(held_out_vocabulary=True))


def test_save_load_round_trip_and_validation(tmp_path, town):
    _, data = town
    data.save(tmp_path / "d")
    loaded = load_data(tmp_path / "d")
    pd.testing.assert_frame_equal(loaded.pairs, data.pairs)
    pd.testing.assert_frame_equal(loaded.neutral, data.neutral)
    assert loaded.feature == PRONOUNS and loaded.meta == json.loads(json.dumps(data.meta))
    with pytest.raises(GradiendError, match="is not a gradiend data directory: missing data.json"):
        load_data(tmp_path)
    data.pairs.drop(columns=["alternative"]).to_parquet(tmp_path / "d" / PAIRS_FILE)
    with pytest.raises(GradiendError, match=r"pairs.parquet is damaged: \d+ bytes where \d+ were written"):
        load_data(tmp_path / "d")  # changed after it was written: data.json's record no longer matches
    FeatureData(data.pairs.drop(columns=["alternative"]), data.neutral, data.meta, data.feature).save(tmp_path / "e")
    with pytest.raises(GradiendError, match=r"pairs.parquet lacks column\(s\) \['alternative'\]"):
        load_data(tmp_path / "e")


def test_cli_writes_directory_and_prints_counts(tmp_path):
    src = tmp_path / "t.txt"
    src.write_text("\n".join(town_docs(40)))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["data", "--texts", str(src), "--class", "3SG=he,she,it", "--class", "3PL=they", "--out", str(out),
              "--max-rows-per-class", "20"],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["split", "train", "validation", "test", "total"]
    assert lines[2].split() == ["3SG", "16", "2", "2", "20"] and lines[3].split() == ["3PL", "16", "2", "2", "20"]
    assert load_data(out).meta["config"]["max_rows_per_class"] == 20
    bad = CliRunner().invoke(cli, ["data", "--texts", str(src), "--class", "A=he", "--class", "A=they",
                                   "--out", str(out)])
    assert bad.exit_code != 0 and "duplicate class id(s) ['A']" in str(bad.exception)


def test_three_classes_one_pass_one_row_per_other_class():
    feature = Feature.from_mapping({"M": ["he"], "F": ["she"], "PL": ["they"]})
    data = create_data(town_docs(30), feature, DataConfig(seed=5))
    pairs = data.pairs
    assert Counter(zip(pairs["factual_class"], pairs["alternative_class"], strict=True)) == {
        ("M", "F"): 30, ("M", "PL"): 30, ("F", "M"): 30, ("F", "PL"): 30, ("PL", "M"): 30, ("PL", "F"): 30,
    }
    she = pairs[pairs["factual"] == "She"].set_index("alternative_class")["alternative"]
    assert set(she.items()) == {("M", "He"), ("PL", "They")}


def test_fingerprint_follows_content_not_location(tmp_path):
    docs = town_docs(20)
    (tmp_path / "a.txt").write_text("\n".join(docs))
    (tmp_path / "b.txt").write_text("\n".join(docs))
    fa = create_data(tmp_path / "a.txt", PRONOUNS).meta["fingerprint"]
    assert create_data(tmp_path / "b.txt", PRONOUNS).meta["fingerprint"] == fa
    assert create_data(docs, PRONOUNS).meta["fingerprint"] == fa
    assert create_data(docs[:-1], PRONOUNS).meta["fingerprint"] != fa
    assert create_data(docs, PRONOUNS, DataConfig(neutral_size=5)).meta["fingerprint"] != fa
