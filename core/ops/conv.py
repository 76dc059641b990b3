"""Convolutions (im2col + BLAS in cache-sized blocks on every thread) and batch normalization."""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

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


def conv_nd(x, w, b, kernel, strides, dilations, begin, end, group, pad_value=0.0, relu=False,
            leaky=None, pool=None):
    """Grouped N-d convolution (N, C, *in) -> (N, M, *out) as im2col + BLAS, in blocks.

    Works in any float dtype (the INT8 simulator runs it on codes in float32/float64, exactly).
    `relu`, or `leaky` (a LeakyRelu slope in [0, 1]), is applied to each block while in cache;
    so is `pool` (kh, kw), a MaxPool whose windows tile the output (kernel = stride, no padding),
    and the result is then the pooled tensor.
    """
    n, c = x.shape[:2]
    m = w.shape[0]
    nd = len(kernel)
    xp = pad_spatial(x, begin, end, pad_value)
    out_sp = [out_size(x.shape[2 + i], kernel[i], strides[i], dilations[i], begin[i], end[i])
              for i in range(nd)]
    tiles = None if pool is None else tuple(pool)
    cg, mg = c // group, m // group
    depthwise = group == c and cg == 1 and mg == 1 and group > 1
    if tiles and (depthwise or nd != 2 or any(o % t for o, t in zip(out_sp, tiles))):
        y = conv_nd(x, w, b, kernel, strides, dilations, begin, end, group, pad_value, relu, leaky)
        return _max_tiles(y, tiles)
    dtype = np.result_type(x.dtype, w.dtype)
    shape = (n, m) + (tuple(o // t for o, t in zip(out_sp, tiles)) if tiles else tuple(out_sp))
    y = np.empty(shape if tiles else (n, m, int(np.prod(out_sp))), dtype=dtype)
    if y.size == 0:
        return y.reshape(shape)
    bias = None if b is None else b.astype(dtype, copy=False).reshape(m, 1)
    act = Activation(relu, None if leaky is None else np.asarray(leaky, dtype))
    if depthwise:
        step = max(1, DEPTHWISE_BLOCK_BYTES // (n * y.shape[2] * y.itemsize))
        parallel(partial(_depthwise, xp[:, c0:c0 + step], w[c0:c0 + step], None if bias is None else
                         bias[c0:c0 + step], act, kernel, strides, dilations, out_sp, y[:, c0:c0 + step])
                 for c0 in range(0, c, step))
    else:
        view = windows(xp, kernel, strides, dilations, out_sp)
        for g in range(group):
            gm, gc = slice(g * mg, (g + 1) * mg), slice(g * cg, (g + 1) * cg)
            _gemm_blocks(view[:, gc], w[gm].reshape(mg, -1).astype(dtype, copy=False),
                         None if bias is None else bias[gm], y[:, gm], act, tiles)
    return y.reshape(shape)


# Output columns per block. A block is a handful of numpy calls (im2col, GEMM, bias, activation,
# pooling) and the Python between them holds the GIL: with small blocks the threads queue for it
# (4096 columns made yolov3-tiny 5% slower at batch 1 and 10 than 16384, measured; cache
# locality mattered less). Deep layers (large K) take fewer columns, so that one im2col block
# never exceeds IM2COL_BYTES. With enough columns there are >= 4 blocks per thread (threads
# taking the next block stay balanced); with fewer, the threads share out the output channels
# of each block instead.
BLOCK_COLS = 16384
MIN_COLS = 512
IM2COL_BYTES = 16 << 20


def _gemm_blocks(view, w2, bias, y, act, tiles=None):
    """y[s] = act(w2 @ im2col(view[s]) + bias), block by block, on every thread.

    view is (N, C, *kernel, *out); y is (N, M, L), or (N, M, *out / tiles) when max-pooling.
    """
    m, k = w2.shape
    nd = (view.ndim - 2) // 2
    out_sp = view.shape[2 + nd:]
    widest = max(1, min(BLOCK_COLS, IM2COL_BYTES // (k * y.itemsize)))
    total = view.shape[0] * int(np.prod(out_sp))
    by_blocks = total >= 2 * THREADS * MIN_COLS and THREADS > 1
    width = min(widest, max(MIN_COLS, total // (4 * THREADS))) if by_blocks else widest
    if tiles and not _blocks_tile(view, width, tiles[0]):
        # Pooling per block would need other blocks than a plain convolution uses, and BLAS
        # rounds a column differently in a block of another width: convolve, then pool.
        full = np.empty(view.shape[:1] + (m,) + out_sp, y.dtype)
        _gemm_blocks(view, w2, bias, full.reshape(full.shape[0], m, -1), act)
        _max_tiles(full, tiles, y)
        return
    if by_blocks:
        parallel(partial(_block_job, w2, bias, act, *b) for b in _blocks(view, y, width, tiles))
        return
    step = -(-m // THREADS)
    for gather, target, scatter in _blocks(view, y, width, tiles):
        cols = gather(THREADS)
        parallel(partial(_block_job, w2, bias, act, lambda c=cols: c, target, scatter, slice(m0, m0 + step))
                 for m0 in range(0, m, step))


def _block_job(w2, bias, act, gather, target, scatter, rows=slice(None)):
    """GEMM of one block (or of some of its output channels), straight into y where y allows."""
    dst = target(rows)
    out = np.matmul(w2[rows], gather(), out=dst)
    bias = None if bias is None else bias[rows]
    if dst is None:
        scatter(rows, out, bias, act)
    else:
        _finish(out, bias, act)


def _no_target(rows):
    return None


def _blocks(view, y, width, tiles=None):
    """(gather, target, scatter) for each block of at most `width` output columns.

    gather() gives the block's im2col columns (K, cols). target(rows) is the part of y the GEMM
    writes for those output channels, or None when the GEMM result needs reshaping first: for a
    block of several samples its GEMM gives (M, samples, L), which scatter(rows, out, bias, act)
    puts into y's (samples, M, L); with `tiles` scatter max-pools the block into y.
    """
    n = view.shape[0]
    nd = (view.ndim - 2) // 2
    k = int(np.prod(view.shape[1:2 + nd]))
    out_sp = view.shape[2 + nd:]
    length = int(np.prod(out_sp))
    step0 = tiles[0] if tiles else 1
    blocks = []
    if _in_bands(n, length, width):
        row = length // out_sp[0]                    # columns per index of the first out axis
        rows = _band_rows(row, width)
        for s in range(n):
            for r0 in range(0, out_sp[0], rows):
                r1 = min(out_sp[0], r0 + rows)
                part = view[s][(slice(None),) * (1 + nd) + (slice(r0, r1),)]
                if tiles:
                    dst = y[s, :, r0 // step0:r1 // step0]
                    blocks.append((partial(_gather, part, k), _no_target,
                                   partial(_pool_band, dst, tiles)))
                else:
                    dst = y[s, :, r0 * row:r1 * row]
                    blocks.append((partial(_gather, part, k), dst.__getitem__, None))
        return blocks
    per = min(n, width // length)
    for s0 in range(0, n, per):
        dst = y[s0:s0 + per]
        part = np.moveaxis(view[s0:s0 + per], 0, 1 + nd)      # (C, *kernel, samples, *out)
        scatter = partial(_pool_samples, dst, tiles, out_sp) if tiles else partial(_scatter, dst)
        blocks.append((partial(_gather, part, k), _no_target, scatter))
    return blocks


def _in_bands(n, length, width):
    """Whether blocks are bands of rows of one sample (else groups of whole samples)."""
    return length >= width or n == 1


def _band_rows(row, width):
    """Rows of the first output axis per band block: an even number when more than one, the
    same whether or not a 2x2 MaxPool follows (so that fusing it changes no column's block)."""
    rows = max(1, width // row)
    return rows if rows < 2 else rows // 2 * 2


def _blocks_tile(view, width, kh):
    """Whether the blocks of `_blocks` hold whole pooling windows of height kh."""
    nd = (view.ndim - 2) // 2
    out_sp = view.shape[2 + nd:]
    length = int(np.prod(out_sp))
    if not _in_bands(view.shape[0], length, width):
        return True
    return _band_rows(length // out_sp[0], width) % kh == 0


def _gather(part, k, threads=1):
    """The block's im2col matrix (K, cols): a view when no copy is needed (1x1 stride-1
    convolutions), else a copy, shared out over `threads` by input channel."""
    flat = _as_matrix(part, k)
    if flat is not None:
        return flat
    cols = np.empty(part.shape, part.dtype)
    c = part.shape[0]
    step = -(-c // threads)
    parallel(partial(np.copyto, cols[c0:c0 + step], part[c0:c0 + step]) for c0 in range(0, c, step))
    return cols.reshape(k, -1)


def _as_matrix(part, k):
    """part (C, *rest) as a (K, cols) view that BLAS reads directly, or None.

    Possible when K == C (1x1 kernels) and each channel's block is contiguous: BLAS then steps
    from channel to channel by the plane stride.
    """
    if part.shape[0] != k or part.size == 0 or part.strides[0] < part.size // k * part.itemsize:
        return None                  # BLAS needs rows that do not overlap
    expected = part.itemsize
    for size, stride in zip(reversed(part.shape[1:]), reversed(part.strides[1:])):
        if size != 1 and stride != expected:
            return None
        expected *= size
    return as_strided(part, shape=(k, part.size // k), strides=(part.strides[0], part.itemsize),
                      writeable=False)


def _scatter(dst, rows, out, bias, act):
    _finish(out, bias, act)
    dst[:, rows] = out.reshape(out.shape[0], dst.shape[0], -1).transpose(1, 0, 2)


# Pooling goes first, bias and activation after on the 4x smaller result: max commutes with
# adding a per-channel constant and with Relu and LeakyRelu of a positive slope (all monotonic
# under IEEE rounding), so every value is the same; only the sign of a zero may differ.
def _pool_band(dst, tiles, rows, out, bias, act):
    """Max-pool one sample's GEMM block (M, band rows * width) into dst (M, band/kh, width/kw)."""
    pooled = _max_tiles(out.reshape(out.shape[0], -1, dst.shape[-1] * tiles[1]), tiles, dst[rows])
    _finish(pooled, None if bias is None else bias.reshape(-1, 1, 1), act)


def _pool_samples(dst, tiles, out_sp, rows, out, bias, act):
    """Max-pool a GEMM block of several samples (M, samples * L) into dst (samples, M, ...)."""
    pooled = _max_tiles(out.reshape((out.shape[0], dst.shape[0]) + tuple(out_sp)), tiles)
    _finish(pooled, None if bias is None else bias.reshape(-1, 1, 1, 1), act)
    dst[:, rows] = pooled.swapaxes(0, 1)


def _max_tiles(y, tiles, out=None):
    """Max over non-overlapping (kh, kw) windows of the last two axes (a partial window at the
    end is dropped), into `out` if given. Few calls: blocks are pooled on threads holding the GIL
    between calls."""
    kh, kw = tiles
    y = y[..., :y.shape[-2] // kh * kh, :y.shape[-1] // kw * kw]
    rows = _max_strided(y, kh, -2)
    return _max_strided(rows, kw, -1, out)


def _max_strided(y, k, axis, out=None):
    """Max of the k interleaved slices y[..., j::k] along `axis` (k = 1: a copy)."""
    def part(j):
        index = [slice(None)] * y.ndim
        index[axis] = slice(j, None, k)
        return y[tuple(index)]
    if k == 1:
        if out is None:
            return part(0).copy()
        out[...] = part(0)
        return out
    out = np.maximum(part(0), part(1), out=out)
    for j in range(2, k):
        np.maximum(out, part(j), out=out)
    return out


class Activation(NamedTuple):
    """What a convolution applies to its blocks after the bias: Relu, or LeakyRelu's slope."""
    relu: bool = False
    leaky: np.ndarray | None = None


def _finish(y, bias, act):
    """Bias and fused activation in place, while the block is still in cache.

    LeakyRelu as max(y, a*y), the same arithmetic as the LeakyRelu op, so fusing changes no bit.
    """
    if bias is not None:
        y += bias
    if act.relu:
        np.maximum(y, 0, out=y)
    elif act.leaky is not None:
        np.maximum(y, np.multiply(y, act.leaky), out=y)
    return y


# Output bytes per block of depthwise channels: the accumulator stays in cache over the taps.
DEPTHWISE_BLOCK_BYTES = 1 << 20


def _depthwise(xp, w, bias, act, kernel, strides, dilations, out_sp, y):
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
    _finish(y, bias, act)


@op("Conv")
def Conv(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
         pads=None, strides=None, _relu=0, _leaky=None, _pool=None):
    """`_leaky` and `_pool` are set only by the interpreter, on a Conv it runs together with the
    LeakyRelu and the tiling MaxPool after it."""
    kernel, strides, dilations, begin, end = _spatial_attrs(
        x, w.shape[2:], kernel_shape, strides, dilations, pads, auto_pad)
    return conv_nd(x, w, b, kernel, strides, dilations, begin, end, group, relu=bool(_relu),
                   leaky=_leaky, pool=_pool)


@op("Deconv")  # the reference's name; ONNX ConvTranspose weights and attributes
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
