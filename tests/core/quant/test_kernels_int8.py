"""The compiled INT8 loops (core/quant/kernels_int8.py) give the same bits as their numpy forms:
each loop against its numpy form on random codes with every rounding case, then whole plans
(a small model with every rule family, and SVTR from the zoo) with numba on and off."""
from __future__ import annotations

import os

import numpy as np
import pytest
from modern_model import modern_proto, modern_samples
from tiny_quant import max_table
from tpushell.core.graph.onnx_import import import_onnx
from tpushell.core.ops.conv import conv_nd
from tpushell.core.quant import kernels_int8 as k8
from tpushell.core.quant.lowering import Lowerer
from tpushell.core.quant.simulate import simulate

pytest.importorskip("numba")
pytestmark = pytest.mark.skipif(os.environ.get("TPUSHELL_NUMBA") == "0",
                                reason="TPUSHELL_NUMBA=0: no compiled loops to compare")


@pytest.fixture
def numpy_only(monkeypatch):
    """Run the numpy forms (as TPUSHELL_NUMBA=0 does) inside the test."""
    monkeypatch.setattr(k8, "compiled", lambda fn: None)


def both(monkeypatch, fn, *args, **kwargs):
    """fn(...) with the compiled loops, then with the numpy forms."""
    fast = fn(*args, **kwargs)
    with monkeypatch.context() as m:
        m.setattr(k8, "compiled", lambda f: None)
        slow = fn(*args, **kwargs)
    return fast, slow


def same(a, b) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


