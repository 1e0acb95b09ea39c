"""Gradient stage: factual/alternative gradients of the base model, training batches, pre-pruning."""

from gradiend.gradients.batches import iter_training_batches, validation_gradients
from gradiend.gradients.compute import GradientComputer
from gradiend.gradients.prune import pre_prune
from gradiend.gradients.types import GradientBatch, GradientKind

__all__ = [
    "GradientBatch",
    "GradientComputer",
    "GradientKind",
    "iter_training_batches",
    "pre_prune",
    "validation_gradients",
]
