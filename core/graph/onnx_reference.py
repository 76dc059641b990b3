"""onnxruntime as a peer: run an ONNX file with every intermediate tensor exposed.

Only self-checks, tests and benchmarks use this; the core never needs onnxruntime.
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import onnx

from ..errors import TpuError


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def run_onnxruntime(model: str | os.PathLike | onnx.ModelProto, feeds: Mapping[str, np.ndarray],
                    tensors: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
    """Run `model` with onnxruntime. Without `tensors`: the graph outputs by ONNX name. With
    `tensors` (our name -> ONNX name): those tensors, exposed as extra outputs, under our names."""
    import onnxruntime as ort

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(os.fspath(model))
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    existing = {o.name for o in proto.graph.output}
    produced = {t for n in proto.graph.node for t in n.output} | {i.name for i in proto.graph.input}
    wanted = {ours: theirs for ours, theirs in (tensors or {}).items() if theirs in produced}
    for theirs in wanted.values():
        if theirs not in existing:
            proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(theirs))
            existing.add(theirs)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        sess = ort.InferenceSession(proto.SerializeToString(), options,
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise TpuError(f"onnxruntime cannot load the model: {e}") from e
    names = [o.name for o in sess.get_outputs()]
    values = dict(zip(names, sess.run(names, dict(feeds))))
    if tensors is None:
        return values
    return {ours: values[theirs] for ours, theirs in wanted.items()}
