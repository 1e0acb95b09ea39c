"""Language-model side of gradiend: loading, objectives, parameter selection."""

from gradiend.lm.load import LoadedModel, ModelFamily, from_model, load_model

__all__ = ["LoadedModel", "ModelFamily", "from_model", "load_model"]
