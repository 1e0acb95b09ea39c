"""Tasks over multi-class data sets: groups, merge maps, identity rows, and their planted answers."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradiend.errors import GradiendError
from gradiend.gradients.types import GradientBatch
from gradiend.model import GradiendMeta
from gradiend.tasks import Task, TaskConfig, all_rows, identity_rows
from gradiend.train import TrainConfig, ValidationSet, fit

CLASSES = ["1SG", "1PL", "3SG", "3PL", "2SG"]


def pairs_table(classes=CLASSES, n: int = 3, split: str = "train") -> pd.DataFrame:
    """n occurrences per class, one row per other class (as alternatives = "one" makes them)."""
    rows = []
    for ci, c in enumerate(classes):
        for k in range(n):
            for other in classes:
                if other != c:
                    rows.append({"masked": f"s{ci}-{k} [MASK] x", "factual": c.lower(), "factual_class": c,
                                 "alternative": other.lower(), "alternative_class": other, "split": split,
                                 "doc_id": f"d{ci}{k}", "sentence_id": ci * 100 + k})
    return pd.DataFrame(rows)


def test_pair_task_labels_follow_the_source_token():
    task = Task.pair("3SG", "3PL")
    assert task.transitions == (("3SG", "3PL"), ("3PL", "3SG")) and task.group_ids == ("3SG", "3PL")
    assert task.source_label("alternative", "3SG", "3PL") == -1.0
    assert task.source_label("factual", "3SG", "3PL") == 1.0 and task.source_label("diff", "3PL", "3SG") == -1.0
    assert task.label_of("1SG") == 0.0 and task.source_label("factual", "1SG", "1SG") == 0.0
    assert Task.from_dict(task.to_dict()) == task


def test_merge_map_keeps_only_within_cluster_transitions():
    task = Task.merged({"SG": ["1SG", "3SG"], "PL": ["1PL", "3PL"]}, clusters=[["1SG", "1PL"], ["3SG", "3PL"]])
    assert set(task.transitions) == {("1SG", "1PL"), ("1PL", "1SG"), ("3SG", "3PL"), ("3PL", "3SG")}
    assert task.label_of("1SG") == task.label_of("3SG") == 1.0 and task.label_of("3PL") == -1.0
    rows = task.rows(pairs_table(), "train")
    assert set(rows) == set(task.transitions)
    assert all((g["factual_class"] == f).all() and (g["alternative_class"] == a).all() for (f, a), g in rows.items())
    every = Task.merged({"SG": ["1SG", "3SG"], "PL": ["1PL", "3PL"]})
    assert len(every.transitions) == 8  # without clusters: every cross pair, both directions


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_merge_map_never_produces_a_cross_cluster_transition(data):
    classes = data.draw(st.lists(st.sampled_from("ABCDEFGH"), min_size=2, max_size=8, unique=True))
    side = data.draw(st.lists(st.booleans(), min_size=len(classes), max_size=len(classes)))
    if all(side) or not any(side):
        side[0] = not side[0]
    groups = {"P": [c for c, s in zip(classes, side, strict=True) if s],
              "N": [c for c, s in zip(classes, side, strict=True) if not s]}
    cluster_of = {c: data.draw(st.integers(0, 2)) for c in classes}
    clusters = [[c for c in classes if cluster_of[c] == k] for k in range(3)]
    clusters = [c for c in clusters if c]
    try:
        task = Task.merged(groups, clusters=clusters)
    except GradiendError as exc:  # only when no cluster spans both groups
        assert "no transitions" in str(exc)
        assert not any(cluster_of[a] == cluster_of[b] for a in groups["P"] for b in groups["N"])
        return
    for f, a in task.transitions:
        assert cluster_of[f] == cluster_of[a] and task.group_of(f) != task.group_of(a)
    expected = {(a, b) for a in groups["P"] for b in groups["N"] if cluster_of[a] == cluster_of[b]}
    assert set(task.transitions) == expected | {(b, a) for a, b in expected}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Task.merged({"SG": ["1SG", "3SG"], "PL": ["3SG", "3PL"]}), r"class '3SG' is in two groups"),
        (lambda: Task.merged({"A": ["1SG"], "B": ["1PL"], "C": ["2SG"]}), "exactly two groups"),
        (lambda: Task.merged({"SG": ["1SG", "3SG"], "PL": ["1PL", "3PL"]}, clusters=[["1SG", "1PL"]]),
         r"class\(es\) \['3SG', '3PL'\] of the merge map are in no transition group"),
        (lambda: Task.merged({"SG": ["1SG"], "PL": ["1PL"]}, clusters=[["1SG"], ["1PL"]]), "has no transitions"),
        (lambda: Task.pair("3SG", "3PL", identity=["3SG"]), r"identity class\(es\) \['3SG'\] are already in a group"),
        (lambda: TaskConfig().resolve(CLASSES), r"the data set has 5 classes .*: say which pair to train"),
        (lambda: TaskConfig(positive="3SG").resolve(CLASSES), "needs both positive and negative"),
        (lambda: TaskConfig(positive="3SG", negative="4PL").resolve(CLASSES),
         r"names class\(es\) \['4PL'\] that the data set does not have; its classes: 1SG, 1PL, 3SG, 3PL, 2SG"),
        (lambda: TaskConfig(identity="everyone", positive="1SG", negative="1PL").resolve(CLASSES),
         "identity must be a list of classes or 'others'"),
    ],
)
def test_bad_tasks_get_one_clear_error(make, message):
    with pytest.raises(GradiendError, match=message):
        make()


def test_a_transition_group_with_no_rows_in_a_split_is_named():
    pairs = pairs_table(["3SG", "3PL"], split="train")
    with pytest.raises(GradiendError, match=r"has no 'validation' rows for 3SG->3PL, 3PL->3SG"):
        Task.pair("3SG", "3PL").rows(pairs, "validation")


def test_identity_rows_are_distinct_occurrences_with_alternative_equal_factual():
    pairs = pairs_table()
    ident = identity_rows(pairs, "2SG")
    assert len(ident) == 3  # 3 occurrences, each once (not once per alternative)
    assert (ident["alternative"] == ident["factual"]).all() and (ident["alternative_class"] == "2SG").all()
    task = TaskConfig(positive="3SG", negative="3PL", identity="others").resolve(CLASSES)
    assert task.identity == ("1SG", "1PL", "2SG")
    groups = task.rows(pairs, "train")
    assert [k for k in groups if k[0] == k[1]] == [("1SG", "1SG"), ("1PL", "1PL"), ("2SG", "2SG")]
    everything = all_rows(pairs, Task.pair("3SG", "3PL"), "train")
    assert len(everything) == len(pairs) + 3 * 3  # identity rows of the three other classes


def _class_gradient(cls: str, v: torch.Tensor, w: torch.Tensor, noise: float, gen: torch.Generator) -> torch.Tensor:
    """The planted gradient of predicting a class's token: A = +v, B = −v, C = 0.7·v + w (shares A's direction)."""
    base = {"A": v, "B": -v, "C": 0.7 * v + w}[cls]
    return base + noise * v.abs().mean() * torch.randn(v.shape, generator=gen)


def _planted_three_classes(identity: bool, n: int = 256, steps: int = 240):
    gen = torch.Generator().manual_seed(0)
    v = (torch.randint(0, 2, (n,), generator=gen) * 2 - 1).float() * 3e-2
    w = (torch.randint(0, 2, (n,), generator=gen) * 2 - 1).float() * 3e-2
    task = Task.pair("A", "B", identity=["C"] if identity else [])
    transitions = list(task.transitions) + [(c, c) for c in task.identity]
    batches = []
    for step in range(steps):
        f, a = transitions[step % len(transitions)]
        fact, alt = _class_gradient(f, v, w, 0.1, gen), _class_gradient(a, v, w, 0.1, gen)
        alt = fact if f == a else alt
        batches.append(GradientBatch(fact, alt, task.source_label("alternative", f, a), f"{f}->{a}", 8))
    val = [("A", 1.0), ("B", -1.0)] * 20 + ([("C", 0.0)] * 20 if identity else [])
    x = torch.stack([_class_gradient(c, v, w, 1.0, gen) for c, _ in val])
    validation = ValidationSet.from_tensors(x, torch.tensor([y for _, y in val]))
    config = TrainConfig(lr=3e-2, eval_every=20, steps=steps)
    result = fit(batches, input_dim=n, config=config, validation=validation,
                 template_meta=GradiendMeta(classes=task.group_ids, task=task.to_dict()), progress=False)
    test_c = torch.stack([_class_gradient("C", v, w, 0.5, gen) for _ in range(50)])
    test_a = torch.stack([_class_gradient("A", v, w, 0.5, gen) for _ in range(50)])
    enc = result.gradiend.encode
    return float(enc(test_c)[:, 0].mean()), float(enc(test_a)[:, 0].mean())


def test_identity_rows_teach_the_encoder_that_a_third_class_is_neither():
    """Planted: the third class's gradient shares the positive class's direction. Trained on the pair alone its
    rows encode almost like the positive class; with identity rows (label 0, target 0) near 0, while the positive
    class keeps its encoding."""
    without_c, without_a = _planted_three_classes(identity=False)
    with_c, with_a = _planted_three_classes(identity=True)
    assert without_c > 0.7 * without_a > 0.3
    assert abs(with_c) < 0.2 * with_a and with_a > 0.45


def test_task_pairs_are_drawn_from_one_data_set_without_recreating_it():
    pairs = pairs_table()
    tasks = [Task.pair(a, b) for a, b in itertools.combinations(CLASSES, 2)]
    for task in tasks:
        rows = task.rows(pairs, "train")
        assert sum(len(g) for g in rows.values()) == 2 * 3
    assert len(pairs) == 5 * 3 * 4  # the table itself is untouched
