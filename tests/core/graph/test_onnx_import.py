"""ONNX import: shape subgraphs fold away, BN folds and Relu fuses with reference naming, cutting
at any tensor, one error for all unsupported ops, clear errors for bad files and options, and a
small multi-op CNN end to end against onnxruntime at batch 1 and 3."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from opcheck import assert_matches, make_model, ours, reference
from tpushell.core.errors import InputFileError, ModelError, OptionError, TpuError, UnsupportedOpError
from tpushell.core.graph.interpreter import run
from tpushell.core.graph.onnx_import import import_onnx

RNG = np.random.default_rng(3)
SHAPE_OPS = {"Shape", "Gather", "Unsqueeze", "Concat", "Range", "Expand", "ConstantOfShape", "Cast",
             "Identity", "Constant"}


def weight(name, *shape, low=-1.0, high=1.0):
    return numpy_helper.from_array(RNG.uniform(low, high, shape).astype(np.float32), name)


def ints(name, *values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


def graph_model(nodes, inputs, outputs, inits=(), opset=13):
    """A model from nodes; inputs/outputs are (name, shape) pairs of float32 tensors."""
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
                          list(inits))
    return make_model(g, opset)


def with_outputs(model: onnx.ModelProto, names) -> onnx.ModelProto:
    """A copy whose graph outputs are `names` (any tensors), for asking onnxruntime about them."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    m.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names)
    return m


def feeds_for(model: onnx.ModelProto, batch: int | None = None) -> dict:
    out = {}
    for i in model.graph.input:
        dims = [d.dim_value for d in i.type.tensor_type.shape.dim]
        if batch is not None:
            dims[0] = batch
        out[i.name] = RNG.uniform(-1, 1, dims).astype(np.float32)
    return out


def assert_like_ort(model: onnx.ModelProto, feeds: dict, names=None) -> None:
    names = names or [o.name for o in model.graph.output]
    want = reference(with_outputs(model, names), feeds)
    got = ours(model, feeds, None)
    for n, w in zip(names, want):
        assert_matches(got[n], w, n)


