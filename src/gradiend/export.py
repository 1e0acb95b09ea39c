"""Tables for papers: a run's encoder and decoder results, a study's comparison matrices, as LaTeX, Markdown or CSV.

``export(path, "latex" | "markdown" | "csv")`` reads only the files a run or study already wrote
(``metrics/encoder.json``, ``metrics/decoder.json``; ``comparison/*.csv``) and returns text ready to paste:
LaTeX with booktabs rules and escaped text, Markdown pipe tables, or one tidy CSV (``table,row,column,value,
ci_low,ci_high``) with the 95 % intervals in their own columns. Figures use 4 significant digits, as the cards do.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradiend import constants as C
from gradiend.errors import GradiendError
from gradiend.io import read_json, write_with

FORMATS = ("latex", "markdown", "csv")
# comparison matrices in the order a paper shows them; other square matrices follow alphabetically
MATRIX_ORDER = ("intersection", "expected", "p_value", "jaccard", "overlap_coefficient", "cosine_decoder",
                "cosine_update", "cross_encoding", "cross_encoding_transitions", "cross_encoding_classes")
_NOT_MATRICES = re.compile(r"^topk_share_by_")


ENCODER_METRICS = (("pearson", "Pearson r"), ("spearman", "Spearman ρ"), ("accuracy_binary", "accuracy (binary)"),
                   ("accuracy_ternary", "accuracy (ternary, with neutral)"), ("cohens_d", "Cohen's d"),
                   ("auroc", "AUROC"))


def fmt(value: Any, digits: int = 4) -> str:
    """A figure as the cards and tables print it: ``digits`` significant digits, '–' for none."""
    return "–" if value is None else f"{float(value):.{digits}g}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub/Hub-flavoured Markdown table."""
    lines = [_row(header), "|" + "---|" * len(header)]
    return "\n".join(lines + [_row(r) for r in rows])


def _row(cells: list[str]) -> str:
    """One Markdown table row; a ``|`` inside a cell is escaped so it stays in its cell."""
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


@dataclass(frozen=True)
class Stat:
    """A figure with its 95 % interval (either bound None when there is none)."""

    value: float | None
    low: float | None = None
    high: float | None = None

    @classmethod
    def of(cls, stat: Any, ci: Sequence[float] | None = None) -> Stat:
        """From a ``{"value", "ci"}`` mapping, or a plain value with an optional interval."""
        if isinstance(stat, dict):
            stat, ci = stat.get("value"), stat.get("ci")
        low, high = (list(ci or []) + [None, None])[:2]
        return cls(stat, low, high)

    def __str__(self) -> str:
        if self.low is None or self.high is None:
            return fmt(self.value)
        return f"{fmt(self.value)} [{fmt(self.low)}, {fmt(self.high)}]"


@dataclass(frozen=True)
class Table:
    """One table: a name (CSV key, LaTeX label), a caption, a header and rows of cells (str, number or Stat)."""

    name: str
    caption: str
    header: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


def cell_text(cell: Any) -> str:
    if isinstance(cell, (Stat, str)):
        return str(cell)
    return fmt(cell)


# --- a run ------------------------------------------------------------------------------------------


def encoder_table(encoder: dict[str, Any]) -> Table:
    rows = tuple((label, Stat.of(encoder[key])) for key, label in ENCODER_METRICS if encoder.get(key))
    caption = (f"Encoder evaluation on the {encoder.get('split', 'test')} split ({encoder.get('n_rows', '?')} rows): "
               "value [95 % bootstrap CI].")
    return Table("encoder", caption, ("metric", "value [95 % CI]"), rows)


def decoder_table(decoder: dict[str, Any]) -> Table:
    rows = tuple(
        (key, e.get("h"), e.get("alpha"), str(e.get("metric", "")), e.get("base_value"), e.get("value"),
         Stat.of(e.get("shift")), Stat.of(e.get("lms_ratio"), e.get("lms_ratio_ci")),
         "yes" if e.get("useful") else "no")
        for key, e in (decoder.get("selected") or {}).items()
    )
    policy = decoder.get("policy") or {}
    floor = f", LMS ≥ {policy['lms_ratio']} × base LMS" if "lms_ratio" in policy else ""
    caption = f"Selected rewrites θ + α·dec(h) ({policy.get('name', 'selection')} policy{floor}): value [95 % CI]."
    header = ("rewrite", "h", "α", "metric", "base", "rewritten", "shift", "LMS ratio", "useful")
    return Table("decoder", caption, header, rows)


def run_tables(run_dir: Path) -> list[Table]:
    metrics = run_dir / C.METRICS_DIR
    found = []
    if (metrics / C.ENCODER_METRICS_FILE).is_file():
        found.append(encoder_table(read_json(metrics / C.ENCODER_METRICS_FILE)))
    if (metrics / C.DECODER_METRICS_FILE).is_file():
        found.append(decoder_table(read_json(metrics / C.DECODER_METRICS_FILE)))
    if not found:
        raise GradiendError(f"{run_dir} has no evaluation to export: run `gradiend evaluate {run_dir}` first")
    return found


# --- a study ----------------------------------------------------------------------------------------


