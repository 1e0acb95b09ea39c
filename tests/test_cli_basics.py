import subprocess
import sys

from click.testing import CliRunner

from gradiend.cli import cli


def test_help_lists_assets_verb():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "assets" in result.output


def test_assets_lists_every_offline_resource_with_state():
    result = CliRunner().invoke(cli, ["assets"])
    assert result.exit_code == 0
    for name in ("offline:splade-tiny", "offline:smollm2-135m", "offline:wiki-en"):
        assert name in result.output
    assert "installed" in result.output


def test_console_script_user_error_is_one_line():
    proc = subprocess.run(
        [sys.executable, "-c", "from gradiend.cli import main; main()", "assets", "install", "nope"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown offline asset 'nope'")
    assert len(proc.stderr.strip().splitlines()) == 1
