"""Fuzzed inputs: the corpus reader, the class parser, the config loader and the table importer either work or raise
the library's own error type (``GradiendError``), never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradiend.config import config_from_dict, loads_config
from gradiend.data import Feature, FeatureClass
from gradiend.data.corpus import load_documents
from gradiend.data.table import import_table
from gradiend.errors import GradiendError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SUFFIXES = (".txt", ".csv", ".jsonl", ".json", ".parquet")

# bytes that look a little like each format, plus arbitrary ones
fragments = st.sampled_from([b"text\n", b"{\"text\": \"he said\"}\n", b"\"", b",", b"\n", b"\xff\xfe", b"\x00",
                             b"{", b"}", b"[", b"PAR1", b"he ", b"they ", b"\r\n", b"\"text\",\"id\"\n"])
corpus_bytes = st.one_of(st.binary(max_size=200), st.lists(fragments, max_size=30).map(b"".join))


def _accepts_or_gradiend_error(call, *args, **kwargs) -> None:
    """The invariant: ``call`` returns, or raises GradiendError with a message (any other exception fails)."""
    try:
        call(*args, **kwargs)
    except GradiendError as exc:
        assert str(exc).strip(), "a GradiendError must say what is wrong and the way out"


@FUZZ
@given(content=corpus_bytes, suffix=st.sampled_from(SUFFIXES))
def test_corpus_reader_on_random_bytes(content, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"corpus{suffix}"
        path.write_bytes(content)
        _accepts_or_gradiend_error(load_documents, str(path))


@FUZZ
@given(specs=st.lists(st.text(max_size=20), min_size=1, max_size=4))
def test_class_parser_on_random_text(specs):
    def parse() -> None:
        Feature(tuple(FeatureClass.parse(s) for s in specs))

    _accepts_or_gradiend_error(parse)


toml_values = st.recursive(
    st.one_of(st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=8), st.booleans(),
              st.sampled_from(["none", "offline:wiki-en", "float32", "tanh", "3SG"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
SECTION_KEYS = {"model": ["spec", "dtype", "params", "layers"], "data": ["texts", "classes", "table", "options"],
                "train": ["lr", "steps", "seeds", "checkpoint", "post_prune_topk", "dtype"],
                "gradients": ["rows_per_gradient", "validation_storage"], "eval": ["alphas", "split", "bootstrap"],
                "task": ["positive", "negative", "identity"], "rewrite": ["policy", "alpha", "strengthen"]}
sections = st.fixed_dictionaries({}, optional={
    name: st.dictionaries(st.sampled_from(keys), toml_values, max_size=3) for name, keys in SECTION_KEYS.items()
})


@FUZZ
@given(raw=st.one_of(sections, st.dictionaries(st.text(max_size=8), toml_values, max_size=4)))
def test_config_loader_on_random_tables(raw):
    _accepts_or_gradiend_error(config_from_dict, raw)


@FUZZ
@given(text=st.text(max_size=120))
def test_config_loader_on_random_text(text):
    _accepts_or_gradiend_error(loads_config, text)


cells = st.one_of(st.none(), st.text(max_size=12), st.integers(-3, 3), st.sampled_from(["[MASK]", "he", "3SG"]))
COLUMNS = ["masked", "factual", "factual_class", "alternative", "alternative_class", "split", "text", "id"]


@FUZZ
@given(columns=st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=6, unique=True),
       rows=st.integers(0, 6), data=st.data())
def test_table_importer_on_random_frames(columns, rows, data):
    frame = pd.DataFrame({c: [data.draw(cells) for _ in range(rows)] for c in columns})
    _accepts_or_gradiend_error(import_table, frame)


def test_table_importer_on_an_empty_table():  # was an AttributeError (found by the fuzzer above)
    empty = pd.DataFrame({"masked": [], "factual": [], "factual_class": []})
    with pytest.raises(GradiendError, match="has no rows"):
        import_table(empty)


@FUZZ
@given(content=corpus_bytes)
def test_table_importer_on_random_csv(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "table.csv"
        path.write_bytes(content)
        _accepts_or_gradiend_error(import_table, str(path))
