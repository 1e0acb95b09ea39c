"""Language-model metrics: the language-modelling score (LMS) on neutral text and class probabilities.

LMS definitions (both read "higher is better", so one selection rule serves both families):

* **Masked LM** — pseudo-log-likelihood of the true tokens at masked positions. Per text,
  ``max(1, int(0.15 · n))`` of its ``n`` candidate tokens are replaced by the mask token (all at once);
  ``NLL`` is the mean of ``−log P(original token | masked text)`` over the masked positions,
  ``perplexity = exp(NLL)`` and ``LMS = 1 / (1 + NLL)`` — continuous, so it cannot collapse to 0 on a weak MLM
  head the way argmax accuracy does (which is kept as the second column ``accuracy``). Candidates are all tokens
  except special tokens ([CLS], [SEP], padding …) and tokens that overlap an occurrence of an excluded
  (feature) word. The positions are drawn from a generator seeded with ``seed``, so two calls on the same model
  mask the same positions.
* **Causal LM** — next-token negative log-likelihood. For every real (unpadded, non-special) token that has a
  predecessor, ``−log P(token_t | tokens_<t)`` from the logits at position ``t − 1`` (the shift the published
  package forgot); tokens overlapping an excluded word are context only, never scored. ``NLL`` is the mean
  over scored tokens, ``perplexity = exp(NLL)`` and ``LMS = 1 / (1 + NLL)``.

Excluding the feature words keeps the LMS a measure of *general* language ability: a rewrite that
strengthens "he" should not earn or lose LMS through the very words it targets.

Class probabilities: ``P(class | row) = Σ_w P(w | context at [MASK])`` over the class's target words in every
case variant (lower, Title, UPPER) whose tokenization differs from the variants already counted (an uncased
tokenizer maps all three to one). The word probability itself, including multi-piece words, comes from the
objective (:func:`gradiend.lm.objectives.objective_for`).
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from gradiend.errors import GradiendError
from gradiend.lm import forward
from gradiend.lm.load import LoadedModel, ModelFamily

MASK_FRACTION = 0.15
MLM_LMS_DEFINITION = (
    "1 / (1 + NLL), NLL = mean negative log-likelihood of the original tokens at masked positions "
    "(15% of the non-special, non-feature tokens of each neutral text, seeded, masked at once); "
    "accuracy = argmax prediction equals the original token"
)
CLM_LMS_DEFINITION = (
    "1 / (1 + NLL), NLL = mean next-token negative log-likelihood (shifted) over the real, "
    "non-special, non-feature tokens of the neutral texts; perplexity = exp(NLL)"
)


def lms_definition(family: ModelFamily) -> str:
    """One-line definition of the LMS for a model family (written into decoder.json)."""
    return MLM_LMS_DEFINITION if family is ModelFamily.MASKED else CLM_LMS_DEFINITION


@dataclass(frozen=True)
class LMSResult:
    """The LMS of one model on one set of texts.

    ``nll``/``perplexity`` are set for both families, ``accuracy`` for masked LMs; ``n_tokens`` counts the
    scored tokens (masked positions, or predicted next tokens).
    """

    lms: float
    family: ModelFamily
    n_tokens: int
    accuracy: float | None = None
    nll: float | None = None
    perplexity: float | None = None

    @property
    def definition(self) -> str:
        return lms_definition(self.family)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"lms": self.lms, "n_tokens": self.n_tokens}
        if self.accuracy is not None:
            out["accuracy"] = self.accuracy
        if self.nll is not None:
            out.update(nll=self.nll, perplexity=self.perplexity)
        return out


# --- tokenization shared by both LMS variants -----------------------------------------------------


@dataclass(frozen=True)
class _Encoded:
    """One tokenized text: its ids and which positions may be scored (masked or predicted)."""

    ids: list[int]
    scorable: list[bool]


def max_length(lm: LoadedModel) -> int:
    """Longest input the model takes (capped at 512 tokens: LMS texts are sentences)."""
    limits = [512, int(getattr(lm.tokenizer, "model_max_length", 512) or 512)]
    n_pos = getattr(lm.model.config, "max_position_embeddings", None)
    if n_pos:
        limits.append(int(n_pos))
    return min(limits)


def _word_spans(text: str, pattern: re.Pattern[str] | None) -> list[tuple[int, int]]:
    return [] if pattern is None else [m.span() for m in pattern.finditer(text)]


def word_pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    """Case-insensitive whole-word matcher for ``words`` (None when there are none).

    Whole words, not substrings: excluding "he" must not exclude "the" or "she" (a bug of the published package).
    """
    cleaned = sorted({w.strip() for w in words if w.strip()}, key=len, reverse=True)
    if not cleaned:
        return None
    alternatives = "|".join(re.escape(w) for w in cleaned)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def _encode(tokenizer: Any, text: str, limit: int, pattern: re.Pattern[str] | None) -> _Encoded:
    enc = tokenizer(
        text, truncation=True, max_length=limit, return_special_tokens_mask=True,
        return_offsets_mapping=bool(getattr(tokenizer, "is_fast", False)),
    )
    ids = list(enc["input_ids"])
    special = list(enc["special_tokens_mask"])
    offsets = enc.get("offset_mapping")
    spans = _word_spans(text, pattern)
    scorable = []
    for i, is_special in enumerate(special):
        ok = not is_special
        if ok and spans and offsets is not None:
            start, end = offsets[i]
            ok = not any(start < e and end > s for s, e in spans)
        scorable.append(ok)
    if offsets is None and pattern is not None:
        scorable = _exclude_by_id(tokenizer, ids, scorable, pattern)
    return _Encoded(ids, scorable)


def _exclude_by_id(tokenizer: Any, ids: list[int], scorable: list[bool], pattern: re.Pattern[str]) -> list[bool]:
    """Slow-tokenizer fallback: drop tokens whose decoded text is an excluded word."""
    out = list(scorable)
    for i, tid in enumerate(ids):
        piece = tokenizer.decode([tid]).strip()
        if piece and pattern.fullmatch(piece):
            out[i] = False
    return out


CPU = torch.device("cpu")  # batches are built here and moved to the model's device where it runs


def _pad_id(tokenizer: Any) -> int:
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if tid is not None:
            return int(tid)
    return 0


# --- per-text scores (the bootstrap resamples texts from these) -----------------------------------------


@dataclass(frozen=True)
class TextScores:
    """Per-text sums of one LMS evaluation, in the order of the evaluated texts.

    ``nll[i]`` is the summed token NLL of text i, ``tokens[i]`` its scored tokens, ``correct[i]`` (masked LMs)
    its argmax hits. The LMS of any subset of texts (a bootstrap replicate, a growing sample) follows from them.
    """

    nll: np.ndarray
    tokens: np.ndarray
    correct: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.nll.shape[0])

    def concat(self, other: TextScores) -> TextScores:
        """These texts followed by ``other``'s."""
        correct = None if self.correct is None else np.concatenate([self.correct, other.correct])
        return TextScores(np.concatenate([self.nll, other.nll]), np.concatenate([self.tokens, other.tokens]),
                          correct)

    def result(self, family: ModelFamily) -> LMSResult:
        """The :class:`LMSResult` over all these texts."""
        count = int(self.tokens.sum())
        if count == 0:
            raise GradiendError("no scorable tokens in the LMS texts (all empty, special or feature words)")
        nll = float(self.nll.sum()) / count
        ppl = math.exp(nll) if nll < 700 else math.inf
        acc = None if self.correct is None else float(self.correct.sum()) / count
        return LMSResult(lms=lms_from_nll(nll), family=family, n_tokens=count, accuracy=acc, nll=nll, perplexity=ppl)


