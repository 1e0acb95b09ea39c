"""Tasks: what one GRADIEND learns from a feature data set.

A feature data set (the pairs table) holds N ≥ 2 feature classes and every transition (factual class →
alternative class) that the text supports. A :class:`Task` draws one GRADIEND's training problem from it:

* two **groups** of raw classes: the *positive* group encodes toward +1, the *negative* one toward −1. A plain
  pair has one class per group (``3SG`` vs ``3PL``); a merged task several (``SG = {1SG, 3SG}`` vs
  ``PL = {1PL, 3PL}``), and its labels follow the groups;
* the **transitions** it trains on: every transition between the groups, or only those inside the given
  *transition groups* (clusters ``{1SG, 1PL}`` and ``{3SG, 3PL}`` keep 1SG ↔ 1PL and 3SG ↔ 3PL, never 1SG → 3PL);
* optional **identity classes**: rows of classes outside the groups enter as identity rows (alternative =
  factual, label 0), so the encoder learns "neither" as 0.

Training, encoder and decoder evaluation and comparison all take (pairs table, task); none of them knows how the
task was declared (pair, merge map, one-vs-rest, all-but-one): suite designs are generators of tasks.

>>> task = Task.merged({"SG": ["1SG", "3SG"], "PL": ["1PL", "3PL"]}, clusters=[["1SG", "1PL"], ["3SG", "3PL"]])
>>> task.transitions
(('1SG', '1PL'), ('1PL', '1SG'), ('3SG', '3PL'), ('3PL', '3SG'))
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from gradiend.errors import GradiendError

#: ``identity = "others"``: every class of the data set outside the task's groups enters as identity rows
IDENTITY_OTHERS = "others"
_ROW_KEY = ("masked", "factual")


def transition_name(factual_class: str, alternative_class: str) -> str:
    """How a transition is named in batches, tables and logs: ``"3SG->3PL"``."""
    return f"{factual_class}->{alternative_class}"


@dataclass(frozen=True)
class Task:
    """A positive and a negative group of classes, the transitions trained between them, and identity classes.

    Build one with :meth:`pair`, :meth:`merged` or :meth:`from_spec`; every constructor validates (a class in two
    groups, a transition that does not cross the groups, an identity class inside a group: each a clear error).
    """

    positive: str
    negative: str
    groups: Mapping[str, tuple[str, ...]]
    transitions: tuple[tuple[str, str], ...]
    identity: tuple[str, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        groups = {str(k): tuple(str(c) for c in v) for k, v in self.groups.items()}
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "transitions", tuple(dict.fromkeys((str(f), str(a)) for f, a in self.transitions)))
        object.__setattr__(self, "identity", tuple(dict.fromkeys(str(c) for c in self.identity)))
        self._validate()
        if not self.name:
            object.__setattr__(self, "name", f"{self.positive}_vs_{self.negative}")

    def _validate(self) -> None:
        if self.positive == self.negative or set(self.groups) != {self.positive, self.negative}:
            raise GradiendError(f"a task needs two different groups, positive and negative; got positive "
                                f"{self.positive!r}, negative {self.negative!r}, groups {sorted(self.groups)}")
        owner: dict[str, str] = {}
        for gid, members in self.groups.items():
            if not members:
                raise GradiendError(f"task group {gid!r} has no classes")
            for cid in members:
                if owner.setdefault(cid, gid) != gid:
                    raise GradiendError(f"class {cid!r} is in two groups ({owner[cid]!r} and {gid!r}); "
                                        "a merge map must put every class in exactly one group")
        for f, a in self.transitions:
            if owner.get(f) is None or owner.get(a) is None or owner[f] == owner[a]:
                raise GradiendError(f"transition {transition_name(f, a)} does not go from one group of the task "
                                    f"to the other ({self.describe_groups()})")
        if not self.transitions:
            raise GradiendError(f"task {self.describe_groups()} has no transitions to train on")
        inside = [c for c in self.identity if c in owner]
        if inside:
            raise GradiendError(f"identity class(es) {inside} are already in a group of the task")

    # --- constructors ------------------------------------------------------------------------------------
    @classmethod
    def pair(cls, positive: str, negative: str, identity: Iterable[str] = (), name: str = "") -> Task:
        """One class against another: transitions positive → negative and back."""
        return cls(positive, negative, {positive: (positive,), negative: (negative,)},
                   ((positive, negative), (negative, positive)), tuple(identity), name)

    @classmethod
    def merged(
        cls,
        groups: Mapping[str, Sequence[str]],
        *,
        positive: str | None = None,
        clusters: Sequence[Sequence[str]] | None = None,
        identity: Iterable[str] = (),
        name: str = "",
    ) -> Task:
        """Two groups of classes (a merge map, first group positive unless ``positive`` says otherwise).

        ``clusters`` (transition groups) keep only the transitions between classes of the same cluster; without
        them every class of one group pairs with every class of the other.
        """
        if len(groups) != 2:
            raise GradiendError(f"a merge map needs exactly two groups, got {len(groups)}: {list(groups)}")
        pos = positive if positive is not None else next(iter(groups))
        if pos not in groups:
            raise GradiendError(f"positive group {pos!r} is not one of the merge map's groups {list(groups)}")
        neg = next(g for g in groups if g != pos)
        groups = {g: tuple(groups[g]) for g in groups}
        return cls(pos, neg, groups, _cross_transitions(groups, clusters), tuple(identity), name)

    # --- views -------------------------------------------------------------------------------------------
    @property
    def group_ids(self) -> tuple[str, str]:
        """(positive, negative): the GRADIEND's classes, in the order of its sign contract."""
        return (self.positive, self.negative)

    @property
    def classes(self) -> tuple[str, ...]:
        """Every raw class of the two groups (positive group first)."""
        return self.groups[self.positive] + self.groups[self.negative]

    @property
    def is_pair(self) -> bool:
        return all(len(v) == 1 and v[0] == k for k, v in self.groups.items())

    def group_of(self, class_id: str) -> str | None:
        """The group a raw class belongs to, or None (identity or foreign classes)."""
        return next((g for g, members in self.groups.items() if class_id in members), None)

    def label_of(self, class_id: str) -> float:
        """+1 for a class of the positive group, −1 for the negative group, 0 for any other class."""
        group = self.group_of(class_id)
        return 0.0 if group is None else (1.0 if group == self.positive else -1.0)

    def source_label(self, source: str, factual_class: str, alternative_class: str) -> float:
        """Label of a row for the GRADIEND's source: the class of the source token (``diff``: the factual one).

        Identity rows (factual class = alternative class outside the groups) get 0.
        """
        if factual_class == alternative_class:
            return 0.0
        return self.label_of(alternative_class if source == "alternative" else factual_class)

    def describe_groups(self) -> str:
        def show(g: str) -> str:
            members = self.groups[g]
            return g if members == (g,) else f"{g} = {{{', '.join(members)}}}"
        return f"{show(self.positive)} vs {show(self.negative)}"

    def check_classes(self, known: Iterable[str]) -> None:
        """Raise naming every class of the task that the data set does not have."""
        known = list(known)
        unknown = [c for c in (*self.classes, *self.identity) if c not in known]
        if unknown:
            raise GradiendError(f"task {self.name!r} names class(es) {unknown} that the data set does not have; "
                                f"its classes: {', '.join(known)}")

    def with_identity(self, identity: str | Iterable[str], all_classes: Iterable[str]) -> Task:
        """A copy whose identity classes are ``identity`` (``"others"``: every class outside the groups)."""
        if isinstance(identity, str):
            if identity != IDENTITY_OTHERS:
                raise GradiendError(f"identity must be a list of classes or {IDENTITY_OTHERS!r}, got {identity!r}")
            identity = [c for c in all_classes if self.group_of(c) is None]
        return Task(self.positive, self.negative, self.groups, self.transitions, tuple(identity), self.name)

    # --- rows --------------------------------------------------------------------------------------------
    def rows(self, pairs: pd.DataFrame, split: str | None) -> dict[tuple[str, str], pd.DataFrame]:
        """Rows of ``split`` (None: every split) per trained transition, then one identity group per identity class.

        Identity rows are the distinct occurrences of the class (alternative = factual). Every group must have
        rows: a transition the text does not support in this split is a clear error.
        """
        _check_columns(pairs)
        rows = pairs if split is None else pairs[pairs["split"] == split]
        groups = {t: _transition(rows, *t) for t in self.transitions}
        groups.update({(c, c): identity_rows(rows, c) for c in self.identity})
        empty = [transition_name(*t) for t, g in groups.items() if g.empty]
        if empty:
            counts = rows.groupby(["factual_class", "alternative_class"]).size()
            have = ", ".join(f"{transition_name(*k)}: {n}" for k, n in counts.items()) or "none"
            raise GradiendError(f"task {self.name!r} has no {split or 'any'!r} rows for {', '.join(empty)}; rows per "
                                f"transition in that split: {have}. Use more text or another split")
        return groups

    # --- serialisation -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "positive": self.positive, "negative": self.negative,
                "groups": {g: list(m) for g, m in self.groups.items()},
                "transitions": [list(t) for t in self.transitions], "identity": list(self.identity)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Task:
        return cls(d["positive"], d["negative"], {g: tuple(m) for g, m in d["groups"].items()},
                   tuple(tuple(t) for t in d["transitions"]), tuple(d.get("identity", ())), d.get("name", ""))