# ---- constant folding of shape subgraphs -----------------------------------------------------------
def shape_subgraph_model():
    """A Conv whose output is reshaped and offset by values computed from its own shape."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Shape", ["c"], ["s"]),
        helper.make_node("Constant", [], ["i0"], value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Gather", ["s", "i0"], ["n"]),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["flat_shape"], axis=0),
        helper.make_node("Gather", ["s", "i1"], ["ch"]),
        helper.make_node("Range", ["zero", "ch", "one"], ["r"]),
        helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
        helper.make_node("Identity", ["rf"], ["rfi"]),
        helper.make_node("Unsqueeze", ["rfi", "ax023"], ["r4"]),
        helper.make_node("Expand", ["r4", "s"], ["e"]),
        helper.make_node("ConstantOfShape", ["s"], ["half"],
                         value=numpy_helper.from_array(np.array([0.5], np.float32))),
        helper.make_node("Add", ["c", "e"], ["y1"]),
        helper.make_node("Mul", ["y1", "half"], ["y2"]),
        helper.make_node("Reshape", ["y2", "flat_shape"], ["y"]),
    ]
    scalars = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("i1", 1), ("zero", 0), ("one", 1))]
    inits = [weight("w", 4, 3, 3, 3), ints("ax0", 0), ints("minus1", -1), ints("ax023", 0, 2, 3)] + scalars
    return graph_model(nodes, [("x", [1, 3, 8, 8])], [("y", [1, 256])], inits)


def test_shape_subgraphs_fold_away_and_outputs_still_match():
    model = shape_subgraph_model()
    graph = import_onnx(model)
    left = {n.op_type for n in graph.nodes}
    assert not left & SHAPE_OPS, f"not folded: {sorted(left & SHAPE_OPS)}"
    assert left == {"Conv", "Add", "Mul", "Reshape"}
    assert_like_ort(model, feeds_for(model))


def test_folded_model_runs_at_another_batch():
    model = shape_subgraph_model()
    graph = import_onnx(model)
    x = RNG.uniform(-1, 1, (3, 3, 8, 8)).astype(np.float32)
    y = run(graph, {"x": x})[graph.outputs[0]]
    one = [run(graph, {"x": x[i:i + 1]})[graph.outputs[0]] for i in range(3)]
    assert y.shape == (3, 256)
    np.testing.assert_array_equal(y, np.concatenate(one))


# ---- BN folding and Relu fusion, with the reference's names -----------------------------------------
def conv_bn_model(conv_bias: bool, then: str | None):
    nodes = [helper.make_node("Conv", ["x", "w"] + (["b"] if conv_bias else []), ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "beta", "m", "v"], ["bn"], epsilon=1e-3)]
    out = "bn"
    if then:
        nodes.append(helper.make_node(then, ["bn"], ["act"]))
        out = "act"
    inits = [weight("w", 5, 3, 3, 3), weight("b", 5), weight("s", 5), weight("beta", 5), weight("m", 5),
             weight("v", 5, low=0.2, high=2.0)]
    return graph_model(nodes, [("x", [2, 3, 7, 7])], [(out, [2, 5, 7, 7])], inits)


@pytest.mark.parametrize("conv_bias", [False, True])
def test_batchnorm_folds_into_conv_keeping_the_conv_name(conv_bias):
    model = conv_bn_model(conv_bias, None)
    graph = import_onnx(model)
    assert [(n.name, n.op_type) for n in graph.nodes] == [("c_Conv", "Conv")]
    assert graph.outputs == ["c_Conv"]
    assert_like_ort(model, feeds_for(model))


def test_relu_fuses_into_conv_under_the_relu_name():
    model = conv_bn_model(True, "Relu")
    graph = import_onnx(model)
    assert [(n.name, n.op_type) for n in graph.nodes] == [("act_Relu", "Conv")]
    assert graph.node("act_Relu").attrs["_relu"] == 1
    assert_like_ort(model, feeds_for(model))


def test_leaky_relu_stays_a_separate_op():
    graph = import_onnx(conv_bn_model(False, "LeakyRelu"))
    assert [(n.name, n.op_type) for n in graph.nodes] == [("c_Conv", "Conv"), ("act_LeakyRelu", "LeakyRelu")]


def test_batchnorm_with_two_readers_of_the_conv_is_not_folded():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "s", "beta", "m", "v"], ["bn"]),
             helper.make_node("Add", ["bn", "c"], ["y"])]
    inits = [weight("w", 2, 3, 1, 1), weight("s", 2), weight("beta", 2), weight("m", 2),
             weight("v", 2, low=0.5, high=1.0)]
    model = graph_model(nodes, [("x", [1, 3, 4, 4])], [("y", [1, 2, 4, 4])], inits)
    # not folded: the reference turns it into a Scale
    assert "Scale" in {n.op_type for n in import_onnx(model).nodes}
    assert_like_ort(model, feeds_for(model))


# ---- a small multi-op CNN, end to end, batch-agnostic ---------------------------------------------
def mini_cnn(batch: int) -> onnx.ModelProto:
    """Conv+BN+Relu, residual Add, MaxPool, Resize, Concat, GAP, a Reshape that spells out the
    batch size (as exporters do), Gemm and a Softmax head."""
    rng = np.random.default_rng(5)  # the same weights whatever the batch

    def w(name, *shape, low=-0.5, high=0.5):
        return numpy_helper.from_array(rng.uniform(low, high, shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "s1", "beta1", "m1", "v1"], ["bn1"]),
        helper.make_node("Relu", ["bn1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("LeakyRelu", ["c2"], ["l2"], alpha=0.1),
        helper.make_node("Add", ["l2", "r1"], ["res"]),
        helper.make_node("MaxPool", ["res"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p", "w3"], ["c3"]),
        helper.make_node("Resize", ["c3", "", "scales"], ["up"], mode="nearest"),
        helper.make_node("Concat", ["up", "res"], ["cat"], axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"]),
        helper.make_node("Reshape", ["gap", "flat"], ["f"]),
        helper.make_node("Gemm", ["f", "wfc", "bfc"], ["fc"], transB=1),
        helper.make_node("Softmax", ["fc"], ["prob"], axis=-1),
    ]
    inits = [w("w1", 8, 3, 3, 3), w("b1", 8), w("s1", 8), w("beta1", 8), w("m1", 8),
             w("v1", 8, low=0.5, high=1.5), w("w2", 8, 8, 3, 3), w("w3", 4, 8, 1, 1),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             ints("flat", batch, 12), w("wfc", 10, 12), w("bfc", 10)]
    return graph_model(nodes, [("x", [batch, 3, 16, 16])], [("prob", [batch, 10]), ("up", [batch, 4, 16, 16])],
                       inits)


@pytest.mark.parametrize("batch", [1, 3, 0])
def test_mini_cnn_matches_onnxruntime_at_any_batch(batch):
    ort_model = mini_cnn(batch)
    graph = import_onnx(mini_cnn(1))          # imported once at batch 1, run at `batch`
    feeds = feeds_for(ort_model)
    names = ["prob", "up", "res", "cat", "f"]
    want = reference(with_outputs(ort_model, names), feeds)
    to_ir = {onnx_name: ir for ir, onnx_name in graph.meta["onnx_names"].items()}
    got = run(graph, feeds, [to_ir[n] for n in names])
    for n, w in zip(names, want):
        assert_matches(got[to_ir[n]], w, n)


def test_mini_cnn_structure_after_import():
    graph = import_onnx(mini_cnn(1))
    assert graph.summary() == {"Conv": 3, "LeakyRelu": 1, "Add": 1, "MaxPool": 1, "Upsample": 1, "Concat": 1,
                               "AvgPool": 1, "Reshape": 1, "MatMul": 1, "Softmax": 1}
    assert graph.node("r1_Relu").op_type == "Conv"


ONNX_TENSORS = ["c1", "bn1", "r1", "c2", "l2", "res", "p", "c3", "up", "cat", "gap", "f", "fc"]


@pytest.mark.parametrize("tensor", ONNX_TENSORS)
def test_cut_at_any_tensor_keeps_exactly_what_it_needs(tensor):
    model = mini_cnn(1)
    graph = import_onnx(model, output_names=[tensor])
    assert len(graph.outputs) == 1
    assert [n.name for n in graph.upstream(graph.outputs)] == graph.op_names, "unneeded nodes kept"
    feeds = feeds_for(model)
    got = run(graph, feeds)[graph.outputs[0]]
    assert_matches(got, reference(with_outputs(model, [tensor]), feeds)[0], tensor)
    assert not graph.downstream(graph.outputs)
    assert all(w in {t for n in graph.nodes for t in n.inputs} for w in graph.weights), "unused weights kept"


def test_cut_accepts_ir_names_and_several_outputs():
    graph = import_onnx(mini_cnn(1), output_names=["up_Resize", "res"])
    assert graph.outputs == ["up_Resize", "res_Add"]
    assert "Softmax" not in graph.summary()


def test_yolo_style_cut_drops_the_tail():
    model = mini_cnn(1)
    graph = import_onnx(model, output_names=["up"])
    assert {n.op_type for n in graph.nodes} == {"Conv", "LeakyRelu", "Add", "MaxPool", "Upsample"}


# ---- errors: one line, the exact class, naming the thing and what is valid --------------------------
def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


def test_unsupported_ops_reported_together_before_running():
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("TopK", ["a", "k"], ["v", "i"], name="top"),
             helper.make_node("NonMaxSuppression", ["v", "v"], ["nms"], name="nms1"),
             helper.make_node("TopK", ["x", "k"], ["v2", "i2"], name="top2"),
             helper.make_node("FancyOp", ["x"], ["z"], name="custom", domain="com.acme")]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5])],
                          [helper.make_empty_tensor_value_info(n) for n in ("nms", "v2", "z")],
                          [ints("k", 2)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.acme", 1)],
                              ir_version=8)
    with pytest.raises(UnsupportedOpError) as err:
        import_onnx(model)
    msg = one_line(err)
    for part in ("TopK (top, top2)", "NonMaxSuppression (nms1)", "com.acme.FancyOp (custom)"):
        assert part in msg


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError) as err:
        import_onnx(tmp_path / "nope.onnx")
    assert "nope.onnx" in one_line(err)


@pytest.mark.parametrize("content", [b"", b"hello, not a model\n", bytes(range(256)) * 4],
                         ids=["empty", "text", "binary"])
def test_non_onnx_file(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(InputFileError) as err:
        import_onnx(path)
    assert "bad.onnx" in one_line(err)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(InputFileError) as err:
        import_onnx(tmp_path)
    assert str(tmp_path) in one_line(err)


@pytest.mark.parametrize("shapes,expect", [
    ([[1, 3, 16, 16], [1, 3, 16, 16]], "2 shape(s)"),
    ([[1, 3, 16]], "does not fit"),
    ([[1, 4, 16, 16]], "does not fit"),
], ids=["two-for-one-input", "wrong-rank", "wrong-channels"])
def test_wrong_input_shapes(shapes, expect):
    with pytest.raises(OptionError) as err:
        import_onnx(mini_cnn(1), input_shapes=shapes)
    msg = one_line(err)
    assert expect in msg and "'x'" in msg


def test_unknown_output_name_suggests_close_ones():
    with pytest.raises(ModelError) as err:
        import_onnx(mini_cnn(1), output_names=["rez"])
    msg = one_line(err)
    assert "'rez'" in msg and "res" in msg


def test_errors_are_tpu_errors():
    for cls in (InputFileError, ModelError, OptionError, UnsupportedOpError):
        assert issubclass(cls, TpuError)


@pytest.mark.zoo
def test_yolo_import_folds_to_the_tutorial_ops(yolo_graph):
    assert yolo_graph.summary() == {"Conv": 13, "LeakyRelu": 11, "MaxPool": 6, "Upsample": 1, "Concat": 1,
                                    "Permute": 2}
    assert yolo_graph.outputs == ["transpose_output1_Transpose", "transpose_output_Transpose"]
    assert yolo_graph.node("conv5_Conv").inputs[1:] == ["conv5_Conv_filter", "conv5_Conv_bias"]


def test_training_mode_batchnorm_is_refused_at_import_naming_the_op():
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "beta", "m", "v"], ["y"], training_mode=1)]
    inits = [weight("s", 3), weight("beta", 3), weight("m", 3), weight("v", 3, low=0.5, high=1.0)]
    model = graph_model(nodes, [("x", [2, 3, 4, 4])], [("y", [2, 3, 4, 4])], inits, opset=15)
    with pytest.raises(ModelError) as err:
        import_onnx(model)
    msg = one_line(err)
    assert "y_BatchNormalization" in msg and "training" in msg


def test_optional_outputs_are_computed_when_read():
    """MaxPool's Indices and Dropout's mask exist only when the model reads them."""
    nodes = [helper.make_node("MaxPool", ["x"], ["p", "idx"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Dropout", ["p"], ["d", "mask"])]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                          [helper.make_empty_tensor_value_info(n) for n in ("d", "idx", "mask")])
    model = make_model(g, 13)
    graph = import_onnx(model)
    assert graph.node("p_MaxPool").attrs["_num_outputs"] == 2
    assert_like_ort(model, feeds_for(model))


def test_an_optional_output_named_empty_is_left_out():
    """ONNX writes "" for an optional output that is not wanted; two of them are no clash."""
    nodes = [helper.make_node("MaxPool", ["x"], ["p", ""], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Dropout", ["p"], ["a", ""])]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                          [helper.make_empty_tensor_value_info("a")])
    model = make_model(g, 13)
    import_onnx(model)
    assert_like_ort(model, feeds_for(model))


def test_cut_comes_before_the_support_check_and_drops_unused_inputs():
    """A tail we cannot run (and the extra input it reads) vanish when cut away, as in the
    model-zoo tiny-yolov3 whose NMS tail reads `image_shape`."""
    model = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1, 4] x, float[1, 2] image_shape) => (float[1, 4] y) {
        h = Relu (x)
        s = Selu (h)
        y = Celu (s)
    }
    """)
    with pytest.raises(UnsupportedOpError, match="Celu.*Selu"):
        import_onnx(model)
    g = import_onnx(model, input_shapes=[[1, 4], [1, 2]], output_names=["h"])
    assert g.input_names == ["x"] and g.outputs == ["h_Relu"]
    assert [n.op_type for n in g.nodes] == ["Relu"]
    x = np.array([[-1, 2, -3, 4]], np.float32)
    assert np.array_equal(run(g, {"x": x})["h_Relu"], np.maximum(x, 0))
    assert import_onnx(model, input_shapes=[[1, 4]], output_names=["h_Relu"]).outputs == ["h_Relu"]
