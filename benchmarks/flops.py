"""How close a causal LM's gradient stage is to the machine's float32 matrix-multiply rate.

    .venv/bin/python benchmarks/flops.py [--model smollm2-135m|gemma3-270m] [--params GLOB ...] [--repeats 3]

1. The machine's rate: 2048² and 4096² float32 matmuls through torch (default threads), median of several.
2. One P2 training step's gradient work on the model (default SmolLM2-135M): ``pair_gradients`` of 16 train rows of the P1/P2
   data (3SG → 3PL, full backbone), one forward + two backward passes. FLOPs ≈ 5 × forward, forward ≈ 2 · N · T (N = non-embedding
   parameters, T = tokens) + 2 · V · d per row for the LM head at the target position; each backward ≈ 2 ×
   forward. T is counted from the real (unpadded) tokens of the rows; ``tokens_computed`` is what the forward
   runs on (sequences packed several per row), ``tokens_padded`` what padding to the longest would cost.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import P1_CONFIG, loadavg, machine, write_result
from gradient_step import timed, wiki_rows

from gradiend.gradients import GradientComputer
from gradiend.lm import load_model
from gradiend.lm.params import select_parameters


def matmul_rate(n: int, repeats: int) -> dict:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        runs.append(time.perf_counter() - start)
    med = statistics.median(runs)
    return {"n": n, "median_s": round(med, 5), "gflops": round(2 * n**3 / med / 1e9, 1),
            "runs_gflops": [round(2 * n**3 / r / 1e9, 1) for r in runs], "loadavg": loadavg()}


def p2_rows(n: int) -> list[dict[str, str]]:
    """``n`` train rows of one transition (3SG → 3PL) of the P1/P2 data, as a training batch draws them."""
    from gradiend.config import load_config
    from gradiend.data import create_data
    from gradiend.pipeline import feature_of

    config = load_config(P1_CONFIG)
    d = config.data
    data = create_data(d.texts, feature_of(d), d.options)
    pairs = data.pairs[(data.pairs["split"] == "train") & (data.pairs["factual_class"] == "3SG")]
    sample = pairs.sample(n=n, random_state=0)
    return [{"masked": m, "factual": f, "alternative": a}
            for m, f, a in zip(sample["masked"], sample["factual"], sample["alternative"], strict=True)]


def computed_tokens(computer: GradientComputer, rows: list[dict[str, str]]) -> int:
    """Tokens the forward actually runs on: the packed rows × their length (or padded, where not packed)."""
    from gradiend.lm.forward import model_split, pack, pad
    from gradiend.lm.objectives import _plan, as_pair_rows

    objective, model = computer.objective, computer.lm.model
    pair_rows = as_pair_rows(rows)
    targets = [objective.target(r.masked, r.factual) for r in pair_rows]
    targets += [objective.target(r.masked, r.alternative) for r in pair_rows]
    seqs, _ = _plan(targets, list(range(len(pair_rows))) * 2, objective.shares_prefixes)
    batch = pack(seqs, 0, "cpu") if model_split(model).packs(model) else pad(seqs, 0, "right", "cpu")
    return int(batch.input_ids.numel())


def gradient_stage(name: str, rows_n: int, repeats: int, source: str, params: list[str]) -> dict:
    lm = load_model(f"offline:{name}")
    model = lm.model
    selection = select_parameters(model, params)
    computer = GradientComputer(lm, selection)
    rows = p2_rows(rows_n) if source == "p2" else wiki_rows(rows_n)
    lengths = [len(computer.objective.target(r["masked"], r["factual"]).ids) for r in rows]
    tokens, padded = sum(lengths), len(lengths) * max(lengths)
    computed = computed_tokens(computer, rows)
    emb = model.get_input_embeddings().weight
    vocab, dim = emb.shape
    n_non_embedding = sum(p.numel() for p in model.parameters()) - emb.numel()
    head_per_row = 2 * vocab * dim

    def flops(t: int) -> float:
        return 5 * (2 * n_non_embedding * t + head_per_row * len(rows))

    runs = timed(lambda: computer.pair_gradients(rows), repeats)
    med = statistics.median(runs)
    return {"model": name, "params": params or "backbone (default)", "selected": selection.input_dim, "rows": len(rows), "rows_from": source, "tokens_real": tokens, "tokens_padded": padded,
            "tokens_computed": computed,
            "params_non_embedding": n_non_embedding, "vocab": vocab, "hidden": dim,
            "gflop_per_step_real": round(flops(tokens) / 1e9, 1), "gflop_per_step_padded": round(flops(padded) / 1e9, 1),
            "median_s": round(med, 3), "runs_s": [round(r, 3) for r in runs],
            "achieved_gflops_real": round(flops(tokens) / med / 1e9, 1),
            "achieved_gflops_padded": round(flops(padded) / med / 1e9, 1), "loadavg": loadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="an offline causal LM: smollm2-135m, gemma3-270m")
    parser.add_argument("--params", action="append", default=[],
                        help="parameter glob of the selection (repeatable; default: the whole backbone)")
    parser.add_argument("--repeats", type=int, default=3, help="timed gradient steps (after one warm-up)")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--rows-from", choices=["p2", "wiki"], default="p2",
                        help="p2: a training batch of the P1/P2 data (left context ≥ 10 words); wiki: "
                             "gradient_step.wiki_rows (pronoun often sentence-initial, so short causal prefixes)")
    args = parser.parse_args()
    info = machine()
    rates = [matmul_rate(2048, 9), matmul_rate(4096, 5)]
    stage = gradient_stage(args.model, args.rows, args.repeats, args.rows_from, args.params)
    rates_after = [matmul_rate(2048, 9), matmul_rate(4096, 5)]  # the load can change while the stage runs
    peak = max(r["gflops"] for r in rates + rates_after)  # lower readings are other users' load, not the machine
    result = {
        "machine": info, "matmul": rates, "matmul_after": rates_after, "matmul_gflops": peak,
        "gradient_stage": stage,
        "fraction_of_matmul_rate_real_tokens": round(stage["achieved_gflops_real"] / peak, 3),
        "fraction_of_matmul_rate_padded_tokens": round(stage["achieved_gflops_padded"] / peak, 3),
        "floor_s_real_tokens": round(stage["gflop_per_step_real"] / peak, 2),
        "targets": {"gradient_stage_at_least_70pct_of_matmul": stage["achieved_gflops_real"] >= 0.7 * peak},
    }
    name = "flops" if args.model == "smollm2-135m" else f"flops_{args.model}"
    write_result(name + ("_params" if args.params else ""), result)


if __name__ == "__main__":
    main()
