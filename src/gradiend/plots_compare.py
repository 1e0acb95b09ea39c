"""Comparison figures: heatmaps of GRADIEND matrices, Venn diagrams of 2–3 top-k sets, UpSet plots beyond.

Like :mod:`gradiend.plots`, figures are built with ``matplotlib.figure.Figure`` (never pyplot) and saved, never
shown. Heatmaps can be reordered by hierarchical clustering so that related features sit together, relabelled
with label maps, and annotated with brackets over groups of rows or columns (e.g. the data set of each class).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from gradiend._optional import require
from gradiend.errors import GradiendError
from gradiend.plots import save_figure


def cluster_order(matrix: pd.DataFrame) -> list[str]:
    """Row order from average-linkage clustering on 1 − (max-normalised similarity); identity for < 3 rows."""
    if len(matrix) < 3:
        return list(matrix.index)
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    m = matrix.to_numpy(dtype=float)
    m = np.nan_to_num((m + m.T) / 2)
    scale = np.abs(m).max() or 1.0
    dist = 1.0 - m / scale
    np.fill_diagonal(dist, 0.0)
    dist = np.clip(dist, 0.0, None)
    order = leaves_list(linkage(squareform(dist, checks=False), method="average"))
    return [matrix.index[i] for i in order]


def heatmap_figure(
    matrix: pd.DataFrame, title: str, *, annotate: bool = True, cluster: bool = False, fmt: str = ".2f",
    cmap: str = "viridis", center_zero: bool = False, hide_diagonal: bool = False,
    row_labels: Mapping[str, str] | None = None, col_labels: Mapping[str, str] | None = None,
    row_groups: Mapping[str, Sequence[str]] | None = None, col_groups: Mapping[str, Sequence[str]] | None = None,
):
    """A heatmap of ``matrix`` (rows × columns) with optional cell annotations and clustering order.

    ``hide_diagonal`` leaves self-comparisons blank so they do not dominate the colour scale. ``row_labels`` /
    ``col_labels`` map names to display labels; ``row_groups`` / ``col_groups`` (``{group: [names...]}``) draw a
    bracket with the group's name along the rows or columns it spans (when they are contiguous).
    """
    if matrix.empty:
        raise GradiendError(f"cannot draw {title!r}: the matrix is empty")
    if cluster and list(matrix.index) == list(matrix.columns):
        order = cluster_order(matrix)
        matrix = matrix.loc[order, order]
    figure_module = require("matplotlib.figure", "plot", "plots")
    n_rows, n_cols = matrix.shape
    fig = figure_module.Figure(figsize=(2.2 + 0.9 * n_cols, 1.6 + 0.7 * n_rows), layout="constrained")
    ax = fig.subplots()
    values = matrix.to_numpy(dtype=float).copy()
    if hide_diagonal and n_rows == n_cols:
        np.fill_diagonal(values, np.nan)
    finite = values[np.isfinite(values)]
    vmax = float(np.abs(finite).max()) if finite.size else 1.0
    kwargs = {"vmin": -vmax, "vmax": vmax, "cmap": "RdBu_r"} if center_zero else {"cmap": cmap}
    image = ax.imshow(values, aspect="auto", **kwargs)
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(n_cols), [_label(c, col_labels) for c in matrix.columns], rotation=45, ha="right")
    ax.set_yticks(range(n_rows), [_label(r, row_labels) for r in matrix.index])
    ax.set_title(title, pad=22 if col_groups else 6)
    _brackets(ax, list(matrix.columns), col_groups, axis="x")
    _brackets(ax, list(matrix.index), row_groups, axis="y")
    if annotate:
        for i in range(n_rows):
            for j in range(n_cols):
                v = values[i, j]
                text = "–" if not np.isfinite(v) else format(v, fmt)
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color=_text_color(image, v))
    return fig


def _label(name: object, labels: Mapping[str, str] | None) -> str:
    return str((labels or {}).get(str(name), name))


def _brackets(ax, names: list, groups: Mapping[str, Sequence[str]] | None, axis: str) -> None:
    """A line with the group's name over each contiguous run of a group's members (above columns / left of rows)."""
    if not groups:
        return
    position = {str(n): i for i, n in enumerate(names)}
    for group, members in groups.items():
        idx = sorted(position[str(m)] for m in members if str(m) in position)
        if not idx or idx[-1] - idx[0] + 1 != len(idx):
            continue  # not contiguous (e.g. after clustering): no bracket
        lo, hi = idx[0] - 0.4, idx[-1] + 0.4
        if axis == "x":  # offsets in points, so the bracket clears the title whatever the figure's height
            ax.plot([lo, hi], [1, 1], color="black", lw=1, marker="|", markersize=6, clip_on=False,
                    transform=_points_above(ax, 5))
            ax.text((lo + hi) / 2, 1, str(group), ha="center", va="bottom", fontsize=8, transform=_points_above(ax, 9))
        else:
            t = ax.get_yaxis_transform()
            ax.plot([-0.005, -0.02, -0.02, -0.005], [lo, lo, hi, hi], color="black", lw=1, transform=t, clip_on=False)


def _points_above(ax, points: float):
    """Data x, axes-fraction y, shifted up by ``points`` (independent of the figure's height)."""
    transforms = require("matplotlib.transforms", "plot", "plots")
    shift = transforms.ScaledTranslation(0, points / 72, ax.figure.dpi_scale_trans)
    return ax.get_xaxis_transform() + shift


def _text_color(image, value: float) -> str:
    if not np.isfinite(value):
        return "black"
    r, g, b, _ = image.cmap(image.norm(value))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def plot_heatmap(matrix: pd.DataFrame, path: str | Path, title: str, *, formats: Iterable[str] = ("png",),
                 **kwargs) -> Path:
    """Save :func:`heatmap_figure`; returns the PNG path."""
    return save_figure(heatmap_figure(matrix, title, **kwargs), path, formats)


def venn_regions(sets: Sequence[set]) -> dict[str, int]:
    """Sizes of the exclusive regions of 2 or 3 sets, keyed by membership bits ('10', '11', '101', ...)."""
    if len(sets) not in (2, 3):
        raise GradiendError(f"a Venn diagram needs 2 or 3 sets, got {len(sets)}")
    universe = set().union(*sets)
    regions: dict[str, int] = {}
    for item in universe:
        key = "".join("1" if item in s else "0" for s in sets)
        regions[key] = regions.get(key, 0) + 1
    return regions


_CENTERS = {2: [(-0.5, 0.0), (0.5, 0.0)], 3: [(-0.5, 0.35), (0.5, 0.35), (0.0, -0.5)]}
_LABEL_POS = {
    "10": (-0.95, 0.0), "01": (0.95, 0.0), "11": (0.0, 0.0),
    "100": (-0.95, 0.6), "010": (0.95, 0.6), "001": (0.0, -1.0), "110": (0.0, 0.75),
    "101": (-0.55, -0.35), "011": (0.55, -0.35), "111": (0.0, 0.05),
}


def venn_figure(sets: Sequence[set], names: Sequence[str], title: str = "top-k overlap"):
    """Venn diagram of 2–3 index sets, each region labelled with its count."""
    regions = venn_regions(sets)
    figure_module = require("matplotlib.figure", "plot", "plots")
    patches = require("matplotlib.patches", "plot", "plots")
    fig = figure_module.Figure(figsize=(5.5, 5), layout="constrained")
    ax = fig.subplots()
    colors = ("#1f77b4", "#d62728", "#2ca02c")
    for (x, y), name, color, s in zip(_CENTERS[len(sets)], names, colors, sets, strict=False):
        ax.add_patch(patches.Circle((x, y), 1.0, alpha=0.3, color=color, label=f"{name} (k={len(s)})"))
    width = len(sets)
    for bits in _LABEL_POS:
        if len(bits) == width:
            ax.text(*_LABEL_POS[bits], str(regions.get(bits, 0)), ha="center", va="center", fontsize=11)
    ax.set_xlim(-1.8, 1.8)
    ax.set_ylim(-1.8 if width == 3 else -1.3, 1.6 if width == 3 else 1.3)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=width, frameon=False)
    ax.set_title(title)
    return fig


