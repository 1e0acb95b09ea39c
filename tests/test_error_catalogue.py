"""Every row of the bad-input catalogue (tests/error_cases.py) through the real CLI or the Python API.

Each row must end with a non-zero exit (or the library's error type), a message containing its fragment, no
traceback in the output, no atomic-write leftovers, no path in ``absent``, and every stage still recorded in a
run directory intact (nothing half-written that a later command would take for finished).
"""

from __future__ import annotations

import errno
import json
import shutil
import signal
import sys
from pathlib import Path

import pytest

from error_cases import API, API_EXIT, CASES, Case
from gradiend.cli import main
from gradiend.errors import GradiendError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sources(finished_tiny_run, tiny_model_dir):
    return {"run": finished_tiny_run[1], "model": tiny_model_dir}


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def _prepare(case: Case, tmp: Path, sources: dict[str, Path]) -> dict[str, str]:
    shutil.copytree(sources["run"], tmp / "run", symlinks=False)
    shutil.copytree(sources["run"] / "data", tmp / "data")
    (tmp / "base-model").symlink_to(sources["model"], target_is_directory=True)
    values = {"tmp": str(tmp), "model": str(sources["model"]), "run": str(tmp / "run"), "data": str(tmp / "data")}
    if case.setup is not None:
        case.setup(tmp)
        for path in tmp.glob("*.toml"):
            path.write_text(_fill(path.read_text(), values))
    return values


def _patch(monkeypatch, patch: tuple[str, str] | None) -> None:
    if patch is None:
        return
    target, how = patch
    if how == "no-module":
        monkeypatch.setitem(sys.modules, target, None)  # `import target` raises ImportError
        return

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(target, full_disk)


def _invoke(case: Case, argv: list[str], capsys) -> tuple[int | str, str]:
    if case.exit_code == API_EXIT:
        with pytest.raises(GradiendError) as exc:
            API[argv[0]](*argv[1:])
        return API_EXIT, str(exc.value)
    handler = signal.getsignal(signal.SIGTERM)
    old_argv = sys.argv
    sys.argv = ["gradiend", *argv]
    try:
        with pytest.raises(SystemExit) as exc:
            main()
    finally:
        sys.argv = old_argv
        signal.signal(signal.SIGTERM, handler)
    captured = capsys.readouterr()
    return exc.value.code, captured.out + captured.err


def _damage(tmp: Path) -> dict[Path, set[str]]:
    """Per run directory under ``tmp``: the recorded artifacts that are missing or changed."""
    from gradiend.artifacts import damaged

    out = {}
    for stages in tmp.rglob("metrics/stages.json"):
        try:
            recorded = json.loads(stages.read_text())
        except ValueError:  # a case that damages stages.json itself
            continue
        out[stages.parent.parent] = {d.path for s in recorded.values() for d in damaged(stages.parent.parent,
                                                                                          s.get("artifacts", {}))}
    return out


def _assert_nothing_half_written(case: Case, tmp: Path, before: dict[Path, set[str]]) -> None:
    """No atomic-write leftovers, nothing in ``absent``, no recorded artifact damaged by the failed command."""
    leftovers = [p for p in tmp.rglob(".*.tmp")]
    assert not leftovers, leftovers
    for rel in case.absent:
        assert not (tmp / rel).exists(), rel
    for run_dir, damaged in _damage(tmp).items():
        assert damaged <= before.get(run_dir, set()), (run_dir, damaged)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_clear_error(case, tmp_path, sources, monkeypatch, capsys):
    values = _prepare(case, tmp_path, sources)
    for key, value in case.env:
        monkeypatch.setenv(key, value)
    _patch(monkeypatch, case.patch)
    before = _damage(tmp_path)
    code, output = _invoke(case, [_fill(a, values) for a in case.call], capsys)
    assert code == case.exit_code, output
    assert case.fragment in output, output
    assert "Traceback" not in output
    _assert_nothing_half_written(case, tmp_path, before)


def test_catalogue_has_distinct_ids_and_covers_every_group():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 40
    assert {c.group for c in CASES} == {"corpora", "classes", "configs", "models", "runs", "environment"}


def test_docs_errors_md_is_up_to_date():
    from errors_doc import render

    assert (ROOT / "docs" / "errors.md").read_text() == render(), "run: python tests/errors_doc.py"
