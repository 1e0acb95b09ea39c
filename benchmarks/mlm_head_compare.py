"""Causal vs masked-head objective on the same feature: which encodes better, and at what cost.

    .venv/bin/python benchmarks/mlm_head_compare.py [--model offline:gemma3-270m] [--head-texts offline:wiki-en]
        [--head-steps 400] [--set KEY=VALUE ...] [--until evaluate]

1. Trains the auxiliary MLM head of ``--model`` once on neutral text (``gradiend head train``; its seconds and
   validation loss/accuracy are recorded).
2. Runs the P1 configuration (``splade-3sg-3pl.toml``, 3SG vs 3PL on Wikipedia) with ``model.spec = --model``
   twice, each in its own process: the causal objective, then ``model.head = <the head>`` (masked-head).
3. Reports per objective: test correlation, class separation (mean test encoding of 3SG minus 3PL, Cohen's d),
   the selected rewrite with its LMS ratio, per-stage seconds and peak RSS. ``--set`` overrides apply to both runs
   (e.g. a smaller setting: ``--set data.options.max_rows_per_class=200 --set train.steps=50``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from _common import P1_CONFIG, PY, ROOT, machine, run_ours, write_result


def train_head(model: str, texts: str, steps: int, max_texts: int, out: Path) -> dict:
    """``gradiend head train`` in a child process; its metrics and wall seconds."""
    cli = ["head", "train", "--model", model, "--texts", texts, "--out", str(out), "--steps", str(steps),
           "--max-texts", str(max_texts)]
    start = time.perf_counter()
    subprocess.run([PY, "-c", "from gradiend.cli import main; main()", *cli], cwd=ROOT, check=True)
    meta = json.loads((out / "head.json").read_text())
    return {"command": "gradiend " + " ".join(cli), "seconds": round(time.perf_counter() - start, 1),
            **{k: meta["metrics"][k] for k in ("val_loss_before", "val_loss", "val_accuracy", "n_train")}}


def separation(run_dir: Path) -> dict | None:
    """How far apart the two groups encode on the test rows: mean gap (positive − negative) and Cohen's d."""
    path = run_dir / "metrics" / "encoder.json"
    if not path.is_file():
        return None
    enc = json.loads(path.read_text())
    pos, neg = (enc["per_group"][c]["mean"] for c in enc["classes"])
    return {"mean_gap": round(pos - neg, 4), "cohens_d": enc["cohens_d"]["value"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="offline:gemma3-270m")
    parser.add_argument("--head-texts", default="offline:wiki-en")
    parser.add_argument("--head-steps", type=int, default=400)
    parser.add_argument("--head-max-texts", type=int, default=4000)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--until", default=None, help="last stage of both runs (default: the whole run)")
    args = parser.parse_args()
    info = machine()
    with tempfile.TemporaryDirectory(prefix="gradiend-mlmhead-") as tmp:
        head_dir = Path(tmp) / "head"
        head = train_head(args.model, args.head_texts, args.head_steps, args.head_max_texts, head_dir)
        sets = [f'model.spec="{args.model}"', *args.sets]
        runs = {}
        for name, extra in (("causal", []), ("masked-head", [f'model.head="{head_dir}"'])):
            keep = Path(tmp) / name
            runs[name] = run_ours(P1_CONFIG, sets=[*sets, *extra], until=args.until, keep=keep)
            runs[name]["class_separation"] = separation(keep)
    result = {
        "scenario": "mlm_head_compare", "machine": info, "model": args.model, "head": head, "runs": runs,
        "summary": {name: {k: r.get(k) for k in ("test_correlation", "class_separation", "max_rss_mb")}
                    | {"train_seconds": r["seconds"].get("train")} for name, r in runs.items()},
    }
    write_result("mlm_head_compare", result)


if __name__ == "__main__":
    main()
