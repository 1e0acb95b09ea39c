"""``gradiend study SUITE``: many GRADIENDs on one base model, created, trained and compared as one study."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click


@click.command("study")
@click.argument("suite_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "output_dir", default=None, help="Directory the study directory goes into (default: the "
              "suite's output_dir).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a base setting of every run (repeatable), as `gradiend run --set`.")
@click.option("--executor", default=None, help="local (default: in this process) or ray (extra 'ray'); overrides "
              "[execution] executor.")
@click.option("--address", default=None, help="Ray cluster to join with --executor ray: auto or ray://HOST:PORT "
              "(default: start a local one on 127.0.0.1).")
@click.option("--force", is_flag=True, help="Redo every stage of every feature.")
def study(suite_file: Path, output_dir: str | None, overrides: tuple[str, ...], executor: str | None,
          address: str | None, force: bool) -> None:
    """Create the data sets, train and evaluate every feature of SUITE_FILE (TOML), and compare them."""
    from gradiend.executors import StudyInterrupted
    from gradiend.io import read_json
    from gradiend.study_plan import SUMMARY_FILE
    from gradiend.suite import load_suite, run_suite

    t0 = time.perf_counter()
    suite = load_suite(suite_file, overrides, output_dir)
    click.echo(f"study {suite.name}: {len(suite.datasets)} data set(s), {len(suite.runs)} features: "
               f"{', '.join(r.name for r in suite.runs)}")
    try:
        study_dir = run_suite(suite, force=force, executor=executor, address=address)
    except StudyInterrupted as exc:
        click.echo(str(exc), err=True)
        sys.exit(130)
    summary = read_json(study_dir / SUMMARY_FILE)
    for node in summary["failed"]:
        click.echo(f"not finished: {node}: {summary['nodes'][node]['error']}", err=True)
    click.echo(f"study directory: {study_dir}")
    click.echo(f"report: {study_dir / 'report.html'}")
    click.echo(f"finished in {time.perf_counter() - t0:.1f} s")
