"""YOLO post-processing: head decode, letterbox correction, score filter, per-class NMS, names.

Two kinds of heads: YOLOv3's anchor heads (below), and the anchor-free decoded output of
YOLOv5u/v8/v11 exports, one tensor N x (4 + classes) x anchors holding cx, cy, w, h in network
pixels and the class scores (no objectness), over the 8/16/32-stride grids.

    spec = YoloSpec.for_graph(graph)                   # anchors/masks from a darknet cfg, else the tutorial's
    dets = postprocess(outputs, spec, net_hw=(416, 416), orig_hw=(480, 640),
                       geometry=letterbox_geometry((480, 640), cfg))
    print(dets[0][0])                                  # person:67.5% box 35,104,270,316

Heads may be NCHW (N, A*(5+C), H, W) or NHWC (N, H, W, A*(5+C)); the layout is read from the shape.
Each head is matched to its anchors by its stride (network input size / grid size), never by the
order of the outputs, so a model cut as `transpose_output1,transpose_output` or the other way round
decodes the same.

Decode (darknet's): x = (sigmoid(tx) + col) / W, y = (sigmoid(ty) + row) / H, w = exp(tw) * anchor_w,
h = exp(th) * anchor_h (anchors in network-input pixels), objectness and classes through a sigmoid,
score = objectness x class. Boxes are mapped back to the original image with the geometry of the
model's own preprocessing (`core/preprocess.letterbox_geometry`: OpenCV-style bilinear letterbox).
The reference's detect script preprocessed with a PIL bicubic letterbox instead and used a rounded
approximation of the geometry; we use the model's preprocessing on purpose, so detection sees the
very input that calibration and simulation see. NMS works on corner boxes (the reference's NMS read
x1, y1 as width and height: not reproduced) and keeps a box when its IoU with every better box of
its class is <= iou_thres.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import InputFileError, ModelError

COCO_CLASSES = (
    "person", "bicycle", "car", "motorbike", "aeroplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "sofa", "pottedplant", "bed",
    "diningtable", "toilet", "tvmonitor", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush")

# The tutorial's decoder (and the original darknet yolov3-tiny release): stride 32 -> anchors
# 3,4,5 (13x13 at 416), stride 16 -> anchors 1,2,3 (26x26 at 416).
TUTORIAL_ANCHORS = ((10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319))
TUTORIAL_MASKS = {32: (3, 4, 5), 16: (1, 2, 3)}
# exp() of a larger logit gives a box wider than 10^8 pixels: clip so no inf reaches NMS
MAX_WH_LOGIT = 20.0
# the reference's detect_yolov3.py defaults (1.30.2; v1.3 had score 0.6)
DEFAULT_SCORE_THRES = 0.56
DEFAULT_IOU_THRES = 0.5
# anchor-free heads: the strides of their grids, and the exporter's (ultralytics') defaults
ANCHOR_FREE_STRIDES = (8, 16, 32)
ANCHOR_FREE_SCORE_THRES = 0.25
ANCHOR_FREE_IOU_THRES = 0.45


@dataclass(frozen=True)
class Detection:
    """One detected object: class, score and corner box (x0, y0, x1, y1) in original pixels."""

    class_id: int
    name: str
    score: float
    box: tuple[float, float, float, float]

    @property
    def label(self) -> str:
        """The reference's label text, e.g. 'person:67.5%'."""
        return f"{self.name}:{self.score * 100:.1f}%"

    def __str__(self) -> str:
        return f"{self.label} box {','.join(str(round(v)) for v in self.box)}"

    def to_dict(self) -> dict[str, Any]:
        return {"class_id": self.class_id, "name": self.name, "score": self.score,
                "box": list(self.box)}


