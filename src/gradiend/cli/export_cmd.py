"""``gradiend export RUN_OR_STUDY``: a run's encoder/decoder tables or a study's matrices, ready to paste."""

from __future__ import annotations

from pathlib import Path

import click

from gradiend.export import FORMATS


@click.command("export")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "fmt_name", type=click.Choice(FORMATS), default="latex", show_default=True,
              help="latex (booktabs), markdown (pipe tables) or csv (tidy: table,row,column,value,ci_low,ci_high).")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: standard output).")
def export_command(path: Path, fmt_name: str, out: Path | None) -> None:
    """Tables of a run (encoder metrics, selected rewrites) or a study (comparison matrices), with 95 % CIs."""
    from gradiend.export import export

    text = export(path, fmt_name, out)
    click.echo(f"tables written to {out}" if out is not None else text, nl=out is not None)
