"""Test fixtures for the evaluator and the searches: a tiny CNN with one fragile layer and a
calibration table measured on it (the plans come from the real lowering, core/quant/lowering.py).

The fragile layer `f_Conv` has weights with a huge dynamic range: each output channel gives an
input channel that is always zero a weight 1000 times the others, so at its per-channel INT8 weight
scale every useful weight rounds to zero. Only keeping that layer in float gives a good output.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tpushell.core.calibration.tables import CalibrationTable, CalRow
from tpushell.core.graph.interpreter import run
from tpushell.core.graph.ir import Graph
from tpushell.core.graph.onnx_import import import_onnx


def fragile_onnx(path, seed: int = 0) -> str:
    """a_Conv -> leaky -> f_Conv (fragile) -> leaky -> b_Conv -> leaky -> c_Conv (output)."""
    rng = np.random.default_rng(seed)

    def conv(name, x, y, cin, cout, k, scale=0.3):
        w = (rng.standard_normal((cout, cin, k, k)) * scale).astype(np.float32)
        b = (rng.standard_normal(cout) * 0.1).astype(np.float32)
        return w, b, helper.make_node("Conv", [x, name + "_w", name + "_b"], [y],
                                      pads=[k // 2] * 4)

    layers = []
    inits = []
    specs = [("a", "x", "a", 4, 8, 3), ("f", "a_l", "f", 8, 8, 1), ("b", "f_l", "b", 8, 8, 3),
             ("c", "b_l", "c", 8, 4, 1)]
    for name, x, y, cin, cout, k in specs:
        w, b, node = conv(name, x, y, cin, cout, k)
        if name == "a":
            w[0], b[0] = 0.0, 0.0      # channel 0 of a is always zero ...
        if name == "f":
            w[:, 0] = 1000.0           # ... and weighs 1000x in every channel of f
        inits += [numpy_helper.from_array(w, name + "_w"), numpy_helper.from_array(b, name + "_b")]
        layers.append(node)
        if name != "c":
            layers.append(helper.make_node("LeakyRelu", [y], [y + "_l"], alpha=0.1))
    graph = helper.make_graph(layers, "fragile",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 4, 8, 8])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))
    return str(path)


def overflow_graph(tmp_path) -> Graph:
    """g_Conv -> h_Conv where g's outputs (~1e5) overflow F16 but not a calibrated INT8 scale
    (h is 3x3, so the two are not merged as two 1x1 convolutions would be)."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array((rng.standard_normal((2, 2, 1, 1)) * 3e4).astype(np.float32), "gw"),
             numpy_helper.from_array((rng.standard_normal((2, 2, 3, 3)) * 1e-4).astype(np.float32), "hw")]
    nodes = [helper.make_node("Conv", ["x", "gw"], ["g"]),
             helper.make_node("Conv", ["g", "hw"], ["h"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "overflow",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 2, 4, 4])],
                              inits)
    path = tmp_path / "overflow.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return import_onnx(str(path), name="overflow")


def fragile_graph(tmp_path) -> Graph:
    return import_onnx(fragile_onnx(tmp_path / "fragile.onnx"), name="fragile")


def samples(graph: Graph, n: int, seed: int = 1) -> dict[str, np.ndarray]:
    info = graph.inputs[0]
    rng = np.random.default_rng(seed)
    return {info.name: rng.standard_normal((n,) + tuple(info.shape[1:])).astype(np.float32)}


def max_table(graph: Graph, feeds: dict[str, np.ndarray]) -> CalibrationTable:
    """A calibration table with threshold = absmax of every tensor over `feeds`."""
    every = run(graph, feeds, keep_all=True)
    every.update(feeds)
    rows = {t: CalRow(float(np.abs(v).max()), float(v.min()), float(v.max()))
            for t, v in every.items()}
    return CalibrationTable(rows)


def combination_onnx(path, seed: int = 0) -> str:
    """Two fragile layers and a pair that matters only in combination:

    a_Conv -> leaky -> f1_Conv -> leaky -> b_Conv -> leaky -> f2_Conv -> leaky -> g1_Conv -> g2_Conv

    f1 and f2 are fragile as `fragile_onnx`'s f (a 1000x weight on an input channel that is
    always zero kills their INT8 weights). g1's output has one channel near 1000 that g2 ignores
    beside small channels g2 reads: in INT8 the small ones round to zero, so the tensor between
    g1 and g2 must stay float, which needs both g1 and g2 in float: either alone gains nothing.
    And while f1 or f2 is INT8 nothing else gains either, so a search adding one layer at a
    time finds no first step."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def conv(name, x, cin, cout, k, leaky=True):
        w = (rng.standard_normal((cout, cin, k, k)) * 0.3).astype(np.float32)
        b = (rng.standard_normal(cout) * 0.1).astype(np.float32)
        if name in ("a", "b"):
            w[0], b[0] = 0.0, 0.0            # channel 0 always zero ...
        if name in ("f1", "f2"):
            w[:, 0] = 1000.0                 # ... weighs 1000x in every channel of f1 / f2
        if name == "g1":
            w[0], b[0] = 0.0, 1000.0         # channel 0 is a constant 1000
        if name == "g2":
            w[:, 0] = 0.0                    # ... which g2 ignores
        inits.extend([numpy_helper.from_array(w, name + "_w"), numpy_helper.from_array(b, name + "_b")])
        nodes.append(helper.make_node("Conv", [x, name + "_w", name + "_b"], [name], pads=[k // 2] * 4))
        if not leaky:
            return name
        nodes.append(helper.make_node("LeakyRelu", [name], [name + "_l"], alpha=0.1))
        return name + "_l"

    t = conv("a", "x", 4, 8, 3)
    t = conv("f1", t, 8, 8, 1)
    t = conv("b", t, 8, 8, 3)
    t = conv("f2", t, 8, 8, 1)
    t = conv("g1", t, 8, 8, 1, leaky=False)
    conv("g2", t, 8, 4, 3, leaky=False)
    graph = helper.make_graph(nodes, "combination",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("g2", TensorProto.FLOAT, [1, 4, 8, 8])],
                              inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return str(path)


def combination_graph(tmp_path) -> Graph:
    return import_onnx(combination_onnx(tmp_path / "combination.onnx"), name="combination")


def sample_folder(root, model: str, n: int) -> tuple[str, object, CalibrationTable]:
    """`n` samples of `model` saved as .npy files in root/data, and a max table of 20 others:
    what a session test needs (model, data folder, calibration table)."""
    from tpushell.core import Session
    folder = root / "data"
    folder.mkdir()
    s = Session()
    s.load(model)
    for i, x in enumerate(samples(s.model, n, seed=7)["x"]):
        np.save(folder / f"s{i:02d}.npy", x)
    return model, folder, max_table(s.model, samples(s.model, 20, seed=5))
