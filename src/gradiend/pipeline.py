"""The run directory: data → train → encoder evaluation → decoder evaluation → rewrite → report.

``run(config)`` chains the stage functions over ``config.run_dir``. Each stage records its configuration
fingerprint in ``metrics/stages.json`` once its artifacts are written (atomically); a later run skips every stage
whose recorded fingerprint matches, so an interrupted run resumes where it stopped and an edited configuration
recomputes only what depends on the edit. ``force=True`` redoes everything.

>>> from gradiend.config import load_config
>>> from gradiend.pipeline import run
>>> result = run(load_config("examples/demo.toml"))  # doctest: +SKIP
>>> result.report                                     # doctest: +SKIP
PosixPath('runs/demo/report.html')
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gradiend import __version__
from gradiend import constants as C
from gradiend.artifacts import STAGE_OUTPUTS, Damage, DamagedArtifactError, damaged, data_damage, manifest
from gradiend.cards import write_cards
from gradiend.config import DataSection, ExperimentConfig, data_fingerprint_of, save_config, stage_fingerprint
from gradiend.data import Feature, FeatureClass, FeatureData, create_data, load_data
from gradiend.errors import GradiendError
from gradiend.io import read_json, write_json, write_jsonl
from gradiend.lm.load import LoadedModel, load_model
from gradiend.tasks import Task

log = logging.getLogger(__name__)

STAGES = C.STAGES
STAGES_FILE = C.STAGES_FILE
TIMINGS_FILE = C.TIMINGS_FILE
# which config fingerprint (gradiend.config.STAGE_SECTIONS) each pipeline stage depends on
_FINGERPRINT_OF = {"data": "data", "train": "train", "encoder": "evaluate", "decoder": "evaluate",
                   "rewrite": "rewrite", "report": "rewrite"}


@dataclass
class RunResult:
    """What ``run`` did: the run directory, which stages ran or were skipped, and the report path."""

    run_dir: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    report: Path | None = None


class Run:
    """A run directory and its stage bookkeeping; loads the base model only when a stage needs it."""

    def __init__(self, config: ExperimentConfig, run_dir: Path | None = None, progress: bool = True) -> None:
        self.config = config
        self.dir = Path(run_dir) if run_dir is not None else config.run_dir
        self.progress = progress
        self._lm: LoadedModel | Callable[[], LoadedModel] | None = None
        self.last_damage: dict[str, list[Damage]] = {}  # what is_done found damaged, per stage

    # --- paths ---------------------------------------------------------------------------------
    @property
    def metrics(self) -> Path:
        return self.dir / C.METRICS_DIR

    @property
    def gradiend_dir(self) -> Path:
        return self.dir / C.GRADIEND_DIR

    @property
    def data_dir(self) -> Path:
        """The run's ``data/``: its own, or a link to the data set it shares with other runs of a study."""
        return self.dir / C.DATA_DIR

    @property
    def task(self) -> Task:
        """The configured task over the data set's classes (the data stage must have run)."""
        return self.config.task.resolve(load_data(self.data_dir).feature.class_ids)

    # --- bookkeeping ---------------------------------------------------------------------------
    def recorded(self) -> dict[str, Any]:
        """The finished stages' records; a damaged ``stages.json`` counts as none finished (all redone)."""
        path = self.metrics / STAGES_FILE
        try:
            stages = read_json(path) if path.is_file() else {}
        except GradiendError as exc:
            log.warning("%s; every stage will be redone", exc)
            return {}
        return stages if isinstance(stages, dict) else {}

    def fingerprint(self, stage: str) -> str:
        return stage_fingerprint(self.config, _FINGERPRINT_OF[stage])

    def is_done(self, stage: str) -> bool:
        """The stage's recorded fingerprint matches the config and every artifact it recorded is intact."""
        if stage == "data":  # recorded in the data set itself, which several runs may share
            fresh = data_fingerprint(self.data_dir) == self.fingerprint("data")
        else:
            fresh = self.recorded().get(stage, {}).get("fingerprint") == self.fingerprint(stage)
        return fresh and self._intact(stage)

    def damaged(self, stage: str) -> list[Damage]:
        """The artifacts ``stage`` recorded that are missing or changed (none when nothing was recorded).

        The data set checks itself (data.json records its files): a study may share it and legitimately replace it.
        """
        return stage_damage(self.dir, stage, self.recorded().get(stage, {}))

    def _intact(self, stage: str) -> bool:
        problems = self.last_damage[stage] = self.damaged(stage)
        for p in problems:
            log.warning("stage %s: %s; the stage will be redone", stage, p.describe(self.dir))
        return not problems

    def invalidate_from(self, stage: str) -> None:
        """Forget ``stage`` and every later one (their artifacts depend on it)."""
        later = STAGES[STAGES.index(stage):]
        kept = {k: v for k, v in self.recorded().items() if k not in later}
        write_json(self.metrics / STAGES_FILE, kept)

    def mark_done(self, stage: str, seconds: float) -> None:
        if stage == "data":
            record_data_fingerprint(self.data_dir, self.fingerprint("data"))
        stages = self.recorded()
        stages[stage] = {"fingerprint": self.fingerprint(stage), "seconds": round(seconds, 3),
                         "artifacts": manifest(self.dir, STAGE_OUTPUTS[stage])}
        write_json(self.metrics / STAGES_FILE, stages)
        write_json(self.metrics / TIMINGS_FILE, {k: v["seconds"] for k, v in stages.items()})

    @property
    def lm(self) -> LoadedModel:
        if callable(self._lm):  # a factory (a study's shared model): called once, when a stage needs the model
            self._lm = self._lm()
        if self._lm is None:
            import torch

            from gradiend.lm.mlm_head import with_head

            lm = load_model(self.config.model.spec, dtype=getattr(torch, self.config.model.dtype),
                            device=self.config.model.device)
            self._lm = with_head(lm, self.config.model.head)
        return self._lm

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage, invalidate what follows it before it runs, record it when it succeeded."""
        self.invalidate_from(name)
        log.info("stage %s ...", name)
        t0 = time.perf_counter()
        yield
        seconds = time.perf_counter() - t0
        self.mark_done(name, seconds)
        log.info("stage %s done in %.1f s", name, seconds)


def run(
    config: ExperimentConfig,
    *,
    force: bool = False,
    until: str = "report",
    run_dir: str | Path | None = None,
    progress: bool = True,
    lm: LoadedModel | Callable[[], LoadedModel] | None = None,
    data_dir: str | Path | None = None,
) -> RunResult:
    """Run (or resume) the whole pipeline for ``config``; stages up to ``until`` inclusive.

    ``lm`` is the loaded base model, or a factory called only when a stage needs it. ``data_dir`` points the run
    at a data set shared with other runs (a study creates it once): ``<run>/data`` becomes a relative link to it,
    so every later command on the run directory finds its data.
    """
    if until not in STAGES:
        raise GradiendError(f"unknown stage {until!r}; stages: {', '.join(STAGES)}")
    r = Run(config, Path(run_dir) if run_dir else None, progress)
    r._lm = lm
    r.dir.mkdir(parents=True, exist_ok=True)
    if data_dir is not None:
        link_data(r.dir, Path(data_dir))
    save_config(config, r.dir / C.CONFIG_FILE)
    if force:
        r.invalidate_from("data")
    result = RunResult(r.dir)
    redo = False  # once a stage ran, every later stage runs too (its inputs changed)
    for name in STAGES[: STAGES.index(until) + 1]:
        if not redo and r.is_done(name):
            log.info("stage %s: up to date, skipped", name)
            result.skipped.append(name)
            continue
        if not redo:  # the versions that produce this run's artifacts from here on
            write_json(r.metrics / C.PROVENANCE_FILE, provenance())
        _run_stage(r, name, damage=[] if redo else r.last_damage.get(name, []))
        redo = True
        result.ran.append(name)
    report = r.dir / C.REPORT_FILE
    result.report = report if report.is_file() else None
    return result


def _run_stage(r: Run, name: str, damage: list[Damage]) -> None:
    """Run one stage; when it is redone because its artifacts were damaged and cannot be, say both."""
    try:
        STAGE_FUNCTIONS[name](r)
    except GradiendError as exc:
        if not damage:
            raise
        raise GradiendError(f"{damage[0].describe(r.dir)}, so the {name} stage was redone, but redoing it failed: "
                            f"{exc}") from None


# --- the stages ------------------------------------------------------------------------------------


def feature_of(d: DataSection) -> Feature:
    """The configured feature: classes in order, each with its ``[data.constraints]`` if any."""
    return Feature(tuple(
        FeatureClass(cid, tuple(words), **(asdict(d.constraints[cid]) if cid in d.constraints else {}))
        for cid, words in d.classes.items()
    ))


def make_data(d: DataSection) -> FeatureData:
    """The feature data set of a ``[data]`` section: mined from raw text, or imported from a prepared table."""
    if d.table is not None:
        from gradiend.data.table import import_table

        return import_table(d.table, d.options, classes=d.classes or None, neutral=d.neutral, hf_config=d.hf_config)
    texts = d.texts if isinstance(d.texts, str) else list(d.texts or ())
    return create_data(texts, feature_of(d), d.options, text_column=d.text_column, id_column=d.id_column,
                       max_documents=d.max_documents, hf_config=d.hf_config, hf_split=d.hf_split)


def create_dataset(d: DataSection, data_dir: str | Path, rebuild: bool = False) -> FeatureData:
    """Create (or keep, when its recorded fingerprint matches) the data set of a ``[data]`` section in ``data_dir``.

    ``rebuild`` creates it even then (its files were found damaged).
    """
    data_dir = Path(data_dir)
    fingerprint = data_fingerprint_of(d)
    if not rebuild and data_fingerprint(data_dir) == fingerprint:
        log.info("data set %s: up to date, kept", data_dir)
        return load_data(data_dir)
    data = make_data(d)
    data.meta["stage_fingerprint"] = fingerprint
    data.save(data_dir)
    return data


def data_fingerprint(data_dir: Path) -> str | None:
    """The configuration fingerprint recorded in a data set's ``data.json`` (None: none there)."""
    path = data_dir / C.DATA_META_FILE
    if not path.is_file():
        return None
    try:
        meta = read_json(path)
    except GradiendError:  # damaged: the data set counts as not created
        return None
    return meta.get("stage_fingerprint") if isinstance(meta, dict) else None


