"""Pooling: MaxPool, AveragePool, global pools (strided views, no per-pixel Python loops)."""
from __future__ import annotations

from functools import partial

import numpy as np

from . import op
from .conv import conv_pads, out_size, pad_spatial, windows
from .parallel import parallel


def pool_geometry(x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode):
    """(kernel, strides, dilations, begin, end, out_spatial) with ceil_mode folded into end pads."""
    nd = x.ndim - 2
    kernel = list(kernel_shape)
    strides = list(strides) if strides else [1] * nd
    dilations = list(dilations) if dilations else [1] * nd
    begin, end = conv_pads(x.shape[2:], kernel, strides, dilations, pads, auto_pad)
    out_sp = [out_size(x.shape[2 + i], kernel[i], strides[i], dilations[i], begin[i], end[i],
                       bool(ceil_mode)) for i in range(nd)]
    # Extra end padding so that every output window lies inside the padded array.
    end = [max(end[i], (out_sp[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
               - x.shape[2 + i] - begin[i]) for i in range(nd)]
    return kernel, strides, dilations, begin, end, out_sp


# Bytes of input planes reduced at a time: the padded block and the partial maxima stay in cache.
POOL_BLOCK_BYTES = 1 << 20


def max_pool(x, kernel, strides, dilations, begin, end, out_sp, pad_value):
    """Max over windows; `pad_value` fills the padding (-inf for float, the lowest code for int).

    Max is separable, so each spatial axis is reduced in turn with strided slices: a few
    vectorised passes instead of one reduction over small non-contiguous axes (10x faster),
    done a few planes at a time so that the intermediate results never leave the cache.
    """
    planes = x.reshape((1, -1) + x.shape[2:])
    y = np.empty(planes.shape[:2] + tuple(out_sp), x.dtype)
    step = max(1, POOL_BLOCK_BYTES // max(1, int(np.prod(x.shape[2:])) * x.itemsize))
    parallel(partial(_max_pool_block, planes[:, p:p + step], y[:, p:p + step], kernel, strides,
                     dilations, begin, end, pad_value) for p in range(0, planes.shape[1], step))
    return y.reshape(x.shape[:2] + tuple(out_sp))


def _max_pool_block(x, y, kernel, strides, dilations, begin, end, pad_value):
    """Max-pool the planes x (1, P, *in) into y (1, P, *out), one spatial axis at a time."""
    block = pad_spatial(x, begin, end, pad_value)
    for i, (k, s, d, n_out) in enumerate(zip(kernel, strides, dilations, y.shape[2:])):
        shape = list(block.shape)
        shape[2 + i] = n_out
        out = y if i == len(kernel) - 1 else np.empty(shape, x.dtype)
        index = [slice(None)] * block.ndim
        for j in range(k):
            index[2 + i] = slice(j * d, j * d + (n_out - 1) * s + 1, s)
            if j == 0:
                out[...] = block[tuple(index)]
            else:
                np.maximum(out, block[tuple(index)], out=out)
        block = out


def lowest(dtype) -> float | int:
    return -np.inf if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).min


@op("MaxPool")
def MaxPool(x, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape, pads=None,
            storage_order=0, strides=None, _num_outputs=1):
    kernel, strides, dil, begin, end, out_sp = pool_geometry(
        x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    y = max_pool(x, kernel, strides, dil, begin, end, out_sp, lowest(x.dtype))
    if _num_outputs < 2:
        return y
    return y, max_pool_indices(x, kernel, strides, dil, begin, end, out_sp, storage_order)


def max_pool_indices(x, kernel, strides, dilations, begin, end, out_sp, storage_order=0):
    """MaxPool's Indices output: where each maximum was, as a flat index into x (padding not
    counted; storage_order 1 numbers each plane column-major); the first maximum wins a tie."""
    n, c = x.shape[:2]
    spatial = x.shape[2:]
    view = windows(pad_spatial(x, begin, end, lowest(x.dtype)), kernel, strides, dilations, out_sp)
    best = view.reshape((n, c, -1) + tuple(out_sp)).argmax(axis=2)
    coords = []
    for i, offset in enumerate(np.unravel_index(best, kernel)):
        start = np.arange(out_sp[i]).reshape((-1,) + (1,) * (len(out_sp) - 1 - i)) * strides[i] - begin[i]
        coords.append(start + offset * dilations[i])
    within = np.ravel_multi_index(coords, spatial, order="F" if storage_order else "C")
    planes = np.arange(n * c, dtype=np.int64).reshape((n, c) + (1,) * len(out_sp))
    return planes * int(np.prod(spatial)) + within


@op("AveragePool")
def AveragePool(x, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None,
                kernel_shape, pads=None, strides=None):
    kernel, strides, dil, begin, end, out_sp = pool_geometry(
        x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    nd = len(kernel)
    xp = pad_spatial(x, begin, end, 0.0)
    view = windows(xp, kernel, strides, dil, out_sp)
    total = np.zeros(x.shape[:2] + tuple(out_sp), dtype=np.float64 if x.dtype == np.float64
                     else np.float32)
    for pos in np.ndindex(*kernel):
        total += view[(slice(None), slice(None)) + pos]
    # Count the window elements that fall inside the input (or inside input + explicit pads).
    _, explicit_end = conv_pads(x.shape[2:], kernel, strides, dil, pads, auto_pad)
    ones = np.zeros((1, 1) + tuple(xp.shape[2:]), dtype=np.float32)
    inner = []
    for i in range(nd):
        if count_include_pad:
            inner.append(slice(0, begin[i] + x.shape[2 + i] + explicit_end[i]))
        else:
            inner.append(slice(begin[i], begin[i] + x.shape[2 + i]))
    ones[(0, 0) + tuple(inner)] = 1
    count = np.zeros((1, 1) + tuple(out_sp), dtype=np.float32)
    cview = windows(ones, kernel, strides, dil, out_sp)
    for pos in np.ndindex(*kernel):
        count += cview[(slice(None), slice(None)) + pos]
    return (total / np.maximum(count, 1)).astype(x.dtype, copy=False)


@op("AvgPool")
def AvgPool(x, *, kernel_shape, strides=None, pads=None, count_include_pad=1, ceil_mode=0):
    """The reference's average pool (AveragePool, GlobalAveragePool and a ReduceMean over H, W)."""
    if list(kernel_shape) == list(x.shape[2:]) and not any(pads or ()):
        return GlobalAveragePool(x)
    return AveragePool(x, kernel_shape=kernel_shape, strides=strides, pads=pads,
                       count_include_pad=count_include_pad, ceil_mode=ceil_mode)


@op("GlobalAveragePool")
def GlobalAveragePool(x):
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True, dtype=np.float32).astype(x.dtype)


@op("GlobalMaxPool")
def GlobalMaxPool(x):
    return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)
