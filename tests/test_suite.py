import pytest

from gradiend.cli.run_cmd import example_path
from gradiend.errors import GradiendError
from gradiend.suite import feature_pairs, load_suite, suite_from_dict

CLASSES = {"3SG": ["he", "she"], "3PL": ["they"], "is": ["is"]}
BASE = {"model": {"spec": "offline:splade-tiny"}, "data": {"texts": "offline:wiki-en"}}


def test_feature_modes():
    assert feature_pairs(CLASSES, "all_pairs") == [("3SG", "3PL"), ("3SG", "is"), ("3PL", "is")]
    assert feature_pairs(CLASSES, [["is", "3PL"]]) == [("is", "3PL")]
    assert feature_pairs(CLASSES, "one_vs_rest")[0] == ("3SG", "non_3SG")
    with pytest.raises(GradiendError, match="unknown class 'was'"):
        feature_pairs(CLASSES, [["3SG", "was"]])


def test_suite_builds_one_run_per_feature_in_the_study_directory():
    suite = suite_from_dict({"name": "s", "output_dir": "out", "features": "one_vs_rest", "classes": CLASSES,
                             "base": BASE})
    first = suite.runs[0]
    assert first.name == "3SG_vs_non_3SG" and str(first.run_dir) == "out/s/3SG_vs_non_3SG"
    assert first.data.classes == {"3SG": ("he", "she"), "non_3SG": ("they", "is")}
    assert first.rewrite.strengthen == ("3SG",)
    assert len({c.fingerprint("data") for c in suite.runs}) == len(suite.runs)


def test_suite_refuses_classes_in_base_and_unknown_keys():
    with pytest.raises(GradiendError, match="must not set classes"):
        suite_from_dict({"name": "s", "classes": CLASSES, "base": {**BASE, "data": {"texts": "x", "classes": {}}}})
    with pytest.raises(GradiendError, match="unknown key 'feature'"):
        suite_from_dict({"name": "s", "classes": CLASSES, "base": BASE, "feature": "all_pairs"})


def test_suite_class_constraints_go_to_the_features_that_use_the_class():
    data = {**BASE["data"], "constraints": {"3SG": {"pos": "PRON"}}}
    suite = suite_from_dict({"name": "s", "classes": CLASSES, "base": {**BASE, "data": data}})
    for run in suite.runs:
        expected = {"3SG": ("PRON", None)} if "3SG" in run.data.classes else {}
        assert {c: (k.pos, k.morph) for c, k in run.data.constraints.items()} == expected
    with pytest.raises(GradiendError, match=r"\[base.data.constraints\] names unknown class\(es\) \['nope'\]"):
        suite_from_dict({"name": "s", "classes": CLASSES,
                         "base": {**BASE, "data": {**BASE["data"], "constraints": {"nope": {"pos": "X"}}}}})


def test_bundled_suite_example_loads():
    suite = load_suite(example_path("splade-english-suite.toml"))
    assert [c.name for c in suite.runs][:2] == ["3SG_vs_3PL", "he_vs_she"]
    assert suite.compare["topk"] == 1000
