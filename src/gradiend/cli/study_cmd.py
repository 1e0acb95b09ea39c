"""``gradiend study SUITE``: several features on one base model, compared in one study directory."""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.command("study")
@click.argument("suite_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Redo every stage of every feature.")
def study(suite_file: Path, force: bool) -> None:
    """Train, evaluate and compare every feature of SUITE_FILE (TOML); see gradiend.suite for the format."""
    from gradiend.suite import load_suite, run_suite

    t0 = time.perf_counter()
    suite = load_suite(suite_file)
    click.echo(f"study {suite.name}: {len(suite.runs)} features: {', '.join(c.name for c in suite.runs)}")
    study_dir = run_suite(suite, force=force)
    click.echo(f"study directory: {study_dir}")
    click.echo(f"report: {study_dir / 'report.html'}")
    click.echo(f"finished in {time.perf_counter() - t0:.1f} s")
