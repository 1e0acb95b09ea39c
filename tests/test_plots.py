"""Plots from planted metric files: non-empty PNGs, and markers drawn where the data says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gradiend import constants as C
from gradiend import plots
from gradiend.errors import GradiendError
from test_report_synthetic import (
    SELECTED,
    decoder_grid,
    decoder_json,
    encoder_json,
    encodings,
    reported_run,
    training_rows,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path, min_bytes: int = 10_000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > min_bytes, f"{path} is not a real figure ({len(data)} bytes)"


def _artist(ax, gid: str):
    found = [line for line in ax.get_lines() if line.get_gid() == gid]
    assert len(found) == 1, f"expected one artist {gid!r}, found {len(found)}"
    return found[0]


def test_all_plots_write_non_empty_pngs() -> None:
    """The four figures of the shared synthetic run (drawn once through plot_* by the report)."""
    plots_dir = reported_run() / C.PLOTS_DIR
    names = [plots.TRAINING_PLOT, plots.ENCODER_PLOT, plots.TARGETS_PLOT, plots.DECODER_PLOT]
    for name in names:
        _assert_png(plots_dir / name)


def test_other_formats_are_written_beside_the_png(tmp_path: Path) -> None:
    png = plots.plot_target_means(encoder_json()["per_target"], tmp_path / "t", formats=("pdf", "svg"))
    assert png == tmp_path / "t.png"
    assert (tmp_path / "t.pdf").read_bytes()[:4] == b"%PDF"
    assert b"<svg" in (tmp_path / "t.svg").read_bytes()[:1000]
    with pytest.raises(GradiendError, match="unknown figure format"):
        plots.plot_target_means(encoder_json()["per_target"], tmp_path / "t", formats=("jpeg",))


def test_decoder_selected_cells_are_starred_where_the_grid_has_them() -> None:
    fig = plots.decoder_figure(decoder_grid(), decoder_json())
    grid = decoder_grid()
    assert [ax.get_ylabel() for ax in fig.axes] == ["P(3SG words)", "P(3PL words)", "LMS"]
    for panel, (cid, (h, alpha)) in enumerate(SELECTED.items()):
        cell = grid[(grid["h"] == h) & (grid["alpha"] == alpha)].iloc[0]
        for ax, column in ((fig.axes[panel], f"p_{cid}_other"), (fig.axes[-1], "lms")):
            star = _artist(ax, f"selected for {cid}")
            assert list(star.get_xdata()) == [alpha]
            assert star.get_ydata()[0] == pytest.approx(cell[column])
    # the base model is a horizontal line at its value; the x axis is logarithmic
    ax_3sg = fig.axes[0]
    assert ax_3sg.get_xscale() == "log"
    base_lines = [ln for ln in ax_3sg.get_lines() if ln.get_label() == "base model"]
    assert len(base_lines) == 1 and set(base_lines[0].get_ydata()) == {0.1}
    # one line per h on each panel
    assert {ln.get_label() for ln in ax_3sg.get_lines()} >= {"h = -1", "h = 1"}


def test_decoder_without_useful_rewrite_says_so_and_marks_nothing() -> None:
    fig = plots.decoder_figure(decoder_grid(), decoder_json(useful=False))
    assert "no useful rewrite" in fig.axes[0].get_title()
    assert not [ln for ax in fig.axes for ln in ax.get_lines() if str(ln.get_gid()).startswith("selected")]


def test_training_marks_each_seed_best_step() -> None:
    fig = plots.training_figure(training_rows(), classes=("3SG", "3PL"))
    stars = [ln for ln in fig.axes[1].get_lines() if ln.get_gid() == "best"]
    assert sorted((s.get_xdata()[0], round(s.get_ydata()[0], 4)) for s in stars) == [(300, 0.93), (400, 0.92)]
    assert fig.axes[0].get_yscale() == "log"
    assert {"3SG (seed 0)", "3PL (seed 1)"} <= {ln.get_label() for ln in fig.axes[2].get_lines()}


def test_encoder_groups_follow_class_order_then_neutral_variants() -> None:
    groups = plots.encoder_groups(encodings(), classes=["3SG", "3PL"])
    assert list(groups) == ["3SG", "3PL", "neutral (masked)", "neutral (text)"]
    assert np.mean(groups["3SG"]) > 0.7 and np.mean(groups["3PL"]) < -0.6


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(GradiendError, match=r"training log lacks the column\(s\) \['correlation'"):
        plots.training_figure([{"step": 0, "seed": 0, "loss": 1.0}])
    with pytest.raises(GradiendError, match="no p_<class>_other column"):
        plots.decoder_figure(pd.DataFrame({"h": [1.0], "alpha": [1.0], "lms": [0.5]}))


def test_training_log_with_missing_values_draws_gaps() -> None:
    rows = training_rows()
    rows[0] = {**rows[0], "loss": None, "correlation": None, "mean_pos": None, "mean_neg": None}
    fig = plots.training_figure(rows, classes=("3SG", "3PL"))
    loss_line = fig.axes[0].get_lines()[0]
    assert np.isnan(loss_line.get_ydata()[0]) and fig.axes[0].get_yscale() == "log"
