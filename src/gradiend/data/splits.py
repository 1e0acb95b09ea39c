"""Deterministic train/validation/test splits: grouped by document, or by target word (held-out vocabulary).

Document grouping is stratified: documents that contain the rarest class are divided first, by that class's
occurrence counts, then those of the next class, then the documents with only neutral sentences. So every
class is spread over the splits in (close to) the requested ratios while no document is cut in two.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from gradiend.data.config import SPLITS, DataConfig
from gradiend.data.features import Feature
from gradiend.data.pairs import Occurrence
from gradiend.data.sentences import Sentence
from gradiend.errors import GradiendError

STREAM_SPLITS = 2


def quotas(total: int, ratios: Sequence[float]) -> list[int]:
    """Split ``total`` into integer parts proportional to ``ratios`` (largest remainder, ties to the first)."""
    raw = [total * r for r in ratios]
    parts = [int(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - parts[i]), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def _cumulative_buckets(weights: Sequence[int], ratios: Sequence[float]) -> list[int]:
    """Bucket of each item in order: where the midpoint of its weight falls on the cumulative ratio scale."""
    total = float(sum(weights)) or 1.0
    bounds = np.cumsum(ratios)
    out, cum = [], 0.0
    for w in weights:
        mid = (cum + w / 2) / total
        out.append(int(min(np.searchsorted(bounds, mid, side="right"), len(ratios) - 1)))
        cum += w
    return out


def document_splits(
    occurrences: Sequence[Occurrence], sentences: Sequence[Sentence], feature: Feature, config: DataConfig
) -> dict[str, str]:
    """Split name of every document that has a sentence; same inputs and seed, same assignment."""
    rng = np.random.default_rng([config.seed, STREAM_SPLITS])
    per_class = [Counter[str]() for _ in feature.classes]
    for o in occurrences:
        per_class[o.match.class_index][o.sentence.doc_id] += 1
    sizes = Counter(s.doc_id for s in sentences)
    out: dict[str, str] = {}
    rarest_first = sorted(range(len(per_class)), key=lambda i: (sum(per_class[i].values()), i))
    groups = [per_class[i] for i in rarest_first] + [sizes]
    for counts in groups:
        docs = sorted(d for d in counts if d not in out)
        docs = [docs[i] for i in rng.permutation(len(docs))]
        for d, b in zip(docs, _cumulative_buckets([counts[d] for d in docs], config.split_ratios), strict=True):
            out[d] = SPLITS[b]
    return out


def vocabulary_splits(feature: Feature, config: DataConfig) -> dict[tuple[int, str], str]:
    """Held-out vocabulary: each target word of each class in exactly one split, every active split covered."""
    rng = np.random.default_rng([config.seed, STREAM_SPLITS])
    active = [i for i, r in enumerate(config.split_ratios) if r > 0]
    out: dict[tuple[int, str], str] = {}
    for ci, cls in enumerate(feature.classes):
        if len(cls.targets) < len(active):
            raise GradiendError(
                f"held_out_vocabulary needs at least {len(active)} target words per class (one per split); "
                f"class {cls.id!r} has {len(cls.targets)}: {list(cls.targets)}"
            )
        n = _vocab_counts(len(cls.targets), [config.split_ratios[i] for i in active])
        words = sorted(cls.targets)
        words = [words[i] for i in rng.permutation(len(words))]
        bucket = [b for b, k in zip(active, n, strict=True) for _ in range(k)]
        out.update({(ci, w): SPLITS[b] for w, b in zip(words, bucket, strict=True)})
    return out


def _vocab_counts(n_words: int, ratios: list[float]) -> list[int]:
    """Words per active split: proportional, but at least one each (taken from the largest split)."""
    n = quotas(n_words, ratios)
    for i in range(len(n)):
        if n[i] == 0:
            donor = max(range(len(n)), key=lambda j: (n[j], -j))
            n[donor] -= 1
            n[i] += 1
    return n


def occurrence_splits_by_vocabulary(
    occurrences: Sequence[Occurrence], vocabulary: Mapping[tuple[int, str], str]
) -> tuple[list[Occurrence], list[str]]:
    """Occurrences with the split of their target word; sentences whose targets fall in different splits
    are dropped entirely (a held-out word must not appear, even as context, in another split)."""
    by_sentence: dict[int, set[str]] = {}
    for o in occurrences:
        by_sentence.setdefault(o.sentence.sentence_id, set()).add(vocabulary[(o.match.class_index, o.match.target)])
    kept = [o for o in occurrences if len(by_sentence[o.sentence.sentence_id]) == 1]
    return kept, [vocabulary[(o.match.class_index, o.match.target)] for o in kept]
