"""The front door: ``import gradiend`` exposes the user's names lazily and stays light."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gradiend
from gradiend.errors import GradiendError

SRC = str(Path(gradiend.__file__).resolve().parents[1])
HEAVY = ("torch", "transformers", "huggingface_hub", "safetensors")


def _loaded_after(code: str) -> list[str]:
    """Top-level heavy packages in sys.modules after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})))"
    env = {**os.environ, "PYTHONPATH": SRC}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_gradiend_loads_no_model_code() -> None:
    assert _loaded_after("import gradiend; gradiend.__all__; dir(gradiend)") == []


def test_help_loads_no_model_code() -> None:
    code = ("import sys\nsys.argv = ['gradiend', '--help']\nfrom gradiend.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass")
    assert _loaded_after(code) == []


def test_first_use_imports_what_it_needs() -> None:
    assert "torch" in _loaded_after("import gradiend; gradiend.Gradiend")


@pytest.mark.parametrize("name", [n for n in gradiend.__all__ if n != "__version__"])
def test_every_exported_name_is_its_module_object(name: str) -> None:
    value = getattr(gradiend, name)
    module = importlib.import_module(gradiend._EXPORTS[name])
    assert value is (module if name == "study" else getattr(module, name))


def test_the_names_a_user_reaches_for_are_there() -> None:
    wanted = {"Gradiend", "load_model", "Feature", "create_data", "train_gradiend", "evaluate_encoder",
              "evaluate_decoder", "rewrite_model", "edited", "run", "study"}
    assert wanted <= set(gradiend.__all__) and wanted <= set(dir(gradiend))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'gradiend' has no attribute 'Gradient'"):
        gradiend.Gradient  # noqa: B018


def test_run_and_study_take_a_path(tmp_path: Path) -> None:
    with pytest.raises(GradiendError, match="config file .* does not exist"):
        gradiend.run(tmp_path / "missing.toml")
    importlib.import_module("gradiend.study")  # binds the package attribute to the submodule: still callable

    with pytest.raises(GradiendError, match="suite file .* does not exist"):
        gradiend.study(tmp_path / "missing.toml")
    assert gradiend.study.compare_runs is gradiend.compare_runs
