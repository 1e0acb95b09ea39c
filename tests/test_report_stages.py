"""The plots and the report read what the real stages write: a training log from ``train.fit``, encoder.json
from ``encoder_metrics`` and decoder.json from ``select_rewrites``/``decoder_summary`` (schema drift shows here)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from gradiend import constants as C
from gradiend.evaluate.decoder import EvalConfig, decoder_summary, select_rewrites
from gradiend.evaluate.encoder import encoder_metrics
from gradiend.gradients.types import GradientBatch
from gradiend.report import render_report
from gradiend.train import TrainConfig, ValidationSet, fit
from test_report_synthetic import SELECTED, decoder_grid, encodings, make_run


def _training_log() -> list[dict]:
    """A real fit on planted gradients: alternative = y·v + noise."""
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(32, generator=gen) * 0.03

    def rows(y: torch.Tensor, noise: float) -> torch.Tensor:
        return y[:, None] * v + noise * 0.03 * torch.randn(len(y), 32, generator=gen)

    ys = torch.tensor([1.0, -1.0] * 20)
    alt, fact = rows(ys, 0.1), rows(-ys, 0.1)
    batches = [GradientBatch(f, a, float(y), "t", 8) for f, a, y in zip(fact, alt, ys, strict=True)]
    val_y = torch.tensor([1.0, -1.0] * 16)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: more threads only contend on a shared machine
    try:
        result = fit(batches, input_dim=32, config=TrainConfig(lr=3e-2, eval_every=10, seeds=(0, 1)),
                     validation=ValidationSet.from_tensors(rows(val_y, 1.0), val_y), progress=False)
    finally:
        torch.set_num_threads(threads)
    return list(result.log)


def test_planted_selection_matches_the_decoder_stage_policy() -> None:
    selected = select_rewrites(decoder_grid(), {"3SG": 1.0, "3PL": -1.0}, "threshold", 0.99)
    for cid, (h, alpha) in SELECTED.items():
        assert (selected[cid]["h"], selected[cid]["alpha"], selected[cid]["useful"]) == (h, alpha, True)


def test_report_of_real_stage_outputs(tmp_path: Path) -> None:
    run = make_run(tmp_path, full=False)
    metrics = run / C.METRICS_DIR
    log = _training_log()
    (metrics / C.TRAINING_LOG_FILE).write_text("".join(json.dumps(r) + "\n" for r in log))
    enc = encoder_metrics(encodings(), ("3SG", "3PL"), n_boot=100)
    (metrics / C.ENCODER_METRICS_FILE).write_text(json.dumps(enc))
    grid = decoder_grid()
    selected = select_rewrites(grid, {"3SG": 1.0, "3PL": -1.0}, "threshold", 0.99)
    summary = decoder_summary(grid, selected, EvalConfig(), "LMS definition", {"3SG": 100, "3PL": 35}, 200)
    (metrics / C.DECODER_METRICS_FILE).write_text(json.dumps(summary))
    grid.to_csv(metrics / C.DECODER_GRID_FILE, index=False)

    html = render_report(run)
    value, (lo, hi) = enc["pearson"]["value"], enc["pearson"]["ci"]
    assert f'<div class="big">{value:.3f}</div>' in html and f"95% CI [{lo:.3f}, {hi:.3f}]" in html
    assert "h = +1, α = 1 ·" in html and "h = -1, α = 0.1 ·" in html
    assert not [p for p in (run / C.PLOTS_DIR).iterdir() if p.stat().st_size < 10_000]
    assert sorted(p.name for p in (run / C.PLOTS_DIR).iterdir()) == ["decoder_grid.png", "target_means.png", "training.png"]
    best = [r for r in log if r["best"]]
    assert len(best) == 2
    for r in best:  # the training table shows each seed's best step and its correlation
        assert f'<td class="num">{r["seed"]}</td><td class="num">{r["step"]}</td>' in html
        assert f'{r["correlation"]:.3f}' in html
