"""``create_data``: raw text → pairs table + neutral table + metadata, in one deterministic pass.

Steps: documents → sentences (de-duplicated) → target occurrences and neutral sentences (one regex pass)
→ splits (by document, or by target word) → balancing per split → alternatives → tables.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence

import pandas as pd

from gradiend.constants import FORMAT_VERSION
from gradiend.data.balance import balance
from gradiend.data.config import SPLITS, DataConfig
from gradiend.data.corpus import Document, TextSource, describe_source, load_documents
from gradiend.data.features import Feature
from gradiend.data.pairs import Occurrence, Scan, build_pairs, check_paradigm, scan, select_neutral
from gradiend.data.sentences import iter_sentences
from gradiend.data.splits import document_splits, occurrence_splits_by_vocabulary, vocabulary_splits
from gradiend.data.store import FeatureData, count_table, counts_dict, fingerprint
from gradiend.errors import GradiendError

log = logging.getLogger(__name__)


def create_data(
    texts: TextSource | Sequence[Document],
    feature: Feature,
    config: DataConfig | None = None,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    max_documents: int | None = None,
    hf_config: str | None = None,
    hf_split: str = "train",
) -> FeatureData:
    """Build the pairs and neutral tables of ``feature`` from ``texts``.

    ``texts`` is any source of :func:`gradiend.data.corpus.load_documents` (or a list of ``Document``);
    the keyword options select the text column, a seeded sample of documents and a Hugging Face config/split.
    Raises :class:`GradiendError` when a class has no match or too few rows for the requested splits.
    """
    config = config or DataConfig()
    if config.alternatives == "paradigm":
        check_paradigm(feature)
    t0 = time.perf_counter()
    source = {"source": _describe(texts), "text_column": text_column, "id_column": id_column,
              "max_documents": max_documents, "hf_config": hf_config, "hf_split": hf_split}
    docs = _documents(texts, config, text_column, id_column, max_documents, hf_config, hf_split)
    sentences = iter_sentences(docs, splitter=config.sentence_splitter, window=config.window,
                               min_chars=config.min_chars, max_chars=config.max_chars)
    found = scan(sentences, feature, config)
    _check_matches(found, feature, len(sentences), config)
    occ, splits, doc_split, vocab = _assign_splits(found, sentences, feature, config)
    keep = balance(occ, splits, feature, config)
    occ, splits = [occ[i] for i in keep], [splits[i] for i in keep]
    _check_split_coverage(occ, splits, feature, config)
    pairs = build_pairs(occ, splits, feature, config, vocab)
    neutral = select_neutral(found.neutral, doc_split, config)
    meta = _meta(docs, sentences, found, pairs, neutral, feature, config, source, len(occ))
    log.info("data created in %.1fs: %d pairs rows, %d neutral rows", time.perf_counter() - t0, len(pairs),
             len(neutral))
    return FeatureData(pairs, neutral, meta, feature)


def _describe(texts: TextSource | Sequence[Document]) -> str:
    if isinstance(texts, (list, tuple)) and texts and isinstance(texts[0], Document):
        return f"list[{len(texts)} documents]"
    return describe_source(texts)


def _documents(
    texts: TextSource | Sequence[Document],
    config: DataConfig,
    text_column: str,
    id_column: str | None,
    max_documents: int | None,
    hf_config: str | None,
    hf_split: str,
) -> list[Document]:
    if isinstance(texts, (list, tuple)) and texts and all(isinstance(t, Document) for t in texts):
        return list(texts)
    return load_documents(texts, text_column=text_column, id_column=id_column, max_documents=max_documents,
                          seed=config.seed, hf_config=hf_config, hf_split=hf_split)


def _check_matches(found: Scan, feature: Feature, n_sentences: int, config: DataConfig) -> None:
    counts = Counter(o.match.class_index for o in found.occurrences)
    for i, cls in enumerate(feature.classes):
        if counts[i] == 0:
            extra = (f" ({found.dropped_by_context} matches had fewer than min_left_context="
                     f"{config.min_left_context} words before them)" if found.dropped_by_context else "")
            raise GradiendError(
                f"class {cls.id!r} (targets {list(cls.targets)}) matched nothing in {n_sentences} sentences{extra}"
            )


def _assign_splits(
    found: Scan, sentences: Sequence, feature: Feature, config: DataConfig
) -> tuple[list[Occurrence], list[str], dict[str, str], dict[tuple[int, str], str] | None]:
    doc_split = document_splits(found.occurrences, sentences, feature, config)
    if not config.held_out_vocabulary:
        occ = list(found.occurrences)
        return occ, [doc_split[o.sentence.doc_id] for o in occ], doc_split, None
    vocab = vocabulary_splits(feature, config)
    occ, splits = occurrence_splits_by_vocabulary(found.occurrences, vocab)
    return occ, splits, doc_split, vocab


def _check_split_coverage(
    occ: Sequence[Occurrence], splits: Sequence[str], feature: Feature, config: DataConfig
) -> None:
    counts = Counter((o.match.class_index, s) for o, s in zip(occ, splits, strict=True))
    for i, cls in enumerate(feature.classes):
        empty = [s for s in config.active_splits if counts[(i, s)] == 0]
        if empty:
            have = {s: counts[(i, s)] for s in config.active_splits}
            raise GradiendError(
                f"class {cls.id!r} has too few rows for the splits {list(config.active_splits)}: {have}; "
                f"split(s) {empty} got none. Use more text, fewer splits (split_ratios) or a larger cap"
            )


def _meta(
    docs: Sequence[Document],
    sentences: Sequence,
    found: Scan,
    pairs: pd.DataFrame,
    neutral: pd.DataFrame,
    feature: Feature,
    config: DataConfig,
    source: dict,
    n_occurrences: int,
) -> dict:
    from gradiend import __version__

    # the fingerprint covers what decides the output: the documents' content (not where they were read from),
    # the feature and the configuration
    params = {"feature": feature.to_dict(), "config": config.to_dict()}
    found_per_class = Counter(feature.classes[o.match.class_index].id for o in found.occurrences)
    return {
        "format_version": FORMAT_VERSION,
        "gradiend_version": __version__,
        "fingerprint": fingerprint(docs, params),
        **params,
        "source": source,
        "splits": list(SPLITS),
        "counts": counts_dict(count_table(pairs, neutral, feature.class_ids)),
        "corpus": {
            "documents": len(docs),
            "sentences": len(sentences),
            "occurrences_found": {c: found_per_class[c] for c in feature.class_ids},
            "occurrences_kept": n_occurrences,
            "dropped_by_min_left_context": found.dropped_by_context,
            "neutral_candidates": len(found.neutral),
        },
        "notes": "one row per masked target occurrence; other targets in the sentence stay as text",
    }
