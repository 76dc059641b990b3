"""numba, where numpy is the limit: a loop compiled on first use (cached on disk), or None.

    kernel = compiled(_histogram_block)      # None without numba: the caller keeps its numpy way
    if kernel is not None: kernel(x, width, out)

Kernels are compiled with nogil (they run on the op threads of parallel.py side by side) and
without fastmath: no reassociation and no fused multiply-add, so a kernel that does the numpy
version's float operations in the same order gives the same bits (each has a test saying so).
The first use in a fresh install compiles (about 1-2 s per kernel); later processes load the
cache from __pycache__. TPUSHELL_NUMBA=0 turns every kernel off (the numpy ways).
"""
from __future__ import annotations

import os
from typing import Callable

_COMPILED: dict[Callable, Callable | None] = {}


def compiled(fn: Callable) -> Callable | None:
    """fn compiled by numba (nogil, cached), or None when numba is absent or turned off."""
    if fn not in _COMPILED:
        _COMPILED[fn] = _compile(fn)
    return _COMPILED[fn]


def _compile(fn: Callable) -> Callable | None:
    if os.environ.get("TPUSHELL_NUMBA", "1") == "0":
        return None
    try:
        import numba
    except ImportError:
        return None
    return numba.njit(nogil=True, cache=True)(fn)
