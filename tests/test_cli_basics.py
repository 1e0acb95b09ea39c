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


def test_help_lists_every_verb():
    result = CliRunner().invoke(cli, ["--help"])
    for verb in ("assets", "data", "train", "evaluate", "rewrite", "report", "run", "demo", "compare", "study"):
        assert f"  {verb} " in result.output, verb


def test_bundled_run_configs_load():
    from gradiend.cli.run_cmd import DEMO_CONFIGS, example_path
    from gradiend.config import load_config

    demo = load_config(example_path(DEMO_CONFIGS["offline:smollm2-135m"]))
    assert demo.model.spec == "offline:smollm2-135m" and demo.rewrite.strengthen == ("3SG",)
    splade = load_config(example_path(DEMO_CONFIGS["offline:splade-tiny"]))
    assert splade.train.steps == 200 and splade.gradients.pre_prune_topk == 0.1
