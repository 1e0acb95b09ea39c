"""Masked-LM and causal-LM objectives: tokenization of targets, shared forward, padding, probabilities."""

from __future__ import annotations

import copy

import pytest
import torch

from gradiend.errors import GradiendError
from gradiend.lm import ModelFamily
from gradiend.lm.load import LoadedModel
from gradiend.lm.objectives import CausalLMObjective, MaskedLMObjective, objective_for

ROWS = [
    {"masked": "Yesterday [MASK] added pepper to the soup.", "factual": "he", "alternative": "they"},
    {"masked": "After the long meeting in the city, [MASK] went home.", "factual": "she", "alternative": "they"},
    {"masked": "The report says [MASK] were late.", "factual": "they", "alternative": "it"},
]


def _grads(model: torch.nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    params = [p for p in model.parameters() if p.requires_grad]
    return list(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True, materialize_grads=True))


def _assert_grads_close(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    """Equal up to float32 summation order: atol relative to the largest gradient entry of the model."""
    x, y = torch.cat([t.reshape(-1) for t in a]), torch.cat([t.reshape(-1) for t in b])
    torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5 * float(y.abs().max()))


def _hf_loss(lm: LoadedModel, masked: str, word: str) -> torch.Tensor:
    """The model's own loss with ``labels=``, one unpadded sequence: the naive reference."""
    target = objective_for(lm).target(masked, word)
    if lm.family is ModelFamily.MASKED:
        ids = torch.tensor([target.ids])
        labels = torch.full_like(ids, -100)
        labels[0, list(target.positions)] = torch.tensor(target.pieces)
    else:
        ids = torch.tensor([target.ids + target.pieces[-1:]])
        labels = torch.full_like(ids, -100)
        labels[0, len(ids[0]) - len(target.pieces) :] = torch.tensor(target.pieces)
    return lm.model(input_ids=ids, labels=labels).loss


def test_registry_picks_objective_by_family(tiny_bert, tiny_gpt2, tiny_llama):
    assert isinstance(objective_for(tiny_bert), MaskedLMObjective)
    assert isinstance(objective_for(tiny_gpt2), CausalLMObjective)
    assert isinstance(objective_for(tiny_llama), CausalLMObjective)


def test_shared_forward_equals_separate_hf_passes(tiny_any):
    """Both losses from one batched forward = the HF loss of two separate passes per row (value and gradient)."""
    obj = objective_for(tiny_any)
    factual, alternative = obj.losses(tiny_any.model, ROWS)
    ref_f = torch.stack([_hf_loss(tiny_any, r["masked"], r["factual"]) for r in ROWS]).mean()
    ref_a = torch.stack([_hf_loss(tiny_any, r["masked"], r["alternative"]) for r in ROWS]).mean()
    torch.testing.assert_close(factual, ref_f)
    torch.testing.assert_close(alternative, ref_a)
    _assert_grads_close(_grads(tiny_any.model, factual), _grads(tiny_any.model, ref_f))
    _assert_grads_close(_grads(tiny_any.model, alternative), _grads(tiny_any.model, ref_a))


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_causal_loss_is_hand_computed_next_token_ce(kind, side, tiny_gpt2, tiny_llama):
    """Rows of different length, padded left or right: the loss is CE of the logits after the last context token."""
    lm = {"gpt2": tiny_gpt2, "llama": tiny_llama}[kind]
    obj = objective_for(lm, padding_side=side)
    got, _ = obj.losses(lm.model, ROWS)
    tok = lm.tokenizer
    hand = []
    for r in ROWS:
        context = r["masked"].split("[MASK]")[0].rstrip()
        ids = torch.tensor([tok(context, add_special_tokens=False)["input_ids"]])
        target = tok(" " + r["factual"], add_special_tokens=False)["input_ids"]
        assert len(target) == 1
        logits = lm.model(input_ids=ids).logits[0, -1]
        hand.append(-torch.log_softmax(logits, -1)[target[0]])
    expected = torch.stack(hand).mean()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    _assert_grads_close(_grads(lm.model, got), _grads(lm.model, expected))


def test_multi_piece_masked_target_gets_k_masks(tiny_bert):
    obj = objective_for(tiny_bert)
    pieces = tuple(tiny_bert.tokenizer("unbelievably", add_special_tokens=False)["input_ids"])
    assert len(pieces) > 1
    target = obj.target("Yesterday [MASK] added pepper.", "unbelievably")
    assert target.pieces == pieces
    assert [target.ids[p] for p in target.positions] == [tiny_bert.tokenizer.mask_token_id] * len(pieces)
    assert target.positions == tuple(range(target.positions[0], target.positions[0] + len(pieces)))
    # uncased tokenizer: the capitalised surface form is the same token
    assert obj.target("[MASK] left.", "He").pieces == obj.target("[MASK] left.", "he").pieces


