"""Figures from the metric files of a run (schema in docs/architecture.md), saved as PNG (and PDF/SVG on request).

Each ``plot_*`` function takes the data (a DataFrame or the parsed JSON) and an output path, saves the figure and
returns the path of the PNG. Each ``*_figure`` function builds the figure without saving it, so tests can read
back what was drawn. Figures are made with ``matplotlib.figure.Figure`` directly, never through pyplot: nothing
is shown, no global backend is switched, and nothing stays registered after saving (the Agg canvas renders).
matplotlib is imported only when a figure is made (``pip install 'gradiend[plot]'``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gradiend._optional import require
from gradiend.errors import GradiendError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# file names under plots/ of a run
TRAINING_PLOT = "training.png"
ENCODER_PLOT = "encoder_distributions.png"
TARGETS_PLOT = "target_means.png"
DECODER_PLOT = "decoder_grid.png"

CLASS_COLORS = ("#1f77b4", "#d62728")  # positive class, negative class
NEUTRAL_COLOR = "#7f7f7f"
SEED_COLORS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
H_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd")
SELECTED_STYLE = {"marker": "*", "markersize": 16, "color": "#ff7f0e", "markeredgecolor": "black", "zorder": 5}
VARIANT_LABELS = {"neutral_masked": "neutral (masked)", "neutral_text": "neutral (text)"}
SAVE_FORMATS = ("png", "pdf", "svg")


def save_figure(fig: Figure, path: str | Path, formats: Iterable[str] = ("png",), dpi: int = 120) -> Path:
    """Save ``fig`` as ``path`` with each suffix in ``formats`` (png always); return the PNG path."""
    formats = {"png", *formats}
    unknown = formats - set(SAVE_FORMATS)
    if unknown:
        raise GradiendError(f"unknown figure format(s) {sorted(unknown)}; use {', '.join(SAVE_FORMATS)}")
    png = Path(path).with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    for fmt in sorted(formats):
        fig.savefig(png.with_suffix(f".{fmt}"), dpi=dpi, bbox_inches="tight")
    fig.clear()  # drop the artists now; the figure was never registered with pyplot
    return png


def _new_figure(nrows: int, width: float, height: float, sharex: bool = True) -> tuple[Figure, list[Axes]]:
    figure_module = require("matplotlib.figure", "plot", "plots")
    fig = figure_module.Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, 1, sharex=sharex, squeeze=False)[:, 0]
    return fig, list(axes)


# ---------------------------------------------------------------------------------------------------------------
# training convergence


def training_figure(log: pd.DataFrame | Sequence[Mapping[str, Any]], classes: Sequence[str] = ("A", "B")) -> Figure:
    """Loss, correlation and class means per evaluation step, one line per seed, best steps marked."""
    df = _frame(log, ("step", "seed", "loss", "correlation", "mean_pos", "mean_neg"), "training log")
    values = ["loss", "correlation", "mean_pos", "mean_neg"]
    df = df.assign(**{c: pd.to_numeric(df[c], errors="coerce") for c in values})  # None -> NaN: a gap
    fig, (ax_loss, ax_corr, ax_mean) = _new_figure(3, 7.5, 7.5)
    multi = df["seed"].nunique() > 1
    for i, (seed, rows) in enumerate(df.sort_values("step").groupby("seed", sort=True)):
        color = SEED_COLORS[i % len(SEED_COLORS)]
        suffix = f" (seed {seed})" if multi else ""
        ax_loss.plot(rows["step"], rows["loss"], color=color, label=f"seed {seed}")
        ax_corr.plot(rows["step"], rows["correlation"], color=color, label=f"seed {seed}")
        style = ("-", "--", ":", "-.")[i % 4]
        ax_mean.plot(rows["step"], rows["mean_pos"], style, color=CLASS_COLORS[0], label=f"{classes[0]}{suffix}")
        ax_mean.plot(rows["step"], rows["mean_neg"], style, color=CLASS_COLORS[1], label=f"{classes[1]}{suffix}")
        _mark_best(rows, color, (ax_loss, ax_corr, ax_mean), seed)
    if "phase" in df and (df["phase"] == "post-prune").any():  # the fine-tune of the pruned GRADIEND
        start = df.loc[df["phase"] == "post-prune", "step"].min()
        for ax in (ax_loss, ax_corr, ax_mean):
            ax.axvline(start, color=NEUTRAL_COLOR, linestyle=":", linewidth=1.2,
                       label="post-prune" if ax is ax_corr else None)
    losses = pd.to_numeric(df["loss"], errors="coerce").dropna()  # None before the first optimizer step
    if len(losses) and (losses > 0).all():
        ax_loss.set_yscale("log")
    ax_loss.set_ylabel("training loss (MSE)")
    ax_corr.set_ylabel("correlation")
    ax_mean.set_ylabel("mean encoding")
    ax_mean.axhline(0, color=NEUTRAL_COLOR, linewidth=0.8)
    ax_mean.set_xlabel("training step")
    ax_loss.set_title(f"Training convergence: {classes[0]} (+1) vs {classes[1]} (−1)")
    for ax in (ax_loss, ax_corr, ax_mean):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    return fig


def _mark_best(rows: pd.DataFrame, color: str, axes: Sequence[Axes], seed: Any) -> None:
    if "best" not in rows or not _as_bool(rows["best"]).any():
        return
    best = rows[_as_bool(rows["best"])].iloc[-1]
    for ax in axes:
        ax.axvline(best["step"], color=color, linestyle="--", linewidth=1, alpha=0.7)
    axes[1].plot([best["step"]], [best["correlation"]], **SELECTED_STYLE, label=f"best (seed {seed})", gid="best")


def plot_training(
    log: pd.DataFrame | Sequence[Mapping[str, Any]],
    path: str | Path,
    classes: Sequence[str] = ("A", "B"),
    formats: Iterable[str] = ("png",),
) -> Path:
    """Plot ``metrics/training.jsonl`` rows (see :func:`training_figure`) to ``path``."""
    return save_figure(training_figure(log, classes), path, formats)


# ---------------------------------------------------------------------------------------------------------------
# encoder distributions


def encoder_groups(encodings: pd.DataFrame, classes: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Encodings per display group: each class (pair rows), then each neutral variant, in that order."""
    df = _frame(encodings, ("encoding", "variant"), "encodings table")
    groups: dict[str, np.ndarray] = {}
    pairs = df[df["variant"] == "pairs"]
    if len(pairs):
        if "class" not in pairs:
            raise GradiendError("encodings table has pair rows but no 'class' column")
        order = list(classes) if classes else sorted(pairs["class"].dropna().unique())
        for cid in order:
            values = pairs.loc[pairs["class"] == cid, "encoding"].to_numpy(dtype=float)
            if len(values):
                groups[str(cid)] = values
    for variant in sorted(set(df["variant"]) - {"pairs"}):
        groups[VARIANT_LABELS.get(variant, str(variant))] = df.loc[df["variant"] == variant, "encoding"].to_numpy(
            dtype=float
        )
    return groups


