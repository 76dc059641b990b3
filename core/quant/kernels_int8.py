"""The INT8 simulator's inner loops, each fused into one pass (numba), with its numpy form.

    y = table_lookup(table, codes)                                   # a 256-entry table of codes
    out = requant_channels(acc, bias, mult, shift, zp=..., lo=..., hi=..., out_dtype=np.int8)
    acc = depthwise_sum(codes, wq, pad_code, kernel, strides, dilations, begin, end)  # int32

Why: after the GEMM, the numpy requantization of a conv walks the tensor six times through int64
temporaries (to int64, + bias, * M, rounding shift, clip, to int8), and np.take converts every
uint8 index to an 8-byte intp; on YOLOv8n that glue took as long as the convolutions. One
compiled pass per tensor reads the accumulator and writes the int8 code. Every loop does the
numpy form's integer operations on the same values (integers are exact in any order), so both
give the same bits (tests/core/quant/test_kernels_int8.py); TPUSHELL_NUMBA=0 runs the numpy forms.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from .. import quantmath as qm
from ..jit import compiled
from ..ops.parallel import parallel

# Below this many elements a tensor is one job: handing halves to two threads costs more.
PARALLEL_ELEMENTS = 1 << 17
# Bounds that never clip (a relu or relu_max that is absent).
NO_LOW, NO_HIGH = -(1 << 62), 1 << 62


# ---- table lookup --------------------------------------------------------------------------------
def _lookup_loop(table, codes, out):
    for i in range(codes.size):
        out[i] = table[codes[i]]


def table_lookup(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """table[x] for int8/uint8 codes x (read as uint8 indices) and a 256-entry table."""
    loop = compiled(_lookup_loop)
    if loop is None or x.size < 2:
        return np.take(table, x.view(np.uint8))
    codes = np.ascontiguousarray(x).view(np.uint8)
    out = np.empty(codes.shape, table.dtype)
    flat_in, flat_out = codes.reshape(-1), out.reshape(-1)
    _spread(partial(loop, table), flat_in, flat_out)
    return out


def lut_kernel(fn, signed: bool):
    """An elementwise function of int8/uint8 codes as a 256-entry table lookup (exact: the
    table is `fn` applied to every possible code)."""
    table = qm.lut_table(fn, signed)
    return partial(table_lookup, table)


def _spread(loop, flat_in: np.ndarray, flat_out: np.ndarray) -> None:
    """loop(in_part, out_part) over a few contiguous parts of two flat arrays, on every thread."""
    n = flat_in.size
    parts = 1 if n < PARALLEL_ELEMENTS else 4
    step = -(-n // parts)
    parallel(partial(loop, flat_in[i:i + step], flat_out[i:i + step]) for i in range(0, n, step))


# ---- per-channel requantization (Conv, D.5) ------------------------------------------------------
def _requant_loop(acc, bias, mult, shift, zp, lo, hi, qmin, qmax, row0, out):
    """out[r] = sat(clamp(RightShiftRound((acc[r] + bias) * M, shift) + zp, lo, hi)) for rows
    r of (sample, channel); row0 is the first row's index in the whole tensor."""
    channels = bias.size
    for r in range(acc.shape[0]):
        c = (row0 + r) % channels
        b, m, s = bias[c], mult[c], shift[c]
        half = (np.int64(1) << (s - 1)) if s > 0 else np.int64(0)
        for i in range(acc.shape[1]):
            v = (np.int64(acc[r, i]) + b) * m
            if s > 0:
                v = (v + half) >> s
            else:
                v = v << -s
            v += zp
            v = min(max(v, lo), hi)
            out[r, i] = min(max(v, qmin), qmax)


