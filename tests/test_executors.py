"""The local executor: retries only infrastructure faults, isolates failing nodes, stops cleanly on Ctrl-C."""

from __future__ import annotations

import _thread
import json
import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import tomli_w
from safetensors.torch import load_file

from gradiend import constants as C
from gradiend.cli import main
from gradiend.config import ModelConfig
from gradiend.errors import GradiendError, MissingExtraError
from gradiend.executors import ExecutionConfig, LocalExecutor, StudyInterrupted, attempt, get_executor
from gradiend.stages import GradientConfig
from gradiend.study_plan import Node, StudyPlan, estimate_resources, write_summary
from gradiend.suite import suite_from_dict

GERMAN = Path(__file__).parent / "data" / "german_articles.csv"


class Flaky:
    """Fails with ``exc`` on the first ``fails`` calls, then returns the number of calls."""

    def __init__(self, exc: BaseException, fails: int) -> None:
        self.exc, self.fails, self.calls = exc, fails, 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.fails:
            raise self.exc
        return self.calls


@pytest.mark.parametrize(("exc", "fails", "retries", "status", "calls"), [
    (OSError("disk full"), 2, 2, "finished", 3),          # infrastructure: retried until it works
    (MemoryError(), 1, 1, "finished", 2),
    (OSError("disk full"), 2, 1, "failed", 2),            # ... but only `retries` more times
    (RuntimeError("bad value"), 1, 3, "failed", 1),       # the node's own error: no retry
    (GradiendError("bad data"), 1, 3, "failed", 1),
    (FileNotFoundError("missing.csv"), 1, 3, "failed", 1),  # a missing input does not come back by retrying
])
def test_attempt_retries_only_infrastructure_faults(exc, fails, retries, status, calls):
    fn = Flaky(exc, fails)
    outcome = attempt(Node("n", "run", fn, ()), (), {}, retries)
    assert (outcome.status, fn.calls, outcome.attempts) == (status, calls, calls)
    if status == "failed":
        assert str(exc) in outcome.error or type(exc).__name__ in outcome.error
    assert outcome.worker.endswith(f":{os.getpid()}")


def test_study_progress_counts_active_finished_failed_and_skipped():
    from gradiend.executors import StudyProgress
    from gradiend.study_plan import NodeOutcome

    nodes = [Node(n, "run", _ok, ()) for n in ("a", "b", "c")]
    progress = StudyProgress(3, active="submitted")  # what the Ray executor shows: it cannot see queued vs running
    outcome = {}
    for _ in nodes[:2]:
        progress.started(outcome)
    outcome["a"] = NodeOutcome("finished")
    progress.done(nodes[0], outcome)
    outcome["c"] = NodeOutcome("skipped")
    progress.done(nodes[2], outcome)
    assert progress.postfix(outcome) == "submitted 1 · finished 1 · failed 0 · skipped 1"
    progress.close()
    assert StudyProgress(1).postfix({}).startswith("running 0 · ")


def test_ray_asks_for_a_gpu_for_auto_devices_when_the_cluster_has_one():
    from gradiend.executors_ray import RayExecutor
    from gradiend.study_plan import Resources

    def node(**resources):
        return Node("run:a", "run", _ok, (), model="m", resources=Resources(**resources))

    planned_on_cpu_driver = node(cpus=1.0, gpus=0.0, gpu_if_available=True)
    executor = RayExecutor()
    assert executor._devices(planned_on_cpu_driver) == (1.0, 0.0)  # a CPU-only cluster
    executor._cluster_gpus = 4.0
    assert executor._devices(planned_on_cpu_driver) == (1.0, 1.0)
    assert executor._devices(node(gpus=0.0)) == (1.0, 0.0)  # device = "cpu" stays on the CPU
    assert RayExecutor(num_gpus=0.5)._devices(planned_on_cpu_driver) == (1.0, 0.5)  # [execution] num_gpus decides


