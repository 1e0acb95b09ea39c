"""The ray executor on a real local Ray cluster (2 CPUs, 127.0.0.1): same GRADIENDs as local, faults, resume."""

from __future__ import annotations

import _thread
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gradiend import constants as C
from gradiend.executors import StudyInterrupted
from gradiend.suite import run_suite, suite_from_dict

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read at import: the cluster binds to 127.0.0.1
ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'gradiend[ray]'); CI installs it")

GERMAN = Path(__file__).parent / "data" / "german_articles.csv"
FEATURES = ("masc_nom_vs_fem_nom", "masc_nom_vs_neut_nom", "fem_nom_vs_neut_nom")


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the module (workers inherit this process's environment: offline, CPU)."""
    ray.init(num_cpus=2, address="local", include_dashboard=False, log_to_driver=False)
    assert ray.nodes()[0]["NodeManagerAddress"] == "127.0.0.1"
    yield
    ray.shutdown()


def _suite(model: Path, out: Path):
    """Three features of one data set, and a fourth whose data set is bad (its table does not exist)."""
    return suite_from_dict({
        "name": "de", "output_dir": str(out),
        "datasets": {"articles": {"table": str(GERMAN), "classes": {"masc_nom": [], "fem_nom": [], "neut_nom": []}},
                     "broken": {"table": str(out / "missing.csv"), "classes": {"a": [], "b": []}}},
        "designs": [{"kind": "all_pairs", "dataset": "articles"}, {"kind": "all_pairs", "dataset": "broken"}],
        "compare": {"topk": 20, "cross_encoding": False},
        "execution": {"threads": 1, "retries": 1},  # the same torch threads on both executors: the same bits
        "base": {"model": {"spec": str(model)},
                 "data": {"options": {"seed": 0, "split_ratios": [0.5, 0.25, 0.25]}},
                 "gradients": {"rows_per_gradient": 2, "validation_rows": 4},
                 "train": {"lr": 1e-3, "steps": 3, "eval_every": 3},
                 "eval": {"max_rows": 2, "max_lms_texts": 2, "alphas": [1.0], "bootstrap": 0}},
    })


def _summary(study_dir: Path) -> dict:
    return json.loads((study_dir / "study.json").read_text())


class Killer(threading.Thread):
    """SIGKILLs the first worker process that runs a training task, shortly after the task started."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.killed: tuple[int, str] | None = None  # the process and the node it was running

    def run(self) -> None:
        deadline = time.monotonic() + 120
        while self.killed is None and time.monotonic() < deadline:
            for pid, title in _task_processes("ray::gradiend:run:"):
                time.sleep(0.5)
                if (pid, title) in _task_processes(title):  # still running that task: kill it mid-task
                    os.kill(pid, signal.SIGKILL)
                    self.killed = pid, title.removeprefix("ray::gradiend:")
                break
            time.sleep(0.05)


def _task_processes(prefix: str) -> list[tuple[int, str]]:
    """(pid, process title) of the processes whose title starts with ``prefix`` (Ray names them by task)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode() if entry.name.isdigit() else ""
        except OSError:
            continue
        if title.startswith(prefix):
            found.append((int(entry.name), title.strip()))
    return found


@pytest.fixture(scope="module")
def local_study(tmp_path_factory, study_model_dir):
    return run_suite(_suite(study_model_dir, tmp_path_factory.mktemp("local")), progress=False)


@pytest.fixture(scope="module")
def ray_study(cluster, tmp_path_factory, study_model_dir):
    killer = Killer()
    killer.start()
    study_dir = run_suite(_suite(study_model_dir, tmp_path_factory.mktemp("ray")), progress=False, executor="ray")
    killer.join(timeout=1)
    return study_dir, killer.killed


def test_ray_gradiends_are_bit_identical_to_local(local_study, ray_study):
    for name in FEATURES:
        local = load_file(local_study / name / C.GRADIEND_DIR / C.WEIGHTS_FILE)
        remote = load_file(ray_study[0] / name / C.GRADIEND_DIR / C.WEIGHTS_FILE)
        assert local.keys() == remote.keys()
        assert all(torch.equal(local[k], remote[k]) for k in local), name


def test_a_killed_worker_has_its_training_retried_and_every_run_finishes(ray_study):
    study_dir, killed = ray_study
    assert killed is not None, "no training task was seen running"
    summary = _summary(study_dir)
    runs = {f"run:{n}" for n in FEATURES}
    assert {k for k, v in summary["nodes"].items() if v["status"] == "finished"} == {"data:articles", "compare",
                                                                                   *runs}
    pid, node = killed
    assert summary["nodes"][node]["status"] == "finished"
    assert not summary["nodes"][node]["worker"].endswith(f":{pid}")  # Ray ran it again in another worker
    assert json.loads((study_dir / "comparison" / "comparison.json").read_text())["runs"] == [
        str(study_dir / n) for n in FEATURES]


def test_bad_feature_fails_alone_on_ray(ray_study):
    summary = _summary(ray_study[0])
    assert summary["failed"] == ["data:broken", "run:a_vs_b"]
    assert "missing.csv" in summary["nodes"]["data:broken"]["error"]
    assert summary["nodes"]["run:a_vs_b"]["error"] == "dependencies did not finish: data:broken"


def test_each_worker_loads_the_base_model_at_most_once(ray_study, study_model_dir):
    summary = _summary(ray_study[0])
    per_worker = summary["model_loads_per_worker"]
    assert per_worker and all(loads.get(str(study_model_dir), 0) <= 1 for loads in per_worker.values())
    assert summary["model_loads"][str(study_model_dir)] <= len(per_worker)


def test_a_study_interrupted_on_ray_continues_locally(cluster, tmp_path, study_model_dir, local_study):
    suite = _suite(study_model_dir, tmp_path)
    first = suite.study_dir / FEATURES[0] / C.GRADIEND_DIR / C.WEIGHTS_FILE

    def interrupt_once_a_gradiend_is_trained():
        stages, deadline = suite.study_dir / FEATURES[0] / C.METRICS_DIR / C.STAGES_FILE, time.monotonic() + 120
        while time.monotonic() < deadline and not (stages.exists() and "train" in stages.read_text()):
            time.sleep(0.05)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_once_a_gradiend_is_trained, daemon=True).start()
    with pytest.raises(StudyInterrupted):
        run_suite(suite, progress=False, executor="ray")
    assert "interrupted" in {v["status"] for v in _summary(suite.study_dir)["nodes"].values()}
    trained_on_ray = first.stat().st_mtime_ns
    run_suite(suite, progress=False, executor="local")
    summary = _summary(suite.study_dir)
    assert summary["nodes"]["compare"]["status"] == "finished"
    assert first.stat().st_mtime_ns == trained_on_ray  # the GRADIEND trained on Ray was kept, not retrained
    for name in FEATURES:
        assert summary["nodes"][f"run:{name}"]["status"] == "finished"
        local = load_file(local_study / name / C.GRADIEND_DIR / C.WEIGHTS_FILE)
        resumed = load_file(suite.study_dir / name / C.GRADIEND_DIR / C.WEIGHTS_FILE)
        assert all(torch.equal(local[k], resumed[k]) for k in local), name
