"""Data stage: raw text → factual/alternative training pairs and neutral text.

>>> from gradiend.data import Feature, DataConfig, create_data, load_data
>>> feature = Feature.from_mapping({"3SG": ["he", "she", "it"], "3PL": ["they"]})
>>> data = create_data("offline:wiki-en", feature, DataConfig(seed=0))  # doctest: +SKIP
>>> data.save("runs/demo/data")                                          # doctest: +SKIP

Modules: ``corpus`` (sources → documents), ``sentences`` (splitting, windows, filters), ``features`` (classes and
the matcher), ``pairs`` (masking, alternatives, neutral rows), ``splits``, ``balance``, ``store`` (save/load).
"""

from gradiend.data.config import DataConfig
from gradiend.data.corpus import Document, load_documents
from gradiend.data.create import create_data
from gradiend.data.features import Feature, FeatureClass
from gradiend.data.pairs import NEUTRAL_COLUMNS, PAIR_COLUMNS
from gradiend.data.store import FeatureData, load_data

__all__ = [
    "NEUTRAL_COLUMNS",
    "PAIR_COLUMNS",
    "DataConfig",
    "Document",
    "Feature",
    "FeatureClass",
    "FeatureData",
    "create_data",
    "load_data",
    "load_documents",
]