@dataclass(frozen=True)
class TaskConfig:
    """The ``[task]`` section: which part of the feature data set one GRADIEND learns.

    Empty (the default) means the data set's two classes as a pair (a data set with more classes then needs
    ``positive``/``negative``). ``positive``/``negative`` name classes, or groups of ``groups`` (a merge map:
    group id → raw classes); ``clusters`` keeps only the transitions inside each cluster; ``identity`` lists
    classes whose rows enter as identity rows (label 0), or ``"others"`` for every class outside the groups.
    """

    positive: str | None = None
    negative: str | None = None
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    clusters: tuple[tuple[str, ...], ...] = ()
    identity: str | tuple[str, ...] = ()
    name: str = ""

    def resolve(self, class_ids: Sequence[str]) -> Task:
        """The :class:`Task` this section describes over a data set with ``class_ids``."""
        class_ids = list(class_ids)
        if self.groups:
            task = Task.merged(self.groups, positive=self.positive, clusters=self.clusters or None, name=self.name)
            if self.negative is not None and self.negative != task.negative:
                raise GradiendError(f"[task] negative = {self.negative!r} is not the merge map's other group "
                                    f"{task.negative!r}")
        else:
            task = Task.pair(*self._pair(class_ids), name=self.name)
        task = task.with_identity(self.identity, class_ids)
        task.check_classes(class_ids)
        return task

    def _pair(self, class_ids: list[str]) -> tuple[str, str]:
        if self.clusters:
            raise GradiendError("[task] clusters need a merge map ([task.groups])")
        if self.positive is None and self.negative is None:
            if len(class_ids) != 2:
                raise GradiendError(f"the data set has {len(class_ids)} classes ({', '.join(class_ids)}): say which "
                                    "pair to train with [task] positive = ... and negative = ...")
            return class_ids[0], class_ids[1]
        if self.positive is None or self.negative is None:
            raise GradiendError("[task] needs both positive and negative (or a merge map in [task.groups])")
        return self.positive, self.negative


