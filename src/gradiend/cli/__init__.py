"""The ``gradiend`` command: one verb per stage, each a thin wrapper over the Python API.

Each verb lives in its own module under ``gradiend.cli`` and is registered in :data:`COMMANDS`; a verb
appears here only when it works.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys

import click

from gradiend import __version__
from gradiend.errors import GradiendError, MissingExtraError

# verb name -> "module:attribute" of its click command (imported lazily so `gradiend --help` stays fast)
COMMANDS: dict[str, str] = {
    "assets": "gradiend.cli.assets_cmd:assets",
    "demo": "gradiend.cli.run_cmd:demo",
    "head": "gradiend.cli.head_cmd:head",
    "run": "gradiend.cli.run_cmd:run_command",
    "train": "gradiend.cli.stage_cmds:train",
    "evaluate": "gradiend.cli.stage_cmds:evaluate",
    "rewrite": "gradiend.cli.stage_cmds:rewrite",
    "report": "gradiend.cli.stage_cmds:report",
    "compare": "gradiend.cli.compare_cmd:compare",
    "study": "gradiend.cli.study_cmd:study",
    "data": "gradiend.cli.data_cmd:data",
    "push": "gradiend.cli.hub_cmd:push",
    "apply": "gradiend.cli.hub_cmd:apply",
    "export": "gradiend.cli.export_cmd:export_command",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gradiend")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """GRADIEND: learn a feature direction in a language model's weights from its gradients."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("gradiend").setLevel(min(level, logging.INFO))


INTERRUPTED = ("interrupted: no stage was left half-written; run the same command again to resume "
               "(training continues from its last checkpoint)")


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM ends a run like Ctrl-C: stages write atomically, so stopping anywhere leaves a consistent run."""
    raise KeyboardInterrupt


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2; Ctrl-C / SIGTERM exit 130."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo(INTERRUPTED, err=True)
        sys.exit(130)
    except (GradiendError, MissingExtraError) as exc:
        _fail(f"error: {exc}", exc, 2)
    except OSError as exc:  # the environment: disk full, a path that cannot be created, permissions
        _fail(f"error: {_os_error(exc)}", exc, 1)


def _fail(line: str, exc: BaseException, code: int) -> None:
    """One line on stderr (with -vv the traceback is logged first, for a bug report) and the exit code."""
    logging.getLogger("gradiend").debug("the error's traceback:", exc_info=exc)
    click.echo(line, err=True)
    sys.exit(code)


def _os_error(exc: OSError) -> str:
    """One line for an OSError: what failed, on which file, and the way out (nothing half-written was kept)."""
    where = f" ({exc.filename})" if exc.filename else ""
    what = exc.strerror or str(exc)
    return (f"cannot write or read{where}: {what}; free space or choose another output path, then run the command "
            "again (files are written atomically: nothing half-written was kept)")
