"""The reference's canonical graph, pattern by pattern, on small graphs built here: each fusion
gives the reference's op type and name, and the fused F32 graph computes what onnxruntime
computes on the original file. Patterns that only half match stay unfused and still correct."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from opcheck import assert_matches, ours, reference, rng_for
from tpushell.core.graph.onnx_import import import_onnx

N = helper.make_node
RNG = np.random.default_rng(7)


def w(*shape, scale=0.3):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def f(name, value):
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def i64(name, value):
    return numpy_helper.from_array(np.asarray(value, np.int64), name)


def model(nodes, inits, x_shape, opset=17, outputs=("y",)):
    g = helper.make_graph(nodes, "p", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_empty_tensor_value_info(o) for o in outputs], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


SIX = [f("three", 3.0), f("zero", 0.0), f("six", 6.0)]
FOCUS_SLICES = [i64("s0", [0, 0]), i64("s1", [1, 0]), i64("s2", [0, 1]), i64("s3", [1, 1]),
                i64("e", [1 << 30, 1 << 30]), i64("ax", [2, 3]), i64("st", [2, 2])]


def focus(order):
    names = ["a", "b", "c", "d"]
    nodes = [N("Slice", ["x", f"s{k}", "e", "ax", "st"], [names[k]]) for k in range(4)]
    nodes += [N("Concat", [names[k] for k in order], ["cat"], axis=1),
              N("Conv", ["cat", "fw"], ["y"], kernel_shape=[1, 1])]
    return model(nodes, FOCUS_SLICES + [f("fw", w(5, 12, 1, 1))], [1, 3, 8, 8])


def layernorm(affine=True, mean_of="x"):
    nodes = [N("ReduceMean", [mean_of], ["mu"], axes=[-1]), N("Sub", ["x", "mu"], ["d"]),
             N("Pow", ["d", "two"], ["p"]), N("ReduceMean", ["p"], ["v"], axes=[-1]),
             N("Add", ["v", "eps"], ["ve"]), N("Sqrt", ["ve"], ["sd"]),
             N("Div", ["d", "sd"], ["y" if not affine else "n"])]
    inits = [f("two", 2.0), f("eps", 1e-5)]
    if affine:
        nodes += [N("Mul", ["n", "g"], ["ng"]), N("Add", ["ng", "b"], ["y"])]
        inits += [f("g", w(8) + 1), f("b", w(8))]
    if mean_of != "x":
        nodes.insert(0, N("Relu", ["x"], [mean_of]))
    return model(nodes, inits, [1, 5, 8], opset=13)


def gelu(c):
    return model([N("Div", ["x", "c"], ["d"]), N("Erf", ["d"], ["e"]), N("Add", ["e", "one"], ["a"]),
                  N("Mul", ["x", "a"], ["m"]), N("Mul", ["m", "half"], ["y"])],
                 [f("c", c), f("one", 1.0), f("half", 0.5)], [1, 5, 8])


def paddle_hardswish(clip_max=6.0, div=6.0):
    return model([N("Add", ["x", "three"], ["a"]), N("Clip", ["a", "zero", "cmax"], ["cl"]),
                  N("Mul", ["x", "cl"], ["m"]), N("Div", ["m", "dv"], ["y"])],
                 [f("three", 3.0), f("zero", 0.0), f("cmax", clip_max), f("dv", div)], [1, 3, 4, 4])


# name -> (model, [(canonical op name, op type), ...] in graph order)
FUSED = {
    "SiLU": (model([N("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]), N("Sigmoid", ["c"], ["s"]),
                    N("Mul", ["c", "s"], ["y"])], [f("w", w(4, 3, 1, 1))], [1, 3, 4, 4]),
             [("c_Conv", "Conv"), ("y_Mul", "SiLU")]),
    "HardSwish (Paddle)": (paddle_hardswish(), [("y_HardSwish", "HardSwish")]),
    "HardSwish (HardSigmoid)": (
        model([N("HardSigmoid", ["x"], ["h"], alpha=1 / 6, beta=0.5), N("Mul", ["x", "h"], ["y"])],
              [], [1, 3, 4, 4]), [("y_HardSwish", "HardSwish")]),
    "HardSigmoid": (model([N("Add", ["x", "three"], ["a"]), N("Clip", ["a", "zero", "six"], ["cl"]),
                           N("Div", ["cl", "six"], ["y"])], SIX, [1, 3, 4, 4]),
                    [("y_HardSigmoid", "HardSigmoid")]),
    "GELU": (gelu(np.sqrt(2)), [("y_GELU", "GELU")]),
    "LayerNorm": (layernorm(), [("y_LayerNormalization", "LayerNorm")]),
    "LayerNorm (no affine)": (layernorm(affine=False), [("y_LayerNormalization", "LayerNorm")]),
    "MulConst/AddConst": (
        model([N("Mul", ["x", "k"], ["a"]), N("Add", ["a", "k2"], ["b"]), N("Sub", ["b", "k3"], ["d"]),
               N("Div", ["d", "k4"], ["y"])], [f("k", 1.5), f("k2", 0.25), f("k3", 0.5), f("k4", 4.0)],
              [1, 3, 4, 4]),
        [("a_Mul", "MulConst"), ("b_Add", "AddConst"), ("d_Sub", "AddConst"), ("y_Div", "MulConst")]),
    "Scale (BatchNorm not after a Conv)": (
        model([N("Relu", ["x"], ["r"]), N("BatchNormalization", ["r", "g", "b", "m", "v"], ["y"])],
              [f("g", w(3) + 1), f("b", w(3)), f("m", w(3)), f("v", np.abs(w(3)) + 0.5)], [1, 3, 4, 4]),
        [("r_Relu", "Relu"), ("y_BatchNormalization", "Scale")]),
    "Gemm": (model([N("Flatten", ["x"], ["fl"]), N("Gemm", ["fl", "W", "B"], ["y"], transB=1)],
                   [f("W", w(6, 48)), f("B", w(6))], [1, 3, 4, 4]),
             [("fl_Flatten", "Reshape"), ("y_Gemm", "MatMul")]),
    "MatMul + Add": (model([N("MatMul", ["x", "W"], ["m"]), N("Add", ["m", "B"], ["y"])],
                           [f("W", w(8, 6)), f("B", w(6))], [1, 5, 8]), [("y_Add", "MatMul")]),
    "GlobalAveragePool": (model([N("GlobalAveragePool", ["x"], ["y"])], [], [1, 3, 4, 4]),
                          [("y_GlobalAveragePool", "AvgPool")]),
    "ReduceMean over H, W": (model([N("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=1)], [],
                                   [1, 3, 4, 4], opset=13), [("y_ReduceMean", "AvgPool")]),
    # Blocks in row-major order keep the Concat's name; YOLOv5's column-major slices permute the
    # conv filter's input blocks and the reference names the op `..._r_Depth2Space`.
    "Focus (row-major slices)": (focus([0, 2, 1, 3]),
                                 [("cat_Concat", "Depth2Space"), ("y_Conv", "Conv")]),
    "Focus (YOLOv5 order)": (focus([0, 1, 2, 3]),
                             [("cat_Concat_r_Depth2Space", "Depth2Space"), ("y_Conv", "Conv")]),
    "nearest Resize": (model([N("Resize", ["x", "", "sc"], ["y"], mode="nearest")],
                             [f("sc", [1, 1, 2, 2])], [1, 3, 4, 4]), [("y_Resize", "Upsample")]),
    "ConvTranspose": (model([N("ConvTranspose", ["x", "w", "bb"], ["y"], kernel_shape=[2, 2],
                               strides=[2, 2])], [f("w", w(3, 4, 2, 2)), f("bb", w(4))], [1, 3, 4, 4]),
                      [("y_ConvTranspose", "Deconv")]),
    "Transpose": (model([N("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1])], [], [1, 3, 4, 4]),
                  [("y_Transpose", "Permute")]),
    "Split": (model([N("Split", ["x", "sp"], ["a", "b"], axis=1), N("Add", ["a", "b"], ["y"])],
                    [i64("sp", [2, 2])], [1, 4, 4, 4]),
              [("a_Split", "Slice"), ("b_Split", "Slice"), ("y_Add", "Add")]),
    "Softmax": (model([N("Softmax", ["x"], ["y"], axis=-1)], [], [1, 3, 4, 4]),
                [("y_Softmax", "Softmax")]),
    "Squeeze/Unsqueeze/Reshape": (
        model([N("Unsqueeze", ["x", "ax0"], ["u"]), N("Squeeze", ["u", "ax0"], ["q"]),
               N("Reshape", ["q", "shp"], ["y"])], [i64("ax0", [0]), i64("shp", [1, -1])], [1, 3, 4, 4]),
        [("u_Unsqueeze", "Unsqueeze"), ("q_Squeeze", "Squeeze"), ("y_Reshape", "Reshape")]),
}

# Half matches: one detail breaks the pattern, so the ops stay as the converter makes them.
UNFUSED = {
    "x * sigmoid(other)": (
        model([N("Relu", ["x"], ["r"]), N("Sigmoid", ["x"], ["s"]), N("Mul", ["r", "s"], ["y"])], [],
              [1, 3, 4, 4]), {"Sigmoid", "Mul"}),
    "Sigmoid also read elsewhere": (
        model([N("Sigmoid", ["x"], ["s"]), N("Mul", ["x", "s"], ["y"]), N("Relu", ["s"], ["z"])], [],
              [1, 3, 4, 4], outputs=("y", "z")), {"Sigmoid", "Mul"}),
    "HardSwish clipped at 5": (paddle_hardswish(clip_max=5.0), {"AddConst", "Relu", "Mul", "MulConst"}),
    "HardSwish divided by 5": (paddle_hardswish(div=5.0), {"AddConst", "Relu", "Mul", "MulConst"}),
    "GELU divided by 2": (gelu(2.0), {"MulConst", "Erf", "AddConst", "Mul"}),
    "LayerNorm with the mean of another tensor": (layernorm(mean_of="r"), {"ReduceMean", "Sub"}),
    "Focus slices also read elsewhere": (
        model([N("Slice", ["x", f"s{k}", "e", "ax", "st"], ["abcd"[k]]) for k in range(4)] +
              [N("Concat", list("abcd"), ["cat"], axis=1), N("Conv", ["cat", "fw"], ["y"], kernel_shape=[1, 1]),
               N("Relu", ["a"], ["z"])], FOCUS_SLICES + [f("fw", w(5, 12, 1, 1))], [1, 3, 8, 8],
              outputs=("y", "z")), {"Slice", "Concat"}),
}


def feeds_of(m, key):
    shape = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    return {"x": rng_for(key).uniform(-4, 4, shape).astype(np.float32)}


def assert_same_as_onnxruntime(m, key):
    feeds = feeds_of(m, key)
    want = reference(m, feeds)
    got = ours(m, feeds)
    for out, value in zip([o.name for o in m.graph.output], want):
        assert_matches(got[out], value, f"{key}: {out}")


@pytest.mark.parametrize("key", list(FUSED))
def test_fusion_gives_the_reference_op_and_name_and_the_same_numbers(key):
    m, expected = FUSED[key]
    g = import_onnx(m, name="p")
    assert [(n.name, n.op_type) for n in g.nodes] == expected
    assert_same_as_onnxruntime(m, key)


@pytest.mark.parametrize("key", list(UNFUSED))
def test_half_matched_pattern_stays_unfused_and_correct(key):
    m, must_have = UNFUSED[key]
    g = import_onnx(m, name="p")
    types = {n.op_type for n in g.nodes}
    assert must_have <= types, f"{key}: {sorted(types)}"
    assert not types & {"SiLU", "HardSwish", "GELU", "LayerNorm", "Depth2Space"} - must_have, key
    assert_same_as_onnxruntime(m, key)


def test_raw_onnx_names_resolve_to_the_canonical_op():
    g = import_onnx(FUSED["SiLU"][0], name="p")
    assert g.canonical_op("s_Sigmoid") == "y_Mul"
    with pytest.raises(Exception, match="s_Sigmoid.*y_Mul"):
        g.node("s_Sigmoid")
