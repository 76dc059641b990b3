"""Tiny models and calibration tables for the quantization tests (built in code, seeded).

`yolo_like()` has the shape of the problems in tiny-yolov3: Conv -> LeakyRelu -> MaxPool chains,
a LeakyRelu feeding both a MaxPool and a Concat, a nearest 2x Resize into that Concat, a 1x1
Conv, and a Transpose at the output.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tpushell.core.calibration.tables import CalibrationTable, CalRow
from tpushell.core.graph.interpreter import run
from tpushell.core.graph.ir import Graph
from tpushell.core.graph.onnx_import import import_onnx


def _w(rng, *shape, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def yolo_like_proto(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(a, n) for n, a in [
        ("w1", _w(rng, 4, 3, 3, 3)), ("b1", _w(rng, 4, scale=0.1)),
        ("w2", _w(rng, 6, 4, 1, 1)), ("b2", _w(rng, 6, scale=0.1)),
        ("w3", _w(rng, 5, 10, 3, 3, scale=0.2)), ("b3", _w(rng, 5, scale=0.1)),
        ("up_scales", np.array([1, 1, 2, 2], np.float32)),
    ]]
    nodes = [
        helper.make_node("Conv", ["input_1", "w1", "b1"], ["c1"], kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("LeakyRelu", ["c1"], ["l1"], alpha=0.1),
        helper.make_node("MaxPool", ["l1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], kernel_shape=[1, 1]),
        helper.make_node("LeakyRelu", ["c2"], ["l2"], alpha=0.1),
        helper.make_node("Resize", ["l2", "", "up_scales"], ["up"], mode="nearest"),
        helper.make_node("Concat", ["up", "l1"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "w3", "b3"], ["c3"], kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Transpose", ["c3"], ["out"], perm=[0, 2, 3, 1]),
    ]
    graph = helper.make_graph(
        nodes, "yolo_like",
        [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, 8, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def yolo_like(seed: int = 0) -> Graph:
    """The graph of `yolo_like_proto`, imported (op names like `c1_Conv`, `l1_LeakyRelu`)."""
    return import_onnx(yolo_like_proto(seed), name="yolo_like")


def samples(n: int = 4, seed: int = 1, shape=(3, 8, 8)) -> np.ndarray:
    """Image-like inputs in [0, 1] (so the input is uint8 after quantization)."""
    return np.random.default_rng(seed).random((n,) + tuple(shape)).astype(np.float32)


def max_table(graph: Graph, x: np.ndarray, path: str | None = None) -> CalibrationTable:
    """A calibration table with threshold = absmax over `x` for every tensor ('max' method)."""
    values = run(graph, {graph.input_names[0]: x}, keep_all=True) | {graph.input_names[0]: x}
    rows = {}
    for name in graph.tensor_names():
        v = values[name]
        lo, hi = float(v.min()), float(v.max())
        rows[name] = CalRow(max(abs(lo), abs(hi)), lo, hi)
    return CalibrationTable(rows=rows, path=path)
