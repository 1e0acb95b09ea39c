"""Keep freed large blocks in the process heap instead of returning them to the OS (glibc only).

A SmolLM2 gradient step allocates and frees several blocks of 0.1–0.5 GB (the embedding gradient, the
flattened gradient vectors). glibc serves each such block with a fresh ``mmap`` and unmaps it when freed, so
every step pays the kernel for zeroing the pages again on first touch: 1.8 s of a 6.1 s step on these machines
(``benchmarks/flops.py``). With mmap off for malloc and a high trim threshold, the blocks stay in the heap and
are reused (6.1 → 4.2 s per step). Peak memory is unchanged; memory freed after the peak is kept by the process
rather than returned.

Applied once per process by :func:`gradiend.lm.load_model` for CPU models. ``GRADIEND_MALLOC_TUNING=0`` turns
it off; nothing happens on other C libraries.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = -1  # never trim the heap top (mallopt(3): -1 disables trimming)

_state: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Tune glibc malloc as described in the module docstring; True if it is (now or already) in effect."""
    if "applied" in _state:
        return _state["applied"]
    _state["applied"] = applied = _apply()
    return applied


def _apply() -> bool:
    if os.environ.get("GRADIEND_MALLOC_TUNING", "1").strip().lower() in ("0", "false", "no", "off"):
        log.debug("malloc tuning off (GRADIEND_MALLOC_TUNING)")
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    log.debug("glibc malloc keeps freed large blocks for reuse: %s", ok)
    return ok
