"""Run the ``gradiend`` CLI in this process, then write this process's peak RSS and wall seconds as JSON.

    python benchmarks/_measured.py RESULT.json run CONFIG --force --out DIR

Used by the scenario scripts so that each measured run is its own process (peak RSS per scenario).
"""

from __future__ import annotations

import json
import resource
import sys
import time


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    start = time.perf_counter()
    sys.argv = ["gradiend", *args]
    from gradiend.cli import main as cli_main

    code = 0
    try:
        cli_main()
    except SystemExit as exc:  # the CLI exits with its status
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    result = {"exit_code": code, "wall_s": round(time.perf_counter() - start, 3),
              "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    sys.exit(code)


if __name__ == "__main__":
    main()
