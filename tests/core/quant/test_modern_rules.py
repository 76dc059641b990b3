"""The bm1684x INT8 rules of the modern op set on a small model built here (tests/modern_model.py):
each op lowers as the reference lowers it (K 6), lookup tables and Deconv are the formulas on
the codes, and the deployed model, the QDQ ONNX export and the .mlir carry every new op."""
from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from modern_model import modern_proto, modern_samples
from tiny_quant import max_table
from tpushell.core import quantmath as qm
from tpushell.core.calibration.tables import QTable
from tpushell.core.graph.interpreter import run
from tpushell.core.graph.mlir import read_mlir, write_mlir
from tpushell.core.graph.onnx_import import import_onnx
from tpushell.core.metrics import cosine
from tpushell.core.quant.deploy import load_deployed, write_model
from tpushell.core.quant.lowering import Lowerer
from tpushell.core.quant.qdq_export import run_qdq, write_qdq
from tpushell.core.quant.simulate import simulate


@pytest.fixture(scope="module")
def graph():
    return import_onnx(modern_proto(), name="modern")


@pytest.fixture(scope="module")
def lw(graph):
    return Lowerer(graph, max_table(graph, modern_samples(8)))


@pytest.fixture(scope="module")
def int8(lw):
    return lw.plan("INT8")


X = modern_samples(3, seed=5)
MIXED = {"c0_Conv": "F16", "hsw_HardSwish": "BF16", "dc_ConvTranspose": "F16", "gelu_GELU": "F32"}


def test_modern_ops_lower_as_the_reference(graph, int8):
    types = {n.name: n.op_type for n in graph.nodes}
    kinds = {name: s.kind for name, s in int8.steps.items()}
    for op in ("silu_Mul", "hsw_HardSwish", "hsig_HardSigmoid", "gelu_GELU", "out2_Sigmoid"):
        assert kinds[op] == "table" and int8.op_modes[op] == "INT8", op   # one 256-entry LUT
    assert kinds["mc_Mul"] == "mul_shift" and kinds["ac_Add"] == "add_const"
    assert kinds["bn_BatchNormalization"] == "conv"       # a Scale after no Conv: depthwise (K 6.18)
    assert kinds["mb_Add"] == "matmul" and kinds["dc_ConvTranspose"] == "deconv"
    assert kinds["gap_GlobalAveragePool"] == "avg_pool"
    # Softmax along axis 1: the reference's INT8 composite (K 6.13), its output renamed.
    assert kinds["out0_Softmax__softmax"] == "softmax" and int8.op_modes["out0_Softmax"] == "INT8"
    assert int8.tensor("out0_Softmax") == "out0_Softmax__softmax_reshape"
    for op in ("focus_Concat_r_Depth2Space", "p_Split", "q_Split", "t_Transpose", "rs_Resize"):
        assert kinds[op] == "same_scale", op
    # LayerNorm, and a Softmax not along axis 1, run in F16 inside the INT8 model (K 6.12, 6.13).
    assert int8.float_ops() == {"ln_LayerNormalization": "F16", "out1_Softmax": "F16"}
    assert "LayerNorm runs in F16" in int8.steps["ln_LayerNormalization"].note
    assert types["dc_ConvTranspose"] == "Deconv" and types["t_Transpose"] == "Permute"


def _dequant(codes, t):
    return (codes.astype(np.float64) - t.zp) * t.scale


LUT_FORMULAS = {
    "silu_Mul": lambda x: x / (1 + np.exp(-x)),
    "hsw_HardSwish": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "hsig_HardSigmoid": lambda x: np.clip(x / 6 + 0.5, 0, 1),
    "gelu_GELU": lambda x: 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2))),
    "out2_Sigmoid": lambda x: 1 / (1 + np.exp(-x)),
}


