"""Artifacts verified before they are trusted: a damaged file of a finished stage makes that stage unfinished.

One finished tiny run; every recorded artifact is damaged in turn (truncated, bytes flipped, deleted): the
pipeline sees exactly that stage (and no earlier one) as unfinished; a real re-run per stage redoes exactly that
stage and its dependants; the verbs that read a run without redoing it fail with a message naming the file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from gradiend import constants as C
from gradiend.artifacts import (
    MIN_FORMAT_VERSION,
    DamagedArtifactError,
    check_format_version,
    file_digest,
    manifest,
)
from gradiend.cli import cli
from gradiend.config import load_config
from gradiend.errors import GradiendError
from gradiend.model import Gradiend
from gradiend.pipeline import STAGES, Run, run
from test_pipeline import CONFIG

MODES = ("truncate", "flip", "delete")


def damage(path: Path, mode: str) -> None:
    """Cut the file to half, flip the bits of its middle byte, or delete it."""
    if mode == "delete":
        path.unlink()
        return
    data = bytearray(path.read_bytes())
    if mode == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
        return
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def finished(finished_tiny_run):
    return finished_tiny_run


def recorded_artifacts(run_dir: Path) -> dict[str, list[str]]:
    """Each stage's recorded files; the data set records its own in data.json (a study may share it)."""
    stages = json.loads((run_dir / C.METRICS_DIR / C.STAGES_FILE).read_text())
    files = {stage: sorted(stages[stage]["artifacts"]) for stage in STAGES}
    files["data"] = sorted([f"data/{C.DATA_META_FILE}", *(f"data/{f}" for f in data_records(run_dir))])
    return files


def data_records(run_dir: Path) -> dict[str, dict]:
    return json.loads((run_dir / "data" / C.DATA_META_FILE).read_text())["files"]


def test_every_stage_records_size_and_hash_of_what_it_wrote(finished):
    _, run_dir = finished
    stages = json.loads((run_dir / C.METRICS_DIR / C.STAGES_FILE).read_text())
    files = recorded_artifacts(run_dir)
    assert files["data"] == ["data/data.json", "data/neutral.parquet", "data/pairs.parquet"]
    assert stages["data"]["artifacts"] == {}
    assert files["train"] == ["gradiend/config.json", "gradiend/model.safetensors", "metrics/seeds.json",
                              "metrics/training.jsonl"]
    assert files["encoder"] == ["metrics/encoder.json", "metrics/encodings.parquet"]
    assert files["decoder"] == ["metrics/decoder.json", "metrics/decoder_grid.csv"]
    assert "rewritten/3SG/model.safetensors" in files["rewrite"] and "report.html" in files["report"]
    record = stages["train"]["artifacts"]["gradiend/model.safetensors"]
    weights = run_dir / "gradiend/model.safetensors"
    assert record == {"size": weights.stat().st_size,
                      "blake2b": hashlib.blake2b(weights.read_bytes(), digest_size=32).hexdigest()}


def _all_artifacts(run_dir: Path) -> list[tuple[str, str]]:
    return [(stage, rel) for stage, rels in recorded_artifacts(run_dir).items() for rel in rels]


def test_each_damaged_artifact_makes_exactly_its_stage_unfinished(finished):
    config, run_dir = finished
    r = Run(config, run_dir)
    assert all(r.is_done(s) for s in STAGES)
    cases = _all_artifacts(run_dir)
    assert len(cases) >= 15
    for i, (stage, rel) in enumerate(cases):
        path = run_dir / rel
        saved = path.read_bytes()
        for mode in MODES:
            damage(path, mode)
            assert [s for s in STAGES if not r.is_done(s)] == [stage], (rel, mode)
            path.write_bytes(saved)
        assert r.is_done(stage), (i, rel)


# one real re-run per stage, the damage mode rotating over the stages
RERUNS = [("data", "data/pairs.parquet", "flip"), ("train", "gradiend/model.safetensors", "truncate"),
          ("encoder", "metrics/encodings.parquet", "delete"), ("decoder", "metrics/decoder.json", "flip"),
          ("rewrite", "rewritten/3SG/model.safetensors", "truncate"), ("report", "report.html", "delete")]


@pytest.mark.parametrize(("stage", "rel", "mode"), RERUNS, ids=[c[0] for c in RERUNS])
def test_next_run_redoes_exactly_the_damaged_stage(finished, stage, rel, mode):
    config, run_dir = finished
    damage(run_dir / rel, mode)
    result = run(config, progress=False)
    assert result.skipped == list(STAGES[: STAGES.index(stage)])
    assert result.ran == list(STAGES[STAGES.index(stage):])
    stages = json.loads((run_dir / C.METRICS_DIR / C.STAGES_FILE).read_text())
    records = data_records(run_dir) if stage == "data" else stages[stage]["artifacts"]
    key = rel.removeprefix("data/") if stage == "data" else rel
    assert records[key]["blake2b"] == file_digest(run_dir / rel)  # rewritten and re-recorded
    assert run(config, progress=False).ran == []


