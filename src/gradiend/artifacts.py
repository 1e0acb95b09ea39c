"""What a finished stage wrote, and whether it is still there unchanged (artifacts verified before trusted).

A stage's fingerprint covers its *inputs*; a file damaged after the stage finished (cut short by a full disk,
edited, deleted) would still look up to date. So each finished stage also records a manifest of its outputs:
relative path → size and BLAKE2b hash. Before a later command trusts a stage, the manifest is checked (size
first, the hash only when the size matches); a damaged artifact makes the stage unfinished.

Hashing streams each file in 1 MiB chunks, so memory stays flat for any model size; BLAKE2b runs at about
1 GB/s on one core, so verifying a 500 MB model directory costs about half a second (see docs/robustness.md).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradiend import constants as C
from gradiend.errors import GradiendError

CHUNK_BYTES = 1 << 20
#: the oldest on-disk format this gradiend still reads (GRADIEND config.json, data.json)
MIN_FORMAT_VERSION = 1

#: what each pipeline stage writes, relative to the run directory (a trailing "/" = every file below)
#: (the data set records its own files in data.json, since several runs may share it: see ``data_damage``)
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "data": (),
    "train": (f"{C.GRADIEND_DIR}/", f"{C.METRICS_DIR}/{C.TRAINING_LOG_FILE}", f"{C.METRICS_DIR}/seeds.json"),
    "encoder": (f"{C.METRICS_DIR}/{C.ENCODER_METRICS_FILE}", f"{C.METRICS_DIR}/{C.ENCODINGS_FILE}"),
    "decoder": (f"{C.METRICS_DIR}/{C.DECODER_METRICS_FILE}", f"{C.METRICS_DIR}/{C.DECODER_GRID_FILE}"),
    "rewrite": (f"{C.REWRITTEN_DIR}/",),
    "report": (C.REPORT_FILE, f"{C.PLOTS_DIR}/"),
}


class DamagedArtifactError(GradiendError):
    """A recorded artifact is missing or no longer matches the size and hash its stage recorded."""


@dataclass(frozen=True)
class Damage:
    """One artifact that no longer matches its record: its path (relative to the root) and what is wrong."""

    path: str
    reason: str

    def describe(self, root: Path) -> str:
        return f"{root / self.path} is {self.reason}"


def file_digest(path: str | os.PathLike[str]) -> str:
    """BLAKE2b (256-bit) hex digest of a file, read in :data:`CHUNK_BYTES` chunks."""
    h = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    """The record of one file: its size and content hash."""
    return {"size": path.stat().st_size, "blake2b": file_digest(path)}


def manifest(root: Path, outputs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """{relative path: record} of every file in ``outputs`` that exists under ``root`` (dirs recursively)."""
    return {rel: file_record(root / rel) for rel in sorted(_files(root, outputs))}


def _files(root: Path, outputs: Iterable[str]) -> Iterator[str]:
    """Files of ``outputs``, model cards excepted: a card describes later stages' results too, so the rewrite stage
    and ``gradiend push`` rewrite it (see :mod:`gradiend.cards`); it is documentation, not an input of any stage."""
    for out in outputs:
        path = root / out
        if out.endswith("/") and path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # atomic-write leftovers
                for name in filenames:
                    if not name.startswith(".") and name != C.CARD_FILE:
                        yield (Path(dirpath) / name).relative_to(root).as_posix()
        elif path.is_file():
            yield out


def damaged(root: Path, recorded: Mapping[str, Mapping[str, Any]]) -> list[Damage]:
    """The recorded files under ``root`` that are missing, resized or changed (hash only when sizes agree)."""
    out = []
    for rel, record in recorded.items():
        reason = _check_file(root / rel, record)
        if reason:
            out.append(Damage(rel, reason))
    return out


def _check_file(path: Path, record: Mapping[str, Any]) -> str | None:
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != record.get("size"):
        return f"damaged: {size} bytes where {record.get('size')} were written"
    if "blake2b" in record and file_digest(path) != record["blake2b"]:
        return "damaged: its content changed after it was written (hash mismatch)"
    return None


def data_damage(data_dir: Path) -> list[Damage]:
    """A data set's files against the records in its own ``data.json`` (an unreadable data.json is damage)."""
    from gradiend.io import read_json

    meta_path = data_dir / C.DATA_META_FILE
    if not meta_path.is_file():
        return [Damage(C.DATA_META_FILE, "missing")]
    try:
        meta = read_json(meta_path)
    except GradiendError:
        return [Damage(C.DATA_META_FILE, "damaged: not valid JSON")]
    return damaged(data_dir, meta.get("files") or {}) if isinstance(meta, dict) else []


def raise_if_damaged(root: Path, recorded: Mapping[str, Mapping[str, Any]], way_out: str) -> None:
    """Raise :class:`DamagedArtifactError` naming the first damaged file and ``way_out``."""
    problems = damaged(root, recorded)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DamagedArtifactError(f"{problems[0].describe(root)}{more}; {way_out}")


def check_format_version(version: Any, path: Path, current: int = C.FORMAT_VERSION) -> int:
    """The format version of a file we are about to read; distinct errors for older and newer formats."""
    try:
        v = int(version)
    except (TypeError, ValueError):
        raise GradiendError(f"{path} has no valid format_version ({version!r}): it was not written by gradiend "
                            "or is damaged; re-create it") from None
    if v > current:
        raise GradiendError(f"{path} was written in format version {v}, newer than this gradiend reads "
                            f"({current}); upgrade gradiend (pip install -U gradiend) to read it")
    if v < MIN_FORMAT_VERSION:
        raise GradiendError(f"{path} was written in format version {v}, older than this gradiend reads "
                            f"({MIN_FORMAT_VERSION}–{current}); re-create it with this version (re-run the stage "
                            "that wrote it) or read it with the gradiend release that wrote it")
    return v
