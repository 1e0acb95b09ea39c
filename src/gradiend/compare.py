"""Compare GRADIENDs trained on one base model: top-k parameter overlap, similarity, cross-encoding.

Everything happens in the base model's *global parameter index space* (:mod:`gradiend.lm.params`), so
GRADIENDs with different parameter selections or pruning compare correctly.

Chance level for overlaps: two uniformly random k-subsets of a universe of N indices share on average
k_A·k_B/N indices, and the overlap follows a hypergeometric law; each cell reports that expectation and the
upper-tail p-value P(X ≥ observed). The universe N is the set of indices *both* GRADIENDs could have chosen
(the intersection of their input index sets), since a dimension outside a GRADIEND's inputs can never be in its
top-k.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.stats import hypergeom

from gradiend.errors import GradiendError
from gradiend.lm.params import layer_of
from gradiend.topk import topk_count


@dataclass(frozen=True)
class TopK:
    """The top-k input dimensions of one GRADIEND, as sorted global indices with their importances."""

    name: str
    indices: np.ndarray  # int64 global indices, sorted ascending
    importance: np.ndarray  # same order as indices
    universe: np.ndarray  # all global indices this GRADIEND could choose from (sorted)


def topk_from_importance(
    name: str, global_indices: torch.Tensor | np.ndarray, importance: torch.Tensor | np.ndarray, k: int | float
) -> TopK:
    """Top-k by importance (ties broken toward the lower global index, so results are deterministic)."""
    gidx = np.asarray(global_indices, dtype=np.int64)
    imp = np.asarray(importance, dtype=np.float64)
    if gidx.shape != imp.shape:
        raise GradiendError("global indices and importance must have the same length")
    kk = topk_count(k, len(imp))
    order = np.lexsort((gidx, -imp))[:kk]
    chosen = np.sort(order)
    return TopK(name, gidx[chosen], imp[chosen], np.sort(gidx))


def topk_of(gradiend, k: int | float = 1000, importance: str = "decoder-weight", name: str | None = None) -> TopK:
    """Top-k set of a :class:`gradiend.model.Gradiend` in the global index space."""
    gidx = gradiend.selection.global_indices()
    imp = gradiend.importance(importance).detach().float().cpu()
    return topk_from_importance(name or gradiend.meta.name, gidx, imp, k)


@dataclass(frozen=True)
class OverlapCell:
    intersection: int
    overlap_coefficient: float  # |A∩B| / min(|A|, |B|)
    jaccard: float
    expected: float  # chance-level intersection
    p_value: float  # P(X ≥ intersection) under random top-k sets


def overlap(a: TopK, b: TopK) -> OverlapCell:
    """Overlap of two top-k sets, with its chance level and hypergeometric upper-tail p-value."""
    inter = int(np.intersect1d(a.indices, b.indices, assume_unique=True).size)
    universe = np.intersect1d(a.universe, b.universe, assume_unique=True)
    n_univ = int(universe.size)
    ka = int(np.isin(a.indices, universe, assume_unique=True).sum())
    kb = int(np.isin(b.indices, universe, assume_unique=True).sum())
    union = len(a.indices) + len(b.indices) - inter
    expected = ka * kb / n_univ if n_univ else 0.0
    p = float(hypergeom.sf(inter - 1, n_univ, ka, kb)) if n_univ else 1.0
    return OverlapCell(
        intersection=inter,
        overlap_coefficient=inter / min(len(a.indices), len(b.indices)),
        jaccard=inter / union if union else 0.0,
        expected=expected,
        p_value=p,
    )


def overlap_matrices(sets: Sequence[TopK]) -> dict[str, pd.DataFrame]:
    """Square matrices (rows = columns = GRADIEND names) of every :class:`OverlapCell` field."""
    names = [s.name for s in sets]
    fields = OverlapCell.__dataclass_fields__
    mats = {f: np.zeros((len(sets), len(sets))) for f in fields}
    for i, a in enumerate(sets):
        for j, b in enumerate(sets):
            if j < i:
                for f in fields:
                    mats[f][i, j] = mats[f][j, i]
                continue
            cell = overlap(a, b)
            for f in fields:
                mats[f][i, j] = getattr(cell, f)
    return {f: pd.DataFrame(m, index=names, columns=names) for f, m in mats.items()}


def simulate_expected_overlap(n: int, ka: int, kb: int, trials: int = 2000, seed: int = 0) -> float:
    """Monte-Carlo mean intersection of random ka- and kb-subsets of range(n) (checks the chance level)."""
    rng = np.random.default_rng(seed)
    total = 0
    for _ in range(trials):
        a = rng.choice(n, ka, replace=False)
        b = rng.choice(n, kb, replace=False)
        total += np.intersect1d(a, b).size
    return total / trials


# --- where the top-k lives --------------------------------------------------------------------------


def component_of(name: str) -> str:
    """Coarse component of a parameter name: embeddings, attention, mlp, norm or other."""
    low = name.lower()
    if "embed" in low or "wte" in low or "wpe" in low:
        return "embeddings"
    if "norm" in low or ".ln_" in low:
        return "norm"
    if any(t in low for t in ("attn", "attention", "q_proj", "k_proj", "v_proj", "o_proj", "query", "key", "value")):
        return "attention"
    if any(t in low for t in ("mlp", "intermediate", "output.dense", "fc", "up_proj", "down_proj", "gate_proj")):
        return "mlp"
    return "other"


def locate_indices(indices: np.ndarray, specs: Sequence) -> pd.DataFrame:
    """Map global indices to (parameter, flat index, coordinates) using the selection's ``ParamSpec`` list."""
    offsets = np.array([s.global_offset for s in specs], dtype=np.int64)
    order = np.argsort(offsets)
    offsets, specs = offsets[order], [specs[i] for i in order]
    pos = np.searchsorted(offsets, indices, side="right") - 1
    rows = []
    for g, p in zip(indices.tolist(), pos.tolist(), strict=True):
        spec = specs[p] if p >= 0 else None
        if spec is None or g >= spec.global_offset + spec.numel:
            raise GradiendError(f"global index {g} is not in any selected parameter")
        flat = g - spec.global_offset
        coords = np.unravel_index(flat, spec.shape) if spec.shape else ()
        rows.append((g, spec.name, flat, tuple(int(c) for c in coords), layer_of(spec.name), component_of(spec.name)))
    return pd.DataFrame(rows, columns=["global_index", "parameter", "flat_index", "coords", "layer", "component"])


