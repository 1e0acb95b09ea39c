"""Cross-encoding over a shared pool: planted encodings give known GRADIEND × transition / class / GRADIEND cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gradiend.cross_encoding import (
    aligned,
    class_matrix,
    column_groups,
    encode_pool,
    gradiend_matrix,
    orientation,
    pool_rows,
    transition_matrix,
)
from gradiend.errors import GradiendError
from gradiend.tasks import Task


def _pairs(classes, n=2, split="test"):
    rows = []
    for ci, c in enumerate(classes):
        for k in range(n):
            for o in classes:
                if o != c:
                    rows.append({"masked": f"{c}{k} [MASK]", "factual": c.lower(), "factual_class": c,
                                 "alternative": o.lower(), "alternative_class": o, "split": split,
                                 "doc_id": "d", "sentence_id": ci * 10 + k})
    return pd.DataFrame(rows)


@pytest.fixture
def pool():
    return pool_rows({"pron": _pairs(["1SG", "1PL", "3SG"]), "gender": _pairs(["he", "she"])}, max_rows=None)


def test_pool_holds_every_transition_and_identity_rows_of_each_data_set(pool):
    transitions = set(pool["transition"])
    assert {"1SG->1PL", "1PL->1SG", "3SG->1SG", "1SG->1SG", "he->she", "she->she"} <= transitions
    assert len(pool[pool["transition"] == "1SG->1SG"]) == 2  # one identity row per occurrence
    assert column_groups(pool, "factual_class") == {"pron": ["1SG", "1PL", "3SG"], "gender": ["he", "she"]}


def _encode_planted(pool):
    """GRADIEND g1 (1SG vs 1PL, source alternative) encodes by the alternative's class, but was stored flipped;
    g2 (he vs she, source factual) encodes by the factual class."""
    alt_value = {"1SG": -0.9, "1PL": 0.9, "3SG": 0.2, "he": 0.1, "she": 0.0}  # flipped: its positive reads negative
    fac_value = {"he": 0.8, "she": -0.8, "1SG": 0.3, "1PL": 0.0, "3SG": -0.1}
    values = {"g1": pool["alternative_class"].map(alt_value).to_numpy(), "g2": pool["factual_class"].map(fac_value).to_numpy()}
    return encode_pool(pool, {"g1": "alternative", "g2": "factual"}, lambda name, rows: values[name])


def test_matrices_are_anchor_aligned_and_read_the_planted_cells(pool):
    long = _encode_planted(pool)
    tasks = {"g1": Task.pair("1SG", "1PL"), "g2": Task.pair("he", "she")}
    assert orientation(long, tasks) == {"g1": -1.0, "g2": 1.0}
    oriented = aligned(long, tasks)
    by_class = class_matrix(oriented, ["g1", "g2"])
    assert by_class.loc["g1", "1SG"] == pytest.approx(0.9) and by_class.loc["g1", "1PL"] == pytest.approx(-0.9)
    assert by_class.loc["g1", "3SG"] == pytest.approx(-0.2)  # a foreign class, read through the same sign
    assert by_class.loc["g2", "he"] == pytest.approx(0.8) and by_class.loc["g2", "1SG"] == pytest.approx(0.3)
    by_transition = transition_matrix(oriented, ["g1", "g2"])
    assert by_transition.loc["g1", "1PL->1SG"] == pytest.approx(0.9)  # alternative 1SG, flipped to +
    assert by_transition.loc["g2", "she->he"] == pytest.approx(-0.8)  # factual she
    square = gradiend_matrix(oriented, tasks)
    assert square.loc["g1", "g1"] == pytest.approx(0.9) and square.loc["g2", "g2"] == pytest.approx(0.8)
    assert square.loc["g2", "g1"] == pytest.approx(0.3)  # g2 on g1's positive rows (factual 1SG... source by g2)
    assert np.isfinite(square.to_numpy()).all()


def test_orientation_needs_rows_of_both_groups(pool):
    long = _encode_planted(pool)
    with pytest.raises(GradiendError, match="the pool has no rows of both groups of 'g1'"):
        orientation(long, {"g1": Task.pair("1SG", "2SG")})
