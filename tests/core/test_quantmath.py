"""Rounding primitives, the multiplier search, casts and weight quantization (reference D.3-D.5, D.10)."""
from __future__ import annotations

import numpy as np
import pytest

from tpushell.core import quantmath as qm


def test_round_half_away_from_zero():
    x = np.array([2.5, -2.5, 0.5, -0.5, 1.4999, -1.5, 3.5])
    assert qm.round_half_away(x).tolist() == [3, -3, 1, -1, 1, -2, 4]


def test_right_shift_round_half_up_ties_go_up():
    v = np.array([-5, -3, -1, 1, 3, 5, 6, -6], dtype=np.int64)
    # v / 2: -2.5 -> -2, -1.5 -> -1, -0.5 -> 0, 0.5 -> 1, 1.5 -> 2, 2.5 -> 3
    assert qm.right_shift_round(v, 1).tolist() == [-2, -1, 0, 1, 2, 3, 3, -3]
    assert qm.right_shift_round(v, 0).tolist() == v.tolist()
    assert qm.right_shift_round(v, -2).tolist() == (v * 4).tolist()


def test_right_shift_round_per_channel_matches_python_ints():
    rng = np.random.default_rng(0)
    v = rng.integers(-2**40, 2**40, size=(3, 5), dtype=np.int64)
    shifts = np.array([[0, 1, 7, 31, -3]], dtype=np.int64)
    expect = [[(int(a) << -int(s)) if s <= 0 else (int(a) + (1 << (int(s) - 1))) >> int(s)
               for a, s in zip(row, shifts[0])] for row in v]
    assert qm.right_shift_round(v, shifts).tolist() == expect
    positive = np.array([[1, 2, 3, 4, 5]], dtype=np.int64)
    assert qm.right_shift_round(v, positive).tolist() == [
        [(int(a) + (1 << (int(s) - 1))) >> int(s) for a, s in zip(row, positive[0])] for row in v]


def _search_loop(f, bitwidth, positive_only=False):
    """The reference's loop, written plainly: the oracle for the vectorised search."""
    f32 = float(np.float32(f))
    limit = 127 if bitwidth == 8 else 2**31 - 1
    best, best_n = None, 0
    for n in range(0 if positive_only else -32, 31):
        m = float(qm.round_half_away(f32 * 2.0**n))
        err = float(np.float32(abs(m / 2.0**n - f32)))
        if abs(m) < limit and (best is None or err < best):
            best, best_n = err, n
    return int(qm.round_half_away(f32 * 2.0**best_n)), best_n


def test_get_scale_and_shift_reference_examples():
    assert qm.get_scale_and_shift(0.1, 8) == (51, 9)
    assert qm.get_scale_and_shift(0.003, 32) == (1610613, 29)


@pytest.mark.parametrize("bitwidth,positive", [(32, False), (8, False), (8, True)])
def test_scales_and_shifts_equals_the_reference_loop(bitwidth, positive):
    rng = np.random.default_rng(bitwidth + positive)
    fs = np.concatenate([10.0 ** rng.uniform(-6, 0.5, 200), [1.0, 0.5, 1.8565, 0.9, 1e-9]])
    ms, ns = qm.scales_and_shifts(fs, bitwidth, positive)
    assert [(int(m), int(n)) for m, n in zip(ms, ns)] == [_search_loop(f, bitwidth, positive)
                                                          for f in fs]


def test_requantize_is_exact_in_int64():
    acc = np.array([123456789, -987654, 0, 2**30], dtype=np.int64)
    m, s = qm.get_scale_and_shift(0.00123, 32)
    expect = [(int(a) * m + (1 << (s - 1))) >> s for a in acc]
    assert qm.requantize(acc, m, s).tolist() == expect


def test_quantize_saturates_and_rounds_half_away():
    x = np.array([0.25, -0.25, 0.75, 1000.0, -1000.0, 0.0], np.float32)
    assert qm.quantize(x, 0.5, signed=True).tolist() == [1, -1, 2, 127, -128, 0]
    u = qm.quantize(x, 0.5, signed=False)
    assert u.dtype == np.uint8 and u.tolist() == [1, 0, 2, 255, 0, 0]


