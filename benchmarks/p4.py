"""P4: three seeds side by side vs one seed, P1 settings, train phase only.

    .venv/bin/python benchmarks/p4.py [--repeats 2]

``gradiend run src/gradiend/examples/splade-3sg-3pl.toml --until train`` with ``train.seeds=[0]`` and with
``train.seeds=[0, 1, 2]``, alternated, each in its own process; the ratio of the median train-phase seconds.
The seeds share one gradient stream (computed once), so the target is 3 seeds ≤ 1.5 × 1 seed.
"""

from __future__ import annotations

import argparse

from _common import P1_CONFIG, machine, median_of, run_ours, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    info = machine()
    runs: dict[str, list[dict]] = {"1": [], "3": []}
    for _ in range(args.repeats):
        runs["1"].append(run_ours(P1_CONFIG, sets=["train.seeds=[0]"], until="train"))
        runs["3"].append(run_ours(P1_CONFIG, sets=["train.seeds=[0, 1, 2]"], until="train"))
    one, three = median_of(runs["1"], ["seconds", "train"]), median_of(runs["3"], ["seconds", "train"])
    rss = {k: max(r["max_rss_mb"] for r in v) for k, v in runs.items()}
    result = {
        "scenario": "P4", "machine": info, "repeats": args.repeats,
        "ours": {"train_seconds_1_seed": one, "train_seconds_3_seeds": three, "max_rss_mb": rss, "runs": runs},
        "reference": {"source": "../shared/BENCHMARKS.md: the published package recomputes all gradients for every "
                                "seed (its P1 run stopped after seed 0 converged); not re-run"},
        "ratios": {"three_vs_one_seed": round(three / one, 3) if one else None},
        "targets": {"three_seeds_at_most_1_5x": bool(one) and three <= 1.5 * one},
    }
    write_result("p4", result)


if __name__ == "__main__":
    main()
