"""Detection with any model kind, and the side-by-side comparison of several models' detections.

    det = open_detector("tiny-yolov3-11.onnx")              # or .cfg, .mlir, a deployed model
    found = detect_images(det, ["img.jpg"])[0]
    print(found)                                           # one line per detection
    cmp = compare_detections("img.jpg", {"F32": a, "INT8": b, "mixed": c})
    print(cmp); detection_figure(cmp)                      # core/plots/detection.py

A `Detector` is a forward function (input batch -> head tensors), the model's preprocessing and its
YOLO decoder settings; the F32 simulator, a deployed model and a session's quantization plan all
become one. An ONNX file is cut at its heads automatically (`yolo.find_heads`), so a model-zoo
file with its own decode/NMS tail works as is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from ..errors import ModelError, OptionError
from ..graph.ir import Graph
from ..graph.preprocess import PreprocessConfig
from ..progress import Progress, ProgressFn
from .yolo import (
    Detection,
    YoloSpec,
    anchor_free_classes,
    find_heads,
    head_layout,
    iou_one_to_many,
    not_heads_error,
    postprocess,
)

# The tutorial's preprocessing, used when a model file carries none (a bare .onnx or .cfg).
DETECT_PREPROCESS = {"scale": [0.0039216] * 3, "pixel_format": "rgb", "keep_aspect_ratio": True,
                     "pad_value": 128}
# Two boxes of two models are the same object when the class agrees and IoU >= this.
MATCH_IOU = 0.5

Forward = Callable[[np.ndarray], Mapping[str, np.ndarray]]


@dataclass
class Detector:
    """A model ready for detection: name, forward (batch -> heads), preprocessing, decoder."""

    name: str
    forward: Forward
    preprocess: PreprocessConfig
    spec: YoloSpec

    @property
    def net_hw(self) -> tuple[int, int]:
        return tuple(self.preprocess.net_shape)


@dataclass
class ImageDetections:
    """The detections of one model on one image."""

    image: str
    size: tuple[int, int]               # original H, W
    detections: list[Detection]
    model: str = ""

    def __str__(self) -> str:
        if not self.detections:
            return "No object was detected"
        return "\n".join(str(d) for d in self.detections)

    def __iter__(self):
        return iter(self.detections)

    def draw(self):
        """The image with the boxes drawn (a PIL image: notebooks show it inline)."""
        from .draw import draw_detections
        return draw_detections(self.image, self.detections)

    def __len__(self) -> int:
        return len(self.detections)


def graph_heads(graph: Graph, spec: YoloSpec) -> list[str]:
    """The graph's outputs when they are YOLO heads, else the heads found inside it."""
    if spec.kind == "anchor_free":
        net_hw = tuple(graph.inputs[0].shape[-2:])
        return [t for t in graph.outputs if anchor_free_classes(graph.shapes.get(t, ()), net_hw)]
    channels = spec.channels()
    if graph.outputs and all(head_layout(graph.shapes.get(t, ()), channels) for t in graph.outputs):
        return list(graph.outputs)
    heads = find_heads(((n.op_type, n.inputs, n.outputs) for n in graph.nodes), graph.shapes, spec)
    if not heads:
        raise not_heads_error({t: graph.shapes.get(t, ()) for t in graph.outputs}, spec)
    return heads


def graph_detector(graph: Graph, *, name: str | None = None, forward: Forward | None = None,
                   preprocess: PreprocessConfig | None = None) -> Detector:
    """Detector for a Graph: F32 simulation of its heads unless `forward` is given."""
    from ..quant.engine import fast_run
    spec = YoloSpec.for_graph(graph)
    heads = graph_heads(graph, spec)
    input_name = graph.input_names[0]
    if forward is None:
        def forward(x: np.ndarray) -> Mapping[str, np.ndarray]:
            return fast_run(graph, {input_name: x}, heads)
    cfg = preprocess or graph.preprocess or default_preprocess(graph)
    return Detector(name or graph.name, forward, cfg, spec)


def default_preprocess(graph: Graph) -> PreprocessConfig:
    """The tutorial's preprocessing at the model's input size."""
    from ..graph.loader import make_preprocess
    return make_preprocess(graph, dict(DETECT_PREPROCESS))


def onnx_input_shape(proto, path: str, net_input_dims: Sequence[int] | None) -> list[int]:
    """The ONNX model's NCHW input shape, dynamic dims filled (batch 1, H x W from
    `net_input_dims`, else the reference's default 416 x 416); an error if a static H x W differs."""
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if len(inputs) < 1:
        raise ModelError(f"{path} has no input")
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ModelError(f"{path}: input '{inputs[0].name}' has rank {len(dims)}; a YOLO detector "
                         "takes an N x 3 x H x W image batch")
    wanted = list(net_input_dims or [d or 416 for d in dims[2:]])
    if any(d is not None and d != w for d, w in zip(dims[2:], wanted)):
        raise OptionError(f"--net_input_dims {wanted} does not fit {path}, whose input "
                          f"'{inputs[0].name}' is {['?' if d is None else d for d in dims]}")
    return [dims[0] or 1, dims[1] or 3, *wanted]


