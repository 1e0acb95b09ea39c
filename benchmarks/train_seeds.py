"""Time ``gradiend.train.fit`` for 1 seed vs K seeds side by side, with the gradient side excluded.

The batches are synthetic and precomputed (a pool cycled for ``--steps`` steps), so only the GRADIEND's own
work is timed: forward, backward, AdamW, validation encodings, best-checkpoint copies. Default size n = 440,000
is SPLADE-tiny's backbone pre-pruned to 10 %. Run::

    .venv/bin/python benchmarks/train_seeds.py            # CPU
    .venv/bin/python benchmarks/train_seeds.py --device cuda

What side by side saves in a real run is mostly the gradient computation (done once for K seeds instead of K
times); this script shows what the K GRADIENDs themselves cost on top of one.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from gradiend.gradients.types import GradientBatch
from gradiend.train import TrainConfig, ValidationSet, fit


def synthetic(n: int, pool: int, val_rows: int, device: str) -> tuple[list[GradientBatch], ValidationSet]:
    """Planted gradients (alternative = y·v + noise) on ``device``, so transfers are not timed either."""
    gen = torch.Generator().manual_seed(0)
    v = (torch.randint(0, 2, (n,), generator=gen) * 2 - 1).float() * 1e-3
    ys = torch.tensor([1.0, -1.0] * (pool // 2))
    noise = 1e-4 * torch.randn(2, len(ys), n, generator=gen)
    alt, fact = ys[:, None] * v + noise[0], -ys[:, None] * v + noise[1]
    batches = [
        GradientBatch(f.to(device), a.to(device), float(y), "x", 32) for f, a, y in zip(fact, alt, ys, strict=True)
    ]
    val_y = torch.tensor([1.0, -1.0] * (val_rows // 2))
    val_x = (val_y[:, None] * v + 1e-3 * torch.randn(len(val_y), n, generator=gen)).to(device)
    return batches, ValidationSet.from_tensors(val_x, val_y, chunk_rows=32)


def time_fit(batches: list[GradientBatch], validation: ValidationSet, n: int, config: TrainConfig) -> float:
    """Wall seconds of one ``fit`` call (device synchronised)."""
    if config.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fit(batches, input_dim=n, config=config, validation=validation, progress=False)
    if config.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=440_000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--val-rows", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    batches, validation = synthetic(args.n, 20, args.val_rows, args.device)
    base = {"lr": 1e-3, "steps": args.steps, "eval_every": args.eval_every, "device": args.device}
    configs = {1: TrainConfig(**base, seeds=(0,)), args.seeds: TrainConfig(**base, seeds=tuple(range(args.seeds)))}
    time_fit(batches[:2], validation, args.n, TrainConfig(**{**base, "steps": 2}))  # warm-up (lazy imports)
    best = {k: min(time_fit(batches, validation, args.n, c) for _ in range(args.repeats)) for k, c in configs.items()}
    one, many = best[1], best[args.seeds]
    result = {
        "n": args.n, "steps": args.steps, "eval_every": args.eval_every, "val_rows": args.val_rows,
        "device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "seconds_1_seed": round(one, 3), f"seconds_{args.seeds}_seeds": round(many, 3),
        "ms_per_step_1_seed": round(1000 * one / args.steps, 2),
        f"ms_per_step_{args.seeds}_seeds": round(1000 * many / args.steps, 2),
        f"ratio_{args.seeds}_vs_1": round(many / one, 2),
        f"ratio_vs_{args.seeds}_sequential_runs": round(many / (args.seeds * one), 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