def _ok(value):
    return value


def _bad_data(value):
    raise GradiendError(f"data set {value}: the table has no rows of class 'b'")


def test_a_failing_feature_fails_alone_and_the_comparison_still_runs(tmp_path):
    plan = StudyPlan((Node("data:good", "data", _ok, (1,)), Node("data:bad", "data", _bad_data, ("bad",)),
                      Node("run:x", "run", _ok, ("x",), deps=("data:good",)),
                      Node("run:y", "run", _ok, ("y",), deps=("data:good",)),
                      Node("run:z", "run", _ok, ("z",), deps=("data:bad",)),
                      Node("compare", "compare", lambda results: sorted(results.values()), (),
                           deps=("run:x", "run:y", "run:z"), needs_results=True, partial=True)))
    outcome = LocalExecutor(retries=2).run(plan)
    assert outcome["data:bad"].attempts == 1 and outcome["run:z"].status == "skipped"
    assert outcome["compare"].result == ["x", "y"]
    suite = SimpleNamespace(name="s", study_dir=tmp_path)
    summary = json.loads(write_summary(suite, plan, outcome).read_text())
    assert summary["failed"] == ["data:bad", "run:z"]
    assert summary["nodes"]["data:bad"]["error"] == "data set bad: the table has no rows of class 'b'"
    assert summary["nodes"]["run:z"]["error"] == "dependencies did not finish: data:bad"
    assert summary["nodes"]["compare"]["status"] == "finished"
    assert set(summary["model_loads_per_worker"]) == {outcome["compare"].worker}


def _interrupt(value):
    raise KeyboardInterrupt


def test_ctrl_c_stops_the_study_and_the_summary_says_what_finished(tmp_path):
    plan = StudyPlan((Node("a", "data", _ok, (1,)), Node("b", "run", _interrupt, (2,), deps=("a",)),
                      Node("c", "run", _ok, (3,), deps=("a",))))
    with pytest.raises(StudyInterrupted, match=r"1 of 3 node\(s\) finished; run the same command again") as info:
        LocalExecutor().run(plan)
    assert list(info.value.outcome) == ["a"]
    summary = json.loads(write_summary(SimpleNamespace(name="s", study_dir=tmp_path), plan,
                                       info.value.outcome).read_text())
    assert {k: v["status"] for k, v in summary["nodes"].items()} == {"a": "finished", "b": "interrupted",
                                                                     "c": "interrupted"}


@pytest.mark.parametrize(("raw", "message"), [
    ({"workers": 2}, r"unknown key\(s\) \['workers'\] in \[execution\]; known: executor, address"),
    ({"executor": "dask"}, "executor must be one of local, ray, got 'dask'"),
    ({"retries": -1}, "retries must be an integer ≥ 0"),
    ({"retries": 1.5}, "retries must be an integer ≥ 0"),
    ({"threads": 0}, "threads must be an integer ≥ 1"),
    ({"address": "http://head"}, "address must be auto or ray://HOST:PORT"),
    ({"num_cpus": 0}, "num_cpus must be a number > 0"),
    ({"num_gpus": -1}, "num_gpus must be a number ≥ 0"),
    ({"num_cpus": "2"}, "num_cpus must be a number > 0, got '2'"),
])
def test_execution_config_rejects_bad_settings(raw, message):
    with pytest.raises(GradiendError, match=message):
        ExecutionConfig.from_dict(raw)


def test_execution_config_options_per_executor():
    ray = ExecutionConfig.from_dict({"executor": "ray", "address": "ray://head:10001", "retries": 2, "threads": 1,
                                     "num_gpus": 1})
    assert ray.options() == {"retries": 2, "threads": 1, "address": "ray://head:10001", "num_cpus": None,
                             "num_gpus": 1}
    local = ExecutionConfig(address="auto", num_gpus=1)  # Ray-only settings are ignored by the local executor
    assert local.options() == {"retries": 0, "threads": None}
    assert isinstance(get_executor("local", **local.options()), LocalExecutor)
    with pytest.raises(GradiendError, match="unknown executor 'dask'"):
        get_executor("dask")


