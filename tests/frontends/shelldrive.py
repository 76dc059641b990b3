"""Drive the two front ends line by line and collect what a person would see (stdout + stderr);
a tiny model to drive them with."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper


def run_shell(app, line: str) -> list[str]:
    """Run one line in the shell; stdout and stderr lines, in order."""
    buf = io.StringIO()
    saved = app.stdout
    app.stdout = buf
    try:
        with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(buf):
            app.onecmd_plus_hooks(line)
    finally:
        app.stdout = saved
    return buf.getvalue().splitlines()


def run_magic(ip, line: str) -> list[str]:
    """Run one command line as a line magic; the result's text, warnings and `error: ...`."""
    from IPython.core.error import UsageError
    name, _, rest = line.strip().partition(" ")
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(buf):
        try:
            result = ip.run_line_magic(name, rest)
            if result is not None:
                print(result)
        except UsageError as e:
            print(f"error: {e}")
    return buf.getvalue().splitlines()


def tiny_model(path: Path) -> Path:
    """A 4-op CNN (Conv, LeakyRelu, MaxPool, Conv) on a 1x3x8x8 input, seeded weights."""
    rng = np.random.default_rng(0)
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [4, 3, 3, 3], rng.normal(size=108).astype(np.float32))
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [2, 4, 1, 1], rng.normal(size=8).astype(np.float32))
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("LeakyRelu", ["c1"], ["r1"], alpha=0.1),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], [w1, w2])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path
