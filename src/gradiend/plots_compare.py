"""Comparison figures: heatmaps of GRADIEND × GRADIEND matrices and Venn diagrams of 2–3 top-k sets.

Like :mod:`gradiend.plots`, figures are built with ``matplotlib.figure.Figure`` (never pyplot) and saved, never
shown. Heatmaps can be reordered by hierarchical clustering so that related features sit together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
):
    """A heatmap of ``matrix`` (rows × columns) with optional cell annotations and clustering order.

    ``hide_diagonal`` leaves self-comparisons blank so they do not dominate the colour scale.
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
    ax.set_xticks(range(n_cols), [str(c) for c in matrix.columns], rotation=45, ha="right")
    ax.set_yticks(range(n_rows), [str(r) for r in matrix.index])
    ax.set_title(title)
    if annotate:
        for i in range(n_rows):
            for j in range(n_cols):
                v = values[i, j]
                text = "–" if not np.isfinite(v) else format(v, fmt)
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color=_text_color(image, v))
    return fig


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
