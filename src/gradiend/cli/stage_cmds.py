"""Single-stage verbs over a run directory: ``train``, ``evaluate``, ``rewrite``, ``report``.

Each reads the run's ``config.toml`` and delegates to :func:`gradiend.pipeline.run`, so a stage run from the
CLI is recorded exactly like one run by ``gradiend run`` (fingerprints, timings, resumability).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click

from gradiend import constants as C
from gradiend.errors import GradiendError

_RUN_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


def _run_config(run_dir: Path, overrides: list[str]):
    from gradiend.config import apply_overrides, load_config

    path = run_dir / C.CONFIG_FILE
    if not path.is_file():
        raise GradiendError(f"{str(run_dir)!r} is not a gradiend run directory (no {C.CONFIG_FILE})")
    return apply_overrides(load_config(path), overrides)


@click.command("train")
@click.option("--model", "model_spec", required=True, help="Hub id, model directory, .gguf file or offline:NAME.")
@click.option("--data", "data_dir", required=True, type=_RUN_DIR, help="A directory written by `gradiend data`.")
@click.option("--out", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run directory to create (or resume).")
@click.option("--steps", type=int, default=None, help="Optimizer steps (default: one epoch).")
@click.option("--seeds", type=int, default=1, show_default=True, help="Seeds trained side by side.")
@click.option("--lr", type=float, default=1e-5, show_default=True, help="GRADIEND learning rate.")
@click.option("--rows-per-gradient", type=int, default=32, show_default=True)
@click.option("--eval-every", type=int, default=20, show_default=True)
@click.option("--pre-prune", type=float, default=None, help="Keep this fraction (≤1) or count of dims before training.")
@click.option("--post-prune", type=float, default=None, help="Keep this fraction (≤1) or count of dims after training.")
@click.option("--param", "params", multiple=True, help="Glob over parameter names to select (repeatable).")
@click.option("--positive", default=None, help="Positive class (data sets with more than two classes).")
@click.option("--negative", default=None, help="Negative class (data sets with more than two classes).")
@click.option("--identity", "identity", multiple=True,
              help="Class whose rows enter as identity rows (label 0); repeatable, or 'others'.")
def train(model_spec: str, data_dir: Path, run_dir: Path, steps: int | None, seeds: int, lr: float,
          rows_per_gradient: int, eval_every: int, pre_prune: float | None, post_prune: float | None,
          params: tuple[str, ...], positive: str | None, negative: str | None, identity: tuple[str, ...]) -> None:
    """Train a GRADIEND on a data directory; writes RUN/gradiend and RUN/metrics/training.jsonl."""
    from gradiend.config import config_from_dict
    from gradiend.data import load_data
    from gradiend.pipeline import Run, run

    data = load_data(data_dir)
    raw = {
        "name": run_dir.name, "output_dir": str(run_dir.parent),
        "model": {"spec": model_spec, "params": list(params)},
        "data": _data_section(data, data_dir),
        "task": _task_section(positive, negative, identity),
        "gradients": {"rows_per_gradient": rows_per_gradient, **_prune("pre_prune_topk", pre_prune)},
        "train": {"lr": lr, "seeds": list(range(seeds)), "eval_every": eval_every, **({"steps": steps} if steps else {}),
                  **_prune("post_prune_topk", post_prune)},
    }
    config = config_from_dict(raw)
    r = Run(config, run_dir)
    if _fingerprint(r.data_dir) != data.meta.get("fingerprint") or not r.is_done("data"):
        # adopt the given data directory as this run's data stage (replacing older data: later stages redo)
        r.invalidate_from("data")
        shutil.rmtree(r.data_dir, ignore_errors=True)
        shutil.copytree(data_dir, r.data_dir)
        r.mark_done("data", 0.0)
    t0 = time.perf_counter()
    run(config, until="train", run_dir=run_dir)
    click.echo(f"GRADIEND written to {r.gradiend_dir} in {time.perf_counter() - t0:.1f} s")


def _data_section(data, data_dir: Path) -> dict:
    """The [data] section that made ``data`` (from its data.json), so the run's config.toml reproduces it."""
    source = data.meta.get("source") or {}
    options = {k: ("none" if v is None else v) for k, v in (data.meta.get("config") or {}).items()}
    classes = {c.id: list(c.targets) for c in data.feature.classes}
    if "table" in source:  # imported: our own pairs table is a valid table to import again
        table = source["table"] if Path(source["table"]).exists() else str(data_dir / C.PAIRS_FILE)
        return {"table": table, "options": options, "classes": classes}
    texts = source.get("source")
    section = {k: v for k, v in source.items() if k != "source" and v is not None}
    return {"texts": texts if isinstance(texts, str) else str(data_dir), **section, "options": options,
            "classes": classes}


def _task_section(positive: str | None, negative: str | None, identity: tuple[str, ...]) -> dict:
    section: dict = {k: v for k, v in (("positive", positive), ("negative", negative)) if v is not None}
    if identity:
        section["identity"] = "others" if identity == ("others",) else list(identity)
    return section


def _fingerprint(data_dir: Path) -> str | None:
    from gradiend.io import read_json

    meta = data_dir / C.DATA_META_FILE
    return read_json(meta).get("fingerprint") if meta.is_file() else None


def _prune(key: str, value: float | None) -> dict[str, float | int]:
    if value is None:
        return {}
    return {key: value if value <= 1 else int(value)}