def lms_from_nll(nll: np.ndarray | float) -> np.ndarray | float:
    """LMS = 1 / (1 + NLL) (bounded in (0, 1], higher is better); 0 for a non-finite or negative NLL."""
    nll = np.asarray(nll, dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):
        out = np.where(np.isfinite(nll) & (nll >= 0), 1.0 / (1.0 + np.where(np.isfinite(nll), nll, 0.0)), 0.0)
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class LMSTexts:
    """Neutral texts tokenized once, with the masked positions of each (masked LMs; empty lists for causal)."""

    family: ModelFamily
    items: tuple[_Encoded, ...]
    positions: tuple[tuple[int, ...], ...]

    def __len__(self) -> int:
        return len(self.items)


def prepare_lms_texts(lm: LoadedModel, texts: Sequence[str], *, exclude_words: Iterable[str] = (),
                      seed: int = 0) -> LMSTexts:
    """Tokenize ``texts`` and draw the masked positions once (texts without a scorable token are dropped)."""
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise GradiendError("LMS needs at least one non-empty neutral text")
    pattern = word_pattern(exclude_words)
    items = [_encode(lm.tokenizer, t, max_length(lm), pattern) for t in texts]
    if lm.family is ModelFamily.MASKED:
        pairs = [(it, tuple(p)) for it, p in zip(items, _choose_masks(items, seed), strict=True) if p]
    else:
        pairs = [(it, ()) for it in items if any(it.scorable[1:])]
    if not pairs:
        what = "maskable" if lm.family is ModelFamily.MASKED else "scorable"
        raise GradiendError(f"no {what} tokens in the LMS texts (all empty, special or feature words)")
    return LMSTexts(lm.family, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))