def test_multi_piece_loss_is_sum_over_pieces(tiny_any):
    """A k-piece word costs -Σ log p(piece_j): masked LM at k masks, causal LM teacher-forced."""
    obj = objective_for(tiny_any)
    masked, word = "Yesterday [MASK] added pepper.", "unbelievably"
    target = obj.target(masked, word)
    assert len(target.pieces) > 1
    loss, _ = obj.losses(tiny_any.model, [{"masked": masked, "factual": word, "alternative": "they"}])
    expected = _hf_loss(tiny_any, masked, word) * len(target.pieces)  # HF averages over labelled positions
    torch.testing.assert_close(loss, expected)


def test_rows_whose_words_need_different_inputs(tiny_any):
    """One-piece and multi-piece words in one batch give the same per-row losses as rows scored alone."""
    obj = objective_for(tiny_any)
    rows = [*ROWS, {"masked": "Then [MASK] laughed.", "factual": "they", "alternative": "unbelievably"}]
    factual, alternative = obj.row_losses(tiny_any.model, rows)
    for i, row in enumerate(rows):
        f, a = obj.row_losses(tiny_any.model, [row])
        torch.testing.assert_close(factual[i], f[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(alternative[i], a[0], rtol=1e-5, atol=1e-5)


def test_causal_target_is_the_leading_space_token(tiny_gpt2):
    obj = objective_for(tiny_gpt2)
    tok = tiny_gpt2.tokenizer
    target = obj.target("Yesterday [MASK] added pepper.", "they")
    assert tok.convert_ids_to_tokens(list(target.pieces)) == ["Ġthey"]
    assert target.ids == tuple(tok("Yesterday", add_special_tokens=False)["input_ids"])
    assert target.positions == (len(target.ids) - 1,)


def test_sentence_initial_causal_target_uses_bos(tiny_gpt2):
    obj = objective_for(tiny_gpt2)
    tok = tiny_gpt2.tokenizer
    target = obj.target("[MASK] went home.", "They")
    assert target.ids == (tok.bos_token_id,)
    assert target.positions == (0,)
    assert tok.convert_ids_to_tokens(list(target.pieces)) == ["They"]


def test_sentence_initial_without_bos_is_an_error(tiny_gpt2):
    tok = copy.deepcopy(tiny_gpt2.tokenizer)
    tok.bos_token = None
    obj = objective_for(LoadedModel(tiny_gpt2.model, tok, ModelFamily.CAUSAL, "no-bos"))
    with pytest.raises(GradiendError, match=r"row 0 .*sentence-initial.*no BOS token"):
        obj.losses(tiny_gpt2.model, [{"masked": "[MASK] went home.", "factual": "They", "alternative": "He"}])


def test_word_probabilities_match_manual_softmax(tiny_any):
    obj = objective_for(tiny_any)
    masked = [r["masked"] for r in ROWS]
    words = ["he", "she", "it", "they", "unbelievably"]
    probs = obj.word_probabilities(tiny_any.model, masked, words, batch_size=2)
    assert probs.shape == (len(masked), len(words))
    for i, m in enumerate(masked):
        for j, w in enumerate(words):
            t = obj.target(m, w)
            ids = torch.tensor([t.ids])
            with torch.no_grad():
                logp = torch.log_softmax(tiny_any.model(input_ids=ids).logits[0], -1)
            expected = torch.exp(sum(logp[p, c] for p, c in zip(t.positions, t.pieces, strict=True)))
            torch.testing.assert_close(probs[i, j], expected, rtol=1e-4, atol=1e-9)


def test_word_probabilities_over_distinct_tokens_sum_below_one(tiny_any):
    """Over many distinct one-piece words the probabilities are a sub-distribution of the next-token softmax."""
    obj = objective_for(tiny_any)
    tok = tiny_any.tokenizer
    masked = ROWS[0]["masked"]
    candidates = ["the", "a", "he", "she", "it", "they", "we", "you", "i", "one", "and", "house", "dog", "cat"]
    pieces = {}
    for w in candidates:
        p = obj.target(masked, w).pieces
        if len(p) == 1 and p not in pieces.values():
            pieces[w] = p
    probs = obj.word_probabilities(tiny_any.model, [masked], list(pieces))
    t = obj.target(masked, "he")
    with torch.no_grad():
        dist = torch.softmax(tiny_any.model(input_ids=torch.tensor([t.ids])).logits[0, t.positions[0]], -1)
    ids = [p[0] for p in pieces.values()]
    torch.testing.assert_close(probs.sum(), dist[ids].sum(), rtol=1e-4, atol=1e-8)
    assert float(probs.sum()) <= 1.0
    assert len(ids) == len(set(tok.convert_ids_to_tokens(ids)))


def test_masked_sentence_needs_exactly_one_mask(tiny_bert):
    obj = objective_for(tiny_bert)
    with pytest.raises(GradiendError, match=r"exactly one \[MASK\] \(found 2\)"):
        obj.target("[MASK] and [MASK]", "he")
    with pytest.raises(GradiendError, match=r"exactly one \[MASK\] \(found 0\)"):
        obj.target("no mask here", "he")


def test_unpredictable_word_is_an_error(tiny_bert):
    obj = objective_for(tiny_bert)
    with pytest.raises(GradiendError, match=r"row 0 .*cannot be predicted"):
        obj.losses(tiny_bert.model, [{"masked": "Then [MASK] left.", "factual": "\u2603", "alternative": "they"}])
    with pytest.raises(GradiendError, match="is empty"):
        obj.target("Then [MASK] left.", " ")


def test_padding_side_must_be_known(tiny_gpt2):
    with pytest.raises(GradiendError, match="padding_side"):
        objective_for(tiny_gpt2, padding_side="middle")


@pytest.mark.slow
def test_smollm2_pronoun_probabilities_are_plausible(smollm2):
    """Real next-token probabilities after real prefixes (the published package reported ~4e-6 here)."""
    obj = objective_for(smollm2)
    masked = [
        "The two brothers were born in Vienna, where [MASK] studied music.",
        "When the soldiers reached the river, [MASK] built a bridge.",
        "Marie Curie moved to Paris in 1891, where [MASK] studied physics.",
        "The king was crowned in 1066 and [MASK] ruled for twenty years.",
    ]
    probs = obj.word_probabilities(smollm2.model, masked, ["he", "she", "it", "they"])
    assert probs[0, 3] > 1e-3 and probs[1, 3] > 1e-3
    assert probs[2, 1] > 1e-3
    assert probs[3, 0] > 1e-3
    assert (probs.sum(1) <= 1).all()


def test_pack_layout_restarts_positions_and_balances_rows():
    from gradiend.lm.forward import PACK_MIN_WASTE, pack, pad, padding_waste

    seqs = [tuple(range(100, 100 + n)) for n in (57, 40, 35, 30, 12, 3)]  # 177 tokens
    batch = pack(seqs, pad_id=0, device=torch.device("cpu"), width=100)
    assert tuple(batch.input_ids.shape) == (2, 90) and batch.attention_mask is None  # ⌈177/100⌉ rows: 57+30+3, 40+35+12
    seen = torch.zeros_like(batch.input_ids, dtype=torch.bool)
    for s, r, o in zip(seqs, batch.row, batch.offset, strict=True):
        assert batch.input_ids[r, o : o + len(s)].tolist() == list(s)
        assert batch.position_ids[r, o : o + len(s)].tolist() == list(range(len(s)))
        assert not seen[r, o : o + len(s)].any()  # no two sequences overlap
        seen[r, o : o + len(s)] = True
    assert (batch.position_ids[~seen] == 0).all() and (batch.input_ids[~seen] == 0).all()  # pads: own segments
    one_long = pack([tuple(range(300))] + seqs[-1:], pad_id=0, device=torch.device("cpu"), width=100)
    assert tuple(one_long.input_ids.shape) == (2, 300)  # never more rows than sequences
    # packing pays only when padding to the longest wastes tokens: 6 × 57 = 342 for 177 real ones
    assert padding_waste(seqs) == pytest.approx(342 / 177 - 1)
    assert padding_waste([(1, 2, 3)] * 4) == 0.0 < PACK_MIN_WASTE
    with pytest.raises(GradiendError, match="padding side must be 'left' or 'right', got 'middle'"):
        pad(seqs, pad_id=0, side="middle", device=torch.device("cpu"))


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_packed_causal_batch_equals_padded(kind, tiny_gpt2, tiny_llama):
    """Several sequences per row (restarting positions, block-diagonal attention) = one per row, padded."""
    from gradiend.lm.forward import PACK_MIN_WASTE, model_split, padding_waste
    from gradiend.lm.objectives import _plan

    lm = {"gpt2": tiny_gpt2, "llama": tiny_llama}[kind]
    obj = objective_for(lm)
    rows = [*ROWS, {"masked": "[MASK] left early.", "factual": "she", "alternative": "unbelievably"}]  # BOS, 2 inputs
    packed, padded = obj.row_losses(lm.model, rows), obj.row_losses(lm.model, rows, pack=False)
    assert model_split(lm.model).packs(lm.model)
    targets = [obj.target(r["masked"], r[w]) for w in ("factual", "alternative") for r in rows]
    seqs, _ = _plan(targets, list(range(len(rows))) * 2, obj.shares_prefixes)
    assert padding_waste(seqs) > PACK_MIN_WASTE  # so row_losses did pack them
    for a, b in zip(packed, padded, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    _assert_grads_close(_grads(lm.model, packed[0].sum() - packed[1].sum()),
                        _grads(lm.model, padded[0].sum() - padded[1].sum()))


def test_masked_lm_packing_is_decided_numerically(tiny_bert):
    """BERT attends over the whole row: it is packed only where this transformers version keeps packed sequences
    apart (block-diagonal masks from position ids, transformers ≥ 5); either way losses and gradients equal
    the padded ones."""
    obj = objective_for(tiny_bert)
    packed, padded = obj.row_losses(tiny_bert.model, ROWS), obj.row_losses(tiny_bert.model, ROWS, pack=False)
    for a, b in zip(packed, padded, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    _assert_grads_close(_grads(tiny_bert.model, packed[0].sum() - packed[1].sum()),
                        _grads(tiny_bert.model, padded[0].sum() - padded[1].sum()))
