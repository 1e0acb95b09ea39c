"""Gradients of the base model's LM loss over the selected parameters: the GRADIEND's input vectors.

One forward pass per batch of rows serves both the factual and the alternative loss (see
:mod:`gradiend.lm.objectives`); each gradient is one ``torch.autograd.grad`` over the selected parameters only,
flattened into the selection's input space (kept positions only, float32).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import torch

from gradiend.errors import GradiendError
from gradiend.gradients.types import GradientKind
from gradiend.lm.load import LoadedModel
from gradiend.lm.objectives import Objective, PairRow, as_pair_rows, gradient_objective
from gradiend.lm.params import ParamSelection, set_requires_grad

log = logging.getLogger(__name__)

BATCHED_BACKWARD_MIN_PARAMS = 20_000_000  # selected parameter entries from which one batched backward pays off

KINDS: tuple[GradientKind, ...] = ("factual", "alternative", "diff")


def check_kind(kind: str) -> GradientKind:
    """``kind`` if it is one of factual / alternative / diff, else a GradiendError."""
    if kind not in KINDS:
        raise GradiendError(f"gradient kind must be one of {list(KINDS)}, got {kind!r}")
    return kind  # type: ignore[return-value]


class GradientComputer:
    """Factual / alternative / diff gradients of ``lm`` over ``selection``, from shared forward passes.

    The base model is kept in eval mode (dropout off, so gradients are deterministic) and only the selected
    parameters carry ``requires_grad``, so autograd neither builds graph nor computes gradients for the rest.
    """

    def __init__(
        self, lm: LoadedModel, selection: ParamSelection, objective: Objective | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if not selection.specs or selection.input_dim == 0:
            raise GradiendError("parameter selection is empty: select at least one base-model parameter")
        self.lm = lm
        self.selection = selection
        self.objective = objective or gradient_objective(lm)
        self.device = device  # where the flat vectors are assembled (the GRADIEND's); None: the first parameter's
        self.params = selection.parameters(lm.model)
        # may several losses share one batched backward? None: try it; False: one backward per loss
        large = sum(p.numel() for p in self.params) >= BATCHED_BACKWARD_MIN_PARAMS
        self._batched: bool | None = None if large else False
        lm.model.eval()
        set_requires_grad(lm.model, selection)

    @property
    def input_dim(self) -> int:
        """Length of every gradient vector (the selection's kept dimensions)."""
        return self.selection.input_dim

    # --- batch gradients -----------------------------------------------------------------------

    def pair_gradients(
        self, rows: Any, want: Collection[str] = ("factual", "alternative")
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Gradients of the mean factual and the mean alternative loss over ``rows`` (one forward).

        ``want`` names which of the two to compute; the other is returned as None.
        """
        pair_rows = self._rows(rows)
        factual, alternative = self._losses(pair_rows)
        losses = {"factual": factual.mean(), "alternative": alternative.mean()}
        wanted = [k for k in ("factual", "alternative") if k in want]
        if not wanted:
            raise GradiendError(f"want must name factual and/or alternative, got {list(want)}")
        grads = dict(zip(wanted, self._grads([losses[k] for k in wanted]), strict=True))
        for kind, grad in grads.items():
            self._check(grad, kind, pair_rows)
        return grads.get("factual"), grads.get("alternative")

    def mean_gradient(self, rows: Any, kind: str) -> torch.Tensor:
        """Gradient of the mean ``kind`` loss over ``rows`` (diff: of mean factual − mean alternative)."""
        kind = check_kind(kind)
        pair_rows = self._rows(rows)
        factual, alternative = self._losses(pair_rows)
        grad = self._grad(_kind_loss(kind, factual, alternative).mean(), retain=False)
        self._check(grad, kind, pair_rows)
        return grad

    # --- per-row gradients ---------------------------------------------------------------------

    def row_gradients(self, rows: Any, kind: str, chunk: int = 1) -> Iterator[torch.Tensor]:
        """One gradient per row, in row order.

        ``chunk`` rows share a forward pass and one backward batched over their losses; diff rows
        backpropagate ``L_factual − L_alternative``. On SmolLM2 and SPLADE-tiny chunks > 1 were no faster per
        row (the weight-gradient writes dominate), so the default is one row at a time.
        """
        kind = check_kind(kind)
        if chunk < 1:
            raise GradiendError(f"chunk must be ≥ 1, got {chunk}")
        pair_rows = self._rows(rows)
        for start in range(0, len(pair_rows), chunk):
            part = pair_rows[start : start + chunk]
            per_row = _kind_loss(kind, *self._losses(part, first_index=start))
            for i, grad in enumerate(self._grads(list(per_row))):
                self._check(grad, kind, part[i : i + 1], first_index=start + i)
                yield grad

    # --- internals -----------------------------------------------------------------------------

    def _rows(self, rows: Any) -> list[PairRow]:
        pair_rows = as_pair_rows(rows)
        if not pair_rows:
            raise GradiendError("no rows to compute gradients for")
        model = self.lm.model
        if model.training:
            raise GradiendError("the base model is in training mode (dropout on); call model.eval() first")
        set_requires_grad(model, self.selection)  # another computer may have changed the flags
        return pair_rows

    def _losses(self, rows: Sequence[PairRow], first_index: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        factual, alternative = self.objective.row_losses(self.lm.model, rows)
        if not (torch.isfinite(factual).all() and torch.isfinite(alternative).all()):
            # packed sequences share attention, so a NaN can spread within a row: redo unpacked to name the culprit
            factual, alternative = self.objective.row_losses(self.lm.model, rows, pack=False)
        for kind, values in (("factual", factual), ("alternative", alternative)):
            bad = (~torch.isfinite(values)).nonzero()
            if bad.numel():
                i = int(bad[0, 0])
                raise GradiendError(
                    f"non-finite {kind} loss for row {first_index + i} ({rows[i].masked!r}): the base model "
                    "produces NaN/inf (broken or overflowing weights?)"
                )
        return factual, alternative

    def _grads(self, losses: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The gradient of each scalar in ``losses`` (all from one graph), flattened.

        For selections of at least :data:`BATCHED_BACKWARD_MIN_PARAMS` parameters, several losses go through
        ONE backward pass batched over them (``is_grads_batched``): the backward matmuls see all of them at
        once, which is faster than one retained backward per loss (SmolLM2, factual + alternative of 16 rows:
        3.6 → 3.4 s). For small models vmap's per-op overhead wins (SPLADE-tiny: 0.063 → 0.070 s), so they
        backpropagate one loss at a time. Where a model's backward cannot be batched (an op without a vmap
        rule raises), it falls back to one backward per loss, and remembers that. Both give the same values.
        """
        if len(losses) > 1 and self._batched is not False:
            stacked = torch.stack(list(losses))
            seeds = torch.eye(len(losses), dtype=stacked.dtype, device=stacked.device)
            try:
                grads = torch.autograd.grad(stacked, self.params, grad_outputs=seeds, is_grads_batched=True,
                                            retain_graph=self._batched is None, allow_unused=True,
                                            materialize_grads=True)
            except RuntimeError as exc:
                log.info("batched backward unavailable for this model (%s); one backward per loss", exc)
                self._batched = False
            else:
                self._batched = True
                return [self._flatten([g[i] for g in grads]) for i in range(len(losses))]
        return [self._grad(loss, retain=i + 1 < len(losses)) for i, loss in enumerate(losses)]

    def _grad(self, loss: torch.Tensor, retain: bool) -> torch.Tensor:
        grads = torch.autograd.grad(loss, self.params, retain_graph=retain, allow_unused=True, materialize_grads=True)
        return self._flatten(grads)

    def _flatten(self, grads: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-shard gradients as one float32 vector on the computer's device (float32 even for a bf16 model)."""
        return self.selection.flatten(grads, dtype=torch.float32, device=self.device)

    def _check(self, grad: torch.Tensor, kind: str, rows: Sequence[PairRow], first_index: int = 0) -> None:
        # one pass over the vector: the norm is NaN/inf if an entry is, and 0 only if all are
        norm = float(torch.linalg.vector_norm(grad))
        if not math.isfinite(norm) and not bool(torch.isfinite(grad).all()):
            culprit = first_index + self._first_nonfinite_row(rows, kind) if len(rows) > 1 else first_index
            raise GradiendError(
                f"non-finite {kind} gradient for row {culprit} ({rows[culprit - first_index].masked!r}); "
                "the base model overflows on it: drop the row or use float32 weights"
            )
        if norm == 0.0:
            row = rows[0]
            raise GradiendError(
                f"the {kind} gradient over {len(rows)} row(s) (first: row {first_index}, {row.masked!r}, "
                f"{row.factual!r} → {row.alternative!r}) is all zero: the selected parameters carry no signal for "
                "these targets; check the parameter selection and that factual and alternative words differ"
            )

    def _first_nonfinite_row(self, rows: Sequence[PairRow], kind: str) -> int:
        """Error path only: recompute row by row to name the row whose gradient is NaN/inf."""
        for i, row in enumerate(rows):
            factual, alternative = self._losses([row])
            if not bool(torch.isfinite(self._grad(_kind_loss(kind, factual, alternative)[0], retain=False)).all()):
                return i
        return 0


def _kind_loss(kind: str, factual: torch.Tensor, alternative: torch.Tensor) -> torch.Tensor:
    """Per-row loss whose gradient is the requested kind (diff = factual − alternative, by linearity)."""
    if kind == "factual":
        return factual
    if kind == "alternative":
        return alternative
    return factual - alternative
