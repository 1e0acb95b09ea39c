"""Compare several trained runs on one base model: top-k overlap, similarity, cross-encoding, figures.

``compare_runs(run_dirs, out_dir)`` reads each run's GRADIEND (and, for cross-encoding, the data sets the runs
read — each once, as one shared pool of rows — and the base model once) and writes matrices as CSV, top-k tables,
figures and a ``comparison.json`` summary that names the pairs whose top-k overlap is above chance
(hypergeometric p-value, Bonferroni-corrected). Cross-encoding gives GRADIEND × GRADIEND, × transition and
× class matrices (:mod:`gradiend.cross_encoding`); top-k sets are drawn as a Venn diagram for 2–3 runs (the
``venn`` runs of a larger study) and as an UpSet plot beyond three.
"""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gradiend import constants as C
from gradiend.compare import (
    TopK,
    grouped_share,
    overlap_matrices,
    similarity_matrix,
    topk_of,
    topk_table,
)
from gradiend.cross_encoding import (
    aligned,
    class_matrix,
    column_groups,
    encode_pool,
    gradiend_matrix,
    pool_rows,
    transition_matrix,
)
from gradiend.errors import GradiendError
from gradiend.io import write_json, write_with
from gradiend.lm.load import LoadedModel
from gradiend.model import Gradiend
from gradiend.tasks import Task

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
        if gdir != d:
            from gradiend.pipeline import verify_run

            verify_run(d, ("train",))
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
    venn: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
) -> ComparisonResult:
    """Write the comparison of ``run_dirs`` into ``out_dir`` (see module docstring).

    ``lm`` is the already loaded base model for cross-encoding (loaded from the GRADIENDs' metadata if None);
    ``max_rows`` caps the pooled test rows per transition; ``venn`` names 2–3 runs for the Venn diagram (default:
    all runs when there are at most three); ``labels`` maps run and class names to display labels in the figures.
    """
    out = Path(out_dir)
    members = load_members(run_dirs)
    result = ComparisonResult(out)
    sets = [topk_of(m.gradiend, topk, importance, name=m.name) for m in members]
    _write_topk_tables(members, sets, out)
    result.matrices.update(overlap_matrices(sets))
    result.matrices["cosine_decoder"] = _cosines(members, lambda g: g.decoder_weight[:, 0])
    result.matrices["cosine_update"] = _cosines(members, lambda g: g.update_vector(1.0).detach())
    groups: dict[str, dict[str, list[str]]] = {}
    if cross_encoding:
        long = _cross_encode(members, max_rows, lm)
        write_with(out / "cross_encodings.parquet", lambda p: long.to_parquet(p, index=False))
        result.matrices.update(_cross_matrices(long, members))
        groups = {"cross_encoding_transitions": column_groups(long, "transition"),
                  "cross_encoding_classes": column_groups(long, "factual_class")}
    for name, matrix in result.matrices.items():
        write_with(out / f"{name}.csv", lambda p, m=matrix: m.to_csv(p))
    result.above_chance = _above_chance(result.matrices["p_value"], alpha)
    result.figures = _figures(result.matrices, sets, out, formats, groups, _venn_sets(sets, venn), labels or {})
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


def _cross_encode(members: Sequence[Member], max_rows: int, lm: LoadedModel | None) -> pd.DataFrame:
    """Every GRADIEND on the shared pool of the data sets its runs read (each data set once)."""
    from gradiend.data import load_data
    from gradiend.evaluate.encoder import _encode
    from gradiend.lm.load import load_model

    lm = lm or load_model(members[0].gradiend.meta.base_model)
    data_dirs = {}
    for m in members:
        data_dir = (m.run_dir / C.DATA_DIR).resolve()
        data_dirs.setdefault(data_dir, _dataset_name(data_dir, data_dirs))
    datasets = {name: load_data(d) for d, name in data_dirs.items()}
    pool = pool_rows({n: d.pairs for n, d in datasets.items()}, max_rows,
                     class_order={n: d.feature.class_ids for n, d in datasets.items()})
    by_name = {m.name: m.gradiend for m in members}
    log.info("cross-encoding: %d GRADIENDs × %d pooled rows (%d data set(s))", len(members), len(pool), len(data_dirs))
    return encode_pool(pool, {m.name: m.gradiend.meta.source for m in members},
                       lambda name, rows: _encode(lm, by_name[name], rows, by_name[name].meta.source))


def _dataset_name(data_dir: Path, seen: Mapping[Path, str]) -> str:
    """A data set's display name: its directory name (a study's ``data/<name>``), or its run's name."""
    name = data_dir.parent.name if data_dir.name == C.DATA_DIR else data_dir.name
    return name if name not in seen.values() else f"{name}_{len(seen)}"