# ---- loops against numpy -------------------------------------------------------------------------
@pytest.mark.parametrize("acc_dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("out_dtype", [np.int8, np.uint8])
def test_requant_channels_matches_numpy_on_every_rounding_case(acc_dtype, out_dtype, monkeypatch):
    """Ties (+-x.5 after the shift), negative and zero shifts (left shifts), zero points, a Relu
    and a Relu limit, and a tensor large enough to be split over threads."""
    rng = np.random.default_rng(3)
    n, c, length = 3, 7, k8.PARALLEL_ELEMENTS // 8
    acc = rng.integers(-(1 << 20), 1 << 20, (n, c, length)).astype(acc_dtype)
    acc[:, :, :8] = [-3, -2, -1, 0, 1, 2, 3, 5]              # the half-up ties of a shift of 1
    bias = rng.integers(-5000, 5000, c)
    mult = rng.integers(1, 1 << 20, c)
    shift = np.array([1, 0, -2, 12, 30, 20, 17])
    for zp, lo, hi in [(0, k8.NO_LOW, k8.NO_HIGH), (3, 3, k8.NO_HIGH), (-7, -7, 40), (0, 0, 6)]:
        fast, slow = both(monkeypatch, k8.requant_channels, acc, bias, mult, shift, zp=zp, lo=lo,
                          hi=hi, out_dtype=out_dtype)
        assert same(fast, slow)
        assert len(np.unique(fast)) >= 7                    # not all saturated


def test_table_lookup_matches_take_for_code_and_float_tables(monkeypatch):
    rng = np.random.default_rng(4)
    x = rng.integers(-128, 128, (2, 5, k8.PARALLEL_ELEMENTS // 4)).astype(np.int8)
    for table in (rng.integers(0, 256, 256).astype(np.uint8), rng.random(256).astype(np.float32)):
        for codes in (x, x.view(np.uint8), x[:, ::2], x[:1, :1, :1]):
            fast, slow = both(monkeypatch, k8.table_lookup, table, codes)
            assert same(fast, slow)
            assert same(fast, np.take(table, codes.view(np.uint8)))


@pytest.mark.parametrize("shift", [7, 1, 0, -3])
@pytest.mark.parametrize("bias", [None, "row"])
def test_requant_away_matches_numpy(shift, bias, monkeypatch):
    """MatMul's requant (ties away from zero) with and without a bias, relu on and off."""
    rng = np.random.default_rng(6)
    acc = rng.integers(-(1 << 16), 1 << 16, (4, 9, 33)).astype(np.float32)
    acc[0, 0, :6] = [-3, -1, 1, 3, -2, 2]
    b = rng.integers(-300, 300, 33) if bias else None
    for relu in (False, True):
        for out_dtype in (np.int8, np.uint8):
            fast, slow = both(monkeypatch, k8.requant_away, acc, b, 3, shift, relu=relu,
                              out_dtype=out_dtype)
            assert same(fast, slow)


def test_add_and_mul_codes_match_the_numpy_rules(monkeypatch):
    """The one-pass Add and Mul of two code tensors against the rules' numpy ways (shapes that
    broadcast keep numpy: None)."""
    from tpushell.core.quant.rules import elementwise as ew
    rng = np.random.default_rng(8)
    a = rng.integers(-128, 128, (3, 4, 50)).astype(np.int8)
    b = rng.integers(0, 256, (3, 4, 50)).astype(np.uint8)
    for relu in (False, True):
        for signed in (True, False):
            fast, slow = both(monkeypatch, ew.add_int8, [a, b], multipliers=[90, 3], shifts=[7, 0],
                              relu=relu, out_signed=signed)
            assert same(fast, slow)
            fast, slow = both(monkeypatch, ew.mul_int8, a, b, multiplier=-77, shift=13, relu=relu,
                              out_signed=signed)
            assert same(fast, slow)
    gate = rng.integers(-128, 128, (3, 4, 1)).astype(np.int8)
    for x, y in ((a, gate), (gate, b)):                  # a channel gate on either side
        fast, slow = both(monkeypatch, ew.mul_int8, x, y, multiplier=91, shift=9, relu=False,
                          out_signed=True)
        assert same(fast, slow)
    assert k8.mul_codes(a, b[:1, :, :], 3, 2, False, np.int8) is None


@pytest.mark.parametrize("kernel, stride, dilation, pads", [
    ((3, 3), (1, 1), (1, 1), (1, 1, 1, 1)), ((3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),
    ((5, 5), (1, 2), (1, 1), (2, 1, 2, 2)), ((3, 3), (1, 1), (2, 2), (2, 2, 2, 2)),
    ((1, 3), (1, 1), (1, 1), (0, 1, 0, 1))])
@pytest.mark.parametrize("signed", [True, False])
def test_depthwise_sum_is_the_exact_convolution(kernel, stride, dilation, pads, signed):
    """The compiled depthwise sums equal BLAS on the codes in float64 (exact), with the padding
    value a zero point."""
    rng = np.random.default_rng(5)
    lo, hi = (-128, 128) if signed else (0, 256)
    x = rng.integers(lo, hi, (2, 6, 9, 11)).astype(np.int8 if signed else np.uint8)
    w = rng.integers(-128, 128, (6, 1) + kernel).astype(np.int8)
    pad_code = -5 if signed else 130
    begin, end = list(pads[:2]), list(pads[2:])
    acc = k8.depthwise_sum(x, w, pad_code, kernel, stride, dilation, begin, end)
    expect = conv_nd(x.astype(np.float64), w.astype(np.float64), None, list(kernel), list(stride),
                     list(dilation), begin, end, 6, pad_value=float(pad_code))
    assert acc.dtype == np.int32
    assert np.array_equal(acc, expect.astype(np.int64))


def test_depthwise_sum_without_numba_leaves_it_to_blas(numpy_only):
    x = np.zeros((1, 2, 4, 4), np.int8)
    assert k8.depthwise_sum(x, np.ones((2, 1, 3, 3), np.int8), 0, (3, 3), (1, 1), (1, 1),
                            [1, 1], [1, 1]) is None


# ---- whole plans ---------------------------------------------------------------------------------
def every_code(plan, feeds, monkeypatch):
    return both(monkeypatch, simulate, plan, feeds, keep_all=True, codes=True)


def test_a_model_of_every_rule_family_gives_the_same_codes_with_and_without_numba(monkeypatch):
    graph = import_onnx(modern_proto(), name="modern")
    plan = Lowerer(graph, max_table(graph, modern_samples(8))).plan("INT8")
    fast, slow = every_code(plan, {graph.inputs[0].name: modern_samples(3, seed=5)}, monkeypatch)
    assert fast.keys() == slow.keys()
    assert [t for t in fast if not same(fast[t], slow[t])] == []


@pytest.mark.zoo
def test_svtr_gives_the_same_codes_with_and_without_numba(shared, monkeypatch):
    """SVTR (ppocrv4_rec) with the reference's table: depthwise and dense convs, HardSwish
    tables, AddConst/MulConst, MatMul, Softmax, F16 LayerNorm, on the golden input."""
    from tpushell.core.calibration.tables import read_calibration_table
    name = "ppocrv4_rec"
    graph = import_onnx(shared / "zoo" / name / f"{name}.onnx", input_shapes=[[1, 3, 48, 320]],
                        name=name)
    gold = shared / "golden" / name
    with np.load(gold / f"{name}_in.npz") as f:
        x = f[f.files[0]]
    plan = Lowerer(graph, read_calibration_table(gold / f"{name}_cali_table")).plan("INT8")
    fast, slow = every_code(plan, {graph.inputs[0].name: x}, monkeypatch)
    assert len(fast) > 200
    assert [t for t in fast if not same(fast[t], slow[t])] == []


@pytest.mark.parametrize("out_signed", [False, True])
def test_softmax_codes_match_the_numpy_softmax(out_signed, monkeypatch):
    """Codes along axis 1 of a 4-D and a 3-D tensor, a wide and a narrow input scale (distances
    past 255 saturate), against the numpy passes."""
    from tpushell.core.quant.rules import nn
    rng = np.random.default_rng(9)
    for shape, s_in in [((3, 16, 4, 30), 0.05), ((2, 7, 45), 0.9)]:
        x = rng.integers(-128, 128, shape).astype(np.int8)
        table = np.exp(-np.arange(256) * s_in).astype(np.float32)
        fast, slow = both(monkeypatch, nn.softmax_int8, x, table=table, out_scale=1 / 255,
                          out_signed=out_signed)
        assert same(fast, slow)
        assert len(np.unique(fast)) > 5
