"""Gradient stage: shared-forward gradients, per-row gradients, training batches, pre-pruning, errors."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from gradiend.errors import GradiendError
from gradiend.gradients import GradientComputer, iter_training_batches, pre_prune, validation_gradients
from gradiend.gradients.batches import batch_schedule, needed_kinds
from gradiend.gradients.prune import importance, stratified_sample, top_k_indices
from gradiend.lm.objectives import objective_for
from gradiend.lm.params import ParamSelection, select_parameters
from gradiend.stages import GradientConfig
from gradiend.tasks import Task

SENTENCES = [
    "Yesterday [MASK] added pepper to the soup.",
    "After the meeting [MASK] went home.",
    "The report says [MASK] arrived late.",
    "In the morning [MASK] walked to the station.",
    "Then [MASK] laughed.",
    "Later that year [MASK] moved to a small town near the coast.",
]


def make_pairs(n: int = 6, split: str = "train") -> pd.DataFrame:
    """n rows per transition: 3SG→3PL (he/she → they) and 3PL→3SG (they → he/it)."""
    rows = []
    for i in range(n):
        masked = SENTENCES[i % len(SENTENCES)]
        rows.append((masked, ["he", "she"][i % 2], "3SG", "they", "3PL", split, f"d{i}", i))
        rows.append((masked, "they", "3PL", ["he", "it"][i % 2], "3SG", split, f"e{i}", 100 + i))
    cols = ["masked", "factual", "factual_class", "alternative", "alternative_class", "split", "doc_id", "sentence_id"]
    return pd.DataFrame(rows, columns=cols)


def naive_gradient(lm, selection: ParamSelection, rows: pd.DataFrame, word_col: str) -> torch.Tensor:
    """Gradient of the mean of per-row HF losses (``labels=``), one unpadded forward per row and word."""
    obj = objective_for(lm)
    losses = []
    for masked, word in zip(rows["masked"], rows[word_col], strict=True):
        t = obj.target(masked, word)
        if lm.family.value == "masked":
            ids, labels = torch.tensor([t.ids]), torch.full((1, len(t.ids)), -100)
            labels[0, list(t.positions)] = torch.tensor(t.pieces)
        else:
            ids = torch.tensor([t.ids + t.pieces[-1:]])
            labels = torch.full_like(ids, -100)
            labels[0, -len(t.pieces) :] = torch.tensor(t.pieces)
        losses.append(lm.model(input_ids=ids, labels=labels).loss)
    grads = torch.autograd.grad(torch.stack(losses).mean(), selection.parameters(lm.model))
    return selection.flatten(grads)


def assert_vec_close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))


@pytest.fixture
def fresh(make_tiny):
    """A tiny model of each kind that the test may modify."""
    return make_tiny


def test_pair_gradients_equal_two_separate_hf_passes(tiny_any):
    selection = select_parameters(tiny_any.model, layers=[1])
    computer = GradientComputer(tiny_any, selection)
    rows = make_pairs(3)
    g_f, g_a = computer.pair_gradients(rows)
    assert g_f.dtype == torch.float32 and g_f.shape == (selection.input_dim,)
    assert_vec_close(g_f, naive_gradient(tiny_any, selection, rows, "factual"))
    assert_vec_close(g_a, naive_gradient(tiny_any, selection, rows, "alternative"))


@pytest.mark.parametrize("side", ["left", "right"])
def test_causal_gradient_is_hand_computed_next_token_ce(tiny_llama, side):
    """Rows of different length, left or right padded: gradient of CE(logits after the last context token)."""
    lm = tiny_llama
    selection = select_parameters(lm.model)
    computer = GradientComputer(lm, selection, objective_for(lm, padding_side=side))
    rows = make_pairs(3).iloc[:4]
    g_f, _ = computer.pair_gradients(rows, want=("factual",))
    tok, hand = lm.tokenizer, []
    for masked, word in zip(rows["masked"], rows["factual"], strict=True):
        context = masked.split("[MASK]")[0].rstrip()
        ids = torch.tensor([tok(context, add_special_tokens=False)["input_ids"]])
        (target,) = tok(" " + word, add_special_tokens=False)["input_ids"]
        hand.append(-torch.log_softmax(lm.model(input_ids=ids).logits[0, -1], -1)[target])
    expected = selection.flatten(torch.autograd.grad(torch.stack(hand).mean(), selection.parameters(lm.model)))
    assert_vec_close(g_f, expected)


def test_only_selected_parameters_require_grad_and_model_stays_eval(tiny_bert):
    selection = select_parameters(tiny_bert.model, patterns=["*.attention.*"])
    GradientComputer(tiny_bert, selection)
    flags = {n: p.requires_grad for n, p in tiny_bert.model.named_parameters()}
    assert {n for n, f in flags.items() if f} == set(selection.names)
    assert not tiny_bert.model.training


def test_training_mode_is_refused(tiny_bert):
    computer = GradientComputer(tiny_bert, select_parameters(tiny_bert.model, layers=[0]))
    tiny_bert.model.train()
    try:
        with pytest.raises(GradiendError, match=r"training mode \(dropout on\)"):
            computer.pair_gradients(make_pairs(1))
    finally:
        tiny_bert.model.eval()


def test_kept_positions_are_a_subset_of_the_full_gradient(tiny_gpt2):
    """Pre-pruned selections flatten only their kept positions, in the same order."""
    full = select_parameters(tiny_gpt2.model, layers=[0])
    keep = torch.tensor([0, 5, 17, full.input_dim - 1, 1000])
    restricted = full.restrict(keep)
    rows = make_pairs(2)
    g_full, _ = GradientComputer(tiny_gpt2, full).pair_gradients(rows, want=("factual",))
    g_part, none = GradientComputer(tiny_gpt2, restricted).pair_gradients(rows, want=("factual",))
    assert none is None
    assert torch.equal(restricted.global_indices(), full.global_indices()[keep.sort().values])
    assert_vec_close(g_part, g_full[keep.sort().values])


@pytest.mark.parametrize("chunk", [1, 2])
def test_row_gradients_match_single_row_batches(tiny_any, chunk):
    """Per-row gradients from a shared forward (incl. a multi-piece word needing its own input) = batches of one."""
    computer = GradientComputer(tiny_any, select_parameters(tiny_any.model, layers=[1]))
    extra = {"masked": "Then [MASK] laughed.", "factual": "they", "factual_class": "3PL", "alternative": "unbelievably"}
    rows = pd.concat([make_pairs(1), pd.DataFrame([extra])], ignore_index=True)
    for kind in ("factual", "alternative", "diff"):
        got = list(computer.row_gradients(rows, kind, chunk=chunk))
        assert len(got) == len(rows)
        for i in range(len(rows)):
            f, a = computer.pair_gradients(rows.iloc[[i]])
            expected = {"factual": f, "alternative": a, "diff": f - a}[kind]
            assert_vec_close(got[i], expected)


def test_mean_gradient_of_diff_is_difference_of_means(tiny_bert):
    computer = GradientComputer(tiny_bert, select_parameters(tiny_bert.model, layers=[0]))
    rows = make_pairs(2)
    f, a = computer.pair_gradients(rows)
    assert_vec_close(computer.mean_gradient(rows, "diff"), f - a)
    assert_vec_close(computer.mean_gradient(rows, "alternative"), a)


def test_nan_gradient_names_the_row(fresh):
    """A NaN position embedding reached only by the one long row (left padding keeps pads at position 0)."""
    lm = fresh("gpt2")
    with torch.no_grad():
        lm.model.transformer.wpe.weight[8] = float("nan")
    computer = GradientComputer(lm, select_parameters(lm.model, layers=[1]), objective_for(lm, padding_side="left"))
    rows = make_pairs(2)
    rows.loc[2, "masked"] = "The zebra walked slowly across the wide open plain while [MASK] watched."
    with pytest.raises(GradiendError, match=r"non-finite factual loss for row 2 \('The zebra walked"):
        computer.pair_gradients(rows)
    rows.loc[2, "masked"] = "The zebra walked [MASK] home."
    assert torch.isfinite(computer.pair_gradients(rows)[0]).all()


def test_no_gradient_signal_is_an_error(tiny_bert):
    """Token-type embedding row 1 is never used (all token_type_ids are 0): its gradient is exactly zero."""
    name = "bert.embeddings.token_type_embeddings.weight"
    selection = select_parameters(tiny_bert.model, patterns=[name])
    width = tiny_bert.model.config.hidden_size
    unused = selection.restrict(torch.arange(width, 2 * width))
    with pytest.raises(GradiendError, match=r"factual gradient over 4 row\(s\).*is all zero.*carry no signal"):
        GradientComputer(tiny_bert, unused).pair_gradients(make_pairs(2))


def test_selection_errors(tiny_bert):
    with pytest.raises(GradiendError, match="selection is empty"):
        GradientComputer(tiny_bert, ParamSelection(()))
    with pytest.raises(GradiendError, match=r"pattern '\*\.nonexistent\.\*' matches no parameter"):
        select_parameters(tiny_bert.model, patterns=["*.nonexistent.*"])
    with pytest.raises(GradiendError, match="gradient kind must be one of"):
        next(GradientComputer(tiny_bert, select_parameters(tiny_bert.model)).row_gradients(make_pairs(1), "both"))


# --- training batches ---------------------------------------------------------------------------


def test_batch_schedule_is_deterministic_and_covers_every_row_once_per_epoch():
    a = list(batch_schedule([7, 5], batch_rows=3, seed=1, epochs=2))
    assert a == list(batch_schedule([7, 5], batch_rows=3, seed=1, epochs=2))
    assert a != list(batch_schedule([7, 5], batch_rows=3, seed=2, epochs=2))
    first_epoch = a[: len(a) // 2]
    for g, n in ((0, 7), (1, 5)):
        assert sorted(i for gg, rows in first_epoch if gg == g for i in rows) == list(range(n))
    groups = [g for g, _ in first_epoch]
    assert groups[:4] in ([0, 1, 0, 1], [1, 0, 1, 0])  # alternating while both have batches
    assert len(list(batch_schedule([7, 5], 3, steps=10))) == 10  # steps alone: as many epochs as needed
    assert len(list(batch_schedule([7, 5], 3, steps=10, epochs=1))) == 5


def test_needed_kinds():
    assert needed_kinds("alternative", "diff") == ("factual", "alternative")
    assert needed_kinds("alternative", "alternative") == ("alternative",)
    assert needed_kinds("factual", "alternative") == ("factual", "alternative")
    with pytest.raises(GradiendError, match="gradient kind"):
        needed_kinds("alt", "diff")


def test_training_batches_hold_one_transition_with_source_labels(tiny_bert):
    computer = GradientComputer(tiny_bert, select_parameters(tiny_bert.model, layers=[1]))
    pairs = pd.concat([make_pairs(5), make_pairs(2, split="validation")], ignore_index=True)
    batches = list(iter_training_batches(computer, pairs, task=Task.pair("3SG", "3PL"), batch_rows=2, seed=3, steps=4))
    assert len(batches) == 4
    assert {b.transition for b in batches} == {"3SG->3PL", "3PL->3SG"}
    for b in batches:
        # source=alternative: the alternative's class decides (3SG→3PL rows have a 3PL alternative → −1)
        assert b.label == (-1.0 if b.transition == "3SG->3PL" else 1.0)
        assert b.factual is not None and b.alternative is not None and b.n_rows == 2
    only_alt = next(
        iter_training_batches(computer, pairs, task=Task.pair("3SG", "3PL"), source="alternative", target="alternative")
    )
    assert only_alt.factual is None and only_alt.alternative is not None
    by_factual = next(iter_training_batches(computer, pairs, task=Task.pair("3SG", "3PL"), source="factual", seed=3))
    assert by_factual.label == (1.0 if by_factual.transition == "3SG->3PL" else -1.0)


def test_training_batch_is_gradient_of_its_rows(tiny_bert):
    computer = GradientComputer(tiny_bert, select_parameters(tiny_bert.model, layers=[1]))
    pairs = make_pairs(4)
    schedule = list(batch_schedule([4, 4], batch_rows=3, seed=0, epochs=1))
    batches = list(iter_training_batches(computer, pairs, task=Task.pair("3SG", "3PL"), batch_rows=3, seed=0, epochs=1))
    assert len(batches) == len(schedule) == 4
    g, positions = schedule[0]
    rows = pairs[pairs["factual_class"] == ["3SG", "3PL"][g]].reset_index(drop=True).iloc[positions]
    f, a = computer.pair_gradients(rows)
    assert torch.equal(batches[0].factual, f) and torch.equal(batches[0].alternative, a)


def test_missing_transition_is_an_error(tiny_bert):
    computer = GradientComputer(tiny_bert, select_parameters(tiny_bert.model, layers=[1]))
    pairs = make_pairs(2)
    one_way = pairs[pairs["factual_class"] == "3SG"]
    with pytest.raises(GradiendError, match=r"task '3SG_vs_3PL' has no 'train' rows for 3PL->3SG; rows per transition"):
        next(iter_training_batches(computer, one_way, task=Task.pair("3SG", "3PL")))
    with pytest.raises(GradiendError, match="a task needs two different groups"):
        Task.pair("3SG", "3SG")


def test_validation_gradients(tiny_gpt2):
    computer = GradientComputer(tiny_gpt2, select_parameters(tiny_gpt2.model, layers=[0]))
    pairs = pd.concat([make_pairs(2), make_pairs(3, split="validation")], ignore_index=True)
    x, labels = validation_gradients(computer, pairs, task=Task.pair("3SG", "3PL"), max_rows=4)
    assert x.shape == (4, computer.input_dim) and x.dtype == torch.float32
    assert labels.tolist() == [-1.0, -1.0, 1.0, 1.0]
    assert torch.isfinite(x).all() and (x.abs().sum(1) > 0).all()
    with pytest.raises(GradiendError, match="validation gradients need .* lower max_rows, or store them as bfloat16"):
        validation_gradients(computer, pairs, task=Task.pair("3SG", "3PL"), max_rows=4, max_bytes=1000)
    half, _ = validation_gradients(computer, pairs, task=Task.pair("3SG", "3PL"), max_rows=4, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), x, rtol=8e-3, atol=1e-6 * float(x.abs().max()))
    need = 4 * computer.input_dim * 2
    with pytest.raises(GradiendError, match=r"bfloat16\); the limit is .* lower max_rows$"):
        validation_gradients(computer, pairs, task=Task.pair("3SG", "3PL"), max_rows=4, dtype=torch.bfloat16,
                             max_bytes=need - 1)
    with pytest.raises(GradiendError, match="validation_dtype must be one of"):
        GradientConfig(validation_dtype="float16")


# --- pre-pruning -------------------------------------------------------------------------------


def test_top_k_indices_ties_go_to_lower_index():
    values = torch.tensor([0.5, 2.0, 1.0, 1.0, 3.0, 1.0])
    assert top_k_indices(values, 3).tolist() == [1, 2, 4]
    assert top_k_indices(values, 4).tolist() == [1, 2, 3, 4]


def test_stratified_sample_is_balanced_and_seeded():
    groups = {("A", "B"): make_pairs(5).iloc[::2], ("B", "A"): make_pairs(5).iloc[1::2]}
    s = stratified_sample(groups, 5, seed=0)
    assert s["factual_class"].tolist().count("3SG") == 3 and len(s) == 5
    assert s.equals(stratified_sample(groups, 5, seed=0))


def test_restrict_splits_kept_positions_at_parameter_boundaries():
    from gradiend.lm.params import ParamSelection, ParamSpec

    specs = (ParamSpec("a", (2, 3), 0), ParamSpec("b", (4,), 6), ParamSpec("c", (5,), 10))
    full = ParamSelection(specs, (None, None, None), 15)
    part = full.restrict(torch.tensor([14, 5, 6, 0, 11]))  # unsorted; the last of a, the first of b; c twice
    assert part.names == ["a", "b", "c"] and part.sizes() == [2, 1, 2]
    assert part.global_indices().tolist() == [0, 5, 6, 11, 14]
    again = part.restrict(torch.tensor([1, 3]))  # positions into the restricted input: a's 5 and c's 11
    assert again.names == ["a", "c"] and again.global_indices().tolist() == [5, 11]
    assert full.restrict(torch.tensor([], dtype=torch.int64)).input_dim == 0


@pytest.mark.parametrize("source", ["alternative", "diff"])
def test_pre_prune_keeps_top_k_by_abs_mean_row_gradient(tiny_gpt2, source):
    """Planted answer: all train rows sampled, so the manual |mean of per-row gradients| must rank the same."""
    base = select_parameters(tiny_gpt2.model, layers=[1])
    first = base.restrict(torch.arange(0, base.input_dim, 2))  # already pruned: indices stay global
    computer = GradientComputer(tiny_gpt2, first)
    pairs = make_pairs(3)
    pruned = pre_prune(computer, pairs, task=Task.pair("3SG", "3PL"), source=source, n_samples=len(pairs), topk=0.05)
    manual = torch.stack(list(computer.row_gradients(pairs, source))).mean(0).abs()
    k = round(0.05 * first.input_dim)
    expected = torch.topk(manual, k).indices.sort().values
    assert pruned.input_dim == k
    assert torch.equal(pruned.global_indices(), first.global_indices()[expected])
    assert set(pruned.global_indices().tolist()) <= set(base.global_indices()[::2].tolist())
    assert_vec_close(importance(computer, pairs, source, chunk_rows=5), manual)


def test_pre_prune_int_count_and_no_op(tiny_bert):
    computer = GradientComputer(tiny_bert, select_parameters(tiny_bert.model, layers=[0]))
    pairs = make_pairs(2)
    assert pre_prune(computer, pairs, task=Task.pair("3SG", "3PL"), topk=1.0) is computer.selection
    assert pre_prune(computer, pairs, task=Task.pair("3SG", "3PL"), topk=50, n_samples=4).input_dim == 50


def test_batched_backward_equals_one_backward_per_loss(tiny_any):
    """Large models backpropagate factual and alternative in one batched pass; each equals its own pass."""
    computer = GradientComputer(tiny_any, select_parameters(tiny_any.model))
    assert computer._batched is False  # a tiny model: below BATCHED_BACKWARD_MIN_PARAMS
    computer._batched = None  # as for a large model: try the batched backward
    rows = make_pairs(3)
    f, a = computer.pair_gradients(rows)
    assert computer._batched is True
    assert_vec_close(f, computer.mean_gradient(rows, "factual"))
    assert_vec_close(a, computer.mean_gradient(rows, "alternative"))
    computer._batched = False  # small models, or no vmap rules: one retained backward per loss
    f2, a2 = computer.pair_gradients(rows)
    assert_vec_close(f2, f)
    assert_vec_close(a2, a)
