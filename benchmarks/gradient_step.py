"""Seconds per gradient step: factual + alternative gradient of the mean loss over 16 Wikipedia rows.

    .venv/bin/python benchmarks/gradient_step.py [--models splade-tiny smollm2-135m] [--rows 16] [--repeats 5]

Full backbone selection, one transition (3SG → 3PL: he/she/it → they), rows taken in order from the offline
Wikipedia extracts. Prints one JSON line per measurement (median and all runs) plus the machine load, since
the benchmark machines are shared. Extra variants: per-row gradients with and without a shared forward.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from collections.abc import Callable

import torch

from gradiend import assets
from gradiend.gradients import GradientComputer
from gradiend.lm import load_model
from gradiend.lm.params import select_parameters

PRONOUN = re.compile(r"\b(he|she|it|He|She|It)\b")
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def wiki_rows(n: int, max_words: int = 40) -> list[dict[str, str]]:
    """The first n Wikipedia sentences with exactly one he/she/it, masked, with alternative 'they'."""
    data = json.loads(assets.resolve("offline:wiki-en").read_text())
    rows = []
    for entry in data.values():
        for sentence in SENTENCE.split(entry.get("extract", "")):
            found = PRONOUN.findall(sentence)
            if len(found) != 1 or len(sentence.split()) > max_words or "[MASK]" in sentence:
                continue
            word = found[0]
            alternative = "They" if word[0].isupper() else "they"
            rows.append({"masked": PRONOUN.sub("[MASK]", sentence), "factual": word, "alternative": alternative})
            if len(rows) == n:
                return rows
    raise SystemExit(f"only {len(rows)} matching sentences found")


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up: tokenizer caches, head split check, allocator
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def report(model: str, what: str, runs: list[float], **extra: object) -> None:
    load = os.getloadavg()
    print(json.dumps({"model": model, "what": what, "median_s": round(statistics.median(runs), 4),
                      "runs_s": [round(r, 4) for r in runs], "loadavg": [round(x, 2) for x in load],
                      "threads": torch.get_num_threads(), **extra}), flush=True)


def bench(name: str, n_rows: int, repeats: int, per_row: bool) -> None:
    lm = load_model(f"offline:{name}")
    selection = select_parameters(lm.model)
    computer = GradientComputer(lm, selection)
    rows = wiki_rows(n_rows)
    tokens = sum(len(computer.objective.target(r["masked"], r["factual"]).ids) for r in rows)
    runs = timed(lambda: computer.pair_gradients(rows), repeats)
    report(name, f"pair_gradients {n_rows} rows", runs, params=selection.input_dim, tokens=tokens)
    if per_row:
        few = rows[:8]
        for chunk in (1, 8):
            runs = timed(lambda c=chunk: list(computer.row_gradients(few, "alternative", chunk=c)), max(1, repeats // 2))
            report(name, f"row_gradients 8 rows, chunk {chunk}", runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["splade-tiny", "smollm2-135m"])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--per-row", action="store_true", help="also time per-row gradients (chunk 1 vs 8)")
    args = parser.parse_args()
    for name in args.models:
        bench(name, args.rows, args.repeats if name == "splade-tiny" else min(args.repeats, 3), args.per_row)


if __name__ == "__main__":
    main()
