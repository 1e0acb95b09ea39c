"""Read a run directory into the numbers a report shows, tolerating missing or unreadable parts.

Every reader returns None for a file that is not there (the stage did not run) and records a problem for a file
that is there but cannot be read, so a half-finished run still gets a report that says what is missing.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gradiend import constants as C

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

TIMINGS_FILE = C.TIMINGS_FILE
WEAKEN_SUFFIX = "_weaken"


@dataclass(frozen=True)
class Interval:
    """A metric value with its 95% interval (None where the file gives none)."""

    value: float
    low: float | None = None
    high: float | None = None

    @classmethod
    def parse(cls, obj: Any) -> Interval | None:
        if isinstance(obj, (int, float)) and not isinstance(obj, bool):
            return cls(float(obj))
        if not isinstance(obj, dict) or not isinstance(obj.get("value"), (int, float)):
            return None
        ci = obj.get("ci")
        if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci):
            return cls(float(obj["value"]), float(ci[0]), float(ci[1]))
        return cls(float(obj["value"]))


@dataclass(frozen=True)
class Rewrite:
    """One selection of ``decoder.json``: strengthen (key = class id) or weaken (key = ``<class>_weaken``)."""

    key: str
    class_id: str
    weaken: bool
    useful: bool
    h: float | None
    alpha: float | None
    value: float | None
    base_value: float | None
    lms: float | None
    base_lms: float | None
    lms_ratio: float | None
    metric: str = ""  # what ``value`` measures, as decoder.json names it
    reason: str = ""  # why the cell was chosen, or why no rewrite is useful
    shift: Interval | None = None  # value − base value with its 95% interval
    lms_ratio_ci: Interval | None = None  # the LMS ratio with its 95% interval

    @classmethod
    def parse(cls, key: str, obj: dict[str, Any]) -> Rewrite:
        weaken = key.endswith(WEAKEN_SUFFIX)

        def num(name: str) -> float | None:
            value = obj.get(name)
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

        return cls(
            key=key, class_id=key.removesuffix(WEAKEN_SUFFIX) if weaken else key, weaken=weaken,
            useful=bool(obj.get("useful", False)), h=num("h"), alpha=num("alpha"), value=num("value"),
            base_value=num("base_value"), lms=num("lms"), base_lms=num("base_lms"), lms_ratio=num("lms_ratio"),
            metric=str(obj.get("metric") or ""), reason=str(obj.get("reason") or ""),
            shift=Interval.parse(obj.get("shift")),
            lms_ratio_ci=Interval.parse({"value": obj.get("lms_ratio"), "ci": obj.get("lms_ratio_ci")}),
        )


@dataclass
class RunData:
    """Everything of one run directory that the report uses; None = that part did not run."""

    run_dir: Path
    name: str
    config_text: str | None = None
    config: dict[str, Any] | None = None
    data_meta: dict[str, Any] | None = None
    training: pd.DataFrame | None = None
    encoder: dict[str, Any] | None = None
    encodings: pd.DataFrame | None = None
    decoder: dict[str, Any] | None = None
    grid: pd.DataFrame | None = None
    timings: dict[str, Any] | None = None
    gradiend_config: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def model(self) -> str | None:
        model = (self.config or {}).get("model")
        return str(model.get("spec")) if isinstance(model, dict) and "spec" in model else None

    @property
    def classes(self) -> dict[str, list[str]]:
        """Class id -> target words from the config, else the class ids of encoder.json (without words)."""
        data = (self.config or {}).get("data")
        classes = data.get("classes") if isinstance(data, dict) else None
        if isinstance(classes, dict) and classes:
            return {str(k): [str(w) for w in v] if isinstance(v, list) else [] for k, v in classes.items()}
        ids = (self.encoder or {}).get("classes")
        return {str(c): [] for c in ids} if isinstance(ids, list) else {}

    @property
    def correlation(self) -> Interval | None:
        return Interval.parse((self.encoder or {}).get("pearson"))

    @property
    def rewrites(self) -> list[Rewrite]:
        selected = (self.decoder or {}).get("selected")
        if not isinstance(selected, dict):
            return []
        return [Rewrite.parse(str(k), v) for k, v in selected.items() if isinstance(v, dict)]


def read_run(run_dir: str | Path) -> RunData:
    """Read every part of ``run_dir`` that exists (layout in docs/architecture.md)."""
    run_dir = Path(run_dir)
    run = RunData(run_dir=run_dir, name=run_dir.resolve().name)
    metrics = run_dir / C.METRICS_DIR
    run.config_text = _read(run, run_dir / C.CONFIG_FILE, lambda p: p.read_text())
    if run.config_text is not None:
        run.config = _parse(run, C.CONFIG_FILE, lambda: tomllib.loads(run.config_text))
        if isinstance((run.config or {}).get("name"), str):
            run.name = run.config["name"]
    run.data_meta = _read(run, run_dir / C.DATA_DIR / C.DATA_META_FILE, _json_object)
    run.training = _read(run, metrics / C.TRAINING_LOG_FILE, lambda p: pd.read_json(p, lines=True))
    run.encoder = _read(run, metrics / C.ENCODER_METRICS_FILE, _json_object)
    run.encodings = _read(run, metrics / C.ENCODINGS_FILE, pd.read_parquet)
    run.decoder = _read(run, metrics / C.DECODER_METRICS_FILE, _json_object)
    run.grid = _read(run, metrics / C.DECODER_GRID_FILE, pd.read_csv)
    run.timings = _read(run, metrics / TIMINGS_FILE, _json_object)
    run.gradiend_config = _read(run, run_dir / C.GRADIEND_DIR / C.GRADIEND_CONFIG_FILE, _json_object)
    return run


def _json_object(path: Path) -> dict[str, Any]:
    obj = json.loads(path.read_text())
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _read(run: RunData, path: Path, reader: Any) -> Any:
    if not path.is_file():
        return None
    return _parse(run, str(path.relative_to(run.run_dir)), lambda: reader(path))


def _parse(run: RunData, what: str, parse: Any) -> Any:
    # a report of a broken run must still render: any parse failure becomes a listed problem, not a crash
    try:
        return parse()
    except Exception as exc:  # any parse failure is reported on the page
        run.problems.append(f"{what}: unreadable ({exc.__class__.__name__}: {exc})")
        return None
