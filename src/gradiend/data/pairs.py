"""Target occurrences → pairs rows (one masked target each, with alternatives) and neutral rows.

A sentence with several targets yields one row per target: that target is replaced by ``[MASK]`` and every
other target stays as text, so ``masked.replace(MASK, factual, 1)`` always gives back the sentence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gradiend.constants import MASK
from gradiend.data.config import DataConfig
from gradiend.data.features import Feature, FeatureClass, Match, Matcher, word_pattern
from gradiend.data.sentences import Sentence
from gradiend.errors import GradiendError

PAIR_COLUMNS = ("masked", "factual", "factual_class", "alternative", "alternative_class", "split", "doc_id",
                "sentence_id")
NEUTRAL_COLUMNS = ("text", "split", "doc_id", "sentence_id")
_WORD = re.compile(r"\w+")
# independent random streams derived from the one seed (so changing one option does not reshuffle another)
STREAM_ALTERNATIVES = 1
STREAM_NEUTRAL = 3


@dataclass(frozen=True)
class Occurrence:
    """A target occurrence: the sentence it is in and the match (others in the same sentence stay text)."""

    sentence: Sentence
    match: Match


@dataclass(frozen=True)
class Scan:
    """Result of one pass over the sentences: target occurrences and the neutral sentences."""

    occurrences: list[Occurrence]
    neutral: list[Sentence]
    dropped_by_context: int


def scan(sentences: Sequence[Sentence], feature: Feature, config: DataConfig) -> Scan:
    """Find every target occurrence (one regex pass; spaCy only where a class needs it) and neutral sentences.

    A sentence is neutral when it contains no target word (as surface form, and for lemma classes no token
    with a target lemma) and none of ``config.excluded_words`` (whole words, case-insensitive). Sentences
    that already contain the literal ``[MASK]`` are skipped.
    """
    matcher = Matcher(feature)
    excluded = word_pattern(config.excluded_words)
    docs = _parse_where_needed(sentences, matcher, feature, config)
    occurrences: list[Occurrence] = []
    neutral: list[Sentence] = []
    dropped = 0
    for i, sent in enumerate(sentences):
        if MASK in sent.text:
            continue  # a literal [MASK] in the source would make the masked text ambiguous
        surface = matcher.find(sent.text)
        matches = surface if docs is None or i not in docs else _constrained(docs[i], surface, feature)
        if not surface and not matches and excluded.search(sent.text) is None:
            neutral.append(sent)
        for m in matches:
            if len(_WORD.findall(sent.text, 0, m.start)) >= config.min_left_context:
                occurrences.append(Occurrence(sent, m))
            else:
                dropped += 1
    return Scan(occurrences, neutral, dropped)


def _constrained(doc: object, surface: list[Match], feature: Feature) -> list[Match]:
    from gradiend.data.nlp import filter_and_add

    return filter_and_add(doc, surface, feature)


def _parse_where_needed(
    sentences: Sequence[Sentence], matcher: Matcher, feature: Feature, config: DataConfig
) -> dict[int, object] | None:
    """spaCy docs by sentence index: all sentences when a class matches lemmas, else only candidates."""
    if not any(c.needs_spacy for c in feature.classes):
        return None
    from gradiend.data.nlp import load_pipeline

    nlp = load_pipeline(config.spacy_model)
    if any(c.lemma for c in feature.classes):
        idx = list(range(len(sentences)))
    else:
        constrained = {i for i, c in enumerate(feature.classes) if c.needs_spacy}
        idx = [i for i, s in enumerate(sentences) if any(m.class_index in constrained for m in matcher.find(s.text))]
    return dict(zip(idx, nlp.pipe(sentences[i].text for i in idx), strict=True))


def apply_case(factual: str, listed: str, alternative: str) -> str:
    """Give ``alternative`` the surface case of ``factual``: lower, Title or UPPER.

    A factual written exactly as its listed target (``I``) keeps the alternative as listed; a single capital
    letter counts as Title case.
    """
    if factual == listed:
        return alternative
    if factual.islower():
        return alternative.lower()
    if factual.isupper() and len(factual) > 1:
        return alternative.upper()
    if factual[:1].isupper():
        return alternative[:1].upper() + alternative[1:]
    return alternative


def build_pairs(
    occurrences: Sequence[Occurrence],
    splits: Sequence[str],
    feature: Feature,
    config: DataConfig,
    vocabulary: Mapping[tuple[int, str], str] | None = None,
) -> pd.DataFrame:
    """One row per occurrence and alternative (``alternatives="one"``: one per other class, seeded).

    With a held-out ``vocabulary`` ({(class index, target): split}) alternatives are drawn only from targets
    of the row's own split, so held-out words never come back as alternatives.
    """
    rng = np.random.default_rng([config.seed, STREAM_ALTERNATIVES])
    if config.alternatives == "paradigm":
        check_paradigm(feature)
    cols: dict[str, list[object]] = {c: [] for c in PAIR_COLUMNS}
    for occ, split in zip(occurrences, splits, strict=True):
        m, s = occ.match, occ.sentence
        masked = s.text[: m.start] + MASK + s.text[m.end :]
        for j, other in enumerate(feature.classes):
            if j == m.class_index:
                continue
            cands = [t for t in other.targets if vocabulary is None or vocabulary[(j, t)] == split]
            for alt in _alternatives(cands, other.targets, feature.classes[m.class_index], m.target, config, rng):
                row = (masked, m.text, feature.classes[m.class_index].id, apply_case(m.text, m.target, alt),
                       other.id, split, s.doc_id, s.sentence_id)
                for c, v in zip(PAIR_COLUMNS, row, strict=True):
                    cols[c].append(v)
    return pairs_frame(cols)


def _alternatives(
    candidates: Sequence[str], other: Sequence[str], own: FeatureClass, target: str, config: DataConfig,
    rng: np.random.Generator,
) -> list[str]:
    """The alternative word(s) of one occurrence in one other class, as ``config.alternatives`` says."""
    if config.alternatives == "paradigm":
        return [other[own.targets.index(target)]]
    if config.alternatives == "all":
        return list(candidates)
    return [candidates[int(rng.integers(len(candidates)))]]


def check_paradigm(feature: Feature) -> None:
    """``alternatives = "paradigm"`` maps targets by position: every class must list equally many."""
    sizes = {c.id: len(c.targets) for c in feature.classes}
    if len(set(sizes.values())) != 1 or any(c.lemma for c in feature.classes):
        raise GradiendError(f'alternatives = "paradigm" pairs the targets of the classes by position, so every class '
                            f"must list equally many (and no lemma classes); target counts: {sizes}")


def pairs_frame(cols: Mapping[str, list[object]]) -> pd.DataFrame:
    """The pairs table with its canonical column order and dtypes."""
    return pd.DataFrame({c: pd.Series(cols[c], dtype="int64" if c == "sentence_id" else object) for c in PAIR_COLUMNS})


def select_neutral(
    neutral: Sequence[Sentence], doc_split: Mapping[str, str], config: DataConfig
) -> pd.DataFrame:
    """A seeded random sample of ``neutral_size`` neutral sentences (in corpus order), split by document."""
    pool = [s for s in neutral if s.doc_id in doc_split]
    if config.neutral_size is not None and len(pool) > config.neutral_size:
        rng = np.random.default_rng([config.seed, STREAM_NEUTRAL])
        keep = np.sort(rng.permutation(len(pool))[: config.neutral_size])
        pool = [pool[i] for i in keep]
    return pd.DataFrame({
        "text": pd.Series([s.text for s in pool], dtype=object),
        "split": pd.Series([doc_split[s.doc_id] for s in pool], dtype=object),
        "doc_id": pd.Series([s.doc_id for s in pool], dtype=object),
        "sentence_id": pd.Series([s.sentence_id for s in pool], dtype="int64"),
    })
