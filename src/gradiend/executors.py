"""Executors: run a :class:`~gradiend.study_plan.StudyPlan`, node by node, and report what became of each.

The seam is as small as ``concurrent.futures``: an executor takes a plan and returns ``{node id: NodeOutcome}``.
Every executor runs a node through :func:`attempt`: an infrastructure fault (``OSError``, ``MemoryError``: a full
disk, a dropped network share, an allocation that failed) is retried up to ``retries`` times; any other error is
the node's own (bad data, a bad setting) and fails it at once, with its error in the study summary. The nodes that
depend on a failed node are *skipped*; a node marked ``partial`` (the comparison) still runs on the dependencies
that finished. So one bad feature fails alone and the rest of the study is still compared. Ctrl-C raises
:class:`StudyInterrupted` (the run directories stay consistent: every artifact is written atomically and a stage is
recorded only when it finished, so the next run of the study resumes where this one stopped, on any executor).

``local`` (this module) runs in process, in plan order, without importing Ray. Other executors register a factory
in :data:`EXECUTORS` (``"ray"`` → :mod:`gradiend.executors_ray`, extra ``ray``).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import socket
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol

from tqdm.auto import tqdm

from gradiend.errors import GradiendError
from gradiend.study_plan import Node, NodeOutcome, StudyPlan

log = logging.getLogger(__name__)

#: executor name -> "module:factory"; the factory takes the executor's options as keyword arguments
EXECUTORS: dict[str, str] = {"local": "gradiend.executors:LocalExecutor", "ray": "gradiend.executors_ray:RayExecutor"}

#: errors of the machine, not of the node: worth another attempt
INFRASTRUCTURE_FAULTS: tuple[type[BaseException], ...] = (OSError, MemoryError)
#: OSErrors that another attempt cannot fix (a missing or unreadable input is the node's own error)
_PERMANENT_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


class StudyInterrupted(Exception):
    """The study was stopped (Ctrl-C); ``outcome`` holds the nodes that were done by then."""

    def __init__(self, outcome: Mapping[str, NodeOutcome], total: int) -> None:
        self.outcome = dict(outcome)
        finished = sum(o.status == "finished" for o in outcome.values())
        super().__init__(f"study interrupted: {finished} of {total} node(s) finished; run the same command again to "
                         "resume (finished runs are kept and skipped)")


@dataclass(frozen=True)
class ExecutionConfig:
    """How a study runs (``[execution]`` in the suite file; ``gradiend study --executor/--address`` override it).

    ``retries``: further attempts of a node after an infrastructure fault (and, on Ray, after its worker died);
    ``threads``: torch threads per node (None: the local default; on Ray the node's CPUs) — bit-identical results
    across executors need the same count on both; ``num_cpus``/``num_gpus``: what each run asks of a Ray node
    (default: one CPU, and one GPU when the base model is placed on CUDA); ``address``: the Ray cluster to join
    (``auto`` or ``ray://HOST:PORT``; default: start a local one on 127.0.0.1).
    """

    executor: str = "local"
    address: str | None = None
    retries: int = 0
    threads: int | None = None
    num_cpus: float | None = None
    num_gpus: float | None = None

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise GradiendError(f"[execution] executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        check_common(self.retries, self.threads)
        if self.address is not None and not (self.address == "auto" or _ADDRESS.fullmatch(str(self.address))):
            raise GradiendError(f"[execution] address must be auto or ray://HOST:PORT (or HOST:PORT), got "
                                f"{self.address!r}")
        _check_amount("num_cpus", self.num_cpus, zero_ok=False)
        _check_amount("num_gpus", self.num_gpus, zero_ok=True)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ExecutionConfig:
        """Build from the suite file's ``[execution]`` table (unknown keys are an error naming the known ones)."""
        known = [f.name for f in fields(cls)]
        unknown = [k for k in raw if k not in known]
        if unknown:
            raise GradiendError(f"unknown key(s) {unknown} in [execution]; known: {', '.join(known)}")
        return cls(**raw)

    def options(self) -> dict[str, Any]:
        """The keyword arguments of this config's executor (``local`` takes only retries and threads)."""
        options: dict[str, Any] = {"retries": self.retries, "threads": self.threads}
        if self.executor != "local":
            options.update(address=self.address, num_cpus=self.num_cpus, num_gpus=self.num_gpus)
        return options


_ADDRESS = re.compile(r"(ray://)?[\w.\-]+:\d+")


def _check_amount(key: str, value: Any, zero_ok: bool) -> None:
    """A resource amount: None (the default) or a number > 0 (≥ 0 where ``zero_ok``)."""
    if value is None:
        return
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or value < 0 or (value == 0 and not zero_ok):
        raise GradiendError(f"[execution] {key} must be a number {'≥' if zero_ok else '>'} 0, got {value!r}")


class Executor(Protocol):
    def run(self, plan: StudyPlan) -> dict[str, NodeOutcome]: ...


def get_executor(name: str, **options: Any) -> Executor:
    """The executor registered as ``name``, built with ``options`` (unknown names and options are clear errors)."""
    if name not in EXECUTORS:
        raise GradiendError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    module, attr = EXECUTORS[name].split(":")
    factory = getattr(importlib.import_module(module), attr)
    try:
        return factory(**options)
    except TypeError as exc:
        raise GradiendError(f"executor {name!r}: {exc}; check [execution] in the suite file") from exc


def check_common(retries: int, threads: int | None) -> None:
    """Validate the options every executor takes."""
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise GradiendError(f"retries must be an integer ≥ 0, got {retries!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise GradiendError(f"threads must be an integer ≥ 1 (torch threads per task), got {threads!r}")


def blocked_by(node: Node, outcome: Mapping[str, NodeOutcome]) -> list[str]:
    """The dependencies that keep ``node`` from running (all of them must have finished, unless partial)."""
    failed = [d for d in node.deps if outcome[d].status != "finished"]
    if node.partial and len(node.deps) - len(failed) >= node.min_deps:
        return []
    return failed


def skipped(blocked: list[str]) -> NodeOutcome:
    return NodeOutcome("skipped", error=f"dependencies did not finish: {', '.join(blocked)}")


def call_args(node: Node, outcome: Mapping[str, NodeOutcome]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The positional and keyword arguments of a node's call (``results=`` of the finished dependencies)."""
    if not node.needs_results:
        return node.args, {}
    return node.args, {"results": {d: outcome[d].result for d in node.deps if outcome[d].status == "finished"}}


def describe_error(exc: BaseException) -> str:
    """One line for the study summary: the library's own message, or the exception and its last frame."""
    if isinstance(exc, GradiendError):
        return str(exc)
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {frame[0].filename}:{frame[0].lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def is_infrastructure_fault(exc: BaseException) -> bool:
    return isinstance(exc, INFRASTRUCTURE_FAULTS) and not isinstance(exc, _PERMANENT_OS_ERRORS)


def worker_id() -> str:
    """``host:pid`` of the process running a node (the unit of base-model reuse)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def attempt(node: Node, args: tuple[Any, ...], kwargs: dict[str, Any], retries: int = 0,
            threads: int | None = None) -> NodeOutcome:
    """Run ``node``; retry infrastructure faults up to ``retries`` times, fail on any other error at once.

    ``threads`` fixes torch's intra-op threads for the call: the same count on every executor gives the same
    floating-point reductions, hence bit-identical GRADIENDs. The outcome names the process that ran the node and
    the base-model loads it has made so far.
    """
    from gradiend.study_plan import MODEL_LOADS

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    for n in range(1, retries + 2):
        try:
            result = node.fn(*args, **kwargs)
        except Exception as exc:  # a fault boundary: one node's failure must not end the study
            error = describe_error(exc)
            again = is_infrastructure_fault(exc) and n <= retries
            log.error("%s failed (attempt %d of %d%s): %s", node.id, n, retries + 1,
                      ", retrying" if again else "", error)
            if again:
                continue
            return NodeOutcome("failed", None, error, time.perf_counter() - t0, n, worker_id(), dict(MODEL_LOADS))
        return NodeOutcome("finished", result, None, time.perf_counter() - t0, n, worker_id(), dict(MODEL_LOADS))
    raise AssertionError("unreachable")  # pragma: no cover


def log_outcome(node: Node, outcome: NodeOutcome) -> None:
    """The one log line of a finished node: its status, time, worker and where its artifacts are."""
    if outcome.status == "finished":
        log.info("%s finished in %.1f s (%s): %s", node.id, outcome.seconds, outcome.worker or "?", node.where)
    elif outcome.status == "failed":
        log.error("%s failed after %d attempt(s): %s", node.id, outcome.attempts, outcome.error)


class StudyProgress:
    """One progress display across a study's nodes: active, finished, failed and skipped.

    ``active`` names what started nodes are: ``running`` in this process, ``submitted`` to Ray (which queues a task
    until a worker has its resources, so the driver cannot tell queued from running).
    """

    def __init__(self, total: int, active: str = "running") -> None:
        self.bar = tqdm(total=total, desc="study", unit="node")
        self.active = active
        self.running = 0

    def postfix(self, outcome: Mapping[str, NodeOutcome]) -> str:
        return f"{self.active} {self.running} · {progress_line(outcome)}"

    def started(self, outcome: Mapping[str, NodeOutcome]) -> None:
        self.running += 1
        self.bar.set_postfix_str(self.postfix(outcome))

    def done(self, node: Node, outcome: Mapping[str, NodeOutcome]) -> None:
        status = outcome[node.id].status
        log_outcome(node, outcome[node.id])
        self.running -= status != "skipped"
        self.bar.update(1)
        self.bar.set_postfix_str(self.postfix(outcome))

    def close(self) -> None:
        self.bar.close()


class LocalExecutor:
    """In-process, one node after the other, in plan order; ``retries`` more attempts on infrastructure faults."""

    def __init__(self, retries: int = 0, threads: int | None = None) -> None:
        check_common(retries, threads)
        self.retries, self.threads = retries, threads

    def run(self, plan: StudyPlan) -> dict[str, NodeOutcome]:
        outcome: dict[str, NodeOutcome] = {}
        progress = StudyProgress(len(plan.nodes))
        try:
            for node in plan.nodes:
                blocked = blocked_by(node, outcome)
                if not blocked:
                    progress.started(outcome)
                outcome[node.id] = skipped(blocked) if blocked else attempt(
                    node, *call_args(node, outcome), self.retries, self.threads)
                progress.done(node, outcome)
        except KeyboardInterrupt:
            raise StudyInterrupted(outcome, len(plan.nodes)) from None
        finally:
            progress.close()
        return outcome


def progress_line(outcome: Mapping[str, NodeOutcome]) -> str:
    """``finished 5 · failed 1 · skipped 0`` for a progress display."""
    counts = {s: sum(o.status == s for o in outcome.values()) for s in ("finished", "failed", "skipped")}
    return " · ".join(f"{k} {v}" for k, v in counts.items())