def text_scores(lm: LoadedModel, texts: LMSTexts, indices: Sequence[int] | None = None,
                batch_size: int = 16) -> TextScores:
    """Per-text NLL sums (and argmax hits) of the model as it is now, for ``texts`` (or the given subset)."""
    if batch_size < 1:
        raise GradiendError(f"batch_size must be ≥ 1, got {batch_size}")
    order = list(range(len(texts))) if indices is None else list(indices)
    n = len(order)
    nll, tokens, correct = np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    lm.model.eval()
    by_length = sorted(range(n), key=lambda k: len(texts.items[order[k]].ids))  # less padding
    for start in range(0, n, batch_size):
        chunk = by_length[start : start + batch_size]
        picked = [order[k] for k in chunk]
        if texts.family is ModelFamily.MASKED:
            s, c, hits = _masked_scores(lm, [texts.items[i] for i in picked], [texts.positions[i] for i in picked])
            correct[chunk] = hits
        else:
            s, c = _causal_scores(lm, [texts.items[i] for i in picked])
        nll[chunk], tokens[chunk] = s, c
    return TextScores(nll, tokens, correct if texts.family is ModelFamily.MASKED else None)


# --- causal LM --------------------------------------------------------------------------------------


@torch.no_grad()
def causal_row_nll(
    model: torch.nn.Module, ids: torch.Tensor, attention_mask: torch.Tensor, scorable: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of a padded batch (left or right padding): (sum of next-token NLL, number of scored tokens).

    Token ``t`` is scored from the logits at ``t − 1`` when both are real tokens (and ``scorable[t]``).
    Position ids follow the attention mask, so left padding gives the same numbers as right padding.
    """
    device = next(model.parameters()).device
    ids, attention_mask = ids.to(device), attention_mask.to(device)
    kwargs = {"input_ids": ids, "attention_mask": attention_mask}
    if _accepts(model, "position_ids"):
        kwargs["position_ids"] = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(**kwargs).logits
    valid = (attention_mask[:, 1:] * attention_mask[:, :-1]).bool()
    if scorable is not None:
        valid &= scorable.to(device)[:, 1:]
    per_token = torch.zeros(valid.shape, dtype=torch.float64, device=device)
    if valid.any():
        per_token[valid] = torch.nn.functional.cross_entropy(
            logits[:, :-1][valid].float(), ids[:, 1:][valid], reduction="none").double()
    return per_token.sum(-1).cpu(), valid.sum(-1).cpu()


def causal_token_nll(
    model: torch.nn.Module, ids: torch.Tensor, attention_mask: torch.Tensor, scorable: torch.Tensor | None = None
) -> tuple[float, int]:
    """(sum of next-token NLL, number of scored tokens) of a padded batch (see :func:`causal_row_nll`)."""
    nll, count = causal_row_nll(model, ids, attention_mask, scorable)
    return float(nll.sum()), int(count.sum())


def _accepts(model: torch.nn.Module, name: str) -> bool:
    """Whether ``model.forward`` takes keyword ``name`` (position ids make left padding exact)."""
    params = inspect.signature(model.forward).parameters
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _causal_scores(lm: LoadedModel, batch: list[_Encoded]) -> tuple[np.ndarray, np.ndarray]:
    padded = forward.pad([tuple(b.ids) for b in batch], _pad_id(lm.tokenizer), "right", CPU)
    scorable = forward.pad([tuple(int(s) for s in b.scorable) for b in batch], 0, "right", CPU).input_ids
    nll, count = causal_row_nll(lm.model, padded.input_ids, padded.attention_mask, scorable.bool())
    return nll.numpy(), count.numpy()


# --- masked LM --------------------------------------------------------------------------------------


def _choose_masks(items: list[_Encoded], seed: int) -> list[list[int]]:
    """Positions to mask per text: a seeded, order-stable draw of 15% of the candidate tokens."""
    rng = np.random.default_rng(seed)
    chosen = []
    for item in items:
        cand = [i for i, ok in enumerate(item.scorable) if ok]
        k = max(1, int(MASK_FRACTION * len(cand))) if cand else 0
        chosen.append(sorted(rng.choice(cand, size=k, replace=False).tolist()) if k else [])
    return chosen


@torch.no_grad()
def _masked_scores(lm: LoadedModel, batch: list[_Encoded],
                   positions: list[tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per text: (summed NLL of the original tokens at its masked positions, masked count, argmax hits)."""
    padded = forward.pad([tuple(it.ids) for it in batch], _pad_id(lm.tokenizer), "right", CPU)
    ids, attn = padded.input_ids, padded.attention_mask
    masked = torch.zeros_like(ids, dtype=torch.bool)
    for row, pos in enumerate(positions):
        masked[row, list(pos)] = True
    original = ids[masked]
    device = next(lm.model.parameters()).device
    inputs = ids.masked_fill(masked, lm.tokenizer.mask_token_id)
    logits = lm.model(input_ids=inputs.to(device), attention_mask=attn.to(device)).logits[masked.to(device)]
    logp = torch.log_softmax(logits.float(), dim=-1).cpu().double()
    token_nll = -logp.gather(1, original[:, None]).squeeze(1)
    hits = (logp.argmax(-1) == original).long()
    row = masked.nonzero()[:, 0]
    n = len(batch)
    nll = torch.zeros(n, dtype=torch.float64).index_add_(0, row, token_nll)
    return nll.numpy(), masked.sum(-1).numpy(), torch.zeros(n, dtype=torch.long).index_add_(0, row, hits).numpy()


def masked_positions(
    lm: LoadedModel, texts: Sequence[str], *, exclude_words: Iterable[str] = (), seed: int = 0
) -> list[tuple[list[int], list[int]]]:
    """(token ids, masked positions) per text, exactly as the masked-LM LMS draws them (for inspection)."""
    pattern = word_pattern(exclude_words)
    items = [_encode(lm.tokenizer, t, max_length(lm), pattern) for t in texts]
    return [(it.ids, pos) for it, pos in zip(items, _choose_masks(items, seed), strict=True)]


def lms(
    lm: LoadedModel,
    texts: Sequence[str],
    *,
    exclude_words: Iterable[str] = (),
    seed: int = 0,
    batch_size: int = 16,
) -> LMSResult:
    """Language-modelling score of ``lm`` on neutral ``texts`` (definitions in the module docstring).

    ``exclude_words`` (feature words) are never masked or scored, in any letter case.
    Runs under ``no_grad`` with dynamic padding; the model is left in eval mode and unchanged.
    """
    if batch_size < 1:
        raise GradiendError(f"batch_size must be ≥ 1, got {batch_size}")
    prepared = prepare_lms_texts(lm, texts, exclude_words=exclude_words, seed=seed)
    return text_scores(lm, prepared, batch_size=batch_size).result(lm.family)


# --- class probabilities ----------------------------------------------------------------------------


def case_variants(tokenizer: Any, words: Iterable[str]) -> list[str]:
    """lower/Title/UPPER variants of ``words``, dropping those whose tokenization duplicates an earlier one.

    Two spellings that tokenize identically (with and without a leading space) are one outcome for the
    model; counting both would double its probability (e.g. an uncased tokenizer maps He/he/HE to one id).
    """
    seen: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
    out = []
    for word in words:
        w = word.strip()
        for variant in dict.fromkeys((w.lower(), w[:1].upper() + w[1:].lower(), w.upper(), w)):
            key = (
                tuple(tokenizer(variant, add_special_tokens=False)["input_ids"]),
                tuple(tokenizer(" " + variant, add_special_tokens=False)["input_ids"]),
            )
            if key not in seen:
                seen.add(key)
                out.append(variant)
    return out


@dataclass(frozen=True)
class ClassWords:
    """The scored words of each class, prepared once and reused for every grid cell."""

    class_ids: tuple[str, ...]
    words: tuple[str, ...]  # all variants, concatenated class by class
    owner: tuple[int, ...]  # class index of each word

    @classmethod
    def build(cls, tokenizer: Any, classes: Mapping[str, Sequence[str]]) -> ClassWords:
        if not classes:
            raise GradiendError("class_probabilities needs at least one class with target words")
        words, owner = [], []
        for i, (cid, targets) in enumerate(classes.items()):
            variants = case_variants(tokenizer, targets)
            if not variants:
                raise GradiendError(f"class {cid!r} has no target words")
            words += variants
            owner += [i] * len(variants)
        return cls(tuple(classes), tuple(words), tuple(owner))

    def aggregate(self, word_probs: torch.Tensor) -> torch.Tensor:
        """[rows, words] word probabilities → [rows, classes] class probabilities (sums)."""
        index = torch.tensor(self.owner, device=word_probs.device)
        out = torch.zeros(word_probs.shape[0], len(self.class_ids), dtype=word_probs.dtype, device=word_probs.device)
        return out.index_add_(1, index, word_probs)


def _objective(lm: LoadedModel) -> Any:
    from gradiend.lm.objectives import objective_for

    return objective_for(lm)


@torch.no_grad()
def class_probabilities(
    lm: LoadedModel,
    rows: Sequence[str] | pd.DataFrame,
    classes: Mapping[str, Sequence[str]] | ClassWords,
    *,
    objective: Any = None,
    batch_size: int = 32,
) -> pd.DataFrame:
    """Per row (a sentence with one literal ``[MASK]``, or a pairs table), P(class) for every class.

    Returns a DataFrame with one column per class id and one row per input row, in input order.
    ``objective`` defaults to ``objective_for(lm)``; its ``word_probabilities`` handles multi-piece words.
    """
    masked = list(rows["masked"]) if isinstance(rows, pd.DataFrame) else list(rows)
    cw = classes if isinstance(classes, ClassWords) else ClassWords.build(lm.tokenizer, classes)
    if not masked:
        return pd.DataFrame(columns=list(cw.class_ids), dtype=float)
    objective = objective if objective is not None else _objective(lm)
    probs = objective.word_probabilities(lm.model, masked, list(cw.words), batch_size=batch_size)
    return pd.DataFrame(cw.aggregate(probs.detach().double().cpu()).numpy(), columns=list(cw.class_ids))
