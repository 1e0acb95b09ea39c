"""Feature classes (an id and its target words) and the matcher that finds them in sentences.

All classes of a feature are matched in one pass with one compiled regular expression. A match is a whole
word (or whole multi-word phrase): it is not part of a longer word, a hyphenated compound (``he-man``) or a
contraction (``he's``), because masking inside those gives sentences whose alternative is ungrammatical.
Matching is case-insensitive unless the class says otherwise, and the surface form (``He``) is kept.

Classes with spaCy constraints (``pos``, ``dep``, ``morph``) or ``lemma=True`` need spaCy (extra ``data``);
see :mod:`gradiend.data.nlp`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gradiend.errors import GradiendError

# whole-word boundaries: no word character or hyphen on either side, no contraction on the right
_LEFT = r"(?<![\w-])"
_RIGHT = r"(?![\w-])(?!['’]\w)"


def normalize_target(word: str) -> str:
    """Canonical form of a target: words separated by single spaces (case kept)."""
    return " ".join(word.split())


@dataclass(frozen=True)
class FeatureClass:
    """One class of a feature: an id and the target words that belong to it.

    ``pos`` and ``dep`` may list alternatives separated by ``|`` (``"PRON|DET"``); ``morph`` lists features
    that must all hold (``"Number=Sing|Person=3"``). With ``lemma=True`` the targets are lemmas and every
    inflected form whose spaCy lemma is a target matches (``goes``, ``went`` for ``go``). Constraints are
    checked on the syntactic root of the matched span.
    """

    id: str
    targets: tuple[str, ...]
    case_sensitive: bool = False
    pos: str | None = None
    dep: str | None = None
    morph: str | None = None
    lemma: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            raise GradiendError(f"class {self.id!r}: targets must be a list of words, not the string {self.targets!r}")
        object.__setattr__(self, "targets", tuple(normalize_target(t) for t in self.targets))
        if not isinstance(self.id, str) or not self.id.strip():
            raise GradiendError(f"a feature class needs a non-empty id (got {self.id!r})")
        if not self.targets or any(not t for t in self.targets):
            raise GradiendError(f"class {self.id!r} needs at least one non-empty target word")
        if self.lemma and any(" " in t for t in self.targets):
            raise GradiendError(f"class {self.id!r}: lemma matching supports single-word targets only")
        keys = [self.key(t) for t in self.targets]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise GradiendError(f"class {self.id!r} lists the target(s) {dupes} more than once")

    @property
    def needs_spacy(self) -> bool:
        """Whether matching this class needs a spaCy pipeline (constraints or lemmas)."""
        return self.lemma or self.constrained

    @property
    def constrained(self) -> bool:
        """Whether a match must also satisfy a POS, dependency or morphology constraint."""
        return any(x is not None for x in (self.pos, self.dep, self.morph))

    def key(self, word: str) -> str:
        """Lookup key of a (matched or listed) word: case-folded unless the class is case-sensitive."""
        word = normalize_target(word)
        return word if self.case_sensitive else word.casefold()

    @classmethod
    def parse(cls, spec: str) -> FeatureClass:
        """Parse the CLI form ``ID=word,word,...`` (multi-word targets keep their spaces)."""
        cid, sep, words = spec.partition("=")
        if not sep:
            raise GradiendError(f"class spec {spec!r} must look like ID=word,word (e.g. 3SG=he,she,it)")
        return cls(cid.strip(), tuple(w for w in (x.strip() for x in words.split(",")) if w))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (round-trips through :meth:`from_dict`)."""
        return {
            "id": self.id, "targets": list(self.targets), "case_sensitive": self.case_sensitive,
            "pos": self.pos, "dep": self.dep, "morph": self.morph, "lemma": self.lemma,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureClass:
        return cls(**{**d, "targets": tuple(d["targets"])})


@dataclass(frozen=True)
class Feature:
    """Two or more feature classes (the first is the positive class of a two-class feature).

    A word may be in several classes only when each of those classes carries spaCy constraints that decide
    between them (German ``der`` as masculine nominative and feminine dative). ``imported=True`` marks the classes
    of an imported table, whose rows already say which class each occurrence is in (no matching, so words may
    repeat across classes freely).
    """

    classes: tuple[FeatureClass, ...]
    name: str = field(default="")
    imported: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        if len(self.classes) < 2:
            raise GradiendError(f"a feature needs at least two classes, got {len(self.classes)}")
        ids = [c.id for c in self.classes]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise GradiendError(f"duplicate class id(s) {dupes}: every class needs its own id")
        if not self.imported:
            self._check_disjoint()
        if not self.name:
            object.__setattr__(self, "name", "_vs_".join(ids))

    def _check_disjoint(self) -> None:
        owner: dict[str, FeatureClass] = {}
        for c in self.classes:
            for t in c.targets:
                other = owner.setdefault(t.casefold(), c)
                if other.id != c.id and not (other.constrained and c.constrained):
                    raise GradiendError(
                        f"target {t!r} is in two classes ({other.id!r} and {c.id!r}); a word may be in several "
                        "classes only when each of them has constraints (pos, dep, morph) that tell them apart"
                    )

    @property
    def positive(self) -> FeatureClass:
        return self.classes[0]

    @property
    def class_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.classes)

    def get(self, class_id: str) -> FeatureClass:
        for c in self.classes:
            if c.id == class_id:
                return c
        raise GradiendError(f"unknown class {class_id!r}; classes: {list(self.class_ids)}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Sequence[str]], name: str = "") -> Feature:
        """``{"3SG": ["he", "she", "it"], "3PL": ["they"]}`` in order (first = positive)."""
        return cls(tuple(FeatureClass(k, tuple(v)) for k, v in mapping.items()), name)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": [c.to_dict() for c in self.classes], "imported": self.imported}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Feature:
        return cls(tuple(FeatureClass.from_dict(c) for c in d["classes"]), d.get("name", ""),
                   bool(d.get("imported", False)))


@dataclass(frozen=True)
class Match:
    """One target occurrence in a sentence: character span, surface text, class index and listed target."""

    start: int
    end: int
    text: str
    class_index: int
    target: str


def word_pattern(words: Iterable[str], case_sensitive: Mapping[str, bool] | None = None) -> re.Pattern[str]:
    """One regex matching any of ``words`` as a whole word; longest first so phrases beat their prefixes."""
    case_sensitive = case_sensitive or {}
    alts = []
    for w in sorted(set(words), key=lambda w: (-len(w), w)):
        body = r"\s+".join(re.escape(part) for part in w.split())
        alts.append(body if case_sensitive.get(w, False) else f"(?i:{body})")
    if not alts:
        return re.compile(r"(?!x)x")  # matches nothing
    return re.compile(f"{_LEFT}(?:{'|'.join(alts)}){_RIGHT}")


class Matcher:
    """Finds the surface-form targets of all classes of a feature in one regex pass per sentence."""

    def __init__(self, feature: Feature) -> None:
        self.feature = feature
        self._lookup: dict[tuple[bool, str], list[tuple[int, str]]] = {}
        sensitive: dict[str, bool] = {}
        words = []
        for i, c in enumerate(feature.classes):
            if c.lemma:
                continue  # lemma classes are matched on spaCy tokens (nlp.py)
            for t in c.targets:
                self._lookup.setdefault((c.case_sensitive, c.key(t)), []).append((i, t))
                sensitive[t] = sensitive.get(t, False) or c.case_sensitive
                words.append(t)
        self.pattern = word_pattern(words, sensitive)

    def find(self, sentence: str) -> list[Match]:
        """Surface matches in ``sentence``, left to right (constraints not yet applied).

        A word listed in several (constrained) classes gives one candidate match per class on the same span;
        the constraints keep the right one (:func:`gradiend.data.nlp.filter_and_add`).
        """
        out = []
        for m in self.pattern.finditer(sentence):
            for index, target in self._resolve(m.group(0)):
                out.append(Match(m.start(), m.end(), m.group(0), index, target))
        return out

    def _resolve(self, text: str) -> list[tuple[int, str]]:
        norm = normalize_target(text)
        return self._lookup.get((True, norm), []) + self._lookup.get((False, norm.casefold()), [])