def matrix_table(path: Path) -> Table:
    """A comparison matrix CSV (first column = row labels) as a table."""
    with path.open(newline="") as f:
        lines = list(csv.reader(f))
    header = ("", *lines[0][1:])
    rows = tuple((r[0], *(_number(v) for v in r[1:])) for r in lines[1:])
    caption = f"Comparison matrix: {path.stem.replace('_', ' ')} (rows × columns)."
    return Table(path.stem, caption, header, rows)


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def study_tables(comparison_dir: Path) -> list[Table]:
    """A run summary (encoder Pearson r and each run's selected shifts) and every comparison matrix."""
    summary = read_json(comparison_dir / "comparison.json")
    tables = [runs_table([Path(r) for r in summary.get("runs", [])])]
    names = {p.stem: p for p in comparison_dir.glob("*.csv") if not _NOT_MATRICES.match(p.stem)}
    ordered = [n for n in MATRIX_ORDER if n in names] + sorted(set(names) - set(MATRIX_ORDER))
    return tables + [matrix_table(names[n]) for n in ordered]


def runs_table(run_dirs: Sequence[Path]) -> Table:
    rows = []
    for run in run_dirs:
        enc = _json_or_empty(run / C.METRICS_DIR / C.ENCODER_METRICS_FILE)
        dec = _json_or_empty(run / C.METRICS_DIR / C.DECODER_METRICS_FILE)
        shifts = "; ".join(f"{k}: {Stat.of(e.get('shift'))}"
                           for k, e in (dec.get("selected") or {}).items() if e.get("useful"))
        rows.append((run.name, Stat.of(enc.get("pearson")), shifts or "–"))
    caption = "Runs of the study: encoder Pearson r [95 % CI] and the shift of each useful rewrite."
    return Table("runs", caption, ("run", "Pearson r", "useful rewrites: shift [95 % CI]"), tuple(rows))


def _json_or_empty(path: Path) -> dict[str, Any]:
    return read_json(path) if path.is_file() else {}


def tables_of(path: str | Path) -> list[Table]:
    """The tables of a run directory, a study directory or a study's ``comparison/`` directory."""
    path = Path(path)
    for comparison in (path, path / "comparison"):
        if (comparison / "comparison.json").is_file():
            return study_tables(comparison)
    if (path / C.METRICS_DIR).is_dir():
        return run_tables(path)
    raise GradiendError(f"{path} is neither a run directory (with {C.METRICS_DIR}/) nor a study (with "
                        "comparison/comparison.json)")


# --- rendering --------------------------------------------------------------------------------------

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "|": r"\textbar{}",
                  "<": r"\textless{}", ">": r"\textgreater{}"}
_LATEX_UNICODE = {"α": r"\ensuremath{\alpha}", "ρ": r"\ensuremath{\rho}", "θ": r"\ensuremath{\theta}",
                  "→": r"\ensuremath{\to}", "≥": r"\ensuremath{\geq}", "×": r"\ensuremath{\times}",
                  "·": r"\ensuremath{\cdot}", "−": "-", "–": "--"}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters and write the few Unicode symbols the tables use as math."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    return "".join(_LATEX_UNICODE.get(ch, ch) for ch in out)


def to_latex(table: Table) -> str:
    cols = "".join("l" if i == 0 or all(isinstance(r[i], str) for r in table.rows) else "r"
                   for i in range(len(table.header)))
    lines = [r"\begin{table}[t]", r"\centering", f"\\caption{{{latex_escape(table.caption)}}}",
             f"\\label{{tab:{table.name.replace('_', '-')}}}", f"\\begin{{tabular}}{{{cols}}}", r"\toprule",
             " & ".join(latex_escape(h) for h in table.header) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(cell_text(c)) for c in row) + r" \\" for row in table.rows]
    return "\n".join([*lines, r"\bottomrule", r"\end{tabular}", r"\end{table}"])


def to_markdown(table: Table) -> str:
    rows = [[cell_text(c) for c in row] for row in table.rows]
    return f"**{table.caption}**\n\n" + markdown_table(list(table.header), rows)


def csv_rows(table: Table) -> list[list[str]]:
    """Tidy rows ``table,row,column,value,ci_low,ci_high`` (the row label is the first cell)."""
    out = []
    for row in table.rows:
        for column, cell in zip(table.header[1:], row[1:], strict=True):
            stat = cell if isinstance(cell, Stat) else None
            value = stat.value if stat else cell
            out.append([table.name, str(row[0]), column, _raw(value), _raw(stat.low if stat else None),
                        _raw(stat.high if stat else None)])
    return out


def _raw(value: Any) -> str:
    return "" if value is None else repr(float(value)) if isinstance(value, (int, float)) else str(value)


def render(tables: Sequence[Table], fmt_name: str) -> str:
    """All ``tables`` in one text, in ``fmt_name`` (latex, markdown or csv)."""
    if fmt_name == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["table", "row", "column", "value", "ci_low", "ci_high"])
        for table in tables:
            writer.writerows(csv_rows(table))
        return buf.getvalue()
    renderers: dict[str, Callable[[Table], str]] = {"latex": to_latex, "markdown": to_markdown}
    if fmt_name not in renderers:
        raise GradiendError(f"unknown export format {fmt_name!r}; choose one of {', '.join(FORMATS)}")
    return "\n\n".join(renderers[fmt_name](t) for t in tables) + "\n"


def export(path: str | Path, fmt_name: str = "latex", out: str | Path | None = None) -> str:
    """The tables of a run or study as text; also written (atomically) to ``out`` when given."""
    if fmt_name not in FORMATS:
        raise GradiendError(f"unknown export format {fmt_name!r}; choose one of {', '.join(FORMATS)}")
    text = render(tables_of(path), fmt_name)
    if out is not None:
        write_with(Path(out), lambda tmp: tmp.write_text(text))
    return text
