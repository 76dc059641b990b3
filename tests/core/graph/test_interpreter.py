"""The interpreter: what it returns, observers and overrides, freeing, batching, errors; and the
real yolov3-tiny against onnxruntime on every tensor."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from opcheck import assert_matches, make_model, reference
from tpushell.core.errors import ModelError
from tpushell.core.graph.interpreter import run
from tpushell.core.graph.onnx_import import import_onnx


def chain_graph(length: int = 6):
    """x -> Sigmoid -> Sigmoid -> ... (length ops), plus a side Relu of x added at the end."""
    nodes, prev = [], "x"
    for i in range(length):
        nodes.append(helper.make_node("Sigmoid", [prev], [f"s{i}"]))
        prev = f"s{i}"
    nodes += [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", [prev, "r"], ["y"])]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return import_onnx(make_model(g, 13))


X = np.linspace(-2, 2, 8, dtype=np.float32).reshape(2, 4)


def expected_y(x):
    s = x
    for _ in range(6):
        s = 1 / (1 + np.exp(-s))
    return s + np.maximum(x, 0)


def test_returns_graph_outputs_by_default():
    g = chain_graph()
    out = run(g, {"x": X})
    assert list(out) == ["y_Add"]
    np.testing.assert_allclose(out["y_Add"], expected_y(X), rtol=1e-6)


def test_returns_requested_tensors_including_inputs():
    g = chain_graph()
    out = run(g, {"x": X}, ["s2_Sigmoid", "x", "r_Relu"])
    assert list(out) == ["s2_Sigmoid", "x", "r_Relu"]
    np.testing.assert_array_equal(out["x"], X)
    np.testing.assert_array_equal(out["r_Relu"], np.maximum(X, 0))


def test_runs_only_what_requested_tensors_need():
    g = chain_graph()
    seen = []
    run(g, {"x": X}, ["s1_Sigmoid"], observers=[lambda node, ins, outs: seen.append(node.name)])
    assert seen == ["s0_Sigmoid", "s1_Sigmoid"]


def test_keep_all_returns_every_op_output():
    g = chain_graph()
    out = run(g, {"x": X}, keep_all=True)
    assert list(out) == [t for n in g.nodes for t in n.outputs]


def test_observers_see_every_node_in_order_with_its_values():
    g = chain_graph()
    calls = []

    def obs(node, ins, outs):
        calls.append((node.name, [np.array(a) for a in ins], [np.array(a) for a in outs]))

    run(g, {"x": X}, observers=[obs])
    assert [c[0] for c in calls] == g.op_names
    name, ins, outs = calls[0]
    np.testing.assert_array_equal(ins[0], X)
    np.testing.assert_allclose(outs[0], 1 / (1 + np.exp(-X)), rtol=1e-6)


def test_override_replaces_one_op_and_feeds_downstream():
    g = chain_graph()
    out = run(g, {"x": X}, overrides={"r_Relu": lambda x: np.zeros_like(x)})
    np.testing.assert_allclose(out["y_Add"], expected_y(X) - np.maximum(X, 0), rtol=1e-6)


def test_intermediate_tensors_are_freed_after_their_last_use():
    g = chain_graph()
    refs: dict[str, weakref.ref] = {}
    alive_at: dict[str, list[str]] = {}

    def obs(node, ins, outs):
        gc.collect()
        alive_at[node.name] = sorted(n for n, r in refs.items() if r() is not None)
        refs[node.name] = weakref.ref(outs[0])

    run(g, {"x": X}, observers=[obs])
    # When s4 runs, s0..s2 are dead: only its input s3 (still referenced by the call) may live.
    assert alive_at["s4_Sigmoid"] == ["s3_Sigmoid"]
    # The side branch's output lives until the Add that reads it.
    assert "r_Relu" in alive_at["y_Add"]


def test_batch_is_free_and_samples_are_independent():
    g = chain_graph()
    x = np.random.default_rng(0).uniform(-3, 3, (5, 4)).astype(np.float32)
    whole = run(g, {"x": x})["y_Add"]
    parts = np.concatenate([run(g, {"x": x[i:i + 1]})["y_Add"] for i in range(5)])
    np.testing.assert_array_equal(whole, parts)


@pytest.mark.parametrize("feeds,expect", [
    ({}, "missing input 'x'"),
    ({"x": np.zeros((1, 5), np.float32)}, "expects [1, 4]"),
], ids=["missing", "wrong-shape"])
def test_bad_feeds(feeds, expect):
    with pytest.raises(ModelError, match=expect.replace("[", r"\[").replace("]", r"\]")):
        run(chain_graph(), feeds)


def test_unknown_tensor_suggests_close_names():
    with pytest.raises(ModelError, match=r"no tensor named 's9_Sigmoid'.*did you mean"):
        run(chain_graph(), {"x": X}, ["s9_Sigmoid"])


def test_failing_op_is_named():
    def broken(x):
        raise ValueError("boom")

    with pytest.raises(ModelError, match=r"op 's3_Sigmoid' \(Sigmoid\) failed: boom"):
        run(chain_graph(), {"x": X}, overrides={"s3_Sigmoid": broken})


# ---- the real model ---------------------------------------------------------------------------------
def _every_tensor_as_output(path) -> onnx.ModelProto:
    model = onnx.load(path)
    del model.graph.output[:]
    model.graph.output.extend(helper.make_empty_tensor_value_info(t) for n in model.graph.node
                              for t in n.output)
    return model


@pytest.mark.zoo
def test_yolo_every_tensor_matches_onnxruntime(yolo_onnx, yolo_graph, golden_input):
    """Acceptance 3: every tensor of the tutorial graph, cosine >= 0.99999 and max error <= 1e-4 x max."""
    model = _every_tensor_as_output(yolo_onnx)
    names = [o.name for o in model.graph.output]
    want = dict(zip(names, reference(model, {"input_1": golden_input})))
    got = run(yolo_graph, {"input_1": golden_input}, keep_all=True)
    onnx_names = yolo_graph.meta["onnx_names"]
    compared = 0
    for ir_name, value in got.items():
        if ir_name in onnx_names:
            assert_matches(value, want[onnx_names[ir_name]], ir_name)
            compared += 1
    assert compared == 34   # every op of the tutorial graph


@pytest.mark.zoo
def test_yolo_batch_of_two_equals_two_single_runs(yolo_graph, golden_input):
    x = np.concatenate([golden_input, golden_input[:, :, ::-1].copy()])
    both = run(yolo_graph, {"input_1": x})
    for i in range(2):
        one = run(yolo_graph, {"input_1": x[i:i + 1]})
        for name, v in one.items():
            assert_matches(both[name][i:i + 1], v, f"{name} sample {i}")
