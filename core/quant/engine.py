"""Unobserved F32 forwards on onnxruntime: the model as ONNX (the F32 plan's export), one session
per graph and set of outputs, kept in the graph's cache.

    y = fast_run(graph, {"images": x})              # graph outputs, like interpreter.run

Why: on the real models the numpy interpreter is 2x (large dense convs) to 10x (MobileNetV3's
small 1x1 and depthwise convs) slower than onnxruntime, and no amount of numpy removes the
Python between small ops (README, "Speed"). Calibration and the INT8 simulator need our
own tensors (bit-identical thresholds, the golden INT8 comparisons) and keep the interpreter; the
F32 reference of a check (f32_tensors) and the F32 ops after a sensitivity trial's INT8 layer
(f32_tail) run here too. The values are F32 within float rounding of
the interpreter's (onnxruntime sums in another order).

The interpreter is used instead when onnxruntime is absent, when the graph has an op without an
ONNX form, or with TPUSHELL_ENGINE=numpy.
"""
from __future__ import annotations

import os
import warnings
from typing import Iterable, Mapping

import numpy as np

from ..errors import ModelError, TpuWarning
from ..graph.interpreter import check_feeds, run
from ..graph.ir import Graph
from ..ops.parallel import THREADS


def engine_wanted() -> str:
    """'onnxruntime' unless $TPUSHELL_ENGINE says 'numpy' (the interpreter for every run)."""
    wanted = os.environ.get("TPUSHELL_ENGINE", "onnxruntime").strip().lower() or "onnxruntime"
    if wanted not in ("onnxruntime", "numpy"):
        raise ModelError(f"TPUSHELL_ENGINE={wanted!r}: valid values are 'onnxruntime', 'numpy'")
    return wanted


def fast_run(graph: Graph, feeds: Mapping[str, np.ndarray],
             outputs: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """The F32 values of `outputs` (graph outputs by default), on onnxruntime when it can run the
    graph, else on the interpreter."""
    wanted = tuple(graph.outputs if outputs is None else outputs)
    sess = session(graph, wanted) if engine_wanted() == "onnxruntime" else None
    if sess is None:
        return run(graph, feeds, wanted)
    check_feeds(graph, feeds)
    inputs = [i.name for i in sess.get_inputs()]
    values = sess.run(list(sess_outputs(graph, wanted)), {t: np.asarray(feeds[t]) for t in inputs})
    return dict(zip(wanted, values))


def session(graph: Graph, wanted: tuple[str, ...]):
    """The cached onnxruntime session computing `wanted`, or None when it cannot be built."""
    cache = graph.cache()
    key = ("ort_f32", wanted)
    if key not in cache:
        cache[key] = _build(graph, wanted)
    return cache[key]


def sess_outputs(graph: Graph, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The export's names of `wanted` (the F32 plan may rename a graph tensor)."""
    return graph.cache()[("ort_f32_names", wanted)]


def _build(graph: Graph, wanted: tuple[str, ...]):
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    try:
        plan, model = f32_export(graph)
        names = tuple(plan.tensor(t) for t in wanted)
        model = _with_outputs(model, names) if set(names) != {o.name for o in model.graph.output} \
            else model
        sess = _ort_session(ort, model, THREADS)    # the interpreter's count ($TPUSHELL_THREADS)
    except Exception as e:   # noqa: BLE001  any failure to export or load means: use the interpreter
        warnings.warn(TpuWarning(f"model '{graph.name}' runs F32 on the numpy interpreter "
                                 f"(onnxruntime cannot take it: {str(e).splitlines()[0][:200]})"))
        return None
    graph.cache()[("ort_f32_names", wanted)] = names
    return sess


def f32_export(graph: Graph):
    """(F32 plan, its ONNX export) of `graph`, made once per graph: every plan tensor is an ONNX
    tensor of the same name (core/quant/qdq_export.py)."""
    cache = graph.cache()
    if "ort_f32_export" not in cache:
        from .lowering import Lowerer
        from .qdq_export import qdq_model
        plan = Lowerer(graph, None).plan("F32")
        cache["ort_f32_export"] = (plan, qdq_model(plan))
    return cache["ort_f32_export"]


def _with_outputs(model, names: Iterable[str]):
    """A copy of `model` whose outputs are the float tensors `names`."""
    from onnx import TensorProto, helper
    model = type(model).FromString(model.SerializeToString())
    del model.graph.output[:]
    model.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None)
                              for t in dict.fromkeys(names))
    return model


def _ort_session(ort, model, threads: int):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # Idle threads spinning after a run would take the CPU from whatever runs next (our own
    # numpy ops, another process on a 2-core machine).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


