"""Shared helpers of the scenario scripts: machine description, our measured pipeline run, result files.

Not a scenario itself. ``run_ours`` runs ``gradiend run`` in a child process (``_measured.py``) so peak RSS is
that run's alone; per-phase seconds come from the run's ``metrics/timings.json``, the test correlation from
``metrics/encoder.json`` and the selected rewrite from ``metrics/decoder.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
P1_CONFIG = ROOT / "src" / "gradiend" / "examples" / "splade-3sg-3pl.toml"
PY = sys.executable

# The published package's figures from ../shared/BENCHMARKS.md (gradiend 0.2.3, same kind of machine).
REFERENCE_P1 = {
    "source": "../shared/BENCHMARKS.md, gradiend 0.2.3 measured 2026-11-25, one run (not re-run here)",
    "seconds": {"data": 0.8, "train": 1509.0, "encoder": 240.0, "decoder": 1183.0, "total": 2940.0},
    "max_rss_mb": 2735.0,
    "test_correlation": 0.9946,
    "selected": {"class": "3SG", "alpha": 0.001, "value": 0.0013226, "base_value": 0.0013228, "lms": 0.0060},
}
REFERENCE_P2_REDUCED = {
    "source": "../shared/BENCHMARKS.md, gradiend 0.2.3 measured 2026-12-03 on a quiet 2-core machine, one run "
              "(reference_run.py --steps 10 --rows-per-class 200 --neutral-size 50 --max-seeds 1)",
    "seconds": {"train": 506.0, "encoder": 251.0, "decoder": 245.0, "total": 1007.0},
    "max_rss_mb": 12384.0,
    "test_correlation": -0.017,
}
REFERENCE_P2 = {
    "source": "../shared/BENCHMARKS.md, gradiend 0.2.3 measured 2026-11-25, reduced run (200 rows/class, 10 steps)",
    "seconds_per_training_step": 69.0,
    "max_rss_mb": 12386.0,
    "test_correlation_after_10_steps": 0.37,
}


def machine() -> dict[str, Any]:
    """Where and when: CPU, cores, RAM, torch, date, load average (the machines are shared)."""
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"), "commit": commit.stdout.strip(),
            "nproc": os.cpu_count(),
            "cpu": cpu, "ram_gb": ram_gb, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "loadavg": loadavg()}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def wait_for_quiet(max_load: float, max_wait_s: float = 120.0) -> list[float]:
    """Wait (at most ``max_wait_s``) until the 1-minute load is below ``max_load``; return the load then."""
    deadline = time.time() + max_wait_s
    while os.getloadavg()[0] > max_load and time.time() < deadline:
        time.sleep(10)
    return loadavg()


def run_ours(config: Path, sets: Sequence[str] = (), until: str | None = None, keep: Path | None = None) -> dict:
    """``gradiend run CONFIG --force`` in a fresh temporary run directory, in a child process; its figures."""
    with tempfile.TemporaryDirectory(prefix="gradiend-bench-") as tmp:
        run_dir = keep or Path(tmp) / "run"
        measured = Path(tmp) / "measured.json"
        cmd = [PY, str(BENCH / "_measured.py"), str(measured), "run", str(config), "--force", "--out", str(run_dir)]
        for s in sets:
            cmd += ["--set", s]
        if until:
            cmd += ["--until", until]
        load_before = loadavg()
        env = {**os.environ, "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=sys.stderr)  # its log and progress go to stderr
        if proc.returncode != 0:
            raise SystemExit(f"gradiend run failed ({proc.returncode}): {' '.join(cmd)}")
        out = json.loads(measured.read_text())
        metrics = run_dir / "metrics"
        seconds = json.loads((metrics / "timings.json").read_text())
        seconds["total_stages"] = round(sum(seconds.values()), 3)
        seconds["process_wall"] = out["wall_s"]
        result = {"command": " ".join(["gradiend", *cmd[3:]]), "seconds": seconds, "max_rss_mb": out["max_rss_mb"],
                  "loadavg_before": load_before, "loadavg_after": loadavg()}
        if (metrics / "encoder.json").is_file():
            enc = json.loads((metrics / "encoder.json").read_text())
            result["test_correlation"] = enc["pearson"]["value"]
            result["test_correlation_ci"] = enc["pearson"].get("ci")
            result["encoder_rows"] = enc.get("n_rows")
        if (metrics / "decoder.json").is_file():
            dec = json.loads((metrics / "decoder.json").read_text())
            result["selected"] = {k: {f: v.get(f) for f in ("h", "alpha", "value", "base_value", "lms", "base_lms",
                                                             "lms_ratio", "useful")}
                                  for k, v in dec.get("selected", {}).items()}
            result["lms_definition"] = dec.get("lms_definition")
        if (metrics / "seeds.json").is_file():
            seeds = json.loads((metrics / "seeds.json").read_text())
            result["converged"] = seeds.get("converged")
            result["best_seed"] = seeds.get("best_seed")
        return result


REF_PYTHON = Path(os.environ.get("GRADIEND_REF_PYTHON", "/work/refvenv/bin/python"))
REF_SCRIPT = ROOT.parent / "shared" / "bench" / "reference_run.py"


def run_reference(model: str, args: Sequence[str]) -> dict:
    """The published package's workflow (../shared/bench/reference_run.py) on an offline model's plain directory
    and the Wikipedia extracts (one per line), with ``args``; its JSON plus per-phase seconds in our phase names."""
    from gradiend import assets

    model_dir = assets.resolve(model)
    entries = json.loads(assets.resolve("offline:wiki-en").read_text())
    with tempfile.TemporaryDirectory(prefix="gradiend-ref-") as tmp:
        texts = Path(tmp) / "wiki.txt"
        lines = (" ".join(str(e.get("extract", "")).split()) for e in entries.values())
        texts.write_text("\n".join(x for x in lines if x) + "\n", encoding="utf-8")
        out = Path(tmp) / "ref.json"
        cmd = [str(REF_PYTHON), str(REF_SCRIPT), "--model", str(model_dir), "--texts", str(texts), "--out", str(out),
               *args, "--experiment-dir", str(Path(tmp) / "ref-runs")]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
        subprocess.run(cmd, cwd=tmp, env=env, check=True)
        raw = json.loads(out.read_text())
    sel = raw.get("decoder_3SG", {})
    return {"source": f"re-run now with --run-reference ({' '.join(args)})", "raw": raw,
            "seconds": {"data": raw["seconds"]["data"], "train": raw["seconds"]["train"],
                        "encoder": raw["seconds"]["encoder_eval"], "decoder": raw["seconds"]["decoder_eval"],
                        "total": raw["seconds"]["total"]},
            "max_rss_mb": raw["max_rss_mb"], "test_correlation": raw["encoder_correlation_test"],
            "selected": {"class": "3SG", "alpha": sel.get("learning_rate"), "value": sel.get("value"),
                         "lms": sel.get("lms"), "base_lms": sel.get("base_lms")}}


def median_of(runs: list[dict], path: Sequence[str]) -> float | None:
    values = []
    for r in runs:
        v: Any = r
        for key in path:
            v = v.get(key) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            values.append(float(v))
    return round(statistics.median(values), 4) if values else None


def ratio(reference: float | None, ours: float | None) -> float | None:
    """How many times less ours takes (reference / ours)."""
    if not reference or not ours:
        return None
    return round(reference / ours, 2)


def write_result(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print(f"written {path.relative_to(ROOT)}", file=sys.stderr)
    return path
