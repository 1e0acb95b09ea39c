"""GRADIEND: gradient-based feature learning in masked and causal language models.

One front door: ``import gradiend`` gives the names a user reaches for — ``gradiend.Gradiend``,
``gradiend.load_model``, ``gradiend.Feature``, ``gradiend.create_data``, ``gradiend.train_gradiend``,
``gradiend.evaluate_encoder`` / ``evaluate_decoder``, ``gradiend.rewrite_model`` / ``edited``, ``gradiend.run``,
``gradiend.study`` and more (``__all__``). They are imported lazily on first use (PEP 562), so ``import gradiend``
and ``gradiend --help`` load no torch or transformers.

>>> import gradiend
>>> g = gradiend.Gradiend.from_pretrained("org/name")          # doctest: +SKIP
>>> result = gradiend.run("examples/demo.toml")               # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_EXPORTS: dict[str, str] = {
    "Gradiend": "gradiend.model",
    "GradiendMeta": "gradiend.model",
    "load_model": "gradiend.lm.load",
    "from_model": "gradiend.lm.load",
    "Feature": "gradiend.data",
    "FeatureClass": "gradiend.data",
    "DataConfig": "gradiend.data",
    "create_data": "gradiend.data",
    "load_data": "gradiend.data",
    "Task": "gradiend.tasks",
    "select": "gradiend.stages",
    "GradientConfig": "gradiend.stages",
    "train_gradiend": "gradiend.stages",
    "TrainConfig": "gradiend.train",
    "EvalConfig": "gradiend.evaluate",
    "evaluate_encoder": "gradiend.evaluate",
    "evaluate_decoder": "gradiend.evaluate",
    "edited": "gradiend.rewrite",
    "rewrite_model": "gradiend.rewrite",
    "rewrite_selected": "gradiend.rewrite",
    "load_config": "gradiend.config",
    "run": "gradiend.api",
    "study": "gradiend.study",  # the submodule, callable: gradiend.study(suite) = gradiend.api.study(suite)
    "compare_runs": "gradiend.study",
    "write_cards": "gradiend.cards",
    "GradiendError": "gradiend.errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gradiend' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    value = module if name == "study" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
