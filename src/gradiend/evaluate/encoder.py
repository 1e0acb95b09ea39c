"""Encoder evaluation: encode held-out rows with a GRADIEND and measure how well h separates the classes.

Rows (``variant`` column of the encodings table):

* ``pairs`` — every pair row of the split (every transition of the data set, not only the trained ones, and one
  identity row per occurrence of a class outside the task's groups), encoded from its source gradient
  (``meta.source``); label +1/−1 by the group of the source token (for ``diff`` the factual token), 0 for identity
  rows and classes outside the task (see docs/architecture.md). ``in_task`` marks the rows of the trained
  transitions and the task's identity classes: the headline metrics use those; ``per_class`` and
  ``per_transition`` report every class and transition.
* ``neutral_masked`` — the same sentences with the target restored and a *different*, non-feature word masked
  (label 0): does the encoder stay near 0 for the same contexts?
* ``neutral_text`` — neutral sentences (no feature word) with one word masked (label 0).

Neutral rows predict the masked word itself (factual = alternative), so their gradient is the factual one.
Feature words are excluded by whole-word match in any letter case (not by substring, which would exclude
"the" for "he"), and the masked word always has a non-empty left context so that causal models can score it.

:func:`encoder_metrics` is a pure function of the encodings table (no model needed), with seeded, vectorised
bootstrap intervals; :func:`evaluate_encoder` produces the table and the metrics; :func:`write_encoder_results`
stores ``metrics/encodings.parquet`` and ``metrics/encoder.json``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from gradiend.constants import ENCODER_METRICS_FILE, ENCODINGS_FILE, MASK
from gradiend.errors import GradiendError
from gradiend.evaluate import stats
from gradiend.evaluate.config import EvalConfig
from gradiend.identity import check_base_model
from gradiend.io import write_json, write_with
from gradiend.lm.load import LoadedModel
from gradiend.tasks import Task, all_rows, transition_name

log = logging.getLogger(__name__)

ENCODING_COLUMNS = ("encoding", "label", "class", "word", "variant", "split", "sentence_id", "transition", "in_task")
ALL_SPLITS = "all"
VARIANTS = ("pairs", "neutral_masked", "neutral_text")
NEUTRAL_CLASS = "neutral"
BOUNDARIES = (-0.5, 0.5)
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")


# --- metrics from an encodings table ----------------------------------------------------------------


def _ternary(values: np.ndarray, boundaries: tuple[float, float]) -> np.ndarray:
    lo, hi = boundaries
    return np.where(values <= lo, -1, np.where(values >= hi, 1, 0))


def _summary(values: np.ndarray) -> dict[str, Any]:
    q = np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95]) if values.size else [np.nan] * 5
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    out = {"mean": float(values.mean()) if values.size else None, "std": std}
    out.update({k: float(v) for k, v in zip(("q05", "q25", "q50", "q75", "q95"), q, strict=True)})
    out["n"] = int(values.size)
    return out


def _check_table(df: pd.DataFrame) -> pd.DataFrame:
    """The task's labelled pair rows (label ±1); both signs must be present."""
    missing = [c for c in ENCODING_COLUMNS if c not in df.columns]
    if missing:
        raise GradiendError(f"encodings table lacks columns {missing}; expected {list(ENCODING_COLUMNS)}")
    pairs = df[(df["variant"] == "pairs") & df["in_task"].astype(bool) & (df["label"] != 0)]
    absent = [name for name, sign in (("positive", 1), ("negative", -1)) if not (np.sign(pairs["label"]) == sign).any()]
    if absent or len(pairs) < 2:
        raise GradiendError(f"encoder metrics need pair rows of both groups of the task; none for {absent or 'enough rows'}")
    return pairs


