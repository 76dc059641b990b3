"""The simulator: exact integer kernels (against a pure int64 reference), float modes against
the F32 interpreter, step-by-step and incremental evaluation."""
from __future__ import annotations

import numpy as np
import pytest
from tiny_quant import max_table, samples, yolo_like
from tpushell.core import quantmath as qm
from tpushell.core.calibration.tables import QTable
from tpushell.core.graph.interpreter import run
from tpushell.core.metrics import cosine
from tpushell.core.quant.kernels_int8 import lut_kernel
from tpushell.core.quant.lowering import Lowerer, lower
from tpushell.core.quant.rules import conv, elementwise
from tpushell.core.quant.simulate import simulate


# ---- exact integer convolution --------------------------------------------------------------------
def conv_int64(x, w, stride, pad, group, pad_code=0):
    """Direct int64 convolution: the oracle (no BLAS, no floats)."""
    x = np.pad(x.astype(np.int64), [(0, 0), (0, 0), (pad, pad), (pad, pad)],
               constant_values=pad_code)
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    mg = m // group
    y = np.zeros((n, m, oh, ow), np.int64)
    for oc in range(m):
        g = oc // mg
        for i in range(kh):
            for j in range(kw):
                patch = x[:, g * cg:(g + 1) * cg, i:i + stride * oh:stride, j:j + stride * ow:stride]
                y[:, oc] += np.einsum("nchw,c->nhw", patch, w[oc, :, i, j].astype(np.int64))
    return y


CASES = [  # (in channels, out channels, kernel, stride, pad, group, signed input)
    (3, 8, 3, 1, 1, 1, False), (16, 12, 3, 2, 1, 1, True), (8, 8, 3, 1, 1, 8, True),
    (6, 4, 1, 1, 0, 2, True), (5, 7, 5, 2, 2, 1, False),
]


