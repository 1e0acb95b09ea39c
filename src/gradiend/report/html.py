"""HTML building blocks: escaped string templates and one small inline style sheet (no external resources)."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       color: #1d2330; background: #f6f7f9; line-height: 1.45; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 4px; } h2 { font-size: 1.2em; margin: 32px 0 10px; border-bottom: 1px solid #dde1e6;
     padding-bottom: 4px; } h3 { font-size: 1.0em; margin: 18px 0 6px; }
.sub { color: #5b6472; margin: 0 0 18px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { flex: 1 1 300px; border: 1px solid #dde1e6; border-radius: 6px; padding: 10px 14px; background: #fbfcfd; }
.card .label { color: #5b6472; font-size: 0.85em; text-transform: uppercase; letter-spacing: 0.04em; }
.card .big { font-size: 1.5em; font-weight: 600; } .card .detail { font-size: 0.9em; color: #3a4250; }
.card.bad { border-color: #e0b4b4; background: #fdf6f6; } .card.good { border-color: #b5d6b5; background: #f6fbf6; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 0.92em; }
th, td { border: 1px solid #dde1e6; padding: 4px 10px; text-align: left; } th { background: #f0f2f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 12px 0 22px; } figure img { max-width: 100%; height: auto; border: 1px solid #eef0f3; }
figcaption { color: #5b6472; font-size: 0.9em; }
pre { background: #f0f2f5; padding: 10px 12px; overflow-x: auto; font-size: 0.85em; border-radius: 4px; }
.notrun { color: #8a6d00; background: #fff8e1; border: 1px solid #f0e0a0; padding: 4px 10px; border-radius: 4px;
          display: inline-block; }
.problem { color: #9b1c1c; }
"""

# marks the page once every image has decoded: a headless browser reads data-images back from the DOM
IMAGE_CHECK = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  document.body.setAttribute("data-images", broken === 0 ? "ok" : "broken");
  document.body.setAttribute("data-image-count", String(imgs.length));
  document.body.setAttribute("data-broken-count", String(broken));
});
"""


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def page(title: str, body: str) -> str:
    """A complete, self-contained HTML document."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f'<body data-images="pending">\n<main>\n{body}\n</main>\n<script>{IMAGE_CHECK}</script>\n</body>\n</html>\n'
    )


def section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{esc(anchor)}">\n<h2>{esc(title)}</h2>\n{body}\n</section>'


def not_run(what: str) -> str:
    return f'<p class="notrun">{esc(what)}: not run</p>'


def card(label: str, big: str, detail: str = "", tone: str = "") -> str:
    """A key-number box; ``big`` and ``detail`` are escaped here."""
    klass = f"card {tone}".strip()
    detail_html = f'<div class="detail">{esc(detail)}</div>' if detail else ""
    return f'<div class="{klass}"><div class="label">{esc(label)}</div><div class="big">{esc(big)}</div>{detail_html}</div>'


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[bool] | None = None) -> str:
    """A table with escaped cells; ``numeric[i]`` right-aligns column i."""
    numeric = numeric or [False] * len(headers)
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    cell = ('<td class="num">{}</td>', "<td>{}</td>")
    body = "".join(
        "<tr>" + "".join(cell[not num].format(esc(c)) for c, num in zip(row, numeric, strict=False)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def png_data_uri(path: str | Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def figure(path: str | Path, caption: str) -> str:
    """An embedded PNG (base64 data URI) with a caption."""
    return (
        f'<figure><img src="{png_data_uri(path)}" alt="{esc(caption)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )
