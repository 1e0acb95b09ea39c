"""``gradiend data``: raw text → pairs.parquet, neutral.parquet and data.json in a directory."""

from __future__ import annotations

import dataclasses
import time

import click

from gradiend.data import DataConfig, Feature, FeatureClass, create_data
from gradiend.data.table import import_table
from gradiend.errors import GradiendError

CONSTRAINT_KEYS = ("pos", "dep", "morph", "lemma")


def _ratios(value: str) -> tuple[float, float, float]:
    parts = [p for p in value.split(",") if p.strip()]
    if len(parts) != 3:
        raise click.BadParameter(f"expected three comma-separated fractions (train,validation,test), got {value!r}")
    try:
        return tuple(float(p) for p in parts)  # type: ignore[return-value]
    except ValueError as exc:
        raise click.BadParameter(f"not a number in {value!r}") from exc


def _constrained(classes: list[FeatureClass], wheres: tuple[str, ...]) -> list[FeatureClass]:
    """Apply ``ID:KEY=VALUE`` constraints (KEY in pos, dep, morph, lemma) to the named classes."""
    by_id = {c.id: c for c in classes}
    for spec in wheres:
        cid, _, rest = spec.partition(":")
        key, sep, value = rest.partition("=")
        if cid not in by_id or key not in CONSTRAINT_KEYS or not sep:
            raise GradiendError(
                f"--where {spec!r}: expected ID:KEY=VALUE with ID one of {list(by_id)} and KEY one of "
                f"{list(CONSTRAINT_KEYS)} (e.g. 3SG:morph=Case=Nom)"
            )
        parsed: str | bool = value.lower() in ("1", "true", "yes") if key == "lemma" else value
        by_id[cid] = dataclasses.replace(by_id[cid], **{key: parsed})
    return [by_id[c.id] for c in classes]


@click.command("data")
@click.option("--texts", "texts", default=None,
              help="Text source: offline:wiki-en, a .txt/.jsonl/.csv/.parquet/.json file, or a Hugging Face dataset id.")
@click.option("--table", "table", default=None,
              help="Instead of --texts: a prepared table to import (.parquet/.csv/.jsonl with masked, factual, "
                   "factual_class; a saved dataset directory or a Hugging Face dataset id).")
@click.option("--neutral", "neutral", default=None, help="With --table: neutral text (default: the table's sentences).")
@click.option("--class", "classes", multiple=True, metavar="ID=WORD,WORD",
              help="A feature class (repeat), e.g. --class 3SG=he,she,it. With --table: ID= picks a class.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output data directory.")
@click.option("--seed", default=42, show_default=True, type=int)
@click.option("--splits", "splits", default="0.8,0.1,0.1", show_default=True, help="train,validation,test ratios.")
@click.option("--max-rows-per-class", type=int, default=None, help="Cap on masked occurrences per class.")
@click.option("--equal-class-sizes", is_flag=True, help="Down-sample all classes to the smallest.")
@click.option("--balance-targets", is_flag=True, help="Equal numbers of occurrences per target word.")
@click.option("--neutral-size", type=int, default=1000, show_default=True, help="Neutral sentences (-1: all).")
@click.option("--min-chars", type=int, default=10, show_default=True)
@click.option("--max-chars", type=int, default=600, show_default=True)
@click.option("--window", type=int, default=1, show_default=True, help="Sentences per text window.")
@click.option("--splitter", type=click.Choice(["regex", "spacy"]), default="regex", show_default=True)
@click.option("--min-left-context", type=int, default=0, show_default=True, help="Words required before a target.")
@click.option("--alternatives", type=click.Choice(["one", "all", "paradigm"]), default="one", show_default=True,
              help="Per row and other class: one random word, all of them, or the word at the same position.")
@click.option("--held-out-vocabulary", is_flag=True, help="Each target word in one split only.")
@click.option("--where", "wheres", multiple=True, metavar="ID:KEY=VALUE",
              help="spaCy constraint on a class (KEY: pos, dep, morph, lemma), e.g. 3SG:morph=Case=Nom.")
@click.option("--spacy-model", default="en_core_web_sm", show_default=True, help="spaCy pipeline for --where.")
@click.option("--exclude", "excluded", multiple=True, help="Extra word that keeps a sentence out of neutral text.")
@click.option("--text-column", default="text", show_default=True)
@click.option("--max-documents", type=int, default=None, help="Seeded random sample of documents.")
@click.option("--hf-config", default=None, help="Hugging Face dataset config.")
@click.option("--hf-split", default="train", show_default=True, help="Hugging Face dataset split.")
def data(
    texts: str | None, table: str | None, neutral: str | None, classes: tuple[str, ...], out: str, seed: int, splits: str, max_rows_per_class: int | None,
    equal_class_sizes: bool, balance_targets: bool, neutral_size: int, min_chars: int, max_chars: int,
    window: int, splitter: str, min_left_context: int, alternatives: str, held_out_vocabulary: bool,
    wheres: tuple[str, ...], spacy_model: str, excluded: tuple[str, ...], text_column: str, max_documents: int | None, hf_config: str | None, hf_split: str,
) -> None:
    """Create training pairs and neutral text for a feature and print rows per class and split."""
    if (texts is None) == (table is None):
        raise GradiendError("give exactly one of --texts (raw text to mine) and --table (a prepared table to import)")
    config = DataConfig(
        seed=seed, split_ratios=_ratios(splits), max_rows_per_class=max_rows_per_class,
        equal_class_sizes=equal_class_sizes, balance_targets=balance_targets,
        neutral_size=None if neutral_size < 0 else neutral_size, min_chars=min_chars, max_chars=max_chars,
        window=window, sentence_splitter=splitter, min_left_context=min_left_context, alternatives=alternatives,
        held_out_vocabulary=held_out_vocabulary, excluded_words=excluded, spacy_model=spacy_model,
    )
    t0 = time.perf_counter()
    if table is not None:
        picked = {c.partition("=")[0].strip(): [w for w in c.partition("=")[2].split(",") if w.strip()] for c in classes}
        result = import_table(table, config, classes=picked or None, neutral=neutral, hf_config=hf_config)
    else:
        if len(classes) < 2:
            raise GradiendError("--texts needs at least two --class ID=WORD,WORD options")
        feature = Feature(tuple(_constrained([FeatureClass.parse(c) for c in classes], wheres)))
        result = create_data(texts, feature, config, text_column=text_column, max_documents=max_documents,
                             hf_config=hf_config, hf_split=hf_split)
    path = result.save(out)
    click.echo(result.counts().to_string())
    click.echo(f"wrote {path} ({len(result.pairs)} pairs rows, {len(result.neutral)} neutral rows) "
               f"in {time.perf_counter() - t0:.1f}s; fingerprint {result.meta['fingerprint'][:12]}")
