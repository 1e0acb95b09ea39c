"""Suites: several features on one base model, trained and evaluated as one study.

A suite file names feature classes once and says which features to build from them::

    name = "english-grammar"
    output_dir = "runs"
    features = [["3SG", "3PL"], ["is", "are"]]   # or "all_pairs", or "one_vs_rest"

    [classes]
    3SG = ["he", "she", "it"]
    3PL = ["they"]
    ...

    [base]            # every section of a run config except data.classes, shared by all features
                      # ([base.data.constraints.<class>] apply to the features that use the class)
    [base.model]
    spec = "offline:splade-tiny"
    [base.data]
    texts = "offline:wiki-en"

Each feature becomes a run directory ``<output_dir>/<name>/<A>_vs_<B>``; the base model is loaded once for all of
them. Afterwards the runs are compared (:func:`gradiend.study.compare_runs`) into ``<study>/comparison`` and a study
report links every run.
"""

from __future__ import annotations

import copy
import itertools
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradiend.config import ExperimentConfig, config_from_dict
from gradiend.errors import GradiendError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger(__name__)

_TOP_KEYS = ("name", "output_dir", "features", "classes", "base", "compare")


@dataclass(frozen=True)
class Suite:
    """The study directory and one :class:`ExperimentConfig` per feature."""

    name: str
    output_dir: str
    runs: tuple[ExperimentConfig, ...]
    compare: Mapping[str, Any]

    @property
    def study_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def feature_pairs(classes: Mapping[str, Sequence[str]], features: Any) -> list[tuple[str, str]]:
    """Resolve ``features``: an explicit list of [A, B] pairs, ``"all_pairs"`` or ``"one_vs_rest"``."""
    ids = list(classes)
    if features == "all_pairs":
        return list(itertools.combinations(ids, 2))
    if features == "one_vs_rest":
        return [(c, f"non_{c}") for c in ids]
    if not isinstance(features, list) or not features:
        raise GradiendError('features must be a list of [A, B] pairs, "all_pairs" or "one_vs_rest"')
    pairs = []
    for item in features:
        if not (isinstance(item, list) and len(item) == 2):
            raise GradiendError(f"feature {item!r} is not a pair [A, B]")
        for cid in item:
            if cid not in classes:
                raise GradiendError(f"feature {item!r} names unknown class {cid!r}; classes: {', '.join(ids)}")
        pairs.append((item[0], item[1]))
    return pairs


def _class_words(classes: Mapping[str, Sequence[str]], cid: str) -> list[str]:
    if cid.startswith("non_") and cid not in classes:
        own = cid[len("non_"):]
        return [w for other, words in classes.items() if other != own for w in words]
    return list(classes[cid])


def suite_from_dict(raw: Mapping[str, Any]) -> Suite:
    """Validate a parsed suite file and build one run configuration per feature."""
    for key in raw:
        if key not in _TOP_KEYS:
            raise GradiendError(f"unknown key {key!r} in the suite file; known: {', '.join(_TOP_KEYS)}")
    for key in ("name", "classes", "base"):
        if key not in raw:
            raise GradiendError(f"the suite file needs '{key}'")
    classes = raw["classes"]
    name, output_dir = str(raw["name"]), str(raw.get("output_dir", "runs"))
    runs = []
    for a, b in feature_pairs(classes, raw.get("features", "all_pairs")):
        cfg = copy.deepcopy(dict(raw["base"]))
        data = cfg.setdefault("data", {})
        if "classes" in data:
            raise GradiendError("[base.data] must not set classes: the suite's [classes] and features decide them")
        data["classes"] = {a: _class_words(classes, a), b: _class_words(classes, b)}
        constraints = data.get("constraints")
        if isinstance(constraints, Mapping):  # [base.data.constraints.<class>]: each feature takes its own
            unknown = [c for c in constraints if c not in classes]
            if unknown:
                raise GradiendError(f"[base.data.constraints] names unknown class(es) {unknown}; classes: "
                                    f"{', '.join(classes)}")
            data["constraints"] = {c: v for c, v in constraints.items() if c in (a, b)}
        cfg["name"] = f"{a}_vs_{b}"
        cfg["output_dir"] = str(Path(output_dir) / name)
        rewrite = cfg.setdefault("rewrite", {})
        rewrite.setdefault("strengthen", [a])
        runs.append(config_from_dict(cfg))
    return Suite(name, output_dir, tuple(runs), dict(raw.get("compare", {})))


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    if not path.is_file():
        raise GradiendError(f"suite file {str(path)!r} does not exist")
    return suite_from_dict(tomllib.loads(path.read_text()))


def run_suite(suite: Suite, *, force: bool = False, progress: bool = True) -> Path:
    """Run every feature (one loaded base model), compare them, write the study report; returns the study dir."""
    from gradiend.pipeline import Run, run
    from gradiend.report import write_study_report
    from gradiend.study import compare_runs

    specs = {c.model.spec for c in suite.runs}
    if len(specs) != 1:
        raise GradiendError(f"a suite runs on one base model, got {sorted(specs)}")
    lm = Run(suite.runs[0]).lm
    run_dirs = []
    for config in suite.runs:
        log.info("suite %s: feature %s", suite.name, config.name)
        result = run(config, force=force, progress=progress, lm=lm)
        run_dirs.append(result.run_dir)
    figures, notes = [], []
    if len(run_dirs) >= 2:
        comparison = compare_runs(run_dirs, suite.study_dir / "comparison", lm=lm, **suite.compare)
        figures = [(p, p.stem.replace("_", " ")) for p in comparison.figures]
        pairs = ", ".join(f"{a} & {b}" for a, b in comparison.above_chance) or "none"
        notes = [f"Top-k overlap above chance (hypergeometric, Bonferroni-corrected): {pairs}. "
                 "Matrices as CSV in comparison/."]
    write_study_report(run_dirs, suite.study_dir / "report.html", title=f"GRADIEND study: {suite.name}",
                       write_run_reports=False, figures=figures, notes=notes)
    return suite.study_dir
