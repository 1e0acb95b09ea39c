"""One forward pass over many token sequences: padded or packed, with the LM head only where it is read.

* :func:`pad` puts one sequence per row, padded to the longest (an attention mask marks the real tokens).
* :func:`pack` puts several sequences per row, back to back, with ``position_ids`` restarting at 0 for each and
  no attention mask: transformers (≥ 5) then builds a block-diagonal causal mask from the position resets, so
  the result equals the padded one while the forward runs on about Σ len tokens instead of rows × longest.
  Whether a model reads packed rows exactly like padded ones is checked numerically, once per model and
  attention implementation (BERT attends across the whole row and fails the check, so masked LMs are padded).
* :func:`logits_at` runs the backbone and applies the LM head only at the requested positions where the model
  splits into ``base_model`` + one head module (BERT: ``bert`` + ``cls``; GPT-2/Llama: the backbone +
  ``lm_head``), also verified numerically once per model; otherwise the full forward.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gradiend.errors import GradiendError


@dataclass(frozen=True)
class Batch:
    """Token ids of one forward and where each input sequence sits in it (``row``, start ``offset``).

    Padded: one sequence per row, ``attention_mask`` marks the real tokens. Packed: several sequences per row,
    back to back, ``position_ids`` restarting at 0 for each, and no attention mask (the model derives the
    block-diagonal causal mask from the position resets).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    position_ids: torch.Tensor | None
    row: list[int]
    offset: list[int]


def pad(seqs: Sequence[tuple[int, ...]], pad_id: int, side: str, device: torch.device) -> Batch:
    """One sequence per row, padded to the longest on ``side`` ("left" or "right")."""
    if side not in ("left", "right"):
        raise GradiendError(f"padding side must be 'left' or 'right', got {side!r}")
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    offsets = []
    for i, s in enumerate(seqs):
        start = width - len(s) if side == "left" else 0
        ids[i, start : start + len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, start : start + len(s)] = 1
        offsets.append(start)
    mask = mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions
    return Batch(ids.to(device), mask, positions, list(range(len(seqs))), offsets)


PACK_WIDTH = 256  # tokens per packed row: attention work grows with the row width, padding waste shrinks
PACK_MIN_WASTE = 0.2  # pack only when padding to the longest would add more than this share of tokens


def padding_waste(seqs: Sequence[tuple[int, ...]]) -> float:
    """Extra tokens padding to the longest would compute, as a share of the real ones.

    Packing saves that matmul work but widens the rows, so attention (per token ∝ row width) costs more; on
    batches of nearly equal lengths padding is the cheaper layout.
    """
    total = sum(len(s) for s in seqs)
    return len(seqs) * max(len(s) for s in seqs) / total - 1 if total else 0.0