def link_data(run_dir: Path, data_dir: Path) -> None:
    """Make ``<run_dir>/data`` a relative link to a shared data set (replacing a run-owned copy)."""
    link = run_dir / C.DATA_DIR
    target = Path(os.path.relpath(data_dir.resolve(), run_dir.resolve()))
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    data_dir.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)


def record_data_fingerprint(data_dir: Path, fingerprint: str) -> None:
    """Record in ``data.json`` which configuration the data set stands for (an adopted one included)."""
    path = data_dir / C.DATA_META_FILE
    meta = read_json(path)
    if meta.get("stage_fingerprint") != fingerprint:
        write_json(path, {**meta, "stage_fingerprint": fingerprint})


def stage_data(r: Run) -> FeatureData:
    rebuild = bool(r.damaged("data"))
    with r.stage("data"):
        return create_dataset(r.config.data, r.data_dir, rebuild=rebuild)


def stage_train(r: Run) -> None:
    from gradiend.checkpoint import Checkpointer
    from gradiend.stages import select, train_gradiend

    data = load_data(r.data_dir)
    m = r.config.model
    checkpoint = Checkpointer(r.dir / C.CHECKPOINT_DIR, r.config.train.checkpoint, r.fingerprint("train"))
    with r.stage("train"):
        selection = select(r.lm, m.params, m.layers)
        plan_path = r.metrics / C.MEMORY_PLAN_FILE
        try:
            result = train_gradiend(r.lm, data, selection, r.config.gradients, r.config.train, task=r.task,
                                    progress=r.progress, memory_plan=plan_path,
                                    checkpoint=checkpoint)
        finally:  # the plan belongs to the run's provenance, a refused run's included
            record_memory_plan(r.metrics, read_json(plan_path) if plan_path.is_file() else None)
        result.gradiend.save_pretrained(r.gradiend_dir)
        write_cards(r.dir)  # a first card; the rewrite stage completes it with the evaluation's figures
        write_jsonl(r.metrics / C.TRAINING_LOG_FILE, result.log)
        write_json(r.metrics / "seeds.json", {
            "best_seed": result.best_seed, "converged": result.converged,
            "seeds": [asdict(s) for s in result.seeds],
        })
        if not result.converged:
            log.warning("the GRADIEND did not converge (see metrics/seeds.json); later stages still run")
    checkpoint.remove()  # the stage is recorded: its checkpoint is no longer needed


