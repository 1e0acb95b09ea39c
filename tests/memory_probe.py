"""Run one training stage in a fresh process and print its memory plan next to the measured peak RSS (JSON).

    python tests/memory_probe.py KIND [key=value ...]

KIND is a tiny model (bert, gpt2, llama) or an offline model name (offline:smollm2-135m); the rest are overrides
of the gradient and training configs (``seeds=2``, ``validation_rows=16``, ``dtype=bfloat16``, ``model_dtype=…``).
The peak is the kernel's high-water mark (VmHWM) after resetting it (``/proc/self/clear_refs``) once the model and
the data are in memory and (tiny models) one gradient warmed the kernels up and its freed buffers were returned
(``malloc_trim``), so it measures what the stage adds: the plan's items that are not yet resident. Used by tests/test_memory.py (a subprocess, so no other test's memory counts).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import sys
from pathlib import Path

os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(key)


def _model(kind: str, dtype: str):
    import torch
    from transformers import AutoTokenizer

    from gradiend import assets
    from gradiend.lm.load import from_model, load_model

    if kind.startswith("offline:"):
        return load_model(kind, dtype=getattr(torch, dtype))
    from conftest import _tiny

    bert = AutoTokenizer.from_pretrained(assets.resolve("offline:splade-tiny"))
    causal = AutoTokenizer.from_pretrained(assets.resolve("offline:smollm2-135m"))
    lm = _tiny(kind, bert, causal)
    return from_model(lm.model.to(getattr(torch, dtype)), lm.tokenizer, lm.name)


def main() -> None:
    import torch

    from gradiend.data import DataConfig, Feature, create_data
    from gradiend.gradients.compute import GradientComputer
    from gradiend.stages import GradientConfig, select, train_gradiend, training_plan
    from gradiend.tasks import TaskConfig
    from gradiend.train import TrainConfig

    torch.set_num_threads(1)
    kind, *pairs = sys.argv[1:]
    opts = dict(p.split("=", 1) for p in pairs)
    lm = _model(kind, opts.pop("model_dtype", "float32"))
    feature = Feature.from_mapping({"3SG": ["he", "she"], "3PL": ["they"]})
    data = create_data("offline:wiki-en", feature, DataConfig(max_rows_per_class=40, neutral_size=5, seed=0),
                       max_documents=1500)
    grad_cfg = GradientConfig(rows_per_gradient=int(opts.pop("rows", 8)), validation_rows=int(opts.pop("validation_rows", 16)),
                              validation_storage=opts.pop("validation_storage", "stored"),
                              validation_dtype=opts.pop("validation_dtype", "float32"),
                              pre_prune_topk=float(opts["topk"]) if "topk" in opts else None)
    opts.pop("topk", None)
    train_cfg = TrainConfig(lr=1e-3, steps=int(opts.pop("steps", 4)), eval_every=2,
                            seeds=tuple(range(int(opts.pop("seeds", 2)))), dtype=opts.pop("dtype", "float32"),
                            device="cpu")
    task = TaskConfig().resolve(data.feature.class_ids)
    selection = select(lm)
    if not kind.startswith("offline:"):  # first-use allocations of the kernels are not the stage's (a real
        warm = GradientComputer(lm, selection)  # model's warm-up would leave GBs in the allocator: none there)
        next(warm.row_gradients(data.pairs.head(1), "alternative"))
        del warm
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # the warm-up's freed buffers leave the RSS: the stage's count
    plan = training_plan(lm, data, task, selection, grad_cfg, train_cfg, "cpu")
    Path("/proc/self/clear_refs").write_text("5")
    before = _status("VmRSS")
    train_gradiend(lm, data, selection, grad_cfg, train_cfg, task=task, progress=False)
    measured = _status("VmHWM") - before
    print(json.dumps({"planned": plan.peak("cpu", new_only=True), "measured": measured,
                      "items": {i.name: i.bytes for i in plan.items}}))


if __name__ == "__main__":
    main()
