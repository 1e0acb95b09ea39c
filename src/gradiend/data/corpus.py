"""Text sources → documents, each with a document id (splits are grouped by it).

Accepted sources: a list of strings (doc ids ``"0"``, ``"1"``, ...), a pandas DataFrame, a file (``.txt``: one
document per line; ``.jsonl``/``.csv``/``.parquet``: a text column; ``.json``: ``{title: {"extract": text}}`` as
the offline Wikipedia asset), ``offline:<name>`` of a text asset, or a Hugging Face dataset id or local dataset
directory that ``datasets.load_dataset`` reads (extra ``data``; with ``max_documents`` it is streamed and shuffled,
shards and a buffer of rows, before capping).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gradiend import assets
from gradiend._optional import require
from gradiend.errors import GradiendError
from gradiend.io import read_json

TextSource = str | os.PathLike[str] | Sequence[str] | pd.DataFrame
FILE_SUFFIXES = (".txt", ".jsonl", ".csv", ".parquet", ".json")
# a Hugging Face split larger than this many rows is streamed (shuffle buffer) instead of materialised
HF_SHUFFLE_BUFFER = 10_000


@dataclass(frozen=True)
class Document:
    """One document of the corpus."""

    doc_id: str
    text: str


def load_documents(
    source: TextSource,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    max_documents: int | None = None,
    seed: int = 42,
    hf_config: str | None = None,
    hf_split: str = "train",
) -> list[Document]:
    """Read ``source`` into documents; with ``max_documents`` a seeded random sample (in source order).

    Empty texts are dropped. Raises :class:`GradiendError` for an empty corpus, a missing file or column.
    """
    if max_documents is not None and max_documents < 1:
        raise GradiendError(f"max_documents must be a positive integer, got {max_documents}")
    if not isinstance(source, (pd.DataFrame, str, os.PathLike)) and isinstance(source, Iterable):
        source = list(source)  # a generator is read once
    if isinstance(source, pd.DataFrame):
        docs = _from_frame(source, text_column, id_column, "the DataFrame")
    elif isinstance(source, (str, os.PathLike)):
        docs = _from_path_or_id(source, text_column, id_column, max_documents, seed, hf_config, hf_split)
    elif isinstance(source, list):
        docs = _from_strings(source)
    else:
        raise GradiendError(f"unsupported text source of type {type(source).__name__}")
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        raise GradiendError(f"the corpus is empty: {describe_source(source)} has no non-empty text")
    return sample_documents(docs, max_documents, seed)


def sample_documents(docs: list[Document], max_documents: int | None, seed: int) -> list[Document]:
    """A seeded random subset of ``max_documents`` documents, kept in their original order."""
    if max_documents is None or len(docs) <= max_documents:
        return docs
    keep = np.sort(np.random.default_rng(seed).permutation(len(docs))[:max_documents])
    return [docs[i] for i in keep]


def describe_source(source: TextSource) -> str:
    """Short human-readable description of a source (for messages and data.json)."""
    if isinstance(source, pd.DataFrame):
        return f"DataFrame[{len(source)} rows]"
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"list[{len(list(source))} texts]"


def _from_strings(texts: list[Any]) -> list[Document]:
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise GradiendError(f"text list item {bad[0]} is a {type(texts[bad[0]]).__name__}, not a string")
    return [Document(str(i), t) for i, t in enumerate(texts)]


def _from_frame(df: pd.DataFrame, text_column: str, id_column: str | None, where: str) -> list[Document]:
    for col in (text_column, id_column):
        if col is not None and col not in df.columns:
            raise GradiendError(f"{where} has no column {col!r}; columns: {[str(c) for c in df.columns]}")
    texts = df[text_column]
    ids = df[id_column].astype(str) if id_column else pd.Series(range(len(df))).astype(str)
    return [Document(i, t) for i, t in zip(ids.tolist(), texts.tolist(), strict=True) if isinstance(t, str)]


def _from_path_or_id(
    source: str | os.PathLike[str],
    text_column: str,
    id_column: str | None,
    max_documents: int | None,
    seed: int,
    hf_config: str | None,
    hf_split: str,
) -> list[Document]:
    if assets.is_offline_name(source):
        return _from_file(assets.resolve(str(source)), text_column, id_column)
    path = Path(source)
    if path.is_file():
        return _from_file(path, text_column, id_column)
    if path.suffix.lower() in FILE_SUFFIXES:
        raise GradiendError(f"text file {str(source)!r} does not exist")
    if not path.is_dir() and any(c.isspace() for c in str(source)):
        raise GradiendError(
            f"{str(source)[:60]!r} is not a file, an offline asset or a dataset id; pass literal texts as a list"
        )
    return _from_hf(str(source), text_column, id_column, max_documents, seed, hf_config, hf_split)


_FORMAT_NAMES = {".txt": "text", ".json": "JSON", ".jsonl": "JSON lines", ".csv": "CSV", ".parquet": "parquet"}


def _from_file(path: Path, text_column: str, id_column: str | None) -> list[Document]:
    """The documents of a corpus file; bytes that are not UTF-8 or a malformed line are one clear error."""
    try:
        return _read_file(path, text_column, id_column)
    except UnicodeDecodeError as exc:
        raise GradiendError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); convert it to UTF-8, "
                            "e.g. iconv -f latin1 -t utf-8") from None
    except GradiendError:
        raise
    except (ValueError, OSError, ArithmeticError) as exc:  # pandas/pyarrow parser errors are ValueErrors
        what = _FORMAT_NAMES.get(path.suffix.lower(), path.suffix)
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise GradiendError(f"{path} cannot be read as {what} ({detail}); fix the file or pass another") from None


def _read_file(path: Path, text_column: str, id_column: str | None) -> list[Document]:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        lines = path.read_text(encoding="utf-8").splitlines()
        return [Document(str(i), line) for i, line in enumerate(lines)]
    if suffix == ".json":
        return _from_wiki_json(path)
    readers = {".jsonl": lambda p: pd.read_json(p, lines=True), ".csv": pd.read_csv, ".parquet": pd.read_parquet}
    if suffix not in readers:
        raise GradiendError(f"unsupported text file type {suffix!r} ({path}); use one of {', '.join(FILE_SUFFIXES)}")
    return _from_frame(readers[suffix](path), text_column, id_column, str(path))


def _from_wiki_json(path: Path) -> list[Document]:
    """``{title: {"extract": text, ...}}``: one document per entry, doc id = title."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise GradiendError(f"{path}: expected a JSON object of {{title: {{'extract': text}}}}")
    docs = []
    for title, entry in data.items():
        text = entry.get("extract") if isinstance(entry, dict) else entry
        if isinstance(text, str):
            docs.append(Document(str(title), text))
    return docs


