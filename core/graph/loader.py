"""Load a model of any supported kind into a Graph, with its preprocessing attached.

    g = load_model("tiny-yolov3-11.onnx", input_shapes=[[1, 3, 416, 416]],
                   output_names=["transpose_output1", "transpose_output"],
                   preprocess={"scale": [0.0039216] * 3, "pixel_format": "rgb"})
"""
from __future__ import annotations

import os
from typing import Any, Sequence

from ..errors import InputFileError, OptionError
from .ir import Graph
from .preprocess import PreprocessConfig

MODEL_KINDS = {".onnx": "ONNX", ".cfg": "darknet cfg (+ --model_data .weights)", ".mlir": "tpushell mlir"}


def net_shape(graph: Graph, channel_format: str) -> tuple[int, int]:
    """H, W of the first input, read according to the channel format."""
    shape = graph.inputs[0].shape
    if len(shape) != 4:
        return (0, 0)
    return (shape[1], shape[2]) if channel_format == "nhwc" else (shape[2], shape[3])


def make_preprocess(graph: Graph, options: dict[str, Any]) -> PreprocessConfig:
    """A PreprocessConfig from user options (None values mean 'default')."""
    opts = {k: v for k, v in options.items() if v is not None}
    cfg = PreprocessConfig(**opts)
    cfg.net_shape = net_shape(graph, cfg.channel_format)
    return cfg


def load_model(model: str | os.PathLike, *, model_data: str | None = None, name: str | None = None,
               input_shapes: Sequence[Sequence[int]] | None = None,
               output_names: Sequence[str] | None = None,
               preprocess: dict[str, Any] | None = None, fold_bn: bool = True) -> Graph:
    """Import `model` by its extension (.onnx, .cfg, .mlir) and attach preprocessing."""
    path = os.fspath(model)
    ext = os.path.splitext(path)[1].lower()
    if ext not in MODEL_KINDS:
        kinds = ", ".join(f"{k} ({v})" for k, v in MODEL_KINDS.items())
        raise OptionError(f"cannot load '{path}': unknown model kind '{ext}'; supported: {kinds}")
    if not os.path.isfile(path):
        raise InputFileError(f"model file not found: {path}")
    preprocess = dict(preprocess or {})
    if ext == ".mlir":
        from .mlir import read_mlir
        graph = read_mlir(path)
        if any(v is not None for v in preprocess.values()) and graph.preprocess is not None:
            merged = graph.preprocess.to_dict() | {k: v for k, v in preprocess.items() if v is not None}
            graph.preprocess = PreprocessConfig.from_dict(merged)
        if output_names:
            from .passes import cut_outputs
            cut_outputs(graph, list(output_names))
        return graph
    if ext == ".onnx":
        from .onnx_import import import_onnx
        graph = import_onnx(path, name=name, input_shapes=input_shapes, output_names=output_names,
                            fold_bn=fold_bn)
    else:
        from .darknet_import import import_darknet
        graph = import_darknet(path, model_data, name=name, input_shapes=input_shapes,
                               output_names=output_names)
    graph.preprocess = make_preprocess(graph, preprocess)
    return graph
