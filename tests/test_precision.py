"""Precision: a bfloat16/float16 base model gives float32 gradients that agree with float32's; a bfloat16 GRADIEND
trains like a float32 one.

Stated tolerances (measured on the three tiny models, 3 rows, all backbone parameters): relative L2 error of the
diff gradient ≤ 3e-2 for bfloat16 (measured 0.6-0.8 %) and ≤ 5e-3 for float16 (measured 0.07-0.09 %), cosine
similarity ≥ 0.999; the gradient is flattened into a float32 vector either way (float32 accumulation).
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from gradiend.gradients.compute import GradientComputer
from gradiend.lm.load import from_model
from gradiend.stages import select

ROWS = pd.DataFrame({
    "masked": ["[MASK] went home after the game.", "Then [MASK] said no to the offer.", "Yesterday [MASK] were late."],
    "factual": ["he", "they", "they"],
    "alternative": ["they", "he", "he"],
})
TOLERANCE = {torch.bfloat16: 3e-2, torch.float16: 5e-3}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama"])
def test_low_precision_base_model_gradients_agree_with_float32(make_tiny, kind, dtype):
    full = make_tiny(kind)
    reference = GradientComputer(full, select(full)).mean_gradient(ROWS, "diff")
    low = make_tiny(kind)
    low = from_model(low.model.to(dtype), low.tokenizer, low.name)
    grad = GradientComputer(low, select(low)).mean_gradient(ROWS, "diff")
    assert grad.dtype == torch.float32 and low.model.dtype == dtype
    assert float((grad - reference).norm() / reference.norm()) <= TOLERANCE[dtype]
    assert float(torch.nn.functional.cosine_similarity(grad, reference, dim=0)) >= 0.999
    top = set(torch.topk(reference.abs(), 1000).indices.tolist())
    assert len(top & set(torch.topk(grad.abs(), 1000).indices.tolist())) >= 900  # pre-pruning keeps ≥ 90 % the same


def test_a_bfloat16_gradiend_trains_like_a_float32_one(tiny_gpt2, tmp_path):
    from gradiend.data import DataConfig, Feature, create_data
    from gradiend.model import Gradiend
    from gradiend.stages import GradientConfig, train_gradiend
    from gradiend.train import TrainConfig

    feature = Feature.from_mapping({"3SG": ["he", "she"], "3PL": ["they"]})
    data = create_data("offline:wiki-en", feature, DataConfig(max_rows_per_class=20, neutral_size=5, seed=0),
                       max_documents=1500)
    config = GradientConfig(rows_per_gradient=4, validation_rows=8)
    logs = {}
    for dtype in ("float32", "bfloat16"):
        result = train_gradiend(tiny_gpt2, data, select(tiny_gpt2, layers=[1]), config,
                                TrainConfig(lr=1e-3, steps=6, eval_every=3, dtype=dtype), progress=False)
        logs[dtype] = result.log
        assert result.gradiend.dtype == getattr(torch, dtype)
    assert Gradiend.from_pretrained(result.gradiend.save_pretrained(tmp_path / "g")).dtype == torch.bfloat16
    final = {k: [e for e in v if e["step"] == 6][0] for k, v in logs.items()}
    assert final["bfloat16"]["loss"] == pytest.approx(final["float32"]["loss"], rel=0.05)
    assert final["bfloat16"]["correlation"] == pytest.approx(final["float32"]["correlation"], abs=0.05)
    assert abs(final["float32"]["correlation"]) > 0.5  # it learned something to agree on
