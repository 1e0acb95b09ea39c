"""A study as a graph of stages: data sets → runs → comparison, handed to an executor.

Every node is a plain, picklable call (a module-level function and its arguments) that writes one directory
atomically and is skipped when its fingerprints match (the run directory's own bookkeeping), so any executor can
run the graph, resume it, or retry a node: the stages never import the executor, and the executor never knows what
a stage does. A base model is loaded once per process (:func:`shared_model`) and reused by every node there.

>>> plan = plan_study(load_suite("examples/english-pronouns-study.toml"))   # doctest: +SKIP
>>> outcome = get_executor("local").run(plan)                                # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from gradiend import constants as C
from gradiend.config import DataSection, ExperimentConfig, ModelConfig
from gradiend.errors import GradiendError
from gradiend.io import write_json
from gradiend.lm.load import LoadedModel

log = logging.getLogger(__name__)

SUMMARY_FILE = "study.json"
_MODELS: dict[tuple[str, str, str], LoadedModel] = {}
MODEL_LOADS: dict[str, int] = {}


@dataclass(frozen=True)
class Resources:
    """What one node needs from the machine it runs on (an executor may place nodes by it)."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_bytes: int | None = None
    gpu_if_available: bool = False  # device auto/shard: a GPU where the executor's cluster has one (not this machine)


@dataclass(frozen=True)
class Node:
    """One stage call of the study graph.

    ``fn(*args)`` does the work; with ``needs_results`` it also gets ``results=`` (the results of the dependencies
    that succeeded), and with ``partial`` it runs when at least ``min_deps`` of its dependencies succeeded (the
    comparison of the runs that finished), otherwise only when all did.
    """

    id: str
    kind: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    deps: tuple[str, ...] = ()
    resources: Resources = field(default_factory=Resources)
    where: str = ""
    needs_results: bool = False
    partial: bool = False
    min_deps: int = 0
    model: ModelConfig | None = None