def _cross_transitions(
    groups: Mapping[str, Sequence[str]], clusters: Sequence[Sequence[str]] | None
) -> tuple[tuple[str, str], ...]:
    a, b = (tuple(v) for v in groups.values())
    cross = [(x, y) for x, y in itertools.product(a, b)]
    if clusters is not None:
        cluster_of: dict[str, int] = {}
        for i, cluster in enumerate(clusters):
            for cid in cluster:
                if cluster_of.setdefault(cid, i) != i:
                    raise GradiendError(f"class {cid!r} is in two transition groups; each class may be in one")
        outside = [c for c in (*a, *b) if c not in cluster_of]
        if outside:
            raise GradiendError(f"class(es) {outside} of the merge map are in no transition group (clusters)")
        cross = [(x, y) for x, y in cross if cluster_of[x] == cluster_of[y]]
    return tuple(t for x, y in cross for t in ((x, y), (y, x)))


def _check_columns(pairs: pd.DataFrame) -> None:
    missing = [c for c in ("split", "factual_class", "alternative_class", *_ROW_KEY) if c not in pairs.columns]
    if missing:
        raise GradiendError(f"pairs table lacks column(s) {missing}")


def _transition(rows: pd.DataFrame, factual_class: str, alternative_class: str) -> pd.DataFrame:
    keep = (rows["factual_class"] == factual_class) & (rows["alternative_class"] == alternative_class)
    return rows[keep].reset_index(drop=True)


def identity_rows(rows: pd.DataFrame, class_id: str) -> pd.DataFrame:
    """The distinct occurrences of ``class_id`` as identity rows: alternative = factual, same class."""
    own = rows[rows["factual_class"] == class_id].drop_duplicates(subset=list(_ROW_KEY))
    return own.assign(alternative=own["factual"], alternative_class=own["factual_class"]).reset_index(drop=True)


def all_rows(pairs: pd.DataFrame, task: Task, split: str | None) -> pd.DataFrame:
    """Every row of ``split`` (None: all splits), identity rows of every class outside the task's groups added.

    Foreign transitions (between classes outside the groups, or a group class and a foreign one) stay as they are
    (label 0 by :meth:`Task.source_label` unless the source token is of a group class).
    """
    _check_columns(pairs)
    rows = pairs if split is None else pairs[pairs["split"] == split]
    others = [c for c in dict.fromkeys(rows["factual_class"].astype(str)) if task.group_of(c) is None]
    parts = [rows.reset_index(drop=True)] + [identity_rows(rows, c) for c in others]
    return pd.concat(parts, ignore_index=True)
