"""numba, where numpy is the limit: a loop compiled on first use (cached on disk), or None.

    kernel = compiled(_histogram_block)      # None without numba: the caller keeps its numpy way
    if kernel is not None: kernel(x, width, out)

Kernels are compiled with nogil (they run on the op threads of parallel.py side by side) and
without fastmath: no reassociation and no fused multiply-add, so a kernel that does the numpy
version's float operations in the same order gives the same bits (each has a test saying so).
A kernel whose result is promised only within rounding (a float64 sum for a cosine) may ask for
`reassociate`: LLVM then vectorizes the reduction (sums in another order; NaN and inf still
propagate, as no other fast-math flag is set).
The first use in a fresh install compiles (about 1-2 s per kernel); later processes load the
cache from __pycache__. TPUSHELL_NUMBA=0 turns every kernel off (the numpy ways).
"""
from __future__ import annotations

import os
from typing import Callable

_COMPILED: dict[tuple[Callable, bool], Callable | None] = {}


def compiled(fn: Callable, *, reassociate: bool = False) -> Callable | None:
    """fn compiled by numba (nogil, cached), or None when numba is absent or turned off."""
    key = (fn, reassociate)
    if key not in _COMPILED:
        _COMPILED[key] = _compile(fn, reassociate)
    return _COMPILED[key]


def _compile(fn: Callable, reassociate: bool) -> Callable | None:
    if os.environ.get("TPUSHELL_NUMBA", "1") == "0":
        return None
    try:
        import numba
    except ImportError:
        return None
    return numba.njit(nogil=True, cache=True, fastmath={"reassoc"} if reassociate else False)(fn)
