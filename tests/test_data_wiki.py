"""The acceptance test of the data stage on real text: the offline English Wikipedia intros, 3SG vs 3PL."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from gradiend.constants import DATA_META_FILE, NEUTRAL_FILE, PAIRS_FILE
from gradiend.data import DataConfig, Feature, create_data
from gradiend.data.sentences import normalized

PRONOUNS = Feature.from_mapping({"3SG": ["he", "she", "it"], "3PL": ["they"]})


@pytest.mark.slow
def test_wikipedia_pronouns_enough_rows_fast_deterministic_and_leak_free(tmp_path):
    t0 = time.perf_counter()
    data = create_data("offline:wiki-en", PRONOUNS, DataConfig(seed=42))
    data.save(tmp_path / "a")
    seconds = time.perf_counter() - t0
    assert seconds < 30, f"data creation took {seconds:.1f}s"

    counts = data.meta["counts"]
    assert data.meta["corpus"]["documents"] == 10_033
    for cls in ("3SG", "3PL"):
        assert counts[cls]["total"] >= 1000
        assert counts[cls]["validation"] > 0 and counts[cls]["test"] > 0
        # the document-grouped split keeps each class close to 80/10/10
        assert abs(counts[cls]["train"] / counts[cls]["total"] - 0.8) < 0.03

    rows = pd.concat([
        pd.DataFrame({"text": data.pairs["masked"], "split": data.pairs["split"], "sid": data.pairs["sentence_id"]}),
        pd.DataFrame({"text": data.neutral["text"], "split": data.neutral["split"], "sid": data.neutral["sentence_id"]}),
    ])
    assert (rows.groupby("sid")["split"].nunique() == 1).all()
    restored = [m.replace("[MASK]", f, 1) for m, f in zip(data.pairs["masked"], data.pairs["factual"], strict=True)]
    by_split = pd.DataFrame({"key": [normalized(t) for t in restored], "split": data.pairs["split"]})
    assert (by_split.groupby("key")["split"].nunique() == 1).all()  # not even a near-duplicate crosses splits

    create_data("offline:wiki-en", PRONOUNS, DataConfig(seed=42)).save(tmp_path / "b")
    for name in (PAIRS_FILE, NEUTRAL_FILE, DATA_META_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
