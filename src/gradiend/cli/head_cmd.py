"""``gradiend head train``: fit the auxiliary MLM head of a decoder-only model on neutral text."""

from __future__ import annotations

import click

from gradiend.lm.mlm_head import HeadConfig


@click.group()
def head() -> None:
    """The auxiliary masked-LM head of a decoder-only model (use it with [model] head = DIR)."""


@head.command("train")
@click.option("--model", "spec", required=True, help="Causal LM: hub id, directory, .gguf or offline:NAME.")
@click.option("--texts", required=True, help="Neutral text: offline:NAME, a file or a Hugging Face dataset id.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory for the head.")
@click.option("--steps", default=HeadConfig.steps, show_default=True, type=int)
@click.option("--max-texts", default=HeadConfig.max_texts, show_default=True, type=int,
              help="Sentences used (one masked token each).")
@click.option("--pool", default=HeadConfig.pool, show_default=True, type=int,
              help="Hidden states averaged: the mask and the POOL-1 positions after it.")
@click.option("--lr", default=HeadConfig.lr, show_default=True, type=float)
@click.option("--seed", default=HeadConfig.seed, show_default=True, type=int)
def train(spec: str, texts: str, out: str, steps: int, max_texts: int, pool: int, lr: float, seed: int) -> None:
    """Train the head of MODEL (frozen) on the sentences of TEXTS and save it with its metrics to OUT."""
    from gradiend.data.corpus import load_documents
    from gradiend.data.sentences import split_sentences
    from gradiend.lm.load import load_model
    from gradiend.lm.mlm_head import save_head, train_head

    config = HeadConfig(pool=pool, steps=steps, max_texts=max_texts, lr=lr, seed=seed)
    lm = load_model(spec)
    docs = load_documents(texts, max_documents=max_texts, seed=seed)
    sentences = [s for d in docs for s in split_sentences(d.text)]
    mlm_head, metrics = train_head(lm, sentences, config)
    save_head(mlm_head, out, metrics, lm)
    click.echo(f"head saved to {out}: validation loss {metrics['val_loss_before']:.3f} → {metrics['val_loss']:.3f}, "
               f"accuracy {metrics['val_accuracy']:.3f} ({metrics['n_train']} training sentences)")
