"""P1: the whole workflow on SPLADE-tiny, 3SG {he, she, it} vs 3PL {they}, ours against the published package.

    .venv/bin/python benchmarks/p1.py [--repeats 3] [--run-reference]

Ours = ``gradiend run src/gradiend/examples/splade-3sg-3pl.toml --force`` in a fresh temporary run directory,
``--repeats`` times, each in its own process (medians per phase, peak RSS per run). The reference's P1 run takes
about 50 minutes on these machines, so by default its figures are quoted from ../shared/BENCHMARKS.md (measured
2026-11-25); ``--run-reference`` re-runs it with /work/refvenv (../shared/bench/reference_run.py).
"""

from __future__ import annotations

import argparse

from _common import P1_CONFIG, REFERENCE_P1, machine, median_of, ratio, run_ours, run_reference, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run-reference", action="store_true", help="re-run the published package (~50 min)")
    args = parser.parse_args()
    info = machine()
    runs = [run_ours(P1_CONFIG) for _ in range(args.repeats)]
    phases = ["data", "train", "encoder", "decoder", "rewrite", "report", "total_stages", "process_wall"]
    ours = {
        "runs": runs,
        "median_seconds": {p: median_of(runs, ["seconds", p]) for p in phases},
        "max_rss_mb": max(r["max_rss_mb"] for r in runs),
        "test_correlation": median_of(runs, ["test_correlation"]),
        "selected_3SG": runs[0].get("selected", {}).get("3SG"),
    }
    reference = run_reference("offline:splade-tiny", ["--steps", "200"]) if args.run_reference else REFERENCE_P1
    med, ref_s = ours["median_seconds"], reference["seconds"]
    sel = ours["selected_3SG"] or {}
    result = {
        "scenario": "P1", "machine": info, "repeats": args.repeats, "ours": ours, "reference": reference,
        "ratios": {
            "train_speedup": ratio(ref_s["train"], med["train"]),
            "encoder_speedup": ratio(ref_s["encoder"], med["encoder"]),
            "decoder_speedup": ratio(ref_s["decoder"], med["decoder"]),
            "workflow_speedup": ratio(ref_s["total"], med["process_wall"]),
            "peak_rss_fraction_of_reference": round(ours["max_rss_mb"] / reference["max_rss_mb"], 3),
        },
        "targets": {
            "train_30x_faster": med["train"] * 30 <= ref_s["train"],
            "workflow_15x_faster": med["process_wall"] * 15 <= ref_s["total"],
            "peak_rss_at_most_half": ours["max_rss_mb"] <= 0.5 * reference["max_rss_mb"],
            "test_correlation_at_least_reference": (ours["test_correlation"] or 0) >= reference["test_correlation"],
            "decoder_beats_base": bool(sel.get("useful")) and (sel.get("value") or 0) > (sel.get("base_value") or 0),
        },
    }
    write_result("p1", result)


if __name__ == "__main__":
    main()
