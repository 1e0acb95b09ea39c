"""The ``ray`` executor: every node of a study is a Ray task, placed by the resources it declares.

Ray does the scheduling: each node becomes a remote task with ``num_cpus``, ``num_gpus`` and a memory estimate
(:func:`gradiend.study_plan.estimate_resources`), so a multi-GPU node runs one training per GPU and small models
are packed several per node. The driver only submits a node once its dependencies are done (a data set before the
runs that read it, the comparison after its runs) and collects the outcomes. Inside the task the node runs
through :func:`gradiend.executors.attempt`, as on ``local``: the same retries of infrastructure faults, the same
error in the summary for a node that fails. A worker that dies (killed, out of memory) is Ray's to handle: the
task is retried up to ``retries`` times (``max_retries``); a half-written run is redone from its last finished
stage (the stage fingerprints). Worker processes are kept (``max_calls=0``), so the per-process model cache of
:func:`gradiend.study_plan.shared_model` loads each base model at most once per worker.

Run directories are written by the workers, so the study directory must be on a filesystem every node sees.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from gradiend._optional import require
from gradiend.errors import GradiendError
from gradiend.executors import (
    StudyInterrupted,
    StudyProgress,
    attempt,
    blocked_by,
    call_args,
    check_common,
    describe_error,
    skipped,
)
from gradiend.study_plan import Node, NodeOutcome, StudyPlan

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.5


#: Ray's switch for single-machine clusters: node address 127.0.0.1, every port bound to loopback only
_LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _ray(local: bool = False):
    """Import Ray (the extra's error when missing); for a local cluster, bound to 127.0.0.1 unless set otherwise
    (the setting is read when Ray is first imported)."""
    if local:
        os.environ.setdefault(_LOOPBACK_ONLY, "0")
    return require("ray", "ray", "the ray executor (gradiend study --executor ray)")


class RayExecutor:
    """Run a study plan as Ray tasks on the cluster at ``address`` (None: a local cluster on 127.0.0.1).

    A Ray session already started in this process (``ray.init``) is used as it is and left running.
    """

    def __init__(self, address: str | None = None, retries: int = 0, threads: int | None = None,
                 num_cpus: float | None = None, num_gpus: float | None = None) -> None:
        check_common(retries, threads)
        self.address, self.retries, self.threads = address, retries, threads
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self._largest_memory, self._cluster_gpus = 0, 0.0  # read from the cluster when a plan runs

    def run(self, plan: StudyPlan) -> dict[str, NodeOutcome]:
        ray = _ray(local=self.address is None)
        started = self._connect(ray)
        self._task = ray.remote(max_calls=0)(attempt)  # workers are kept: their model cache too
        self._largest_memory = max((n["Resources"].get("memory", 0) for n in ray.nodes() if n.get("Alive")), default=0)
        self._cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
        try:
            return self._schedule(ray, plan)
        finally:
            if started:
                ray.shutdown()

    def _connect(self, ray: Any) -> bool:
        """Join (or start) the cluster; True when this call started the session (and must end it)."""
        if ray.is_initialized():
            return False
        if self.address is None:
            log.info("starting a local Ray cluster on 127.0.0.1")
            ray.init(address="local", include_dashboard=False)
        else:
            log.info("joining the Ray cluster at %s", self.address)
            try:
                ray.init(address=self.address)
            except ConnectionError as exc:
                raise GradiendError(f"cannot reach a Ray cluster at {self.address!r} ({exc}); start one with "
                                    "`ray start --head`, or leave out --address to start a local one") from exc
        return True

    def _schedule(self, ray: Any, plan: StudyPlan) -> dict[str, NodeOutcome]:
        outcome: dict[str, NodeOutcome] = {}
        pending: dict[Any, tuple[Node, float]] = {}
        waiting = list(plan.nodes)
        progress = StudyProgress(len(plan.nodes), active="submitted")
        try:
            while waiting or pending:
                waiting = self._submit_ready(ray, waiting, outcome, pending, progress)
                # a timeout, so that Ctrl-C reaches this loop while every task is still running
                done, _ = ray.wait(list(pending), num_returns=1, timeout=_POLL_SECONDS) if pending else ([], [])
                for ref in done:
                    node, t0 = pending.pop(ref)
                    outcome[node.id] = _collect(ray, ref, node, t0, self.retries)
                    progress.done(node, outcome)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise StudyInterrupted(outcome, len(plan.nodes)) from None
        finally:
            progress.close()
        return outcome

    def _submit_ready(self, ray: Any, waiting: list[Node], outcome: dict[str, NodeOutcome],
                      pending: dict[Any, tuple[Node, float]], progress: StudyProgress) -> list[Node]:
        """Submit (or skip) every waiting node whose dependencies are done; returns the nodes still waiting."""
        still = []
        for node in waiting:
            if any(d not in outcome for d in node.deps):
                still.append(node)
                continue
            blocked = blocked_by(node, outcome)
            if blocked:
                outcome[node.id] = skipped(blocked)
                progress.done(node, outcome)
                continue
            args, kwargs = call_args(node, outcome)
            ref = self._remote(ray, node).remote(node, args, kwargs, self.retries, self._threads(node))
            pending[ref] = (node, time.perf_counter())
            progress.started(outcome)
        return still

    def _remote(self, ray: Any, node: Node) -> Any:
        """The node's task with the resources it declares (memory capped at the largest node's: an estimate above
        it would never be scheduled)."""
        cpus, gpus = self._devices(node)
        options: dict[str, Any] = {"num_cpus": cpus, "num_gpus": gpus, "max_retries": self.retries,
                                   "retry_exceptions": False, "name": f"gradiend:{node.id}"}
        if node.resources.memory_bytes and self._largest_memory:
            options["memory"] = int(min(node.resources.memory_bytes, self._largest_memory))
        return self._task.options(**options)

    def _devices(self, node: Node) -> tuple[float, float]:
        """CPUs and GPUs of a node; [execution] num_cpus/num_gpus replace the estimate of nodes on the base model.

        A node planned on a driver without GPUs but with ``device = "auto"`` asks for one GPU when the cluster has
        GPUs: the plan was made for the driver's machine, the run happens on the cluster's.
        """
        on_model = node.model is not None
        cpus = self.num_cpus if self.num_cpus is not None and on_model else node.resources.cpus
        gpus = self.num_gpus if self.num_gpus is not None and on_model else node.resources.gpus
        if self.num_gpus is None and node.resources.gpu_if_available and self._cluster_gpus >= 1:
            gpus = max(gpus, 1.0)
        return cpus, gpus

    def _threads(self, node: Node) -> int:
        return self.threads if self.threads is not None else max(1, int(self._devices(node)[0]))


def _collect(ray: Any, ref: Any, node: Node, t0: float, retries: int) -> NodeOutcome:
    """The node's outcome from its task; a task Ray gave up on (its worker died every time) has failed."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        error = f"{describe_error(exc).splitlines()[0]} (after {retries + 1} attempt(s); its worker died or was lost)"
        return NodeOutcome("failed", None, error, time.perf_counter() - t0, retries + 1)
