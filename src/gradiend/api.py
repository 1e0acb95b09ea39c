"""Convenience entry points of the front door (``gradiend.run``, ``gradiend.study``): a configuration object or
the path of its TOML file, so a notebook needs one call where the CLI needs one command."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def run(config: Any, **options: Any) -> Any:
    """Run (or resume) the pipeline of ``config``: an ExperimentConfig or the path of its TOML file.

    ``options`` are those of :func:`gradiend.pipeline.run` (``force``, ``until``, ``run_dir``, ``progress``, ...).
    """
    from gradiend.config import ExperimentConfig, load_config
    from gradiend.pipeline import run as run_pipeline

    if not isinstance(config, ExperimentConfig):
        config = load_config(Path(config))
    return run_pipeline(config, **options)


def study(suite: Any, *, overrides: Sequence[str] = (), output_dir: str | None = None, **options: Any) -> Path:
    """Run a study: a Suite or the path of its TOML file; returns the study directory.

    ``options`` are those of :func:`gradiend.suite.run_suite` (``force``, ``progress``, ``executor``, ...).
    """
    from gradiend.suite import Suite, load_suite, run_suite

    if not isinstance(suite, Suite):
        suite = load_suite(Path(suite), overrides, output_dir)
    return run_suite(suite, **options)