def _from_hf(
    name: str,
    text_column: str,
    id_column: str | None,
    max_documents: int | None,
    seed: int,
    hf_config: str | None,
    hf_split: str,
) -> list[Document]:
    """A Hugging Face dataset split; with ``max_documents`` it is streamed and shuffled *before* capping."""
    datasets = require("datasets", "data", f"the Hugging Face dataset {name!r}")
    from datasets.exceptions import DatasetNotFoundError

    try:
        return _read_hf(datasets, name, text_column, id_column, max_documents, seed, hf_config, hf_split)
    except (ConnectionError, FileNotFoundError, DatasetNotFoundError) as exc:
        offline = " (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set: offline, only cached datasets load)" if (
            os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE")) else ""
        raise GradiendError(f"cannot load the Hugging Face dataset {name!r}{offline}: {str(exc)[:200]}; pass a "
                            "local file (.txt/.jsonl/.csv/.parquet), an offline:NAME asset, or go online") from None


def _read_hf(datasets: Any, name: str, text_column: str, id_column: str | None, max_documents: int | None,
             seed: int, hf_config: str | None, hf_split: str) -> list[Document]:
    if max_documents is None:
        ds = datasets.load_dataset(name, hf_config, split=hf_split)
        return _from_frame(ds.to_pandas(), text_column, id_column, f"dataset {name!r}")
    stream = datasets.load_dataset(name, hf_config, split=hf_split, streaming=True)
    stream = stream.shuffle(seed=seed, buffer_size=max(HF_SHUFFLE_BUFFER, 2 * max_documents))
    rows = []
    for row in stream:
        if text_column not in row:
            raise GradiendError(f"dataset {name!r} has no column {text_column!r}; columns: {sorted(row)}")
        if isinstance(row[text_column], str) and row[text_column].strip():
            rows.append(row)
        if len(rows) >= max_documents:
            break
    return _from_frame(pd.DataFrame(rows, columns=list(rows[0]) if rows else [text_column]), text_column,
                       id_column, f"dataset {name!r}")
