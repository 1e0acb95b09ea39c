"""The language-modelling objectives behind GRADIEND: masked LM and causal (next-token) LM, one protocol.

Both objectives turn a masked sentence and a candidate word into a *target*: an input sequence, the positions
whose outputs predict the word's pieces, and the piece ids. The loss of a word is the negative log-probability
of the whole word, ``-log P(word | context) = -Σ_j log p(piece_j)``, so multi-piece words are never truncated:

* masked LM: a word of k pieces replaces ``[MASK]`` by k mask tokens; piece j is predicted at mask j
  (the usual product-of-masks approximation of P(word)).
* causal LM: the context is the text before ``[MASK]``; its trailing whitespace moves into the target, so the
  target of ``"… said [MASK] was"`` is ``" they"`` (the leading-space token). The word is teacher-forced: the
  input is ``context + pieces[:-1]`` and the output at the last context position predicts piece 1, the next
  one piece 2, and so on (exact chain rule). A sentence-initial target (empty context) is conditioned on the
  tokenizer's BOS token; a tokenizer without BOS makes such a row a :class:`GradiendError`.

The factual and the alternative word of a row usually share one input sequence (causal: the context, when both
words are one piece; masked: the masked sentence, when both have the same piece count). When they need
different inputs, each gets its own sequence, and all sequences of a batch still go through ONE forward pass.
A causal sequence also serves every target whose input is a prefix of it, so a one-piece word reads its
prediction from a multi-piece word's sequence.

How the distinct input sequences of a batch become one forward pass (padding or packing, LM head only at the
target positions) is :mod:`gradiend.lm.forward`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import torch

from gradiend.constants import MASK
from gradiend.errors import GradiendError
from gradiend.lm import forward
from gradiend.lm.load import LoadedModel, ModelFamily

PAIR_COLUMNS = ("masked", "factual", "alternative")


@dataclass(frozen=True)
class PairRow:
    """The three pairs-table columns an objective needs."""

    masked: str
    factual: str
    alternative: str


@dataclass(frozen=True)
class Target:
    """One word in context: the input ``ids``, the ``positions`` whose outputs predict ``pieces`` (same length)."""

    ids: tuple[int, ...]
    positions: tuple[int, ...]
    pieces: tuple[int, ...]


class Objective(Protocol):
    """What the gradient and evaluation stages need from a language-modelling objective."""

    family: ModelFamily

    def target(self, masked: str, word: str) -> Target: ...

    def row_losses(self, model: Any, rows: Any, pack: bool = True) -> tuple[torch.Tensor, torch.Tensor]: ...

    def losses(self, model: Any, rows: Any) -> tuple[torch.Tensor, torch.Tensor]: ...

    def word_probabilities(
        self, model: Any, masked: Sequence[str], words: Sequence[str], batch_size: int = 32
    ) -> torch.Tensor: ...


def as_pair_rows(rows: Any) -> list[PairRow]:
    """Rows from a pandas DataFrame with the pairs columns, or an iterable of mappings / :class:`PairRow`."""
    if hasattr(rows, "columns"):
        missing = [c for c in PAIR_COLUMNS if c not in rows.columns]
        if missing:
            raise GradiendError(f"pairs table lacks column(s) {missing}; expected {list(PAIR_COLUMNS)}")
        return [PairRow(*map(str, t)) for t in rows[list(PAIR_COLUMNS)].itertuples(index=False)]
    out = []
    for row in rows:
        if isinstance(row, PairRow):
            out.append(row)
        elif isinstance(row, Mapping):
            out.append(PairRow(str(row["masked"]), str(row["factual"]), str(row["alternative"])))
        else:
            raise GradiendError(f"a pair row must be a mapping with {list(PAIR_COLUMNS)}, got {type(row).__name__}")
    return out


def split_masked(masked: str) -> tuple[str, str]:
    """(text before, text after) the single ``[MASK]`` of a pairs-table sentence."""
    parts = masked.split(MASK)
    if len(parts) != 2:
        raise GradiendError(f"{masked!r} must contain exactly one {MASK} (found {len(parts) - 1})")
    return parts[0], parts[1]


class _TokenObjective:
    """Shared machinery: tokenization cache, batching of targets into one padded forward, scoring."""

    family: ModelFamily
    shares_prefixes = False  # may one input sequence serve targets whose input is a prefix of it (causal only)

    def __init__(self, lm: LoadedModel, padding_side: str | None = None) -> None:
        self.tokenizer = lm.tokenizer
        self.padding_side = padding_side or getattr(lm.tokenizer, "padding_side", "right")
        if self.padding_side not in ("left", "right"):
            raise GradiendError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")
        tok = lm.tokenizer
        self.pad_id = next((i for i in (tok.pad_token_id, tok.eos_token_id) if i is not None), 0)
        self.max_length = _max_positions(lm.model)
        self._ids_cache = lru_cache(maxsize=1 << 16)(self._ids)
        # unbounded: a decoder grid asks for the same rows × words targets in every cell, and a bounded LRU
        # read in the same order would miss every time once the grid outgrows it; the objective lives per stage
        self._target_cache = lru_cache(maxsize=None)(self._target)

    # --- tokenization --------------------------------------------------------------------------

    def _ids(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def word_pieces(self, context: str, word: str) -> tuple[int, ...]:
        """Token ids of ``word`` as it continues ``context`` (``word`` carries its own leading whitespace).

        Tokenizing context+word and cutting off the context's tokens gives the in-context pieces for both
        WordPiece and byte-level BPE; if the tokenizer merges across the boundary, the word alone is used.
        """
        if not word.strip():
            raise GradiendError(f"target word {word!r} is empty")
        ctx = self._ids_cache(context) if context else ()
        full = self._ids_cache(context + word)
        pieces = full[len(ctx):] if full[: len(ctx)] == ctx else self._ids_cache(word)
        unk = self.tokenizer.unk_token_id
        if not pieces or (unk is not None and unk in pieces):
            raise GradiendError(f"target word {word.strip()!r} cannot be predicted: the tokenizer maps it to {pieces}")
        return pieces

    def target(self, masked: str, word: str) -> Target:
        """The input sequence, prediction positions and piece ids of ``word`` at the ``[MASK]`` of ``masked``."""
        return self._target_cache(masked, word)

    def _target(self, masked: str, word: str) -> Target:
        raise NotImplementedError

    def _check_length(self, ids: Sequence[int], masked: str) -> None:
        if self.max_length is not None and len(ids) > self.max_length:
            raise GradiendError(
                f"{masked!r} has {len(ids)} tokens, more than the model's maximum {self.max_length}; "
                "shorten the sentences in the data stage"
            )

    # --- scoring -------------------------------------------------------------------------------

    def score(self, model: Any, targets: Sequence[Target], groups: Sequence[int], pack: bool = True) -> torch.Tensor:
        """Σ_j log p(piece_j) for each target, from one forward over the distinct input sequences.

        ``groups`` (one id per target, e.g. the row) limits prefix sharing to targets of the same sentence.
        The sequences are packed several per row where the model supports it (verified once per model) and
        ``pack`` is true; a NaN in one packed sequence can spread to the others of its row, so error paths
        that name a culprit recompute with ``pack=False``.
        """
        seqs, seq_of = _plan(targets, groups, self.shares_prefixes)
        device = next(model.parameters()).device
        if pack and forward.padding_waste(seqs) > forward.PACK_MIN_WASTE and forward.model_split(model).packs(model):
            batch = forward.pack(seqs, self.pad_id, device)
        else:
            batch = forward.pad(seqs, self.pad_id, self.padding_side, device)
        rows, cols, piece_ids, owner = [], [], [], []
        for t, (target, s) in enumerate(zip(targets, seq_of, strict=True)):
            for pos, piece in zip(target.positions, target.pieces, strict=True):
                rows.append(batch.row[s])
                cols.append(pos + batch.offset[s])
                piece_ids.append(piece)
                owner.append(t)
        pairs = torch.tensor([rows, cols], dtype=torch.long, device=device)
        unique, inverse = torch.unique(pairs, dim=1, return_inverse=True)
        logits = forward.logits_at(model, batch, unique[0], unique[1])
        logp = torch.log_softmax(logits.float(), dim=-1)
        picked = logp[inverse, torch.tensor(piece_ids, device=device)]
        owner_t = torch.tensor(owner, device=device)
        return torch.zeros(len(targets), device=device, dtype=picked.dtype).index_add(0, owner_t, picked)

    def row_losses(self, model: Any, rows: Any, pack: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row ``-log P(factual)`` and ``-log P(alternative)`` (each shape [rows]) from one forward."""
        pair_rows = as_pair_rows(rows)
        if not pair_rows:
            raise GradiendError("no rows to compute losses for")
        targets = [self._row_target(r, r.factual, i) for i, r in enumerate(pair_rows)]
        targets += [self._row_target(r, r.alternative, i) for i, r in enumerate(pair_rows)]
        n = len(pair_rows)
        nll = -self.score(model, targets, list(range(n)) * 2, pack=pack)
        return nll[:n], nll[n:]

    def losses(self, model: Any, rows: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean factual loss and mean alternative loss over ``rows``, sharing one forward pass."""
        factual, alternative = self.row_losses(model, rows)
        return factual.mean(), alternative.mean()

    def _row_target(self, row: PairRow, word: str, index: int) -> Target:
        try:
            return self.target(row.masked, word)
        except GradiendError as exc:
            raise GradiendError(f"row {index} ({row.masked!r}, word {word!r}): {exc}") from None

    @torch.no_grad()
    def word_probabilities(
        self, model: Any, masked: Sequence[str], words: Sequence[str], batch_size: int = 32
    ) -> torch.Tensor:
        """P(word | context) for every sentence × candidate word, shape [len(masked), len(words)], float32 CPU.

        Masked LM: product of the piece probabilities at k masks; causal LM: chain-rule probability of the
        word's pieces after the text before ``[MASK]``. Words that tokenize identically (``He``/``he`` in an
        uncased tokenizer) get identical probabilities: deduplicate before summing over a class.
        """
        if not words:
            raise GradiendError("word_probabilities needs at least one candidate word")
        out = []
        for start in range(0, len(masked), batch_size):
            chunk = masked[start : start + batch_size]
            targets = [self.target(m, w) for m in chunk for w in words]
            groups = [i for i in range(len(chunk)) for _ in words]
            out.append(self.score(model, targets, groups).exp().reshape(len(chunk), len(words)).float().cpu())
        return torch.cat(out) if out else torch.empty(0, len(words))


class MaskedLMObjective(_TokenObjective):
    """Masked LM: the word's k pieces are predicted at k mask tokens that replace ``[MASK]``."""

    family = ModelFamily.MASKED

    def __init__(self, lm: LoadedModel, padding_side: str | None = None) -> None:
        super().__init__(lm, padding_side)
        if lm.tokenizer.mask_token is None:
            raise GradiendError(f"masked LM {lm.name!r} has a tokenizer without a mask token")
        self.mask_token = lm.tokenizer.mask_token
        self.mask_id = lm.tokenizer.mask_token_id

    def _target(self, masked: str, word: str) -> Target:
        left, right = split_masked(masked)
        stripped = left.rstrip()
        pieces = self.word_pieces(stripped, left[len(stripped):] + word)
        ids = tuple(self.tokenizer(left + self.mask_token * len(pieces) + right)["input_ids"])
        positions = tuple(i for i, t in enumerate(ids) if t == self.mask_id)
        if len(positions) != len(pieces):
            raise GradiendError(f"{masked!r}: expected {len(pieces)} mask token(s) after tokenization, got {len(positions)}")
        self._check_length(ids, masked)
        return Target(ids, positions, pieces)


