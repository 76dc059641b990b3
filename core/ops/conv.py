"""Convolutions (im2col + BLAS in cache-sized blocks on every thread) and batch normalization."""
from __future__ import annotations

from functools import partial

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import op
from .parallel import THREADS, parallel


def conv_pads(in_spatial, kernel, strides, dilations, pads, auto_pad):
    """Begin/end pads per spatial axis, resolving auto_pad (SAME_UPPER/SAME_LOWER/VALID)."""
    n = len(in_spatial)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(in_spatial, kernel, strides, dilations):
            out = -(-size // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            small, big = total // 2, total - total // 2
            b, e = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
            begin.append(b)
            end.append(e)
        return begin, end
    if auto_pad == "VALID" or pads is None:
        return [0] * n, [0] * n
    return list(pads[:n]), list(pads[n:])


def _spatial_attrs(x, w_spatial, kernel_shape, strides, dilations, pads, auto_pad):
    nd = x.ndim - 2
    kernel = list(kernel_shape) if kernel_shape else list(w_spatial)
    strides = list(strides) if strides else [1] * nd
    dilations = list(dilations) if dilations else [1] * nd
    begin, end = conv_pads(x.shape[2:], kernel, strides, dilations, pads, auto_pad)
    return kernel, strides, dilations, begin, end


def pad_spatial(x, begin, end, value=0.0):
    """Pad the spatial axes (2:) of an NC... array."""
    if not any(begin) and not any(end):
        return x
    widths = [(0, 0), (0, 0)] + list(zip(begin, end))
    return np.pad(x, widths, constant_values=value)


def windows(xp, kernel, strides, dilations, out_spatial):
    """Strided view (N, C, *kernel, *out) of a padded input; no copy."""
    nd = len(kernel)
    s = xp.strides
    shape = xp.shape[:2] + tuple(kernel) + tuple(out_spatial)
    strides_k = tuple(s[2 + i] * dilations[i] for i in range(nd))
    strides_o = tuple(s[2 + i] * strides[i] for i in range(nd))
    return as_strided(xp, shape=shape, strides=s[:2] + strides_k + strides_o, writeable=False)


def out_size(size, k, s, d, pb, pe, ceil_mode=False):
    span = size + pb + pe - ((k - 1) * d + 1)
    if ceil_mode:
        out = -(-span // s) + 1
        if (out - 1) * s >= size + pb:
            out -= 1
        return out
    return span // s + 1


def conv_nd(x, w, b, kernel, strides, dilations, begin, end, group, pad_value=0.0, relu=False):
    """Grouped N-d convolution (N, C, *in) -> (N, M, *out) as im2col + BLAS, in blocks.

    Works in any float dtype (the INT8 simulator runs it on codes in float32/float64, exactly).
    """
    n, c = x.shape[:2]
    m = w.shape[0]
    nd = len(kernel)
    xp = pad_spatial(x, begin, end, pad_value)
    out_sp = [out_size(x.shape[2 + i], kernel[i], strides[i], dilations[i], begin[i], end[i])
              for i in range(nd)]
    dtype = np.result_type(x.dtype, w.dtype)
    y = np.empty((n, m, int(np.prod(out_sp))), dtype=dtype)
    if y.size == 0:
        return y.reshape((n, m) + tuple(out_sp))
    bias = None if b is None else b.astype(dtype, copy=False).reshape(m, 1)
    cg, mg = c // group, m // group
    if group == c and cg == 1 and mg == 1 and group > 1:
        step = max(1, DEPTHWISE_BLOCK_BYTES // (n * y.shape[2] * y.itemsize))
        parallel(partial(_depthwise, xp[:, c0:c0 + step], w[c0:c0 + step], None if bias is None else
                         bias[c0:c0 + step], relu, kernel, strides, dilations, out_sp, y[:, c0:c0 + step])
                 for c0 in range(0, c, step))
    else:
        view = windows(xp, kernel, strides, dilations, out_sp)
        for g in range(group):
            gm, gc = slice(g * mg, (g + 1) * mg), slice(g * cg, (g + 1) * cg)
            _gemm_blocks(view[:, gc], w[gm].reshape(mg, -1).astype(dtype, copy=False),
                         None if bias is None else bias[gm], y[:, gm], relu)
    return y.reshape((n, m) + tuple(out_sp))


# Output columns per block: the im2col block (K x cols) stays in cache between being written and
# being read by the GEMM, which is still large enough to run BLAS at full speed. Deep layers
# (large K) take fewer columns, so that one block never exceeds IM2COL_BYTES. With enough
# columns there are >= 4 blocks per thread (threads taking the next block stay balanced);
# with fewer, the threads share out the output channels of each block instead.
BLOCK_COLS = 4096
MIN_COLS = 512
IM2COL_BYTES = 16 << 20


def _gemm_blocks(view, w2, bias, y, relu):
    """y[s] = w2 @ im2col(view[s]) (+ bias, relu), block by block, on every thread.

    view is (N, C, *kernel, *out) and y is (N, M, L).
    """
    m, k = w2.shape
    widest = max(1, min(BLOCK_COLS, IM2COL_BYTES // (k * y.itemsize)))
    total = y.shape[0] * y.shape[2]
    if total >= 2 * THREADS * MIN_COLS and THREADS > 1:
        width = min(widest, max(MIN_COLS, total // (4 * THREADS)))
        parallel(partial(_block_job, w2, bias, relu, *b) for b in _blocks(view, y, width))
        return
    step = -(-m // THREADS)
    for gather, target, scatter in _blocks(view, y, widest):
        cols = gather()
        parallel(partial(_block_job, w2, bias, relu, lambda c=cols: c, target, scatter, slice(m0, m0 + step))
                 for m0 in range(0, m, step))


def _block_job(w2, bias, relu, gather, target, scatter, rows=slice(None)):
    """GEMM of one block (or of some of its output channels), straight into y where y allows."""
    dst = target(rows)
    out = np.matmul(w2[rows], gather(), out=dst)
    _finish(out, None if bias is None else bias[rows], relu)
    if dst is None:
        scatter(rows, out)


def _blocks(view, y, width):
    """(gather, target, scatter) for each block of at most `width` output columns.

    gather() copies the block's im2col columns (K, cols). target(rows) is the part of y the GEMM
    writes for those output channels, or None for a block of several samples: its GEMM gives
    (M, samples, L), which scatter(rows, out) puts into y's (samples, M, L).
    """
    n = view.shape[0]
    nd = (view.ndim - 2) // 2
    k = int(np.prod(view.shape[1:2 + nd]))
    out_sp = view.shape[2 + nd:]
    length = y.shape[2]
    blocks = []
    if length >= width or n == 1:
        row = length // out_sp[0]                    # columns per index of the first out axis
        rows = max(1, width // row)
        for s in range(n):
            for r0 in range(0, out_sp[0], rows):
                r1 = min(out_sp[0], r0 + rows)
                part = view[s][(slice(None),) * (1 + nd) + (slice(r0, r1),)]
                dst = y[s, :, r0 * row:r1 * row]
                blocks.append((partial(_gather, part, k), dst.__getitem__, None))
        return blocks
    per = min(n, width // length)
    for s0 in range(0, n, per):
        dst = y[s0:s0 + per]
        part = np.moveaxis(view[s0:s0 + per], 0, 1 + nd)      # (C, *kernel, samples, *out)
        blocks.append((partial(_gather, part, k), lambda rows: None, partial(_scatter, dst)))
    return blocks


def _gather(part, k):
    cols = np.empty(part.shape, part.dtype)
    cols[...] = part
    return cols.reshape(k, -1)


def _scatter(dst, rows, out):
    dst[:, rows] = out.reshape(out.shape[0], dst.shape[0], -1).transpose(1, 0, 2)


def _finish(y, bias, relu):
    """Bias and fused Relu in place, while the block is still in cache."""
    if bias is not None:
        y += bias
    if relu:
        np.maximum(y, 0, out=y)
    return y


# Output bytes per block of depthwise channels: the accumulator stays in cache over the taps.
DEPTHWISE_BLOCK_BYTES = 1 << 20


def _depthwise(xp, w, bias, relu, kernel, strides, dilations, out_sp, y):
    """One block of channels of a depthwise convolution: a weighted sum of shifted views."""
    view = windows(xp, kernel, strides, dilations, out_sp)
    n, c = xp.shape[:2]
    acc = y.reshape((n, c) + tuple(out_sp))
    tap = np.empty_like(acc)
    wk = w.reshape(c, -1).astype(y.dtype, copy=False)
    channel = (1, c) + (1,) * len(out_sp)
    for idx, pos in enumerate(np.ndindex(*kernel)):
        np.multiply(view[(slice(None), slice(None)) + pos], wk[:, idx].reshape(channel),
                    out=acc if idx == 0 else tap)
        if idx:
            acc += tap
    _finish(y, bias, relu)


@op("Conv")
def Conv(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
         pads=None, strides=None, _relu=0):
    kernel, strides, dilations, begin, end = _spatial_attrs(
        x, w.shape[2:], kernel_shape, strides, dilations, pads, auto_pad)
    return conv_nd(x, w, b, kernel, strides, dilations, begin, end, group, relu=bool(_relu))


@op("ConvTranspose")
def ConvTranspose(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1,
                  kernel_shape=None, output_padding=None, output_shape=None, pads=None,
                  strides=None):
    nd = x.ndim - 2
    kernel = list(kernel_shape) if kernel_shape else list(w.shape[2:])
    strides = list(strides) if strides else [1] * nd
    dilations = list(dilations) if dilations else [1] * nd
    output_padding = list(output_padding) if output_padding else [0] * nd
    in_sp = x.shape[2:]
    full = [(in_sp[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 + output_padding[i]
            for i in range(nd)]
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        # Crop the full result to the target size; SAME_UPPER puts the odd pixel at the end.
        target = (list(output_shape)[-nd:] if output_shape is not None
                  else [in_sp[i] * strides[i] for i in range(nd)])
        total = [full[i] - target[i] for i in range(nd)]
        begin = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
        end = [total[i] - begin[i] for i in range(nd)]
    else:
        pads = list(pads) if pads else [0] * (2 * nd)
        begin, end = pads[:nd], pads[nd:]
    # Scatter-add formulation: each input pixel adds its weighted kernel to the output.
    n, c = x.shape[:2]
    cg = c // group
    mg = w.shape[1]
    m = mg * group
    y = np.zeros((n, m) + tuple(full), dtype=x.dtype)
    xs = x.reshape(n, group, cg, -1)
    for g in range(group):
        wg = w[g * cg:(g + 1) * cg].reshape(cg, mg * int(np.prod(kernel)))
        # (n, L, cg) @ (cg, mg*K) -> (n, L, mg, *kernel)
        contrib = np.matmul(xs[:, g].transpose(0, 2, 1), wg).reshape(
            (n,) + tuple(in_sp) + (mg,) + tuple(kernel))
        for pos in np.ndindex(*kernel):
            sl = tuple(slice(pos[i] * dilations[i],
                             pos[i] * dilations[i] + (in_sp[i] - 1) * strides[i] + 1, strides[i])
                       for i in range(nd))
            part = contrib[(slice(None),) + (slice(None),) * nd + (slice(None),) + pos]
            # part: (n, *in_sp, mg) -> (n, mg, *in_sp)
            part = np.moveaxis(part, -1, 1)
            y[(slice(None), slice(g * mg, (g + 1) * mg)) + sl] += part
    y = y[(slice(None), slice(None)) + tuple(slice(begin[i], full[i] - end[i]) for i in range(nd))]
    if b is not None:
        y = y + b.reshape((1, m) + (1,) * nd)
    return np.ascontiguousarray(y)


@op("BatchNormalization")
def BatchNormalization(x, scale, bias, mean, var, *, epsilon=1e-5, momentum=0.9,
                       training_mode=0, spatial=1, _num_outputs=1):
    if training_mode or _num_outputs > 1:
        raise TypeError("BatchNormalization in training mode (batch statistics, running-mean "
                        "outputs) is not supported (inference only)")
    f = bn_factor(scale, var, epsilon)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x * f.reshape(shape) + (bias - mean * f).reshape(shape)).astype(x.dtype, copy=False)


def bn_factor(scale, var, epsilon):
    """scale / sqrt(var + eps) in float32, the way the reference's BN folding computes it."""
    var = var.astype(np.float32)
    return (scale.astype(np.float32) / np.sqrt(var + np.float32(epsilon))).astype(np.float32)