def encoder_figure(
    encodings: pd.DataFrame,
    classes: Sequence[str] | None = None,
    split: str | None = "test",
    max_points: int = 400,
    seed: int = 0,
) -> Figure:
    """Violins with jittered points of the encoding per class and neutral variant (of ``split`` if present)."""
    df = _frame(encodings, ("encoding", "variant"), "encodings table")
    if split is not None and "split" in df and (df["split"] == split).any():
        df = df[df["split"] == split]
    else:
        split = None
    groups = encoder_groups(df, classes)
    if not groups:
        raise GradiendError("encodings table is empty: nothing to plot")
    fig, (ax,) = _new_figure(1, max(5.0, 1.6 * len(groups) + 2), 4.5)
    colors = [_group_color(name, classes) for name in groups]
    positions = np.arange(1, len(groups) + 1)
    parts = ax.violinplot(list(groups.values()), positions, widths=0.8, showmedians=True, showextrema=False)
    for body, color in zip(parts["bodies"], colors, strict=True):
        body.set_facecolor(color)
        body.set_alpha(0.35)
    parts["cmedians"].set_color("black")
    rng = np.random.default_rng(seed)
    for pos, values, color in zip(positions, groups.values(), colors, strict=True):
        shown = values if len(values) <= max_points else rng.choice(values, max_points, replace=False)
        ax.scatter(pos + rng.uniform(-0.18, 0.18, len(shown)), shown, s=6, color=color, alpha=0.6, linewidths=0)
    for level in (-1, 0, 1):
        ax.axhline(level, color=NEUTRAL_COLOR, linewidth=0.6, linestyle=":" if level else "-")
    ax.set_xticks(positions, [f"{name}\n(n={len(v)})" for name, v in groups.items()])
    ax.set_ylabel("encoding h")
    ax.set_ylim(-1.1, 1.1)
    where = f" ({split} split)" if split else ""
    ax.set_title(f"Encoder output per class and neutral variant{where}")
    ax.grid(axis="y", alpha=0.3)
    return fig


def _group_color(name: str, classes: Sequence[str] | None) -> str:
    if classes and name in classes:
        return CLASS_COLORS[list(classes).index(name) % 2]
    return NEUTRAL_COLOR if name.startswith("neutral") else H_COLORS[3]