class CausalLMObjective(_TokenObjective):
    """Causal LM: the word's pieces are predicted teacher-forced after the text before ``[MASK]``."""

    family = ModelFamily.CAUSAL
    shares_prefixes = True

    def __init__(self, lm: LoadedModel, padding_side: str | None = None) -> None:
        super().__init__(lm, padding_side)
        tok = lm.tokenizer
        self.bos_id = tok.bos_token_id
        # tokenizers that put BOS in front of every text (Llama) get it in front of every context, as in training
        self.prepend_bos = self.bos_id is not None and tok("a")["input_ids"][:1] == [self.bos_id]

    def _target(self, masked: str, word: str) -> Target:
        left, _ = split_masked(masked)
        context = left.rstrip()
        pieces = self.word_pieces(context, left[len(context):] + word)
        ctx = self._ids_cache(context) if context else ()
        if self.prepend_bos or not ctx:
            if self.bos_id is None:
                raise GradiendError(
                    f"{masked!r}: the target is sentence-initial and the tokenizer has no BOS token to condition "
                    "on; drop sentence-initial rows for this model"
                )
            ctx = (self.bos_id, *ctx)
        ids = ctx + pieces[:-1]
        self._check_length(ids, masked)
        return Target(ids, tuple(range(len(ctx) - 1, len(ids))), pieces)