def _cross_matrices(long: pd.DataFrame, members: Sequence[Member]) -> dict[str, pd.DataFrame]:
    tasks = {m.name: _member_task(m) for m in members}
    oriented = aligned(long, tasks)
    order = [m.name for m in members]
    return {"cross_encoding": gradiend_matrix(oriented, tasks),
            "cross_encoding_transitions": transition_matrix(oriented, order),
            "cross_encoding_classes": class_matrix(oriented, order)}


def _member_task(member: Member) -> Task:
    task = member.gradiend.task
    if task is None:
        raise GradiendError(f"run {member.name!r}: its GRADIEND has no task (classes) to orient its cross-encoding")
    return task


def _venn_sets(sets: Sequence[TopK], venn: Sequence[str]) -> list[TopK]:
    """The top-k sets of the Venn diagram: the named runs, or all when there are two or three."""
    if not venn:
        return list(sets) if len(sets) in (2, 3) else []
    by_name = {s.name: s for s in sets}
    unknown = [v for v in venn if v not in by_name]
    if unknown or len(venn) not in (2, 3):
        raise GradiendError(f"venn must name 2 or 3 compared runs; got {list(venn)} (unknown: {unknown}); runs: "
                            f"{', '.join(by_name)}")
    return [by_name[v] for v in venn]


def _above_chance(p_values: pd.DataFrame, alpha: float) -> list[tuple[str, str]]:
    names = list(p_values.index)
    n_pairs = max(1, len(names) * (len(names) - 1) // 2)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if p_values.loc[a, b] < alpha / n_pairs]


def _figures(matrices: dict[str, pd.DataFrame], sets: Sequence[TopK], out: Path, formats: Iterable[str],
             groups: Mapping[str, Mapping[str, list[str]]], venn: Sequence[TopK], labels: Mapping[str, str]) -> list[Path]:
    from gradiend.plots_compare import plot_heatmap, plot_upset, plot_venn

    named = {"row_labels": labels, "col_labels": labels}
    figs = [
        plot_heatmap(matrices["overlap_coefficient"], out / "overlap_heatmap", "top-k overlap |A∩B| / min(|A|,|B|)",
                     cluster=True, hide_diagonal=True, fmt=".3f", formats=formats, **named),
        plot_heatmap(_overlap_vs_chance(matrices), out / "overlap_chance_heatmap",
                     "top-k overlap: shared / expected by chance", cluster=True, hide_diagonal=True, fmt=".1f",
                     formats=formats, **named),
        plot_heatmap(-np.log10(matrices["p_value"].clip(lower=1e-300)), out / "overlap_pvalue_heatmap",
                     "overlap above chance: −log10 p (hypergeometric)", fmt=".0f", hide_diagonal=True,
                     formats=formats, **named),
        plot_heatmap(matrices["cosine_decoder"], out / "cosine_heatmap", "cosine of decoder weights",
                     center_zero=True, cluster=True, hide_diagonal=True, formats=formats, **named),
    ]
    titles = {"cross_encoding": "cross-encoding: mean h of the column's positive rows, by row's GRADIEND",
              "cross_encoding_transitions": "cross-encoding: GRADIEND × transition (anchor-aligned mean h)",
              "cross_encoding_classes": "cross-encoding: GRADIEND × class of the source token (anchor-aligned)"}
    for key, title in titles.items():
        if key in matrices:
            figs.append(plot_heatmap(matrices[key], out / f"{key}_heatmap", title, center_zero=True, formats=formats,
                                     col_groups=groups.get(key), **named))
    if venn:
        figs.append(plot_venn([set(s.indices.tolist()) for s in venn], [labels.get(s.name, s.name) for s in venn],
                              out / "topk_venn", formats=formats))
    if len(sets) > 3:
        figs.append(plot_upset([set(s.indices.tolist()) for s in sets], [labels.get(s.name, s.name) for s in sets],
                               out / "topk_upset", formats=formats))
    return figs


def _overlap_vs_chance(matrices: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Shared top-k dimensions as a multiple of the chance level (1 = as random sets would share)."""
    expected = matrices["expected"].where(matrices["expected"] > 0)
    return matrices["intersection"] / expected


class _CallableModule(types.ModuleType):
    """This module, callable: ``gradiend.study(suite)`` runs a study (:func:`gradiend.api.study`).

    ``gradiend.study`` names both the front door's call and this submodule; importing the submodule binds the
    package attribute to the module, so the module itself answers the call.
    """

    def __call__(self, *args, **kwargs) -> Path:
        from gradiend.api import study

        return study(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
