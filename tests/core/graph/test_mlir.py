"""The .mlir text form round-trips exactly, on a tiny model and on the tutorial model."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from tpushell.core.errors import InputFileError, ModelError
from tpushell.core.graph.interpreter import run
from tpushell.core.graph.mlir import _Scanner, format_mlir, format_value, read_mlir, write_mlir
from tpushell.core.graph.onnx_import import import_onnx
from tpushell.core.graph.preprocess import PreprocessConfig

TINY = """
<ir_version: 8, opset_import: ["" : 13]>
tiny (float[1, 4, 6, 6] x) => (float[1, 2, 12, 12] a, float[1, 2, 12, 12] b, float[1, 4, 6, 6] m,
                           int64[1, 4, 6, 6] i) {
    w = Constant <value = float[4, 4, 1, 1] {1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,-1}> ()
    c = Conv <kernel_shape = [1, 1], pads = [0, 0, 0, 0]> (x, w)
    r = Relu (c)
    s = Constant <value = float[4] {1.0, 1.0, 2.0, 2.0}> ()
    u = Resize <mode = "nearest", nearest_mode = "floor", coordinate_transformation_mode = "asymmetric"> (r, , s)
    a, b = Split <axis = 1> (u)
    m, i = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (u)
}
"""


def tiny_graph():
    g = import_onnx(onnx.parser.parse_model(TINY), name="tiny")
    g.preprocess = PreprocessConfig(net_shape=(6, 6), mean=[1.5, 0, -2.25], scale=[1 / 255] * 3)
    g.meta["yolo"] = {"anchors": [10, 14, 23, 27], "masks": [[0, 1]], "classes": 80}
    return g


def test_tiny_round_trip_is_exact(tmp_path):
    g = tiny_graph()
    path = tmp_path / "tiny.mlir"
    weights = write_mlir(g, path)
    assert weights.endswith("tiny_top_f32_all_weight.npz")
    back = read_mlir(path)
    assert format_mlir(back) == format_mlir(g)
    assert [n.__dict__ for n in back.nodes] == [n.__dict__ for n in g.nodes]
    assert back.preprocess == g.preprocess and back.meta == g.meta
    assert back.shapes == g.shapes and back.dtypes == g.dtypes
    for k, v in g.weights.items():
        assert back.weights[k].dtype == v.dtype and np.array_equal(back.weights[k], v)
    x = np.random.default_rng(0).standard_normal((2, 4, 6, 6)).astype(np.float32)
    for a, b in zip(run(g, {"x": x}).values(), run(back, {"x": x}).values()):
        assert np.array_equal(a, b)


def test_multi_output_and_empty_inputs_are_written():
    text = format_mlir(tiny_graph())
    # (the Split became two Slices, as the reference canonicalizes it)
    assert '"top.MaxPool"' in text and ":2 = " in text and 'loc(fused["' in text
    assert '"top.None"' in text and "%none" in text


@pytest.mark.parametrize("value", [
    0, -7, 1.5, 0.10000000149011612, -1e-30, float("inf"), "nearest", "a \"quoted\" b", True, None,
    [1, 2, 3], [[3, 4, 5], [1, 2, 3]], {"k": [1.0, 2.0], "s": "x"},
])
def test_attribute_values_round_trip(value):
    back = _Scanner(format_value(value), "t").value()
    assert back == value and type(back) is type(value)


def test_array_attribute_round_trip():
    arr = np.array([[1.5, -2.0], [0.1, 3e-8]], dtype=np.float32)
    back = _Scanner(format_value(arr), "t").value()
    assert back.dtype == np.float32 and np.array_equal(back, arr)


def test_bad_files(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        read_mlir(tmp_path / "nope.mlir")
    bad = tmp_path / "bad.mlir"
    bad.write_text("hello\n")
    with pytest.raises(ModelError, match="not a tpushell .mlir"):
        read_mlir(bad)
    g = tiny_graph()
    write_mlir(g, tmp_path / "t.mlir")
    (tmp_path / "tiny_top_f32_all_weight.npz").unlink()
    with pytest.raises(InputFileError, match="weight file"):
        read_mlir(tmp_path / "t.mlir")


@pytest.mark.zoo
def test_tutorial_model_round_trip(yolo_graph, tmp_path, golden_input):
    write_mlir(yolo_graph, tmp_path / "yolov3_tiny.mlir")
    back = read_mlir(tmp_path / "yolov3_tiny.mlir")
    assert format_mlir(back) == format_mlir(yolo_graph)
    a = run(yolo_graph, {"input_1": golden_input})
    b = run(back, {"input_1": golden_input})
    assert all(np.array_equal(a[k], b[k]) for k in a)
