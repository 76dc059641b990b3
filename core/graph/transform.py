"""model_transform: import a model, write its .mlir + weights, optionally self-check it (B.2).

The self-check preprocesses the test input with the model's own config, runs our F32 interpreter
with every tensor kept, runs onnxruntime on the original ONNX with the same tensors exposed (when
onnxruntime is installed), and compares them tensor by tensor (F.3 metrics).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..fileio import check_file_stem, check_writable, save_npz
from ..metrics import CompareReport, compare_npz
from .interpreter import run
from .ir import Graph
from .loader import load_model
from .mlir import write_mlir
from .onnx_reference import onnxruntime_available, run_onnxruntime
from .samples import load_sample


@dataclass
class TransformResult:
    graph: Graph
    mlir: str
    weights: str
    files: list[str] = field(default_factory=list)
    report: CompareReport | None = None
    note: str = ""


def test_feeds(graph: Graph, test_input: str) -> dict[str, np.ndarray]:
    """The model inputs for one test file (image, .npz or .npy), as calibration would load it."""
    return load_sample([test_input], graph)


def reference_onnx(graph: Graph):
    """The ONNX model onnxruntime checks `graph` against: its source file, or for a darknet cfg
    the ONNX twin built from the same cfg and weights; None when there is none."""
    source = graph.meta.get("source", "")
    if source.endswith(".onnx") and os.path.isfile(source):
        return source
    if source.endswith(".cfg") and os.path.isfile(source):
        from .darknet_import import darknet_to_onnx
        proto, _ = darknet_to_onnx(source, graph.meta["weights"], [list(graph.inputs[0].shape)])
        return proto
    return None


def self_check(graph: Graph, feeds: dict[str, np.ndarray], tolerance: tuple[float, float],
               excepts: Sequence[str] = ()) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None,
                                                     CompareReport | None]:
    """(ours, reference, report): every tensor of our F32 run vs onnxruntime on the source model."""
    ours = run(graph, feeds, keep_all=True)
    model = reference_onnx(graph)
    if model is None or not onnxruntime_available():
        return ours, None, None
    ref = run_onnxruntime(model, feeds, graph.meta.get("onnx_names", {}))
    return ours, ref, compare_npz(ours, ref, tolerance, excepts)


def transform(model_def: str, mlir: str, *, model_name: str, model_data: str | None = None,
              input_shapes: Sequence[Sequence[int]] | None = None,
              output_names: Sequence[str] | None = None, test_input: str | None = None,
              test_result: str | None = None, tolerance: tuple[float, float] = (0.99, 0.99),
              excepts: Sequence[str] = (), preprocess: dict[str, Any] | None = None,
              fold_bn: bool = True) -> TransformResult:
    """Import `model_def`, write `mlir` (+ weight npz); with `test_input`, self-check and save
    `<model_name>_in_f32.npz`, `<model_name>_ref_outputs.npz` and `test_result`. When the
    self-check fails the npz files are kept as evidence but no .mlir is written."""
    check_file_stem(model_name, "--model_name")
    check_writable(mlir, "--mlir")
    graph = load_model(model_def, model_data=model_data, name=model_name, input_shapes=input_shapes,
                       output_names=output_names, preprocess=preprocess, fold_bn=fold_bn)
    graph.name = model_name
    result = TransformResult(graph, mlir, "")
    if test_input:
        feeds = test_feeds(graph, test_input)
        ours, ref, report = self_check(graph, feeds, tolerance, excepts)
        folder = os.path.dirname(os.path.abspath(mlir))
        in_path = os.path.join(folder, f"{model_name}_in_f32.npz")
        out_path = test_result or os.path.join(folder, f"{model_name}_top_outputs.npz")
        save_npz(in_path, feeds)
        save_npz(out_path, ours)
        result.files += [in_path, out_path]
        if ref is not None:
            ref_path = os.path.join(folder, f"{model_name}_ref_outputs.npz")
            save_npz(ref_path, ref)
            result.files.append(ref_path)
        else:
            result.note = ("self-check: onnxruntime is not installed or the model is an .mlir; "
                           "our F32 results were saved without a reference comparison")
        result.report = report
        if report is not None and not report.passed:
            return result
    result.weights = write_mlir(graph, mlir)
    return result
