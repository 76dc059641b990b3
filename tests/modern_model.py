"""A small model with the modern op set (built in code, seeded), for the INT8-rule tests.

x[1,3,8,8] -> Focus -> Conv -> SiLU -> HardSwish (Paddle form) -> *1.5 +0.25 -> BatchNorm (a Scale
not after a Conv) -> Split -> Add -> Concat -> HardSigmoid ... -> ConvTranspose -> AvgPool -> Softmax
(out0, INT8);
and Conv -> Reshape -> Transpose -> MatMul+bias -> GELU -> LayerNorm -> Softmax (out1), with a
nearest Resize and a Sigmoid on the side (out2).
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

N = helper.make_node


def modern_proto(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)

    def w(*shape, scale=0.3):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    fl = {"three": 3.0, "zero": 0.0, "six": 6.0, "k": 1.5, "k2": 0.25, "sqrt2": math.sqrt(2),
          "one": 1.0, "half": 0.5, "two": 2.0, "eps": 1e-5}
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), n) for n, v in fl.items()]
    inits += [numpy_helper.from_array(np.asarray(v, np.int64), n) for n, v in [
        ("s0", [0, 0]), ("s1", [1, 0]), ("s2", [0, 1]), ("s3", [1, 1]), ("e", [1 << 30, 1 << 30]),
        ("ax", [2, 3]), ("st", [2, 2]), ("sp", [4, 4]), ("shp", [1, 8, 16])]]
    inits += [numpy_helper.from_array(a, n) for n, a in [
        ("w0", w(8, 12, 3, 3)), ("b0", w(8, scale=0.1)),
        ("g", w(8) + 1), ("bb", w(8)), ("m", w(8, scale=0.1)), ("v", np.abs(w(8)) + 0.5),
        ("wd", w(12, 6, 2, 2)), ("bd", w(6, scale=0.1)),
        ("w1", w(8, 8, 1, 1)), ("b1", w(8, scale=0.1)),
        ("W", w(8, 12)), ("B", w(12, scale=0.1)), ("lg", w(12) + 1), ("lb", w(12, scale=0.1)),
        ("up", np.array([1, 1, 2, 2], np.float32)),
    ]]
    nodes = [N("Slice", ["x", f"s{k}", "e", "ax", "st"], [f"f{k}"]) for k in range(4)] + [
        N("Concat", ["f0", "f1", "f2", "f3"], ["focus"], axis=1),
        N("Conv", ["focus", "w0", "b0"], ["c0"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        N("Sigmoid", ["c0"], ["sg"]), N("Mul", ["c0", "sg"], ["silu"]),
        N("Add", ["silu", "three"], ["a3"]), N("Clip", ["a3", "zero", "six"], ["cl"]),
        N("Mul", ["silu", "cl"], ["hm"]), N("Div", ["hm", "six"], ["hsw"]),
        N("Mul", ["hsw", "k"], ["mc"]), N("Add", ["mc", "k2"], ["ac"]),
        N("BatchNormalization", ["ac", "g", "bb", "m", "v"], ["bn"]),
        N("Split", ["bn", "sp"], ["p", "q"], axis=1), N("Add", ["p", "q"], ["pq"]),
        N("Concat", ["p", "pq", "q"], ["cat"], axis=1),
        N("Add", ["cat", "three"], ["h3"]), N("Clip", ["h3", "zero", "six"], ["hc"]),
        N("Div", ["hc", "six"], ["hsig"]),
        N("ConvTranspose", ["hsig", "wd", "bd"], ["dc"], kernel_shape=[2, 2], strides=[2, 2]),
        N("GlobalAveragePool", ["dc"], ["gap"]), N("Flatten", ["gap"], ["fl"]),
        N("Softmax", ["fl"], ["out0"], axis=1),
        N("Conv", ["hsw", "w1", "b1"], ["c1"], kernel_shape=[1, 1]),
        N("Reshape", ["c1", "shp"], ["r"]), N("Transpose", ["r"], ["t"], perm=[0, 2, 1]),
        N("MatMul", ["t", "W"], ["mm"]), N("Add", ["mm", "B"], ["mb"]),
        N("Div", ["mb", "sqrt2"], ["gd"]), N("Erf", ["gd"], ["ge"]), N("Add", ["ge", "one"], ["ga"]),
        N("Mul", ["mb", "ga"], ["gm"]), N("Mul", ["gm", "half"], ["gelu"]),
        N("ReduceMean", ["gelu"], ["mu"], axes=[-1]), N("Sub", ["gelu", "mu"], ["d"]),
        N("Pow", ["d", "two"], ["pw"]), N("ReduceMean", ["pw"], ["var"], axes=[-1]),
        N("Add", ["var", "eps"], ["ve"]), N("Sqrt", ["ve"], ["sd"]), N("Div", ["d", "sd"], ["n"]),
        N("Mul", ["n", "lg"], ["ng"]), N("Add", ["ng", "lb"], ["ln"]),
        N("Softmax", ["ln"], ["out1"], axis=-1),
        N("Resize", ["c1", "", "up"], ["rs"], mode="nearest"), N("Sigmoid", ["rs"], ["out2"]),
    ]
    graph = helper.make_graph(
        nodes, "modern", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ("out0", "out1", "out2")],
        inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def modern_samples(n: int = 4, seed: int = 1) -> np.ndarray:
    """Inputs in [-1, 1] (a signed INT8 input)."""
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3, 8, 8)).astype(np.float32)
