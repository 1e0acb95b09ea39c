"""The training loop on planted synthetic gradients: g_alternative = y·v + noise, so the answer is known."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from gradiend.errors import GradiendError
from gradiend.gradients.types import GradientBatch
from gradiend.lm.params import ParamSelection, ParamSpec
from gradiend.model import GradiendMeta
from gradiend.train import FitResult, TrainConfig, ValidationSet, fit


@pytest.fixture(scope="module", autouse=True)
def _warm_optimizer():
    """torch imports its compiler stack (~1.5 s) on the first optimizer step; pay it once, outside the tests."""
    p = torch.nn.Parameter(torch.zeros(1))
    p.grad = torch.zeros(1)
    torch.optim.AdamW([p], fused=True).step()


@pytest.fixture(autouse=True)
def _one_thread():
    """The tensors here are tiny: intra-op threads only add contention on a shared CI machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


LOG_KEYS = {"step", "seed", "loss", "correlation", "mean_pos", "mean_neg", "best", "phase"}


@dataclass
class Planted:
    v: torch.Tensor
    batches: list[GradientBatch]
    validation: ValidationSet
    test_x: torch.Tensor
    test_y: torch.Tensor


def planted(n: int = 1024, steps: int = 100, scale: float = 3e-2, signal: float = 1.0, seed: int = 0) -> Planted:
    """Batches alternate the classes: alternative = y·v + noise, factual = −y·v + noise (so diff ≈ −2y·v).

    v has entries ±scale (Adam's per-coordinate steps can then align w_e with v exactly). Training batches
    are averages over rows, so they are less noisy than the single validation rows.
    """
    gen = torch.Generator().manual_seed(seed)
    v = (torch.randint(0, 2, (n,), generator=gen) * 2 - 1).float() * scale

    def rows(y: torch.Tensor, noise: float) -> torch.Tensor:
        return signal * y[:, None] * v + noise * scale * torch.randn(len(y), n, generator=gen)

    ys = torch.tensor([1.0, -1.0] * (steps // 2))
    alt, fact = rows(ys, 0.1), rows(-ys, 0.1)
    batches = [GradientBatch(f, a, float(y), "A->B" if y < 0 else "B->A", 32) for f, a, y in zip(fact, alt, ys, strict=True)]
    val_y, test_y = torch.tensor([1.0, -1.0] * 64), torch.tensor([1.0, -1.0, 0.0] * 20)
    validation = ValidationSet.from_tensors(rows(val_y, 4.0), val_y, chunk_rows=50)
    return Planted(v, batches, validation, rows(test_y, 0.5), test_y)


def _fit(p: Planted, progress: bool = False, meta: GradiendMeta | None = None, **cfg) -> FitResult:
    config = TrainConfig(**{"lr": 3e-2, "eval_every": 10, **cfg})
    meta = meta or GradiendMeta(classes=("A", "B"))
    return fit(p.batches, input_dim=p.v.numel(), config=config, validation=p.validation, template_meta=meta,
               progress=progress)


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1])


def test_recovers_planted_direction_and_signs():
    p = planted()
    result = _fit(p, seeds=(2,), progress=True)
    g = result.gradiend
    assert abs(F.cosine_similarity(g.encoder_weight[0], p.v, dim=0)) > 0.99
    enc = g.encode(p.test_x)[:, 0].detach()
    assert _corr(enc, p.test_y) > 0.95
    assert enc[p.test_y > 0].mean() > 0.5 and enc[p.test_y < 0].mean() < -0.5  # positive class → +1
    assert result.converged and result.best_seed == 2
    assert g.meta.directions == {"A": 1, "B": -1} and g.meta.source == "alternative" and g.meta.target == "diff"
    assert g.strengthen_h("A") == 1.0
    # the decoder learned the target diff ≈ −2y·v: dec(+1) points along −v
    assert F.cosine_similarity(g.update_vector(1.0) - g.update_vector(0.0), -p.v, dim=0) > 0.99
    summary = g.meta.training
    assert summary["seed"] == 2 and summary["converged"] and summary["steps"] == 100
    assert summary["best_step"] == result.seeds[0].best_step > 0