def topk_table(top: TopK, specs: Sequence) -> pd.DataFrame:
    """Export a top-k set as a table: parameter name, coordinates, importance (sorted by importance)."""
    table = locate_indices(top.indices, specs)
    table["importance"] = top.importance
    return table.sort_values(["importance", "global_index"], ascending=[False, True]).reset_index(drop=True)


def grouped_share(tables: Mapping[str, pd.DataFrame], by: str = "layer") -> pd.DataFrame:
    """Fraction of each GRADIEND's top-k per group (``parameter``, ``layer`` or ``component``)."""
    cols = {}
    for name, table in tables.items():
        key = table[by].astype(object).where(table[by].notna(), "none").astype(str)
        cols[name] = key.value_counts(normalize=True)
    return pd.DataFrame(cols).fillna(0.0).sort_index()


# --- similarity of directions -----------------------------------------------------------------------


def cosine_on_shared(
    a_idx: np.ndarray, a_vec: np.ndarray, b_idx: np.ndarray, b_vec: np.ndarray
) -> float:
    """Cosine of two sparse vectors over the global index space (zeros outside each one's indices)."""
    common, ia, ib = np.intersect1d(a_idx, b_idx, assume_unique=True, return_indices=True)
    na, nb = np.linalg.norm(a_vec), np.linalg.norm(b_vec)
    if na == 0 or nb == 0 or common.size == 0:
        return 0.0
    return float(np.dot(a_vec[ia], b_vec[ib]) / (na * nb))


def similarity_matrix(
    names: Sequence[str], vectors: Sequence[tuple[np.ndarray, np.ndarray]]
) -> pd.DataFrame:
    """Pairwise cosine similarity of (global indices, values) vectors, e.g. decoder columns or dec(h)."""
    n = len(names)
    m = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            m[i, j] = m[j, i] = cosine_on_shared(*vectors[i], *vectors[j])
    return pd.DataFrame(m, index=list(names), columns=list(names))


# --- cross-encoding ---------------------------------------------------------------------------------
