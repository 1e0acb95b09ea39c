"""P1 and P2 on CUDA: step time, the gradient stage's share of the device's matmul rate, the whole workflow, peak
device memory, and the memory plan's estimate against the measured peak.

    .venv/bin/python benchmarks/gpu.py [--scenarios p1 p2] [--dtypes float32 bfloat16] [--steps 50] [--full]
    .venv/bin/python benchmarks/gpu.py --smoke     # CPU, SPLADE-tiny, 2 steps: checks that the script runs

Each (scenario, dtype) runs in its own child process (``--child``), so CUDA peak statistics and RSS are its alone:
``device = "auto"`` places the base model on cuda:0 and the GRADIEND on the last GPU. Per run: the pipeline's
per-stage seconds (data + train, or every stage with ``--full``), seconds per training step (train seconds / steps:
pre-prune and the validation gradients included), the gradient stage alone (median of ``pair_gradients`` on one
batch of ``rows_per_gradient`` train rows, synchronised), its FLOPs (≈ 10 · N_non-embedding · T: one forward, two
backward passes) as a fraction of the device's measured matmul rate in the model's dtype (8192² on a GPU), the
peak memory per device (``torch.cuda.max_memory_allocated``; on the CPU the peak RSS above the process's RSS
before the run, which still holds the runtime's first-use allocations) and the memory plan's peak per
device (``metrics/memory_plan.json``). Results: ``results/gpu.json`` (``results/gpu_smoke.json`` for --smoke).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import BENCH, P1_CONFIG, machine, write_result

MODELS = {"p1": "offline:splade-tiny", "p2": "offline:smollm2-135m"}


def matmul_rate(device: str, dtype: str, n: int, repeats: int = 5) -> float:
    """Median GFLOP/s of an n×n matmul on ``device`` in ``dtype``."""
    import torch

    a = torch.randn(n, n, device=device, dtype=getattr(torch, dtype))
    b = torch.randn_like(a)
    runs = []
    for i in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        if i:  # the first is a warm-up
            runs.append(time.perf_counter() - start)
    return round(2 * n**3 / statistics.median(runs) / 1e9, 1)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def gradient_stage(config, repeats: int = 3) -> dict:
    """The median seconds of one training batch's factual + alternative gradients, and its FLOPs."""
    from gradiend.data import load_data
    from gradiend.devices import gradiend_device
    from gradiend.gradients import GradientComputer
    from gradiend.pipeline import Run
    from gradiend.stages import select

    run = Run(config)
    lm = run.lm
    data = load_data(run.data_dir)
    rows = data.pairs[data.pairs["split"] == "train"].head(config.gradients.rows_per_gradient)
    computer = GradientComputer(lm, select(lm, config.model.params, config.model.layers),
                                device=gradiend_device(config.train.device))
    device = str(lm.device)
    runs = []
    for i in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        computer.pair_gradients(rows)
        _sync(device)
        if i:
            runs.append(time.perf_counter() - start)
    model = lm.model
    emb = model.get_input_embeddings().weight
    n_non_embedding = sum(p.numel() for p in model.parameters()) - emb.numel()
    tokens = sum(len(lm.tokenizer(m)["input_ids"]) + 1 for m in rows["masked"])
    flop = 10 * n_non_embedding * tokens
    med = statistics.median(runs)
    return {"rows": len(rows), "tokens": tokens, "gflop": round(flop / 1e9, 2), "median_s": round(med, 4),
            "achieved_gflops": round(flop / med / 1e9, 1), "device": device}


def child(args: argparse.Namespace) -> None:
    """One scenario in this process: the pipeline, then the gradient stage; JSON to ``args.child``."""
    import torch

    from gradiend.config import apply_overrides, load_config
    from gradiend.pipeline import run

    with tempfile.TemporaryDirectory(prefix="gradiend-gpu-") as tmp:
        sets = [f'model.spec="{MODELS[args.scenario]}"', f'model.dtype="{args.dtype}"', f"train.steps={args.steps}",
                f'output_dir="{tmp}"', f'name="{args.scenario}"', 'gradients.validation_dtype="bfloat16"']
        if args.smoke:
            sets += ["data.options.max_rows_per_class=40", "data.options.neutral_size=20", "train.eval_every=1",
                     "gradients.validation_rows=8", "train.post_prune_steps=0", 'model.device="cpu"',
                     'train.device="cpu"']
        config = apply_overrides(load_config(P1_CONFIG), sets)
        rss_before = _rss()
        gpus = torch.cuda.device_count()
        for i in range(gpus):
            torch.cuda.reset_peak_memory_stats(i)
        start = time.perf_counter()
        run(config, until="report" if args.full else "train", progress=False)
        wall = time.perf_counter() - start
        metrics = config.run_dir / "metrics"
        seconds = json.loads((metrics / "timings.json").read_text())
        plan = json.loads((metrics / "memory_plan.json").read_text())
        peak = {f"cuda:{i}": torch.cuda.max_memory_allocated(i) for i in range(gpus)}
        peak["cpu"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before  # the run's own
        stage = gradient_stage(config)
    device = stage["device"]
    rate = matmul_rate(device, args.dtype, 8192 if device.startswith("cuda") else 1024)
    result = {
        "scenario": args.scenario, "dtype": args.dtype, "steps": args.steps, "wall_s": round(wall, 2),
        "seconds": seconds, "seconds_per_training_step": round(seconds["train"] / args.steps, 3),
        "gradient_stage": stage, "matmul_gflops": rate,
        "gradient_stage_fraction_of_matmul": round(stage["achieved_gflops"] / rate, 3),
        "peak_bytes": peak,
        "plan_peak_bytes": {d: v["peak_bytes"] for d, v in plan["devices"].items()},
        "plan_over_measured": {d: round(v["peak_bytes"] / peak[d], 3) for d, v in plan["devices"].items()
                               if peak.get(d)},
    }
    Path(args.child).write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=["p1", "p2"], choices=sorted(MODELS))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--full", action="store_true", help="every stage (default: data + train)")
    parser.add_argument("--smoke", action="store_true", help="CPU, SPLADE-tiny (P1), float32, 2 steps")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--scenario", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if args.smoke:
        args.scenarios, args.dtypes, args.steps = ["p1"], ["float32"], 2
    runs = []
    for scenario in args.scenarios:
        for dtype in args.dtypes:
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                cmd = [sys.executable, str(BENCH / "gpu.py"), "--child", out.name, "--scenario", scenario,
                       "--dtype", dtype, "--steps", str(args.steps), *(["--full"] if args.full else []),
                       *(["--smoke"] if args.smoke else [])]
                subprocess.run(cmd, check=True, stdout=sys.stderr)
                runs.append(json.loads(Path(out.name).read_text()))
    write_result("gpu_smoke" if args.smoke else "gpu", {"machine": machine(), "gpus": _gpus(), "runs": runs})


def _rss() -> int:
    """This process's resident memory now (bytes): the interpreter and torch before the run starts."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _gpus() -> list[str]:
    import torch

    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


if __name__ == "__main__":
    main()