def _gradiend(r: Run):
    from gradiend.model import Gradiend

    return Gradiend.from_pretrained(r.gradiend_dir)


def stage_encoder(r: Run) -> None:
    from gradiend.evaluate import evaluate_encoder, write_encoder_results
    from gradiend.evaluate.encoder import neutral_text_column

    data = load_data(r.data_dir)
    e = r.config.eval
    with r.stage("encoder"):
        neutral = neutral_text_column(data.neutral, e.split)[: e.max_lms_texts]
        result = evaluate_encoder(r.lm, _gradiend(r), data.pairs, neutral, e)
        write_encoder_results(result, r.metrics)


def stage_decoder(r: Run) -> None:
    from gradiend.evaluate import evaluate_decoder, write_decoder_results
    from gradiend.evaluate.encoder import lms_text_column

    data = load_data(r.data_dir)
    e = r.config.eval
    with r.stage("decoder"):
        neutral = lms_text_column(data.neutral, e.split)
        result = evaluate_decoder(r.lm, _gradiend(r), data.pairs, neutral, e)
        write_decoder_results(result, r.metrics)


def stage_rewrite(r: Run) -> None:
    from gradiend.rewrite import rewrite_model, rewrite_selected

    rw = r.config.rewrite
    decoder = read_json(r.metrics / C.DECODER_METRICS_FILE)
    gradiend = _gradiend(r)
    with r.stage("rewrite"):
        shutil.rmtree(r.dir / C.REWRITTEN_DIR, ignore_errors=True)  # no stale models from an earlier selection
        wanted = [(c, c) for c in rw.strengthen] + [(c, f"{c}_weaken") for c in rw.weaken]
        for class_id, key in wanted:
            out = r.dir / C.REWRITTEN_DIR / key
            if rw.policy == "fixed":
                h = gradiend.strengthen_h(class_id) * (1 if key == class_id else -1)
                rewrite_model(r.lm, gradiend, h, rw.alpha, out, None, r.gradiend_dir)
                continue
            entry = decoder.get("selected", {}).get(key)
            if entry is None:
                raise GradiendError(f"decoder evaluation has no selection for {key!r}; evaluated: "
                                    f"{', '.join(decoder.get('selected', {}))}")
            if not entry.get("useful", False) and not rw.force:
                log.warning("no useful rewrite for %s (%s): nothing saved", key, entry.get("reason", ""))
                continue
            rewrite_selected(r.lm, gradiend, entry, out, r.gradiend_dir, force=rw.force)
            log.info("rewritten model for %s written to %s", key, out)
        write_cards(r.dir)