class F32Tail:
    """The F32 ops downstream of some plan tensors (the cut) on onnxruntime, one thread: run(feeds)
    takes new values of the cut and the F32 values of `inputs` (upstream tensors they also
    read), by plan name, and returns the values of `outputs`."""

    def __init__(self, sess, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> None:
        self.sess, self.inputs, self.outputs = sess, inputs, outputs
        self._whole = True             # whole batches, until a static batch-1 shape refuses one

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        feeds = {t: np.ascontiguousarray(feeds[t]) for t in self.inputs}
        if self._whole:
            try:
                return self.sess.run(list(self.outputs), feeds)
            except Exception:   # noqa: BLE001  onnxruntime's errors have no common base class
                self._whole = False
        n = len(next(iter(feeds.values())))
        parts = [self.sess.run(list(self.outputs), {t: v[i:i + 1] for t, v in feeds.items()})
                 for i in range(n)]
        return [np.concatenate(vs) for vs in zip(*parts)]


def _onnxruntime():
    """The onnxruntime module when F32 runs may use it, else None."""
    if engine_wanted() != "onnxruntime":
        return None
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    return ort


def tails_possible(graph: Graph) -> bool:
    """Whether f32_tail may work for `graph` (onnxruntime there and wanted); makes the F32
    export now, so that threads asking for tails later share one."""
    if _onnxruntime() is None:
        return False
    f32_export(graph)
    return True


def f32_tail(graph: Graph, cut: Iterable[str], outputs: Iterable[str]) -> F32Tail | None:
    """The F32Tail computing the F32 plan tensors `outputs` from the plan tensors `cut`, or None
    when onnxruntime is absent or turned off, or cannot take the ops.

    Why: a sensitivity trial with one layer in INT8 and the rest in F32 recomputes everything
    after the layer in F32, and onnxruntime does that 2-3x faster than the interpreter on one
    thread, its session included (README, "Speed")."""
    ort = _onnxruntime()
    outputs = tuple(outputs)
    if ort is None or not outputs:
        return None
    from onnx import AttributeProto, TensorProto, helper
    plan, model = f32_export(graph)
    nodes = list(model.graph.node)
    if any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for n in nodes for a in n.attribute):
        return None                      # subgraphs read outer tensors the walk below cannot see
    cut = frozenset(cut)
    known = set(plan.inputs) | {t for st in plan.steps.values() for t in st.outputs}
    down = set(cut)
    for n in nodes:                      # ONNX nodes are in topological order
        if any(i in down for i in n.input):
            down.update(n.output)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    inits = {i.name: i for i in model.graph.initializer}
    picked, inputs, stack, seen = set(), set(), list(outputs), set()
    while stack:
        t = stack.pop()
        if t in seen or not t or t in inits:
            continue
        seen.add(t)
        if t in cut or (t in known and t not in down):
            inputs.add(t)
        elif t in producer:
            picked.add(producer[t])
            stack.extend(nodes[producer[t]].input)
        else:
            return None
    chosen = [nodes[i] for i in sorted(picked)]
    used = {i for n in chosen for i in n.input}
    types = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    names = tuple(sorted(inputs))
    sub = helper.make_graph(
        chosen, f"{graph.name}_f32_tail",
        [helper.make_tensor_value_info(t, types.get(t, TensorProto.FLOAT), None) for t in names],
        [helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in outputs],
        [inits[t] for t in used if t in inits])
    tail = helper.make_model(sub, opset_imports=model.opset_import)
    tail.ir_version = model.ir_version
    try:
        return F32Tail(_ort_session(ort, tail, 1), names, outputs)
    except Exception:   # noqa: BLE001  any failure to load means: the interpreter computes it
        return None


def f32_tensors(graph: Graph, feeds: Mapping[str, np.ndarray],
                tensors: Iterable[str]) -> dict[str, np.ndarray]:
    """F32 values of those of graph tensors `tensors` that onnxruntime can give, by graph name:
    float tensors computed from the inputs that the F32 plan's export holds (a MatMul the plan
    computes in parts has none); {} when the graph does not run on onnxruntime.

    One session per graph whose outputs are every such tensor, run one sample at a time: the
    outputs of a run (all of them, for a check) are whole for one sample only, and batch 1 is
    as fast here as larger batches. After the first sample the runs write straight into the
    rows of the results (no copy of every tensor out of onnxruntime and into them)."""
    if engine_wanted() != "onnxruntime":
        return {}
    exported = _exported_tensors(graph)
    sess = session(graph, exported) if exported else None
    if sess is None:
        return {}
    check_feeds(graph, feeds)
    plan_names = dict(zip(exported, sess_outputs(graph, exported)))
    wanted = [t for t in dict.fromkeys(tensors) if t in plan_names]
    outputs = list(dict.fromkeys(plan_names[t] for t in wanted))
    inputs = [i.name for i in sess.get_inputs()]
    n = int(np.shape(feeds[inputs[0]])[0]) if inputs else 0
    if n == 0 or not outputs:
        return {}
    first = dict(zip(outputs, sess.run(outputs, {t: feeds[t][:1] for t in inputs})))
    # one row per sample (else left to the interpreter): the rows are the runs' output buffers
    found = {name: np.empty((n,) + v.shape[1:], v.dtype) for name, v in first.items()
             if v.shape[:1] == (1,) and v.dtype == np.float32}
    for name, out in found.items():
        out[0] = first[name][0]
    del first
    binding = sess.io_binding()
    for s in range(1, n):
        for t in inputs:
            binding.bind_cpu_input(t, np.ascontiguousarray(feeds[t][s:s + 1]))
        for name in outputs:
            if name in found:
                row = found[name][s:s + 1]
                binding.bind_output(name, "cpu", 0, row.dtype, row.shape, row.ctypes.data)
            else:
                binding.bind_output(name, "cpu")
        sess.run_with_iobinding(binding)
        binding.clear_binding_outputs()
    return {t: found[plan_names[t]] for t in wanted if plan_names[t] in found}


def _exported_tensors(graph: Graph) -> tuple[str, ...]:
    """The float graph tensors computed from the inputs that the F32 plan's export holds."""
    cache = graph.cache()
    if ("ort_f32_exported",) not in cache:
        plan = f32_export(graph)[0]
        made = {t for step in plan.steps.values() for t in step.outputs}
        from_inputs = set(graph.input_names)
        for node in graph.nodes:
            if any(t in from_inputs for t in node.inputs):
                from_inputs.update(t for t in node.outputs if t)
        cache[("ort_f32_exported",)] = tuple(
            t for node in graph.nodes for t in node.outputs
            if t in from_inputs and graph.dtypes.get(t, "float32") == "float32" and
            plan.tensor(t) in made)
    return cache[("ort_f32_exported",)]
