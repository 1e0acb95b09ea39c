"""Model cards: a README.md with Hugging Face Hub metadata for a GRADIEND directory and for a rewritten model.

A card tells a person who finds the artifact what it is: the base model and its licence, the feature (classes
and target words), the data (source and sizes), the training settings, the encoder metrics with their 95 %
intervals, the selected rewrite (h, α) with its probability shift and LMS ratio, how to load it, and the papers
to cite. Everything comes from the files a run already wrote (``gradiend/config.json``, ``data/data.json``,
``metrics/*.json``, ``rewritten/*/gradiend_rewrite.json``); a figure a run has not produced yet is left out, so
the train stage writes a first card and the rewrite stage the complete one (:func:`write_cards`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradiend import constants as C
from gradiend.export import Stat, Table, cell_text, decoder_table, encoder_table, fmt, markdown_table
from gradiend.io import read_json, write_with

CARD_FILE = C.CARD_FILE
CITATION = """```bibtex
@article{drechsel2025gradiend,
  title   = {{GRADIEND}: Feature Learning within Neural Networks Exemplified through Biases},
  author  = {Drechsel, Jonathan and Herbold, Steffen},
  journal = {arXiv preprint arXiv:2502.01406},
  year    = {2025}
}
```

The `gradiend` package: arXiv [2602.23993](https://arxiv.org/abs/2602.23993)."""
# offline assets whose Hub original and licence are known (gradiend.assets ships them without a card)
KNOWN_BASE_MODELS: dict[str, tuple[str, str]] = {
    "offline:smollm2-135m": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0"),
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# --- facts -------------------------------------------------------------------------------------------


def _json(path: Path) -> dict[str, Any]:
    return read_json(path) if path.is_file() else {}


def _toml(path: Path) -> dict[str, Any]:
    from gradiend.config import tomllib

    return tomllib.loads(path.read_text()) if path.is_file() else {}


def base_model_facts(spec: str) -> tuple[str | None, str | None]:
    """(Hub id, licence) of a base model spec: known assets, a Hub id's cached card, a local dir's README.md."""
    if spec in KNOWN_BASE_MODELS:
        return KNOWN_BASE_MODELS[spec]
    hub_id = spec if _HUB_ID.match(spec) and not Path(spec).exists() else None
    readme = Path(spec) / CARD_FILE if hub_id is None else _cached_card(hub_id)
    return hub_id, _licence_of(readme)


def _cached_card(hub_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return None
    found = try_to_load_from_cache(hub_id, CARD_FILE)
    return Path(found) if isinstance(found, str) else None


def _licence_of(readme: Path | None) -> str | None:
    if readme is None or not readme.is_file():
        return None
    match = re.search(r"^---\n(.*?)\n---", readme.read_text(errors="replace"), re.S)
    found = re.search(r"^license:\s*(\S+)", match.group(1), re.M) if match else None
    return found.group(1).strip("\"'") if found else None


class RunFacts:
    """The run files a card reads (each optional): GRADIEND config, data set meta, encoder and decoder metrics."""

    def __init__(self, gradiend_dir: Path, run_dir: Path | None) -> None:
        self.config = _json(gradiend_dir / C.GRADIEND_CONFIG_FILE)
        run = run_dir if run_dir is not None else Path("/nonexistent")
        self.data = _json(run / C.DATA_DIR / C.DATA_META_FILE)
        self.encoder = _json(run / C.METRICS_DIR / C.ENCODER_METRICS_FILE)
        self.decoder = _json(run / C.METRICS_DIR / C.DECODER_METRICS_FILE)
        self.gradients = _toml(run / C.CONFIG_FILE).get("gradients") or {}
        self.base = str(self.config.get("base_model", ""))
        self.hub_id, self.licence = base_model_facts(self.base)

    @property
    def classes(self) -> dict[str, list[str]]:
        """Class id → target words (from the data set; the GRADIEND's classes alone when there is none)."""
        found = {c["id"]: list(c.get("targets", [])) for c in self.data.get("feature", {}).get("classes", [])}
        return found or {c: [] for c in self.config.get("classes") or []}


# --- formatting --------------------------------------------------------------------------------------


def _yaml(meta: Mapping[str, Any]) -> str:
    lines = ["---"]
    for key, value in meta.items():
        if isinstance(value, list):
            lines += [f"{key}:"] + [f"- {v}" for v in value]
        elif value:
            lines.append(f"{key}: {value}")
    return "\n".join([*lines, "---", ""])


# --- sections ----------------------------------------------------------------------------------------


def _base_section(f: RunFacts) -> str:
    hub = f" ([{f.hub_id}](https://huggingface.co/{f.hub_id}))" if f.hub_id and f.hub_id != f.base else ""
    ident = f.config.get("base_model_identity") or {}
    licence = f.licence or "not recorded: check the base model's own card"
    return (f"## Base model\n\n- **Base model:** `{f.base}`{hub} ({f.config.get('model_family', '?')} LM)\n"
            f"- **Base model licence:** {licence}\n"
            f"- **Parameter fingerprint:** `{ident.get('fingerprint', '–')}` "
            f"({fmt(ident.get('total_params'), 12)} parameters in the base model)")


def _feature_section(f: RunFacts) -> str:
    task = f.config.get("task") or {}
    positive, negative = (f.config.get("classes") or [None, None])[:2]
    rows = [[f"`{c}`", ", ".join(words) or "–", _role(c, positive, negative, task)] for c, words in f.classes.items()]
    return "## Feature\n\n" + markdown_table(["class", "target words", "role"], rows)


def _role(cid: str, positive: str | None, negative: str | None, task: Mapping[str, Any]) -> str:
    if cid == positive:
        return "positive (encodes toward +1)"
    if cid == negative:
        return "negative (encodes toward −1)"
    groups = task.get("groups") or {}
    group = next((g for g, members in groups.items() if cid in members), None)
    return f"in group {group}" if group else "identity / other"


def _data_section(f: RunFacts) -> str:
    if not f.data:
        return ""
    source = f.data.get("source") or {}
    counts = f.data.get("counts") or {}
    splits = [s for s in f.data.get("splits", ["train", "validation", "test"])]
    rows = [[f"`{c}`", *(str(n.get(s, 0)) for s in splits), str(n.get("total", sum(n.get(s, 0) for s in splits)))]
            for c, n in counts.items()]
    where = source.get("source") or source.get("table") or "–"
    return (f"## Data\n\n- **Source:** `{where}`\n\nRows per class and split (one row per masked target "
            f"occurrence):\n\n" + markdown_table(["class", *splits, "total"], rows))


def _training_section(f: RunFacts) -> str:
    training = f.config.get("training") or {}
    cfg = training.get("config") or {}
    arch = f.config.get("architecture") or {}
    params = f.config.get("parameters") or []
    prune = training.get("post_prune") or {}
    items = [
        ("gradient source → target", f"{f.config.get('source')} → {f.config.get('target')}"),
        ("selected base-model parameters", f"{len(params)} tensors, {fmt(arch.get('input_dim'), 12)} input dimensions"),
        ("encoder / decoder activation", f"{arch.get('activation_encoder')} / {arch.get('activation_decoder')}"),
        ("rows per gradient", fmt(f.gradients.get("rows_per_gradient"), 12)),
        ("pre-pruning", f"top {f.gradients['pre_prune_topk']}" if "pre_prune_topk" in f.gradients else "none"),
        ("learning rate", fmt(cfg.get("lr"))), ("steps", fmt(cfg.get("steps"), 12)),
        ("seeds", ", ".join(str(s) for s in cfg.get("seeds", [])) or "–"),
        ("best seed / step", f"{training.get('seed', '–')} / {training.get('best_step', '–')}"),
        ("validation correlation", fmt(training.get("correlation"))),
        ("post-pruning", f"top {prune['topk']} → {prune.get('input_dim')} dims" if prune else "none"),
    ]
    return "## Training\n\n" + markdown_table(["setting", "value"], [[k, str(v)] for k, v in items])


def _encoder_section(f: RunFacts) -> str:
    if not f.encoder:
        return ""
    return (f"## Encoder evaluation\n\nOn the {f.encoder.get('split', 'test')} split ({f.encoder.get('n_rows', '?')} "
            "rows), value with 95 % bootstrap interval:\n\n" + _markdown(encoder_table(f.encoder)))


def _markdown(table: Table) -> str:
    return markdown_table(list(table.header), [[cell_text(cell) for cell in row] for row in table.rows])


def _decoder_section(f: RunFacts) -> str:
    if not f.decoder.get("selected"):
        return ""
    policy = f.decoder.get("policy") or {}
    floor = f" (LMS ≥ {policy['lms_ratio']} × base LMS)" if "lms_ratio" in policy else ""
    return ("## Selected rewrites\n\nθ' = θ + α · dec(h) on the selected parameters; the decoder grid picks, per "
            f"rewrite, the strongest cell under the {policy.get('name', 'selection')} policy{floor}. LMS = "
            f"{f.decoder.get('lms_definition', 'language-modelling score')}.\n\n"
            + _markdown(decoder_table(f.decoder)))


def _usage_gradiend(repo: str, f: RunFacts) -> str:
    positive = (f.config.get("classes") or ["<class>"])[0]
    return ("## How to use\n\n```python\nimport gradiend\n\n"
            f'g = gradiend.Gradiend.from_pretrained("{repo}")\n'
            f'lm = gradiend.load_model("{f.hub_id or f.base}")\n'
            f'h = g.strengthen_h("{positive}")  # feature factor that strengthens {positive}\n'
            "with gradiend.edited(lm, g, h, alpha=0.1) as model:  # θ + α·dec(h), restored afterwards\n"
            "    ...\n```\n\n"
            "Or from the command line (writes a Hugging Face model directory with its card):\n\n"
            f"```bash\ngradiend apply --gradiend {repo} --strengthen {positive} --alpha 0.1 --out rewritten\n```")


# --- cards -------------------------------------------------------------------------------------------


def gradiend_card(gradiend_dir: str | Path, run_dir: str | Path | None = None, repo_id: str | None = None) -> str:
    """The README.md of a GRADIEND directory (with the run's data and metrics when ``run_dir`` is given)."""
    f = RunFacts(Path(gradiend_dir), Path(run_dir) if run_dir is not None else None)
    meta = {"library_name": "gradiend", "base_model": f.hub_id, "license": f.licence,
            "tags": ["gradiend", "feature-learning", "interpretability", str(f.config.get("model_family", ""))]}
    positive, negative = (f.config.get("classes") or ["?", "?"])[:2]
    title = f"# GRADIEND {positive} vs {negative} for `{f.base}`\n\n"
    intro = ("A GRADIEND: a one-hidden-layer encoder–decoder trained on the base model's gradients. Its encoder "
             f"reads whether a masked token belongs to {positive} (+1) or {negative} (−1); its decoder gives a "
             "direction in the base model's weights that strengthens one class when added.\n\n")
    parts = [_base_section(f), _feature_section(f), _data_section(f), _training_section(f), _encoder_section(f),
             _decoder_section(f), _usage_gradiend(repo_id or str(gradiend_dir), f), "## Citation\n\n" + CITATION]
    return _yaml(meta) + title + intro + "\n\n".join(p for p in parts if p) + "\n"


def rewrite_card(model_dir: str | Path, run_dir: str | Path | None = None, key: str | None = None,
                 gradiend_dir: str | Path | None = None, repo_id: str | None = None) -> str:
    """The README.md of a rewritten model: what changed (θ + α·dec(h) where) and by how much.

    The GRADIEND's facts come from ``gradiend_dir``, else the run's ``gradiend/``, else the path the rewrite
    recorded.
    """
    model_dir = Path(model_dir)
    rw = _json(model_dir / C.REWRITE_META_FILE)
    run = Path(run_dir) if run_dir is not None else None
    if gradiend_dir is None:
        gradiend_dir = run / C.GRADIEND_DIR if run is not None else str(rw.get("gradiend") or "")
    f = RunFacts(Path(gradiend_dir), run)
    key = key or model_dir.name
    entry = _measured(rw, (f.decoder.get("selected") or {}).get(key) or {})
    meta = {"library_name": "transformers", "base_model": f.hub_id, "base_model_relation": "finetune" if f.hub_id
            else None, "license": f.licence, "tags": ["gradiend", "model-editing", str(rw.get("family", ""))]}
    changed = (f"## What changed\n\n- **Changed:** θ' = θ + α · dec(h) with h = {fmt(rw.get('h'))}, α = {fmt(rw.get('alpha'))} on "
               f"{fmt((f.config.get('architecture') or {}).get('input_dim'), 12)} entries of "
               f"{len(f.config.get('parameters') or [])} parameter tensors; every other weight is the base model's.")
    effect = _effect(entry)
    auto = "AutoModelForMaskedLM" if rw.get("family") == "masked" else "AutoModelForCausalLM"
    where = repo_id or str(model_dir)
    usage = (f"## How to use\n\nA standard Hugging Face model:\n\n```python\nfrom transformers import {auto}, "
             f'AutoTokenizer\n\nmodel = {auto}.from_pretrained("{where}")\n'
             f'tokenizer = AutoTokenizer.from_pretrained("{where}")\n```')
    parts = [f"# `{f.base}` rewritten by a GRADIEND: {key}", changed + "\n" + effect, _base_section(f),
             _feature_section(f), usage, "## Citation\n\n" + CITATION]
    return _yaml(meta) + "\n\n".join(p for p in parts if p) + "\n"


def _measured(rw: Mapping[str, Any], selected: Mapping[str, Any]) -> Mapping[str, Any]:
    """The decoder's figures for this rewrite: its own record, else the selection when it is the same (h, α)."""
    if rw.get("metrics"):
        return rw["metrics"]
    same = selected and (selected.get("h"), selected.get("alpha")) == (rw.get("h"), rw.get("alpha"))
    return selected if same else {}


def _effect(entry: Mapping[str, Any]) -> str:
    if not entry:
        return "- **Effect:** not evaluated (a fixed (h, α) rewrite; run the decoder evaluation to measure it)."
    ratio = Stat.of(entry.get("lms_ratio"), entry.get("lms_ratio_ci"))
    return (f"- **Effect:** {entry.get('metric', 'target probability')} {fmt(entry.get('base_value'))} → "
            f"{fmt(entry.get('value'))} (shift {Stat.of(entry.get('shift'))}, 95 % CI); "
            f"LMS ratio {ratio}"
            f"{'' if entry.get('useful', True) else ' — not called useful: ' + str(entry.get('reason', ''))}.")


def write_card(directory: str | Path, text: str) -> Path:
    """Write ``text`` as ``directory/README.md`` atomically."""
    path = Path(directory) / CARD_FILE
    write_with(path, lambda tmp: tmp.write_text(text))
    return path


def write_cards(run_dir: str | Path) -> list[Path]:
    """Write the card of a run's GRADIEND and of each of its rewritten models; return the paths written."""
    run_dir = Path(run_dir)
    written = []
    if (run_dir / C.GRADIEND_DIR / C.GRADIEND_CONFIG_FILE).is_file():
        written.append(write_card(run_dir / C.GRADIEND_DIR, gradiend_card(run_dir / C.GRADIEND_DIR, run_dir)))
    rewritten = run_dir / C.REWRITTEN_DIR
    for model_dir in sorted(rewritten.iterdir()) if rewritten.is_dir() else []:
        if (model_dir / C.REWRITE_META_FILE).is_file():
            written.append(write_card(model_dir, rewrite_card(model_dir, run_dir)))
    return written
