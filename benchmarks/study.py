"""A whole study on ``local`` and on ``ray`` (a local Ray cluster with ``--workers`` CPUs): wall time, the driver's
peak RSS and how many times each worker loaded the base model.

    python benchmarks/study.py                                   # the English pronoun study (15 GRADIENDs)
    python benchmarks/study.py --suite src/gradiend/examples/splade-english-suite.toml \\
        --set train.steps=2 --set eval.max_rows=4 --name study_tiny          # a quick check

Each executor runs the study from scratch in its own child process (``--child``), so the peak RSS is that
driver's alone (Ray's workers are other processes). For ``ray`` the child starts the cluster itself
(``ray.init(num_cpus=workers)`` on 127.0.0.1), so its wall time includes the cluster's start, as a user's
``gradiend study --executor ray`` does. Targets (issue 13): ray within 1.15× of local on the same machine; every
base model loaded at most once per worker.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, loadavg, machine, write_result

SUITE = ROOT / "src" / "gradiend" / "examples" / "english-pronouns-study.toml"


def child(result: Path, executor: str, workers: int, args: list[str]) -> None:
    """Run ``gradiend study ARGS --executor EXECUTOR`` in this process; write wall time and peak RSS."""
    start = time.perf_counter()
    if executor == "ray":
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a cluster on 127.0.0.1 only
        import ray

        ray.init(num_cpus=workers, address="local", include_dashboard=False)
    sys.argv = ["gradiend", "study", *args, "--executor", executor]
    from gradiend.cli import main

    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    result.write_text(json.dumps({"exit_code": code, "wall_s": round(time.perf_counter() - start, 2),
                                  "driver_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                                             / 1024, 1)}))
    sys.exit(code)


def measure(suite: Path, executor: str, workers: int, sets: list[str], keep: Path | None) -> dict:
    """One study from scratch with ``executor`` in a child process; its figures and its study.json's loads."""
    with tempfile.TemporaryDirectory(prefix=f"gradiend-study-{executor}-") as tmp:
        out = keep / executor if keep else Path(tmp)
        result = Path(tmp) / "result.json"
        cli = [str(suite), "--out", str(out), *[a for s in sets for a in ("--set", s)]]
        cmd = [sys.executable, __file__, "--child", str(result), executor, str(workers), "--", *cli]
        before = loadavg()
        subprocess.run(cmd, cwd=ROOT, env={**os.environ, "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"},
                       stdout=sys.stderr, check=True)
        figures = json.loads(result.read_text())
        summary = json.loads(next(out.glob("*/study.json")).read_text())
    nodes = summary["nodes"].values()
    runs = [n for n in nodes if n["kind"] == "run"]
    return {**figures, "loadavg_before": before, "loadavg_after": loadavg(),
            "runs": len(runs), "runs_finished": sum(n["status"] == "finished" for n in runs),
            "run_seconds_sum": round(sum(n["seconds"] for n in runs), 2),
            "model_loads": summary["model_loads"], "model_loads_per_worker": summary["model_loads_per_worker"],
            "max_loads_per_worker": max((n for w in summary["model_loads_per_worker"].values() for n in w.values()),
                                        default=0)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sep = sys.argv.index("--")
        return child(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[sep + 1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", type=Path, default=SUITE)
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray cluster (one run per CPU)")
    ap.add_argument("--executors", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    ap.add_argument("--keep", type=Path, default=None, help="keep the study directories under this directory")
    ap.add_argument("--name", default="study", help="result file name (benchmarks/results/NAME.json)")
    args = ap.parse_args()
    result = {"machine": machine(), "suite": str(args.suite), "sets": args.sets, "workers": args.workers,
              "executors": {e: measure(args.suite, e, args.workers, args.sets, args.keep) for e in args.executors}}
    local, ray = result["executors"].get("local"), result["executors"].get("ray")
    if local and ray:
        result["ray_over_local_wall"] = round(ray["wall_s"] / local["wall_s"], 3)
        result["per_run_seconds_local"] = round(local["wall_s"] / max(1, local["runs"]), 2)
    write_result(args.name, result)


if __name__ == "__main__":
    main()