def plot_encoder_distributions(
    encodings: pd.DataFrame,
    path: str | Path,
    classes: Sequence[str] | None = None,
    split: str | None = "test",
    formats: Iterable[str] = ("png",),
) -> Path:
    """Plot ``metrics/encodings.parquet`` (see :func:`encoder_figure`) to ``path``."""
    return save_figure(encoder_figure(encodings, classes, split), path, formats)


# ---------------------------------------------------------------------------------------------------------------
# per-target means


def target_means_figure(
    per_target: Mapping[str, Mapping[str, Any]],
    classes: Mapping[str, Sequence[str]] | None = None,
) -> Figure:
    """Bars of the mean encoding per target word (``encoder.json`` ``per_target``), coloured by class."""
    if not per_target:
        raise GradiendError("per-target table is empty: nothing to plot")
    word_class = _word_classes(classes or {})
    class_ids = list(classes or {})
    rank = {cid: i for i, cid in enumerate(class_ids)}
    words = sorted(per_target, key=lambda w: (rank.get(word_class.get(w.casefold()), len(rank)), w.casefold()))
    means = [float(per_target[w]["mean"]) for w in words]
    colors = [_group_color(word_class.get(w.casefold(), "?"), class_ids) for w in words]
    fig, (ax,) = _new_figure(1, max(5.0, 0.45 * len(words) + 2), 4.0)
    ax.bar(range(len(words)), means, color=colors)
    labels = [f"{w}\n(n={per_target[w].get('n', '?')})" for w in words]
    ax.set_xticks(range(len(words)), labels, rotation=45 if len(words) > 10 else 0, fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("mean encoding h")
    ax.set_ylim(min(-1.05, min(means) - 0.05), max(1.05, max(means) + 0.05))
    ax.set_title("Mean encoding per target word")
    handles = [_patch(CLASS_COLORS[i % 2], cid) for i, cid in enumerate(class_ids)]
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="best")
    ax.grid(axis="y", alpha=0.3)
    return fig


def _word_classes(classes: Mapping[str, Sequence[str]]) -> dict[str, str]:
    return {word.casefold(): cid for cid, words in classes.items() for word in words}


def _patch(color: str, label: str) -> Any:
    patches = require("matplotlib.patches", "plot", "plots")
    return patches.Patch(color=color, label=label)


def plot_target_means(
    per_target: Mapping[str, Mapping[str, Any]],
    path: str | Path,
    classes: Mapping[str, Sequence[str]] | None = None,
    formats: Iterable[str] = ("png",),
) -> Path:
    """Plot the ``per_target`` means of ``metrics/encoder.json`` (see :func:`target_means_figure`) to ``path``."""
    return save_figure(target_means_figure(per_target, classes), path, formats)


# ---------------------------------------------------------------------------------------------------------------
# decoder grid


def grid_classes(grid: pd.DataFrame) -> list[str]:
    """Class ids of a decoder grid, from its ``p_<C>_other`` columns, in column order."""
    found = [m.group(1) for c in grid.columns if (m := re.fullmatch(r"p_(.+)_other", str(c)))]
    if not found:
        raise GradiendError("decoder grid has no p_<class>_other column")
    return found


def decoder_figure(grid: pd.DataFrame, decoder: Mapping[str, Any] | None = None) -> Figure:
    """P(class words) on the other class's rows and LMS vs α (log axis): one line per h, base as a line.

    ``decoder`` is the parsed ``metrics/decoder.json``; its ``selected`` cells are starred (strengthen selections
    on their class's panel, every selection on the LMS panel) and "no useful rewrite" is said in the title.
    """
    df = _frame(grid, ("h", "alpha", "lms"), "decoder grid")
    classes = grid_classes(df)
    decoder = decoder or {}
    is_base = _as_bool(df["is_base"]) if "is_base" in df else pd.Series(False, index=df.index)
    cells, base = df[~is_base], df[is_base]
    if cells.empty or (cells["alpha"] <= 0).any():
        raise GradiendError("decoder grid needs rewrite cells with alpha > 0 (log axis)")
    fig, axes = _new_figure(len(classes) + 1, 7.5, 2.6 * (len(classes) + 1))
    selected = decoder.get("selected") or {}
    for ax, cid in zip(axes, classes, strict=False):
        column = f"p_{cid}_other"
        _grid_lines(ax, cells, column)
        _base_line(ax, _base_value(base, decoder, column), "base model")
        ax.set_ylabel(f"P({cid} words)")
        ax.set_title(_panel_title(cid, classes, selected.get(cid)))
        _mark_selected(ax, cells, column, selected.get(cid), f"selected for {cid}")
    ax_lms = axes[-1]
    _grid_lines(ax_lms, cells, "lms")
    base_lms = _base_value(base, decoder, "lms")
    _base_line(ax_lms, base_lms, "base model")
    ratio = _lms_ratio(decoder)
    if ratio is not None and base_lms is not None:
        _base_line(ax_lms, ratio * base_lms, f"{ratio:g} × base (LMS floor)", style=":", color="#ff7f0e")
    for key, sel in selected.items():
        _mark_selected(ax_lms, cells, "lms", sel, f"selected for {key}")
    ax_lms.set_ylabel("LMS")
    ax_lms.set_title("Language-modelling score on neutral text")
    ax_lms.set_xlabel("α (rewrite learning rate, log scale)")
    for ax in axes:
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return fig


