"""Conv + LeakyRelu/Relu + tiling MaxPool run as one step when nobody observes the tensors in
between: the same bits as running them one by one, and no fusion where a tensor is needed."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from opcheck import make_model, reference
from tpushell.core.graph.interpreter import run, schedule
from tpushell.core.graph.onnx_import import import_onnx
from tpushell.core.ops.conv import conv_nd
from tpushell.core.ops.pool import MaxPool


def conv_chain(h=12, w=16, c=3, m=8, act="LeakyRelu", pool=((2, 2), (2, 2), [0, 0, 0, 0]),
               extra_outputs=(), group=1, batch=1, alpha=0.1):
    """x -> Conv 3x3 -> act -> MaxPool(kernel, strides, pads) -> Sigmoid, built with onnx.helper."""
    rng = np.random.default_rng(7)
    wt = rng.standard_normal((m, c // group, 3, 3)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], group=group)]
    src = "c"
    if act == "LeakyRelu":
        nodes.append(helper.make_node("LeakyRelu", ["c"], ["a"], alpha=alpha))
        src = "a"
    elif act == "Relu":
        nodes.append(helper.make_node("Relu", ["c"], ["a"]))
        src = "a"
    kernel, strides, pads = pool
    nodes += [helper.make_node("MaxPool", [src], ["p"], kernel_shape=kernel, strides=strides, pads=pads),
              helper.make_node("Sigmoid", ["p"], ["y"])]
    outs = [helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in ("y",) + extra_outputs]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, c, h, w])],
                          outs, [numpy_helper.from_array(wt, "w"), numpy_helper.from_array(b, "b")])
    return make_model(g, 13)


def fused_steps(graph):
    return [(s.node.op_type, {k: v for k, v in s.attrs.items() if k.startswith("_")})
            for s in schedule(graph, list(graph.outputs), frozenset(graph.outputs), fuse=True)]


def one_by_one(graph, x):
    """Every op on its own: an observer turns fusion off."""
    return run(graph, {"x": x}, observers=[lambda node, ins, outs: None])


@pytest.mark.parametrize("act", ["LeakyRelu", "Relu", None])
@pytest.mark.parametrize("batch,c,h,w", [(1, 3, 12, 16), (3, 3, 4, 6), (2, 3, 40, 38),
                                         (1, 8, 52, 52), (1, 16, 104, 104), (2, 8, 26, 26)])
def test_fused_chain_gives_the_same_values_as_op_by_op(act, batch, c, h, w):
    """Also where the conv's blocks are bands of rows: BLAS rounds a column differently in a block
    of another width, so the fused pooling must not change the split (8 x 52 x 52 once did)."""
    model = conv_chain(h=h, w=w, c=c, act=act, batch=batch)
    graph = import_onnx(model)
    steps = fused_steps(graph)
    assert steps[0][0] == "Conv" and steps[0][1].get("_pool") == (2, 2) and len(steps) == 2
    assert ("_leaky" in steps[0][1]) == (act == "LeakyRelu")
    x = np.random.default_rng(batch * h).standard_normal((batch, c, h, w)).astype(np.float32)
    x[0, :, :2] = 0.0                                 # exact zeros through bias, max and slope
    got = run(graph, {"x": x})
    want = one_by_one(graph, x)
    name = graph.outputs[0]
    np.testing.assert_array_equal(got[name], want[name])
    ref = reference(model, {"x": x})[0]
    np.testing.assert_allclose(got[name], ref, rtol=1e-5, atol=1e-6)


def test_no_fusion_where_a_tensor_is_needed_or_the_pool_does_not_tile():
    kept = import_onnx(conv_chain(extra_outputs=("a",)))              # the activation is an output
    assert fused_steps(kept)[:2] == [("Conv", {"_leaky": pytest.approx(0.1)}), ("MaxPool", {})]
    conv_kept = import_onnx(conv_chain(extra_outputs=("c",)))
    assert [op for op, _ in fused_steps(conv_kept)] == ["Conv", "LeakyRelu", "MaxPool", "Sigmoid"]
    padded = import_onnx(conv_chain(pool=((2, 2), (1, 1), [0, 0, 1, 1])))
    assert fused_steps(padded)[0] == ("Conv", {"_leaky": pytest.approx(0.1)})
    odd = import_onnx(conv_chain(h=11))
    assert [op for op, _ in fused_steps(odd)] == ["Conv", "MaxPool", "Sigmoid"]
    flat = import_onnx(conv_chain(alpha=0.0))        # pooling first would hide 0 * -inf = NaN
    assert [op for op, _ in fused_steps(flat)] == ["Conv", "LeakyRelu", "MaxPool", "Sigmoid"]
    asked = import_onnx(conv_chain())
    out = run(asked, {"x": np.ones((1, 3, 12, 16), np.float32)}, ["a_LeakyRelu", "y_Sigmoid"])
    assert out["a_LeakyRelu"].shape == (1, 8, 12, 16)


@pytest.mark.parametrize("group", [1, 2, 4])
def test_conv_nd_pooled_equals_conv_then_maxpool(group):
    """Grouped and depthwise convolutions pool after the whole convolution; the rest per block."""
    rng = np.random.default_rng(group)
    x = rng.standard_normal((2, 4, 10, 14)).astype(np.float32)
    w = rng.standard_normal((4, 4 // group, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    args = (x, w, b, [3, 3], [1, 1], [1, 1], [1, 1], [1, 1], group)
    plain = conv_nd(*args, leaky=0.2)
    want = MaxPool(plain, kernel_shape=[2, 2], strides=[2, 2])
    np.testing.assert_array_equal(conv_nd(*args, leaky=0.2, pool=(2, 2)), want)
