"""P2-reduced: the whole workflow on SmolLM2-135M with the published package's reduced P2 settings, per phase.

    .venv/bin/python benchmarks/p2_reduced.py [--repeats 1] [--run-reference] [--search adaptive|grid] [--tiny]

Ours = ``gradiend run src/gradiend/examples/splade-3sg-3pl.toml --force`` with ``model.spec =
offline:smollm2-135m``, 200 rows per class, 50 neutral rows, 10 steps, 1 seed, 40 validation rows, no post-prune
fine-tune, in a fresh temporary run directory and its own process (peak RSS per run). The reference's figures are
quoted from ../shared/BENCHMARKS.md (2026-12-03: 506 / 251 / 245 / 1,007 s, 12,384 MB); ``--run-reference`` re-runs
it on the same settings (about 17 minutes of both cores; only on a quiet machine). ``--search grid`` runs the
decoder's full grid instead of the adaptive search (to check that both select the same cell). ``--tiny`` checks
the script on minimal settings (not a benchmark).
Targets: whole workflow ≤ 1/20 of the reference, decoder ≤ 1/15, peak RSS ≤ 0.5×.
"""

from __future__ import annotations

import argparse

from _common import (
    P1_CONFIG,
    REFERENCE_P2_REDUCED,
    machine,
    median_of,
    ratio,
    run_ours,
    run_reference,
    write_result,
)

SETTINGS = {"rows_per_class": 200, "steps": 10, "seeds": 1, "neutral_size": 50, "validation_rows": 40}
TINY = {"rows_per_class": 20, "steps": 2, "seeds": 1, "neutral_size": 10, "validation_rows": 4}
PHASES = ["data", "train", "encoder", "decoder", "rewrite", "report", "total_stages", "process_wall"]


def our_sets(settings: dict, search: str) -> list[str]:
    return ['model.spec="offline:smollm2-135m"', 'name="p2-reduced"',
            f"data.options.max_rows_per_class={settings['rows_per_class']}",
            f"data.options.neutral_size={settings['neutral_size']}", f"train.steps={settings['steps']}",
            f"train.seeds=[{', '.join(str(s) for s in range(settings['seeds']))}]",
            f"gradients.validation_rows={settings['validation_rows']}", "train.post_prune_steps=0",
            f'eval.search="{search}"']


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--run-reference", action="store_true", help="re-run the published package (~17 min)")
    parser.add_argument("--search", choices=("adaptive", "grid"), default="adaptive")
    parser.add_argument("--tiny", action="store_true", help="minimal settings: checks the script, measures nothing")
    args = parser.parse_args()
    settings = TINY if args.tiny else SETTINGS
    info = machine()
    runs = [run_ours(P1_CONFIG, sets=our_sets(settings, args.search)) for _ in range(args.repeats)]
    med = {p: median_of(runs, ["seconds", p]) for p in PHASES}
    rss = max(r["max_rss_mb"] for r in runs)
    reference = REFERENCE_P2_REDUCED
    if args.run_reference:
        reference = run_reference("offline:smollm2-135m", [
            "--steps", str(settings["steps"]), "--rows-per-class", str(settings["rows_per_class"]),
            "--neutral-size", str(settings["neutral_size"]), "--max-seeds", str(settings["seeds"])])
    ref_s = reference["seconds"]
    result = {
        "scenario": "P2-reduced", "machine": info, "settings": settings, "search": args.search,
        "tiny_check_only": args.tiny, "repeats": args.repeats,
        "ours": {"runs": runs, "median_seconds": med, "max_rss_mb": rss,
                 "test_correlation": median_of(runs, ["test_correlation"]),
                 "selected_3SG": runs[0].get("selected", {}).get("3SG")},
        "reference": reference,
        "ratios": {
            "train_speedup": ratio(ref_s["train"], med["train"]),
            "encoder_speedup": ratio(ref_s["encoder"], med["encoder"]),
            "decoder_speedup": ratio(ref_s["decoder"], med["decoder"]),
            "workflow_speedup": ratio(ref_s["total"], med["process_wall"]),
            "peak_rss_fraction_of_reference": round(rss / reference["max_rss_mb"], 3),
        },
        "targets": {
            "workflow_20x_faster": med["process_wall"] * 20 <= ref_s["total"],
            "decoder_15x_faster": med["decoder"] * 15 <= ref_s["decoder"],
            "peak_rss_at_most_half": rss <= 0.5 * reference["max_rss_mb"],
        },
    }
    write_result("p2_reduced_tiny_check" if args.tiny else f"p2_reduced{'' if args.search == 'adaptive' else '_grid'}",
                 result)


if __name__ == "__main__":
    main()
