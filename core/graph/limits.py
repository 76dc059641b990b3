"""Sizes no real model reaches: files that claim more are refused with a message naming the limit
(instead of a MemoryError, the OOM killer or a RecursionError later). One place for these facts."""
from __future__ import annotations

from typing import Sequence

from ..errors import ModelError

MAX_DIM = 1 << 20                 # one dimension (a 1M-wide image is already far past any model)
MAX_RANK = 8
MAX_TENSOR_ELEMENTS = 1 << 30     # 4 GiB of float32 in one tensor
MAX_NESTING = 64                  # brackets/braces nested in one .mlir attribute or JSON value
MAX_MANIFEST_BYTES = 256 << 20    # a deployed model's manifest.json, uncompressed
MAX_MEMBER_BYTES = 4 << 30        # one array of a deployed model, uncompressed


def check_shape(shape: Sequence[int], where: str) -> tuple[int, ...]:
    """`shape` as a tuple if every dim is an integer in [0, MAX_DIM], the rank at most MAX_RANK
    and the element count at most MAX_TENSOR_ELEMENTS; else ModelError naming `where`."""
    dims = tuple(shape)
    if len(dims) > MAX_RANK:
        raise ModelError(f"{where}: rank {len(dims)} is above the limit {MAX_RANK}")
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= MAX_DIM:
            raise ModelError(f"{where}: dimension {d!r} of shape {list(dims)} is not valid "
                             f"(an integer from 0 to {MAX_DIM})")
    count = 1
    for d in dims:
        count *= d
    if count > MAX_TENSOR_ELEMENTS:
        raise ModelError(f"{where}: shape {list(dims)} has {count} elements, above the limit "
                         f"{MAX_TENSOR_ELEMENTS} (4 GiB of float32)")
    return dims
