"""Suite files: data sets, designs, per-feature overrides, and the study plan they become."""

import pytest

from gradiend.cli.run_cmd import example_path
from gradiend.config import data_fingerprint_of
from gradiend.designs import expand
from gradiend.errors import GradiendError
from gradiend.study_plan import plan_study
from gradiend.suite import load_suite, suite_from_dict

CLASSES = {"1SG": ["i"], "1PL": ["we"], "3SG": ["he", "she", "it"], "3PL": ["they"]}
BASE = {"model": {"spec": "offline:splade-tiny"}, "data": {"texts": "offline:wiki-en"}}


def _suite(designs, **extra):
    return suite_from_dict({"name": "s", "output_dir": "out", "datasets": {"pron": {"classes": CLASSES}},
                            "designs": designs, "base": BASE, **extra})


def test_designs_are_generators_of_tasks():
    ids = list(CLASSES)
    assert [s.name for s in expand({"kind": "all_pairs"}, ids)] == [
        "1SG_vs_1PL", "1SG_vs_3SG", "1SG_vs_3PL", "1PL_vs_3SG", "1PL_vs_3PL", "3SG_vs_3PL"]
    assert expand({"kind": "pairs", "pairs": [["3PL", "3SG"]]}, ids)[0].task == {"positive": "3PL", "negative": "3SG"}
    rest = expand({"kind": "one_vs_rest", "classes": ["1SG", "3SG", "3PL"]}, ids)
    assert rest[0].task == {"groups": {"1SG": ["1SG"], "non_1SG": ["3SG", "3PL"]}, "positive": "1SG"}
    held = expand({"kind": "all_but_one", "pairs": [["1SG", "1PL"], ["3SG", "3PL"], ["i2", "we2"]]}, [*ids, "i2", "we2"])
    assert held[0].name == "all_but_1SG_1PL"
    assert held[0].task["groups"] == {"positive": ["3SG", "i2"], "negative": ["3PL", "we2"]}
    assert held[0].task["clusters"] == [["3SG", "3PL"], ["i2", "we2"]]


@pytest.mark.parametrize(
    ("design", "message"),
    [
        ({"kind": "pairs", "pairs": [["3SG", "4PL"]]}, r"pair \['3SG', '4PL'\] names unknown class\(es\) \['4PL'\]"),
        ({"kind": "merged", "groups": {"SG": ["1SG", "3SG"], "PL": ["3SG", "3PL"]}}, "class '3SG' is in two groups"),
        ({"kind": "triples"}, "design kind 'triples' is unknown"),
        ({"kind": "all_pairs", "colour": "red"}, r"design keys \['colour'\] are unknown"),
        ({"kind": "all_but_one", "pairs": [["1SG", "1PL"]]}, "needs at least two pairs"),
    ],
)
def test_bad_designs_get_one_clear_error(design, message):
    with pytest.raises(GradiendError, match=message):
        _suite([design])


def test_one_data_set_shared_by_every_feature_with_per_feature_overrides():
    suite = _suite([{"kind": "all_pairs"},
                    {"kind": "merged", "name": "SG_vs_PL", "groups": {"SG": ["1SG", "3SG"], "PL": ["1PL", "3PL"]},
                     "clusters": [["1SG", "1PL"], ["3SG", "3PL"]], "overrides": {"train": {"lr": 1e-3}}}],
                   overrides={"3SG_vs_3PL": {"train": {"steps": 7}}})
    assert [r.name for r in suite.runs][-1] == "SG_vs_PL" and len(suite.runs) == 7
    assert {r.config.fingerprint("data") for r in suite.runs} == {data_fingerprint_of(suite.datasets["pron"])}
    by_name = {r.name: r.config for r in suite.runs}
    assert by_name["SG_vs_PL"].train.lr == 1e-3 and by_name["3SG_vs_3PL"].train.steps == 7
    assert by_name["1SG_vs_1PL"].train.steps is None
    task = by_name["SG_vs_PL"].task.resolve(list(CLASSES))
    assert set(task.transitions) == {("1SG", "1PL"), ("1PL", "1SG"), ("3SG", "3PL"), ("3PL", "3SG")}
    assert by_name["SG_vs_PL"].rewrite.strengthen == ("SG",)
    assert str(by_name["SG_vs_PL"].run_dir) == "out/s/SG_vs_PL"
    plan = plan_study(suite)
    assert [n.id for n in plan.nodes][:2] == ["data:pron", "run:1SG_vs_1PL"] and plan.nodes[-1].id == "compare"
    assert plan["run:SG_vs_PL"].deps == ("data:pron",) and plan["run:SG_vs_PL"].args[1] == "out/s/data/pron"
    assert len(plan["compare"].deps) == 7


