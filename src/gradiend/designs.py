"""Study designs: generators of tasks over one feature data set's classes.

A design is a table of a suite file (``[[designs]]``) with a ``kind``:

* ``all_pairs`` — every pair of ``classes`` (default: all classes of the data set), in class order;
* ``pairs`` — an explicit list ``pairs = [["he", "she"], ...]`` (first = positive);
* ``merged`` — two groups of classes (``groups = {SG = ["1SG", "3SG"], PL = ["1PL", "3PL"]}``), optionally
  with ``clusters`` (transition groups) that keep only the transitions inside each cluster;
* ``one_vs_rest`` — each class of ``classes`` against the union of the others (the published sense);
* ``all_but_one`` — over ``pairs`` of (positive, negative) classes: for each pair, one merged task of all the
  *other* pairs (positives vs negatives, transitions only within each pair), so the held-out pair can test
  whether the direction generalises.

Every design may set ``identity`` (a list of classes, or ``"others"``) and ``overrides`` (a table of run settings
for its features, e.g. ``{train = {lr = 1e-4}}``). The result is a list of :class:`FeatureSpec`: a name and the
``[task]`` section of its run. Nothing else in the library knows which design made a task.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gradiend.errors import GradiendError

KINDS = ("all_pairs", "pairs", "merged", "one_vs_rest", "all_but_one")
_KEYS = {"kind", "dataset", "classes", "pairs", "groups", "clusters", "positive", "name", "identity", "overrides"}


@dataclass(frozen=True)
class FeatureSpec:
    """One GRADIEND of a study: its name, the ``[task]`` section and the design's setting overrides."""

    name: str
    task: Mapping[str, Any]
    overrides: Mapping[str, Any] = field(default_factory=dict)


def expand(design: Mapping[str, Any], class_ids: Sequence[str]) -> list[FeatureSpec]:
    """The features one design declares over a data set with ``class_ids`` (validated: unknown classes named)."""
    unknown = sorted(set(design) - _KEYS)
    if unknown:
        raise GradiendError(f"design keys {unknown} are unknown; known: {', '.join(sorted(_KEYS))}")
    kind = design.get("kind")
    if kind not in _GENERATORS:
        raise GradiendError(f"design kind {kind!r} is unknown; choose one of {', '.join(KINDS)}")
    specs = _GENERATORS[kind](design, list(class_ids))
    extra = {k: design[k] for k in ("identity",) if k in design}
    overrides = dict(design.get("overrides", {}))
    return [FeatureSpec(s.name, {**s.task, **extra}, overrides) for s in specs]


def _classes(design: Mapping[str, Any], class_ids: list[str]) -> list[str]:
    chosen = list(design.get("classes", class_ids))
    _check_known(chosen, class_ids, "classes")
    if len(chosen) < 2:
        raise GradiendError(f"a {design['kind']} design needs at least two classes, got {chosen}")
    return chosen


def _check_known(names: Sequence[str], class_ids: list[str], where: str) -> None:
    unknown = [c for c in names if c not in class_ids]
    if unknown:
        raise GradiendError(f"{where} names unknown class(es) {unknown}; the data set's classes: {', '.join(class_ids)}")


def _pairs(design: Mapping[str, Any], class_ids: list[str]) -> list[tuple[str, str]]:
    pairs = design.get("pairs")
    if not isinstance(pairs, list) or not pairs:
        raise GradiendError(f"a {design['kind']} design needs pairs = [[A, B], ...]")
    out = []
    for item in pairs:
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and item[0] != item[1]):
            raise GradiendError(f"pair {item!r} is not two different classes [A, B]")
        _check_known(item, class_ids, f"pair {list(item)}")
        out.append((str(item[0]), str(item[1])))
    return out


def _pair_spec(a: str, b: str) -> FeatureSpec:
    return FeatureSpec(f"{a}_vs_{b}", {"positive": a, "negative": b})


def all_pairs(design: Mapping[str, Any], class_ids: list[str]) -> list[FeatureSpec]:
    return [_pair_spec(a, b) for a, b in itertools.combinations(_classes(design, class_ids), 2)]


def pairs(design: Mapping[str, Any], class_ids: list[str]) -> list[FeatureSpec]:
    return [_pair_spec(a, b) for a, b in _pairs(design, class_ids)]


def merged(design: Mapping[str, Any], class_ids: list[str]) -> list[FeatureSpec]:
    groups = design.get("groups")
    if not isinstance(groups, Mapping) or len(groups) != 2:
        raise GradiendError("a merged design needs groups = {A = [classes...], B = [classes...]} (two groups)")
    for gid, members in groups.items():
        _check_known(list(members), class_ids, f"group {gid!r}")
    names = list(groups)
    positive = design.get("positive", names[0])
    negative = next(g for g in names if g != positive)
    task = {"groups": {g: list(m) for g, m in groups.items()}, "positive": positive}
    if "clusters" in design:
        task["clusters"] = [list(c) for c in design["clusters"]]
    return [FeatureSpec(str(design.get("name", f"{positive}_vs_{negative}")), task)]


def one_vs_rest(design: Mapping[str, Any], class_ids: list[str]) -> list[FeatureSpec]:
    chosen = _classes(design, class_ids)
    return [FeatureSpec(f"{c}_vs_rest", {"groups": {c: [c], f"non_{c}": [o for o in chosen if o != c]},
                                         "positive": c}) for c in chosen]


def all_but_one(design: Mapping[str, Any], class_ids: list[str]) -> list[FeatureSpec]:
    chosen = _pairs(design, class_ids)
    if len(chosen) < 2:
        raise GradiendError("an all_but_one design needs at least two pairs (one is held out of each feature)")
    specs = []
    for i, (held_pos, held_neg) in enumerate(chosen):
        rest = [p for j, p in enumerate(chosen) if j != i]
        task = {"groups": {"positive": [p for p, _ in rest], "negative": [n for _, n in rest]},
                "positive": "positive", "clusters": [list(p) for p in rest]}
        specs.append(FeatureSpec(f"all_but_{held_pos}_{held_neg}", task))
    return specs


_GENERATORS: dict[str, Callable[[Mapping[str, Any], list[str]], list[FeatureSpec]]] = {
    "all_pairs": all_pairs, "pairs": pairs, "merged": merged, "one_vs_rest": one_vs_rest, "all_but_one": all_but_one,
}
