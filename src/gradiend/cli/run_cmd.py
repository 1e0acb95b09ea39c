"""``gradiend run CONFIG`` and ``gradiend demo``: the whole pipeline over one run directory."""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import click

from gradiend.constants import STAGES

DEMO_CONFIGS = {
    "offline:smollm2-135m": "demo.toml",
    "offline:splade-tiny": "splade-3sg-3pl.toml",
}


def example_path(name: str) -> Path:
    """Path of a bundled example configuration (``gradiend/examples/<name>``)."""
    return Path(str(resources.files("gradiend") / "examples" / name))


def _finish(result, t0: float) -> None:
    from gradiend.pipeline import read_counts

    click.echo(f"stages run: {', '.join(result.ran) or 'none'}; up to date: {', '.join(result.skipped) or 'none'}")
    click.echo(read_counts(result.run_dir).to_string())
    click.echo(f"run directory: {result.run_dir}")
    if result.report is not None:
        click.echo(f"report: {result.report}")
    click.echo(f"finished in {time.perf_counter() - t0:.1f} s")


@click.command("run")
@click.argument("config_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Redo every stage even if its artifacts are up to date.")
@click.option("--until", type=click.Choice(STAGES), default="report", show_default=True,
              help="Stop after this stage.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a config value, e.g. --set train.lr=1e-4 (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory (default: output_dir/name from the config).")
def run_command(config_file: Path, force: bool, until: str, overrides: tuple[str, ...], out: Path | None) -> None:
    """Run data → train → evaluate → rewrite → report for CONFIG_FILE (TOML); resumes an interrupted run."""
    from gradiend.config import apply_overrides, load_config
    from gradiend.pipeline import run

    t0 = time.perf_counter()
    config = apply_overrides(load_config(config_file), overrides)
    _finish(run(config, force=force, until=until, run_dir=out), t0)


@click.command("demo")
@click.option("--model", type=click.Choice(sorted(DEMO_CONFIGS)), default="offline:smollm2-135m", show_default=True,
              help="Which packaged model the demo runs on.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True,
              help="Directory that receives the run directory.")
@click.option("--force", is_flag=True, help="Redo every stage.")
def demo(model: str, out: Path, force: bool) -> None:
    """The end-to-end demo on offline assets: Wikipedia text, 3SG {he, she, it} vs 3PL {they}."""
    from gradiend.config import apply_overrides, load_config
    from gradiend.pipeline import run

    t0 = time.perf_counter()
    path = example_path(DEMO_CONFIGS[model])
    click.echo(f"demo configuration: {path}")
    config = apply_overrides(load_config(path), [f'output_dir="{out}"'])
    _finish(run(config, force=force), t0)
