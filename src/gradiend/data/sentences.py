"""Documents → sentences (or windows of k sentences) with corpus-unique ids and length filters.

The default splitter is a regular expression that is fast and does not break after common abbreviations
(``Mr.``, ``Dr.``, ``e.g.``, ``U.S.``) or initials (``Arthur C. Clarke``); ``splitter="spacy"`` uses spaCy's
rule-based sentencizer instead. Line breaks always end a sentence.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gradiend.data.corpus import Document
from gradiend.errors import GradiendError

SPLITTERS = ("regex", "spacy")

# lower-cased tokens (with their final dot) after which a period does not end a sentence
_ABBREVIATIONS_TEXT = """mr. mrs. ms. dr. prof. st. jr. sr. vs. etc. e.g. i.e. cf. approx. ca. no. nos. vol. fig. figs. inc. ltd.
co. corp. dept. gen. gov. sen. rep. rev. capt. col. lt. sgt. mt. ft. jan. feb. mar. apr. jun. jul. aug.
sep. sept. oct. nov. dec. u.s. u.k. u.n. e.u. a.m. p.m. b.c. a.d. ph.d. op. pp. p. ed. eds. est."""
ABBREVIATIONS = frozenset(_ABBREVIATIONS_TEXT.split())
# candidate boundary: terminal punctuation, optional closing quotes/brackets, whitespace, then a plausible start
_BOUNDARY = re.compile(r"[.!?]+[\"'”’)\]]*\s+(?=[\"'“‘(\[]?(\w))")
_INITIALS = re.compile(r"(?:[A-Za-z]\.)+")
_NORMALIZE = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class Sentence:
    """A sentence (or window) of the corpus: its corpus-unique id, document id and text."""

    sentence_id: int
    doc_id: str
    text: str


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences with the abbreviation-aware regex (line breaks always split)."""
    out = []
    for line in text.splitlines():
        start = 0
        for m in _BOUNDARY.finditer(line):
            nxt = m.group(1)
            if not (nxt.isupper() or nxt.isdigit()) or _is_abbreviation(line, m.start()):
                continue
            out.append(line[start : m.start() + len(m.group(0).rstrip())].strip())
            start = m.end()
        out.append(line[start:].strip())
    return [s for s in out if s]


def _is_abbreviation(line: str, dot: int) -> bool:
    """Whether the period at ``dot`` ends a known abbreviation or an initial rather than a sentence."""
    if line[dot] != ".":
        return False
    word = line[: dot + 1].rsplit(maxsplit=1)[-1].lstrip("\"'“‘([")
    return word.lower() in ABBREVIATIONS or _INITIALS.fullmatch(word) is not None


def _spacy_split(text: str) -> list[str]:
    from gradiend.data.nlp import sentencizer

    nlp = sentencizer()
    return [s.text.strip() for line in text.splitlines() for s in nlp(line).sents if s.text.strip()]


def windows(sentences: list[str], k: int) -> list[str]:
    """Non-overlapping windows of ``k`` consecutive sentences joined by a space (the last may be shorter)."""
    return [" ".join(sentences[i : i + k]) for i in range(0, len(sentences), k)]


def normalized(text: str) -> str:
    """Text for near-duplicate detection: case-folded, punctuation and whitespace collapsed."""
    return _NORMALIZE.sub(" ", text.casefold()).strip()


def iter_sentences(
    documents: Iterable[Document],
    *,
    splitter: str = "regex",
    window: int = 1,
    min_chars: int = 0,
    max_chars: int | None = None,
) -> list[Sentence]:
    """All sentences (or windows) of ``documents`` that pass the length filters, de-duplicated.

    Ids count kept sentences in corpus order. A sentence whose normalised text was seen before (in any
    document) is dropped, so no sentence or near-duplicate can land in two splits.
    """
    split = _splitter(splitter)
    if window < 1:
        raise GradiendError(f"window must be >= 1 sentence, got {window}")
    seen: set[str] = set()
    out: list[Sentence] = []
    for doc in documents:
        for seg in windows(split(doc.text), window):
            if len(seg) < min_chars or (max_chars is not None and len(seg) > max_chars):
                continue
            key = normalized(seg)
            if key in seen:
                continue
            seen.add(key)
            out.append(Sentence(len(out), doc.doc_id, seg))
    return out


def _splitter(name: str) -> Callable[[str], list[str]]:
    if name == "regex":
        return split_sentences
    if name == "spacy":
        return _spacy_split
    raise GradiendError(f"unknown sentence splitter {name!r}; choose one of {list(SPLITTERS)}")
