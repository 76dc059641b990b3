"""Keep freed activation memory in the process instead of giving it back to the OS (glibc only).

glibc serves every block above 128 KB-32 MB with its own mmap and unmaps it on free, so each
activation of a forward pass is fresh memory that the kernel zero-fills page by page on first
touch: at batch 10 on yolov3-tiny that was a fifth of the time. Served from the heap and never
trimmed below TRIM_THRESHOLD, the next activation reuses the pages the last one freed. The
process then keeps its peak working set; it gives back only what exceeds the threshold.
"""
from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1     # mallopt parameter numbers, from glibc's malloc.h
M_MMAP_MAX = -4
M_ARENA_MAX = -8
TRIM_THRESHOLD = 1 << 30  # free heap top kept for reuse, in bytes


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to reuse freed heap memory; False where that is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    # musl has a mallopt that does nothing and returns 0; glibc returns 1 on success.
    # One arena: worker threads (calibration, image loading) would otherwise each get an arena
    # of their own that keeps its own peak, and the process would keep the sum of the peaks.
    return (bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            and bool(mallopt(M_ARENA_MAX, 1)))