def test_sign_normalisation_flips_negatively_encoding_seeds():
    p = planted()
    result = _fit(p, seeds=(0, 1, 2))
    flipped = [r for r in result.seeds if r.flipped]
    assert flipped, "the planted data should give at least one seed that first encodes class A negatively"
    for r in result.seeds:
        enc = result.models[r.seed].encode(p.test_x)[:, 0].detach()
        assert enc[p.test_y > 0].mean() > 0 > enc[p.test_y < 0].mean()
        assert r.correlation > 0.95 and r.mean_pos > 0 > r.mean_neg
        best = [e for e in result.log if e["seed"] == r.seed and e["best"]]
        assert len(best) == 1 and best[0]["step"] == r.best_step and best[0]["correlation"] == r.correlation
        assert result.models[r.seed].meta.directions == {"A": 1, "B": -1}


def test_seeds_side_by_side_equal_separate_single_seed_runs():
    p = planted(n=256, steps=40, scale=6e-2)
    together = _fit(p, seeds=(0, 1, 2))
    for seed in (0, 1, 2):
        alone = _fit(p, seeds=(seed,))
        a, b = together.models[seed].state_dict(), alone.models[seed].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
        report = next(r for r in together.seeds if r.seed == seed)
        assert (alone.seeds[0].best_step, alone.seeds[0].flipped) == (report.best_step, report.flipped)
        # validation encodes all seeds in one matrix product, so scores may differ in the last bits
        assert alone.seeds[0].correlation == pytest.approx(report.correlation, abs=1e-9)
    assert not torch.equal(together.models[0].encoder_weight, together.models[1].encoder_weight)


def test_best_checkpoint_is_returned_not_the_last():
    """Validation labels turn to noise after step 30, so the correlation collapses; the best step stays ≤ 30."""
    p = planted(n=256, steps=60, scale=6e-2)
    x, y = next(iter(p.validation.chunks()))
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    calls = []

    def chunks():
        calls.append(1)
        return [(x, y if len(calls) <= 4 else shuffled)]

    degrading = Planted(p.v, p.batches, ValidationSet(chunks), p.test_x, p.test_y)
    result = _fit(degrading, seeds=(0,))
    best = result.seeds[0].best_step
    assert 0 < best <= 30
    last = [e for e in result.log if e["step"] == 60][0]
    assert abs(last["correlation"]) < abs(result.seeds[0].correlation)
    replay = _fit(Planted(p.v, p.batches[:best], p.validation, p.test_x, p.test_y), seeds=(0,))
    a, b = result.gradiend.state_dict(), replay.gradiend.state_dict()
    assert replay.seeds[0].best_step == best and all(torch.equal(a[k], b[k]) for k in a)


def test_no_convergence_raises_when_asked():
    p = planted(n=256, steps=20, signal=0.0)  # pure noise: nothing to find
    with pytest.raises(GradiendError, match=r"no seed converged \(need \|corr\| ≥ 0.5"):
        _fit(p, seeds=(0, 1), fail_on_no_convergence=True)
    result = _fit(p, seeds=(0, 1))
    assert not result.converged and not any(r.converged for r in result.seeds)
    with pytest.raises(GradiendError, match="convergence needs a validation set"):
        fit(p.batches, input_dim=256, config=TrainConfig(fail_on_no_convergence=True), progress=False)


def test_nan_loss_is_an_error():
    p = planted(n=64, steps=6)
    p.batches[2] = GradientBatch(p.batches[2].factual, torch.full((64,), float("nan")), 1.0, "B->A", 32)
    with pytest.raises(GradiendError, match="training loss became NaN/inf by step 5"):
        _fit(p, eval_every=5)


