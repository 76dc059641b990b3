"""The real models every benchmark covers side by side: how to import each, its test input, its
reference calibration table and the preprocessing the reference was given (golden/README.md).

    for m in MODELS: graph = m.graph(shared); x = m.input(shared)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Model:
    name: str                       # golden/<name>/
    onnx: str                       # under zoo/
    shape: list[int]
    preprocess: dict[str, Any]
    output_names: list[str] | None = None
    input_file: str = ""            # under golden/<name>/ (default <name>_in.npz)
    table: str = ""                 # under golden/<name>/ (default <name>_cali_table)
    middle: list[str] = field(default_factory=list)   # layers the re-check benchmark edits

    def graph(self, shared: Path):
        from tpushell.core.graph.onnx_import import import_onnx
        return import_onnx(self.onnx_path(shared), name=self.name, input_shapes=[self.shape],
                           output_names=self.output_names)

    def onnx_path(self, shared: Path) -> Path:
        return shared / "zoo" / self.onnx

    def input(self, shared: Path) -> np.ndarray:
        with np.load(shared / "golden" / self.name / (self.input_file or f"{self.name}_in.npz")) as f:
            return f[f.files[0]]

    def table_path(self, shared: Path) -> Path:
        return shared / "golden" / self.name / (self.table or f"{self.name}_cali_table")


RGB_PAD = dict(scale=[0.0039216] * 3, pixel_format="rgb", keep_aspect_ratio=True)
PPOCR = dict(mean=[127.5] * 3, scale=[0.0078431] * 3, pixel_format="bgr")

MODELS = [
    Model("yolov3_tiny", "yolov3-tiny/tiny-yolov3-11.onnx", [1, 3, 416, 416], {**RGB_PAD, "pad_value": 128},
          ["transpose_output1", "transpose_output"], "000000366711_input.npz", "tpumlir_cali_table",
          ["conv4_Conv", "conv5_Conv", "conv6_Conv"]),
    Model("nudenet_yolov8n_320", "nudenet_yolov8n_320/nudenet_yolov8n_320.onnx", [1, 3, 320, 320],
          {**RGB_PAD, "pad_value": 114}),
    Model("ppocr_cls_mv3", "ppocr_cls_mv3/ppocr_cls_mv3.onnx", [1, 3, 48, 192], PPOCR),
    Model("ppocrv4_rec", "ppocrv4_rec/ppocrv4_rec.onnx", [1, 3, 48, 320], PPOCR),
]
BY_NAME = {m.name: m for m in MODELS}


def pick(names: str | None) -> list[Model]:
    """The models named in a comma-separated list (all when None)."""
    if not names:
        return MODELS
    unknown = [n for n in names.split(",") if n not in BY_NAME]
    if unknown:
        raise SystemExit(f"unknown model {unknown}; known: {', '.join(BY_NAME)}")
    return [BY_NAME[n] for n in names.split(",")]


def load_average() -> str:
    import os
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
