"""Validation encodings during training: stored per-row gradients or forward-mode projections, and the rule."""

from __future__ import annotations

import pytest

from gradiend.errors import GradiendError
from gradiend.stages import STORED_OVER_FORWARD_COST, GradientConfig, validation_storage
from gradiend.train import TrainConfig


def test_auto_storage_follows_memory_and_the_number_of_evaluations():
    p1 = TrainConfig(steps=200, eval_every=20, post_prune_topk=0.01, post_prune_steps=50)  # 11 + 4 evaluations
    assert validation_storage(100, 437_000, GradientConfig(), p1) == "stored"
    reduced_p2 = TrainConfig(steps=10, eval_every=20, post_prune_topk=0.01, post_prune_steps=50)  # 2 + 4
    assert validation_storage(40, 13_450_000, GradientConfig(), reduced_p2) == "forward"
    too_big = validation_storage(200, 134_515_008, GradientConfig(), TrainConfig(epochs=3))  # 100 GiB
    assert too_big == "forward"
    many = TrainConfig(steps=int(STORED_OVER_FORWARD_COST) * 20, eval_every=20)
    assert validation_storage(10, 1000, GradientConfig(), many) == "stored"
    for fixed in ("stored", "forward"):
        assert validation_storage(200, 134_515_008, GradientConfig(validation_storage=fixed), many) == fixed
    with pytest.raises(GradiendError, match="validation_storage must be one of"):
        GradientConfig(validation_storage="disk")


@pytest.mark.parametrize("post_prune_steps", [0, 3])
def test_forward_mode_validation_gives_the_stored_gradients_correlations(tiny_gpt2, post_prune_steps):
    from gradiend.data import DataConfig, Feature, create_data
    from gradiend.stages import select, train_gradiend

    feature = Feature.from_mapping({"3SG": ["he", "she"], "3PL": ["they"]})
    data = create_data("offline:wiki-en", feature, DataConfig(max_rows_per_class=20, neutral_size=5, seed=0),
                       max_documents=1500)
    train = TrainConfig(lr=1e-3, steps=4, eval_every=2, seeds=(0, 1), post_prune_topk=0.5,
                        post_prune_steps=post_prune_steps)
    logs, pruned = {}, {}
    for storage in ("stored", "forward"):
        config = GradientConfig(rows_per_gradient=4, validation_rows=6, validation_storage=storage)
        result = train_gradiend(tiny_gpt2, data, select(tiny_gpt2, layers=[1]), config, train, progress=False)
        logs[storage], pruned[storage] = result.log, result.gradiend.meta.training["post_prune"]
    assert len(logs["stored"]) == len(logs["forward"]) >= 2 * 3
    for key in ("correlation_after_prune", "correlation"):  # the pruned model, scored on the kept dimensions
        assert pruned["forward"][key] == pytest.approx(pruned["stored"][key], abs=1e-3)
    for a, b in zip(logs["stored"], logs["forward"], strict=True):
        assert (a["step"], a["seed"], a["best"]) == (b["step"], b["seed"], b["best"])
        assert b["correlation"] == pytest.approx(a["correlation"], abs=1e-3)
        assert b["mean_pos"] == pytest.approx(a["mean_pos"], rel=1e-3, abs=1e-6)
