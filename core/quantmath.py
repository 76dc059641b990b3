"""Pure quantization arithmetic of the reference (tpu-mlir-reference.md D.3, D.4, D.5, D.10).

Integer results are exact: integer codes are held in int64 (or in float64, exact below 2**53).
"""
from __future__ import annotations

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
UINT8_MAX = 255


def round_half_away(x: np.ndarray) -> np.ndarray:
    """C `std::round`: halves go away from zero (2.5 -> 3, -2.5 -> -3)."""
    x = np.asarray(x)
    return np.copysign(np.floor(np.abs(x) + 0.5), x)


def round_half_even(x: np.ndarray) -> np.ndarray:
    """numpy's own rounding (the tuner's fake-quant uses it)."""
    return np.round(x)


def saturate(q: np.ndarray, signed: bool) -> np.ndarray:
    """Clip integer codes to int8 [-128, 127] or uint8 [0, 255]."""
    return np.clip(q, INT8_MIN, INT8_MAX) if signed else np.clip(q, 0, UINT8_MAX)


def right_shift_round(v: np.ndarray, shift: int | np.ndarray) -> np.ndarray:
    """`RightShiftRound(v, s, HALF_UP)` on int64: v / 2**s rounded, ties toward +inf.

    A negative shift is a left shift. Example: -5 >> 1 (= -2.5) gives -2.
    """
    v = np.asarray(v, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if shift.ndim == 0:
        s = int(shift)
        if s <= 0:
            return v << -s
        return (v + (np.int64(1) << (s - 1))) >> s
    pos = np.maximum(shift, 0)
    half = np.where(pos > 0, np.int64(1) << np.maximum(pos - 1, 0), 0)
    right = (v + half) >> pos
    return np.where(shift < 0, v << np.maximum(-shift, 0), right)


def get_scale_and_shift(f: float, bitwidth: int = 32, positive_only: bool = False) -> tuple[int, int]:
    """Multiplier and shift with m / 2**shift ~= f (the reference's search, D.4).

    n runs over -32..30 (0..30 when `positive_only`); m = round_half_away(f * 2**n); the error
    |m/2**n - f| is computed in double and stored to float32; the first strict improvement wins,
    subject to |m| < INT32_MAX (32-bit) or |m| < 127 (8-bit). f itself is taken as float32.
    Examples: (0.1, 8) -> (51, 9); (0.003, 32) -> (1610613, 29).
    """
    f32 = float(np.float32(f))
    limit = 127 if bitwidth == 8 else 2**31 - 1
    best_err, best_n = None, 0
    for n in range(0 if positive_only else -32, 31):
        m = float(round_half_away(np.float64(f32) * 2.0**n))
        if abs(m) >= limit:
            continue
        err = float(np.float32(abs(m / 2.0**n - f32)))
        if best_err is None or err < best_err:
            best_err, best_n = err, n
    m = int(round_half_away(np.float64(f32) * 2.0**best_n))
    return m, best_n


def quantize(x: np.ndarray, scale: float, signed: bool, zero_point: int = 0) -> np.ndarray:
    """F32 -> int codes as `tpu.Cast`: sat(round_half_away(x * (1/scale)) + zp), in float32."""
    inv = np.float32(1.0) / np.float32(scale)
    q = round_half_away(np.asarray(x, np.float32) * inv) + zero_point
    return saturate(q, signed).astype(np.int32)


def dequantize(q: np.ndarray, scale: float, zero_point: int = 0) -> np.ndarray:
    """int codes -> float32: scale * (q - zp)."""
    return (np.float32(scale) * (np.asarray(q, np.float32) - np.float32(zero_point))).astype(np.float32)


def to_f16(x: np.ndarray) -> np.ndarray:
    """Round float32 to IEEE half (round-to-nearest-even) and back: F16(x)."""
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


def to_bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (round-half-to-even on the top 16 bits) and back."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    bits = x.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    out = rounded.view(np.float32)
    return np.where(np.isnan(x), x, out)


def weight_scales(w: np.ndarray, qmax: int) -> np.ndarray:
    """Per-output-channel weight scales max(max|W_c| / qmax, 1e-5) in float32 (D.5)."""
    absmax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1).astype(np.float32)
    return np.maximum(absmax / np.float32(qmax), np.float32(1e-5)).astype(np.float32)


def quantize_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per-channel symmetric weights: (codes int32, scales, signed). Unsigned when all >= 0."""
    signed = bool(w.min() < 0)
    qmax = INT8_MAX if signed else UINT8_MAX
    s = weight_scales(w, qmax)
    shape = (-1,) + (1,) * (w.ndim - 1)
    q = saturate(round_half_away(w.astype(np.float32) / s.reshape(shape)), signed)
    return q.astype(np.int32), s, signed


def fake_quant_weights(w: np.ndarray) -> np.ndarray:
    """Weights after per-channel int8 quantization and back, as the calibration tuner sees them."""
    q, s, _ = quantize_weights(w)
    return (q.astype(np.float32) * s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