def onnx_heads(proto, input_shape: list[int], spec: YoloSpec) -> list[str]:
    """Head tensor names of an ONNX model, found with ONNX shape inference (before import, so a
    tail of ops we do not run is no obstacle)."""
    import onnx
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    initializers = {t.name for t in model.graph.initializer}
    first = next(i for i in model.graph.input if i.name not in initializers)
    for d, v in zip(first.type.tensor_type.shape.dim, input_shape):
        d.dim_value = int(v)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as e:  # onnx raises several unrelated types for bad graphs
        raise ModelError(f"cannot infer the shapes of the ONNX model to find its heads: {e}") from e
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = tuple(d.dim_value for d in dims)
    outputs = [o.name for o in proto.graph.output]
    free = [o for o in outputs if anchor_free_classes(shapes.get(o, ()), input_shape[-2:])]
    if free:
        return free
    nodes = [(n.op_type, list(n.input), list(n.output)) for n in proto.graph.node]
    heads = find_heads(nodes, shapes, spec)
    if not heads:
        raise not_heads_error({o.name: shapes.get(o.name, ("?",)) for o in proto.graph.output}, spec)
    return heads


MODEL_KINDS = (".onnx", ".cfg", ".mlir", ".bmodel", ".cvimodel", ".tpsm")


def load_detection_graph(path: str, *, net_input_dims: Sequence[int] | None = None,
                         model_data: str | None = None) -> Graph:
    """Import a model file for detection: cut at its YOLO heads, with preprocessing attached."""
    from ..fileio import require_file
    require_file(path, "model file")
    ext = os.path.splitext(path)[1].lower()
    input_shapes = [[1, 3, *net_input_dims]] if net_input_dims else None
    if ext == ".onnx":
        from ..graph.onnx_import import import_onnx, load_onnx
        proto = load_onnx(path)
        shape = onnx_input_shape(proto, path, net_input_dims)
        heads = onnx_heads(proto, shape, YoloSpec.tutorial())
        # Cut at the heads on import: a tail we do not run (a built-in NMS, the model zoo's
        # `image_shape` input) is dropped before the support check.
        graph = import_onnx(proto, name=_stem(path), input_shapes=[shape], output_names=heads)
        graph.meta["source"] = os.path.abspath(path)
    elif ext == ".cfg":
        from ..graph.darknet_import import import_darknet
        graph = import_darknet(path, model_data, input_shapes=input_shapes)
    elif ext == ".mlir":
        from ..graph.loader import load_model
        graph = load_model(path)
        if net_input_dims and tuple(graph.inputs[0].shape[2:]) != tuple(net_input_dims):
            raise OptionError(f"--net_input_dims {list(net_input_dims)} does not fit {path}, whose "
                              f"input is {list(graph.inputs[0].shape)}")
    else:
        raise OptionError(f"cannot detect with '{path}': unknown model kind '{ext}'; supported: "
                          f"{', '.join(MODEL_KINDS)}")
    if ext != ".mlir" or graph.preprocess is None:
        graph.preprocess = default_preprocess(graph)
    return graph


def open_detector(path: str | os.PathLike, *, net_input_dims: Sequence[int] | None = None,
                  model_data: str | None = None) -> Detector:
    """A Detector for a model file (.onnx, darknet .cfg, .mlir, or a deployed model)."""
    from ..quant.deploy import DEPLOYED_SUFFIXES, is_deployed_model
    path = os.fspath(path)
    if path.lower().endswith(DEPLOYED_SUFFIXES) or is_deployed_model(path):
        return deployed_detector(path, net_input_dims)
    graph = load_detection_graph(path, net_input_dims=net_input_dims, model_data=model_data)
    return graph_detector(graph, name=_stem(path))


def deployed_detector(path: str, net_input_dims: Sequence[int] | None = None) -> Detector:
    """A Detector running a deployed model (`core/quant/deploy.py`) as the chip computes it."""
    from ..quant.deploy import load_deployed
    model = load_deployed(path)
    graph = model.graph
    if net_input_dims and tuple(graph.inputs[0].shape[2:]) != tuple(net_input_dims):
        raise OptionError(f"--net_input_dims {list(net_input_dims)} does not fit {path}, whose "
                          f"input is {list(graph.inputs[0].shape)}")
    heads = graph_heads(graph, YoloSpec.for_graph(graph))
    input_name = graph.input_names[0]
    return graph_detector(graph, name=_stem(path),
                          forward=lambda x: model.run({input_name: x}, heads))


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def detect_images(detector: Detector, images: Sequence[str | os.PathLike], *,
                  score_thres: float | None = None, iou_thres: float | None = None,
                  names: Sequence[str] | None = None,
                  progress: ProgressFn | None = None) -> list[ImageDetections]:
    """Run the detector on each image (one at a time: memory stays at one input). Thresholds
    default to the head kind's: the tutorial's 0.56 / 0.5 for YOLOv3 heads, 0.25 / 0.45 for
    anchor-free (YOLOv8-style) ones."""
    from ..graph.preprocess import image_size, letterbox_geometry, preprocess_images
    score_thres = detector.spec.score_thres if score_thres is None else score_thres
    iou_thres = detector.spec.iou_thres if iou_thres is None else iou_thres
    check_thresholds(score_thres, iou_thres)
    cfg = detector.preprocess
    results = []
    with Progress(progress, "detect", len(images)) as bar:
        for image in images:
            image = os.fspath(image)
            x = preprocess_images([image], cfg)
            hw = image_size(image)
            outputs = detector.forward(x)
            dets = postprocess(outputs, detector.spec, detector.net_hw,
                               [letterbox_geometry(hw, cfg)], [hw], score_thres=score_thres,
                               iou_thres=iou_thres, names=names)[0]
            results.append(ImageDetections(image, hw, dets, detector.name))
            bar.advance()
    return results