def test_rewrite_verb_refuses_a_damaged_gradiend_naming_the_file(finished, tmp_path):
    _, run_dir = finished
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, symlinks=True)
    damage(copy / "gradiend/model.safetensors", "truncate")
    res = CliRunner().invoke(cli, ["rewrite", str(copy), "--h", "1", "--alpha", "0.1"])
    assert res.exit_code != 0 and isinstance(res.exception, DamagedArtifactError)
    msg = str(res.exception)
    assert f"{copy}/gradiend/model.safetensors is damaged" in msg and f"gradiend run {copy}/config.toml" in msg
    assert not (copy / C.REWRITTEN_DIR / "h+1_alpha0.1").exists()


def test_report_verb_refuses_damaged_metrics(finished, tmp_path):
    _, run_dir = finished
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, symlinks=True)
    damage(copy / "metrics/decoder.json", "flip")
    before = (copy / C.REPORT_FILE).read_bytes()
    res = CliRunner().invoke(cli, ["report", str(copy)])
    assert isinstance(res.exception, DamagedArtifactError)
    assert "metrics/decoder.json is damaged: its content changed" in str(res.exception)
    assert (copy / C.REPORT_FILE).read_bytes() == before


def test_from_pretrained_checks_the_weights_against_config_json(finished, tmp_path):
    _, run_dir = finished
    gdir = tmp_path / "g"
    shutil.copytree(run_dir / C.GRADIEND_DIR, gdir)
    assert Gradiend.from_pretrained(gdir).input_dim > 0
    for mode, fragment in (("truncate", "bytes where"), ("flip", "hash mismatch")):
        saved = (gdir / C.WEIGHTS_FILE).read_bytes()
        damage(gdir / C.WEIGHTS_FILE, mode)
        with pytest.raises(DamagedArtifactError, match=fragment):
            Gradiend.from_pretrained(gdir)
        (gdir / C.WEIGHTS_FILE).write_bytes(saved)


@pytest.mark.parametrize(("version", "fragment"), [(C.FORMAT_VERSION + 1, "newer than this gradiend reads"),
                                                    (MIN_FORMAT_VERSION - 1, "older than this gradiend reads"),
                                                    ("x", "no valid format_version")])
def test_format_version_older_and_newer_have_distinct_messages(finished, tmp_path, version, fragment):
    _, run_dir = finished
    gdir = tmp_path / "g"
    shutil.copytree(run_dir / C.GRADIEND_DIR, gdir)
    config = json.loads((gdir / C.GRADIEND_CONFIG_FILE).read_text())
    (gdir / C.GRADIEND_CONFIG_FILE).write_text(json.dumps({**config, "format_version": version}))
    with pytest.raises(GradiendError, match=fragment):
        Gradiend.from_pretrained(gdir)
    with pytest.raises(GradiendError, match=fragment):
        check_format_version(version, gdir)


def test_manifest_skips_atomic_write_leftovers(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.bin").write_bytes(b"x" * 3_000_000)  # more than one hashing chunk
    (tmp_path / "d" / ".a.bin.123.tmp").write_bytes(b"half")
    got = manifest(tmp_path, ["d/", "missing.json"])
    assert list(got) == ["d/a.bin"]
    assert got["d/a.bin"]["blake2b"] == hashlib.blake2b(b"x" * 3_000_000, digest_size=32).hexdigest()


def test_damaged_stage_whose_inputs_are_gone_names_both(tmp_path, tiny_model_dir):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (tmp_path / "tiny.toml").write_text(CONFIG.format(out=tmp_path, model=model))
    config = load_config(tmp_path / "tiny.toml")
    assert run(config, until="train", progress=False).ran == ["data", "train"]
    shutil.rmtree(model)  # the input needed to redo the train stage is gone
    damage(config.run_dir / "gradiend/model.safetensors", "flip")
    with pytest.raises(GradiendError) as exc:
        run(config, until="train", progress=False)
    msg = str(exc.value)
    assert msg.startswith(f"{config.run_dir}/gradiend/model.safetensors is damaged: its content changed")
    assert "so the train stage was redone, but redoing it failed: cannot load model" in msg
    assert "train" not in json.loads((config.run_dir / C.METRICS_DIR / C.STAGES_FILE).read_text())
