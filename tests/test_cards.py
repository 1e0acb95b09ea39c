"""Model cards of a run with planted metrics, a real tiny GRADIEND and a real rewritten model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from gradiend import constants as C
from gradiend.cards import CARD_FILE, write_cards
from gradiend.lm.load import load_model
from gradiend.lm.params import select_parameters
from gradiend.model import Gradiend, GradiendMeta, canonical_directions
from gradiend.rewrite import rewrite_model
from test_report_browser import _dom, find_browser
from test_report_synthetic import DATA_COUNTS, make_run

SHIFT = {"value": 0.3125, "ci": [0.2901, 0.3352]}
LMS_RATIO_CI = [0.9931, 0.9987]
TRAINING = {"seed": 1, "best_step": 300, "correlation": 0.9312,
            "config": {"lr": 1e-4, "steps": 500, "seeds": [0, 1]}}


@pytest.fixture(scope="module")
def carded_run(tmp_path_factory, make_tiny) -> Path:
    root = tmp_path_factory.mktemp("cards")
    base = root / "tiny-bert"
    lm = make_tiny("bert", seed=3)
    lm.model.save_pretrained(base)
    lm.tokenizer.save_pretrained(base)
    (base / CARD_FILE).write_text("---\nlicense: mit\n---\n# tiny bert\n")
    lm = load_model(base)
    run = make_run(root)
    _plant(run)
    (run / C.CONFIG_FILE).write_text((run / C.CONFIG_FILE).read_text() + "[gradients]\nrows_per_gradient = 4\n")
    selection = select_parameters(lm.model, ["bert.encoder.layer.1.output.*"])
    meta = GradiendMeta(selection=selection, base_model=str(base), model_family="masked", classes=("3SG", "3PL"),
                        directions=canonical_directions(("3SG", "3PL")), training=TRAINING)
    g = Gradiend(selection.input_dim, meta=meta, seed=0)
    g.save_pretrained(run / C.GRADIEND_DIR)
    rewrite_model(lm, g, 1.0, 1.0, run / C.REWRITTEN_DIR / "3SG", None, run / C.GRADIEND_DIR)
    write_cards(run)
    return run


def _plant(run: Path) -> None:
    """The data stage's feature/source and the decoder's shift intervals (the synthetic run leaves them out)."""
    data = run / C.DATA_DIR / C.DATA_META_FILE
    meta = json.loads(data.read_text())
    meta["feature"] = {"classes": [{"id": "3SG", "targets": ["he", "she", "it"]}, {"id": "3PL", "targets": ["they"]}]}
    meta["source"] = {"source": "offline:wiki-en"}
    meta["splits"] = ["train", "validation", "test"]
    data.write_text(json.dumps(meta))
    dec_path = run / C.METRICS_DIR / C.DECODER_METRICS_FILE
    dec = json.loads(dec_path.read_text())
    dec["selected"]["3SG"].update(shift=SHIFT, lms_ratio_ci=LMS_RATIO_CI)
    dec_path.write_text(json.dumps(dec))


def test_the_gradiend_card_names_every_figure(carded_run: Path) -> None:
    card = (carded_run / C.GRADIEND_DIR / CARD_FILE).read_text()
    base = str(carded_run.parent / "tiny-bert")
    required = [
        f"`{base}`", "**Base model licence:** mit",  # base model and its licence
        "| `3SG` | he, she, it |", "| `3PL` | they |",  # classes and target words
        "`offline:wiki-en`", *(f"| `{c}` | {n['train']} | {n['validation']} | {n['test']} |"
                               for c, n in DATA_COUNTS.items()),  # data source and sizes
        "| rows per gradient | 4 |", "| learning rate | 0.0001 |", "| steps | 500 |", "| seeds | 0, 1 |", "| validation correlation | 0.9312 |",
        "| Pearson r | 0.8734 [0.8511, 0.8921] |", "| Cohen's d | 5.1 [4.6, 5.6] |",  # encoder with intervals
        r"| 3SG | 1 | 1 | P(3SG words \| other rows) | 0.1 | 0.35 | 0.3125 [0.2901, 0.3352] | 0.996 [0.9931, 0.9987] | yes |",
        "| 3PL | -1 | 0.1 |", "LMS ≥ 0.99 × base LMS",  # the selected (h, α), shift and LMS ratio
        "Gradiend.from_pretrained(", "gradiend.load_model(", "gradiend apply --gradiend",  # how to load it
        "arXiv:2502.01406", "2602.23993",  # citation
    ]
    missing = [r for r in required if r not in card]
    assert missing == []
    data = ModelCard(card).data.to_dict()
    assert data["library_name"] == "gradiend" and data["license"] == "mit" and "gradiend" in data["tags"]
    fingerprint = json.loads((carded_run / C.GRADIEND_DIR / "config.json").read_text())["base_model_identity"]
    assert fingerprint["fingerprint"] in card


def test_the_rewritten_card_says_what_changed_and_by_how_much(carded_run: Path) -> None:
    model_dir = carded_run / C.REWRITTEN_DIR / "3SG"
    card = (model_dir / CARD_FILE).read_text()
    g = Gradiend.from_pretrained(carded_run / C.GRADIEND_DIR)
    assert f"h = 1, α = 1 on {g.input_dim} entries of {len(g.selection.specs)} parameter tensors" in card
    assert "P(3SG words | other rows) 0.1 → 0.35 (shift 0.3125 [0.2901, 0.3352], 95 % CI); LMS ratio 0.996" in card
    data = ModelCard(card).data.to_dict()
    assert data["library_name"] == "transformers" and data["license"] == "mit"


def test_a_rewritten_model_directory_with_its_card_loads_with_plain_transformers(carded_run: Path) -> None:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model_dir = carded_run / C.REWRITTEN_DIR / "3SG"
    model = AutoModelForMaskedLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForMaskedLM.from_pretrained(carded_run.parent / "tiny-bert")
    g = Gradiend.from_pretrained(carded_run / C.GRADIEND_DIR)
    name = g.selection.names[0]
    delta = dict(model.named_parameters())[name] - dict(base.named_parameters())[name]
    expected = g.update_vector(1.0)[: delta.numel()].reshape(delta.shape)
    torch.testing.assert_close(delta, expected, rtol=0, atol=1e-6)
    assert tokenizer("he said").input_ids


def _html(markdown_text: str) -> str:
    body = re.sub(r"^---\n.*?\n---\n", "", markdown_text, flags=re.S)  # the Hub shows metadata apart
    try:
        from markdown_it import MarkdownIt

        rendered = MarkdownIt("commonmark").enable("table").render(body)
    except ImportError:
        markdown = pytest.importorskip("markdown", reason="needs markdown-it-py (with huggingface_hub) or markdown")
        rendered = markdown.markdown(body, extensions=["tables", "fenced_code"])
    return f"<!doctype html><html><head><meta charset='utf-8'><title>card</title></head><body>{rendered}</body></html>"


def test_the_card_renders_in_a_browser(carded_run: Path, tmp_path: Path) -> None:
    browser = find_browser()
    page = tmp_path / "card.html"
    page.write_text(_html((carded_run / C.GRADIEND_DIR / CARD_FILE).read_text()))
    dom, console = _dom(browser, tmp_path, page)
    assert console == []
    assert dom.count("<table>") == 5 and dom.count("<h2>") == 8
    assert "<td>0.8734 [0.8511, 0.8921]</td>" in dom and "<pre><code" in dom
    assert "<td>P(3SG words | other rows)</td>" in dom  # the escaped bar stays inside its cell
