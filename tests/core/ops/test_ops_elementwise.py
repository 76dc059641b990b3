"""Activations, arithmetic, comparisons, logic and casts against onnxruntime (onnx.reference where
onnxruntime has no kernel), including broadcasting and the opset forms of Clip."""
from __future__ import annotations

import numpy as np
import pytest

from opcheck import Const, Given, In, case, check_op

X = In((2, 3, 4, 5))
POS = In((2, 3, 4, 5), low=0.01, high=5.0)
NAN = float("nan")

ACTIVATIONS = [
    case("relu", "Relu", [X]),
    case("relu-opset11", "Relu", [X], opset=11),
    case("default", "LeakyRelu", [X]),
    case("alpha-0.1", "LeakyRelu", [X], {"alpha": 0.1}),
    case("alpha-above-1", "LeakyRelu", [X], {"alpha": 2.5}),
    case("alpha-negative", "LeakyRelu", [X], {"alpha": -0.3}),
    case("several-blocks", "LeakyRelu", [In((3, 7, 111, 97))], {"alpha": 0.1}),
    case("scalar-slope", "PRelu", [X, Const(np.array([0.25], np.float32))]),
    case("channel-slope", "PRelu", [X, Const(np.array([0.1, -0.2, 0.3], np.float32).reshape(3, 1, 1))]),
    case("full-slope", "PRelu", [X, In((3, 4, 5))]),
    case("sigmoid", "Sigmoid", [In((4, 50), low=-30, high=30)]),
    case("default", "HardSigmoid", [In((3, 40), low=-5, high=5)]),
    case("attrs", "HardSigmoid", [In((3, 40), low=-5, high=5)], {"alpha": 0.3, "beta": 0.4}),
    case("hardswish", "HardSwish", [In((3, 40), low=-5, high=5)], opset=14),
    case("tanh", "Tanh", [In((3, 40), low=-6, high=6)]),
    case("erf", "Erf", [In((4, 60), low=-4, high=4)]),
    case("erf-tiny", "Erf", [In((4, 60), low=-1e-3, high=1e-3)]),
    case("exp", "Exp", [In((3, 40), low=-10, high=10)]),
    case("log", "Log", [POS]),
    case("sqrt", "Sqrt", [POS]),
    case("abs", "Abs", [X]),
    case("neg", "Neg", [X]),
    case("neg-int", "Neg", [In((3, 4), "int64", -9, 9)]),
    case("reciprocal", "Reciprocal", [POS]),
    case("floor", "Floor", [In((3, 40), low=-5, high=5)]),
    case("ceil", "Ceil", [In((3, 40), low=-5, high=5)]),
    case("softplus", "Softplus", [In((3, 40), low=-30, high=30)]),
]

CLIP = [
    case("opset6-attrs", "Clip", [X], {"min": -0.5, "max": 0.7}, opset=6, ref="onnx"),
    case("opset6-default", "Clip", [X], opset=6, ref="onnx"),
    case("opset11-both", "Clip", [X, Const(np.float32(-0.5)), Const(np.float32(0.7))], opset=11),
    case("opset11-min-only", "Clip", [X, Const(np.float32(-0.5))], opset=11),
    case("opset11-max-only", "Clip", [X, None, Const(np.float32(0.7))], opset=11),
    case("opset11-none", "Clip", [X], opset=11),
    case("opset13-runtime-bounds", "Clip", [X, Given(np.float32(-1.0)), Given(np.float32(1.5))], opset=13),
    case("opset13-int32", "Clip", [In((4, 5), "int32", -10, 10), Const(np.int32(-3)), Const(np.int32(4))], opset=13),
]

ARITHMETIC = [
    case("same-shape", "Add", [X, X]),
    case("broadcast", "Add", [X, In((4, 1))]),
    case("broadcast-both", "Add", [In((2, 1, 5)), In((3, 1))]),
    case("const-scalar", "Add", [X, Const(np.float32(1.5))]),
    case("int64", "Add", [In((3, 4), "int64", -100, 100), In((4,), "int64", -100, 100)]),
    case("opset11", "Add", [X, In((5,))], opset=11),
    case("broadcast", "Sub", [X, In((3, 1, 1))]),
    case("int32", "Sub", [In((3, 4), "int32", -100, 100), In((3, 4), "int32", -100, 100)]),
    case("broadcast", "Mul", [X, In((1, 3, 1, 5))]),
    case("const", "Mul", [X, Const(np.float32(0.1))]),
    case("float", "Div", [X, In((5,), low=0.5, high=2)]),
    case("int32-truncates", "Div", [In((4, 6), "int32", -50, 50), In((6,), "int32", 1, 7)]),
    case("int64-negative-divisor", "Div", [In((4, 6), "int64", -50, 50), In((6,), "int64", -7, -1)]),
    case("float-exponent", "Pow", [POS, In((5,), low=-2, high=2)]),
    case("square", "Pow", [X, Const(np.float32(2.0))]),
    case("int-exponent", "Pow", [X, Const(np.int64(3))]),
    case("sqrt", "Pow", [POS, Const(np.float32(0.5))]),
    case("two", "Max", [X, In((4, 5))]),
    case("three", "Max", [In((4, 1)), X, In((5,))]),
    case("one", "Max", [X]),
    case("int32", "Max", [In((3, 4), "int32", -9, 9), In((4,), "int32", -9, 9)]),
    case("two", "Min", [X, In((1, 5))]),
    case("three", "Sum", [In((4, 1)), X, In((5,))]),
    case("one", "Sum", [X]),
    case("two", "Mean", [X, In((3, 1, 1))]),
    case("three", "Mean", [In((4, 5)), X, In((5,))]),
    case("three", "Min", [In((4, 1)), X, In((5,))]),
]

