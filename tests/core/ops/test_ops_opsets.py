"""One small network rebuilt at every opset from 11 to 21, each op in that opset's form (axes as
attributes or inputs, Resize's roi, Split's sizes or num_outputs), against onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from opcheck import assert_matches, make_model, ours, reference


def const(name, value):
    return numpy_helper.from_array(np.asarray(value), name)


OUTPUTS = ("sm", "smc", "y", "cat")


def network(opset: int, rng: np.random.Generator):
    """Conv, Clip, MaxPool, Resize, Concat, ReduceMean, Unsqueeze/Squeeze, Split, Pad, Softmax,
    Gemm, LeakyRelu: the forms valid at `opset`."""
    nodes, inits = [], [const("w", rng.uniform(-1, 1, (4, 3, 3, 3)).astype(np.float32)),
                         const("b", rng.uniform(-1, 1, 4).astype(np.float32)),
                         const("lo", np.float32(-0.5)), const("hi", np.float32(1.5)),
                         const("scales", np.array([1, 1, 2, 2], np.float32)),
                         const("pads", np.array([1, 0, 0, 2], np.int64)),
                         const("gw", rng.uniform(-1, 1, (8, 4)).astype(np.float32))]
    add = nodes.append
    add(helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]))
    add(helper.make_node("Clip", ["c", "lo", "hi"], ["clip"]))
    add(helper.make_node("MaxPool", ["clip"], ["p"], kernel_shape=[2, 2], strides=[2, 2]))
    if opset < 13:
        inits.append(const("roi", np.zeros(0, np.float32)))
        add(helper.make_node("Resize", ["p", "roi", "scales"], ["up"], mode="nearest",
                             coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
    else:
        add(helper.make_node("Resize", ["p", "", "scales"], ["up"], mode="linear"))
    add(helper.make_node("Concat", ["up", "clip"], ["cat"], axis=1))                   # 1x8x8x8
    if opset < 18:
        add(helper.make_node("ReduceMean", ["cat"], ["rm"], axes=[3], keepdims=0))    # 1x8x8
    else:
        inits.append(const("rm_axes", np.array([3], np.int64)))
        add(helper.make_node("ReduceMean", ["cat", "rm_axes"], ["rm"], keepdims=0))
    if opset < 13:
        add(helper.make_node("Unsqueeze", ["rm"], ["u"], axes=[0]))                    # 1x1x8x8
        add(helper.make_node("Squeeze", ["u"], ["sq"], axes=[0, 1]))                   # 8x8
        add(helper.make_node("Split", ["sq"], ["s0", "s1"], axis=1, split=[4, 4]))
    else:
        inits += [const("u_axes", np.array([0], np.int64)), const("sq_axes", np.array([0, 1], np.int64))]
        add(helper.make_node("Unsqueeze", ["rm", "u_axes"], ["u"]))
        add(helper.make_node("Squeeze", ["u", "sq_axes"], ["sq"]))
        if opset < 18:
            inits.append(const("split", np.array([4, 4], np.int64)))
            add(helper.make_node("Split", ["sq", "split"], ["s0", "s1"], axis=1))
        else:
            add(helper.make_node("Split", ["sq"], ["s0", "s1"], axis=1, num_outputs=2))
    add(helper.make_node("Pad", ["s1", "pads"], ["padded"], mode="reflect"))
    add(helper.make_node("Softmax", ["padded"], ["sm"], axis=1))
    add(helper.make_node("Softmax", ["cat"], ["smc"], axis=1))     # coerced to 2-D before opset 13
    add(helper.make_node("Gemm", ["s0", "gw"], ["g"], transB=1))
    add(helper.make_node("LeakyRelu", ["g"], ["y"], alpha=0.2))
    g = helper.make_graph(nodes, f"net{opset}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_empty_tensor_value_info(n) for n in OUTPUTS], inits)
    return make_model(g, opset)


@pytest.mark.parametrize("opset", range(11, 22))
def test_network_at_every_opset_matches_onnxruntime(opset):
    rng = np.random.default_rng(opset)
    model = network(opset, rng)
    feeds = {"x": rng.uniform(-2, 2, (1, 3, 8, 8)).astype(np.float32)}
    want = reference(model, feeds)
    got = ours(model, feeds)
    for name, w in zip(OUTPUTS, want):
        assert_matches(got[name], w, f"opset {opset}: {name}")
