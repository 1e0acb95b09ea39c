"""End-to-end pipeline on a tiny random BERT saved to disk: artifacts, resumability, CLI verbs."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from gradiend import constants as C
from gradiend.cli import cli
from gradiend.config import apply_overrides, load_config
from gradiend.pipeline import STAGES, run

CONFIG = """
name = "tiny"
output_dir = "{out}"

[model]
spec = "{model}"

[data]
texts = "offline:wiki-en"
max_documents = 1500

[data.classes]
3SG = ["he", "she"]
3PL = ["they"]

[data.options]
seed = 0
max_rows_per_class = 60
neutral_size = 40

[gradients]
rows_per_gradient = 4
validation_rows = 8

[train]
lr = 1e-3
steps = 4
eval_every = 2
post_prune_topk = 0.5
post_prune_steps = 2

[eval]
max_rows = 6
max_lms_texts = 6
alphas = [0.1, 1.0]
bootstrap = 20

[rewrite]
strengthen = ["3SG"]
policy = "fixed"
alpha = 1.0
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("runs")
    cfg_path = out / "tiny.toml"
    cfg_path.write_text(CONFIG.format(out=out, model=tiny_model_dir))
    config = load_config(cfg_path)
    result = run(config, progress=False)
    return config, result


def test_full_run_writes_every_artifact(finished_run):
    config, result = finished_run
    d = result.run_dir
    assert result.ran == list(STAGES) and result.skipped == []
    for rel in (C.CONFIG_FILE, "data/pairs.parquet", "data/neutral.parquet", "data/data.json",
                "gradiend/model.safetensors", "gradiend/config.json", "metrics/training.jsonl",
                "metrics/encoder.json", "metrics/encodings.parquet", "metrics/decoder.json", "metrics/decoder_grid.csv",
                "metrics/timings.json", "rewritten/3SG/gradiend_rewrite.json", C.REPORT_FILE):
        assert (d / rel).is_file(), rel
    assert load_config(d / C.CONFIG_FILE) == config  # the resolved config reproduces the run
    timings = json.loads((d / "metrics/timings.json").read_text())
    assert set(timings) == set(STAGES) and all(v >= 0 for v in timings.values())


def test_the_memory_plan_is_written_and_recorded_in_the_provenance(finished_run):
    _, result = finished_run
    plan = json.loads((result.run_dir / C.METRICS_DIR / C.MEMORY_PLAN_FILE).read_text())
    assert plan["fits"] is True and set(plan["devices"]) == {"cpu"}  # device = "auto" without a GPU
    names = {i["name"] for i in plan["items"]}
    assert {"base model weights", "GRADIEND weights", "optimizer state (grad + AdamW moments)"} <= names
    provenance = json.loads((result.run_dir / C.METRICS_DIR / C.PROVENANCE_FILE).read_text())
    assert provenance["memory_plan"] == {"cpu": plan["devices"]["cpu"]["peak_bytes"]}


