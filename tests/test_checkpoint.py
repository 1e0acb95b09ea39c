"""Resumable training: a checkpointed run that is interrupted and resumed equals an uninterrupted run, bit for bit.

In-process on planted gradients (several seeds, epochs, post-prune: every piece of the loop's state), then the
real thing: a ``gradiend run`` subprocess on a tiny BERT is SIGKILLed after its first checkpoint, resumed, and
compared with an uninterrupted run; SIGTERM ends a run with exit 130 and one line, its checkpoint kept.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gradiend import constants as C
from gradiend.checkpoint import STATE_FILE, CheckpointConfig, Checkpointer
from gradiend.cli import INTERRUPTED
from gradiend.config import apply_overrides, load_config, save_config
from gradiend.errors import GradiendError
from gradiend.pipeline import run
from test_pipeline import CONFIG
from test_train import _fit, planted


class Interrupted(Exception):
    pass


class Stops(list):
    """The planted batches; iterating raises once ``stop_after`` batches were handed out (a killed process)."""

    def __init__(self, batches, stop_after: int | None) -> None:
        super().__init__(batches)
        self.stop_after, self.given = stop_after, 0

    def __iter__(self):
        for batch in super().__iter__():
            if self.stop_after is not None and self.given >= self.stop_after:
                raise Interrupted
            self.given += 1
            yield batch


@pytest.mark.parametrize("cfg", [dict(seeds=(0, 1), steps=40, eval_every=10),
                                 dict(seeds=(0,), epochs=2, eval_every=7, post_prune_topk=0.25, post_prune_steps=5)],
                         ids=["steps-two-seeds", "epochs-post-prune"])
def test_resumed_fit_equals_uninterrupted_fit(tmp_path, cfg):
    torch.set_num_threads(1)
    p = planted(n=128, steps=30, scale=6e-2)
    full = _fit(p, **cfg)
    ckpt = Checkpointer(tmp_path / "ckpt", CheckpointConfig(steps=6, minutes=None), key="k")
    p.batches = Stops(p.batches, stop_after=22)  # step 22: four steps after the last checkpoint (18)
    with pytest.raises(Interrupted):
        fit_with(p, ckpt, **cfg)
    assert json.loads((tmp_path / "ckpt" / STATE_FILE).read_text())["step"] == 18
    p.batches.stop_after = None
    resumed = fit_with(p, ckpt, **cfg)
    a, b = full.gradiend.state_dict(), resumed.gradiend.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.log == full.log and resumed.gradiend.meta.training == full.gradiend.meta.training


def fit_with(p, checkpoint, **cfg):
    from gradiend.model import GradiendMeta
    from gradiend.train import TrainConfig, fit

    config = TrainConfig(**{"lr": 3e-2, **cfg})
    return fit(p.batches, input_dim=p.v.numel(), config=config, validation=p.validation,
               template_meta=GradiendMeta(classes=("A", "B")), progress=False, checkpoint=checkpoint)


def test_checkpoint_of_another_configuration_or_damaged_is_ignored(tmp_path):
    p = planted(n=64, steps=10, scale=6e-2)
    fit_with(p, Checkpointer(tmp_path / "c", CheckpointConfig(steps=5, minutes=None), key="a"), steps=10)
    assert Checkpointer(tmp_path / "c", CheckpointConfig(), key="b").load() is None
    weights = tmp_path / "c" / "state.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    assert Checkpointer(tmp_path / "c", CheckpointConfig(), key="a").load() is None


@pytest.mark.parametrize(("raw", "fragment"), [({"steps": 0}, "steps must be ≥ 1"),
                                               ({"minutes": -1.0}, "minutes must be > 0")])
def test_checkpoint_settings_are_validated(raw, fragment):
    with pytest.raises(GradiendError, match=fragment):
        CheckpointConfig(**raw)


# --- the real process ------------------------------------------------------------------------------------------

SCRIPT = """
import logging, os, sys, time
import torch
torch.set_num_threads(1)
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
if os.environ.get("HANG_AFTER_CHECKPOINT"):  # hold still after the first checkpoint, to be killed there
    import gradiend.checkpoint as ck
    save = ck.Checkpointer.save
    def hang(self, snapshot):
        save(self, snapshot)
        open(os.environ["HANG_AFTER_CHECKPOINT"], "w").close()
        time.sleep(600)
    ck.Checkpointer.save = hang
from gradiend.cli import main
main()
"""


def _start(script: Path, args: list[str], hang: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    if hang is not None:
        env["HANG_AFTER_CHECKPOINT"] = str(hang)
    return subprocess.Popen([sys.executable, str(script), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.1)


@pytest.fixture
def prepared(tmp_path, tiny_model_dir):
    """A config (8 steps, checkpoint every 3) whose data stage already ran, and the child script."""
    (tmp_path / "base.toml").write_text(CONFIG.format(out=tmp_path, model=tiny_model_dir))
    config = apply_overrides(load_config(tmp_path / "base.toml"),
                             ["train.steps=8", "train.checkpoint.steps=3", "train.post_prune_steps=2"])
    save_config(config, tmp_path / "tiny.toml")
    run(config, until="data", progress=False)
    script = tmp_path / "child.py"
    script.write_text(SCRIPT)
    return tmp_path / "tiny.toml", config.run_dir, script


def test_sigkilled_training_resumes_to_the_uninterrupted_result(prepared, tmp_path):
    config_file, run_dir, script = prepared
    twin = tmp_path / "twin"
    shutil.copytree(run_dir, twin, symlinks=True)
    args = ["run", str(config_file), "--until", "train", "--out"]
    proc = _start(script, [*args, str(run_dir)], hang=tmp_path / "saved")
    uninterrupted = _start(script, [*args, str(twin)])
    _wait_for(tmp_path / "saved", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((run_dir / C.CHECKPOINT_DIR / STATE_FILE).read_text())["step"] == 3
    assert not (run_dir / C.GRADIEND_DIR).exists()
    resumed = _start(script, [*args, str(run_dir)])
    outs = [p.communicate() for p in (resumed, uninterrupted)]
    assert [p.returncode for p in (resumed, uninterrupted)] == [0, 0], outs
    assert "resuming training from the checkpoint at step 3" in outs[0][1]
    assert "resuming" not in outs[1][1]
    a, b = (load_file(str(d / C.GRADIEND_DIR / C.WEIGHTS_FILE)) for d in (run_dir, twin))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = [(d / C.METRICS_DIR / C.TRAINING_LOG_FILE).read_text() for d in (run_dir, twin)]
    assert logs[0] == logs[1]
    assert not (run_dir / C.CHECKPOINT_DIR).exists()  # removed when the stage finished


def test_sigterm_ends_a_run_cleanly_with_exit_130(prepared, tmp_path):
    config_file, run_dir, script = prepared
    proc = _start(script, ["run", str(config_file), "--out", str(run_dir)], hang=tmp_path / "saved")
    _wait_for(tmp_path / "saved", proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    lines = [line for line in err.splitlines() if not line.startswith(("INFO", "WARNING", "Loading", "GRADIEND", " "))]  # " ": a log record's continuation
    assert [line for line in lines if line.strip()] == [INTERRUPTED], err
    assert "Traceback" not in err
    stages = json.loads((run_dir / C.METRICS_DIR / C.STAGES_FILE).read_text())
    assert "train" not in stages and not (run_dir / C.GRADIEND_DIR).exists()
    assert json.loads((run_dir / C.CHECKPOINT_DIR / STATE_FILE).read_text())["step"] == 3
