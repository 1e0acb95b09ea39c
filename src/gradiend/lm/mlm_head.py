"""Auxiliary masked-LM head for decoder-only models: predict a masked word from the context on both sides.

A causal LM predicts a word from its left context only, so a GRADIEND target in the middle of a sentence
("The nurse said that [MASK] was tired") never sees "was tired". The auxiliary head closes that gap without
touching the base model:

* **Input.** The word is replaced by the tokenizer's mask token (its ``<mask>``, else its unknown token, else
  end-of-text; an existing token, so the vocabulary and the parameter index space of the base model stay as
  they are). A word of k pieces gets k mask tokens; the text after it follows unchanged.
* **Pooling.** The decoder's last hidden states at the mask and the ``pool − 1`` positions after it are
  averaged: the states after the mask have read the mask *and* the right context, so the pool carries both
  sides. The window stops at the end of the text.
* **Head.** A residual two-layer MLP on the pooled state (``s + W₂·gelu(W₁·s)``, W₂ starting at zero), read out
  through the base model's own output embedding. It has 2·hidden² + 3·hidden parameters (0.8M for Gemma-3-270m
  next to its 168M-entry embedding), predicts over the whole vocabulary, and so serves every feature of the
  base model: it is trained once per base model on neutral text (:func:`train_head`) and saved as its own
  artifact with its training metrics (:func:`save_head`, ``gradiend head train``).
* **Training.** The base model is frozen; one random token of each text is masked, the pooled states are
  computed once under ``no_grad`` and the head is fitted on them with AdamW and cross-entropy (10% held out).
* **GRADIEND.** With ``[model] objective = "masked-head"`` (or ``"auto"`` and a ``head``), the factual and
  alternative losses of the gradient stages are ``−log P(word)`` through the frozen head
  (:class:`MaskedHeadObjective`), so the gradients reach only the selected base parameters. The decoder
  evaluation keeps the model's causal objective: it measures what the rewritten model itself generates.
"""

from __future__ import annotations

import copy
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from gradiend.errors import GradiendError
from gradiend.io import atomic_dir, read_json, write_json
from gradiend.lm import forward
from gradiend.lm.load import LoadedModel, ModelFamily
from gradiend.lm.objectives import Target, _plan, _TokenObjective, split_masked

log = logging.getLogger(__name__)

WEIGHTS_FILE = "head.safetensors"
META_FILE = "head.json"


@dataclass(frozen=True)
class HeadConfig:
    """How the auxiliary head is trained: pooling window, optimisation, and how much neutral text."""

    pool: int = 3  # hidden states averaged: the mask and the pool − 1 positions after it
    steps: int = 400
    batch_size: int = 64
    lr: float = 1e-3
    max_texts: int = 4000  # neutral texts used (one masked token each)
    max_length: int = 64  # tokens per text
    val_fraction: float = 0.1
    eval_every: int = 25  # steps between validations; the head with the lowest validation loss is kept
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pool < 1 or self.steps < 1 or self.batch_size < 1 or self.eval_every < 1 or self.max_length < 2:
            raise GradiendError("head training needs pool, steps, batch_size, eval_every ≥ 1 and max_length ≥ 2")
        if not 0 < self.val_fraction < 1:
            raise GradiendError(f"val_fraction must be in (0, 1), got {self.val_fraction}")


