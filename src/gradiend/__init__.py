"""GRADIEND: gradient-based feature learning in masked and causal language models.

The top-level namespace stays light: importing ``gradiend`` loads no model code. Stage functions live in
their modules (``gradiend.data``, ``gradiend.lm``, ``gradiend.train``, ...).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
