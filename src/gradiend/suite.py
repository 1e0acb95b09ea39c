"""Suites: a study of many GRADIENDs on one base model, declared in one TOML file.

A suite names its feature data sets once (each created once and shared by every run that uses it) and declares
the GRADIENDs to train on them with designs (:mod:`gradiend.designs`)::

    name = "english-pronouns"
    output_dir = "runs"

    [datasets.pronouns.classes]          # one data set: N classes, every transition between them
    1SG = ["i"]
    1PL = ["we"]
    3SG = ["he", "she", "it"]
    3PL = ["they"]

    [[designs]]
    dataset = "pronouns"                 # optional when there is one data set
    kind = "all_pairs"                   # or pairs, merged, one_vs_rest, all_but_one

    [[designs]]
    kind = "merged"
    name = "SG_vs_PL"
    groups = {SG = ["1SG", "3SG"], PL = ["1PL", "3PL"]}
    clusters = [["1SG", "1PL"], ["3SG", "3PL"]]

    [overrides.SG_vs_PL.train]           # per-feature settings (any section of a run config)
    lr = 1e-4

    [base.model]                         # every section of a run config, shared by all features
    spec = "offline:splade-tiny"
    [base.data]                          # a data set's own keys ([datasets.<name>.*]) override these
    texts = "offline:wiki-en"

Data sets live in ``<study>/data/<name>``, runs in ``<study>/<feature>``, the comparison in ``<study>/comparison``.
The older form (top-level ``[classes]`` and ``features = [["A", "B"], ...] | "all_pairs" | "one_vs_rest"``) is one
data set named ``default`` with one design.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gradiend.config import (
    DataSection,
    ExperimentConfig,
    apply_overrides,
    apply_raw_overrides,
    config_from_dict,
    data_section_from_dict,
    to_plain,
)
from gradiend.designs import FeatureSpec, expand
from gradiend.errors import GradiendError
from gradiend.executors import ExecutionConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_TOP_KEYS = ("name", "output_dir", "datasets", "designs", "overrides", "base", "compare", "execution",
             "features", "classes")
DATA_DIR = "data"
COMPARISON_DIR = "comparison"


@dataclass(frozen=True)
class SuiteRun:
    """One GRADIEND of the study: its run configuration and the data set it reads."""

    config: ExperimentConfig
    dataset: str

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class Suite:
    """The study directory, its data sets (a ``[data]`` section each) and its runs."""

    name: str
    output_dir: str
    datasets: Mapping[str, DataSection]
    runs: tuple[SuiteRun, ...]
    compare: Mapping[str, Any] = field(default_factory=dict)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)

    @property
    def study_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def data_dir(self, dataset: str) -> Path:
        return self.study_dir / DATA_DIR / dataset

    @property
    def configs(self) -> tuple[ExperimentConfig, ...]:
        return tuple(r.config for r in self.runs)


def suite_from_dict(raw: Mapping[str, Any], overrides: Sequence[str] = (), output_dir: str | None = None) -> Suite:
    """Validate a parsed suite file and build one run configuration per feature.

    ``overrides`` (``section.key=value``, as ``gradiend run --set``) apply to every run and data set;
    ``output_dir`` replaces the file's.
    """
    unknown = [k for k in raw if k not in _TOP_KEYS]
    if unknown:
        raise GradiendError(f"unknown key(s) {unknown} in the suite file; known: {', '.join(_TOP_KEYS)}")
    for key in ("name", "base"):
        if key not in raw:
            raise GradiendError(f"the suite file needs '{key}'")
    raw = _modernise(raw)
    name, out = str(raw["name"]), str(output_dir or raw.get("output_dir", "runs"))
    base = dict(raw["base"])
    if "classes" in base.get("data", {}):
        raise GradiendError("[base.data] must not set classes: the suite's [datasets.<name>.classes] decide them")
    study_dir = Path(out) / name
    datasets = {ds: _dataset_config(base, section, ds, study_dir, overrides)
                for ds, section in _table(raw, "datasets").items()}
    if not datasets:
        raise GradiendError("the suite declares no data set: add [datasets.<name>.classes]")
    runs = _runs(raw, base, datasets, study_dir, overrides)
    execution = ExecutionConfig.from_dict(_table(raw, "execution"))
    return Suite(name, out, datasets, runs, dict(raw.get("compare", {})), execution)


def _table(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise GradiendError(f"[{key}] must be a table")
    return value


def _modernise(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The older form (top-level [classes] + features) as one data set ``default`` with one design."""
    raw = dict(raw)
    if "classes" not in raw:
        if "features" in raw:
            raise GradiendError("features = ... needs the classes in a top-level [classes] table")
        return raw
    if "datasets" in raw or "designs" in raw:
        raise GradiendError("use either [datasets] with [[designs]], or the older [classes] with features, not both")
    features = raw.pop("features", "all_pairs")
    classes = raw.pop("classes")
    if features in ("all_pairs", "one_vs_rest"):
        design: dict[str, Any] = {"kind": features}
    elif isinstance(features, list):
        design = {"kind": "pairs", "pairs": features}
    else:
        raise GradiendError('features must be a list of [A, B] pairs, "all_pairs" or "one_vs_rest"')
    raw["datasets"] = {"default": {"classes": classes}}
    raw["designs"] = [design]
    return raw


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of plain TOML tables (``extra`` wins)."""
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _dataset_config(base: Mapping[str, Any], section: Any, dataset: str, study_dir: Path,
                    overrides: Sequence[str]) -> DataSection:
    if not isinstance(section, Mapping):
        raise GradiendError(f"[datasets.{dataset}] must be a table (classes, and optionally texts, constraints, ...)")
    raw = apply_raw_overrides(_merge({"data": base.get("data", {})}, {"data": section}), overrides)
    constraints = raw["data"].get("constraints", {})
    classes = raw["data"].get("classes", {})
    unknown = [c for c in constraints if classes and c not in classes]
    if unknown:
        raise GradiendError(f"constraints name unknown class(es) {unknown} of data set {dataset!r}; classes: "
                            f"{', '.join(classes)}")
    return data_section_from_dict(raw["data"], where=f"datasets.{dataset}")


def _runs(raw: Mapping[str, Any], base: Mapping[str, Any], datasets: Mapping[str, DataSection],
          study_dir: Path, overrides: Sequence[str]) -> tuple[SuiteRun, ...]:
    designs = raw.get("designs", [])
    if not isinstance(designs, list) or not designs:
        raise GradiendError("the suite declares no design: add [[designs]] with kind = \"all_pairs\" (or pairs, "
                            "merged, one_vs_rest, all_but_one)")
    per_feature = _table(raw, "overrides")
    runs: list[SuiteRun] = []
    for design in designs:
        dataset = _dataset_of(design, datasets)
        classes = _class_ids(datasets[dataset], dataset)
        for spec in expand(design, classes):
            runs.append(_run(spec, dataset, datasets[dataset], base, per_feature, study_dir, overrides))
    _check_unique([r.name for r in runs])
    stray = [n for n in per_feature if n not in {r.name for r in runs}]
    if stray:
        raise GradiendError(f"[overrides] names feature(s) {stray} that no design declares; features: "
                            f"{', '.join(r.name for r in runs)}")
    return tuple(runs)


def _dataset_of(design: Any, datasets: Mapping[str, DataSection]) -> str:
    if not isinstance(design, Mapping):
        raise GradiendError("every [[designs]] entry must be a table with a kind")
    name = design.get("dataset")
    if name is None:
        if len(datasets) != 1:
            raise GradiendError(f"the suite has {len(datasets)} data sets: every design needs dataset = one of "
                                f"{', '.join(datasets)}")
        return next(iter(datasets))
    if name not in datasets:
        raise GradiendError(f"design names data set {name!r}; data sets: {', '.join(datasets)}")
    return str(name)


def _class_ids(data: DataSection, name: str) -> list[str]:
    classes = list(data.classes)
    if not classes:
        raise GradiendError(f"data set {name!r} needs its classes listed ([datasets.{name}.classes]; for an imported "
                            "table the class ids with empty word lists)")
    return classes


def _run(spec: FeatureSpec, dataset: str, data: DataSection, base: Mapping[str, Any],
         per_feature: Mapping[str, Any], study_dir: Path, overrides: Sequence[str]) -> SuiteRun:
    raw = _merge(base, {"task": dict(spec.task), "name": spec.name, "output_dir": str(study_dir)})
    raw["data"] = to_plain(data)
    raw = _merge(_merge(raw, spec.overrides), per_feature.get(spec.name, {}))
    rewrite = raw.setdefault("rewrite", {})
    rewrite.setdefault("strengthen", [spec.task.get("positive") or next(iter(spec.task["groups"]))])
    config = apply_overrides(config_from_dict(raw), overrides)
    if config.data != data:
        raise GradiendError(f"feature {spec.name!r} overrides [data]: a data set is shared by its features; declare "
                            "another data set instead")
    return SuiteRun(config, dataset)


def _check_unique(names: list[str]) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise GradiendError(f"feature name(s) {dupes} are declared twice; give merged designs a name, or split the "
                            "designs")


def load_suite(path: str | Path, overrides: Sequence[str] = (), output_dir: str | None = None) -> Suite:
    path = Path(path)
    if not path.is_file():
        raise GradiendError(f"suite file {str(path)!r} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise GradiendError(f"{path}: not valid TOML: {exc}") from exc
    return suite_from_dict(raw, overrides, output_dir)


def run_suite(suite: Suite, *, force: bool = False, progress: bool = True, **execution: Any) -> Path:
    """Create the data sets, train and evaluate every feature, compare them; returns the study directory.

    The study is planned as a graph of stages (:mod:`gradiend.study_plan`) and run by an executor: ``"local"``
    (in process, the default) or ``"ray"``, as the suite's ``[execution]`` says; keyword arguments (``executor=``,
    ``address=``, ``retries=``, ...; None keeps the suite's value) override it. ``<study>/study.json`` records what
    became of every node, also when the study is interrupted (:class:`~gradiend.executors.StudyInterrupted`).
    """
    from gradiend.executors import StudyInterrupted, get_executor
    from gradiend.study_plan import plan_study, write_summary

    config = ExecutionConfig.from_dict({**asdict(suite.execution),
                                        **{k: v for k, v in execution.items() if v is not None}})
    plan = plan_study(suite, force=force, progress=progress)
    executor = get_executor(config.executor, **config.options())
    try:
        outcome = executor.run(plan)
    except StudyInterrupted as exc:
        write_summary(suite, plan, exc.outcome)
        raise
    write_summary(suite, plan, outcome)
    return suite.study_dir
