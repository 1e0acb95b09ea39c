"""``gradiend push`` (a run's GRADIEND and rewritten models to the Hub) and ``gradiend apply`` (a GRADIEND from a
directory or Hub id onto its base model, written as a rewritten model with its card)."""

from __future__ import annotations

from pathlib import Path

import click

_RUN_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


@click.command("push")
@click.argument("run_dir", type=_RUN_DIR)
@click.argument("repo_id")
@click.option("--private", is_flag=True, help="Create the repositories as private.")
@click.option("--with-rewrites", is_flag=True, help="Also push RUN/rewritten/<key> to <REPO_ID>-<key>.")
@click.option("--token", default=None, help="Hub token (default: HF_TOKEN or `hf auth login`).")
def push(run_dir: Path, repo_id: str, private: bool, with_rewrites: bool, token: str | None) -> None:
    """Upload RUN's GRADIEND (with its model card) to the Hugging Face Hub repository REPO_ID."""
    from gradiend.hub import push_run

    for pushed in push_run(run_dir, repo_id, private=private or None, token=token, with_rewrites=with_rewrites):
        click.echo(f"pushed https://huggingface.co/{pushed}")


@click.command("apply")
@click.option("--gradiend", "gradiend_spec", required=True, help="GRADIEND directory or Hub id org/name.")
@click.option("--revision", default=None, help="Hub revision (branch, tag or commit) of --gradiend.")
@click.option("--model", "model_spec", default=None, help="Base model (default: the one the GRADIEND names).")
@click.option("--strengthen", default=None, help="Class to strengthen (sets the sign of h).")
@click.option("--h", "h", type=float, default=None, help="Feature factor h (default: from --strengthen).")
@click.option("--alpha", type=float, required=True, help="Learning rate α.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Model directory to write.")
def apply(gradiend_spec: str, revision: str | None, model_spec: str | None, strengthen: str | None,
          h: float | None, alpha: float, out_dir: Path) -> None:
    """Write θ + α·dec(h) of a GRADIEND (local or from the Hub) as a Hugging Face model directory with its card."""
    from gradiend.cards import rewrite_card, write_card
    from gradiend.errors import GradiendError
    from gradiend.hub import resolve
    from gradiend.lm.load import load_model
    from gradiend.model import Gradiend
    from gradiend.rewrite import rewrite_model

    if (h is None) == (strengthen is None):
        raise GradiendError("give exactly one of --h and --strengthen")
    gradiend_dir = resolve(gradiend_spec, revision=revision)
    gradiend = Gradiend.from_pretrained(gradiend_dir)
    lm = load_model(model_spec or gradiend.meta.base_model)
    h = gradiend.strengthen_h(strengthen) if h is None else h
    rewrite_model(lm, gradiend, h, alpha, out_dir, None, gradiend_spec)
    key = strengthen or f"h{h:+g}_alpha{alpha:g}"
    write_card(out_dir, rewrite_card(out_dir, key=key, gradiend_dir=gradiend_dir))
    click.echo(f"rewritten model written to {out_dir}")
