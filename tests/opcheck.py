"""Differential checking of ops and small models: our import + interpreter against onnxruntime
(or onnx.reference where onnxruntime lacks an op or an opset), on seeded random inputs.

    check_op("Conv", [In((1, 3, 8, 8)), Const(w)], {"pads": [1, 1, 1, 1]}, opset=13)

A float output passes with cosine >= 0.99999 and max abs error <= 1e-4 x max|ref| (issue 2's F32
criterion); integer and bool outputs must be equal. Shapes and dtypes must match exactly.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper
from tpushell.core.graph.interpreter import run
from tpushell.core.graph.onnx_import import import_onnx

COS_MIN = 0.99999
REL_ERR = 1e-4


@dataclass(frozen=True)
class In:
    """A runtime input of the model: random values of `shape` drawn from [low, high)."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    low: float = -2.0
    high: float = 2.0

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        if self.dtype == "bool":
            return rng.random(self.shape) < 0.5
        if np.issubdtype(np.dtype(self.dtype), np.integer):
            return rng.integers(int(self.low), int(self.high), self.shape).astype(self.dtype)
        return rng.uniform(self.low, self.high, self.shape).astype(self.dtype)


@dataclass(frozen=True)
class Given:
    """A runtime input with fixed values (NaNs, ties, exact halves...)."""

    value: Any

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(self.value)


@dataclass(frozen=True)
class Const:
    """An initializer (weight or shape-like input)."""

    value: Any


def rng_for(key: str) -> np.random.Generator:
    """A generator seeded from the case's id, so each case sees the same data on every run."""
    return np.random.default_rng(zlib.crc32(key.encode()))


def single_op_model(op_type: str, inputs: Sequence[Any], attrs: dict | None, opset: int,
                    n_outputs: int, rng: np.random.Generator) -> tuple[onnx.ModelProto, dict]:
    """A one-node model: In/Given become graph inputs, Const initializers, None an empty input."""
    names, graph_inputs, inits, feeds = [], [], [], {}
    for k, spec in enumerate(inputs):
        if spec is None:
            names.append("")
            continue
        name = f"in{k}"
        names.append(name)
        if isinstance(spec, Const):
            inits.append(numpy_helper.from_array(np.asarray(spec.value), name))
        else:
            value = spec.sample(rng)
            feeds[name] = value
            graph_inputs.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape))
    outs = [f"out{k}" for k in range(n_outputs)]
    node = helper.make_node(op_type, names, outs, **(attrs or {}))
    graph = helper.make_graph([node], op_type.lower(), graph_inputs,
                              [helper.make_empty_tensor_value_info(o) for o in outs], inits)
    return make_model(graph, opset), feeds


def make_model(graph: onnx.GraphProto, opset: int) -> onnx.ModelProto:
    # IR version 8 is read by every onnxruntime we support, whatever the onnx package defaults to.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def reference(model: onnx.ModelProto, feeds: dict, ref: str = "ort") -> list[np.ndarray]:
    """Outputs of `model` by onnxruntime (`ref="ort"`) or onnx.reference (`ref="onnx"`)."""
    if ref == "ort":
        import onnxruntime as ort
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, feeds)
    from onnx.reference import ReferenceEvaluator
    return [np.asarray(v) for v in ReferenceEvaluator(model).run(None, feeds)]


def ours(model: onnx.ModelProto, feeds: dict, outputs: Sequence[str] | None = None) -> dict:
    """Our import + interpreter on `model`; returns {ONNX output name: array}."""
    graph = import_onnx(model)
    onnx_names = graph.meta["onnx_names"]
    wanted = list(graph.outputs) if outputs is None else outputs
    result = run(graph, feeds, wanted)
    return {onnx_names.get(t, t): v for t, v in result.items()}


def assert_matches(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Issue 2's F32 criterion for floats, equality for ints and bools; same shape and dtype."""
    got = np.asarray(got)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, reference {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, reference {want.dtype}"
    if not np.issubdtype(want.dtype, np.floating):
        mismatch = int(np.count_nonzero(got != want))
        assert mismatch == 0, f"{what}: {mismatch} of {want.size} values differ"
        return
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    assert np.array_equal(nan_got, nan_want), f"{what}: NaNs at different places"
    g, w = got[~nan_want].astype(np.float64), want[~nan_want].astype(np.float64)
    if w.size == 0:
        return
    scale = np.abs(w).max()
    err = np.abs(g - w).max()
    assert err <= REL_ERR * scale + 1e-30, f"{what}: max abs error {err:.3g} > 1e-4 x {scale:.3g}"
    norm = np.linalg.norm(g) * np.linalg.norm(w)
    if norm > 0:
        cos = float(g @ w / norm)
        assert cos >= COS_MIN, f"{what}: cosine {cos:.7f} < {COS_MIN}"


def check_op(op_type: str, inputs: Sequence[Any], attrs: dict | None = None, *, opset: int = 17,
             n_outputs: int = 1, ref: str = "ort", key: str = "") -> None:
    """Build a one-node model, run it through us and the reference, compare every output."""
    rng = rng_for(key or f"{op_type}{inputs}{attrs}{opset}")
    model, feeds = single_op_model(op_type, inputs, attrs, opset, n_outputs, rng)
    want = reference(model, feeds, ref)
    got = ours(model, feeds)
    for k, w in enumerate(want):
        assert_matches(got[f"out{k}"], np.asarray(w), f"{op_type} output {k}")


def case(id: str, op_type: str, inputs: Sequence[Any], attrs: dict | None = None, **kw):
    """One row of a parametrized table: pytest.param(op_type, inputs, attrs, kw, id=op_type-id)."""
    import pytest
    return pytest.param(op_type, list(inputs), attrs or {}, kw, id=f"{op_type}-{id}")