@dataclass(frozen=True)
class StudyPlan:
    """The nodes of a study in a valid order (dependencies first)."""

    nodes: tuple[Node, ...]

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for node in self.nodes:
            missing = [d for d in node.deps if d not in seen]
            if node.id in seen or missing:
                raise GradiendError(f"study plan: node {node.id!r} is duplicated or comes before {missing}")
            seen.add(node.id)

    def __getitem__(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def dependents(self, node_id: str) -> list[str]:
        return [n.id for n in self.nodes if node_id in n.deps]


@dataclass
class NodeOutcome:
    """What became of a node: ``finished``, ``failed`` (with the error) or ``skipped`` (a dependency failed)."""

    status: str
    result: Any = None
    error: str | None = None
    seconds: float = 0.0
    attempts: int = 0
    worker: str = ""  # host:pid of the process that ran it
    model_loads: dict[str, int] = field(default_factory=dict)  # base-model loads of that process so far


# --- the node functions (plain, picklable, executor-agnostic) --------------------------------------------------


def shared_model(model: ModelConfig) -> LoadedModel:
    """The base model of ``model``, loaded once per process and reused by every stage on it."""
    import torch

    from gradiend.lm.load import load_model
    from gradiend.lm.mlm_head import with_head

    key = (model.spec, model.dtype, model.device)
    if key not in _MODELS:
        log.info("loading base model %s (process %d)", model.spec, os.getpid())
        _MODELS[key] = load_model(model.spec, dtype=getattr(torch, model.dtype), device=model.device)
        MODEL_LOADS[model.spec] = MODEL_LOADS.get(model.spec, 0) + 1
    return with_head(_MODELS[key], model.head)


def dataset_node(data: DataSection, data_dir: str, force: bool = False) -> dict[str, Any]:
    """Create one data set of the study (kept when its recorded fingerprint matches, unless ``force``)."""
    from gradiend.pipeline import create_dataset

    if force:
        _forget_data(Path(data_dir))
    data = create_dataset(data, data_dir)
    return {"data_dir": str(data_dir), "rows": int(len(data.pairs)), "classes": list(data.feature.class_ids)}


def _forget_data(data_dir: Path) -> None:
    from gradiend.io import read_json

    meta = data_dir / C.DATA_META_FILE
    if meta.is_file():
        write_json(meta, {k: v for k, v in read_json(meta).items() if k != "stage_fingerprint"})


def run_node(config: ExperimentConfig, data_dir: str, force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train, evaluate and rewrite one feature of the study on its shared data set."""
    from gradiend.pipeline import run

    result = run(config, force=force, progress=progress, lm=partial(shared_model, config.model), data_dir=data_dir)
    log.info("run %s: ran %s, skipped %s; artifacts in %s", config.name, result.ran or "nothing",
             result.skipped or "nothing", result.run_dir)
    return {"run_dir": str(result.run_dir), "ran": result.ran, "skipped": result.skipped}


def compare_node(run_dirs: Sequence[str], out_dir: str, title: str, compare: Mapping[str, Any],
                 model: ModelConfig, results: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Compare the finished runs (every GRADIEND with every other) and write the study report."""
    from gradiend.report import write_study_report
    from gradiend.study import compare_runs

    finished = [r["run_dir"] for r in (results or {}).values()] if results is not None else list(run_dirs)
    finished = [d for d in run_dirs if d in finished]
    figures, notes = [], []
    if len(finished) >= 2:
        lm = shared_model(model) if compare.get("cross_encoding", True) else None
        comparison = compare_runs(finished, Path(out_dir) / "comparison", lm=lm, **compare)
        figures = [(p, p.stem.replace("_", " ")) for p in comparison.figures]
        pairs = ", ".join(f"{a} & {b}" for a, b in comparison.above_chance) or "none"
        notes = [f"Top-k overlap above chance (hypergeometric, Bonferroni-corrected): {pairs}. "
                 "Matrices as CSV in comparison/."]
    missing = [Path(d).name for d in run_dirs if d not in finished]
    if missing:
        notes.append(f"Not compared (failed or not finished): {', '.join(missing)}; see study.json.")
    report = write_study_report([Path(d) for d in finished], Path(out_dir) / C.REPORT_FILE, title=title,
                                write_run_reports=False, figures=figures, notes=notes)
    return {"report": str(report), "compared": [Path(d).name for d in finished]}


# --- planning ------------------------------------------------------------------------------------------------


_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
_OVERHEAD_BYTES = 1 << 30  # Python, torch, the tokenizer and the data


def estimate_resources(config: ExperimentConfig) -> Resources:
    """What a run node asks for: one GPU when its base model is placed on CUDA, else one CPU, and host memory.

    Host memory = the base model's weights, plus one backward pass's gradients when the model is on the CPU, plus
    the GRADIEND training of every seed (:func:`gradiend.stages.gradiend_memory`) when it trains on the CPU, plus
    1 GiB. The GRADIEND's input is the selection after pre-pruning, bounded by the whole model (the exact selection
    is known only once the model is loaded). None when the model's size cannot be read without loading it (a hub
    id): Ray then places the run by CPUs and GPUs alone. ``device = "auto"`` (or ``"shard"``) is planned for this
    machine, and marked ``gpu_if_available`` so that an executor whose cluster has GPUs asks for one.
    """
    from gradiend.devices import gradiend_device, model_device

    on_gpu = str(model_device(config.model.device)).startswith(("cuda", "shard"))  # auto: this machine's GPUs
    flexible = config.model.device in ("auto", "shard")
    n_params = model_parameter_count(config.model.spec)
    if n_params is None:
        return Resources(cpus=1.0, gpus=1.0 if on_gpu else 0.0, gpu_if_available=flexible)
    from gradiend.stages import gradiend_memory
    from gradiend.topk import topk_count

    weights = n_params * _DTYPE_BYTES.get(config.model.dtype, 4)
    memory = weights * (1 if on_gpu else 2) + _OVERHEAD_BYTES
    topk = config.gradients.pre_prune_topk
    if not gradiend_device(config.train.device).startswith("cuda"):
        memory += gradiend_memory(n_params if topk is None else topk_count(topk, n_params), config.train)
    return Resources(cpus=1.0, gpus=1.0 if on_gpu else 0.0, memory_bytes=memory, gpu_if_available=flexible)


def model_parameter_count(spec: str) -> int | None:
    """Parameters of a local model (safetensors headers; other weight files by size at 4 bytes a parameter)."""
    from gradiend import assets

    try:
        path = assets.package_path(assets.get_asset(spec)) if assets.is_offline_name(spec) else Path(spec)
    except GradiendError:
        return None
    if path is None or not path.exists():
        return None
    files = [path] if path.is_file() else sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
    if not files:
        return None
    return sum(_safetensors_count(f) if f.suffix == ".safetensors" else f.stat().st_size // 4 for f in files)


def _safetensors_count(path: Path) -> int:
    import json
    import math

    with path.open("rb") as fh:
        header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
    return sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")


def plan_study(suite: Any, *, force: bool = False, progress: bool = True) -> StudyPlan:
    """The graph of a :class:`gradiend.suite.Suite`: one node per data set, per run, and the comparison."""
    nodes = [Node(f"data:{name}", "data", dataset_node, (data, str(suite.data_dir(name)), force),
                  where=str(suite.data_dir(name))) for name, data in suite.datasets.items()]
    runs = []
    for r in suite.runs:
        node = Node(f"run:{r.name}", "run", run_node, (r.config, str(suite.data_dir(r.dataset)), force, progress),
                    deps=(f"data:{r.dataset}",), resources=estimate_resources(r.config), where=str(r.config.run_dir),
                    model=r.config.model)
        runs.append(node)
    run_dirs = [str(r.config.run_dir) for r in suite.runs]
    model = suite.runs[0].config.model
    compare = Node("compare", "compare", compare_node,
                   (run_dirs, str(suite.study_dir), f"GRADIEND study: {suite.name}", dict(suite.compare), model),
                   deps=tuple(n.id for n in runs), where=str(suite.study_dir / "comparison"), needs_results=True,
                   partial=True, min_deps=0, model=model, resources=estimate_resources(suite.runs[0].config))
    _check_one_model(suite)
    return StudyPlan((*nodes, *runs, compare))


def _check_one_model(suite: Any) -> None:
    specs = {r.config.model.spec for r in suite.runs}
    if len(specs) != 1:
        raise GradiendError(f"a study compares GRADIENDs of one base model, got {sorted(specs)}")


def write_summary(suite: Any, plan: StudyPlan, outcome: Mapping[str, NodeOutcome]) -> Path:
    """``<study>/study.json``: every node's status, time, error, where its artifacts are, and base-model loads.

    A node without an outcome (the study was interrupted) is ``interrupted``. ``model_loads_per_worker`` counts the
    loads of each base model by each process that ran nodes (at most one each when models are reused);
    ``model_loads`` is their sum.
    """
    nodes = {n.id: _node_summary(n, outcome.get(n.id, NodeOutcome("interrupted"))) for n in plan.nodes}
    failed = [k for k, v in nodes.items() if v["status"] != "finished"]
    per_worker = model_loads_per_worker(outcome.values())
    total: dict[str, int] = {}
    for loads in per_worker.values():
        for spec, n in loads.items():
            total[spec] = total.get(spec, 0) + n
    path = suite.study_dir / SUMMARY_FILE
    write_json(path, {"name": suite.name, "nodes": nodes, "failed": failed, "model_loads": total,
                      "model_loads_per_worker": per_worker})
    if failed:
        log.warning("study %s: %d node(s) did not finish: %s (errors in %s)", suite.name, len(failed),
                    ", ".join(failed), path)
    return path


def _node_summary(node: Node, outcome: NodeOutcome) -> dict[str, Any]:
    return {"kind": node.kind, "where": node.where, "status": outcome.status, "seconds": round(outcome.seconds, 2),
            "attempts": outcome.attempts, "worker": outcome.worker, "error": outcome.error}


def model_loads_per_worker(outcomes: Iterable[NodeOutcome]) -> dict[str, dict[str, int]]:
    """Each worker's latest count of base-model loads (the counts only grow within a process)."""
    per_worker: dict[str, dict[str, int]] = {}
    for o in outcomes:
        if o.worker:
            seen = per_worker.setdefault(o.worker, {})
            for spec, n in o.model_loads.items():
                seen[spec] = max(seen.get(spec, 0), n)
    return per_worker