def stage_report(r: Run) -> None:
    from gradiend.report import write_figures, write_report

    with r.stage("report"):
        write_figures(r.dir, refresh=True)
        write_report(r.dir)


STAGE_FUNCTIONS: dict[str, Callable[[Run], Any]] = {
    "data": stage_data, "train": stage_train, "encoder": stage_encoder, "decoder": stage_decoder,
    "rewrite": stage_rewrite, "report": stage_report,
}


# --- helpers -----------------------------------------------------------------------------------------


def provenance() -> dict[str, str]:
    """Versions of what produced the run's artifacts (written when a stage runs)."""
    import torch
    import transformers

    return {"gradiend": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def record_memory_plan(metrics: Path, plan: dict[str, Any] | None) -> None:
    """Add the memory plan's per-device peaks (bytes) to ``provenance.json``: what the run expected to hold where."""
    if plan is None:
        return
    path = metrics / C.PROVENANCE_FILE
    record = read_json(path) if path.is_file() else provenance()
    record["memory_plan"] = {d: v["peak_bytes"] for d, v in plan["devices"].items()}
    write_json(path, record)


def verify_run(run_dir: str | Path, stages: tuple[str, ...] = STAGES) -> None:
    """Raise a clear error when an artifact of a finished stage of ``run_dir`` is missing or damaged.

    For commands that read a run without redoing its stages (``rewrite``, ``report``, ``compare``); the message
    names the file and the command that redoes the stage.
    """
    run_dir = Path(run_dir)
    path = run_dir / C.METRICS_DIR / STAGES_FILE
    recorded = read_json(path) if path.is_file() else {}
    for stage in (s for s in stages if s in recorded):
        problems = stage_damage(run_dir, stage, recorded[stage])
        if problems:
            raise DamagedArtifactError(f"{problems[0].describe(run_dir)}; the {stage} stage must be redone: "
                                       f"gradiend run {run_dir / C.CONFIG_FILE} --out {run_dir}")


def stage_damage(run_dir: Path, stage: str, record: dict[str, Any]) -> list[Damage]:
    """The damaged artifacts of one stage: its recorded manifest, or for data the data set's own records."""
    if stage == "data":
        return [Damage(f"{C.DATA_DIR}/{d.path}", d.reason) for d in data_damage(run_dir / C.DATA_DIR)]
    return damaged(run_dir, record.get("artifacts", {}))


def read_counts(run_dir: str | Path) -> pd.DataFrame:
    """Rows per class × split of a run's data stage (for the CLI's summary)."""
    return load_data(Path(run_dir) / C.DATA_DIR).counts()
