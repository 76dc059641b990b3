"""Exact integer kernels of the INT8 simulator (reference D.5-D.9), on int8/uint8 code arrays.

Convolutions run on BLAS: an int8 x int8 product summed in float32 is exact only while every
partial sum stays below 2**24, so each call bounds the accumulator (largest per-channel sum of
|Wq| times the largest |x| actually present) and uses float32 when that bound is safe and
float64 (exact below 2**53) otherwise. Requantization is done in int64.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .ops.conv import _spatial_attrs, conv_nd
from .quantmath import requantize, right_shift_round, to_codes

FLOAT32_EXACT = 2**24
# Elements requantized at a time (int64 temporaries of a few times 8 bytes each).
REQUANT_ELEMENTS = 4 << 20


def accumulator_dtype(w_abs_sum: int, x: np.ndarray) -> type:
    """float32 if sum|Wq| * max|x| keeps every partial sum exact in float32, else float64."""
    if x.size == 0:
        return np.float32
    peak = max(abs(int(x.min())), abs(int(x.max())))
    return np.float32 if w_abs_sum * peak < FLOAT32_EXACT else np.float64


def conv_sum(x: np.ndarray, wq: np.ndarray, w_abs_sum: int, attrs: dict,
             pad_code: int = 0) -> np.ndarray:
    """Exact integer convolution sum(Wq * x) (no bias), padding with `pad_code`, held in the
    float type that keeps it exact (see `accumulator_dtype`)."""
    kernel, strides, dilations, begin, end = _spatial_attrs(
        x, wq.shape[2:], attrs.get("kernel_shape"), attrs.get("strides"), attrs.get("dilations"),
        attrs.get("pads"), attrs.get("auto_pad", "NOTSET"))
    ft = accumulator_dtype(w_abs_sum, x)
    return conv_nd(x.astype(ft), wq.astype(ft, copy=False), None, kernel, strides, dilations,
                   begin, end, int(attrs.get("group", 1)), pad_value=float(pad_code))


def conv_accumulate(x: np.ndarray, wq: np.ndarray, w_abs_sum: int, attrs: dict,
                    pad_code: int = 0) -> np.ndarray:
    """`conv_sum` as an int64 array."""
    return conv_sum(x, wq, w_abs_sum, attrs, pad_code).astype(np.int64)


def channel_shape(values: np.ndarray, ndim: int) -> np.ndarray:
    """Per-channel values shaped to broadcast along axis 1 of an `ndim` tensor."""
    return np.asarray(values).reshape((1, -1) + (1,) * (ndim - 2))


def conv_int8(x: np.ndarray, *, wq: np.ndarray, w_abs_sum: int, bias_q: np.ndarray,
              multiplier: np.ndarray, shift: np.ndarray, attrs: dict, zp_in: int, zp_out: int,
              out_signed: bool, relu: bool) -> np.ndarray:
    """INT8 Conv (D.5): per channel sat(RightShiftRound((acc + bias) * M, shift) + zp_out).

    The int64 requantization runs a few samples at a time, so its temporaries stay small
    whatever the batch.
    """
    acc = conv_sum(x, wq, w_abs_sum, attrs, zp_in)
    nd = acc.ndim
    bias, mult, shift = (channel_shape(v, nd) for v in (bias_q, multiplier, shift))
    out = np.empty(acc.shape, np.int8 if out_signed else np.uint8)
    step = max(1, REQUANT_ELEMENTS // max(1, acc[0].size))
    for s in range(0, acc.shape[0], step):
        part = acc[s:s + step].astype(np.int64)
        part += bias
        y = requantize(part, mult, shift, zp_out)
        if relu:
            np.maximum(y, zp_out, out=y)
        out[s:s + step] = to_codes(y, out_signed)
    return out


def lut_kernel(fn: Callable[[np.ndarray], np.ndarray], signed: bool) -> Callable[[np.ndarray], np.ndarray]:
    """An elementwise function of int8/uint8 codes as a 256-entry table lookup (exact: the
    table is `fn` applied to every possible code)."""
    codes = np.arange(256, dtype=np.uint8)
    lut = fn(codes.view(np.int8) if signed else codes)
    return lambda x: np.take(lut, x.view(np.uint8))


def leaky_relu_int8(x: np.ndarray, *, multiplier: int, shift: int, out_signed: bool) -> np.ndarray:
    """INT8 LeakyRelu (D.6): x >= 0 ? x : RightShiftRound(x * m, r); scales assumed equal."""
    xi = x.astype(np.int32)
    neg = right_shift_round(xi * multiplier, shift)
    return to_codes(np.where(xi >= 0, xi, neg), out_signed)


def relu_int8(x: np.ndarray, *, zp: int, out_signed: bool) -> np.ndarray:
    """INT8 Relu at an unchanged scale: max(x, zp)."""
    return to_codes(np.maximum(x.astype(np.int32), zp), out_signed)


def mul_shift(x: np.ndarray, *, multiplier: int, shift: int, out_signed: bool, zp_in: int = 0,
              zp_out: int = 0) -> np.ndarray:
    """The requant between two int8 types (D.8): sat(RightShiftRound((x - zp_in) * m, r) + zp_out)
    (MulShift when symmetric, RequantInt with zero points)."""
    v = right_shift_round((x.astype(np.int64) - zp_in) * multiplier, shift)
    return to_codes(v + zp_out, out_signed)


def add_int8(xs: Sequence[np.ndarray], *, multipliers: Sequence[int], shifts: Sequence[int],
             const_codes: np.ndarray | None, relu: bool, out_signed: bool) -> np.ndarray:
    """INT8 Add (D.9): sat(sum_i RightShiftRound(x_i * m_i, r_i)) (+ constant codes, relu)."""
    total = None
    for x, m, r in zip(xs, multipliers, shifts):
        term = right_shift_round(x.astype(np.int64) * m, r)
        total = term if total is None else total + term
    if const_codes is not None:
        total = total + const_codes.astype(np.int64)
    if relu:
        np.maximum(total, 0, out=total)
    return to_codes(total, out_signed)
