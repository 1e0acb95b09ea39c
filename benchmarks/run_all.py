"""Run every benchmark scenario in sequence (``make bench``): P1, P2, P3, P4, FLOPs, profile.

    .venv/bin/python benchmarks/run_all.py [--only p1 p3] [--quick]

Each script runs in its own process, one after another (never two heavy things at once: the machines have two
cores and are shared), and writes ``benchmarks/results/<name>.json``. ``--quick`` uses fewer repeats.
The results and the targets are written up by hand in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from _common import BENCH, PY, ROOT, loadavg

SCRIPTS = {
    "p1": (["p1.py", "--repeats", "3"], ["p1.py", "--repeats", "1"]),
    "p2": (["p2.py"], ["p2.py", "--steps", "10"]),
    "p3": (["p3.py", "--repeats", "5"], ["p3.py", "--repeats", "2"]),
    "p4": (["p4.py", "--repeats", "2"], ["p4.py", "--repeats", "1"]),
    "flops": (["flops.py"], ["flops.py", "--repeats", "1"]),
    "profile": (["profile_stages.py"], ["profile_stages.py", "--steps", "1", "--rows", "8"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(SCRIPTS), default=list(SCRIPTS))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    failed = []
    for name in args.only:
        full, quick = SCRIPTS[name]
        script = quick if args.quick else full
        print(f"== {name}: load {loadavg()}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        rc = subprocess.run([PY, str(BENCH / script[0]), *script[1:]], cwd=ROOT).returncode
        print(f"== {name}: exit {rc} after {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        if rc:
            failed.append(name)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
