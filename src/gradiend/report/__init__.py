"""Self-contained HTML reports: one page per run, and a study page over several runs.

The page is written with string templates and ``html.escape``; figures are embedded as base64 PNG data URIs and
the style sheet is inline, so the file reads offline and can be mailed or archived on its own.

>>> from gradiend.report import write_report
>>> write_report("runs/pronouns")  # doctest: +SKIP
PosixPath('runs/pronouns/report.html')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from gradiend import constants as C
from gradiend.errors import GradiendError
from gradiend.io import atomic_path
from gradiend.report import html as H
from gradiend.report import page
from gradiend.report.figures import FIGURES, collect_figures
from gradiend.report.run import Interval, Rewrite, RunData, read_run

__all__ = [
    "Interval", "Rewrite", "RunData", "read_run", "render_report", "write_figures", "write_report", "write_study_report",
]


def write_figures(run_dir: str | Path, refresh: bool = False) -> list[Path]:
    """Draw every figure whose metric files exist into ``<run_dir>/plots/``; return the PNG paths.

    Existing PNGs are kept unless ``refresh`` (then they are redrawn from the current metric files).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise GradiendError(f"run directory {str(run_dir)!r} does not exist")
    run = read_run(run_dir)
    if run.problems:
        raise GradiendError("cannot draw the figures: " + "; ".join(run.problems))
    if refresh:
        for spec in FIGURES:
            (run_dir / C.PLOTS_DIR / spec.file).unlink(missing_ok=True)
    return [fig.path for fig in collect_figures(run) if fig.path is not None]


def render_report(run_dir: str | Path, make_plots: bool = True) -> str:
    """The HTML text of a run's report; missing stages are shown as "not run".

    With ``make_plots`` the figures whose PNG is missing under plots/ are drawn from the metric files (needs
    matplotlib); existing PNGs are reused as they are.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise GradiendError(f"run directory {str(run_dir)!r} does not exist")
    run = read_run(run_dir)
    figs = collect_figures(run, make_missing=make_plots)  # before the header: drawing may add problems
    body = "\n".join([
        page.header(run), page.key_numbers(run), page.figures(figs), page.training_details(run),
        page.encoder_details(run), page.decoder_details(run), page.data_section(run), page.config_section(run),
        page.provenance(run),
    ])
    return H.page(f"GRADIEND report: {run.name}", body)


def write_report(run_dir: str | Path, path: str | Path | None = None, make_plots: bool = True) -> Path:
    """Write the report of ``run_dir`` to ``path`` (default ``<run_dir>/report.html``) and return its path."""
    text = render_report(run_dir, make_plots)
    path = Path(path) if path is not None else Path(run_dir) / C.REPORT_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_study_report(
    run_dirs: Sequence[str | Path],
    path: str | Path,
    title: str = "GRADIEND study",
    write_run_reports: bool = True,
    figures: Sequence[tuple[str | Path, str]] = (),
    notes: Sequence[str] = (),
) -> Path:
    """One page with every run's key numbers, linking each run's own report (written too, by default).

    ``figures`` are (PNG path, caption) pairs embedded below the table (e.g. the comparison heatmaps);
    ``notes`` are paragraphs shown above them (e.g. which pairs overlap above chance).
    """
    if not run_dirs:
        raise GradiendError("a study report needs at least one run directory")
    path = Path(path)
    rows = []
    for run_dir in map(Path, run_dirs):
        if not run_dir.is_dir():
            raise GradiendError(f"run directory {str(run_dir)!r} does not exist")
        report = write_report(run_dir) if write_run_reports else run_dir / C.REPORT_FILE
        rows.append(_study_row(read_run(run_dir), report, path.parent))
    headers = ["run", "model", "classes", "correlation [95% CI]", "rewrites (base → rewritten, α)"]
    head = "".join(f"<th>{H.esc(h)}</th>" for h in headers)
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    body = f"<h1>{H.esc(title)}</h1>\n<p class=\"sub\">{len(rows)} runs</p>\n" + H.section("Runs", table, "runs")
    if figures or notes:
        parts = [f"<p>{H.esc(n)}</p>" for n in notes] + [H.figure(p, c) for p, c in figures]
        body += H.section("Comparison", "\n".join(parts), "comparison")
    with atomic_path(path) as tmp:
        tmp.write_text(H.page(title, body), encoding="utf-8")
    return path


def _study_row(run: RunData, report: Path, base: Path) -> str:
    name = H.esc(run.name)
    if report.is_file():
        href = Path(os.path.relpath(report.resolve(), base.resolve())).as_posix()
        name = f'<a href="{H.esc(href)}">{name}</a>'
    rewrites = "; ".join(_short_rewrite(rw) for rw in run.rewrites if not rw.weaken) or "not run"
    cells = [run.model or "–", " vs ".join(run.classes) or "–", page.interval(run.correlation), rewrites]
    return f"<tr><td>{name}</td>" + "".join(f"<td>{H.esc(c)}</td>" for c in cells) + "</tr>"


def _short_rewrite(rw: Rewrite) -> str:
    if not rw.useful:
        return f"{rw.class_id}: no useful rewrite"
    return f"{rw.class_id}: {page.shift_text(rw.base_value, rw.value)} (α = {page.alpha_text(rw.alpha)})"