@click.command("evaluate")
@click.argument("run_dir", type=_RUN_DIR)
@click.option("--split", default=None, help="Split to evaluate (default: the config's, usually test).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE", help="Override a config value.")
def evaluate(run_dir: Path, split: str | None, overrides: tuple[str, ...]) -> None:
    """Encoder metrics and the decoder grid for a trained run (metrics/encoder.json, metrics/decoder.json)."""
    from gradiend.io import read_json
    from gradiend.pipeline import run

    config = _run_config(run_dir, [*overrides, *([f'eval.split="{split}"'] if split else [])])
    run(config, until="decoder", run_dir=run_dir)
    enc = read_json(run_dir / C.METRICS_DIR / C.ENCODER_METRICS_FILE)
    pearson = enc["pearson"]
    click.echo(f"encoder: Pearson r = {pearson['value']:.4f} (95% CI {pearson['ci'][0]:.4f}–{pearson['ci'][1]:.4f}) "
               f"on {enc.get('n_rows', '?')} {enc.get('split', '')} rows")
    dec = read_json(run_dir / C.METRICS_DIR / C.DECODER_METRICS_FILE)
    check = dec.get("lms_check") or {}
    if check.get("degenerate"):
        click.echo(f"decoder: base LMS is degenerate ({check.get('reason')}); no rewrite is called useful")
    for key, entry in dec.get("selected", {}).items():
        if entry.get("useful"):
            click.echo(f"decoder {key}: h={entry['h']:+g} α={entry['alpha']:g}: {_g(entry.get('base_value'))} → "
                       f"{_g(entry.get('value'))} (shift 95% CI {_ci(entry.get('shift'))}), "
                       f"LMS ratio {_g(entry.get('lms_ratio'))} (95% CI {_ci({'ci': entry.get('lms_ratio_ci')})})")
        else:
            click.echo(f"decoder {key}: no useful rewrite ({entry.get('reason', '')})")


def _g(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def _ci(metric: dict | None) -> str:
    low, high = ((metric or {}).get("ci") or [None, None])[:2]
    return "–" if low is None or high is None else f"[{low:.4g}, {high:.4g}]"


@click.command("rewrite")
@click.argument("run_dir", type=_RUN_DIR)
@click.option("--strengthen", "strengthen", default=None, help="Class to strengthen (uses the decoder's selection).")
@click.option("--weaken", "weaken", default=None, help="Class to weaken (uses the decoder's selection).")
@click.option("--h", "h", type=float, default=None, help="Feature factor h (with --alpha: skip the selection).")
@click.option("--alpha", type=float, default=None, help="Learning rate α (with --h).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Model directory to write (default: RUN/rewritten/<class>).")
@click.option("--force", is_flag=True, help="Save even when the decoder found no useful rewrite.")
def rewrite(run_dir: Path, strengthen: str | None, weaken: str | None, h: float | None, alpha: float | None,
            out_dir: Path | None, force: bool) -> None:
    """Write θ' = θ + α·dec(h) as a Hugging Face model directory (with tokenizer, gradiend_rewrite.json, card)."""
    from gradiend.cards import rewrite_card, write_card
    from gradiend.io import read_json
    from gradiend.model import Gradiend
    from gradiend.pipeline import Run, verify_run
    from gradiend.rewrite import rewrite_model, rewrite_selected

    r = Run(_run_config(run_dir, []), run_dir)
    verify_run(run_dir, ("data", "train", "decoder"))
    gradiend = Gradiend.from_pretrained(r.gradiend_dir)
    if (h is None) != (alpha is None):
        raise GradiendError("give both --h and --alpha, or neither (then --strengthen/--weaken picks the selection)")
    if h is not None:
        out = out_dir or run_dir / C.REWRITTEN_DIR / f"h{h:+g}_alpha{alpha:g}"
        path = rewrite_model(r.lm, gradiend, h, alpha, out, None, r.gradiend_dir)
    else:
        if (strengthen is None) == (weaken is None):
            raise GradiendError("name exactly one class with --strengthen or --weaken (or give --h and --alpha)")
        key = strengthen if strengthen is not None else f"{weaken}_weaken"
        decoder_file = run_dir / C.METRICS_DIR / C.DECODER_METRICS_FILE
        if not decoder_file.is_file():
            raise GradiendError(f"no decoder evaluation in {run_dir}: run `gradiend evaluate {run_dir}` first")
        selected = read_json(decoder_file).get("selected", {})
        if key not in selected:
            raise GradiendError(f"no decoder selection for {key!r}; available: {', '.join(selected)}")
        out = out_dir or run_dir / C.REWRITTEN_DIR / key
        path = rewrite_selected(r.lm, gradiend, selected[key], out, r.gradiend_dir, force=force)
    write_card(path, rewrite_card(path, run_dir, key=path.name))
    click.echo(f"rewritten model written to {path}")


@click.command("report")
@click.argument("run_dir", type=_RUN_DIR)
def report(run_dir: Path) -> None:
    """(Re)draw the figures and write RUN/report.html from the run's metric files."""
    from gradiend.pipeline import STAGES, verify_run
    from gradiend.report import write_figures, write_report

    verify_run(run_dir, STAGES[:-1])
    write_figures(run_dir, refresh=True)
    click.echo(f"report: {write_report(run_dir)}")
