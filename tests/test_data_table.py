"""Imported tables, words in several constrained classes, paradigm alternatives."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gradiend.constants import MASK
from gradiend.data import DataConfig, Feature, FeatureClass, create_data, load_data
from gradiend.data.table import import_table, read_table
from gradiend.errors import GradiendError

GERMAN = Path(__file__).parent / "data" / "german_articles.csv"


def test_german_table_imports_with_every_transition_and_umlauts_intact(tmp_path):
    data = import_table(GERMAN, DataConfig(seed=0, split_ratios=(0.5, 0.25, 0.25)))
    assert data.feature.class_ids == ("masc_nom", "fem_nom", "neut_nom", "masc_acc", "fem_dat", "masc_dat", "masc_gen")
    assert data.feature.get("fem_dat").targets == ("der",) and data.feature.get("masc_nom").targets == ("der",)
    pairs = data.pairs
    transitions = set(zip(pairs["factual_class"], pairs["alternative_class"], strict=True))
    assert len(transitions) == 7 * 6  # every ordered pair of classes
    # the alternative takes the factual's surface case: sentence-initial "Der" → "Die", mid-sentence "der" → "die"
    row = pairs[(pairs["factual_class"] == "masc_nom") & (pairs["alternative_class"] == "fem_nom")].iloc[0]
    assert (row["factual"], row["alternative"]) == ("Der", "Die") and row["masked"].startswith(MASK)
    row = pairs[(pairs["factual_class"] == "fem_dat") & (pairs["alternative_class"] == "masc_dat")].iloc[0]
    assert (row["factual"], row["alternative"]) == ("der", "dem")
    assert pairs["masked"].str.contains("Ärztin").any()
    assert set(pairs["split"]) == {"train", "validation", "test"}
    by_sentence = pairs.groupby("sentence_id")["split"].nunique()
    assert (by_sentence == 1).all()  # a sentence never spans two splits
    data.save(tmp_path / "d")
    again = load_data(tmp_path / "d")
    assert again.feature.imported and again.feature == data.feature


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_table_formats_and_published_aliases(tmp_path, suffix):
    frame = pd.DataFrame({"masked": [f"a {MASK} b", f"c {MASK} d", f"e {MASK} f"], "label": ["he", "they", "she"],
                          "label_class": ["3SG", "3PL", "3SG"], "split": ["train", "train", "test"]})
    path = tmp_path / f"t{suffix}"
    {".parquet": lambda: frame.to_parquet(path), ".csv": lambda: frame.to_csv(path, index=False),
     ".jsonl": lambda: frame.to_json(path, orient="records", lines=True)}[suffix]()
    table = read_table(path)
    assert table["factual"].tolist() == ["he", "they", "she"] and table["factual_class"].tolist() == ["3SG", "3PL", "3SG"]


def test_saved_dataset_directory_with_splits_as_keys(tmp_path):
    datasets = pytest.importorskip("datasets")
    part = {"masked": [f"x {MASK} y", f"z {MASK} w"], "factual": ["he", "they"], "factual_class": ["3SG", "3PL"]}
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(part), "test": datasets.Dataset.from_dict(part)})
    dd.save_to_disk(str(tmp_path / "ds"))
    table = read_table(tmp_path / "ds")
    assert sorted(table["split"]) == ["test", "test", "train", "train"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.assign(masked=f["masked"].where(f.index != 2, f"two {MASK} and {MASK}")),
         r"row 3, column 'masked' has 2 \[MASK\] markers, needs exactly one"),
        (lambda f: f.assign(masked=f["masked"].where(f.index != 1, "no marker")), r"row 2, column 'masked' has 0"),
        (lambda f: f.assign(factual=f["factual"].where(f.index != 3, "")), r"row 4, column 'factual' must be non-empty"),
        (lambda f: f.assign(split=["train", "train", "dev", "test"]), r"row 3, column 'split' is 'dev'"),
        (lambda f: f.assign(alternative="they"), "'alternative' and 'alternative_class' come together"),
        (lambda f: f.drop(columns="factual_class"), r"lacks column\(s\) \['factual_class'\]"),
        (lambda f: f.assign(factual_class="3SG"), r"the table has 1 class\(es\)"),
    ],
)
def test_the_table_validator_names_the_first_bad_row_and_column(change, message):
    frame = pd.DataFrame({"masked": [f"s{i} {MASK} t" for i in range(4)], "factual": ["he", "they", "she", "they"],
                          "factual_class": ["3SG", "3PL", "3SG", "3PL"]})
    with pytest.raises(GradiendError, match=message):
        import_table(change(frame))


def test_table_classes_pick_and_order_and_unknown_class_is_named():
    data = import_table(GERMAN, DataConfig(seed=0), classes={"fem_nom": [], "masc_nom": []})
    assert data.feature.class_ids == ("fem_nom", "masc_nom")
    assert set(data.pairs["factual_class"]) == {"fem_nom", "masc_nom"}
    with pytest.raises(GradiendError, match=r"class\(es\) \['fem_gen'\] have no rows in the table"):
        import_table(GERMAN, classes={"fem_gen": [], "masc_nom": []})


def test_paradigm_alternatives_take_the_same_cell_of_the_other_class():
    docs = ["He saw him and his dog.", "She saw her and her cat.", "He said she liked him.", "They saw his car."] * 3
    feature = Feature.from_mapping({"M": ["he", "him", "his"], "F": ["she", "her", "hers"]})
    data = create_data(docs, feature, DataConfig(alternatives="paradigm", split_ratios=(1, 0, 0), neutral_size=0))
    mapping = {("he", "she"), ("him", "her"), ("his", "hers"), ("she", "he"), ("her", "him"), ("hers", "his")}
    got = {(f.lower(), a.lower()) for f, a in zip(data.pairs["factual"], data.pairs["alternative"], strict=True)}
    assert got <= mapping and ("him", "her") in got and ("his", "hers") in got
    with pytest.raises(GradiendError, match="every class must list equally many"):
        create_data(docs, Feature.from_mapping({"M": ["he", "him"], "F": ["she"]}), DataConfig(alternatives="paradigm"))


def test_a_word_in_two_constrained_classes_lands_in_the_right_class_per_sentence():
    pytest.importorskip("spacy")
    feature = Feature((FeatureClass("OBJ", ("her", "him"), morph="Case=Acc"),
                       FeatureClass("POSS", ("her", "his"), morph="Poss=Yes")))
    docs = ["I saw her yesterday at the station.", "Her book was on the table.", "They gave her the keys.",
            "He lost his keys in town.", "We met him there last week.", "Her brother met him later."]
    data = create_data(docs, feature, DataConfig(split_ratios=(1, 0, 0), neutral_size=0))
    pairs = data.pairs
    classes = {(m, f): c for m, f, c in zip(pairs["masked"], pairs["factual"], pairs["factual_class"], strict=True)}
    assert classes[(f"I saw {MASK} yesterday at the station.", "her")] == "OBJ"
    assert classes[(f"{MASK} book was on the table.", "Her")] == "POSS"
    assert classes[(f"They gave {MASK} the keys.", "her")] == "OBJ"
    assert classes[(f"{MASK} brother met him later.", "Her")] == "POSS"
    assert classes[(f"Her brother met {MASK} later.", "him")] == "OBJ"


def test_a_shared_word_without_constraints_is_still_an_error():
    with pytest.raises(GradiendError, match=r"target 'her' is in two classes \('OBJ' and 'POSS'\); a word may be"):
        Feature((FeatureClass("OBJ", ("her", "him"), morph="Case=Acc"), FeatureClass("POSS", ("her", "his"))))