def _suite(model: Path, out: Path, execution=None) -> dict:
    return {"name": "de", "output_dir": str(out), "execution": execution or {},
            "datasets": {"articles": {"table": str(GERMAN), "classes": {"masc_nom": [], "fem_nom": [],
                                                                          "neut_nom": []}}},
            "designs": [{"kind": "all_pairs"}],
            "base": {"model": {"spec": str(model)}, "train": {"steps": 2, "seeds": [0, 1]}}}


def test_suite_validates_execution_and_runs_declare_memory(tmp_path, study_model_dir):
    with pytest.raises(GradiendError, match=r"unknown key\(s\) \['gpus'\] in \[execution\]"):
        suite_from_dict(_suite(study_model_dir, tmp_path, {"gpus": 1}))
    suite = suite_from_dict(_suite(study_model_dir, tmp_path, {"executor": "ray", "retries": 2}))
    assert suite.execution == ExecutionConfig(executor="ray", retries=2)
    resources = estimate_resources(suite.runs[0].config)
    n = sum(t.numel() for t in load_file(study_model_dir / "model.safetensors").values())  # every stored parameter
    assert (resources.cpus, resources.gpus) == (1.0, 0.0)
    # float32 weights + their gradients, 2 seeds × (3n+1 GRADIEND parameters × 4 for gradient and AdamW) × 5/4
    # for the best checkpoint, over at most the whole model, + 1 GiB
    assert resources.memory_bytes == 8 * n + 2 * ((3 * n + 1) * 16 * 5 // 4) + (1 << 30)
    pruned = estimate_resources(replace(suite.runs[0].config, gradients=GradientConfig(pre_prune_topk=100)))
    assert pruned.memory_bytes == 8 * n + 2 * ((3 * 100 + 1) * 16 * 5 // 4) + (1 << 30)
    assert estimate_resources(replace(suite.runs[0].config, model=ModelConfig("some/hub-id"))).memory_bytes is None


def test_cli_ctrl_c_exits_130_with_one_line_and_no_traceback(tmp_path, study_model_dir, monkeypatch, capsys):
    suite_file = tmp_path / "suite.toml"
    suite_file.write_text(_toml(_suite(study_model_dir, tmp_path / "out")))
    data = tmp_path / "out" / "de" / "data" / "articles"

    def interrupt_once_data_exists():
        deadline = time.monotonic() + 120
        while not (data / C.DATA_META_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_once_data_exists, daemon=True).start()
    monkeypatch.setattr(sys, "argv", ["gradiend", "study", str(suite_file)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 130
    assert "study interrupted:" in err and "run the same command again to resume" in err
    assert "Traceback" not in err
    summary = json.loads((tmp_path / "out" / "de" / "study.json").read_text())
    assert "interrupted" in {v["status"] for v in summary["nodes"].values()}


def _toml(raw: dict) -> str:
    return tomli_w.dumps(raw)


def test_ray_executor_without_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    executor = get_executor("ray", address="auto", retries=1)  # building it does not import Ray
    with pytest.raises(MissingExtraError, match=r"pip install 'gradiend\[ray\]'"):
        executor.run(StudyPlan((Node("a", "data", _ok, (1,)),)))


def test_cli_rejects_an_unknown_executor_in_one_line(tmp_path, study_model_dir, monkeypatch, capsys):
    suite_file = tmp_path / "suite.toml"
    suite_file.write_text(_toml(_suite(study_model_dir, tmp_path / "out")))
    monkeypatch.setattr(sys, "argv", ["gradiend", "study", str(suite_file), "--executor", "dask"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == ("error: [execution] executor must be one of local, ray, got 'dask'")
    assert not (tmp_path / "out" / "de" / "data").exists()  # nothing started
