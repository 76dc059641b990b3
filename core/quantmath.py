"""Pure quantization arithmetic of the reference (tpu-mlir-reference.md D.3, D.4, D.5, D.10).

Integer results are exact: codes and accumulators are held in int64 (or in float64, exact below
2**53). Scales are Python floats (double), as the reference computes them; only where the
reference rounds to float32 (casts, dequantization, the multiplier search) do we.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .jit import compiled

INT8_MIN, INT8_MAX = -128, 127
UINT8_MAX = 255
INT32_MAX = 2**31 - 1


def round_half_away(x: np.ndarray) -> np.ndarray:
    """C `std::round`: halves go away from zero (2.5 -> 3, -2.5 -> -3)."""
    x = np.asarray(x)
    return np.copysign(np.floor(np.abs(x) + 0.5), x)


def round_half_even(x: np.ndarray) -> np.ndarray:
    """numpy's own rounding (the tuner's fake-quant uses it)."""
    return np.round(x)


def qrange(signed: bool) -> tuple[int, int]:
    """(lowest, highest) code: int8 [-128, 127] or uint8 [0, 255]."""
    return (INT8_MIN, INT8_MAX) if signed else (0, UINT8_MAX)


def code_dtype(signed: bool) -> type:
    """The numpy type that holds int8 / uint8 codes."""
    return np.int8 if signed else np.uint8


def saturate(q: np.ndarray, signed: bool) -> np.ndarray:
    """Clip integer codes to int8 [-128, 127] or uint8 [0, 255]."""
    lo, hi = qrange(signed)
    return np.clip(q, lo, hi)


def to_codes(q: np.ndarray, signed: bool) -> np.ndarray:
    """Saturate integer values and store them as int8 / uint8."""
    return saturate(q, signed).astype(code_dtype(signed))


def scale_of(threshold: float, signed: bool) -> float:
    """Symmetric scale of a tensor: th/127 for int8, th/255 for uint8 (D.3), in double."""
    return float(threshold) / (INT8_MAX if signed else UINT8_MAX)


def asymmetric_params(rmin: float, rmax: float) -> tuple[float, int, bool]:
    """(scale, zero point, signed) of an asymmetric tensor (D.3): zp pinned into the code range."""
    signed = rmin < 0
    qmin, qmax = qrange(signed)
    rmin, rmax = min(rmin, 0.0), max(rmax, 0.0)
    scale = (rmax - rmin) / (qmax - qmin) if rmax > rmin else 1e-5
    zp = int(round_half_away(qmin - rmin / scale))
    if zp < qmin:
        zp = qmin
        scale = rmax / (qmax - zp)
    elif zp > qmax:
        zp = qmax
        scale = rmin / (qmin - zp)
    return float(scale), zp, signed


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
    if shift.min() > 0:
        return (v + (np.int64(1) << (shift - 1))) >> shift
    pos = np.maximum(shift, 0)
    half = np.where(pos > 0, np.int64(1) << np.maximum(pos - 1, 0), 0)
    right = (v + half) >> pos
    return np.where(shift < 0, v << np.maximum(-shift, 0), right)


def right_shift_round_away(v: np.ndarray, shift: int) -> np.ndarray:
    """v / 2**shift on int64, rounded half away from zero (-5 >> 1 gives -3): the reference's
    MatMul and RequantIntAxis mode. A negative shift is a left shift."""
    v = np.asarray(v, dtype=np.int64)
    if shift <= 0:
        return v << -shift
    half = np.int64(1) << (shift - 1)
    mag = (np.abs(v) + half) >> shift
    return np.where(v < 0, -mag, mag)


def get_scale_and_shift(f: float, bitwidth: int = 32, positive_only: bool = False) -> tuple[int, int]:
    """Multiplier and shift with m / 2**shift ~= f (the reference's search, D.4).

    n runs over -32..30 (0..30 when `positive_only`); m = round_half_away(f * 2**n); the error
    |m/2**n - f| is computed in double and stored to float32; the first strict improvement wins,
    subject to |m| < INT32_MAX (32-bit) or |m| < 127 (8-bit). f itself is taken as float32.
    Examples: (0.1, 8) -> (51, 9); (0.003, 32) -> (1610613, 29).
    """
    m, n = scales_and_shifts(np.array([f]), bitwidth, positive_only)
    return int(m[0]), int(n[0])


def scales_and_shifts(fs: np.ndarray, bitwidth: int = 32,
                      positive_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """`get_scale_and_shift` for many values at once: (multipliers, shifts) as int64 arrays."""
    f32 = np.asarray(fs, np.float32).astype(np.float64).reshape(-1, 1)
    limit = 127 if bitwidth == 8 else INT32_MAX
    n = np.arange(0 if positive_only else -32, 31, dtype=np.float64)
    pow2 = 2.0 ** n
    m = round_half_away(f32 * pow2)
    err = np.abs(m / pow2 - f32).astype(np.float32)
    err[np.abs(m) >= limit] = np.inf
    # argmin takes the first of equal minima: the reference's first strict improvement
    # (n = 0 when no multiplier fits, as the reference's initial shift).
    best = np.where(np.isinf(err).all(axis=1), int(np.argmax(n == 0)), np.argmin(err, axis=1))
    rows = np.arange(len(f32))
    return m[rows, best].astype(np.int64), n[best].astype(np.int64)


def requantize(acc: np.ndarray, multiplier: int | np.ndarray, shift: int | np.ndarray,
               zero_point: int = 0) -> np.ndarray:
    """int64 `RightShiftRound(acc * M, shift, HALF_UP) + zp` (not saturated; D.4 MultiplierShift).

    Per-channel `multiplier`/`shift` arrays broadcast against `acc` as the caller shapes them.
    """
    v = np.asarray(acc, dtype=np.int64) * np.asarray(multiplier, dtype=np.int64)
    y = right_shift_round(v, shift)
    return y + zero_point if zero_point else y


def mul_shift(x: np.ndarray, *, multiplier: int, shift: int, out_signed: bool, zp_in: int = 0,
              zp_out: int = 0) -> np.ndarray:
    """The requant between two int8 types (D.8): sat(RightShiftRound((x - zp_in) * m, r) + zp_out)
    (MulShift when symmetric, RequantInt with zero points)."""
    v = right_shift_round((x.astype(np.int64) - zp_in) * multiplier, shift)
    return to_codes(v + zp_out, out_signed)


def lut_table(fn: Callable[[np.ndarray], np.ndarray], signed: bool) -> np.ndarray:
    """An elementwise function of int8/uint8 codes as its 256-entry table, indexed by the code
    read as uint8 (exact: `fn` applied to every possible code; core/quant/kernels_int8.table_lookup)."""
    codes = np.arange(256, dtype=np.uint8)
    return fn(codes.view(np.int8) if signed else codes)


# ---- casts between float and integer codes (tpu.Cast, D.3) ---------------------------------------
def quantize(x: np.ndarray, scale: float, signed: bool, zero_point: int = 0) -> np.ndarray:
    """F32 -> codes as `tpu.Cast`: sat(round_half_away(x * float32(1/scale)) + zp), in float32."""
    inv = np.float32(1.0 / scale)
    q = round_half_away(np.asarray(x, np.float32) * inv)
    if zero_point:
        q = q + zero_point
    return to_codes(q, signed)


def quantize_from_f16(x: np.ndarray, scale: float, signed: bool, zero_point: int = 0) -> np.ndarray:
    """F16 -> codes: round_half_away(F16(x * F16(1/scale))) + zp, saturated."""
    inv = np.float16(1.0 / scale).astype(np.float32)
    q = round_half_away(to_f16(np.asarray(x, np.float32) * inv))
    if zero_point:
        q = q + zero_point
    return to_codes(q, signed)


def quantize_from_bf16(x: np.ndarray, scale: float, signed: bool, zero_point: int = 0) -> np.ndarray:
    """BF16 -> codes: as from F16, with bfloat16 rounding."""
    inv = to_bf16(np.float32(1.0 / scale))
    q = round_half_away(to_bf16(np.asarray(x, np.float32) * inv))
    if zero_point:
        q = q + zero_point
    return to_codes(q, signed)


def dequantize(q: np.ndarray, scale: float, zero_point: int = 0) -> np.ndarray:
    """codes -> float32: float32(scale) * (q - zp), as the reference's dumps compute it."""
    q = np.asarray(q, np.float32)
    if zero_point:
        q = q - np.float32(zero_point)
    return q * np.float32(scale)


def dequantize_to_f16(q: np.ndarray, scale: float, zero_point: int = 0) -> np.ndarray:
    """codes -> F16: F16(F16(scale) * F16(q - zp)) (held in float32)."""
    q = to_f16(np.asarray(q, np.float32) - np.float32(zero_point))
    return to_f16(q * np.float16(scale).astype(np.float32))


def dequantize_to_bf16(q: np.ndarray, scale: float, zero_point: int = 0) -> np.ndarray:
    """codes -> BF16: BF16(BF16(scale) * BF16(q - zp)) (held in float32)."""
    q = to_bf16(np.asarray(q, np.float32) - np.float32(zero_point))
    return to_bf16(q * to_bf16(np.float32(scale)))


def to_f16(x: np.ndarray) -> np.ndarray:
    """Round float32 to IEEE half (round-to-nearest-even) and back: F16(x).

    numpy converts to float16 in software, about 30 ns a value (150 ms on SVTR's last Softmax
    output); the compiled loop does the same rounding on the bits in one pass.
    """
    x = np.asarray(x, np.float32)
    loop = compiled(_f16_loop)
    if loop is None or x.size < 64:
        return x.astype(np.float16).astype(np.float32)
    return _bitwise(loop, x)


def _bitwise(loop: Callable, x: np.ndarray) -> np.ndarray:
    """loop(bits, values, out_bits, out_values) over x as flat float32 and uint32 views."""
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    loop(flat.view(np.uint32), flat, out.view(np.uint32), out)
    return out.reshape(x.shape)


def _f16_loop(bits, values, out_bits, out):
    """numpy's float32 -> float16 -> float32 on each value's bits: normal halves round the
    mantissa to 10 bits (ties to even, past 65504 to infinity), subnormal halves to a multiple
    of 2**-24 (adding and taking away 0.5 in float32 rounds there, ties to even), a NaN keeps
    its top 10 payload bits (at least one)."""
    half = np.float32(0.5)
    for i in range(bits.size):
        b = bits[i]
        sign = b & np.uint32(0x80000000)
        mag = b & np.uint32(0x7FFFFFFF)
        if mag >= np.uint32(0x7F800000):
            payload = (mag & np.uint32(0x007FFFFF)) >> np.uint32(13)
            if mag == np.uint32(0x7F800000):
                out_bits[i] = b
            else:
                out_bits[i] = sign | np.uint32(0x7F800000) | (max(payload, np.uint32(1)) << np.uint32(13))
        elif mag >= np.uint32(0x38800000):                 # 2**-14, the smallest normal half
            r = (mag + np.uint32(0xFFF) + ((mag >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)
            out_bits[i] = sign | (np.uint32(0x7F800000) if r >= np.uint32(0x47800000) else r)
        else:
            r = (abs(values[i]) + half) - half
            out[i] = -r if sign else r


def to_bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (round-half-to-even on the top 16 bits) and back."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    loop = compiled(_bf16_loop)
    if loop is not None and x.size >= 64:
        return _bitwise(loop, x)
    bits = x.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    out = rounded.view(np.float32)
    return np.where(np.isnan(x), x, out)


def _bf16_loop(bits, values, out_bits, out):
    """to_bf16's numpy passes on each value (a NaN passes unchanged)."""
    for i in range(bits.size):
        b = bits[i]
        if (b & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):
            out_bits[i] = b
        else:
            out_bits[i] = (b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)


# ---- weights (D.5) -------------------------------------------------------------------------------
def weight_scales(w: np.ndarray, qmax: int) -> np.ndarray:
    """Per-output-channel weight scales max(max|W_c| / qmax, 1e-5), computed in float32 (D.5)."""
    absmax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1).astype(np.float32)
    return np.maximum(absmax / np.float32(qmax), np.float32(1e-5)).astype(np.float32)


def quantize_weights(w: np.ndarray, has_bias: bool = False) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per-channel symmetric weights: (codes int32, float32 scales, signed) (D.5).

    Signed (q_max 127) when some weight is negative or the op has a bias (`fsign`), otherwise
    uint8 (q_max 255). Codes are round_half_away(W / s) with the division in double.
    """
    signed = bool(w.min() < 0) or has_bias
    qmax = INT8_MAX if signed else UINT8_MAX
    s = weight_scales(w, qmax)
    shape = (-1,) + (1,) * (w.ndim - 1)
    q = saturate(round_half_away(w.astype(np.float64) / s.astype(np.float64).reshape(shape)), signed)
    return q.astype(np.int32), s, signed


def quantize_bias(b: np.ndarray, w_scales: np.ndarray, in_scale: float) -> np.ndarray:
    """int32 bias codes round_half_away(b / (s_w * s_in)), in double, not clipped (D.5)."""
    denom = w_scales.astype(np.float64) * float(in_scale)
    return round_half_away(b.astype(np.float64) / denom).astype(np.int64)


def fake_quant_weights(w: np.ndarray) -> np.ndarray:
    """Weights after per-channel int8 quantization and back, as the calibration tuner sees them."""
    q, s, _ = quantize_weights(w)
    return (q.astype(np.float32) * s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