def test_post_prune_keeps_top_decoder_dimensions_and_restricts_selection():
    p = planted(n=256, steps=20, scale=6e-2)
    sel = ParamSelection((ParamSpec("w", (16, 16), 1000),), total_params=5000)
    result = _fit(p, meta=GradiendMeta(selection=sel, classes=("A", "B")), post_prune_topk=0.1)
    full, small = result.models[0], result.gradiend
    assert small.input_dim == 26 and full.input_dim == 256
    assert torch.equal(small.selection.global_indices(), full.topk(26).sort().values + 1000)
    assert small.meta.training["input_dim"] == 256


def test_post_prune_fine_tune_refits_the_pruned_encoder_from_its_weights():
    # a weak signal spread over all 256 dimensions: keeping 26 of them shrinks the encodings towards 0
    p = planted(n=256, steps=40, scale=3e-2, signal=0.5)
    plain = _fit(p, post_prune_topk=0.1, eval_every=5)
    tuned = _fit(p, post_prune_topk=0.1, post_prune_steps=20, eval_every=5, post_prune_lr=3e-2)
    before, after = plain.gradiend.meta.training["post_prune"], tuned.gradiend.meta.training["post_prune"]
    # post_prune_steps = 0: exactly the pruned best checkpoint, scored on the restricted validation set
    full = plain.models[0]
    assert torch.equal(plain.gradiend.encoder_weight, full.encoder_weight[:, full.topk(0.1).sort().values])
    assert before["steps"] == 0 and before["correlation"] == before["correlation_after_prune"]
    assert before["best_step"] == plain.gradiend.meta.training["best_step"]
    # the fine-tune starts from the same pruned model; by default it learns at lr · 256/26
    assert after["correlation_after_prune"] == before["correlation_after_prune"]
    assert after["lr"] == 3e-2 and after["steps"] == 20
    default = _fit(p, post_prune_topk=0.1, post_prune_steps=1).gradiend.meta.training["post_prune"]
    assert default["lr"] == pytest.approx(3e-2 * 256 / 26)
    assert after["correlation"] > before["correlation"] and after["mean_pos"] > 2 * before["mean_pos"]
    assert torch.equal(tuned.gradiend.selection.global_indices() if tuned.gradiend.selection else torch.arange(1),
                       plain.gradiend.selection.global_indices() if plain.gradiend.selection else torch.arange(1))
    phases = [(e["step"], e["phase"]) for e in tuned.log if e["phase"] == "post-prune"]
    assert phases == [(40 + s, "post-prune") for s in (0, 5, 10, 15, 20)]
    best = [e for e in tuned.log if e["best"]]
    assert len(best) == 1 and best[0]["phase"] == "post-prune" and best[0]["step"] == after["best_step"]
    assert best[0]["correlation"] == pytest.approx(after["correlation"])


def test_post_prune_fine_tune_needs_batches_left_and_a_prune():
    p = planted(n=64, steps=10)
    with pytest.raises(GradiendError, match="post-prune fine-tuning got 0 of 5 batches"):
        fit(iter(p.batches), input_dim=64, config=TrainConfig(post_prune_topk=0.5, post_prune_steps=5),
            validation=p.validation, progress=False)
    with pytest.raises(GradiendError, match="needs post_prune_topk"):
        TrainConfig(post_prune_steps=5)
    with pytest.raises(GradiendError, match="post_prune_lr must be positive"):
        TrainConfig(post_prune_topk=0.5, post_prune_lr=0.0)


def test_log_schema_and_training_without_validation():
    p = planted(n=64, steps=26)
    result = fit(p.batches, input_dim=64, config=TrainConfig(lr=1e-2, eval_every=10, seeds=(0, 1)),
                 progress=False)
    assert [e["step"] for e in result.log] == [0, 0, 10, 10, 20, 20, 26, 26]
    assert all(set(e) == LOG_KEYS for e in result.log)
    assert result.log[0]["loss"] is None and all(e["loss"] > 0 for e in result.log[2:])
    assert all(e["correlation"] is None for e in result.log)
    assert [e["best"] for e in result.log] == [False] * 6 + [True] * 2  # no validation: the last step
    assert not result.converged and result.seeds[0].best_step == 26