def test_dequantize_is_float32_code_times_float32_scale():
    q = np.array([-128, -1, 0, 5, 127], np.int8)
    scale = 44.4521809 / 127
    assert np.array_equal(qm.dequantize(q, scale), q.astype(np.float32) * np.float32(scale))


def test_f16_casts_round_in_half_precision():
    q = np.array([-128, -3, 0, 77, 127], np.int8)
    scale = 37.5324173 / 127
    v = qm.dequantize_to_f16(q, scale)
    assert np.array_equal(v, v.astype(np.float16).astype(np.float32))
    back = qm.quantize_from_f16(v, scale, signed=True)
    assert back.tolist() == q.tolist()


def test_to_f16_and_bf16_round_to_nearest_even():
    # 1 + 2**-11 lies halfway between two halves: ties to the even one (1.0).
    assert qm.to_f16(np.float32(1 + 2**-11)) == 1.0
    assert qm.to_f16(np.float32(1 + 3 * 2**-11)) == np.float32(1 + 2**-9)
    assert qm.to_bf16(np.float32(1 + 2**-8)) == 1.0
    assert qm.to_bf16(np.float32(1 + 3 * 2**-8)) == np.float32(1 + 2**-6)
    assert np.isnan(qm.to_bf16(np.float32(np.nan)))


def float_patterns() -> np.ndarray:
    """Random float32 bit patterns and the edges of half precision: subnormal halves and their
    ties, the smallest normal half, 65504 and what rounds past it, infinities, NaN payloads."""
    rng = np.random.default_rng(12)
    bits = rng.integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32)
    edges = np.array([2.0**-24, 1.5 * 2**-24, 2.5 * 2**-24, 2.0**-25, 2.0**-14, 2.0**-14 - 2**-25,
                      65504, 65519.996, 65520, 1e9, np.inf, 0.0, 1 + 2**-11, 3 * 2**-25],
                     np.float32)
    nans = np.array([0x7F800001, 0x7FC00000, 0x7F802000, 0xFFFFFFFF, 0x7F801FFF], np.uint32)
    every = np.concatenate([bits, edges.view(np.uint32), (-edges).view(np.uint32), nans])
    return every.view(np.float32)


def test_the_compiled_f16_and_bf16_roundings_give_numpys_bits(monkeypatch):
    """Bit for bit (NaN payloads too) against numpy's float16 conversion and the bf16 passes."""
    pytest.importorskip("numba")
    x = float_patterns()
    with np.errstate(over="ignore"):
        expect = x.astype(np.float16).astype(np.float32).view(np.uint32)
    assert np.array_equal(qm.to_f16(x).view(np.uint32), expect)
    fast = qm.to_bf16(x).view(np.uint32)
    monkeypatch.setattr(qm, "compiled", lambda fn: None)
    assert np.array_equal(fast, qm.to_bf16(x).view(np.uint32))
    assert np.array_equal(qm.to_f16(x).view(np.uint32), expect)


def test_weights_signed_when_there_is_a_bias():
    w = np.abs(np.random.default_rng(0).standard_normal((2, 3, 1, 1))).astype(np.float32)
    q, s, signed = qm.quantize_weights(w)
    assert not signed and q.max() == 255
    q, s, signed = qm.quantize_weights(w, has_bias=True)
    assert signed and q.max() == 127
    assert np.allclose(q * s.reshape(-1, 1, 1, 1), w, atol=s.max())


def test_weight_scale_floor_and_bias_codes():
    w = np.zeros((2, 1, 1, 1), np.float32)
    w[1] = 0.5
    q, s, _ = qm.quantize_weights(w, has_bias=True)
    assert s[0] == np.float32(1e-5) and q[0].tolist() == [[[0]]] and q[1].item() == 127
    b = qm.quantize_bias(np.array([0.001, -2.0], np.float32), s, 0.01)
    assert b.tolist() == [round(0.001 / (1e-5 * 0.01)), round(-2.0 / (float(s[1]) * 0.01))]


def test_asymmetric_params_pin_the_zero_point():
    scale, zp, signed = qm.asymmetric_params(-1.0, 3.0)
    assert signed and zp == round(-128 + 1.0 / scale) and np.isclose(scale, 4.0 / 255)
    scale, zp, signed = qm.asymmetric_params(0.5, 2.0)   # range must include 0: zp = 0
    assert not signed and zp == 0 and np.isclose(scale, 2.0 / 255)
