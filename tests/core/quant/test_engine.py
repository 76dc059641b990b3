"""The F32 engine of unobserved forwards (core/quant/engine.py): onnxruntime on our imported
graph gives the interpreter's values within float rounding, and the interpreter takes over when
asked to or when the graph cannot be exported."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper
from tpushell.core.errors import ModelError, TpuWarning
from tpushell.core.graph.interpreter import run
from tpushell.core.graph.onnx_import import import_onnx
from tpushell.core.quant import engine
from tpushell.core.quant.engine import fast_run

pytest.importorskip("onnxruntime")


def silu_block(tmp_path, op: str = "Sigmoid"):
    """Conv + x*Sigmoid(x) (imported as the reference's SiLU) + a depthwise Conv + HardSwish."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.3, 8).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.normal(0, 0.3, (8, 1, 3, 3)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node(op, ["c1"], ["s1"]),
             helper.make_node("Mul", ["c1", "s1"], ["a1"]),
             helper.make_node("Conv", ["a1", "w2"], ["c2"], group=8, pads=[1, 1, 1, 1]),
             helper.make_node("HardSwish", ["c2"], ["y"])]
    g = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", 1, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", 1, [1, 8, 16, 16])], inits)
    path = tmp_path / "block.onnx"
    path.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]).SerializeToString())
    return import_onnx(path, input_shapes=[[1, 3, 16, 16]], name="block")


def test_fast_run_equals_the_interpreter_within_float_rounding(tmp_path):
    graph = silu_block(tmp_path)
    x = np.random.default_rng(0).normal(size=(4, 3, 16, 16)).astype(np.float32)   # any batch
    y = graph.outputs[0]
    ours, fast = run(graph, {"x": x}), fast_run(graph, {"x": x})
    assert fast[y].shape == ours[y].shape == (4, 8, 16, 16) and fast[y].dtype == np.float32
    np.testing.assert_allclose(fast[y], ours[y], rtol=1e-5, atol=1e-5)
    assert engine.session(graph, (y,)) is not None       # it did run on onnxruntime


def test_inner_tensors_can_be_asked_for(tmp_path):
    graph = silu_block(tmp_path)
    x = np.random.default_rng(1).normal(size=(1, 3, 16, 16)).astype(np.float32)
    inner = next(n.outputs[0] for n in graph.nodes if n.op_type == "SiLU")
    fast = fast_run(graph, {"x": x}, [inner, graph.outputs[0]])
    np.testing.assert_allclose(fast[inner], run(graph, {"x": x}, [inner])[inner], rtol=1e-5, atol=1e-6)


def test_numpy_engine_is_the_interpreter_bit_for_bit(tmp_path, monkeypatch):
    graph = silu_block(tmp_path)
    x = np.random.default_rng(2).normal(size=(1, 3, 16, 16)).astype(np.float32)
    monkeypatch.setenv("TPUSHELL_ENGINE", "numpy")
    y = graph.outputs[0]
    assert np.array_equal(fast_run(graph, {"x": x})[y], run(graph, {"x": x})[y])
    monkeypatch.setenv("TPUSHELL_ENGINE", "tvm")
    with pytest.raises(ModelError, match="TPUSHELL_ENGINE='tvm'.*'onnxruntime', 'numpy'"):
        fast_run(graph, {"x": x})


def test_a_graph_onnxruntime_cannot_take_falls_back_with_a_warning(tmp_path, monkeypatch):
    graph = silu_block(tmp_path)
    x = np.random.default_rng(4).normal(size=(1, 3, 16, 16)).astype(np.float32)

    def broken(plan):
        raise NotImplementedError("no ONNX form for op X")
    monkeypatch.setattr("tpushell.core.quant.qdq_export.qdq_model", broken)
    with pytest.warns(TpuWarning, match="'block' runs F32 on the numpy interpreter.*no ONNX form"):
        y = fast_run(graph, {"x": x})
    assert np.array_equal(y[graph.outputs[0]], run(graph, {"x": x})[graph.outputs[0]])


def test_wrong_feeds_name_the_input(tmp_path):
    graph = silu_block(tmp_path)
    with pytest.raises(ModelError, match="input 'x' has shape"):
        fast_run(graph, {"x": np.zeros((1, 3, 8, 8), np.float32)})


def test_an_f32_tail_computes_what_follows_new_values_of_a_cut(tmp_path):
    graph = silu_block(tmp_path)
    plan, _ = engine.f32_export(graph)
    silu = next(n.outputs[0] for n in graph.nodes if n.op_type == "SiLU")
    tail = engine.f32_tail(graph, [silu], [graph.outputs[0]])
    assert tail is not None and tail.inputs == (silu,)
    new = np.random.default_rng(4).normal(size=(3, 8, 16, 16)).astype(np.float32)
    values = {silu: new}
    steps = list(plan.steps.values())
    for step in steps[[s.outputs[0] for s in steps].index(silu) + 1:]:
        values.update(zip(step.outputs, step.run([values[t] for t in step.inputs])))
    np.testing.assert_allclose(tail.run({silu: new})[0], values[graph.outputs[0]],
                               rtol=1e-5, atol=1e-6)


def test_no_f32_tail_with_the_numpy_engine(tmp_path, monkeypatch):
    graph = silu_block(tmp_path)
    monkeypatch.setenv("TPUSHELL_ENGINE", "numpy")
    assert engine.f32_tail(graph, [graph.nodes[0].outputs[0]], graph.outputs) is None
    assert not engine.tails_possible(graph)


def test_f32_tensors_gives_every_inner_tensor_by_graph_name(tmp_path, monkeypatch):
    """One sample a run, written into rows of whole-batch arrays: the interpreter's values within
    float rounding for every tensor asked for; nothing with the numpy engine."""
    graph = silu_block(tmp_path)
    x = np.random.default_rng(5).normal(size=(3, 3, 16, 16)).astype(np.float32)
    names = [t for n in graph.nodes for t in n.outputs]
    ours = run(graph, {"x": x}, keep_all=True)
    fast = engine.f32_tensors(graph, {"x": x}, names[1:])
    assert sorted(fast) == sorted(names[1:])
    for t in names[1:]:
        assert fast[t].shape == ours[t].shape and fast[t].dtype == np.float32, t
        np.testing.assert_allclose(fast[t], ours[t], rtol=1e-5, atol=1e-5, err_msg=t)
    monkeypatch.setenv("TPUSHELL_ENGINE", "numpy")
    assert engine.f32_tensors(graph, {"x": x}, names) == {}