def pack(seqs: Sequence[tuple[int, ...]], pad_id: int, device: torch.device, width: int = PACK_WIDTH) -> Batch:
    """Sequences packed into ⌈Σ len / ``width``⌉ rows of about equal length (longest first, each into the
    row with the fewest tokens so far).

    A forward then computes about Σ len(seq) tokens instead of rows × longest: causal targets have prefixes
    of very different lengths (a sentence-initial pronoun reads one BOS token), so padding to the longest
    wastes half or more of a batch. Each row's tail is padded with one-token segments at position 0.
    """
    fill = [0] * min(len(seqs), -(-sum(len(s) for s in seqs) // width))
    row, offset = [0] * len(seqs), [0] * len(seqs)
    for i in sorted(range(len(seqs)), key=lambda i: -len(seqs[i])):
        r = min(range(len(fill)), key=fill.__getitem__)
        row[i], offset[i] = r, fill[r]
        fill[r] += len(seqs[i])
    length = max(fill)
    ids = torch.full((len(fill), length), pad_id, dtype=torch.long)
    positions = torch.arange(length).repeat(len(fill), 1)
    for i, s in enumerate(seqs):
        ids[row[i], offset[i] : offset[i] + len(s)] = torch.tensor(s, dtype=torch.long)
        positions[row[i], offset[i] : offset[i] + len(s)] = torch.arange(len(s))
    for r, used in enumerate(fill):  # pads at position 0, each a segment of its own (as with left padding)
        positions[r, used:] = 0
    return Batch(ids.to(device), None, positions.to(device), row, offset)


@dataclass
class Split:
    """How to run a model: backbone + head on gathered positions, or (head=None) the full forward.

    ``packing``: per attention implementation, whether the model reads packed sequences (restarting
    ``position_ids``, no attention mask) exactly as the same sequences padded, verified numerically on first
    use (transformers ≥ 5 derives the block-diagonal mask from the position resets).
    """

    backbone: Any
    head: Any | None
    kwargs: frozenset[str]
    packing: dict[str | None, bool] = field(default_factory=dict)

    def packs(self, model: Any) -> bool:
        impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
        if impl not in self.packing:
            self.packing[impl] = "position_ids" in self.kwargs and _packing_matches(model, self)
        return self.packing[impl]


_SPLITS: weakref.WeakKeyDictionary[Any, Split] = weakref.WeakKeyDictionary()


def model_split(model: Any) -> Split:
    """How ``model`` is run (found and verified on first use, then cached per model object)."""
    split = _SPLITS.get(model)
    if split is None:
        split = _SPLITS[model] = _find_split(model)
    return split


def logits_at(model: Any, batch: Batch, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Vocabulary logits at the (row, col) positions of ``batch``, shape [len(rows), vocab]."""
    split = model_split(model)
    kwargs = _forward_kwargs(split.kwargs, batch)
    if split.head is None:
        return model(input_ids=batch.input_ids, **kwargs).logits[rows, cols]
    hidden = split.backbone(input_ids=batch.input_ids, **kwargs)[0]
    return split.head(hidden[rows, cols])


def _forward_kwargs(accepted: frozenset[str], batch: Batch) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"attention_mask": batch.attention_mask}
    if "position_ids" in accepted and batch.position_ids is not None:
        kwargs["position_ids"] = batch.position_ids
    if "use_cache" in accepted:
        kwargs["use_cache"] = False
    return kwargs


def _find_split(model: Any) -> Split:
    """Backbone (``model.base_model``) + the single remaining child as head, if that reproduces the logits."""
    full = Split(model, None, _accepted(model))
    backbone = getattr(model, "base_model", model)
    heads = [m for _, m in model.named_children() if m is not backbone]
    if backbone is model or len(heads) != 1:
        return full
    split = Split(backbone, heads[0], _accepted(backbone))
    return split if _split_matches(model, split, full) else full


def _accepted(module: Any) -> frozenset[str]:
    return frozenset(inspect.signature(module.forward).parameters)


def _probe(model: Any) -> list[tuple[int, ...]]:
    """Two short token sequences inside the model's vocabulary, for the numerical checks."""
    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 100) or 100)
    return [tuple(range(5, 12)), tuple(range(min(20, vocab - 4), min(20, vocab - 4) + 4))]


@torch.no_grad()
def _split_matches(model: Any, split: Split, full: Split) -> bool:
    """Numerical check that head(backbone(x)) equals the model's own logits on a short input."""
    device = next(model.parameters()).device
    batch = pad(_probe(model)[:1], 0, "right", device)
    expected = model(input_ids=batch.input_ids, **_forward_kwargs(full.kwargs, batch)).logits[0]
    got = split.head(split.backbone(input_ids=batch.input_ids, **_forward_kwargs(split.kwargs, batch))[0][0])
    return got.shape == expected.shape and _close(got, expected)


@torch.no_grad()
def _packing_matches(model: Any, split: Split) -> bool:
    """Whether two sequences packed into one row give the hidden states they give padded (no cross-talk)."""
    device = next(model.parameters()).device
    seqs = _probe(model)
    padded = pad(seqs, 0, "right", device)
    packed = pack(seqs, 0, device, width=sum(len(s) for s in seqs))  # both in one row
    try:
        a = split.backbone(input_ids=padded.input_ids, **_forward_kwargs(split.kwargs, padded))[0]
        b = split.backbone(input_ids=packed.input_ids, **_forward_kwargs(split.kwargs, packed))[0]
    except (TypeError, ValueError, RuntimeError):
        return False
    for i, s in enumerate(seqs):
        x = a[padded.row[i], padded.offset[i] : padded.offset[i] + len(s)]
        y = b[packed.row[i], packed.offset[i] : packed.offset[i] + len(s)]
        if x.shape != y.shape or not _close(y, x):
            return False
    return True


def _close(got: torch.Tensor, expected: torch.Tensor) -> bool:
    tol = 1e-4 * max(1.0, float(expected.abs().max()))
    return bool(torch.allclose(got.float(), expected.float(), atol=tol, rtol=1e-4))
