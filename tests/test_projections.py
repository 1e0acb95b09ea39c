"""Forward-mode directional derivatives equal w·(per-row autograd gradient), tied heads and kept positions included."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from gradiend.gradients import GradientComputer
from gradiend.gradients.projections import directional_derivatives
from gradiend.lm.params import select_parameters

ROWS = pd.DataFrame({
    "masked": ["The man said that [MASK] was tired today.", "Yesterday [MASK] went to the market.",
               "[MASK] arrived late.", "After the long meeting, [MASK] all went home to sleep."],
    "factual": ["he", "they", "He", "they"], "factual_class": ["a", "b", "a", "b"],
    "alternative": ["they", "he", "They", "he"], "alternative_class": ["b", "a", "b", "a"],
})


@pytest.mark.parametrize("kind", ["factual", "alternative", "diff"])
def test_projection_equals_per_row_gradient_dot_direction(tiny_any, kind):
    model = tiny_any.model
    selection = select_parameters(model)  # includes the (tied) input embedding
    selection = selection.restrict(torch.arange(0, selection.input_dim, 3))  # kept positions
    computer = GradientComputer(tiny_any, selection)
    direction = torch.randn(selection.input_dim, generator=torch.Generator().manual_seed(0))
    expected = torch.stack([g @ direction for g in computer.row_gradients(ROWS, kind)])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    got = directional_derivatives(model, computer.objective, selection, ROWS, kind, direction, chunk=3)
    assert torch.allclose(got, expected, rtol=2e-3, atol=1e-4 * float(expected.abs().max()))
    for n, p in model.named_parameters():  # parameters are the originals again, unchanged
        assert isinstance(p, torch.nn.Parameter) and torch.equal(p, before[n]), n
    assert model.config._attn_implementation == "sdpa"
