"""Device placement: ``auto`` without a GPU, layer-split device maps, and the sharded code path on the CPU.

A map that splits a tiny model's layers over several "cpu" entries runs the same code as a multi-GPU shard:
accelerate's hooks move activations between blocks, gradients are gathered per shard into the GRADIEND's input
vector, and a rewrite adds each slice to its own shard in place.
"""

from __future__ import annotations

import pytest
import torch

from gradiend.devices import gradiend_device, layer_device_map, model_device, shard_devices
from gradiend.errors import GradiendError
from gradiend.lm.load import from_model, load_model


def test_auto_places_everything_on_the_cpu_without_a_gpu():
    assert torch.cuda.device_count() == 0  # conftest hides GPUs
    assert model_device("auto") == "cpu" and model_device("shard") == "cpu"
    assert gradiend_device("auto") == "cpu"
    assert model_device("cpu") == "cpu" and gradiend_device("cpu") == "cpu"
    assert model_device({"model": "cpu"}) == {"model": "cpu"}
    with pytest.raises(GradiendError, match=r"'cuda:1' is not available: this machine has 0 GPU"):
        gradiend_device("cuda:1")
    with pytest.raises(GradiendError, match="unknown device 'gpu0'"):
        model_device("gpu0")


def test_shards_leave_the_gradiend_gpu_out_from_three_gpus_on():
    assert shard_devices(1) == [0]
    assert shard_devices(2) == [0, 1]
    assert shard_devices(4) == [0, 1, 2]


@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama"])
def test_layer_map_splits_layers_contiguously_and_covers_every_parameter(make_tiny, kind):
    model = make_tiny(kind).model
    device_map = layer_device_map(model, [0, 1])
    layer_keys = sorted(k for k in device_map if k.rsplit(".", 1)[-1].isdigit())
    assert [device_map[k] for k in layer_keys] == [0, 1]
    for name, _ in model.named_parameters():
        assert any(name == k or name.startswith(k + ".") for k in device_map), name
    embeddings = next(k for k in device_map if "emb" in k or k.endswith("wte"))
    assert device_map[embeddings] == 0
    tied = next(k for k in device_map if k in ("lm_head", "cls"))  # every tiny model ties its head: stays at 0
    assert device_map[tied] == 0


def _split(make_tiny, kind: str):
    lm = make_tiny(kind)
    model = lm.model
    split = from_model(model, lm.tokenizer, lm.name)
    from gradiend.devices import dispatch

    split.model = dispatch(model, layer_device_map(model, ["cpu", "cpu"]))
    return split


def _data():
    from gradiend.data import DataConfig, Feature, create_data

    feature = Feature.from_mapping({"3SG": ["he", "she"], "3PL": ["they"]})
    return create_data("offline:wiki-en", feature, DataConfig(max_rows_per_class=20, neutral_size=5, seed=0),
                       max_documents=1500)


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_a_layer_split_model_trains_the_same_gradiend(make_tiny, kind):
    from gradiend.stages import GradientConfig, select, train_gradiend
    from gradiend.train import TrainConfig

    data = _data()
    config = GradientConfig(rows_per_gradient=4, validation_rows=6, pre_prune_topk=0.5)
    train = TrainConfig(lr=1e-3, steps=4, eval_every=2, seeds=(0, 1))
    results = {}
    for name, lm in (("whole", make_tiny(kind)), ("split", _split(make_tiny, kind))):
        results[name] = train_gradiend(lm, data, select(lm, layers=[0, 1]), config, train, progress=False)
    split_model = _split(make_tiny, kind).model
    assert hasattr(split_model.get_submodule(next(iter(layer_device_map(split_model, ["cpu"])))), "_hf_hook")
    whole, split = results["whole"].gradiend, results["split"].gradiend
    assert torch.equal(whole.selection.global_indices(), split.selection.global_indices())
    for a, b in zip(whole.state_dict().values(), split.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    for x, y in zip(results["whole"].log, results["split"].log, strict=True):
        assert x["correlation"] == pytest.approx(y["correlation"], abs=1e-5)


def test_a_rewrite_of_a_split_model_equals_the_unsplit_rewrite(make_tiny, tmp_path):
    from gradiend.model import Gradiend, GradiendMeta
    from gradiend.rewrite import rewrite_model
    from gradiend.stages import select

    whole, split = make_tiny("gpt2"), _split(make_tiny, "gpt2")
    selection = select(whole, layers=[0, 1]).restrict(torch.arange(0, 5000, 3))
    gradiend = Gradiend(selection.input_dim, meta=GradiendMeta(selection=selection), seed=0)
    before = {k: v.clone() for k, v in split.model.state_dict().items()}
    for lm in (whole, split):
        selection.add_to_model(lm.model, gradiend.update_vector(1.0), 0.5)
    for (name, a), b in zip(whole.model.state_dict().items(), split.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    changed = [k for k, v in split.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(k.startswith("transformer.h.") for k in changed)
    edited = {k: v.clone() for k, v in split.model.state_dict().items()}
    reloaded = load_model(rewrite_model(split, gradiend, -1.0, 0.25, tmp_path / "rewritten")).model.state_dict()
    selection.add_to_model(whole.model, gradiend.update_vector(-1.0), 0.25)  # what the saved model must hold
    for (name, a), b in zip(whole.model.state_dict().items(), reloaded.values(), strict=True):
        assert torch.equal(a, b), name
    assert all(torch.equal(v, edited[k]) for k, v in split.model.state_dict().items())  # in memory: restored


def test_load_model_takes_a_device_map(make_tiny, tmp_path):
    lm = make_tiny("llama")
    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(tmp_path, device=layer_device_map(lm.model, ["cpu", "cpu"]))
    assert hasattr(loaded.model, "_hf_hook")
    ids = lm.tokenizer("he went home", return_tensors="pt")["input_ids"]
    torch.testing.assert_close(loaded.model(ids).logits, lm.model(ids).logits)