@pytest.mark.parametrize("op", list(LUT_FORMULAS))
def test_lookup_table_is_the_formula_on_the_codes(int8, op):
    codes = simulate(int8, {"x": X}, keep_all=True, codes=True)
    s = int8.steps[op]
    tin, tout = s.in_types[0], s.out_types[0]
    want = qm.saturate(qm.round_half_away(LUT_FORMULAS[op](_dequant(codes[s.inputs[0]], tin))
                                          / tout.scale) + tout.zp, tout.signed)
    assert np.array_equal(codes[s.outputs[0]].astype(np.int64), want.astype(np.int64)), op


def test_deconv_is_integer_arithmetic_with_half_away_requant(int8):
    codes = simulate(int8, {"x": X}, keep_all=True, codes=True)
    s = int8.steps["dc_ConvTranspose"]
    x = codes[s.inputs[0]].astype(np.int64)
    wq = np.asarray(s.params["weight_codes"], np.int64)           # [ic, oc, 2, 2], stride 2
    n, _, h, w = x.shape
    acc = np.zeros((n, wq.shape[1], 2 * h, 2 * w), np.int64)
    for a in range(2):
        for b in range(2):
            acc[:, :, a::2, b::2] = np.einsum("nchw,co->nohw", x, wq[:, :, a, b])
    acc += np.asarray(s.params["bias_codes"], np.int64).reshape(1, -1, 1, 1)
    want = np.empty_like(acc)
    for c, (m, r) in enumerate(zip(s.params["multipliers"], s.params["shifts"])):
        v = acc[:, c] * int(m)
        mag = (np.abs(v) + (1 << (int(r) - 1))) >> int(r)
        want[:, c] = np.where(v < 0, -mag, mag)
    want = np.clip(want, -128, 127)
    assert np.array_equal(codes[s.outputs[0]].astype(np.int64), want)


@pytest.mark.parametrize("mode,bar", [("INT8", 0.995), ("F16", 0.9999), ("BF16", 0.999)])
def test_every_output_follows_float(graph, lw, mode, bar):
    plan = lw.plan(mode)
    f32 = run(graph, {"x": X})
    got = simulate(plan, {"x": X})
    for out in graph.outputs:
        assert cosine(got[out], f32[out]) >= bar, (mode, out)


@pytest.mark.parametrize("which", ["int8", "mixed"])
def test_deployed_model_runs_every_new_op_exactly(lw, tmp_path, which):
    plan = lw.plan("INT8", QTable(MIXED) if which == "mixed" else None)
    path = tmp_path / "modern.bmodel"
    write_model(plan, path)
    back = load_deployed(path)
    ours = back.run({"x": X}, keep_all=True, codes=True)
    ref = simulate(plan, {"x": X}, keep_all=True, codes=True)
    assert set(ours) == set(ref)
    for t in ref:
        assert ours[t].dtype == ref[t].dtype and np.array_equal(ours[t], ref[t]), t


@pytest.mark.parametrize("which", ["int8", "mixed"])
def test_qdq_export_of_every_new_op_agrees_with_the_simulator(lw, tmp_path, which):
    plan = lw.plan("INT8", QTable(MIXED) if which == "mixed" else None)
    path = tmp_path / "modern.onnx"
    write_qdq(plan, path)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    ort = run_qdq(path, {"x": X}, plan, keep_all=True)
    ours = simulate(plan, {"x": X}, keep_all=True)
    for t in plan.outputs:
        assert cosine(ort[t], ours[t]) >= 0.999, t
    for t in ours:
        assert cosine(ort[t], ours[t]) > 0.99, t


def test_mlir_round_trip_keeps_the_canonical_ops(graph, tmp_path):
    write_mlir(graph, tmp_path / "modern.mlir")
    back = read_mlir(tmp_path / "modern.mlir")
    assert [(n.name, n.op_type) for n in back.nodes] == [(n.name, n.op_type) for n in graph.nodes]
    want, got = run(graph, {"x": X}), run(back, {"x": X})
    for out in graph.outputs:
        assert np.array_equal(got[out], want[out]), out