def test_report_numbers_match_metric_files(finished_run):
    _, result = finished_run
    enc = json.loads((result.run_dir / "metrics/encoder.json").read_text())
    html = result.report.read_text()
    assert f'{enc["pearson"]["value"]:.3f}' in html
    pp = json.loads((result.run_dir / "gradiend/config.json").read_text())["training"]["post_prune"]
    assert pp["steps"] == 2 and pp["lr"] == pytest.approx(1e-3 * 2, rel=1e-3)  # lr × before/after, half kept
    assert (f"Post-prune kept {pp['input_dim']} input dimensions (top 0.5 by decoder weight); validation correlation "
            f"right after pruning {pp['correlation_after_prune']:.4f}, after 2 fine-tune steps (lr {pp['lr']:.3g}) "
            f"{pp['correlation']:.4f}.") in html
    log = [json.loads(x) for x in (result.run_dir / "metrics/training.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if e["phase"] == "post-prune"] == [4, 6]


def test_the_run_writes_model_cards_with_its_figures(finished_run):
    from gradiend.export import Stat, fmt

    d = finished_run[1].run_dir
    enc = json.loads((d / "metrics/encoder.json").read_text())
    card = (d / "gradiend/README.md").read_text()
    assert card.startswith("---\nlibrary_name: gradiend\n") and f"| Pearson r | {Stat.of(enc['pearson'])} |" in card
    assert "| `3SG` | he, she |" in card and "`offline:wiki-en`" in card and "## Selected rewrites" in card
    rewritten = (d / "rewritten/3SG/README.md").read_text()
    assert f"h = {fmt(1.0)}, α = {fmt(1.0)}" in rewritten  # the fixed policy's (h, α)


def test_fixed_rewrite_adds_alpha_times_decoder_output(finished_run):
    from transformers import AutoModelForMaskedLM

    from gradiend.lm.load import load_model
    from gradiend.model import Gradiend

    config, result = finished_run
    base = load_model(config.model.spec)
    gradiend = Gradiend.from_pretrained(result.run_dir / C.GRADIEND_DIR)
    rewritten = AutoModelForMaskedLM.from_pretrained(result.run_dir / "rewritten/3SG")
    h = gradiend.strengthen_h("3SG")
    expected = gradiend.update_vector(h).detach() * 1.0
    sel = gradiend.selection
    got = sel.flatten([q.detach() - p.detach() for p, q in zip(sel.parameters(base.model), sel.parameters(rewritten),
                                                                 strict=True)])
    assert torch.allclose(got, expected, atol=1e-6)
    meta = json.loads((result.run_dir / "rewritten/3SG/gradiend_rewrite.json").read_text())
    assert meta["alpha"] == 1.0 and meta["h"] == h


def test_rerun_skips_up_to_date_stages_and_redoes_what_changed(finished_run):
    config, result = finished_run
    again = run(config, progress=False)
    assert again.ran == [] and again.skipped == list(STAGES)
    changed = apply_overrides(config, ["eval.alphas=[0.5]"])
    partial = run(changed, progress=False)
    assert partial.skipped == ["data", "train"]
    assert partial.ran == ["encoder", "decoder", "rewrite", "report"]
    other = run(apply_overrides(changed, ['rewrite.strengthen=["3PL"]']), progress=False)
    assert other.ran == ["rewrite", "report"]
    assert (other.run_dir / "rewritten/3PL").is_dir() and not (other.run_dir / "rewritten/3SG").exists()


def test_interrupted_training_resumes_without_redoing_data(tmp_path, tiny_model_dir, monkeypatch):
    import gradiend.stages

    cfg_path = tmp_path / "tiny.toml"
    cfg_path.write_text(CONFIG.format(out=tmp_path, model=tiny_model_dir))
    config = load_config(cfg_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gradiend.stages, "train_gradiend", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(config, progress=False, until="train")
    assert not (config.run_dir / C.GRADIEND_DIR).exists()
    monkeypatch.undo()
    resumed = run(config, progress=False, until="train")
    assert resumed.skipped == ["data"] and resumed.ran == ["train"]


def test_cli_evaluate_and_rewrite_on_a_run(finished_run, tmp_path):
    _, result = finished_run
    runner = CliRunner()
    out = runner.invoke(cli, ["evaluate", str(result.run_dir), "--split", "validation"])
    assert out.exit_code == 0, out.output
    enc = json.loads((result.run_dir / "metrics/encoder.json").read_text())
    assert enc["split"] == "validation"
    assert f"encoder: Pearson r = {enc['pearson']['value']:.4f}" in out.output
    target = tmp_path / "rw"
    out = runner.invoke(cli, ["rewrite", str(result.run_dir), "--h", "1", "--alpha", "0.5", "--out", str(target)])
    assert out.exit_code == 0, out.output
    assert json.loads((target / "gradiend_rewrite.json").read_text())["alpha"] == 0.5
    assert "with h = 1, α = 0.5 on" in (target / "README.md").read_text()  # its model card


def test_cli_rewrite_needs_a_choice(finished_run):
    _, result = finished_run
    out = CliRunner().invoke(cli, ["rewrite", str(result.run_dir), "--h", "1"])
    assert out.exit_code != 0
    assert "give both --h and --alpha" in str(out.exception)


def test_not_a_run_directory_is_named(tmp_path):
    out = CliRunner().invoke(cli, ["evaluate", str(tmp_path)])
    assert "is not a gradiend run directory" in str(out.exception)


def test_cli_data_then_train(tmp_path, tiny_model_dir):
    from gradiend.model import Gradiend

    runner = CliRunner()
    data_dir, run_dir = tmp_path / "data", tmp_path / "runs" / "cli"
    out = runner.invoke(cli, ["data", "--texts", "offline:wiki-en", "--class", "3SG=he,she", "--class", "3PL=they",
                              "--out", str(data_dir), "--max-documents", "1500", "--max-rows-per-class", "40",
                              "--neutral-size", "20"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli, ["train", "--model", str(tiny_model_dir), "--data", str(data_dir), "--out", str(run_dir),
                              "--steps", "2", "--eval-every", "1", "--rows-per-gradient", "4", "--pre-prune", "0.5"])
    assert out.exit_code == 0, out.output
    g = Gradiend.from_pretrained(run_dir / C.GRADIEND_DIR)
    assert g.meta.classes == ("3SG", "3PL") and g.meta.base_model == str(tiny_model_dir)
    assert g.input_dim == g.selection.input_dim
    stages = json.loads((run_dir / "metrics/stages.json").read_text())
    assert set(stages) == {"data", "train"}
    config = load_config(run_dir / C.CONFIG_FILE)  # the run's config names the data that made it
    assert config.data.texts == "offline:wiki-en" and config.data.options.max_rows_per_class == 40
    # new data in the same directory: the run adopts it and trains again
    out = runner.invoke(cli, ["data", "--texts", "offline:wiki-en", "--class", "3SG=he,she", "--class", "3PL=they",
                              "--out", str(data_dir), "--max-documents", "1500", "--max-rows-per-class", "30",
                              "--neutral-size", "20", "--seed", "7"])
    assert out.exit_code == 0, out.output
    before = (run_dir / C.GRADIEND_DIR / C.WEIGHTS_FILE).stat().st_mtime_ns
    out = runner.invoke(cli, ["train", "--model", str(tiny_model_dir), "--data", str(data_dir), "--out", str(run_dir),
                              "--steps", "2", "--eval-every", "1", "--rows-per-gradient", "4", "--pre-prune", "0.5"])
    assert out.exit_code == 0, out.output
    assert (run_dir / C.GRADIEND_DIR / C.WEIGHTS_FILE).stat().st_mtime_ns != before
    new_meta = json.loads((data_dir / C.DATA_META_FILE).read_text())
    assert json.loads((run_dir / "data" / C.DATA_META_FILE).read_text())["fingerprint"] == new_meta["fingerprint"]


def test_training_over_several_epochs(tiny_bert):
    from gradiend.data import DataConfig, Feature, create_data
    from gradiend.stages import GradientConfig, select, train_gradiend
    from gradiend.train import TrainConfig

    feature = Feature.from_mapping({"3SG": ["he", "she"], "3PL": ["they"]})
    data = create_data("offline:wiki-en", feature, DataConfig(max_rows_per_class=20, neutral_size=5, seed=0),
                       max_documents=1500)
    result = train_gradiend(tiny_bert, data, select(tiny_bert), GradientConfig(rows_per_gradient=8, validation_rows=4),
                            TrainConfig(lr=1e-3, epochs=2, eval_every=2), progress=False)
    n_train = int((data.pairs["split"] == "train").sum())
    steps = max(entry["step"] for entry in result.log)
    assert steps >= 2 * (n_train // 8)  # both passes ran (one batch per transition may be partial)
