"""``gradiend head train``: fit the auxiliary MLM head of a decoder-only model on neutral text."""

from __future__ import annotations

import click


@click.group()
def head() -> None:
    """The auxiliary masked-LM head of a decoder-only model (use it with [model] head = DIR)."""


@head.command("train")
@click.option("--model", "spec", required=True, help="Causal LM: hub id, directory, .gguf or offline:NAME.")
@click.option("--texts", required=True, help="Neutral text: offline:NAME, a file or a Hugging Face dataset id.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory for the head.")
@click.option("--steps", default=None, type=int, help="Optimizer steps [default: 400].")
@click.option("--max-texts", default=None, type=int,
              help="Sentences used (one masked token each) [default: 4000].")
@click.option("--pool", default=None, type=int,
              help="Hidden states averaged: the mask and the POOL-1 positions after it [default: 3].")
@click.option("--lr", default=None, type=float, help="Learning rate [default: 1e-3].")
@click.option("--seed", default=None, type=int, help="[default: 0]")
def train(spec: str, texts: str, out: str, **options: int | float | None) -> None:
    """Train the head of MODEL (frozen) on the sentences of TEXTS and save it with its metrics to OUT.

    Options left out take :class:`gradiend.lm.mlm_head.HeadConfig`'s defaults (imported only here: ``--help``
    loads no torch)."""
    from gradiend.data.corpus import load_documents
    from gradiend.data.sentences import split_sentences
    from gradiend.lm.load import load_model
    from gradiend.lm.mlm_head import HeadConfig, save_head, train_head

    config = HeadConfig(**{k: v for k, v in options.items() if v is not None})
    lm = load_model(spec)
    docs = load_documents(texts, max_documents=config.max_texts, seed=config.seed)
    sentences = [s for d in docs for s in split_sentences(d.text)]
    mlm_head, metrics = train_head(lm, sentences, config)
    save_head(mlm_head, out, metrics, lm)
    click.echo(f"head saved to {out}: validation loss {metrics['val_loss_before']:.3f} → {metrics['val_loss']:.3f}, "
               f"accuracy {metrics['val_accuracy']:.3f} ({metrics['n_train']} training sentences)")