_OBJECTIVES: dict[ModelFamily, type[_TokenObjective]] = {
    ModelFamily.MASKED: MaskedLMObjective,
    ModelFamily.CAUSAL: CausalLMObjective,
}


def objective_for(lm: LoadedModel, padding_side: str | None = None) -> Objective:
    """The objective of ``lm``'s family (masked or causal LM); ``padding_side`` defaults to the tokenizer's."""
    try:
        cls = _OBJECTIVES[lm.family]
    except KeyError:
        raise GradiendError(f"no objective for model family {lm.family!r}") from None
    return cls(lm, padding_side)


def gradient_objective(lm: LoadedModel, padding_side: str | None = None) -> Objective:
    """The objective GRADIEND gradients come from: through ``lm.mlm_head`` when it has one, else its own."""
    if lm.mlm_head is None:
        return objective_for(lm, padding_side)
    from gradiend.lm.mlm_head import MaskedHeadObjective

    return MaskedHeadObjective(lm, lm.mlm_head, padding_side)


# --- batching and the forward pass ----------------------------------------------------------------


def _plan(targets: Sequence[Target], groups: Sequence[int], shares_prefixes: bool) -> tuple[list[tuple[int, ...]], list[int]]:
    """Distinct input sequences and, per target, the index of the sequence it reads from."""
    seqs: list[tuple[int, ...]] = []
    index: dict[tuple[int, ...], int] = {}
    by_group: dict[int, list[int]] = {}
    seq_of = [0] * len(targets)
    order = sorted(range(len(targets)), key=lambda t: -len(targets[t].ids)) if shares_prefixes else range(len(targets))
    for t in order:
        ids = targets[t].ids
        s = index.get(ids)
        if s is None and shares_prefixes:
            s = next((c for c in by_group.get(groups[t], []) if seqs[c][: len(ids)] == ids), None)
        if s is None:
            s = len(seqs)
            seqs.append(ids)
            index[ids] = s
            by_group.setdefault(groups[t], []).append(s)
        seq_of[t] = s
    return seqs, seq_of


def _max_positions(model: Any) -> int | None:
    value = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(value) if isinstance(value, int) else None
