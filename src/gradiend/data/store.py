"""``FeatureData`` (pairs + neutral tables + metadata) and its directory format.

A data directory holds ``pairs.parquet``, ``neutral.parquet`` and ``data.json`` (creation parameters,
fingerprint, counts per class × split, gradiend version). It is written atomically and validated on load.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from gradiend.artifacts import check_format_version, manifest, raise_if_damaged
from gradiend.constants import DATA_META_FILE, NEUTRAL_FILE, PAIRS_FILE
from gradiend.data.config import SPLITS
from gradiend.data.corpus import Document
from gradiend.data.features import Feature
from gradiend.data.pairs import NEUTRAL_COLUMNS, PAIR_COLUMNS
from gradiend.errors import GradiendError
from gradiend.io import atomic_dir, read_json, write_json

STRING_COLUMNS = {"masked", "factual", "factual_class", "alternative", "alternative_class", "split", "doc_id", "text"}


@dataclass(frozen=True)
class FeatureData:
    """The data stage's result: pairs and neutral tables, the feature and the creation metadata."""

    pairs: pd.DataFrame
    neutral: pd.DataFrame
    meta: dict[str, Any]
    feature: Feature

    def __repr__(self) -> str:
        return (f"FeatureData({self.feature.name!r}: {len(self.pairs)} pairs rows, {len(self.neutral)} neutral rows, "
                f"fingerprint {str(self.meta.get('fingerprint', ''))[:12]})")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the data directory atomically (an existing one is replaced as a whole); returns its path."""
        return save_data(self, path)

    def counts(self) -> pd.DataFrame:
        """Pairs rows per factual class (rows, in feature order) and split (columns), plus neutral rows."""
        return count_table(self.pairs, self.neutral, self.feature.class_ids)


def count_table(pairs: pd.DataFrame, neutral: pd.DataFrame, class_ids: Iterable[str]) -> pd.DataFrame:
    """Rows per class × split (and the neutral row), with a total column."""
    ids = list(class_ids)
    table = pd.crosstab(pairs["factual_class"], pairs["split"]).reindex(index=ids, columns=list(SPLITS), fill_value=0)
    table.loc["neutral"] = neutral["split"].value_counts().reindex(list(SPLITS), fill_value=0)
    table["total"] = table.sum(axis=1)
    return table.astype(int)


def counts_dict(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """``{class: {split: n, ..., "total": n}}`` for data.json."""
    return {str(r): {str(c): int(table.loc[r, c]) for c in table.columns} for r in table.index}


def fingerprint(documents: Iterable[Document], params: Mapping[str, Any]) -> str:
    """SHA-256 of the documents (ids and texts) and the creation parameters (canonical JSON)."""
    h = hashlib.sha256()
    for d in documents:
        for part in (d.doc_id, d.text):
            h.update(part.encode("utf-8"))
            h.update(b"\0")
    h.update(json.dumps(params, sort_keys=True, default=str).encode("utf-8"))
    return h.hexdigest()


def save_data(data: FeatureData, path: str | os.PathLike[str]) -> Path:
    """Write ``pairs.parquet``, ``neutral.parquet`` and ``data.json`` into ``path`` atomically."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        data.pairs.to_parquet(tmp / PAIRS_FILE, index=False)
        data.neutral.to_parquet(tmp / NEUTRAL_FILE, index=False)
        write_json(tmp / DATA_META_FILE, {**data.meta, "files": manifest(tmp, (PAIRS_FILE, NEUTRAL_FILE))})
    return path


def load_data(path: str | os.PathLike[str]) -> FeatureData:
    """Read a data directory, validating its files, columns and split names (errors name what is wrong)."""
    path = Path(path)
    if not path.is_dir():
        raise GradiendError(f"{path} is not a gradiend data directory: it does not exist or is not a directory")
    missing = [f for f in (DATA_META_FILE, PAIRS_FILE, NEUTRAL_FILE) if not (path / f).is_file()]
    if missing:
        raise GradiendError(f"{path} is not a gradiend data directory: missing {', '.join(missing)}")
    meta = read_json(path / DATA_META_FILE)
    if not isinstance(meta, dict) or "feature" not in meta:
        raise GradiendError(f"{path / DATA_META_FILE} has no 'feature' entry; re-create the data directory")
    check_format_version(meta.get("format_version"), path / DATA_META_FILE)
    raise_if_damaged(path, meta.pop("files", None) or {}, "re-create the data directory (gradiend data, or "
                     "gradiend run CONFIG redoes the data stage of its run)")  # the records describe the files only
    pairs = _read_table(path / PAIRS_FILE, PAIR_COLUMNS)
    neutral = _read_table(path / NEUTRAL_FILE, NEUTRAL_COLUMNS)
    return FeatureData(pairs, neutral, meta, Feature.from_dict(meta["feature"]))


def _read_table(file: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        df = pd.read_parquet(file)
    except Exception as exc:  # pyarrow's errors for truncated or non-parquet files
        raise GradiendError(f"{file} cannot be read as parquet ({type(exc).__name__}): it is damaged; re-create "
                            "the data directory (gradiend data, or gradiend run CONFIG redoes the data stage)") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise GradiendError(f"{file} lacks column(s) {missing}; expected {list(columns)}")
    if not pd.api.types.is_integer_dtype(df["sentence_id"]):
        raise GradiendError(f"{file}: column 'sentence_id' must be integer, found {df['sentence_id'].dtype}")
    bad = sorted(set(df["split"].astype(str)) - set(SPLITS))
    if bad:
        raise GradiendError(f"{file}: unknown split name(s) {bad}; expected {list(SPLITS)}")
    for c in columns:
        if c in STRING_COLUMNS:
            df[c] = df[c].astype(object)
    return df[list(columns)]