@dataclass(frozen=True)
class YoloSpec:
    """Anchors (network-input pixels), the anchor mask of each head stride, and the class count."""

    anchors: tuple[tuple[float, float], ...]
    masks: Mapping[int, tuple[int, ...]]          # stride -> anchor indices
    classes: int = 80
    source: str = "tutorial"                      # where the anchors came from, for messages
    kind: str = "yolov3"                          # or "anchor_free" (YOLOv8-style decoded output)

    @classmethod
    def anchor_free(cls, classes: int) -> "YoloSpec":
        """A YOLOv8-style decoded head of `classes` classes."""
        return cls((), {}, classes, "anchor-free head", "anchor_free")

    @property
    def score_thres(self) -> float:
        return ANCHOR_FREE_SCORE_THRES if self.kind == "anchor_free" else DEFAULT_SCORE_THRES

    @property
    def iou_thres(self) -> float:
        return ANCHOR_FREE_IOU_THRES if self.kind == "anchor_free" else DEFAULT_IOU_THRES

    @classmethod
    def tutorial(cls) -> "YoloSpec":
        """The tutorial's tiny-YOLOv3 decoder settings."""
        return cls(TUTORIAL_ANCHORS, dict(TUTORIAL_MASKS))

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> "YoloSpec":
        """From `graph.meta["yolo"]` as written by the darknet importer."""
        size = meta["input_size"]
        masks = {int(size[0]) // int(h["grid"][0]): tuple(h["mask"]) for h in meta["heads"]}
        return cls(tuple(tuple(a) for a in meta["anchors"]), masks, int(meta["classes"]), "cfg")

    @classmethod
    def for_graph(cls, graph: Any) -> "YoloSpec":
        """The cfg's anchors when the graph came from darknet; an anchor-free spec when an output
        is a YOLOv8-style head; else the tutorial's."""
        meta = getattr(graph, "meta", {}).get("yolo")
        if meta:
            return cls.from_meta(meta)
        net_hw = tuple(graph.inputs[0].shape[-2:]) if graph.inputs else (0, 0)
        for t in graph.outputs:
            classes = anchor_free_classes(graph.shapes.get(t, ()), net_hw)
            if classes:
                return cls.anchor_free(classes)
        return cls.tutorial()

    def channels(self) -> set[int]:
        """Channel counts a head of this model can have: anchors x (5 + classes)."""
        return {len(m) * (5 + self.classes) for m in self.masks.values()}

    def mask_for(self, name: str, grid: tuple[int, int], net_hw: tuple[int, int]) -> tuple[int, ...]:
        stride = net_hw[0] // grid[0]
        if grid[0] * stride != net_hw[0] or grid[1] * stride != net_hw[1] or stride not in self.masks:
            known = ", ".join(f"stride {s} ({net_hw[0] // s}x{net_hw[1] // s})"
                              for s in sorted(self.masks, reverse=True))
            raise ModelError(f"head '{name}' has a {grid[0]}x{grid[1]} grid for a "
                             f"{net_hw[0]}x{net_hw[1]} input; the {self.source} anchors are for "
                             f"{known}")
        return self.masks[stride]


def anchor_free_classes(shape: Sequence[int], net_hw: Sequence[int]) -> int | None:
    """The class count when `shape` is a YOLOv8-style head N x (4 + C) x A for this input size
    (A = the cells of the 8, 16 and 32 stride grids), else None."""
    if len(shape) != 3 or len(net_hw) != 2 or shape[1] <= 4:
        return None
    cells = sum(-(-net_hw[0] // s) * -(-net_hw[1] // s) for s in ANCHOR_FREE_STRIDES)
    return int(shape[1]) - 4 if shape[2] == cells else None


def head_layout(shape: Sequence[int], channels: set[int]) -> str | None:
    """'NCHW' or 'NHWC' when `shape` is a YOLO head with one of `channels`, else None."""
    if len(shape) != 4:
        return None
    nchw, nhwc = shape[1] in channels, shape[3] in channels
    if nchw and nhwc:   # e.g. 1x255x255x255: a square grid is the tell
        return "NHWC" if shape[1] == shape[2] else "NCHW"
    return "NCHW" if nchw else "NHWC" if nhwc else None


def find_heads(nodes: Iterable[tuple[str, Sequence[str], Sequence[str]]],
               shapes: Mapping[str, Sequence[int]], spec: YoloSpec) -> list[str]:
    """The head tensors of a YOLO network, coarsest grid first.

    A head is the output of a Conv shaped like a head (NCHW), or the NHWC Transpose of it when the
    model has one (the tutorial's `transpose_output1`, `transpose_output`). What follows the heads
    (a Reshape/Sigmoid/Concat tail, a built-in NMS) is ignored. `nodes` are (op_type, inputs,
    outputs) in topological order.
    """
    channels = spec.channels()
    chosen: dict[str, str] = {}
    for op_type, inputs, outputs in nodes:
        layout = head_layout(shapes.get(outputs[0], ()), channels) if outputs else None
        if op_type == "Conv" and layout == "NCHW":
            chosen[outputs[0]] = outputs[0]
        elif op_type in ("Transpose", "Permute") and layout == "NHWC" and inputs and inputs[0] in chosen:
            chosen[inputs[0]] = outputs[0]

    def cells(t: str) -> int:
        shape = shapes[t]
        return shape[2] * shape[3] if head_layout(shape, channels) == "NCHW" else shape[1] * shape[2]
    return sorted(chosen.values(), key=cells)


def not_heads_error(shapes: Mapping[str, Sequence[int]], spec: YoloSpec) -> ModelError:
    """The error for model outputs that are not YOLO heads: what was found, what is expected."""
    found = ", ".join(f"{n} {list(s)}" for n, s in shapes.items())
    c = "/".join(str(v) for v in sorted(spec.channels()))
    return ModelError(f"the model outputs are not YOLO heads: found {found}; expected rank-4 "
                      f"heads with {c} channels (anchors x (5 + {spec.classes} classes)), "
                      f"NCHW [N,{c},H,W] or NHWC [N,H,W,{c}]")


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow warnings for large negative inputs."""
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


def decode_head(t: np.ndarray, layout: str, anchors: np.ndarray, net_hw: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray]:
    """One head -> (boxes N x M x 4 as cx, cy, w, h in network pixels, scores N x M x C).

    `anchors` is A x 2 (w, h) in network pixels; M = H * W * A in row, column, anchor order.
    """
    t = np.asarray(t, dtype=np.float32)
    n, a = t.shape[0], len(anchors)
    if layout == "NCHW":
        h, w = t.shape[2:]
        t = t.reshape(n, a, -1, h, w).transpose(0, 3, 4, 1, 2)
    else:
        h, w = t.shape[1:3]
        t = t.reshape(n, h, w, a, -1)
    col = np.arange(w, dtype=np.float32).reshape(1, 1, w, 1)
    row = np.arange(h, dtype=np.float32).reshape(1, h, 1, 1)
    cx = (sigmoid(t[..., 0]) + col) / w * net_hw[1]
    cy = (sigmoid(t[..., 1]) + row) / h * net_hw[0]
    wh = np.exp(np.minimum(t[..., 2:4], MAX_WH_LOGIT)) * anchors.astype(np.float32)
    boxes = np.stack([cx, cy, wh[..., 0], wh[..., 1]], axis=-1).reshape(n, -1, 4)
    scores = (sigmoid(t[..., 4:5]) * sigmoid(t[..., 5:])).reshape(n, h * w * a, -1)
    return boxes, scores


def decode_anchor_free(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A YOLOv8-style head N x (4 + C) x A -> (corner boxes N x A x 4, scores N x A x C)."""
    t = np.asarray(t, dtype=np.float32)
    cxcywh = t[:, :4].transpose(0, 2, 1)
    half = cxcywh[..., 2:] / 2
    corners = np.concatenate([cxcywh[..., :2] - half, cxcywh[..., :2] + half], axis=-1)
    return corners, t[:, 4:].transpose(0, 2, 1)


def decode(outputs: Mapping[str, np.ndarray], spec: YoloSpec, net_hw: tuple[int, int]
           ) -> tuple[np.ndarray, np.ndarray]:
    """All heads -> (corner boxes N x M x 4 in network pixels, class scores N x M x C)."""
    if spec.kind == "anchor_free":
        heads = [v for v in outputs.values() if anchor_free_classes(v.shape, net_hw) == spec.classes]
        if len(heads) != 1:
            raise ModelError(f"expected one anchor-free head N x {4 + spec.classes} x anchors; the "
                             f"outputs are {', '.join(f'{n} {list(v.shape)}' for n, v in outputs.items())}")
        return decode_anchor_free(heads[0])
    channels = spec.channels()
    layouts = {name: head_layout(v.shape, channels) for name, v in outputs.items()}
    if not outputs or None in layouts.values():
        raise not_heads_error({n: v.shape for n, v in outputs.items()}, spec)
    all_boxes, all_scores, seen = [], [], {}
    for name, t in outputs.items():
        grid = tuple(t.shape[2:]) if layouts[name] == "NCHW" else tuple(t.shape[1:3])
        if grid in seen:
            raise ModelError(f"heads '{seen[grid]}' and '{name}' both have a {grid[0]}x{grid[1]} "
                             "grid: give one output per head")
        seen[grid] = name
        mask = spec.mask_for(name, grid, net_hw)
        anchors = np.array([spec.anchors[m] for m in mask], dtype=np.float32)
        boxes, scores = decode_head(t, layouts[name], anchors, net_hw)
        all_boxes.append(boxes)
        all_scores.append(scores)
    cxcywh = np.concatenate(all_boxes, axis=1)
    half = cxcywh[..., 2:] / 2
    corners = np.concatenate([cxcywh[..., :2] - half, cxcywh[..., :2] + half], axis=-1)
    return corners, np.concatenate(all_scores, axis=1)


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Area of corner boxes (... x 4); inverted boxes count as empty."""
    return np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * np.clip(boxes[..., 3] - boxes[..., 1], 0, None)


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one corner box with each of `boxes` (K x 4); 0 where the union is empty."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = box_area(box) + box_area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_thres: float) -> np.ndarray:
    """Indices kept by greedy per-class NMS on corner boxes, best score first.

    Equal scores keep input order; a box survives when its IoU with every kept box of its class
    is <= iou_thres.
    """
    keep: list[int] = []
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        order = idx[np.argsort(-scores[idx], kind="stable")]
        while order.size:
            best = order[0]
            keep.append(int(best))
            rest = order[1:]
            order = rest[iou_one_to_many(boxes[best], boxes[rest]) <= iou_thres]
    keep_arr = np.array(keep, dtype=np.int64)
    return keep_arr[np.argsort(-scores[keep_arr], kind="stable")]


def to_original(boxes: np.ndarray, geometry: tuple, orig_hw: tuple[int, int]) -> np.ndarray:
    """Corner boxes in network pixels -> original-image pixels, clipped to the image.

    `geometry` is `letterbox_geometry(orig_hw, cfg)`: (scale, (pad_top, pad_left), (new_h, new_w)).
    """
    _, (top, left), (new_h, new_w) = geometry
    h, w = orig_hw
    out = np.empty_like(boxes, dtype=np.float64)
    out[..., 0::2] = (boxes[..., 0::2] - left) * (w / new_w)
    out[..., 1::2] = (boxes[..., 1::2] - top) * (h / new_h)
    out[..., 0::2] = np.clip(out[..., 0::2], 0, w)
    out[..., 1::2] = np.clip(out[..., 1::2], 0, h)
    return out


def select(boxes: np.ndarray, scores: np.ndarray, score_thres: float, iou_thres: float,
           names: Sequence[str]) -> list[Detection]:
    """One sample's boxes (M x 4, original pixels) and class scores (M x C) -> detections."""
    cls = scores.argmax(axis=1)
    best = scores[np.arange(len(cls)), cls]
    cand = np.flatnonzero(best >= score_thres)
    kept = cand[nms(boxes[cand], best[cand], cls[cand], iou_thres)]
    return [Detection(int(cls[k]), names[cls[k]], float(best[k]),
                      tuple(float(v) for v in boxes[k])) for k in kept]


def postprocess(outputs: Mapping[str, np.ndarray], spec: YoloSpec, net_hw: tuple[int, int],
                geometries: Sequence[tuple], orig_hws: Sequence[tuple[int, int]], *,
                score_thres: float = DEFAULT_SCORE_THRES, iou_thres: float = DEFAULT_IOU_THRES,
                names: Sequence[str] | None = None) -> list[list[Detection]]:
    """Head outputs of a batch -> detections per sample (best score first)."""
    names = class_names(spec.classes, names)
    corners, scores = decode(outputs, spec, net_hw)
    if len(geometries) != corners.shape[0]:
        raise ModelError(f"{corners.shape[0]} samples in the outputs but {len(geometries)} images")
    return [select(to_original(corners[i], g, hw), scores[i], score_thres, iou_thres, names)
            for i, (g, hw) in enumerate(zip(geometries, orig_hws))]


def read_class_names(path: str | os.PathLike) -> list[str]:
    """Class names from a darknet `coco.names` style file, one a line (blank lines skipped)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(f"cannot read class names from {path}: {e}") from e
    if not names:
        raise InputFileError(f"class names file {path} is empty (expected one name a line)")
    return names


def class_names(classes: int, names: Sequence[str] | None = None) -> list[str]:
    """`names` checked against the model's class count; default COCO for 80 classes."""
    if names is None:
        return list(COCO_CLASSES) if classes == len(COCO_CLASSES) else \
            [f"class{i}" for i in range(classes)]
    if len(names) != classes:
        raise InputFileError(f"{len(names)} class names given, the model has {classes} classes")
    return list(names)