def encoder_metrics(
    df: pd.DataFrame,
    classes: tuple[str, str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    boundaries: tuple[float, float] = BOUNDARIES,
) -> dict[str, Any]:
    """Metrics of an encodings table (columns ``ENCODING_COLUMNS``) in the ``metrics/encoder.json`` schema.

    Pearson/Spearman/binary accuracy/Cohen's d/AUROC use the task's pair rows with label ±1; ``pearson_with_identity``
    adds the task's identity rows (label 0); the ternary accuracy and ``pearson_with_neutral`` add the neutral rows
    too. ``classes`` = the task's (positive, negative) groups; ``per_class``/``per_transition`` cover every class and
    transition of the table.
    """
    pairs = _check_table(df)
    rng = np.random.default_rng(seed)
    enc, lab = pairs["encoding"].to_numpy(float), pairs["label"].to_numpy(float)
    pos, neg = enc[lab > 0], enc[lab < 0]
    task_rows = df[(df["variant"] == "pairs") & df["in_task"].astype(bool)]
    scored = pd.concat([task_rows, df[df["variant"] != "pairs"]])
    all_enc, all_lab = scored["encoding"].to_numpy(float), scored["label"].to_numpy(float)
    return {
        "split": _split_name(df),
        "n_rows": int(len(df)),
        "classes": list(classes),
        "pearson": stats.paired(stats.pearson, enc, lab, n_boot, rng),
        "spearman": stats.paired(stats.spearman, enc, lab, n_boot, rng),
        "pearson_with_identity": stats.paired(stats.pearson, task_rows["encoding"].to_numpy(float),
                                              task_rows["label"].to_numpy(float), n_boot, rng),
        "pearson_with_neutral": stats.paired(stats.pearson, all_enc, all_lab, n_boot, rng),
        "accuracy_ternary": stats.paired(
            stats.mean_equal, _ternary(all_enc, boundaries), _ternary(all_lab, boundaries), n_boot, rng
        ),
        "accuracy_binary": stats.paired(stats.mean_equal, np.where(enc >= 0, 1, -1), np.sign(lab), n_boot, rng),
        "cohens_d": stats.two_sample(stats.cohens_d, pos, neg, n_boot, rng),
        "auroc": stats.two_sample(stats.auroc, pos, neg, n_boot, rng),
        "per_group": {classes[0]: _summary(pos), classes[1]: _summary(neg)},
        "per_class": _summaries(df[df["variant"] == "pairs"], "class"),
        "per_transition": _summaries(df[df["variant"] == "pairs"], "transition"),
        "per_target": _per_group(pairs, "word"),
        "neutral": _neutral(df),
        "boundaries": list(boundaries),
        "bootstrap": {"samples": n_boot, "seed": seed, "level": stats.CI_LEVEL},
    }


def _summaries(df: pd.DataFrame, column: str) -> dict[str, dict[str, Any]]:
    """Encoding summary (and the label) per value of ``column``, in order of appearance."""
    out = {}
    for key, group in df.groupby(column, sort=False):
        out[str(key)] = {**_summary(group["encoding"].to_numpy(float)), "label": float(group["label"].iloc[0])}
    return out


def _split_name(df: pd.DataFrame) -> str:
    splits = sorted(df["split"].astype(str).unique())
    return splits[0] if len(splits) == 1 else "+".join(splits)


def _per_group(df: pd.DataFrame, column: str) -> dict[str, dict[str, Any]]:
    grouped = df.groupby(column, sort=True)["encoding"]
    return {str(k): {"mean": float(v.mean()), "n": int(v.size)} for k, v in grouped}


def _neutral(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    out = {}
    for variant in VARIANTS[1:]:
        values = df.loc[df["variant"] == variant, "encoding"].to_numpy(float)
        if values.size:
            std = float(values.std(ddof=1)) if values.size > 1 else 0.0
            out[variant] = {"mean": float(values.mean()), "std": std, "n": int(values.size)}
    return out


# --- neutral rows -----------------------------------------------------------------------------------


def _mask_one_word(
    text: str, exclude: re.Pattern[str] | None, rng: np.random.Generator
) -> tuple[str, str] | None:
    """(masked text, masked word) for a random non-feature word with a left context, or None."""
    words = [m for m in _WORD.finditer(text) if m.start() > 0 and text[: m.start()].strip()]
    words = [m for m in words if exclude is None or not exclude.fullmatch(m.group(0))]
    if not words:
        return None
    m = words[int(rng.integers(len(words)))]
    return text[: m.start()] + MASK + text[m.end() :], m.group(0)


def neutral_rows(
    texts: Sequence[str],
    exclude_words: Iterable[str],
    *,
    variant: str,
    seed: int = 0,
    split: str | Sequence[str] = "test",
    sentence_ids: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Rows in the pairs-table layout with one non-feature word masked per text (factual = alternative).

    ``split`` names the split of every text, or gives one per text. Texts without a maskable word are skipped;
    the draw is seeded.
    """
    from gradiend.evaluate.lm_metrics import word_pattern

    if variant not in VARIANTS[1:]:
        raise GradiendError(f"neutral variant must be one of {VARIANTS[1:]}, got {variant!r}")
    pattern = word_pattern(exclude_words)
    rng = np.random.default_rng(seed)
    ids = list(sentence_ids) if sentence_ids is not None else list(range(len(texts)))
    splits = [split] * len(texts) if isinstance(split, str) else list(split)
    rows = []
    for text, sid, text_split in zip(texts, ids, splits, strict=True):
        done = _mask_one_word(str(text), pattern, rng)
        if done is not None:
            rows.append({"masked": done[0], "factual": done[1], "factual_class": NEUTRAL_CLASS,
                         "alternative": done[1], "alternative_class": NEUTRAL_CLASS, "split": text_split,
                         "sentence_id": int(sid), "variant": variant})
    return pd.DataFrame(rows, columns=[*_NEUTRAL_ROW_COLUMNS])


_NEUTRAL_ROW_COLUMNS = ("masked", "factual", "factual_class", "alternative", "alternative_class", "split",
                        "sentence_id", "variant")


def restore_target(pairs: pd.DataFrame) -> list[str]:
    """The original sentences of pair rows: ``[MASK]`` replaced by the factual word."""
    return [m.replace(MASK, f, 1) for m, f in zip(pairs["masked"], pairs["factual"], strict=True)]


# --- labels -----------------------------------------------------------------------------------------


def source_columns(source: str) -> tuple[str, str]:
    """(word column, class column) that carry the source token: alternative for ``alternative``, else factual."""
    if source not in ("factual", "alternative", "diff"):
        raise GradiendError(f"unknown GRADIEND source {source!r}; expected factual, alternative or diff")
    return ("alternative", "alternative_class") if source == "alternative" else ("factual", "factual_class")


def pair_labels(pairs: pd.DataFrame, task: Task, source: str) -> pd.DataFrame:
    """``label``, ``class``, ``word``, ``transition`` and ``in_task`` of each pair row for the GRADIEND's source.

    ``class``/``word`` are those of the source token; the label follows its group in ``task`` (0 outside it and for
    identity rows); ``in_task`` marks the trained transitions and the task's identity classes.
    """
    word_col, class_col = source_columns(source)
    factual, alternative = pairs["factual_class"].astype(str), pairs["alternative_class"].astype(str)
    trained = set(task.transitions) | {(c, c) for c in task.identity}
    return pd.DataFrame({
        "label": [task.source_label(source, f, a) for f, a in zip(factual, alternative, strict=True)],
        "class": pairs[class_col].astype(str).to_numpy(),
        "word": pairs[word_col].astype(str).to_numpy(),
        "transition": [transition_name(f, a) for f, a in zip(factual, alternative, strict=True)],
        "in_task": [(f, a) in trained for f, a in zip(factual, alternative, strict=True)],
    })


# --- encoding with a model --------------------------------------------------------------------------


@dataclass(frozen=True)
class EncoderResult:
    """The encodings table and the metrics computed from it."""

    encodings: pd.DataFrame
    metrics: dict[str, Any]


def _encode(lm: LoadedModel, gradiend: Any, rows: pd.DataFrame, kind: str, chunk: int = 16) -> np.ndarray:
    """h for each row: the GRADIEND's encoding of the row's ``kind`` gradient (first latent dimension).

    Uses forward-mode AD (:mod:`gradiend.gradients.projections`: one dual forward per chunk of rows instead of one
    backward per row); a model with an op that lacks forward-mode support falls back to per-row gradients.
    """
    if rows.empty:
        return np.zeros(0)
    rows = rows.reset_index(drop=True)
    try:
        return _encode_forward_mode(lm, gradiend, rows, kind, chunk)
    except NotImplementedError as exc:
        log.warning("forward-mode AD is not supported on this model (%s); encoding with one backward per row", exc)
        return _encode_per_row(lm, gradiend, rows, kind)


def _encode_forward_mode(lm: LoadedModel, gradiend: Any, rows: pd.DataFrame, kind: str, chunk: int) -> np.ndarray:
    from gradiend.gradients.projections import directional_derivatives
    from gradiend.lm.objectives import gradient_objective

    with torch.no_grad():
        z = directional_derivatives(lm.model, gradient_objective(lm), gradiend.selection, rows, kind,
                                    gradiend.encoder_weight[0], chunk=chunk)
        return gradiend.activate(z[:, None])[:, 0].double().cpu().numpy()


def _encode_per_row(lm: LoadedModel, gradiend: Any, rows: pd.DataFrame, kind: str) -> np.ndarray:
    from gradiend.gradients import GradientComputer

    computer = GradientComputer(lm, gradiend.selection)
    values = []
    for grad in computer.row_gradients(rows, kind):
        with torch.no_grad():  # only the encoding; the gradient itself needs autograd
            values.append(float(gradiend.encode(grad.reshape(-1)).reshape(-1)[0]))
    return np.asarray(values, dtype=float)


def _class_words(pairs: pd.DataFrame) -> set[str]:
    return set(pairs["factual"].astype(str)) | set(pairs["alternative"].astype(str))


def encodings_table(
    lm: LoadedModel,
    gradiend: Any,
    pairs: pd.DataFrame,
    neutral_texts: Sequence[str] = (),
    *,
    split: str = "test",
    feature_words: Iterable[str] = (),
    max_rows: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Encode the ``split``'s pair rows and both neutral variants; one row per encoding (``ENCODING_COLUMNS``).

    ``split = "all"`` encodes every split (the ``split`` column tells them apart). The pair rows are every
    transition of the data set plus identity rows of the classes outside the task (:func:`gradiend.tasks.all_rows`).
    ``max_rows`` caps the rows per trained transition and each neutral variant (seeded sample); every other
    transition, which only describes how the GRADIEND reads the rest of the data set, gets a quarter of it (≥ 5).
    """
    task = task_of(gradiend)
    rows = _capped_rows(all_rows(pairs, task, None if split == ALL_SPLITS else split), task, max_rows, seed)
    if rows.empty:
        raise GradiendError(f"no pair rows in split {split!r}")
    exclude = set(feature_words) | _class_words(pairs)
    parts = [_pairs_part(lm, gradiend, rows, task)]
    originals = rows.drop_duplicates(["masked", "factual"])
    masked = neutral_rows(restore_target(originals), exclude, variant="neutral_masked", seed=seed,
                          split=originals["split"].tolist(), sentence_ids=originals["sentence_id"].tolist())
    text = neutral_rows(list(neutral_texts)[: max_rows or None], exclude, variant="neutral_text", seed=seed,
                        split=split)
    for neutral in (masked, text):
        parts.append(_neutral_part(lm, gradiend, cap_rows(neutral, max_rows, seed)))
    return pd.concat(parts, ignore_index=True)[list(ENCODING_COLUMNS)]


def _capped_rows(rows: pd.DataFrame, task: Task, max_rows: int | None, seed: int) -> pd.DataFrame:
    """Rows capped per transition: ``max_rows`` for the task's own, a quarter of it (≥ 5) for the others."""
    key = rows["factual_class"].astype(str) + "->" + rows["alternative_class"].astype(str)
    own = {transition_name(f, a) for f, a in task.transitions} | {transition_name(c, c) for c in task.identity}
    mine = key.isin(own)
    other_cap = None if max_rows is None else max(5, max_rows // 4)
    parts = [cap_rows(rows[mine].assign(_t=key[mine]), max_rows, seed, by="_t"),
             cap_rows(rows[~mine].assign(_t=key[~mine]), other_cap, seed, by="_t")]
    return pd.concat(parts).sort_index().drop(columns="_t")


def task_of(gradiend: Any) -> Task:
    """The task a GRADIEND was trained on (its metadata), or a clear error for one without classes."""
    task = gradiend.task
    if task is None:
        raise GradiendError("the GRADIEND has no task (positive and negative classes) in its metadata; train it "
                            "with classes")
    return task


def _pairs_part(lm: LoadedModel, gradiend: Any, rows: pd.DataFrame, task: Task) -> pd.DataFrame:
    labels = pair_labels(rows, task, gradiend.meta.source)
    labels["encoding"] = _encode(lm, gradiend, rows, gradiend.meta.source)
    labels["variant"], labels["split"] = "pairs", rows["split"].to_numpy()
    labels["sentence_id"] = rows["sentence_id"].to_numpy()
    return labels


def _neutral_part(lm: LoadedModel, gradiend: Any, rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "encoding": _encode(lm, gradiend, rows, "factual"),
        "label": 0.0, "class": NEUTRAL_CLASS, "word": rows["factual"].to_numpy(), "variant": rows["variant"].to_numpy(),
        "split": rows["split"].to_numpy(), "sentence_id": rows["sentence_id"].to_numpy(),
        "transition": NEUTRAL_CLASS, "in_task": False,
    })


def cap_rows(df: pd.DataFrame, max_rows: int | None, seed: int, by: str | None = None) -> pd.DataFrame:
    """At most ``max_rows`` rows (per value of column ``by`` when given), seeded, in original order."""
    if max_rows is None:
        return df
    if max_rows < 1:
        raise GradiendError(f"max_rows must be ≥ 1 or None, got {max_rows}")
    groups = [df] if by is None else [g for _, g in df.groupby(by, sort=True)]
    kept = [g.sample(n=min(max_rows, len(g)), random_state=seed) for g in groups]
    return df.loc[sorted(pd.concat(kept).index)] if kept else df


def evaluate_encoder(
    lm: LoadedModel,
    gradiend: Any,
    pairs: pd.DataFrame,
    neutral_texts: Sequence[str] = (),
    config: EvalConfig | None = None,
) -> EncoderResult:
    """Encode ``config.split`` (pairs + neutral variants) and compute :func:`encoder_metrics` on it.

    Uses ``config.max_rows`` (per class and per neutral variant), ``config.bootstrap`` and ``config.seed``.
    """
    check_base_model(gradiend, lm)
    config = config or EvalConfig()
    table = encodings_table(lm, gradiend, pairs, neutral_texts, split=config.split, max_rows=config.max_rows,
                            seed=config.seed)
    metrics = encoder_metrics(table, task_of(gradiend).group_ids, n_boot=config.bootstrap, seed=config.seed)
    return EncoderResult(table, metrics)


def write_encoder_results(result: EncoderResult, metrics_dir: str | Path) -> tuple[Path, Path]:
    """Write ``encodings.parquet`` and ``encoder.json`` into ``metrics_dir`` (atomically); return both paths."""
    metrics_dir = Path(metrics_dir)
    table_path, json_path = metrics_dir / ENCODINGS_FILE, metrics_dir / ENCODER_METRICS_FILE
    write_with(table_path, lambda p: result.encodings.to_parquet(p, index=False))
    write_json(json_path, result.metrics)
    return table_path, json_path


def neutral_text_column(neutral: pd.DataFrame | Sequence[str], split: str | None = None) -> list[str]:
    """Texts of a neutral table (optionally one split) or a list of texts."""
    if isinstance(neutral, pd.DataFrame):
        if split is not None and "split" in neutral.columns and (neutral["split"] == split).any():
            neutral = neutral[neutral["split"] == split]
        return neutral["text"].astype(str).tolist()
    return [str(t) for t in neutral]


def lms_text_column(neutral: pd.DataFrame | Sequence[str], split: str | None = None) -> list[str]:
    """Neutral texts for the LMS: those of ``split`` first, then those of the other splits.

    No stage trains on neutral text, so every split is held-out text for the LMS; the split's own texts come
    first so that a large neutral set keeps today's sample, and a small one (50 neutral rows give 5 test texts)
    still gives the base LMS enough tokens to anchor the LMS constraint.
    """
    if isinstance(neutral, pd.DataFrame) and split is not None and "split" in neutral.columns:
        own = neutral["split"] == split
        neutral = pd.concat([neutral[own], neutral[~own]])
    return neutral_text_column(neutral)