def plot_venn(sets: Sequence[set], names: Sequence[str], path: str | Path, title: str = "top-k overlap",
              formats: Iterable[str] = ("png",)) -> Path:
    return save_figure(venn_figure(sets, names, title), path, formats)


def upset_regions(sets: Sequence[set]) -> dict[tuple[int, ...], int]:
    """Sizes of the exclusive membership regions of any number of sets, keyed by the member set indices."""
    regions: dict[tuple[int, ...], int] = {}
    for item in set().union(*sets):
        key = tuple(i for i, s in enumerate(sets) if item in s)
        regions[key] = regions.get(key, 0) + 1
    return regions


def upset_figure(sets: Sequence[set], names: Sequence[str], title: str = "top-k overlap", max_bars: int = 25):
    """UpSet plot: bars of the largest exclusive intersections, with a dot matrix naming their member sets.

    Regions shared by two or more sets come first (largest first), then the sets' exclusive parts.
    """
    if len(sets) < 2 or len(sets) != len(names):
        raise GradiendError(f"an UpSet plot needs at least two named sets, got {len(sets)} sets, {len(names)} names")
    regions = upset_regions(sets)
    keys = sorted(regions, key=lambda k: (len(k) < 2, -regions[k], k))[:max_bars]
    figure_module = require("matplotlib.figure", "plot", "plots")
    fig = figure_module.Figure(figsize=(2.5 + 0.35 * len(keys), 2.5 + 0.3 * len(sets)), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, max(1, 0.25 * len(sets))]})
    top.bar(range(len(keys)), [regions[k] for k in keys], color="#1f77b4")
    for x, k in enumerate(keys):
        top.text(x, regions[k], str(regions[k]), ha="center", va="bottom", fontsize=7)
    top.set_ylabel("exclusive intersection size")
    top.set_title(title)
    for x, k in enumerate(keys):
        bottom.scatter([x] * len(sets), range(len(sets)), color="#dddddd", s=25)
        bottom.scatter([x] * len(k), list(k), color="black", s=25)
        if len(k) > 1:
            bottom.plot([x, x], [min(k), max(k)], color="black", lw=1.5)
    bottom.set_yticks(range(len(sets)), [f"{n} ({len(s)})" for n, s in zip(names, sets, strict=True)])
    bottom.set_xticks([])
    bottom.invert_yaxis()
    return fig


def plot_upset(sets: Sequence[set], names: Sequence[str], path: str | Path, title: str = "top-k overlap",
               formats: Iterable[str] = ("png",)) -> Path:
    return save_figure(upset_figure(sets, names, title), path, formats)
