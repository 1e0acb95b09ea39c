"""Compare several trained runs on one base model: top-k overlap, similarity, cross-encoding, figures.

``compare_runs(run_dirs, out_dir)`` reads each run's GRADIEND (and, for cross-encoding, its data and the base
model once) and writes matrices as CSV, top-k tables, figures and a ``comparison.json`` summary that names the
pairs whose top-k overlap is above chance (hypergeometric p-value, Bonferroni-corrected).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gradiend import constants as C
from gradiend.compare import (
    TopK,
    cross_encoding_matrix,
    grouped_share,
    overlap_matrices,
    similarity_matrix,
    topk_of,
    topk_table,
)
from gradiend.errors import GradiendError
from gradiend.io import write_json, write_with
from gradiend.lm.load import LoadedModel
from gradiend.model import Gradiend

log = logging.getLogger(__name__)


@dataclass
class Member:
    """One compared run: its name, GRADIEND and run directory."""

    name: str
    gradiend: Gradiend
    run_dir: Path


@dataclass
class ComparisonResult:
    out_dir: Path
    matrices: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    above_chance: list[tuple[str, str]] = field(default_factory=list)


def load_members(run_dirs: Sequence[str | Path]) -> list[Member]:
    """GRADIENDs of the runs (a run directory or a GRADIEND directory each); all on the same base model."""
    members = []
    for d in run_dirs:
        d = Path(d)
        gdir = d / C.GRADIEND_DIR if (d / C.GRADIEND_DIR).is_dir() else d
        members.append(Member(d.name, Gradiend.from_pretrained(gdir), d))
    if len(members) < 2:
        raise GradiendError("comparing needs at least two runs")
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise GradiendError(f"run names must be distinct to label the matrices, got {names}")
    bases = {m.gradiend.meta.base_model for m in members}
    if len(bases) > 1:
        raise GradiendError(f"runs use different base models {sorted(bases)}: their parameters are not comparable")
    return members


def compare_runs(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    topk: int | float = 1000,
    importance: str = "decoder-weight",
    cross_encoding: bool = True,
    max_rows: int = 50,
    formats: Iterable[str] = ("png",),
    alpha: float = 0.01,
    lm: LoadedModel | None = None,
) -> ComparisonResult:
    """Write the comparison of ``run_dirs`` into ``out_dir`` (see module docstring).

    ``lm`` is the already loaded base model for cross-encoding (loaded from the GRADIENDs' metadata if None).
    """
    out = Path(out_dir)
    members = load_members(run_dirs)
    result = ComparisonResult(out)
    sets = [topk_of(m.gradiend, topk, importance, name=m.name) for m in members]
    _write_topk_tables(members, sets, out)
    result.matrices.update(overlap_matrices(sets))
    result.matrices["cosine_decoder"] = _cosines(members, lambda g: g.decoder_weight[:, 0])
    result.matrices["cosine_update"] = _cosines(members, lambda g: g.update_vector(1.0).detach())
    if cross_encoding:
        result.matrices["cross_encoding"] = _cross_encoding(members, max_rows, lm)
    for name, matrix in result.matrices.items():
        write_with(out / f"{name}.csv", lambda p, m=matrix: m.to_csv(p))
    result.above_chance = _above_chance(result.matrices["p_value"], alpha)
    result.figures = _figures(result.matrices, sets, out, formats)
    write_json(out / "comparison.json", {
        "runs": [str(m.run_dir) for m in members], "topk": topk, "importance": importance,
        "above_chance": [list(p) for p in result.above_chance], "alpha": alpha,
        "note": "pairs whose top-k overlap exceeds chance at the Bonferroni-corrected level alpha / #pairs",
        "intersection": result.matrices["intersection"].to_dict(),
        "expected": result.matrices["expected"].to_dict(),
    })
    return result


def _write_topk_tables(members: Sequence[Member], sets: Sequence[TopK], out: Path) -> None:
    tables = {}
    for m, top in zip(members, sets, strict=True):
        table = topk_table(top, m.gradiend.selection.specs)
        tables[m.name] = table
        write_with(out / "topk" / f"{m.name}.csv", lambda p, t=table: t.to_csv(p, index=False))
    for by in ("layer", "component", "parameter"):
        share = grouped_share(tables, by)
        write_with(out / f"topk_share_by_{by}.csv", lambda p, s=share: s.to_csv(p))


def _cosines(members: Sequence[Member], vector) -> pd.DataFrame:
    vectors = []
    for m in members:
        with torch.no_grad():
            v = vector(m.gradiend).float().cpu().numpy().reshape(-1)
        vectors.append((m.gradiend.selection.global_indices().numpy(), v))
    return similarity_matrix([m.name for m in members], vectors)


def _cross_encoding(members: Sequence[Member], max_rows: int, lm: LoadedModel | None) -> pd.DataFrame:
    from gradiend.data import load_data
    from gradiend.evaluate.encoder import _encode, cap_rows
    from gradiend.lm.load import load_model

    lm = lm or load_model(members[0].gradiend.meta.base_model)
    rows = {}
    for m in members:
        pairs = load_data(m.run_dir / C.DATA_DIR).pairs
        test = pairs[pairs["split"] == "test"]
        rows[m.name] = cap_rows(test, max_rows, seed=0, by="factual_class").reset_index(drop=True)
    by_name = {m.name: m for m in members}

    def encode(a: str, b: str) -> pd.DataFrame:
        g = by_name[a].gradiend
        source = g.meta.source
        table = rows[b]
        column = "alternative_class" if source == "alternative" else "factual_class"
        values = _encode(lm, g, table, source)
        return pd.DataFrame({"encoding": values, "class": table[column].to_numpy()})

    positive = {m.name: m.gradiend.meta.classes[0] for m in members}
    log.info("cross-encoding %d × %d runs on up to %d test rows per class", len(members), len(members), max_rows)
    return cross_encoding_matrix([m.name for m in members], encode, positive)


def _above_chance(p_values: pd.DataFrame, alpha: float) -> list[tuple[str, str]]:
    names = list(p_values.index)
    n_pairs = max(1, len(names) * (len(names) - 1) // 2)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if p_values.loc[a, b] < alpha / n_pairs]


def _figures(matrices: dict[str, pd.DataFrame], sets: Sequence[TopK], out: Path, formats: Iterable[str]) -> list[Path]:
    from gradiend.plots_compare import plot_heatmap, plot_venn

    figs = [
        plot_heatmap(matrices["overlap_coefficient"], out / "overlap_heatmap", "top-k overlap |A∩B| / min(|A|,|B|)",
                     cluster=True, hide_diagonal=True, fmt=".3f", formats=formats),
        plot_heatmap(-np.log10(matrices["p_value"].clip(lower=1e-300)), out / "overlap_pvalue_heatmap",
                     "overlap above chance: −log10 p (hypergeometric)", fmt=".0f", hide_diagonal=True,
                     formats=formats),
        plot_heatmap(matrices["cosine_decoder"], out / "cosine_heatmap", "cosine of decoder weights",
                     center_zero=True, cluster=True, hide_diagonal=True, formats=formats),
    ]
    if "cross_encoding" in matrices:
        figs.append(plot_heatmap(matrices["cross_encoding"], out / "cross_encoding_heatmap",
                                 "cross-encoding: mean h of column's positive class, by row's GRADIEND",
                                 center_zero=True, formats=formats))
    if len(sets) in (2, 3):
        figs.append(plot_venn([set(s.indices.tolist()) for s in sets], [s.name for s in sets], out / "topk_venn",
                              formats=formats))
    return figs