COMPARE = [
    case("broadcast", "Where", [In((4, 5), "bool"), X, In((5,))]),
    case("cond-broadcast", "Where", [In((5,), "bool"), In((3, 5)), In((3, 1))]),
    case("int64", "Where", [In((3, 4), "bool"), In((3, 4), "int64", -9, 9), In((4,), "int64", -9, 9)]),
    case("nan", "IsNaN", [Given(np.array([[1.0, NAN, -2.0], [NAN, 0.0, np.inf]], np.float32))]),
    case("and", "And", [In((3, 4), "bool"), In((4,), "bool")]),
    case("not", "Not", [In((3, 4), "bool")]),
    case("or", "Or", [In((3, 4), "bool"), In((4,), "bool")]),
    case("float-ties", "Equal", [Given(np.array([[1, 2, 3], [4, 5, 6]], np.float32)),
                                 Given(np.array([1, 0, 3], np.float32))]),
    case("int64", "Equal", [In((4, 5), "int64", 0, 3), In((5,), "int64", 0, 3)]),
    case("bool", "Equal", [In((4, 5), "bool"), In((4, 5), "bool")], opset=11),
    case("float", "Greater", [In((4, 5)), In((5,))]),
    case("ties", "Greater", [In((4, 5), "int32", 0, 3), In((5,), "int32", 0, 3)]),
    case("ties", "GreaterOrEqual", [In((4, 5), "int32", 0, 3), In((5,), "int32", 0, 3)]),
    case("float", "GreaterOrEqual", [In((4, 5)), In((4, 1))]),
    case("float", "Less", [In((4, 5)), In((5,))]),
    case("ties", "Less", [In((4, 5), "int64", 0, 3), In((5,), "int64", 0, 3)]),
    case("ties", "LessOrEqual", [In((4, 5), "int64", 0, 3), In((5,), "int64", 0, 3)]),
    case("float", "LessOrEqual", [In((4, 5)), In((4, 1))]),
]

CAST = [
    case("float-to-int32", "Cast", [In((4, 6), low=-100, high=100)], {"to": 6}),
    case("float-to-int64", "Cast", [In((4, 6), low=-100, high=100)], {"to": 7}),
    case("float-to-uint8", "Cast", [In((4, 6), low=0, high=255)], {"to": 2}),
    case("float-to-int8", "Cast", [In((4, 6), low=-120, high=120)], {"to": 3}),
    case("float-to-float16", "Cast", [X], {"to": 10}),
    case("float-to-bool", "Cast", [Given(np.array([0.0, -0.0, 1.5, -2.0, NAN], np.float32))], {"to": 9}),
    case("float-to-double", "Cast", [X], {"to": 11}),
    case("int64-to-float", "Cast", [In((4, 6), "int64", -1000, 1000)], {"to": 1}),
    case("bool-to-float", "Cast", [In((4, 6), "bool")], {"to": 1}),
    case("int32-to-int64", "Cast", [In((4, 6), "int32", -1000, 1000)], {"to": 7}),
    case("float16-to-float", "Cast", [In((4, 6), "float16")], {"to": 1}),
    case("opset11", "Cast", [X], {"to": 6}, opset=11),
    case("like-int32", "CastLike", [In((4, 6), low=-100, high=100), Const(np.zeros(1, np.int32))], opset=15),
    case("like-float16", "CastLike", [X, In((1,), "float16")], opset=15),
    case("identity", "Identity", [X]),
    case("dropout-mask", "Dropout", [X], n_outputs=2, opset=13),
    case("dropout-ratio-mask", "Dropout", [X, Const(np.float32(0.3)), Const(np.array(False))], n_outputs=2,
         opset=13),
    case("identity-int", "Identity", [In((3,), "int64", 0, 9)]),
]


@pytest.mark.parametrize("op_type,inputs,attrs,kw", ACTIVATIONS + CLIP + ARITHMETIC + COMPARE + CAST)
def test_op_matches_reference(op_type, inputs, attrs, kw):
    check_op(op_type, inputs, attrs, **kw)


def _textbook(op_type: str, x: np.ndarray) -> np.ndarray:
    """The formulas the blocked kernels must reproduce bit for bit (calibration tables of SiLU
    and HardSwish models stay identical): sigmoid split by sign, x * sigmoid, x * clip."""
    e = np.exp(-np.abs(x))
    sig = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)
    if op_type == "Sigmoid":
        return sig
    if op_type == "SiLU":
        return x * sig
    return x * np.clip(x * np.float32(1 / 6) + np.float32(0.5), 0, 1)


@pytest.mark.parametrize("op_type", ["Sigmoid", "SiLU", "HardSwish"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_activations_equal_the_textbook_formula_bit_for_bit(op_type, dtype):
    from tpushell.core.ops import eval_op
    from tpushell.core.ops.elementwise import BLOCK
    rng = np.random.default_rng(7)
    for n in (9, 8 * BLOCK + 5):                  # one block inline; many on the threads, a tail
        x = (rng.standard_normal(n) * 8).astype(dtype)
        x[:9] = [0.0, -0.0, 88.0, -88.0, 1e30, -1e30, np.inf, -np.inf, np.nan]
        with np.errstate(all="ignore"):
            got, want = eval_op(op_type, x), _textbook(op_type, x)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want, equal_nan=True)
        assert np.array_equal(np.signbit(got), np.signbit(want))
