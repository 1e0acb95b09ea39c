"""Training checkpoints: a killed training run continues from its last checkpoint, bit for bit.

A checkpoint is one directory written atomically (``gradiend.io.atomic_dir``), so a kill while it is being
written leaves the previous checkpoint intact:

- ``state.safetensors``: every seed's GRADIEND weights, the AdamW state, each seed's best copy so far, the loss
  accumulator and the torch and numpy RNG states (tensors only: no pickle);
- ``state.json``: the step, the gradient stream's position (passes done, batches into the current pass), the
  evaluation log, the best steps and scores, Python's RNG state, the key of the training configuration it
  belongs to, and the size and hash of ``state.safetensors`` (a damaged checkpoint is ignored, not trusted).

The training loop (:func:`gradiend.train.fit`) asks :meth:`Checkpointer.due` after every step and hands its
state to :meth:`Checkpointer.save`; on start it asks :meth:`Checkpointer.load`. The pipeline removes the
checkpoint once the training stage's artifacts are written.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from gradiend.artifacts import damaged, file_record
from gradiend.errors import GradiendError
from gradiend.io import atomic_dir, read_json, write_json

log = logging.getLogger(__name__)

TENSORS_FILE = "state.safetensors"
STATE_FILE = "state.json"
CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class CheckpointConfig:
    """When training writes a checkpoint (the ``[train.checkpoint]`` section).

    ``steps``: every this many optimizer steps; ``minutes``: when this much wall time has passed since the last
    one (default 15: a short run never checkpoints, a run of hours loses at most a quarter of an hour). Either
    may be ``"none"``; both none = no checkpoints. Checkpoints do not change the result (not fingerprinted).
    """

    steps: int | None = None
    minutes: float | None = 15.0

    def __post_init__(self) -> None:
        if self.steps is not None and (isinstance(self.steps, bool) or self.steps < 1):
            raise GradiendError(f"[train.checkpoint] steps must be ≥ 1 (or \"none\"), got {self.steps!r}")
        if self.minutes is not None and not self.minutes > 0:
            raise GradiendError(f"[train.checkpoint] minutes must be > 0 (or \"none\"), got {self.minutes!r}")

    @property
    def enabled(self) -> bool:
        return self.steps is not None or self.minutes is not None


@dataclass(frozen=True)
class Snapshot:
    """The training loop's state at a step boundary: tensors (safetensors) and plain JSON values."""

    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]


class Checkpointer:
    """Writes, finds and removes the checkpoint of one training run in ``directory``.

    ``key`` identifies the training configuration (the pipeline passes the train stage's fingerprint): a
    checkpoint with another key belongs to another configuration and is ignored.
    """

    def __init__(self, directory: str | Path, config: CheckpointConfig, key: str = "") -> None:
        self.directory = Path(directory)
        self.config = config
        self.key = key
        self._last = time.monotonic()

    def due(self, step: int) -> bool:
        """Whether a checkpoint is due after optimizer step ``step``."""
        by_steps = self.config.steps is not None and step % self.config.steps == 0
        by_time = self.config.minutes is not None and time.monotonic() - self._last >= 60 * self.config.minutes
        return by_steps or by_time

    def save(self, snapshot: Snapshot) -> Path:
        """Write ``snapshot`` plus the RNG states atomically (replacing the previous checkpoint)."""
        tensors, rng = rng_state()
        tensors.update({k: v.detach().contiguous().cpu() for k, v in snapshot.tensors.items()})
        with atomic_dir(self.directory) as tmp:
            save_file(tensors, str(tmp / TENSORS_FILE), metadata={"format": "gradiend-checkpoint"})
            write_json(tmp / STATE_FILE, {"format_version": CHECKPOINT_FORMAT, "key": self.key, "rng": rng,
                                          "files": {TENSORS_FILE: file_record(tmp / TENSORS_FILE)},
                                          **snapshot.state})
        self._last = time.monotonic()
        log.info("checkpoint at step %s written to %s", snapshot.state.get("step"), self.directory)
        return self.directory

    def load(self) -> Snapshot | None:
        """The checkpoint to resume from (RNG states restored), or None: none there, another key, or damaged."""
        state_path = self.directory / STATE_FILE
        if not state_path.is_file():
            return None
        state, problem = self._read(state_path)
        if problem:
            log.warning("ignoring the checkpoint in %s (%s); training starts from step 0", self.directory, problem)
            return None
        tensors = load_file(str(self.directory / TENSORS_FILE))
        restore_rng(tensors, state["rng"])
        log.info("resuming training from the checkpoint at step %s (%s)", state.get("step"), self.directory)
        return Snapshot({k: v for k, v in tensors.items() if not k.startswith("rng.")}, state)

    def _read(self, state_path: Path) -> tuple[dict[str, Any], str | None]:
        """The checkpoint's state and what makes it unusable (None: usable)."""
        try:
            state = read_json(state_path)
        except GradiendError as exc:
            return {}, str(exc)
        if not isinstance(state, dict) or state.get("format_version") != CHECKPOINT_FORMAT or state.get("key") != self.key:
            return {}, "it belongs to another training configuration or gradiend version"
        bad = damaged(self.directory, state.get("files", {}))
        return state, bad[0].describe(self.directory) if bad else None

    def remove(self) -> None:
        """Delete the checkpoint (the stage it belonged to has finished)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """torch, numpy and Python RNG states as (tensors, JSON values)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    tensors = {"rng.torch": torch.get_rng_state(), "rng.numpy": torch.from_numpy(keys.astype(np.int64))}
    return tensors, {"numpy": [name, int(pos), int(has_gauss), float(gauss)],
                     "python": [version, list(internal), gauss_next]}


def restore_rng(tensors: dict[str, torch.Tensor], rng: dict[str, Any]) -> None:
    """Set the torch, numpy and Python RNGs to the states :func:`rng_state` recorded."""
    torch.set_rng_state(tensors["rng.torch"])
    name, pos, has_gauss, gauss = rng["numpy"]
    np.random.set_state((name, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = rng["python"]
    random.setstate((version, tuple(internal), gauss_next))
