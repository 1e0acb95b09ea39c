"""``gradiend compare RUN_A RUN_B ...``: overlap, similarity and cross-encoding matrices with figures."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the matrices (CSV), top-k tables and figures.")
@click.option("--topk", default="1000", show_default=True, help="Top-k dimensions per GRADIEND: a count or a fraction ≤ 1.")
@click.option("--importance", default="decoder-weight", show_default=True,
              type=click.Choice(["decoder-weight", "encoder-weight", "decoder-bias", "decoder-sum"]))
@click.option("--cross-encoding/--no-cross-encoding", default=True, show_default=True,
              help="Encode each run's test rows with every GRADIEND (loads the base model).")
@click.option("--max-rows", default=50, show_default=True, help="Test rows per class for cross-encoding.")
@click.option("--format", "formats", multiple=True, type=click.Choice(["png", "pdf", "svg"]), default=("png",))
def compare(runs: tuple[Path, ...], out_dir: Path, topk: str, importance: str, cross_encoding: bool, max_rows: int,
            formats: tuple[str, ...]) -> None:
    """Compare GRADIENDs of several runs on one base model."""
    from gradiend.study import compare_runs

    k: int | float = float(topk) if "." in topk else int(topk)
    result = compare_runs(runs, out_dir, topk=k, importance=importance, cross_encoding=cross_encoding,
                          max_rows=max_rows, formats=formats)
    click.echo(result.matrices["intersection"].astype(int).to_string())
    pairs = ", ".join(f"{a}–{b}" for a, b in result.above_chance) or "none"
    click.echo(f"top-k overlap above chance: {pairs}")
    click.echo(f"written to {out_dir}")
