"""Where the time goes: torch.profiler on SmolLM2 gradient steps, and the P1 encoder stage row by row.

    .venv/bin/python benchmarks/profile_stages.py [--steps 2] [--run-dir RUN] [--rows 24]

1. SmolLM2-135M, full backbone, ``pair_gradients`` of 16 Wikipedia rows (a P2 training step), ``--steps`` steps
   after one warm-up under ``torch.profiler``: operators by self CPU time, and the share of matrix products.
2. The P1 encoder stage (per-row gradients over the post-pruned GRADIEND's selection, chunk 8): seconds per row
   for each of its three row sets (pairs, neutral_masked, neutral_text), their token lengths, and a batched
   ``pair_gradients`` of the same pair rows for comparison. Needs a P1 run directory with data and gradiend
   (``--run-dir``); without one it makes one (``gradiend run ... --until train``, about a minute).
Writes ``results/profile.json`` and ``results/profile_smollm2_ops.txt``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import BENCH, P1_CONFIG, PY, RESULTS, ROOT, loadavg, machine, write_result
from gradient_step import wiki_rows

from gradiend.gradients import GradientComputer
from gradiend.lm import load_model
from gradiend.lm.params import select_parameters

MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::_scaled_dot_product",
              "aten::baddbmm")


def profile_smollm2(steps: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    lm = load_model("offline:smollm2-135m")
    computer = GradientComputer(lm, select_parameters(lm.model))
    rows = wiki_rows(16)
    computer.pair_gradients(rows)  # warm-up
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            computer.pair_gradients(rows)
    wall = time.perf_counter() - start
    averages = prof.key_averages()
    table = averages.table(sort_by="self_cpu_time_total", row_limit=25)
    (RESULTS / "profile_smollm2_ops.txt").write_text(table + "\n")
    total = sum(e.self_cpu_time_total for e in averages)
    top = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    mm = sum(e.self_cpu_time_total for e in averages if e.key.startswith(MATMUL_OPS))
    return {"steps": steps, "wall_s_profiled": round(wall, 2), "self_cpu_s_total": round(total / 1e6, 2),
            "matmul_share_of_self_cpu": round(mm / total, 3) if total else None,
            "top_ops": [{"op": e.key, "self_cpu_s": round(e.self_cpu_time_total / 1e6, 3), "calls": e.count,
                         "share": round(e.self_cpu_time_total / total, 3)} for e in top],
            "loadavg": loadavg()}


def ensure_run(run_dir: Path | None, tmp: str) -> Path:
    if run_dir is not None:
        return run_dir
    out = Path(tmp) / "p1"
    cmd = [PY, str(BENCH / "_measured.py"), str(Path(tmp) / "m.json"), "run", str(P1_CONFIG), "--force",
           "--until", "train", "--out", str(out)]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=sys.stderr)
    return out


def profile_encoder(run_dir: Path, n_rows: int) -> dict:
    from gradiend.config import load_config
    from gradiend.data import load_data
    from gradiend.evaluate.encoder import (
        _encode,
        cap_rows,
        neutral_rows,
        neutral_text_column,
        restore_target,
        source_columns,
    )
    from gradiend.model import Gradiend

    config = load_config(run_dir / "config.toml")
    lm = load_model(config.model.spec)
    gradiend = Gradiend.from_pretrained(run_dir / "gradiend")
    data = load_data(run_dir / "data")
    e = config.eval
    pairs = cap_rows(data.pairs[data.pairs["split"] == e.split], e.max_rows, e.seed,
                     by=source_columns(gradiend.meta.source)[1])
    words = set(data.pairs["factual"].astype(str)) | set(data.pairs["alternative"].astype(str))
    masked = neutral_rows(restore_target(pairs), words, variant="neutral_masked", seed=e.seed, split=e.split,
                          sentence_ids=pairs["sentence_id"].tolist())
    texts = neutral_text_column(data.neutral, e.split)[: e.max_lms_texts]
    text = neutral_rows(texts[: e.max_rows], words, variant="neutral_text", seed=e.seed, split=e.split)
    computer = GradientComputer(lm, gradiend.selection)
    sets = {"pairs": (pairs, gradiend.meta.source), "neutral_masked": (masked, "factual"),
            "neutral_text": (text, "factual")}
    out: dict = {"selection_dims": gradiend.selection.input_dim,
                 "selected_tensors": len(gradiend.selection.specs),
                 "rows_in_stage": {k: len(v[0]) for k, v in sets.items()}}
    _encode(lm, gradiend, pairs.head(8), gradiend.meta.source)  # warm-up
    for name, (df, kind) in sets.items():
        part = df.head(n_rows).reset_index(drop=True)
        lengths = [len(computer.objective.target(m, f).ids) for m, f in zip(part["masked"], part["factual"],
                                                                              strict=True)]
        start = time.perf_counter()
        _encode(lm, gradiend, part, kind)
        seconds = time.perf_counter() - start
        out[name] = {"rows": len(part), "s_per_row": round(seconds / len(part), 4),
                     "tokens_mean": round(sum(lengths) / len(lengths), 1), "tokens_max": max(lengths),
                     "est_stage_s": round(seconds / len(part) * len(df), 1)}
    part = pairs.head(16).reset_index(drop=True)
    start = time.perf_counter()
    computer.pair_gradients(part)
    out["pair_gradients_16_rows_same_selection_s"] = round(time.perf_counter() - start, 4)
    out["loadavg"] = loadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--rows", type=int, default=24, help="rows timed per encoder row set")
    parser.add_argument("--skip-smollm2", action="store_true")
    args = parser.parse_args()
    info = machine()
    result: dict = {"machine": info}
    with tempfile.TemporaryDirectory(prefix="gradiend-prof-") as tmp:
        result["p1_encoder_stage"] = profile_encoder(ensure_run(args.run_dir, tmp), args.rows)
    if not args.skip_smollm2:
        torch.manual_seed(0)
        result["smollm2_gradient_step"] = profile_smollm2(args.steps)
    write_result("profile", result)


if __name__ == "__main__":
    main()
