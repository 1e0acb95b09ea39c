"""The sections of a run report, each a function of :class:`RunData` that returns an HTML fragment."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

import pandas as pd

from gradiend.errors import GradiendError
from gradiend.report import html as H
from gradiend.report.figures import FigureResult
from gradiend.report.run import Interval, Rewrite, RunData

METRIC_LABELS = {
    "pearson": "Pearson r", "pearson_with_neutral": "Pearson r (with neutral rows, label 0)", "spearman": "Spearman ρ", "accuracy_ternary": "accuracy (3-way, with neutral)",
    "accuracy_binary": "accuracy (2-way)", "cohens_d": "Cohen's d", "auroc": "AUROC",
}
SPLIT_ORDER = ("train", "validation", "test", "total")


def num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"  # None and NaN: no value


def sig(value: float | None, digits: int = 3) -> str:
    """Significant digits, for probabilities that can be tiny (0.00185 rather than 0.002)."""
    return "–" if value is None or value != value else f"{value:.{digits}g}"


def shift_text(base: float | None, value: float | None) -> str:
    """``0.00185 → 0.00421 (×2.27)``: a probability shift with its ratio."""
    text = f"{sig(base)} → {sig(value)}"
    if base and value is not None and base == base and value == value:
        text += f" (×{value / base:.3g})"
    return text


def interval(metric: Interval | None, digits: int = 3) -> str:
    """``0.873 [0.851, 0.892]`` (95% interval), or the bare value when the file gives no interval."""
    if metric is None:
        return "–"
    if metric.low is None or metric.high is None:
        return num(metric.value, digits)
    return f"{num(metric.value, digits)} [{num(metric.low, digits)}, {num(metric.high, digits)}]"


def alpha_text(alpha: float | None) -> str:
    return "–" if alpha is None else f"{alpha:g}"


def h_text(h: float | None) -> str:
    return "–" if h is None else f"{h:+g}"


# --- header and key numbers --------------------------------------------------------------------------------


def header(run: RunData) -> str:
    classes = " vs ".join(f"{cid} ({', '.join(words)})" if words else cid for cid, words in run.classes.items())
    parts = [p for p in (run.model and f"model {run.model}", classes and f"classes {classes}") if p]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sub = " · ".join([*parts, f"report written {stamp}"])
    problems = "".join(f'<li class="problem">{H.esc(p)}</li>' for p in run.problems)
    return (
        f"<h1>GRADIEND report: {H.esc(run.name)}</h1>\n<p class=\"sub\">{H.esc(sub)}</p>"
        + (f"<ul>{problems}</ul>" if problems else "")
    )


def key_numbers(run: RunData) -> str:
    cards = [correlation_card(run)]
    rewrites = run.rewrites
    if run.decoder is None:
        cards.append(H.card("Rewrite", "not run", "the decoder evaluation has not run"))
    elif not rewrites:
        cards.append(H.card("Rewrite", "no selection", "decoder.json lists no selected cell"))
    cards += [rewrite_card(rw) for rw in rewrites if not rw.weaken]
    weaken = [rw for rw in rewrites if rw.weaken]
    body = f'<div class="cards">{"".join(cards)}</div>'
    if weaken:
        body += f'<h3>Weakening</h3><div class="cards">{"".join(rewrite_card(rw) for rw in weaken)}</div>'
    return H.section("Key numbers", body, "key-numbers")


def correlation_card(run: RunData) -> str:
    metric = run.correlation
    if metric is None:
        return H.card("Encoder correlation", "not run", "the encoder evaluation has not run")
    encoder = run.encoder or {}
    split = encoder.get("split", "?")
    per_class = encoder.get("per_class") or {}
    n_pairs = sum(int(s.get("n", 0)) for s in per_class.values() if isinstance(s, Mapping))
    n = f"{n_pairs} class rows" if n_pairs else f"{encoder.get('n_rows', '?')} rows"
    ci = f"95% CI [{num(metric.low)}, {num(metric.high)}] · " if metric.low is not None else ""
    tone = "good" if metric.value >= 0.5 else "bad"
    return H.card("Encoder correlation (Pearson r)", num(metric.value), f"{ci}{split} split, {n}", tone)


def rewrite_card(rw: Rewrite) -> str:
    verb = "Weaken" if rw.weaken else "Strengthen"
    label = f"{verb} {rw.class_id}"
    lms = f"LMS {num(rw.lms, 4)} vs base {num(rw.base_lms, 4)} (ratio {num(rw.lms_ratio)})"
    if not rw.useful:
        detail = f"{rw.reason or 'no grid cell beats the base model under the LMS constraint'}; base value {num(rw.base_value)}"
        return H.card(label, "no useful rewrite", detail, "bad")
    shift = shift_text(rw.base_value, rw.value)
    metric = rw.metric or ("1 − P(class words | own rows)" if rw.weaken else f"P({rw.class_id} words | other rows)")
    detail = f"{metric} · h = {h_text(rw.h)}, α = {alpha_text(rw.alpha)} · {lms}"
    if rw.shift is not None and rw.shift.low is not None:
        detail += f" · shift 95% CI [{num(rw.shift.low)}, {num(rw.shift.high)}]"
    return H.card(label, shift, detail, "good")


# --- figures and details --------------------------------------------------------------------------------


def figures(results: list[FigureResult]) -> str:
    parts = []
    for fig in results:
        if fig.path is not None:
            parts.append(H.figure(fig.path, fig.caption))
        else:
            missing = (H.not_run(fig.note.removesuffix(": not run")) if fig.note.endswith(": not run")
                       else f"<p>{H.esc(fig.note)}</p>")
            parts.append(f"<p>{H.esc(fig.caption)}</p>\n{missing}")
    return H.section("Figures", "\n".join(parts), "figures")


def training_details(run: RunData) -> str:
    df = run.training
    if df is None or df.empty or not {"seed", "step", "correlation"} <= set(df.columns):
        return H.section("Training", H.not_run("training"), "training")
    rows = []
    for seed, group in df.groupby("seed", sort=True):
        best = group[group["best"].astype(bool)] if "best" in group else group.iloc[0:0]
        scored = group.dropna(subset=["correlation"])
        pick = best.iloc[-1] if len(best) else scored.loc[scored["correlation"].idxmax()] if len(scored) else group.iloc[-1]
        corr = pd.to_numeric(pd.Series([pick["correlation"]]), errors="coerce").iloc[0]
        rows.append((seed, int(pick["step"]), num(float(corr)), int(group["step"].max()), len(group)))
    table = H.table(["seed", "best step", "correlation at best", "last step", "evaluations"], rows,
                    [True, True, True, True, True])
    return H.section("Training", table + _post_prune_note(run), "training")


def _post_prune_note(run: RunData) -> str:
    """One sentence on the post-prune (kept dimensions, validation correlation before and after a fine-tune)."""
    training = (run.gradiend_config or {}).get("training")
    pp = training.get("post_prune") if isinstance(training, Mapping) else None
    if not isinstance(pp, Mapping):
        return ""
    before, after = pp.get("correlation_after_prune"), pp.get("correlation")
    text = f"Post-prune kept {pp.get('input_dim')} input dimensions (top {pp.get('topk')} by decoder weight)"
    if isinstance(before, float):
        text += f"; validation correlation right after pruning {num(before, 4)}"
    if pp.get("steps") and isinstance(after, float):
        lr = pp.get("lr")
        at = f" (lr {lr:.3g})" if isinstance(lr, (int, float)) else ""
        text += f", after {pp['steps']} fine-tune steps{at} {num(after, 4)}"
    return f"<p>{H.esc(text)}.</p>"


def encoder_details(run: RunData) -> str:
    enc = run.encoder
    if enc is None:
        return H.section("Encoder evaluation", H.not_run("encoder evaluation"), "encoder")
    metrics = [(label, interval(Interval.parse(enc.get(key)))) for key, label in METRIC_LABELS.items() if key in enc]
    body = H.table(["metric", "value [95% CI]"], metrics, [False, True])
    per_class = enc.get("per_class")
    if isinstance(per_class, Mapping) and per_class:
        cols = ["mean", "std", "q05", "q25", "q50", "q75", "q95", "n"]
        rows = [[cid, *(_cell(stats.get(c)) for c in cols)] for cid, stats in per_class.items() if isinstance(stats, Mapping)]
        body += "<h3>Encoding per class</h3>" + H.table(["class", *cols], rows, [False] + [True] * len(cols))
    neutral = enc.get("neutral")
    if isinstance(neutral, Mapping) and neutral:
        rows = [[v, *(_cell(s.get(c)) for c in ("mean", "std", "n"))] for v, s in neutral.items() if isinstance(s, Mapping)]
        body += "<h3>Neutral text</h3>" + H.table(["variant", "mean", "std", "n"], rows, [False, True, True, True])
    return H.section("Encoder evaluation", body, "encoder")


def _lms_check_text(dec: Mapping[str, Any]) -> str:
    """A warning paragraph when the base LMS was degenerate (the LMS constraint said nothing)."""
    check = dec.get("lms_check")
    if not isinstance(check, Mapping) or not check.get("degenerate"):
        return ""
    return (f"<p><strong>The base LMS is degenerate</strong> ({H.esc(str(check.get('reason')))}): the LMS "
            "constraint could not be checked, so no rewrite is called useful.</p>")


def decoder_details(run: RunData) -> str:
    dec = run.decoder
    if dec is None:
        return H.section("Decoder evaluation", H.not_run("decoder evaluation"), "decoder")
    policy = dec.get("policy")
    policy_text = ", ".join(f"{k} = {v}" for k, v in policy.items()) if isinstance(policy, Mapping) else str(policy)
    body = f"<p>Selection policy: {H.esc(policy_text)}. LMS: {H.esc(dec.get('lms_definition', '–'))}.</p>"
    body += _lms_check_text(dec)
    rows = [
        (rw.key, "yes" if rw.useful else "no", h_text(rw.h), alpha_text(rw.alpha), num(rw.base_value), num(rw.value),
         interval(rw.shift), interval(rw.lms_ratio_ci) if rw.lms_ratio_ci else num(rw.lms_ratio), rw.reason or "")
        for rw in run.rewrites
    ]
    body += H.table(["selection", "useful", "h", "α", "base value", "value", "shift [95% CI]", "LMS ratio [95% CI]",
                     "reason"], rows, [False, False, True, True, True, True, True, True, False])
    if run.grid is not None:
        search = dec.get("search") if isinstance(dec.get("search"), Mapping) else {}
        how = f" by the {search['name']} search" if search.get("name") else ""
        body += f"<p>{len(run.grid)} cells evaluated{how} in metrics/decoder_grid.csv (including the base model).</p>"
    return H.section("Decoder evaluation", body, "decoder")


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    return num(float(value)) if isinstance(value, float) else str(value)


# --- data, configuration, provenance ---------------------------------------------------------------------


def data_section(run: RunData) -> str:
    meta = run.data_meta
    if meta is None:
        return H.section("Data", H.not_run("data creation"), "data")
    counts = meta.get("counts")
    body = counts_table(counts) if counts is not None else "<p>data.json has no counts.</p>"
    corpus = meta.get("corpus")
    if isinstance(corpus, Mapping):
        rows = [(k, v if not isinstance(v, Mapping) else ", ".join(f"{a}: {b}" for a, b in v.items()))
                for k, v in corpus.items()]
        body += "<h3>Corpus</h3>" + H.table(["", "value"], rows, [False, True])
    return H.section("Data (rows per class and split)", body, "data")


def counts_table(counts: Any) -> str:
    """``{class: {split: n}}`` as a table; a flat ``{key: n}`` as two columns; anything else as JSON text."""
    if isinstance(counts, Mapping) and counts and all(isinstance(v, Mapping) for v in counts.values()):
        keys = {k for v in counts.values() for k in v}
        cols = [s for s in SPLIT_ORDER if s in keys] + sorted(keys - set(SPLIT_ORDER))
        rows = [[cid, *(_cell(v.get(c)) for c in cols)] for cid, v in counts.items()]
        return H.table(["class", *cols], rows, [False] + [True] * len(cols))
    if isinstance(counts, Mapping):
        return H.table(["", "rows"], [(k, _cell(v)) for k, v in counts.items()], [False, True])
    return H.pre(str(counts))


def config_section(run: RunData) -> str:
    if run.config_text is None:
        return H.section("Configuration", H.not_run("config.toml"), "config")
    return H.section("Configuration (config.toml)", H.pre(run.config_text), "config")


def provenance(run: RunData) -> str:
    body = "<h3>Versions (environment that wrote this report)</h3>" + H.table(["package", "version"], versions())
    if run.data_meta and run.data_meta.get("gradiend_version"):
        body += f"<p>Data created with gradiend {H.esc(run.data_meta['gradiend_version'])}.</p>"
    body += "<h3>Fingerprints</h3>" + H.table(["stage", "fingerprint"], fingerprints(run))
    body += "<h3>Timings</h3>" + timings_table(run.timings)
    return H.section("Provenance", body, "provenance")


def versions() -> list[tuple[str, str]]:
    rows = []
    for package in ("gradiend", "torch", "transformers"):
        try:
            rows.append((package, metadata.version(package)))
        except metadata.PackageNotFoundError:
            rows.append((package, "not installed"))
    rows.append(("python", platform.python_version()))
    return rows


def fingerprints(run: RunData) -> list[tuple[str, str]]:
    """Stage fingerprints recomputed from config.toml, plus the ones stored in the artifacts."""
    from gradiend.config import config_from_dict, stage_fingerprints

    rows: list[tuple[str, str]] = []
    if run.config is not None:
        try:
            rows += [(f"{stage} (from config.toml)", fp) for stage, fp in stage_fingerprints(config_from_dict(run.config)).items()]
        except GradiendError as exc:
            rows.append(("config.toml", f"not a valid configuration: {exc}"))
    for label, meta in (("data (data/data.json)", run.data_meta), ("gradiend (gradiend/config.json)", run.gradiend_config)):
        if isinstance(meta, Mapping) and meta.get("fingerprint"):
            rows.append((label, str(meta["fingerprint"])[:16]))
    return rows or [("–", "none recorded")]


def timings_table(timings: Mapping[str, Any] | None) -> str:
    if not timings:
        return H.not_run("metrics/timings.json")
    seconds = {k: v for k, v in timings.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    rows = [(stage, f"{s:.1f}") for stage, s in seconds.items()]
    rows.append(("total", f"{sum(seconds.values()):.1f}"))
    return H.table(["stage", "seconds"], rows, [False, True])