class MLMHead(nn.Module):
    """Pooled decoder state → hidden state that the base model's output embedding turns into vocabulary logits."""

    def __init__(self, hidden: int, pool: int, mask_id: int) -> None:
        super().__init__()
        self.pool = pool
        self.mask_id = mask_id
        self.up = nn.Linear(hidden, hidden)
        self.down = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.down.weight)
        nn.init.zeros_(self.down.bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled + self.down(nn.functional.gelu(self.up(pooled)))

    def logits(self, model: Any, pooled: torch.Tensor, detach: bool = False) -> torch.Tensor:
        """Vocabulary logits through ``model``'s output embedding (tied or not); ``detach``: no gradient to it."""
        out = model.get_output_embeddings()
        weight, bias = out.weight, getattr(out, "bias", None)
        if detach:
            weight, bias = weight.detach(), None if bias is None else bias.detach()
        return nn.functional.linear(self(pooled), weight, bias)


def mask_token_id(tokenizer: Any) -> int:
    """The token that stands for the masked word: ``<mask>``, else the unknown token, else end-of-text."""
    for tid in (tokenizer.mask_token_id, tokenizer.unk_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    raise GradiendError("the tokenizer has no mask, unknown or end-of-text token to mark the masked word")


def _check_causal(lm: LoadedModel) -> None:
    if lm.family is not ModelFamily.CAUSAL:
        raise GradiendError(
            f"the auxiliary MLM head is for decoder-only (causal) models; {lm.name!r} is a masked LM: "
            "use its own masked objective"
        )


# --- hidden states and pooling ---------------------------------------------------------------------------


def hidden_states(model: Any, batch: forward.Batch) -> torch.Tensor:
    """Last hidden states [rows, width, hidden] of a padded batch (what the output embedding reads)."""
    split = forward.model_split(model)
    kwargs = forward._forward_kwargs(split.kwargs, batch)
    if split.head is not None:
        return split.backbone(input_ids=batch.input_ids, **kwargs)[0]
    return model(input_ids=batch.input_ids, output_hidden_states=True, **kwargs).hidden_states[-1]


def pooling_matrix(windows: Sequence[tuple[int, int, int]], rows: int, width: int, device: Any) -> torch.Tensor:
    """[len(windows), rows·width] averaging matrix; window ``(row, start, stop)`` covers columns start…stop−1.

    A matrix product (rather than index arithmetic) keeps pooling differentiable in both autograd modes.
    """
    mat = torch.zeros(len(windows), rows * width, device=device)
    for i, (row, start, stop) in enumerate(windows):
        mat[i, row * width + start : row * width + stop] = 1.0 / (stop - start)
    return mat


def pooled_states(model: Any, batch: forward.Batch, windows: Sequence[tuple[int, int, int]]) -> torch.Tensor:
    hidden = hidden_states(model, batch)
    rows, width, dim = hidden.shape
    return pooling_matrix(windows, rows, width, hidden.device).to(hidden.dtype) @ hidden.reshape(rows * width, dim)


def _windows(batch: forward.Batch, lengths: Sequence[int], at: Sequence[tuple[int, int]], pool: int):
    """Pool windows of (sequence, position) pairs in ``batch`` coordinates, cut at each sequence's end."""
    out = []
    for s, pos in at:
        start = batch.offset[s] + pos
        out.append((batch.row[s], start, min(start + pool, batch.offset[s] + lengths[s])))
    return out


# --- training --------------------------------------------------------------------------------------------


def masked_samples(tokenizer: Any, texts: Sequence[str], mask_id: int, max_length: int,
                   rng: random.Random) -> list[tuple[tuple[int, ...], int, int]]:
    """(ids with one token masked, its position, the original token) for each text with ≥ 2 tokens."""
    special = set(getattr(tokenizer, "all_special_ids", []))
    out = []
    for text in texts:
        ids = list(tokenizer(text, truncation=True, max_length=max_length)["input_ids"])
        candidates = [i for i, t in enumerate(ids) if t not in special]
        if len(ids) < 2 or not candidates:
            continue
        pos = rng.choice(candidates)
        target, ids[pos] = ids[pos], mask_id
        out.append((tuple(ids), pos, target))
    return out


@torch.no_grad()
def pooled_features(lm: LoadedModel, samples: Sequence[tuple[tuple[int, ...], int, int]], pool: int,
                    batch_size: int = 32) -> torch.Tensor:
    """Pooled decoder states of the samples' masks, [len(samples), hidden] (float32, on the model's device)."""
    tok, out = lm.tokenizer, []
    pad_id = next((i for i in (tok.pad_token_id, tok.eos_token_id) if i is not None), 0)
    for start in tqdm(range(0, len(samples), batch_size), desc="head features", unit="batch", leave=False):
        chunk = samples[start : start + batch_size]
        seqs = [s[0] for s in chunk]
        batch = forward.pad(seqs, pad_id, "right", lm.device)
        windows = _windows(batch, [len(s) for s in seqs], [(i, s[1]) for i, s in enumerate(chunk)], pool)
        out.append(pooled_states(lm.model, batch, windows).float())
    return torch.cat(out)


def train_head(lm: LoadedModel, texts: Sequence[str], config: HeadConfig = HeadConfig(),
               progress: bool = True) -> tuple[MLMHead, dict[str, Any]]:
    """Fit an auxiliary head on ``lm`` (frozen) from neutral ``texts``; returns the head and its metrics."""
    _check_causal(lm)
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    mask_id = mask_token_id(lm.tokenizer)
    texts = [t for t in texts if t.strip()][: config.max_texts]
    samples = masked_samples(lm.tokenizer, texts, mask_id, config.max_length, rng)
    n_val = max(1, int(len(samples) * config.val_fraction))
    if len(samples) - n_val < 2:
        raise GradiendError(f"head training needs more neutral text: {len(samples)} usable texts")
    feats = pooled_features(lm, samples, config.pool)
    labels = torch.tensor([s[2] for s in samples], device=feats.device)
    head = MLMHead(feats.shape[1], config.pool, mask_id).to(feats.device)
    train_x, train_y, val_x, val_y = feats[n_val:], labels[n_val:], feats[:n_val], labels[:n_val]
    before = _evaluate(head, lm.model, val_x, val_y)
    losses, best_step = _fit(head, lm.model, (train_x, train_y), (val_x, val_y), config, progress)
    after = _evaluate(head, lm.model, val_x, val_y)
    metrics = {
        "base_model": lm.name, "n_train": len(train_y), "n_val": len(val_y), "config": asdict(config),
        "train_loss_first": losses[0], "train_loss_last": sum(losses[-10:]) / len(losses[-10:]), "best_step": best_step,
        "val_loss_before": before[0], "val_accuracy_before": before[1], "val_loss": after[0], "val_accuracy": after[1],
    }
    log.info("MLM head: validation loss %.3f → %.3f, accuracy %.3f → %.3f", before[0], after[0], before[1], after[1])
    head.zero_grad(set_to_none=True)
    return head.eval().requires_grad_(False), metrics


Split = tuple[torch.Tensor, torch.Tensor]  # pooled features, target token ids


def _fit(head: MLMHead, model: Any, train: Split, val: Split, config: HeadConfig,
         progress: bool) -> tuple[list[float], int]:
    """AdamW on the training split; every ``eval_every`` steps the validation loss decides which head is kept.

    0.8M parameters fit a few thousand sentences within a few epochs (on Gemma the validation loss falls at first
    and is back at its starting value by step 400 of 64 rows each), so the head returned is the best one seen,
    not the last. Returns the training losses and the kept step (0: the initial head, the identity readout).
    """
    x, y = train
    head.requires_grad_(True)
    opt = torch.optim.AdamW(head.parameters(), lr=config.lr)
    gen = torch.Generator(device="cpu").manual_seed(config.seed)
    losses: list[float] = []
    best = (_evaluate(head, model, *val)[0], 0, copy.deepcopy(head.state_dict()))
    for step in tqdm(range(1, config.steps + 1), desc="head", unit="step", disable=not progress):
        head.train()
        idx = torch.randint(len(y), (min(config.batch_size, len(y)),), generator=gen).to(x.device)
        loss = nn.functional.cross_entropy(head.logits(model, x[idx], detach=True).float(), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step % config.eval_every == 0 or step == config.steps:
            val_loss = _evaluate(head, model, *val)[0]
            if val_loss < best[0]:
                best = (val_loss, step, copy.deepcopy(head.state_dict()))
    head.load_state_dict(best[2])
    return losses, best[1]


@torch.no_grad()
def _evaluate(head: MLMHead, model: Any, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    logits = head.eval().logits(model, x, detach=True).float()
    loss = float(nn.functional.cross_entropy(logits, y))
    return (loss if math.isfinite(loss) else float("inf")), float((logits.argmax(-1) == y).float().mean())


# --- storage ---------------------------------------------------------------------------------------------


def save_head(head: MLMHead, directory: str | Path, metrics: dict[str, Any], lm: LoadedModel) -> Path:
    """Write the head (safetensors) and its description and metrics (JSON) to ``directory``, atomically."""
    from safetensors.torch import save_file

    meta = {"hidden": head.up.in_features, "pool": head.pool, "mask_id": head.mask_id, "base_model": lm.name,
            "vocab_size": lm.model.get_output_embeddings().weight.shape[0], "metrics": metrics}
    with atomic_dir(directory) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, str(tmp / WEIGHTS_FILE))
        write_json(tmp / META_FILE, meta)
    return Path(directory)


def load_head(directory: str | Path, lm: LoadedModel) -> MLMHead:
    """Load a saved head for ``lm``; a head of another base model (hidden size or vocabulary) is refused."""
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / WEIGHTS_FILE).is_file() or not (directory / META_FILE).is_file():
        raise GradiendError(
            f"{str(directory)!r} is not an MLM head directory (no {WEIGHTS_FILE} / {META_FILE}); "
            "train one with: gradiend head train --model SPEC --texts SOURCE --out DIR"
        )
    _check_causal(lm)
    meta = read_json(directory / META_FILE)
    hidden = lm.model.get_output_embeddings().weight.shape
    if (meta["vocab_size"], meta["hidden"]) != tuple(hidden):
        raise GradiendError(
            f"MLM head {str(directory)!r} was trained on {meta['base_model']!r} (vocabulary {meta['vocab_size']}, "
            f"hidden {meta['hidden']}), not on {lm.name!r} ({hidden[0]}, {hidden[1]}): train one for this model"
        )
    head = MLMHead(int(meta["hidden"]), int(meta["pool"]), int(meta["mask_id"]))
    head.load_state_dict(load_file(str(directory / WEIGHTS_FILE)), strict=True)
    return head.to(lm.device).eval().requires_grad_(False)


def with_head(lm: LoadedModel, head_dir: str | Path | None) -> LoadedModel:
    """``lm`` carrying the auxiliary head saved at ``head_dir`` (same model object); ``lm`` itself for None."""
    if head_dir is None:
        return lm
    return replace(lm, mlm_head=load_head(head_dir, lm))


# --- the GRADIEND objective ------------------------------------------------------------------------------


class MaskedHeadObjective(_TokenObjective):
    """−log P(word) from the auxiliary head: the word's pieces are masked and read from both-sided context.

    Piece j of a k-piece word is predicted from the pool at mask j (the product-of-masks approximation of a
    masked LM). The head is frozen: gradients of these losses reach only the selected base parameters.
    """

    family = ModelFamily.CAUSAL

    def __init__(self, lm: LoadedModel, head: MLMHead, padding_side: str | None = None) -> None:
        _check_causal(lm)
        super().__init__(lm, "right" if padding_side is None else padding_side)
        self.head = head.requires_grad_(False).eval()
        tok = lm.tokenizer
        self.prepend_bos = tok.bos_token_id is not None and tok("a")["input_ids"][:1] == [tok.bos_token_id]
        self.bos_id = tok.bos_token_id

    def _target(self, masked: str, word: str) -> Target:
        left, right = split_masked(masked)
        context = left.rstrip()
        pieces = self.word_pieces(context, left[len(context):] + word)
        ctx = self._ids_cache(context) if context else ()
        if self.prepend_bos:
            ctx = (self.bos_id, *ctx)
        ids = (*ctx, *([self.head.mask_id] * len(pieces)), *(self._ids_cache(right) if right.strip() else ()))
        self._check_length(ids, masked)
        return Target(ids, tuple(range(len(ctx), len(ctx) + len(pieces))), pieces)

    def score(self, model: Any, targets: Sequence[Target], groups: Sequence[int], pack: bool = True) -> torch.Tensor:
        """Σ_j log p(piece_j) through the head, from one padded forward over the distinct input sequences."""
        seqs, seq_of = _plan(targets, groups, False)
        device = next(model.parameters()).device
        batch = forward.pad(seqs, self.pad_id, self.padding_side, device)
        at, piece_ids, owner = [], [], []
        for t, (target, s) in enumerate(zip(targets, seq_of, strict=True)):
            at += [(s, pos) for pos in target.positions]
            piece_ids += list(target.pieces)
            owner += [t] * len(target.pieces)
        windows = _windows(batch, [len(s) for s in seqs], at, self.head.pool)
        pooled = pooled_states(model, batch, windows)
        logp = torch.log_softmax(self.head.logits(model, pooled).float(), dim=-1)
        picked = logp[torch.arange(len(piece_ids), device=device), torch.tensor(piece_ids, device=device)]
        owner_t = torch.tensor(owner, device=device)
        return torch.zeros(len(targets), device=device, dtype=picked.dtype).index_add(0, owner_t, picked)
