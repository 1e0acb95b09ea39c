"""The auxiliary MLM head of decoder-only models: it trains, it reads the right context, gradients reach only the
selected base parameters, and it round-trips through safetensors."""

from __future__ import annotations

import dataclasses
import random

import pandas as pd
import pytest
import torch

from gradiend.config import ModelConfig, _to_plain
from gradiend.errors import GradiendError
from gradiend.gradients import GradientComputer
from gradiend.gradients.projections import directional_derivatives
from gradiend.lm.mlm_head import (
    HeadConfig,
    MaskedHeadObjective,
    MLMHead,
    load_head,
    save_head,
    train_head,
    with_head,
)
from gradiend.lm.objectives import CausalLMObjective, gradient_objective
from gradiend.lm.params import select_parameters

PAIRS = [("red", "apple"), ("green", "pear"), ("yellow", "banana"), ("blue", "berry")]
FAST = HeadConfig(steps=60, batch_size=32, lr=1e-2, max_texts=300)
ROWS = pd.DataFrame({
    "masked": ["I like the [MASK] apple very much", "[MASK] went home.", "She said that [MASK] was tired."],
    "factual": ["red", "They", "he"], "alternative": ["green", "He", "they"],
})
LAYER = {"llama": "model.layers.1.*", "gpt2": "transformer.h.1.*"}


def planted_texts(n: int = 300) -> list[str]:
    """The colour word is predictable from its right neighbour only (what the head must learn to read)."""
    rng = random.Random(0)
    return [f"I like the {c} {f} very much" for c, f in (rng.choice(PAIRS) for _ in range(n))]


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def trained(request, make_tiny):
    lm = make_tiny(request.param)
    head, metrics = train_head(lm, planted_texts(), FAST, progress=False)
    return request.param, lm, head, metrics


def test_head_loss_falls_on_planted_task(trained):
    _, _, head, m = trained
    assert m["train_loss_last"] < m["train_loss_first"] - 2.0
    assert m["val_loss"] < m["val_loss_before"] - 2.0
    assert m["n_train"] + m["n_val"] == 300 and m["config"]["pool"] == 3
    assert 0 < m["best_step"] <= FAST.steps


def test_head_keeps_the_step_with_the_lowest_validation_loss(make_tiny):
    from gradiend.lm.mlm_head import MLMHead, _fit

    lm = make_tiny("llama")
    weight = lm.model.get_output_embeddings().weight.detach()
    torch.manual_seed(0)
    x = torch.randn(56, weight.shape[1])
    noise = torch.randint(weight.shape[0], (16,))  # training labels the head can only memorise
    val_y = (x[16:] @ weight.T).argmax(-1)  # what the initial head (the identity readout) already predicts
    head = MLMHead(weight.shape[1], 3, 0)
    config = HeadConfig(steps=150, batch_size=16, lr=1e-2, eval_every=10)
    losses, best = _fit(head, lm.model, (x[:16], noise), (x[16:], val_y), config, progress=False)
    assert losses[-1] < losses[0] - 1.0  # it did fit the noise …
    assert best == 0 and not head.down.weight.any()  # … and the overfitted head was not kept


def test_masked_head_reads_the_right_context(trained):
    _, lm, head, _ = trained
    obj = MaskedHeadObjective(lm, head)
    rows = [{"masked": f"I like the [MASK] {fruit} very much", "factual": "red", "alternative": "green"}
            for fruit in ("apple", "pear")]
    factual, _ = obj.row_losses(lm.model, rows)
    assert abs(float((factual[0] - factual[1]).detach())) > 1e-3  # the word after the mask changes the prediction
    causal, _ = CausalLMObjective(lm).row_losses(lm.model, rows)
    assert torch.allclose(causal[0], causal[1])  # next-token prediction cannot see it


def test_masked_head_gradients_flow_only_into_selected_params(trained):
    kind, lm, head, _ = trained
    selection = select_parameters(lm.model, patterns=[LAYER[kind]])
    computer = GradientComputer(dataclasses.replace(lm, mlm_head=head), selection)
    assert isinstance(computer.objective, MaskedHeadObjective)
    factual, alternative = computer.objective.losses(lm.model, ROWS)
    (factual - alternative).backward()
    chosen = set(selection.names)
    try:
        for name, p in lm.model.named_parameters():
            if name in chosen:
                assert p.grad is not None and p.grad.abs().sum() > 0, name
            else:
                assert p.grad is None, name
        assert all(p.grad is None and not p.requires_grad for p in head.parameters())
    finally:
        lm.model.zero_grad(set_to_none=True)


