"""P2: the whole workflow on SmolLM2-135M (causal LM) with the P1 settings but 50 training steps — ours only.

    .venv/bin/python benchmarks/p2.py [--steps 50] [--full]

The published package needs about 69 s per 16-row training step and 12.4 GB peak RSS on this model
(../shared/BENCHMARKS.md, a reduced run); its full P2 run would take many hours, so it is not re-run. Our
seconds per training step are the train phase's seconds / steps (pre-prune and the validation gradients
included, so an upper bound on the step itself). The 100 validation gradients of P1 over SmolLM2's 13.45M
pre-pruned dimensions need 5.0 GiB in float32, above the library's 4 GiB cap, so they are kept in bfloat16
(``gradients.validation_dtype``, 2.5 GiB).
``train.post_prune_steps`` is 0 (the published package has no post-prune fine-tune; P1's config has 50).
"""

from __future__ import annotations

import argparse

from _common import P1_CONFIG, REFERENCE_P2, machine, ratio, run_ours, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--full", action="store_true",
                        help="the whole workflow (about 13 minutes on 2 cores, 10 of them the decoder grid); "
                             "default: data + train only")
    parser.add_argument("--validation-rows", type=int, default=100)
    args = parser.parse_args()
    info = machine()
    ours = run_ours(P1_CONFIG, sets=['model.spec="offline:smollm2-135m"', f"train.steps={args.steps}",
                                        f"gradients.validation_rows={args.validation_rows}", 'name="p2"',
                                        'gradients.validation_dtype="bfloat16"',
                                        "train.post_prune_steps=0"],
                     until=None if args.full else "train")
    per_step = ours["seconds"]["train"] / args.steps
    ours["seconds_per_training_step"] = round(per_step, 2)
    result = {
        "scenario": "P2", "machine": info, "steps": args.steps, "validation_rows": args.validation_rows,
        "stages": "all" if args.full else "data, train", "ours": ours, "reference": REFERENCE_P2,
        "ratios": {
            "training_step_speedup": ratio(REFERENCE_P2["seconds_per_training_step"], per_step),
            "peak_rss_fraction_of_reference": round(ours["max_rss_mb"] / REFERENCE_P2["max_rss_mb"], 3),
        },
        "targets": {"training_step_10x_faster": per_step * 10 <= REFERENCE_P2["seconds_per_training_step"]},
    }
    write_result("p2", result)


if __name__ == "__main__":
    main()
