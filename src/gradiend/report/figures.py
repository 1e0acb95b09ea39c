"""The run's figures: made from the metric files when their PNG is missing, otherwise reused from plots/."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gradiend import constants as C
from gradiend import plots
from gradiend.errors import GradiendError, MissingExtraError
from gradiend.report.run import RunData


@dataclass(frozen=True)
class FigureSpec:
    file: str
    caption: str
    needs: str  # what must have run for this figure
    available: Callable[[RunData], bool]
    make: Callable[[RunData, Path], Path]


def _classes(run: RunData) -> tuple[str, ...]:
    return tuple(run.classes) or ("A", "B")


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec(
        plots.TRAINING_PLOT,
        "Training convergence: loss, validation correlation and class means per evaluation step; "
        "★ and dashed lines mark each seed's best step.",
        "training",
        lambda run: run.training is not None and not run.training.empty,
        lambda run, path: plots.plot_training(run.training, path, classes=_classes(run)[:2]),
    ),
    FigureSpec(
        plots.ENCODER_PLOT,
        "Encoder output per class and neutral variant (violin with the individual rows).",
        "encoder evaluation",
        lambda run: run.encodings is not None and not run.encodings.empty,
        lambda run, path: plots.plot_encoder_distributions(run.encodings, path, classes=_classes(run)),
    ),
    FigureSpec(
        plots.TARGETS_PLOT,
        "Mean encoding per target word, coloured by class.",
        "encoder evaluation",
        lambda run: bool((run.encoder or {}).get("per_target")),
        lambda run, path: plots.plot_target_means(run.encoder["per_target"], path, classes=run.classes),
    ),
    FigureSpec(
        plots.DECODER_PLOT,
        "Decoder grid: target-class probability on the other class's rows and LMS against α, one line per h; "
        "the base model is the dashed line, ★ the selected rewrite.",
        "decoder evaluation",
        lambda run: run.grid is not None and not run.grid.empty,
        lambda run, path: plots.plot_decoder_grid(run.grid, path, run.decoder),
    ),
)


@dataclass(frozen=True)
class FigureResult:
    caption: str
    path: Path | None = None  # None: not made, see note
    note: str = ""


def collect_figures(run: RunData, make_missing: bool = True) -> list[FigureResult]:
    """One result per known figure (reused, made, or why not), then any other PNG found in plots/."""
    plots_dir = run.run_dir / C.PLOTS_DIR
    results = [_one(run, spec, plots_dir / spec.file, make_missing) for spec in FIGURES]
    known = {spec.file for spec in FIGURES}
    extra = sorted(p for p in plots_dir.glob("*.png") if p.name not in known) if plots_dir.is_dir() else []
    return results + [FigureResult(p.stem.replace("_", " "), p) for p in extra]


def _one(run: RunData, spec: FigureSpec, path: Path, make_missing: bool) -> FigureResult:
    if path.is_file():
        return FigureResult(spec.caption, path)
    if not spec.available(run):
        return FigureResult(spec.caption, note=f"{spec.needs}: not run")
    if not make_missing:
        return FigureResult(spec.caption, note=f"{spec.file} was not made")
    try:
        return FigureResult(spec.caption, spec.make(run, path))
    except MissingExtraError as exc:
        return FigureResult(spec.caption, note=str(exc))
    except GradiendError as exc:
        run.problems.append(f"figure {spec.file}: {exc}")
        return FigureResult(spec.caption, note=f"could not be drawn: {exc}")
