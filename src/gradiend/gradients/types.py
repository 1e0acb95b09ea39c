"""The value passed from the gradient stage to the training loop (which knows nothing about the LM)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

GradientKind = Literal["factual", "alternative", "diff"]


@dataclass(frozen=True)
class GradientBatch:
    """Gradients of the mean loss over ``n_rows`` rows of one transition (factual class → alternative class).

    ``factual``/``alternative`` are 1-D tensors over the GRADIEND input dimensions; one may be None when the
    configured source/target do not need it. ``label`` is +1/−1 for the class of the source token (see
    docs/architecture.md), 0 for neutral rows.
    """

    factual: torch.Tensor | None
    alternative: torch.Tensor | None
    label: float
    transition: str
    n_rows: int

    def get(self, kind: GradientKind) -> torch.Tensor:
        """The requested gradient; ``diff`` = factual − alternative."""
        if kind == "diff":
            if self.factual is None or self.alternative is None:
                raise ValueError("diff needs both the factual and the alternative gradient")
            return self.factual - self.alternative
        value = self.factual if kind == "factual" else self.alternative
        if value is None:
            raise ValueError(f"this batch carries no {kind} gradient")
        return value