def test_steps_cycle_reiterable_batches_and_iterators_need_care():
    p = planted(n=64, steps=10)
    result = fit(p.batches, input_dim=64, config=TrainConfig(steps=25, eval_every=100), progress=False)
    assert result.gradiend.meta.training["steps"] == 25
    epochs = fit(p.batches, input_dim=64, config=TrainConfig(epochs=3, eval_every=100), progress=False)
    assert epochs.gradiend.meta.training["steps"] == 30
    with pytest.raises(GradiendError, match="epochs > 1 needs re-iterable batches"):
        fit(iter(p.batches), input_dim=64, config=TrainConfig(epochs=2), progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(iter(p.batches), input_dim=64, config=TrainConfig(steps=15), progress=False)
    assert any("ended after 10 of 15 steps" in str(w.message) for w in caught)
    with pytest.raises(GradiendError, match="no gradient batches"):
        fit([], input_dim=64, progress=False)
    with pytest.raises(GradiendError, match=r"gradient batch has shape \(64,\), expected \(65,\)"):
        fit(p.batches, input_dim=65, progress=False)


def test_source_target_selection():
    """source = target = diff reconstructs the diff itself; a batch without the needed gradient is an error."""
    p = planted(n=64, steps=10)
    result = fit(p.batches, input_dim=64, config=TrainConfig(source="diff", target="diff"), progress=False)
    assert result.gradiend.meta.source == "diff"
    only_alt = [GradientBatch(None, b.alternative, b.label, b.transition, 32) for b in p.batches]
    with pytest.raises(ValueError, match="diff needs both"):
        fit(only_alt, input_dim=64, progress=False)
    fit(only_alt, input_dim=64, config=TrainConfig(target="alternative"), progress=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "grad"}, "source must be one of"),
        ({"seeds": ()}, "non-empty tuple of distinct ints"),
        ({"seeds": (1, 1)}, "non-empty tuple of distinct ints"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"steps": 0}, "steps must be positive"),
        ({"dtype": "int8"}, "dtype must be one of"),
        ({"post_prune_topk": 1.5}, r"fraction must be in \(0, 1\]"),
        ({"activation_encoder": "swish"}, "unknown activation"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(GradiendError, match=message):
        TrainConfig(**kwargs)


def test_validation_needs_both_classes():
    p = planted(n=64, steps=4)
    only_pos = ValidationSet.from_tensors(torch.randn(4, 64), torch.ones(4))
    with pytest.raises(GradiendError, match="needs rows of both classes"):
        fit(p.batches, input_dim=64, validation=only_pos, progress=False)


def test_bfloat16_validation_set_scores_like_float32():
    """A bfloat16 validation matrix is upcast chunk by chunk; the scores match float32 to ~1e-3."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([1.0, -1.0] * 20)
    x = labels[:, None] * torch.randn(64, generator=gen) + 0.5 * torch.randn(40, 64, generator=gen)
    full = fit([GradientBatch(x[0], -x[0], 1.0, "A->B", 1)] * 5, input_dim=64, config=TrainConfig(lr=1e-2),
               validation=ValidationSet.from_tensors(x, labels), progress=False)
    half = fit([GradientBatch(x[0], -x[0], 1.0, "A->B", 1)] * 5, input_dim=64, config=TrainConfig(lr=1e-2),
               validation=ValidationSet.from_tensors(x.bfloat16(), labels, chunk_rows=7), progress=False)
    for a, b in zip(full.log, half.log, strict=True):
        assert b["correlation"] == pytest.approx(a["correlation"], abs=5e-3)

