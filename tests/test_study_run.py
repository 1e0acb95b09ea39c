"""A whole study on a tiny model: data sets once, runs on shared data, failures isolated, matrices over the pool."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from gradiend import constants as C
from gradiend.executors import LocalExecutor, get_executor
from gradiend.study_plan import Node, StudyPlan
from gradiend.suite import run_suite, suite_from_dict

GERMAN = Path(__file__).parent / "data" / "german_articles.csv"


def _suite(model: Path, out: Path, extra_datasets=None, extra_designs=()):
    return suite_from_dict({
        "name": "de", "output_dir": str(out),
        "datasets": {"articles": {"table": str(GERMAN),
                                  "classes": {"masc_nom": [], "fem_nom": [], "neut_nom": [], "fem_dat": []}},
                     **(extra_datasets or {})},
        "designs": [{"kind": "all_pairs", "dataset": "articles", "classes": ["masc_nom", "fem_nom", "neut_nom"]},
                    {"kind": "pairs", "dataset": "articles", "pairs": [["fem_dat", "masc_nom"]], "identity": "others"},
                    *extra_designs],
        "compare": {"topk": 50, "max_rows": 4, "venn": ["masc_nom_vs_fem_nom", "masc_nom_vs_neut_nom",
                                                        "fem_nom_vs_neut_nom"]},
        "base": {"model": {"spec": str(model)},
                 "data": {"options": {"seed": 0, "split_ratios": [0.5, 0.25, 0.25]}},
                 "gradients": {"rows_per_gradient": 2, "validation_rows": 6},
                 "train": {"lr": 1e-3, "steps": 4, "eval_every": 2},
                 "eval": {"max_rows": 3, "max_lms_texts": 4, "alphas": [0.1, 1.0], "bootstrap": 10}},
    })


@pytest.fixture(scope="module")
def study(tmp_path_factory, study_model_dir):
    out = tmp_path_factory.mktemp("study")
    broken = {"broken": {"table": str(out / "missing.csv"), "classes": {"a": [], "b": []}}}
    suite = _suite(study_model_dir, out, broken, [{"kind": "all_pairs", "dataset": "broken"}])
    return suite, run_suite(suite, progress=False)


def test_data_set_created_once_and_shared_by_its_runs(study):
    suite, study_dir = study
    shared = study_dir / "data" / "articles"
    assert (shared / C.PAIRS_FILE).is_file()
    for name in ("masc_nom_vs_fem_nom", "fem_dat_vs_masc_nom"):
        link = study_dir / name / C.DATA_DIR
        assert link.is_symlink() and link.resolve() == shared.resolve()
    assert sorted(p.name for p in (study_dir / "data").iterdir()) == ["articles"]  # the broken one left nothing


def test_a_failing_data_set_fails_alone_and_the_rest_is_compared(study):
    _, study_dir = study
    summary = json.loads((study_dir / "study.json").read_text())
    assert summary["nodes"]["data:broken"]["status"] == "failed"
    assert "missing.csv" in summary["nodes"]["data:broken"]["error"]
    assert summary["nodes"]["run:a_vs_b"]["status"] == "skipped"
    assert summary["failed"] == ["data:broken", "run:a_vs_b"]
    assert summary["nodes"]["compare"]["status"] == "finished"
    assert list(summary["model_loads"].values()) == [1]  # one base-model load for the whole study
    assert "Not compared (failed or not finished): a_vs_b" in (study_dir / "report.html").read_text()


def test_study_matrices_cover_every_transition_and_class_of_the_pool(study):
    _, study_dir = study
    cmp = study_dir / "comparison"
    classes = pd.read_csv(cmp / "cross_encoding_classes.csv", index_col=0)
    assert list(classes.columns) == ["masc_nom", "fem_nom", "neut_nom", "fem_dat"]
    assert list(classes.index) == ["masc_nom_vs_fem_nom", "masc_nom_vs_neut_nom", "fem_nom_vs_neut_nom",
                                   "fem_dat_vs_masc_nom"]
    transitions = pd.read_csv(cmp / "cross_encoding_transitions.csv", index_col=0)
    assert "masc_nom->fem_nom" in transitions.columns and "fem_dat->fem_dat" in transitions.columns
    for name in ("overlap_heatmap.png", "overlap_chance_heatmap.png", "cross_encoding_classes_heatmap.png",
                 "cross_encoding_transitions_heatmap.png", "topk_venn.png", "topk_upset.png", "cross_encodings.parquet"):
        assert (cmp / name).stat().st_size > 0, name


def test_identity_task_and_multi_class_encoder_evaluation(study):
    _, study_dir = study
    run = study_dir / "fem_dat_vs_masc_nom"
    config = json.loads((run / C.GRADIEND_DIR / "config.json").read_text())
    assert config["task"]["identity"] == ["fem_nom", "neut_nom"] and config["classes"] == ["fem_dat", "masc_nom"]
    enc = json.loads((run / C.METRICS_DIR / C.ENCODER_METRICS_FILE).read_text())
    assert {"fem_dat->masc_nom", "masc_nom->fem_dat", "fem_nom->fem_nom", "fem_nom->neut_nom"} <= set(enc["per_transition"])
    assert enc["per_transition"]["fem_nom->fem_nom"]["label"] == 0.0
    assert set(enc["per_group"]) == {"fem_dat", "masc_nom"}


def test_rerun_skips_every_finished_node(study, study_model_dir):
    suite, study_dir = study
    plan_outcome = run_suite(suite, progress=False)
    assert plan_outcome == study_dir
    for name in ("masc_nom_vs_fem_nom", "fem_dat_vs_masc_nom"):
        stages = json.loads((study_dir / name / C.METRICS_DIR / C.STAGES_FILE).read_text())
        assert "train" in stages  # still recorded, not redone (fingerprints match)


def _ok(value):
    return value


def _boom(value):
    raise RuntimeError(f"boom {value}")


_CALLS: list[int] = []


def _flaky(value):
    _CALLS.append(value)
    if len(_CALLS) == 1:
        raise OSError("transient")
    return value


def test_local_executor_isolates_failures_and_retries():
    plan = StudyPlan((Node("a", "data", _ok, (1,)), Node("b", "run", _boom, (2,), deps=("a",)),
                      Node("c", "run", _ok, (3,), deps=("b",)), Node("d", "run", _flaky, (4,), deps=("a",)),
                      Node("z", "compare", lambda results: sorted(results), (), deps=("b", "d"), needs_results=True,
                           partial=True)))
    out = LocalExecutor(retries=1).run(plan)
    assert out["b"].status == "failed" and out["b"].error.startswith("RuntimeError: boom 2") and out["b"].attempts == 1
    assert out["c"].status == "skipped" and "b" in out["c"].error
    assert out["d"].status == "finished" and out["d"].attempts == 2
    assert out["z"].result == ["d"]
    with pytest.raises(Exception, match="unknown executor 'dask'"):
        get_executor("dask")
    with pytest.raises(Exception, match="executor 'local'.*unexpected keyword"):
        get_executor("local", workers=3)
