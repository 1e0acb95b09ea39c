"""Executors: run a :class:`~gradiend.study_plan.StudyPlan`, node by node, and report what became of each.

The seam is as small as ``concurrent.futures``: an executor takes a plan and returns ``{node id: NodeOutcome}``.
A node whose call raises is *failed* with its error (after ``retries`` further attempts); the nodes that depend on
it are *skipped*; a node marked ``partial`` (the comparison) still runs on the dependencies that finished. So one
bad feature fails alone and the rest of the study is still compared. Ctrl-C stops at once (the run directories
stay consistent: every artifact is written atomically and a stage is recorded only when it finished).

``local`` (this module) runs in process, in plan order, without importing Ray. Other executors register a factory
in :data:`EXECUTORS` (``"ray"`` → :mod:`gradiend.executors_ray`, extra ``ray``).
"""

from __future__ import annotations

import importlib
import logging
import time
import traceback
from collections.abc import Mapping
from typing import Any, Protocol

from tqdm.auto import tqdm

from gradiend.errors import GradiendError
from gradiend.study_plan import Node, NodeOutcome, StudyPlan

log = logging.getLogger(__name__)

#: executor name -> "module:factory"; the factory takes the executor's options as keyword arguments
EXECUTORS: dict[str, str] = {"local": "gradiend.executors:LocalExecutor", "ray": "gradiend.executors_ray:RayExecutor"}


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


def blocked_by(node: Node, outcome: Mapping[str, NodeOutcome]) -> list[str]:
    """The dependencies that keep ``node`` from running (all of them must have finished, unless partial)."""
    failed = [d for d in node.deps if outcome[d].status != "finished"]
    if node.partial and len(node.deps) - len(failed) >= node.min_deps:
        return []
    return failed


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


class LocalExecutor:
    """In-process, one node after the other, in plan order; ``retries`` more attempts for a failing node."""

    def __init__(self, retries: int = 0) -> None:
        if retries < 0:
            raise GradiendError(f"retries must be ≥ 0, got {retries}")
        self.retries = retries

    def run(self, plan: StudyPlan) -> dict[str, NodeOutcome]:
        outcome: dict[str, NodeOutcome] = {}
        bar = tqdm(total=len(plan.nodes), desc="study", unit="node")
        for node in plan.nodes:
            blocked = blocked_by(node, outcome)
            if blocked:
                outcome[node.id] = NodeOutcome("skipped", error=f"dependencies did not finish: {', '.join(blocked)}")
            else:
                outcome[node.id] = self._attempts(node, *call_args(node, outcome))
            bar.update(1)
            bar.set_postfix_str(progress_line(outcome))
        bar.close()
        return outcome

    def _attempts(self, node: Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> NodeOutcome:
        t0 = time.perf_counter()
        error = ""
        for attempt in range(1, self.retries + 2):
            try:
                result = node.fn(*args, **kwargs)
            except Exception as exc:  # a fault boundary: one node's failure must not end the study
                error = describe_error(exc)
                log.error("%s failed (attempt %d of %d): %s", node.id, attempt, self.retries + 1, error)
                continue
            log.info("%s finished in %.1f s: %s", node.id, time.perf_counter() - t0, node.where)
            return NodeOutcome("finished", result, None, time.perf_counter() - t0, attempt)
        return NodeOutcome("failed", None, error, time.perf_counter() - t0, self.retries + 1)


def progress_line(outcome: Mapping[str, NodeOutcome]) -> str:
    """``finished 5 · failed 1 · skipped 0`` for a progress display."""
    counts = {s: sum(o.status == s for o in outcome.values()) for s in ("finished", "failed", "skipped")}
    return " · ".join(f"{k} {v}" for k, v in counts.items())

