"""P3: gradient throughput alone — rows per second of factual + alternative gradients, batch 1, 16 and 32.

    .venv/bin/python benchmarks/p3.py [--models splade-tiny smollm2-135m] [--batches 1 16 32] [--repeats 5]

Full-backbone selection, 3SG → 3PL rows from the offline Wikipedia extracts (``gradient_step.wiki_rows``), one
``GradientComputer.pair_gradients`` call per batch (one forward, two backward passes). Median of ``--repeats``
timed calls after one warm-up call.
"""

from __future__ import annotations

import argparse
import statistics

from _common import loadavg, machine, write_result
from gradient_step import timed, wiki_rows

from gradiend.gradients import GradientComputer
from gradiend.lm import load_model
from gradiend.lm.params import select_parameters


def throughput(name: str, batches: list[int], repeats: int) -> list[dict]:
    lm = load_model(f"offline:{name}")
    computer = GradientComputer(lm, select_parameters(lm.model))
    rows = wiki_rows(max(batches))
    out = []
    for b in batches:
        part = rows[:b]
        tokens = sum(len(computer.objective.target(r["masked"], r["factual"]).ids) for r in part)
        before = loadavg()
        runs = timed(lambda p=part: computer.pair_gradients(p), repeats)
        med = statistics.median(runs)
        entry = {"model": name, "batch": b, "tokens": tokens, "median_s": round(med, 4),
                 "rows_per_s": round(b / med, 2), "runs_s": [round(r, 4) for r in runs],
                 "loadavg_before": before, "loadavg_after": loadavg()}
        print(entry, flush=True)
        out.append(entry)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["splade-tiny", "smollm2-135m"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16, 32])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    info = machine()
    results = [e for m in args.models for e in throughput(m, args.batches, args.repeats)]
    reference = {
        "source": "../shared/BENCHMARKS.md (gradient stage alone, batch 16, like the published package: pad to 256, "
                  "full-vocabulary logits, two forward passes)",
        "seconds_batch_16": {"splade-tiny": 5.66, "smollm2-135m": 94.4},
    }
    ratios = {e["model"]: round(reference["seconds_batch_16"][e["model"]] / e["median_s"], 1)
              for e in results if e["batch"] == 16 and e["model"] in reference["seconds_batch_16"]}
    write_result("p3", {"scenario": "P3", "machine": info, "repeats": args.repeats, "ours": results,
                        "reference": reference, "ratios": {"batch16_speedup": ratios}})


if __name__ == "__main__":
    main()