def check_thresholds(score_thres: float, iou_thres: float) -> None:
    for option, value in (("score_thres", score_thres), ("iou_thres", iou_thres)):
        if not 0.0 <= value <= 1.0:
            raise OptionError(f"--{option} {value} is outside [0, 1]")


# ---- side by side -----------------------------------------------------------------------------
@dataclass
class Match:
    """One object found by the reference model and by another one."""

    ref: Detection
    other: Detection
    iou: float

    @property
    def drift(self) -> float:
        return self.other.score - self.ref.score


@dataclass
class ModelDiff:
    """How one model's detections differ from the reference model's."""

    model: str
    detections: list[Detection]
    matched: list[Match] = field(default_factory=list)
    lost: list[Detection] = field(default_factory=list)     # in the reference, not here
    gained: list[Detection] = field(default_factory=list)   # here, not in the reference

    def summary(self) -> str:
        parts = [f"{len(self.detections)} object(s)"]
        parts.append("lost " + (", ".join(d.label for d in self.lost) or "none"))
        parts.append("gained " + (", ".join(d.label for d in self.gained) or "none"))
        if self.matched:
            drift = ", ".join(f"{m.ref.name} {m.ref.score:.3f}->{m.other.score:.3f} "
                              f"({m.drift:+.3f}, box IoU {m.iou:.2f})" for m in self.matched)
            parts.append(f"score drift {drift}")
        return "; ".join(parts)


def match_detections(ref: Sequence[Detection], other: Sequence[Detection],
                     match_iou: float = MATCH_IOU) -> ModelDiff:
    """Pair boxes of the same class, best IoU first (each box used once); the rest are lost/gained."""
    pairs = []
    for i, r in enumerate(ref):
        boxes = np.array([o.box for o in other], dtype=np.float64).reshape(-1, 4)
        ious = iou_one_to_many(np.array(r.box, dtype=np.float64), boxes)
        pairs += [(float(ious[j]), i, j) for j, o in enumerate(other)
                  if o.class_id == r.class_id and ious[j] >= match_iou]
    used_r, used_o, diff = set(), set(), ModelDiff("", list(other))
    for iou, i, j in sorted(pairs, key=lambda p: (-p[0], p[1], p[2])):
        if i not in used_r and j not in used_o:
            used_r.add(i)
            used_o.add(j)
            diff.matched.append(Match(ref[i], other[j], iou))
    diff.matched.sort(key=lambda m: -m.ref.score)
    diff.lost = [r for i, r in enumerate(ref) if i not in used_r]
    diff.gained = [o for j, o in enumerate(other) if j not in used_o]
    return diff


@dataclass
class DetectionComparison:
    """Several models' detections on one image, each compared with the first (the reference)."""

    image: str
    results: dict[str, list[Detection]]
    diffs: dict[str, ModelDiff]

    @property
    def reference(self) -> str:
        return next(iter(self.results))

    def __str__(self) -> str:
        lines = [f"image {self.image}, reference {self.reference}:"]
        for d in self.results[self.reference]:
            lines.append(f"  {d}")
        if not self.results[self.reference]:
            lines.append("  No object was detected")
        for name, diff in self.diffs.items():
            lines.append(f"{name}: {diff.summary()}")
        return "\n".join(lines)


def compare_detections(image: str | os.PathLike, results: Mapping[str, Sequence[Detection]],
                       match_iou: float = MATCH_IOU) -> DetectionComparison:
    """Compare every model's detections with the first model's (e.g. F32 vs INT8 vs mixed)."""
    if not results:
        raise OptionError("compare_detections needs at least one model's detections")
    results = {k: list(v) for k, v in results.items()}
    ref_name = next(iter(results))
    diffs = {}
    for name, dets in list(results.items())[1:]:
        diff = match_detections(results[ref_name], dets, match_iou)
        diff.model = name
        diffs[name] = diff
    return DetectionComparison(os.fspath(image), results, diffs)