@pytest.mark.parametrize("cin,cout,kern,stride,pad,group,signed", CASES)
def test_conv_accumulate_is_exact(cin, cout, kern, stride, pad, group, signed):
    rng = np.random.default_rng(cin * 100 + cout)
    lo, hi = (-128, 128) if signed else (0, 256)
    x = rng.integers(lo, hi, (2, cin, 9, 11)).astype(np.int8 if signed else np.uint8)
    w = rng.integers(-128, 128, (cout, cin // group, kern, kern)).astype(np.int8)
    attrs = {"kernel_shape": [kern, kern], "strides": [stride] * 2, "pads": [pad] * 4,
             "group": group}
    w_abs = int(np.abs(w.astype(np.int64)).reshape(cout, -1).sum(1).max())
    acc = conv.conv_accumulate(x, w, w_abs, attrs)
    assert acc.dtype == np.int64
    assert np.array_equal(acc, conv_int64(x, w, stride, pad, group))


def test_large_accumulators_switch_to_float64_and_stay_exact():
    rng = np.random.default_rng(7)
    x = rng.choice(np.array([-128, 127], np.int8), size=(1, 2048, 3, 3))
    w = rng.choice(np.array([-127, 127], np.int8), size=(4, 2048, 1, 1))
    w_abs = int(np.abs(w.astype(np.int64)).reshape(4, -1).sum(1).max())
    assert conv.accumulator_dtype(w_abs, x) == np.float64        # 2048*127*128 > 2**24
    assert conv.accumulator_dtype(w_abs, x // 64) == np.float32  # |x| <= 2: safe in float32
    acc = conv.conv_accumulate(x, w, w_abs, {"kernel_shape": [1, 1]})
    assert np.array_equal(acc, conv_int64(x, w, 1, 0, 1))


def test_conv_int8_requantizes_as_the_formula():
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (2, 4, 6, 6)).astype(np.int8)
    w = rng.integers(-127, 128, (3, 4, 3, 3)).astype(np.int8)
    bias = rng.integers(-5000, 5000, 3)
    fs = np.array([0.0021, 0.00037, 0.013])
    mult, shift = qm.scales_and_shifts(fs, 32)
    w_abs = int(np.abs(w.astype(np.int64)).reshape(3, -1).sum(1).max())
    y = conv.conv_int8(x, wq=w.astype(np.float32), w_abs_sum=w_abs, bias_q=bias, multiplier=mult,
                    shift=shift, attrs={"kernel_shape": [3, 3], "pads": [1] * 4}, zp_in=0,
                    zp_out=0, out_signed=True, relu=False)
    acc = conv_int64(x, w, 1, 1, 1)
    expect = np.empty_like(acc)
    for c in range(3):
        for idx, a in np.ndenumerate(acc[:, c]):
            v = (int(a) + int(bias[c])) * int(mult[c])
            s = int(shift[c])
            expect[(idx[0], c) + idx[1:]] = min(127, max(-128, (v + (1 << (s - 1))) >> s))
    assert y.dtype == np.int8 and np.array_equal(y, expect)


def test_leaky_relu_table_equals_the_formula_for_every_code():
    codes = np.arange(-128, 128, dtype=np.int8)
    kernel = lut_kernel(lambda v: elementwise.leaky_relu_int8(v, multiplier=51, shift=9, out_signed=True),
                          True)
    expect = [c if c >= 0 else (int(c) * 51 + 256) >> 9 for c in codes.tolist()]
    assert kernel(codes).tolist() == expect
    assert kernel(np.array([[-128, -5]], np.int8)).tolist() == [[-13, 0]]


def test_mul_shift_and_add():
    x = np.array([-128, -3, 0, 3, 127], np.int8)
    assert qm.mul_shift(x, multiplier=119, shift=6, out_signed=True).tolist() == [
        -128, -6, 0, 6, 127]
    y = elementwise.add_int8([x, x], multipliers=[64, 32], shifts=[6, 6], relu=True,
                   out_signed=True)
    assert y.tolist() == [0, 0, 0, 5, 127]


# ---- whole plans on a tiny model -----------------------------------------------------------------
@pytest.fixture(scope="module")
def graph():
    return yolo_like()


@pytest.fixture(scope="module")
def lw(graph):
    return Lowerer(graph, max_table(graph, samples(8)))


def test_f32_plan_equals_the_interpreter(graph):
    x = samples(3, seed=5)
    plan = lower(graph, None, mode="F32")
    assert np.array_equal(simulate(plan, {"input_1": x})["out_Transpose"],
                          run(graph, {"input_1": x})["out_Transpose"])


@pytest.mark.parametrize("mode,dtype", [("F16", np.float16), ("BF16", None)])
def test_float16_plans_round_every_tensor(graph, mode, dtype):
    x = samples(2, seed=5)
    every = simulate(lower(graph, None, mode=mode), {"input_1": x}, keep_all=True)
    ref = run(graph, {"input_1": x})["out_Transpose"]
    for name, v in every.items():
        if name == "input_1":
            continue
        if dtype is not None:
            assert np.array_equal(v, v.astype(dtype).astype(np.float32)), name
        else:
            assert not (v.view(np.uint32) & 0xFFFF).any(), name
    assert cosine(every["out_Transpose"], ref) > 0.999
    assert "input_1c1_Conv_" + mode.lower() in every


def test_int8_plan_codes_and_values(graph, lw):
    plan = lw.plan("INT8")
    x = samples(4, seed=9)
    codes = simulate(plan, {"input_1": x}, keep_all=True, codes=True)
    values = simulate(plan, {"input_1": x}, keep_all=True)
    assert codes["input_1c1_Conv_ui8"].dtype == np.uint8
    assert codes["c1_Conv"].dtype == np.int8 and codes["out_Transpose_f32"].dtype == np.float32
    for name, v in codes.items():
        assert np.array_equal(values[name], plan.types[name].dequantize(v))
    ref = run(graph, {"input_1": x})["out_Transpose"]
    assert cosine(values["out_Transpose"], ref) > 0.99
    out = simulate(plan, {"input_1": x})
    assert list(out) == ["out_Transpose"] and np.array_equal(out["out_Transpose"],
                                                             values["out_Transpose_f32"])


def test_batch_equals_one_sample_at_a_time(lw):
    plan = lw.plan("INT8", QTable({"l2_LeakyRelu": "F16"}))
    x = samples(3, seed=11)
    whole = simulate(plan, {"input_1": x})["out_Transpose"]
    for i in range(3):
        assert np.array_equal(whole[i:i + 1], simulate(plan, {"input_1": x[i:i + 1]})["out_Transpose"])


def test_steps_run_one_by_one_reproduce_simulate(lw):
    plan = lw.plan("INT8")
    x = samples(2, seed=4)
    env = {"input_1": x}
    for step in plan.steps.values():
        for t, v in zip(step.outputs, step.run([env[t] for t in step.inputs])):
            env[t] = v
    every = simulate(plan, {"input_1": x}, keep_all=True, codes=True)
    assert set(env) == set(every)
    assert all(np.array_equal(env[t], every[t]) for t in every)


def test_incremental_evaluation_from_cached_values(lw):
    x = samples(3, seed=2)
    a = lw.plan("INT8")
    cache = simulate(a, {"input_1": x}, keep_all=True, codes=True)
    b = lw.plan("INT8", QTable({"c3_Conv": "F16"}))
    stale = b.stale(a)
    assert stale == {"cat_Concatc3_Conv_f16", "c3_Conv",
                     "c3_Convout_Transpose_si8", "out_Transpose", "out_Transpose_f32"}
    start = {t: v for t, v in cache.items() if t not in stale}
    calls = []
    for s in b.steps.values():
        s.kernel = _counting(s.kernel, s.name, calls)
    try:
        fast = simulate(b, {}, start=start, keep_all=True)
    finally:
        for s in b.steps.values():
            s.kernel = s.kernel.__wrapped__
    assert sorted(calls) == sorted(n for n in b.steps if n in stale)
    full = simulate(b, {"input_1": x}, keep_all=True)
    assert set(fast) == set(full) and all(np.array_equal(fast[t], full[t]) for t in full)


def _counting(fn, name, calls):
    def wrapper(*xs):
        calls.append(name)
        return fn(*xs)
    wrapper.__wrapped__ = fn
    return wrapper


def test_unknown_tensor_and_missing_input(lw):
    from tpushell.core.errors import ModelError
    plan = lw.plan("INT8")
    with pytest.raises(ModelError, match="did you mean c1_Conv"):
        simulate(plan, {"input_1": samples(1)}, ["c1_Cnv"])
    with pytest.raises(ModelError, match="missing input 'input_1'"):
        simulate(plan, {})


def test_session_plan_simulate_and_qtable(graph, lw, tmp_path):
    from tpushell.core import Session
    from tpushell.core.errors import QuantizationError
    s = Session()
    s.graph = graph
    s.calibration = lw.table
    x = samples(2, seed=8)
    plan = s.plan()
    assert s.plan() is plan and plan.float_ops() == {}
    assert np.array_equal(s.run(x, quantized=True)["out_Transpose"],
                          simulate(plan, {"input_1": x})["out_Transpose"])
    good = tmp_path / "good_qtable"
    good.write_text("c3_Conv F16\n")
    s.load_qtable(good)
    assert s.plan() is not plan and s.plan().float_ops() == {"c3_Conv": "F16"}
    bad = tmp_path / "bad_qtable"
    bad.write_text("c3_Conv F16\nc9_Conv F16\n")
    with pytest.raises(QuantizationError, match="bad_qtable:2: no op 'c9_Conv'"):
        s.load_qtable(bad)
    assert s.qtable.path == str(good)
    s.settings.set("chip", "bm1684")
    with pytest.raises(QuantizationError, match="good_qtable:1: chip bm1684 has no F16"):
        s.plan()


def test_encode_is_the_cast_from_f32(lw):
    plan = lw.plan("INT8", QTable({"l2_LeakyRelu": "F16"}))
    x = samples(1, seed=3)
    f32 = run(plan.graph, {"input_1": x}, keep_all=True)
    codes = plan.encode("c1_Conv", f32["c1_Conv"])
    assert codes.dtype == np.int8
    assert np.abs(plan.dequantize("c1_Conv", codes) - f32["c1_Conv"]).max() <= \
        plan.types["c1_Conv"].scale / 2 + 1e-6
    half = plan.encode("l2_LeakyRelu", f32["l2_LeakyRelu"])
    assert np.array_equal(half, half.astype(np.float16).astype(np.float32))
    assert plan.encode("input_1", x) is x


# ---- asymmetric INT8 (zero points) -------------------------------------------------------------------
def test_conv_with_zero_points_pads_with_the_input_zero_point():
    rng = np.random.default_rng(21)
    x = rng.integers(0, 256, (1, 3, 6, 7)).astype(np.uint8)
    w = rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    w_abs = int(np.abs(w.astype(np.int64)).reshape(4, -1).sum(1).max())
    attrs = {"kernel_shape": [3, 3], "pads": [1] * 4}
    acc = conv.conv_accumulate(x, w, w_abs, attrs, pad_code=117)
    assert np.array_equal(acc, conv_int64(x, w, 1, 1, 1, pad_code=117))
    # Padding with zp and folding -sum(Wq)*zp into the bias is the conv of (x - zp) with zero pads.
    folded = acc - w.astype(np.int64).reshape(4, -1).sum(1).reshape(1, 4, 1, 1) * 117
    centred = conv_int64(x.astype(np.int64) - 117, w, 1, 1, 1)
    assert np.array_equal(folded, centred)


def test_requant_with_zero_points():
    x = np.array([0, 10, 128, 255], np.uint8)
    y = qm.mul_shift(x, multiplier=3, shift=1, out_signed=True, zp_in=128, zp_out=-5)
    assert y.tolist() == [-128, max(-128, ((10 - 128) * 3 + 1 >> 1) - 5), -5, min(127, (127 * 3 + 1 >> 1) - 5)]


def test_asymmetric_plan(graph):
    lw = Lowerer(graph, max_table(graph, samples(8)), asymmetric=True)
    plan = lw.plan("INT8")
    assert plan.types["input_1c1_Conv_ui8"].zp == 0            # [0, max]: zp pinned to 0
    assert any(t.zp != 0 for t in plan.types.values() if t.is_int)
    assert plan.float_ops() == {"l1_LeakyRelu": "F16", "l2_LeakyRelu": "F16"}
    assert "asymmetric LeakyRelu" in plan.steps["l1_LeakyRelu"].note
    x = samples(3, seed=17)
    out = simulate(plan, {"input_1": x})["out_Transpose"]
    assert cosine(out, run(graph, {"input_1": x})["out_Transpose"]) > 0.99


def test_activation_tables_hold_the_function_of_every_code():
    from onnx import TensorProto, helper, numpy_helper
    from tpushell.core.graph.onnx_import import import_onnx
    w = numpy_helper.from_array(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3, 1, 1), "w")
    lo, hi = numpy_helper.from_array(np.float32(-0.5), "lo"), numpy_helper.from_array(np.float32(2), "hi")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]),
             helper.make_node("Sigmoid", ["c"], ["s"]), helper.make_node("Tanh", ["c"], ["t"]),
             helper.make_node("Clip", ["c", "lo", "hi"], ["k"]),
             helper.make_node("Concat", ["s", "t", "k"], ["y"], axis=1)]
    g = helper.make_graph(nodes, "act", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                       [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 4, 4])],
                          [w, lo, hi])
    graph = import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
    x = (np.random.default_rng(4).standard_normal((2, 3, 4, 4)) * 2).astype(np.float32)
    plan = Lowerer(graph, max_table(graph, x)).plan("INT8")
    assert plan.float_ops() == {}
    s = plan.steps["s_Sigmoid"]
    assert s.kind == "table" and s.out_types[0].kind == "uint8"
    assert s.out_types[0].scale == pytest.approx(1 / 255)     # D.1: Sigmoid is [0, 1]
    tin, tout = s.in_types[0], s.out_types[0]
    codes = np.arange(-128, 128).astype(np.int8)
    real = codes.astype(np.float64) * tin.scale
    expect = np.clip(np.floor(1 / (1 + np.exp(-real)) / tout.scale + 0.5), 0, 255)
    assert s.run([codes])[0].tolist() == expect.astype(np.uint8).tolist()
    out = simulate(plan, {"x": x})["y_Concat"]
    assert cosine(out, run(graph, {"x": x})["y_Concat"]) > 0.999
