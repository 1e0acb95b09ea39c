"""The HTML report of a run: key numbers from the metric files, embedded figures, nothing external,
"not run" for missing stages, and the study page."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest

from gradiend import constants as C
from gradiend.errors import GradiendError
from gradiend.report import render_report, write_report, write_study_report
from test_report_synthetic import make_run, reported_run

DATA_URI = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def full_run() -> tuple[Path, str]:
    run = reported_run()
    return run, (run / C.REPORT_FILE).read_text()


def _between(html: str, start: str, end: str) -> str:
    return html[html.index(start):html.index(end, html.index(start))]


def test_key_numbers_come_from_the_metric_files(full_run: tuple[Path, str]) -> None:
    run, html = full_run
    key = _between(html, 'id="key-numbers"', "</section>")
    encoder = json.loads((run / C.METRICS_DIR / C.ENCODER_METRICS_FILE).read_text())
    decoder = json.loads((run / C.METRICS_DIR / C.DECODER_METRICS_FILE).read_text())
    r = encoder["pearson"]
    assert f'<div class="big">{r["value"]:.3f}</div>' in key  # 0.873
    assert f'95% CI [{r["ci"][0]:.3f}, {r["ci"][1]:.3f}]' in key and "test split, 240 class rows" in key
    sel = decoder["selected"]
    assert "0.1 → 0.35 (×3.5)" in key and "h = +1, α = 1 ·" in key  # strengthen 3SG: base → rewritten (ratio), the cell
    assert "0.2 → 0.245 (×1.22)" in key and "h = -1, α = 0.1 ·" in key
    assert f"(ratio {sel['3SG']['lms_ratio']:.3f})" in key
    weaken = _between(key, "Weaken 3SG", "</div></div>")
    assert "no useful rewrite" in weaken and "no cell keeps LMS &gt;= 0.99 x base LMS" in weaken
    # key numbers open the page: before the figures
    assert html.index('id="key-numbers"') < html.index('id="figures"')


def test_every_png_is_embedded_as_a_data_uri(full_run: tuple[Path, str]) -> None:
    run, html = full_run
    pngs = sorted((run / C.PLOTS_DIR).glob("*.png"))
    assert [p.name for p in pngs] == ["decoder_grid.png", "encoder_distributions.png", "target_means.png", "training.png"]
    embedded = {base64.b64decode(m) for m in DATA_URI.findall(html)}
    assert embedded == {p.read_bytes() for p in pngs}


def test_nothing_external(full_run: tuple[Path, str]) -> None:
    _, html = full_run
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:", html)  # base64 may spell "hTtP" by chance
    assert "http" not in text.lower() and "//" not in text
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', html))
    assert "@import" not in html and "url(" not in html and "<link" not in html


def test_details_sections(full_run: tuple[Path, str]) -> None:
    _, html = full_run
    data = _between(html, 'id="data"', "</section>")
    assert "<th>train</th><th>validation</th><th>test</th>" in data
    assert '<td>3PL</td><td class="num">300</td><td class="num">40</td><td class="num">35</td>' in data
    assert 'spec = &quot;offline:smollm2-135m&quot;' in html  # the config.toml text, escaped
    prov = _between(html, 'id="provenance"', "</section>")
    assert '<td>total</td><td class="num">57.0</td>' in prov and "torch" in prov and "python" in prov
    assert re.search(r"<td>train \(from config.toml\)</td><td>[0-9a-f]{16}</td>", prov)
    training = _between(html, 'id="training"', "</section>")
    assert '<td class="num">0</td><td class="num">300</td><td class="num">0.930</td>' in training


def test_missing_stages_are_not_run(tmp_path: Path) -> None:
    run = make_run(tmp_path, full=False)  # data + training only
    html = write_report(run).read_text()
    assert "Encoder correlation" in html and html.count("not run") >= 4
    assert "decoder evaluation: not run" in html and "encoder evaluation: not run" in html
    assert len(DATA_URI.findall(html)) == 1  # the training figure only
    empty = tmp_path / "empty"
    empty.mkdir()
    html = render_report(empty)
    assert "config.toml: not run" in html and "data creation: not run" in html and "<img" not in html


def test_no_useful_rewrite_is_said(tmp_path: Path) -> None:
    html = render_report(make_run(tmp_path, useful=False), make_plots=False)
    key = _between(html, 'id="key-numbers"', "</section>")
    assert key.count("no useful rewrite") == 3 and "→" not in key
    assert "no cell with LMS &gt;= 0.99 x base LMS beats the base model" in key


def test_unreadable_files_are_listed_not_fatal(tmp_path: Path) -> None:
    run = make_run(tmp_path, full=False)
    (run / C.METRICS_DIR / C.ENCODER_METRICS_FILE).write_text("{not json")
    html = render_report(run, make_plots=False)
    assert re.search(r'<li class="problem">metrics/encoder.json: unreadable \(JSONDecodeError', html)


def test_text_is_escaped(tmp_path: Path) -> None:
    run = make_run(tmp_path, full=False)
    cfg = run / C.CONFIG_FILE
    cfg.write_text(cfg.read_text().replace('name = "synthetic"', 'name = "<b>x</b>"'))
    html = render_report(run, make_plots=False)
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html


def test_study_report_links_runs_and_shows_their_numbers(tmp_path: Path, full_run: tuple[Path, str]) -> None:
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b", useful=False)
    for run in (a, b):  # reuse the drawn figures (drawing is the slow part, and tested above)
        shutil.copytree(full_run[0] / C.PLOTS_DIR, run / C.PLOTS_DIR)
    path = write_study_report([a, b], tmp_path / "study" / "index.html", write_run_reports=False)
    html = path.read_text()
    assert html.count("0.873 [0.851, 0.892]") == 2
    assert "3SG: 0.1 → 0.35 (×3.5) (α = 1)" in html and "3SG: no useful rewrite" in html
    assert "href" not in html  # run reports not written: nothing to link
    html = write_study_report([a, b], tmp_path / "study" / "index.html").read_text()
    assert '<a href="../a/synthetic/report.html">' in html and '<a href="../b/synthetic/report.html">' in html
    with pytest.raises(GradiendError, match="does not exist"):
        write_study_report([tmp_path / "nope"], tmp_path / "s.html")


def test_write_figures_draws_what_the_metrics_allow(tmp_path: Path) -> None:
    from gradiend.report import write_figures

    run = make_run(tmp_path, full=False)
    assert [p.name for p in write_figures(run)] == ["training.png"]
    before = (run / C.PLOTS_DIR / "training.png").stat().st_mtime_ns
    write_figures(run)  # kept
    assert (run / C.PLOTS_DIR / "training.png").stat().st_mtime_ns == before
    (run / C.METRICS_DIR / C.ENCODER_METRICS_FILE).write_text("[]")
    with pytest.raises(GradiendError, match="encoder.json: unreadable"):
        write_figures(run, refresh=True)