def requant_channels(acc: np.ndarray, bias: np.ndarray, mult: np.ndarray, shift: np.ndarray, *,
                     zp: int, lo: int, hi: int, out_dtype: type) -> np.ndarray:
    """Codes sat(clamp(RightShiftRound((acc + bias_c) * M_c, shift_c) + zp, lo, hi)) of an exact
    integer accumulator (N, C, ...) held in float or int (D.5 MultiplierShift; lo/hi are the
    fused Relu's bounds, NO_LOW/NO_HIGH when absent)."""
    loop = compiled(_requant_loop)
    if loop is None:
        return _requant_channels_numpy(acc, bias, mult, shift, zp, lo, hi, out_dtype)
    n, c = acc.shape[:2]
    rows = np.ascontiguousarray(acc).reshape(n * c, -1)
    out = np.empty(acc.shape, out_dtype)
    flat = out.reshape(n * c, -1)
    qmin, qmax = qm.qrange(out_dtype == np.int8)
    args = (np.asarray(bias, np.int64), np.asarray(mult, np.int64), np.asarray(shift, np.int64),
            zp, lo, hi, qmin, qmax)
    parts = 1 if acc.size < PARALLEL_ELEMENTS or n * c < 4 else 4
    step = -(-(n * c) // parts)
    parallel(partial(loop, rows[r:r + step], *args, r, flat[r:r + step])
             for r in range(0, n * c, step))
    return out


# Elements requantized at a time by numpy (int64 temporaries of a few times 8 bytes each).
REQUANT_ELEMENTS = 4 << 20


def _requant_channels_numpy(acc, bias, mult, shift, zp, lo, hi, out_dtype):
    nd = acc.ndim
    bias, mult, shift = (channel_shape(v, nd) for v in (bias, mult, shift))
    out = np.empty(acc.shape, out_dtype)
    step = max(1, REQUANT_ELEMENTS // max(1, acc[0].size))
    for s in range(0, acc.shape[0], step):
        part = acc[s:s + step].astype(np.int64)
        part += bias
        y = qm.requantize(part, mult, shift, zp)
        if lo != NO_LOW:
            np.maximum(y, lo, out=y)
        if hi != NO_HIGH:
            np.minimum(y, hi, out=y)
        out[s:s + step] = qm.to_codes(y, out_dtype == np.int8)
    return out


def channel_shape(values: np.ndarray, ndim: int) -> np.ndarray:
    """Per-channel values shaped to broadcast along axis 1 of an `ndim` tensor."""
    return np.asarray(values).reshape((1, -1) + (1,) * (ndim - 2))


# ---- depthwise convolution on codes --------------------------------------------------------------
def _depthwise_loop(xp, w, kh, kw, sh, sw, dh, dw, out):
    """out[n, c] = sum over taps of w[c, i, j] * xp[n, c, oh*sh + i*dh, ow*sw + j*dw] (exact
    int32 sums of int8 x int8 products).

    Each output row accumulates whole input rows, one contiguous stretch per tap, into a local
    row (every column, also those a stride skips): a unit-stride loop LLVM vectorizes, 4-15x
    faster than indexing tap by tap, and 5x faster than BLAS on float copies.
    """
    oh, ow = out.shape[2], out.shape[3]
    acc = np.zeros(ow * sw, np.int32)
    for n in range(xp.shape[0]):
        for c in range(xp.shape[1]):
            for y in range(oh):
                acc[:] = 0
                for i in range(kh):
                    src = xp[n, c, y * sh + i * dh]
                    for j in range(kw):
                        wt = np.int32(w[c, i, j])
                        seg = src[j * dw:j * dw + ow * sw]
                        for x in range(min(seg.size, acc.size)):
                            acc[x] += wt * np.int32(seg[x])
                for x in range(ow):
                    out[n, c, y, x] = acc[x * sw]


# int32 sums are exact while taps * 255 * 128 (the largest |code x code|) stays below 2**31.
DEPTHWISE_MAX_TAPS = (2**31 - 1) // (255 * 128)


def depthwise_sum(x: np.ndarray, wq: np.ndarray, pad_code: int, kernel, strides, dilations,
                  begin, end) -> np.ndarray | None:
    """The exact int32 sums of a 2-D depthwise convolution of codes x (N, C, H, W) with filter
    codes wq (C, 1, kh, kw), padded with `pad_code`; None without numba (the caller keeps
    its BLAS way)."""
    loop = compiled(_depthwise_loop)
    if loop is None or x.ndim != 4 or kernel[0] * kernel[1] > DEPTHWISE_MAX_TAPS:
        return None
    xp = pad_codes(x, begin, end, pad_code)
    kh, kw = kernel
    oh = (xp.shape[2] - (kh - 1) * dilations[0] - 1) // strides[0] + 1
    ow = (xp.shape[3] - (kw - 1) * dilations[1] - 1) // strides[1] + 1
    out = np.empty((x.shape[0], x.shape[1], oh, ow), np.int32)
    if out.size == 0:
        return out
    w = np.ascontiguousarray(wq.reshape(wq.shape[0], kh, kw), np.int32)
    c = x.shape[1]
    parts = 1 if out.size < PARALLEL_ELEMENTS or c < 4 else 4
    step = -(-c // parts)
    parallel(partial(loop, xp[:, c0:c0 + step], w[c0:c0 + step], kh, kw, *strides, *dilations,
                     out[:, c0:c0 + step]) for c0 in range(0, c, step))
    return out


def pad_codes(x: np.ndarray, begin, end, value: int, dtype=None) -> np.ndarray:
    """x (N, C, *spatial) padded with `value` on the spatial axes, as `dtype` (default x's)."""
    dtype = dtype or x.dtype
    if not any(begin) and not any(end):
        return x.astype(dtype, copy=False)
    shape = x.shape[:2] + tuple(s + b + e for s, b, e in zip(x.shape[2:], begin, end))
    xp = np.full(shape, value, dtype)
    xp[(slice(None), slice(None)) + tuple(slice(b, b + s) for b, s in zip(begin, x.shape[2:]))] = x
    return xp


# ---- MatMul requantization (K 6.8): one multiplier, rounding half away from zero ------------------
def _requant_away_loop(acc, bias, mult, shift, lo, qmin, qmax, out):
    """out[r, i] = sat(max(RightShiftRound_away((acc[r, i] + bias[i]) * m, shift), lo))."""
    half = (np.int64(1) << (shift - 1)) if shift > 0 else np.int64(0)
    for r in range(acc.shape[0]):
        for i in range(acc.shape[1]):
            v = (np.int64(acc[r, i]) + bias[i]) * mult
            if shift > 0:
                mag = (abs(v) + half) >> shift
                v = -mag if v < 0 else mag
            else:
                v = v << -shift
            out[r, i] = min(max(max(v, lo), qmin), qmax)


def requant_away(acc: np.ndarray, bias: np.ndarray | None, mult: int, shift: int, *, relu: bool,
                 out_dtype: type) -> np.ndarray:
    """Codes sat(RightShiftRound_away((acc + bias) * m, shift)), then max(., 0) with `relu`, of
    an exact integer accumulator (..., K) and a bias along its last axis (or none)."""
    loop = compiled(_requant_away_loop)
    k = acc.shape[-1] if acc.ndim else 1
    if loop is None or acc.size == 0 or (bias is not None and np.shape(bias) != (k,)):
        return _requant_away_numpy(acc, bias, mult, shift, relu, out_dtype)
    rows = np.ascontiguousarray(acc).reshape(-1, k)
    out = np.empty(acc.shape, out_dtype)
    qmin, qmax = qm.qrange(out_dtype == np.int8)
    b = np.zeros(k, np.int64) if bias is None else np.asarray(bias, np.int64)
    loop(rows, b, np.int64(mult), np.int64(shift), 0 if relu else NO_LOW, qmin, qmax,
         out.reshape(-1, k))
    return out


def _requant_away_numpy(acc, bias, mult, shift, relu, out_dtype):
    acc = acc.astype(np.int64)
    if bias is not None:
        acc += bias
    y = qm.right_shift_round_away(acc * mult, shift)
    return qm.to_codes(np.maximum(y, 0) if relu else y, out_dtype == np.int8)


# ---- Add (K 6.3) and Mul (K 6.6) of two tensors of one shape ------------------------------------
def _add_loop(a, b, ma, ra, mb, rb, lo, qmin, qmax, out):
    """out = sat(max(RightShiftRound(a * ma, ra) + RightShiftRound(b * mb, rb), lo))."""
    ha = (np.int64(1) << (ra - 1)) if ra > 0 else np.int64(0)
    hb = (np.int64(1) << (rb - 1)) if rb > 0 else np.int64(0)
    for i in range(a.size):
        u = np.int64(a[i]) * ma
        u = (u + ha) >> ra if ra > 0 else u << -ra
        v = np.int64(b[i]) * mb
        v = (v + hb) >> rb if rb > 0 else v << -rb
        out[i] = min(max(max(u + v, lo), qmin), qmax)


def _mul_loop(a, b, m, r, lo, qmin, qmax, out):
    """out = sat(max(RightShiftRound(a * b * m, r), lo))."""
    h = (np.int64(1) << (r - 1)) if r > 0 else np.int64(0)
    for i in range(a.size):
        v = np.int64(a[i]) * np.int64(b[i]) * m
        v = (v + h) >> r if r > 0 else v << -r
        out[i] = min(max(max(v, lo), qmin), qmax)


def add_codes(a: np.ndarray, b: np.ndarray, multipliers, shifts, relu: bool,
              out_dtype: type) -> np.ndarray | None:
    """INT8 Add of two code tensors of one shape in one pass, or None (numba off, or shapes
    that broadcast: the caller's numpy way)."""
    numbers = (multipliers[0], shifts[0], multipliers[1], shifts[1])
    return _binary(_add_loop, a, b, numbers, relu, out_dtype)


def _mul_rows_loop(a, b, m, r, lo, qmin, qmax, out):
    """_mul_loop with one b value per row of a (a channel gate: (N, C, H, W) x (N, C, 1, 1))."""
    h = (np.int64(1) << (r - 1)) if r > 0 else np.int64(0)
    for row in range(a.shape[0]):
        g = np.int64(b[row]) * m
        for i in range(a.shape[1]):
            v = np.int64(a[row, i]) * g
            v = (v + h) >> r if r > 0 else v << -r
            out[row, i] = min(max(max(v, lo), qmin), qmax)


def mul_codes(a: np.ndarray, b: np.ndarray, multiplier: int, shift: int, relu: bool,
              out_dtype: type) -> np.ndarray | None:
    """INT8 Mul of two code tensors of one shape, or of a tensor and a per-(sample, channel)
    gate, in one pass; None otherwise (as `add_codes`). Integer products commute exactly, so
    the gate may be either operand."""
    if a.ndim == b.ndim >= 3 and a.shape != b.shape:
        big, gate = (a, b) if a.size > b.size else (b, a)
        if gate.shape == big.shape[:2] + (1,) * (big.ndim - 2) and compiled(_mul_rows_loop):
            rows = np.ascontiguousarray(big).reshape(big.shape[0] * big.shape[1], -1)
            out = _binary(_mul_rows_loop, rows, np.ascontiguousarray(gate).reshape(-1),
                          (multiplier, shift), relu, out_dtype, flat=False)
            return None if out is None else out.reshape(big.shape)
    return _binary(_mul_loop, a, b, (multiplier, shift), relu, out_dtype)


def _binary(fn, a: np.ndarray, b: np.ndarray, numbers: tuple, relu: bool,
            out_dtype: type, flat: bool = True) -> np.ndarray | None:
    """fn over a and b (flattened when `flat`, else as given), or None (numba off, or flat
    operands of different shapes)."""
    loop = compiled(fn)
    if loop is None or (flat and a.shape != b.shape) or a.size < 2:
        return None
    out = np.empty(a.shape, out_dtype)
    qmin, qmax = qm.qrange(out_dtype == np.int8)
    tail = tuple(np.int64(v) for v in numbers) + (0 if relu else NO_LOW, qmin, qmax)
    if flat:
        a, b = np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(b).reshape(-1)
    loop(a, b, *tail, out.reshape(-1) if flat else out)
    return out


# ---- Softmax along axis 1 (K 6.11) ---------------------------------------------------------------
def _softmax_loop(x, table, scale, signed, qmin, qmax, out):
    """softmax_int8 on x (N, C, L) along C: the same float32 operations in the same order (the
    sum of T[d] runs c = 0, 1, ... as numpy's cumsum does)."""
    half = np.float32(0.5)
    length = x.shape[2]
    top = np.empty(length, np.int32)
    total = np.empty(length, np.float32)
    for n in range(x.shape[0]):
        for i in range(length):
            top[i] = x[n, 0, i]
        for c in range(1, x.shape[1]):
            for i in range(length):
                top[i] = max(top[i], np.int32(x[n, c, i]))
        total[:] = 0
        for c in range(x.shape[1]):
            for i in range(length):
                total[i] += table[min(max(top[i] - np.int32(x[n, c, i]), 0), 255)]
        for i in range(length):
            total[i] = total[i] * scale
        for c in range(x.shape[1]):
            for i in range(length):
                p = table[min(max(top[i] - np.int32(x[n, c, i]), 0), 255)] / total[i]
                if signed:
                    q = np.floor(abs(p) + half)
                    q = -q if p < 0 else q
                else:
                    q = np.floor(p + half)
                out[n, c, i] = min(max(q, np.float32(qmin)), np.float32(qmax))


def softmax_codes(x: np.ndarray, table: np.ndarray, out_scale: float,
                  out_signed: bool) -> np.ndarray | None:
    """INT8 Softmax along axis 1 in one compiled pass per sample, or None without numba."""
    loop = compiled(_softmax_loop)
    if loop is None or x.ndim < 2 or x.size == 0:
        return None
    rows = np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1)
    out = np.empty(x.shape, qm.code_dtype(out_signed))
    qmin, qmax = qm.qrange(out_signed)
    loop(rows, np.asarray(table, np.float32), np.float32(out_scale), out_signed, qmin, qmax,
         out.reshape(rows.shape))
    return out
