"""Acceptance checks on the packaged real models (slow; CI runs them too).

- SPLADE-tiny, offline Wikipedia 3SG vs 3PL (1000 rows per class, 200 steps, P1's pre-prune 10 % and post-prune
  1 %, then 50 fine-tune steps): test correlation ≥ 0.9946, the published package's P1 figure.
- The demo (SmolLM2-135M): the encoder converges (test correlation ≥ 0.95); the selected rewrite raises
  P(3SG words) on 3PL rows above the base model with LMS ≥ 0.99 × base; the rewritten directory, loaded with plain
  ``AutoModelForCausalLM``, reproduces the measured probabilities; the report shows the metric files' numbers.
"""

from __future__ import annotations

import json

import pytest

from gradiend import constants as C
from gradiend.config import apply_overrides, load_config
from gradiend.data import DataConfig, Feature, create_data
from gradiend.evaluate import EvalConfig, evaluate_encoder
from gradiend.pipeline import run
from gradiend.stages import GradientConfig, select, train_gradiend
from gradiend.train import TrainConfig

pytestmark = pytest.mark.slow

FEATURE = Feature.from_mapping({"3SG": ["he", "she", "it"], "3PL": ["they"]})


def test_splade_post_pruned_reaches_reference_test_correlation(splade):
    data = create_data("offline:wiki-en", FEATURE, DataConfig(max_rows_per_class=1000, seed=0, min_left_context=10))
    result = train_gradiend(
        splade, data, select(splade),
        GradientConfig(rows_per_gradient=16, pre_prune_topk=0.1, pre_prune_samples=8, validation_rows=100),
        TrainConfig(lr=1e-5, steps=200, eval_every=20, post_prune_topk=0.01, post_prune_steps=50), progress=False,
    )
    assert result.converged
    pruned = result.gradiend.meta.training["post_prune"]
    assert result.gradiend.input_dim == pruned["input_dim"] == -(-result.models[0].input_dim // 100)
    assert pruned["correlation"] >= pruned["correlation_after_prune"]
    enc = evaluate_encoder(splade, result.gradiend, data.pairs, [], EvalConfig(max_rows=100, bootstrap=100))
    assert enc.metrics["pearson"]["value"] >= 0.9946
    assert enc.metrics["per_class"]["3SG"]["mean"] > 0.5 > -0.5 > enc.metrics["per_class"]["3PL"]["mean"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, smollm2):
    from gradiend.cli.run_cmd import example_path

    out = tmp_path_factory.mktemp("demo")
    config = apply_overrides(load_config(example_path("demo.toml")), [f'output_dir="{out}"'])
    result = run(config, progress=False, lm=smollm2)
    return config, result


def _metrics(result, name):
    return json.loads((result.run_dir / C.METRICS_DIR / name).read_text())


def test_demo_encoder_converges(demo_run):
    _, result = demo_run
    enc = _metrics(result, C.ENCODER_METRICS_FILE)
    assert enc["pearson"]["value"] >= 0.95


def test_demo_rewrite_beats_base_under_lms_constraint(demo_run):
    _, result = demo_run
    sel = _metrics(result, C.DECODER_METRICS_FILE)["selected"]["3SG"]
    assert sel["useful"] is True
    assert sel["value"] > 1.2 * sel["base_value"]
    assert sel["lms_ratio"] >= 0.99


def test_demo_rewritten_directory_reproduces_the_shift(demo_run, smollm2):
    from transformers import AutoModelForCausalLM

    from gradiend.data import load_data
    from gradiend.evaluate.decoder import measure, prepare_inputs
    from gradiend.evaluate.encoder import neutral_text_column
    from gradiend.lm.load import from_model
    from gradiend.lm.objectives import objective_for

    config, result = demo_run
    sel = _metrics(result, C.DECODER_METRICS_FILE)["selected"]["3SG"]
    rewritten = from_model(AutoModelForCausalLM.from_pretrained(result.run_dir / C.REWRITTEN_DIR / "3SG"),
                           smollm2.tokenizer)
    data = load_data(result.run_dir / C.DATA_DIR)
    inputs = prepare_inputs(rewritten, data.pairs, neutral_text_column(data.neutral, config.eval.split),
                            ("3SG", "3PL"), config.eval)
    measured = measure(rewritten, inputs, objective_for(rewritten), config.eval)
    assert measured["p_3SG_other"] == pytest.approx(sel["value"], rel=1e-3)
    assert measured["lms"] == pytest.approx(sel["lms"], rel=1e-3)


def test_demo_report_matches_metric_files(demo_run):
    _, result = demo_run
    html = result.report.read_text()
    enc = _metrics(result, C.ENCODER_METRICS_FILE)
    sel = _metrics(result, C.DECODER_METRICS_FILE)["selected"]["3SG"]
    assert f'{enc["pearson"]["value"]:.3f}' in html
    assert f'{sel["base_value"]:.3g} → {sel["value"]:.3g}' in html
    assert f'(ratio {sel["lms_ratio"]:.3f})' in html


def test_demo_cards_name_every_figure(demo_run):
    from huggingface_hub import ModelCard

    from gradiend.export import Stat

    _, result = demo_run
    enc = _metrics(result, C.ENCODER_METRICS_FILE)
    sel = _metrics(result, C.DECODER_METRICS_FILE)["selected"]["3SG"]
    counts = json.loads((result.run_dir / C.DATA_DIR / C.DATA_META_FILE).read_text())["counts"]["3SG"]
    card = (result.run_dir / C.GRADIEND_DIR / "README.md").read_text()
    meta = ModelCard(card).data.to_dict()
    assert (meta["library_name"], meta["base_model"], meta["license"]) == (
        "gradiend", "HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")
    for figure in ("| `3SG` | he, she, it |", "`offline:wiki-en`", f"| `3SG` | {counts['train']} |",
                   "| rows per gradient | 16 |", "| learning rate | 0.0001 |", f"| Pearson r | {Stat.of(enc['pearson'])} |",
                   f"| {Stat.of(sel['shift'])} | {Stat.of(sel['lms_ratio'], sel['lms_ratio_ci'])} | yes |",
                   "Gradiend.from_pretrained(", "arXiv:2502.01406"):
        assert figure in card, figure
    rewritten = (result.run_dir / C.REWRITTEN_DIR / "3SG" / "README.md").read_text()
    assert f"(shift {Stat.of(sel['shift'])}, 95 % CI); LMS ratio" in rewritten
