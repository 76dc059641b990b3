"""Unobserved F32 forwards on onnxruntime: the model as ONNX (the F32 plan's export), one session
per graph and set of outputs, kept in the graph's cache.

    y = fast_run(graph, {"images": x})              # graph outputs, like interpreter.run

Why: on the real models the numpy interpreter is 2x (large dense convs) to 10x (MobileNetV3's
small 1x1 and depthwise convs) slower than onnxruntime, and no amount of numpy removes the
Python between small ops (README, "Speed"). Only runs that nobody observes go here: calibration,
per-layer checks and the INT8 simulator need our own tensors (bit-identical thresholds, the
golden INT8 comparisons), and keep the interpreter. The values are F32 within float rounding of
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
    from onnx import TensorProto, helper
    from .lowering import Lowerer
    from .qdq_export import qdq_model
    try:
        plan = Lowerer(graph, None).plan("F32")
        names = tuple(plan.tensor(t) for t in wanted)
        model = qdq_model(plan)
        known = {o.name for o in model.graph.output}
        if set(names) != known:
            del model.graph.output[:]
            model.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None)
                                      for t in dict.fromkeys(names))
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS        # the interpreter's count ($TPUSHELL_THREADS)
        # Idle threads spinning after a run would take the CPU from whatever runs next (our own
        # numpy ops, another process on a 2-core machine).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        sess = ort.InferenceSession(model.SerializeToString(), options,
                                    providers=["CPUExecutionProvider"])
    except Exception as e:   # noqa: BLE001  any failure to export or load means: use the interpreter
        warnings.warn(TpuWarning(f"model '{graph.name}' runs F32 on the numpy interpreter "
                                 f"(onnxruntime cannot take it: {str(e).splitlines()[0][:200]})"))
        return None
    graph.cache()[("ort_f32_names", wanted)] = names
    return sess
