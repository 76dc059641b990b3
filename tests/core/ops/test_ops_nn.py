"""Dense layers, softmax, normalisation and reductions against onnxruntime, including the opset
forms (Softmax before/after 13, reduce axes as attribute or input)."""
from __future__ import annotations

import numpy as np
import pytest

from opcheck import Const, In, case, check_op

RNG = np.random.default_rng(11)
X = In((2, 3, 4, 5))


def w(*shape):
    return Const(RNG.uniform(-1, 1, shape).astype(np.float32))


def i64(*v):
    return Const(np.array(v, np.int64))


DENSE = [
    case("basic", "Gemm", [In((4, 6)), w(6, 3), w(3)]),
    case("transB", "Gemm", [In((4, 6)), w(3, 6), w(3)], {"transB": 1}),
    case("transA", "Gemm", [In((6, 4)), w(6, 3)], {"transA": 1}),
    case("transA-transB", "Gemm", [In((6, 4)), w(3, 6), w(4, 3)], {"transA": 1, "transB": 1}),
    case("alpha-beta", "Gemm", [In((4, 6)), w(6, 3), w(4, 3)], {"alpha": 0.5, "beta": 2.0}),
    case("scalar-c", "Gemm", [In((4, 6)), w(6, 3), Const(np.float32(0.3))], {"beta": -1.0}),
    case("column-c", "Gemm", [In((4, 6)), w(6, 3), w(4, 1)], {"alpha": 1.5}),
    case("no-c-opset11", "Gemm", [In((4, 6)), w(6, 3)], opset=11),
    case("runtime-b", "Gemm", [In((4, 6)), In((3, 6))], {"transB": 1}),
    case("2d", "MatMul", [In((4, 6)), w(6, 3)]),
    case("large-column-blocks", "MatMul", [In((64, 256)), w(256, 300)]),
    case("large-row-blocks", "MatMul", [In((600, 128)), w(128, 64)]),
    case("large-batched-weights", "MatMul", [In((2, 3, 40, 256)), w(256, 200)]),
    case("large-transA-transB", "Gemm", [In((256, 70)), w(300, 256), w(300)], {"transA": 1, "transB": 1}),
    case("batched", "MatMul", [In((2, 3, 4, 6)), In((2, 3, 6, 5))]),
    case("broadcast", "MatMul", [In((2, 3, 4, 6)), w(6, 5)]),
    case("broadcast-left", "MatMul", [In((4, 6)), In((3, 6, 2))]),
    case("broadcast-both", "MatMul", [In((2, 1, 4, 6)), In((3, 6, 2))]),
    case("1d-left", "MatMul", [In((6,)), In((2, 6, 3))]),
    case("1d-right", "MatMul", [In((2, 4, 6)), In((6,))]),
    case("1d-both", "MatMul", [In((6,)), In((6,))]),
]

SOFTMAX = [
    case("opset11-default-axis", "Softmax", [X], opset=11),
    case("opset11-axis2", "Softmax", [X], {"axis": 2}, opset=11),
    case("opset11-axis-neg", "Softmax", [X], {"axis": -1}, opset=11),
    case("opset13-default-axis", "Softmax", [X], opset=13),
    case("opset13-axis1", "Softmax", [X], {"axis": 1}, opset=13),
    case("large-values", "Softmax", [In((3, 50), low=-80, high=80)], opset=13),
    case("opset11", "LogSoftmax", [X], {"axis": 2}, opset=11),
    case("opset13", "LogSoftmax", [X], opset=13),
    case("last-axis", "LayerNormalization", [X, w(5), w(5)]),
    case("axis-2", "LayerNormalization", [X, w(4, 5), w(4, 5)], {"axis": 2, "epsilon": 1e-3}),
    case("axis-neg-no-bias", "LayerNormalization", [X, w(3, 4, 5)], {"axis": -3}),
    case("mean-invstd-outputs", "LayerNormalization", [X, w(5), w(5)], n_outputs=3),
    case("broadcast-scale", "LayerNormalization", [X, w(1, 5)], {"axis": -2}),
    case("instance-norm", "InstanceNormalization", [X, w(3), w(3)]),
]


def _reduce_cases():
    rows = []
    for name, input_since in (("ReduceSum", 13), ("ReduceMean", 18), ("ReduceMax", 18), ("ReduceMin", 18)):
        rows += [
            case("attr-axes", name, [X], {"axes": [1, 3]}, opset=input_since - 1),
            case("attr-neg-axes-nokeep", name, [X], {"axes": [-1], "keepdims": 0}, opset=input_since - 1),
            case("attr-all", name, [X], opset=input_since - 1),
            case("attr-all-nokeep", name, [X], {"keepdims": 0}, opset=input_since - 1),
            case("input-axes", name, [X, i64(0, 2)], opset=input_since),
            case("input-axes-nokeep", name, [X, i64(-2)], {"keepdims": 0}, opset=input_since),
            case("input-none", name, [X], opset=input_since),
            case("input-empty-noop", name, [X, Const(np.zeros(0, np.int64))], {"noop_with_empty_axes": 1},
                 opset=input_since),
            case("input-empty-all", name, [X, Const(np.zeros(0, np.int64))], opset=input_since),
        ]
    rows += [
        case("int64", "ReduceSum", [In((3, 4), "int64", -9, 9), i64(1)], opset=13),
        case("opset11", "ReduceMean", [X], {"axes": [2, 3]}, opset=11),
        case("attr-axes", "ReduceProd", [In((2, 3, 4, 5), low=0.5, high=1.5)], {"axes": [1, 3]}, opset=17),
        case("input-axes", "ReduceProd", [In((2, 3, 4, 5), low=0.5, high=1.5), i64(-1)], {"keepdims": 0}, opset=18),
        case("argmax", "ArgMax", [X], {"axis": 2}),
        case("argmax-last", "ArgMax", [In((3, 6), "int32", 0, 2)], {"axis": 1, "keepdims": 0,
                                                                      "select_last_index": 1}),
    ]
    return rows


@pytest.mark.parametrize("op_type,inputs,attrs,kw", DENSE + SOFTMAX + _reduce_cases())
def test_op_matches_onnxruntime(op_type, inputs, attrs, kw):
    check_op(op_type, inputs, attrs, **kw)