def test_forward_mode_projection_matches_gradients_through_the_head(trained):
    kind, lm, head, _ = trained
    selection = select_parameters(lm.model, patterns=[LAYER[kind]])
    computer = GradientComputer(dataclasses.replace(lm, mlm_head=head), selection)
    direction = torch.randn(selection.input_dim, generator=torch.Generator().manual_seed(0))
    expected = torch.stack([g @ direction for g in computer.row_gradients(ROWS, "diff")])
    got = directional_derivatives(lm.model, computer.objective, selection, ROWS, "diff", direction)
    assert torch.allclose(got, expected, rtol=2e-3, atol=1e-4 * float(expected.abs().max()))


def test_save_load_round_trip(trained, tmp_path):
    _, lm, head, metrics = trained
    save_head(head, tmp_path / "head", metrics, lm)
    loaded = load_head(tmp_path / "head", lm)
    for (name, a), b in zip(head.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert (loaded.pool, loaded.mask_id) == (head.pool, head.mask_id)
    with torch.no_grad():
        a = MaskedHeadObjective(lm, head).row_losses(lm.model, ROWS)[0]
        b = gradient_objective(with_head(lm, tmp_path / "head")).row_losses(lm.model, ROWS)[0]
    assert torch.allclose(a, b)


def test_head_of_another_model_is_refused(trained, tmp_path, tiny_bert):
    _, lm, head, metrics = trained
    wrong = MLMHead(16, 3, head.mask_id)
    save_head(wrong, tmp_path / "small", metrics, lm)
    with pytest.raises(GradiendError, match="hidden 16.*train one for this model"):
        load_head(tmp_path / "small", lm)
    with pytest.raises(GradiendError, match="for decoder-only.*masked LM"):
        train_head(tiny_bert, planted_texts(10), FAST)
    with pytest.raises(GradiendError, match="not an MLM head directory.*gradiend head train"):
        load_head(tmp_path, lm)


def test_masked_head_objective_needs_a_head_and_is_fingerprinted_only_when_used():
    from gradiend.config import DataSection, ExperimentConfig, _check_cross_sections

    with pytest.raises(GradiendError, match='objective = "masked-head" needs head = DIR'):
        _check_cross_sections(ExperimentConfig(ModelConfig("m", objective="masked-head"),
                                               DataSection(texts=("a",), classes={"a": ("x",), "b": ("y",)})))
    assert "objective" not in _to_plain(ModelConfig("m"), for_fingerprint=True)
    assert _to_plain(ModelConfig("m", objective="masked-head", head="h"), for_fingerprint=True)["head"] == "h"


def test_cli_head_train_then_a_run_reads_gradients_through_it(tmp_path, make_tiny):
    from click.testing import CliRunner

    from gradiend.cli import cli
    from gradiend.config import load_config
    from gradiend.pipeline import Run, run

    lm = make_tiny("llama", seed=1)
    lm.model.save_pretrained(tmp_path / "model")
    lm.tokenizer.save_pretrained(tmp_path / "model")
    (tmp_path / "neutral.txt").write_text("\n".join(planted_texts(60)) + "\n")
    out = CliRunner().invoke(cli, ["head", "train", "--model", str(tmp_path / "model"), "--texts",
                                   str(tmp_path / "neutral.txt"), "--out", str(tmp_path / "head"), "--steps", "5"])
    assert out.exit_code == 0, out.output
    assert "head saved to" in out.output and (tmp_path / "head" / "head.safetensors").is_file()
    cfg = tmp_path / "run.toml"
    cfg.write_text(f"""
name = "headrun"
output_dir = "{tmp_path / 'runs'}"
[model]
spec = "{tmp_path / 'model'}"
head = "{tmp_path / 'head'}"
objective = "masked-head"
[data]
texts = "offline:wiki-en"
max_documents = 1500
[data.classes]
3SG = ["he", "she"]
3PL = ["they"]
[data.options]
seed = 0
max_rows_per_class = 30
neutral_size = 10
[gradients]
rows_per_gradient = 4
validation_rows = 8
[train]
lr = 1e-3
steps = 2
eval_every = 1
""")
    config = load_config(cfg)
    result = run(config, until="train", progress=False)
    assert (result.run_dir / "gradiend" / "model.safetensors").is_file()
    pipeline = Run(config)
    assert pipeline.lm.mlm_head is not None
    assert isinstance(GradientComputer(pipeline.lm, select_parameters(pipeline.lm.model)).objective,
                      MaskedHeadObjective)