def test_cli_style_overrides_and_output_dir_apply_to_every_run():
    suite = suite_from_dict({"name": "s", "datasets": {"pron": {"classes": CLASSES}}, "designs": [{"kind": "all_pairs"}],
                             "base": BASE}, overrides=["train.lr=0.5"], output_dir="elsewhere")
    assert all(r.config.train.lr == 0.5 for r in suite.runs)
    assert str(suite.study_dir) == "elsewhere/s" and str(suite.data_dir("pron")) == "elsewhere/s/data/pron"


def test_suite_errors_name_the_problem():
    with pytest.raises(GradiendError, match=r"\[overrides\] names feature\(s\) \['he_vs_she'\]"):
        _suite([{"kind": "all_pairs"}], overrides={"he_vs_she": {"train": {"lr": 1.0}}})
    with pytest.raises(GradiendError, match="every design needs dataset = one of"):
        suite_from_dict({"name": "s", "datasets": {"a": {"classes": CLASSES}, "b": {"classes": CLASSES}},
                         "designs": [{"kind": "all_pairs"}], "base": BASE})
    with pytest.raises(GradiendError, match=r"feature name\(s\) \['1SG_vs_1PL'\] are declared twice"):
        _suite([{"kind": "all_pairs"}, {"kind": "pairs", "pairs": [["1SG", "1PL"]]}])
    with pytest.raises(GradiendError, match="must not set classes"):
        suite_from_dict({"name": "s", "datasets": {"a": {"classes": CLASSES}}, "designs": [{"kind": "all_pairs"}],
                         "base": {**BASE, "data": {"texts": "x", "classes": CLASSES}}})
    with pytest.raises(GradiendError, match="overrides \\[data\\]: a data set is shared"):
        _suite([{"kind": "all_pairs", "overrides": {"data": {"options": {"seed": 3}}}}])


def test_older_form_is_one_data_set_with_one_design():
    suite = suite_from_dict({"name": "s", "classes": CLASSES, "features": [["3SG", "3PL"]], "base": BASE})
    assert list(suite.datasets) == ["default"] and [r.name for r in suite.runs] == ["3SG_vs_3PL"]
    data = {**BASE["data"], "constraints": {"3SG": {"pos": "PRON"}}}
    suite = suite_from_dict({"name": "s", "classes": CLASSES, "base": {**BASE, "data": data}})
    assert suite.datasets["default"].constraints["3SG"].pos == "PRON"
    with pytest.raises(GradiendError, match=r"constraints name unknown class\(es\) \['nope'\]"):
        suite_from_dict({"name": "s", "classes": CLASSES,
                         "base": {**BASE, "data": {**BASE["data"], "constraints": {"nope": {"pos": "X"}}}}})


@pytest.mark.parametrize("name", ["splade-english-suite.toml", "english-pronouns-study.toml",
                                  "german-articles-study.toml", "gemma-german-articles-study.toml"])
def test_bundled_suite_examples_load(name):
    suite = load_suite(example_path(name))
    assert len(suite.runs) >= 3 and suite.compare["topk"] == 1000
