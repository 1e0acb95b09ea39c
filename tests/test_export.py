"""Tables for papers from planted metric files: the exact text of each format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gradiend import constants as C
from gradiend.cli import cli
from gradiend.errors import GradiendError
from gradiend.export import export, latex_escape
from test_report_synthetic import make_run

SHIFT = {"value": 0.25, "ci": [0.2301, 0.2702]}


@pytest.fixture
def run(tmp_path: Path) -> Path:
    run = make_run(tmp_path)
    path = run / C.METRICS_DIR / C.DECODER_METRICS_FILE
    decoder = json.loads(path.read_text())
    decoder["selected"]["3SG"].update(shift=SHIFT, lms_ratio_ci=[0.9931, 0.9987])
    del decoder["selected"]["3SG_weaken"]
    path.write_text(json.dumps(decoder))
    return run


ENCODER_MD = """**Encoder evaluation on the test split (240 rows): value [95 % bootstrap CI].**

| metric | value [95 % CI] |
|---|---|
| Pearson r | 0.8734 [0.8511, 0.8921] |
| Spearman ρ | 0.9 [0.88, 0.92] |
| accuracy (binary) | 0.9 [0.88, 0.92] |
| accuracy (ternary, with neutral) | 0.9 [0.88, 0.92] |
| Cohen's d | 5.1 [4.6, 5.6] |
| AUROC | 0.99 [0.98, 1] |"""

DECODER_TEX = r"""\begin{table}[t]
\centering
\caption{Selected rewrites \ensuremath{\theta} + \ensuremath{\alpha}\ensuremath{\cdot}dec(h) (threshold policy, LMS \ensuremath{\geq} 0.99 \ensuremath{\times} base LMS): value [95 \% CI].}
\label{tab:decoder}
\begin{tabular}{lrrlrrrrl}
\toprule
rewrite & h & \ensuremath{\alpha} & metric & base & rewritten & shift & LMS ratio & useful \\
\midrule
3SG & 1 & 1 & P(3SG words \textbar{} other rows) & 0.1 & 0.35 & 0.25 [0.2301, 0.2702] & 0.996 [0.9931, 0.9987] & yes \\
3PL & -1 & 0.1 & P(3PL words \textbar{} other rows) & 0.2 & 0.245 & -- & 0.9987 & yes \\
\bottomrule
\end{tabular}
\end{table}"""


def test_markdown_of_a_run(run: Path) -> None:
    text = export(run, "markdown")
    assert text.startswith(ENCODER_MD + "\n\n")
    assert r"| 3SG | 1 | 1 | P(3SG words \| other rows) | 0.1 | 0.35 | 0.25 [0.2301, 0.2702] | 0.996 [0.9931, 0.9987] | yes |" in text


def test_latex_of_a_run(run: Path) -> None:
    text = export(run, "latex")
    assert text.endswith("\n\n" + DECODER_TEX + "\n")
    assert r"Pearson r & 0.8734 [0.8511, 0.8921] \\" in text and r"Spearman \ensuremath{\rho} & 0.9" in text


def test_csv_of_a_run_keeps_full_precision_and_intervals_apart(run: Path) -> None:
    lines = export(run, "csv").splitlines()
    assert lines[0] == "table,row,column,value,ci_low,ci_high"
    assert "encoder,Pearson r,value [95 % CI],0.87342,0.85113,0.89207" in lines
    assert "decoder,3SG,shift,0.25,0.2301,0.2702" in lines
    assert "decoder,3SG,LMS ratio,0.996,0.9931,0.9987" in lines
    assert "decoder,3PL,metric,P(3PL words | other rows),," in lines
    assert len(lines) == 1 + 6 + 2 * 8


def test_latex_escaping() -> None:
    assert latex_escape("a_b & 50% #1 {x} ~^\\ |<>") == (
        r"a\_b \& 50\% \#1 \{x\} \textasciitilde{}\textasciicircum{}\textbackslash{} \textbar{}\textless{}\textgreater{}")


def _plant_study(root: Path, run: Path) -> Path:
    comparison = root / "study" / "comparison"
    comparison.mkdir(parents=True)
    (comparison / "comparison.json").write_text(json.dumps({"runs": [str(run)], "above_chance": []}))
    (comparison / "jaccard.csv").write_text(",a,b\na,1.0,0.125\nb,0.125,1.0\n")
    (comparison / "intersection.csv").write_text(",a,b\na,10,3\nb,3,10\n")
    (comparison / "topk_share_by_layer.csv").write_text("layer,a\n0,1.0\n")  # not a matrix: left out
    return root / "study"


def test_a_study_exports_its_runs_and_matrices_in_paper_order(run: Path, tmp_path: Path) -> None:
    study = _plant_study(tmp_path, run)
    text = export(study, "markdown")
    assert "| synthetic | 0.8734 [0.8511, 0.8921] | 3SG: 0.25 [0.2301, 0.2702]; 3PL: – |" in text
    assert text.index("intersection (rows") < text.index("jaccard (rows")
    assert "| a | 1 | 0.125 |\n| b | 0.125 | 1 |" in text and "topk share" not in text
    latex = export(study / "comparison", "latex")
    assert latex.count(r"\toprule") == 3 and r"\label{tab:jaccard}" in latex


def test_cli_export_writes_the_file_and_refuses_other_directories(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "tables.tex"
    result = CliRunner().invoke(cli, ["export", str(run), "--format", "latex", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == export(run, "latex")
    printed = CliRunner().invoke(cli, ["export", str(run), "--format", "csv"])
    assert printed.output == export(run, "csv")
    with pytest.raises(GradiendError, match="neither a run directory .* nor a study"):
        export(tmp_path / "synthetic" / "data", "csv")