def _grid_lines(ax: Axes, cells: pd.DataFrame, column: str) -> None:
    for i, (h, rows) in enumerate(cells.groupby("h", sort=True)):
        rows = rows.dropna(subset=[column]).sort_values("alpha")  # adaptive search: not every cell has every value
        ax.plot(rows["alpha"], rows[column], "o-", markersize=3, color=H_COLORS[i % len(H_COLORS)], label=f"h = {h:g}")


def _base_line(ax: Axes, value: float | None, label: str, style: str = "--", color: str = "black") -> None:
    if value is not None and np.isfinite(value):
        ax.axhline(value, linestyle=style, color=color, linewidth=1, label=label)


def _base_value(base: pd.DataFrame, decoder: Mapping[str, Any], column: str) -> float | None:
    if not base.empty and column in base:
        return float(base[column].iloc[0])
    value = (decoder.get("base") or {}).get(column)
    return float(value) if isinstance(value, (int, float)) else None


def _lms_ratio(decoder: Mapping[str, Any]) -> float | None:
    policy = decoder.get("policy")
    if isinstance(policy, Mapping):
        for key in ("lms_ratio", "ratio"):
            if isinstance(policy.get(key), (int, float)):
                return float(policy[key])
    return None


def _panel_title(cid: str, classes: Sequence[str], sel: Mapping[str, Any] | None) -> str:
    others = [c for c in classes if c != cid]
    title = f"Strengthen {cid}: P({cid} words) on {', '.join(others) or 'other'} rows"
    if sel is not None and not sel.get("useful", True):
        title += " (no useful rewrite)"
    return title


def selected_point(cells: pd.DataFrame, column: str, sel: Mapping[str, Any]) -> tuple[float, float] | None:
    """(α, value) of the grid cell ``sel`` names (its ``h`` and ``alpha``), or None if the grid lacks it."""
    match = cells[np.isclose(cells["h"], float(sel["h"])) & np.isclose(cells["alpha"], float(sel["alpha"]))]
    if match.empty:
        return None
    return float(match["alpha"].iloc[0]), float(match[column].iloc[0])


def _mark_selected(ax: Axes, cells: pd.DataFrame, column: str, sel: Mapping[str, Any] | None, label: str) -> None:
    if not sel or not sel.get("useful", True) or sel.get("h") is None or sel.get("alpha") is None:
        return
    point = selected_point(cells, column, sel)
    if point is None:
        return
    ax.plot([point[0]], [point[1]], linestyle="none", **SELECTED_STYLE, label=label, gid=label)
    ax.annotate(f"h={float(sel['h']):g}, α={point[0]:g}", point, textcoords="offset points", xytext=(8, 6), fontsize=7)


def plot_decoder_grid(
    grid: pd.DataFrame,
    path: str | Path,
    decoder: Mapping[str, Any] | None = None,
    formats: Iterable[str] = ("png",),
) -> Path:
    """Plot ``metrics/decoder_grid.csv`` with the selections of ``decoder.json`` (see :func:`decoder_figure`)."""
    return save_figure(decoder_figure(grid, decoder), path, formats)


# ---------------------------------------------------------------------------------------------------------------


def _frame(data: pd.DataFrame | Sequence[Mapping[str, Any]], columns: Sequence[str], what: str) -> pd.DataFrame:
    df = data if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise GradiendError(f"{what} lacks the column(s) {missing}; see docs/architecture.md (metric files)")
    if df.empty:
        raise GradiendError(f"{what} is empty: nothing to plot")
    return df


def _as_bool(series: pd.Series) -> pd.Series:
    """Booleans from bool, 0/1 or 'True'/'False' (a CSV column read without dtypes)."""
    if series.dtype == bool:
        return series
    return series.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0")).astype(bool)
