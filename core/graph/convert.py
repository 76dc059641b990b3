"""The reference's converter (tpu-mlir-opset.md 2.4): ONNX op types -> its Top op types, op for
op, names kept (Transpose -> Permute, Gemm -> MatMul, x - c -> AddConst(-c), x / c ->
MulConst(1/c), Clip(0, m) -> Relu, GlobalAveragePool -> AvgPool, nearest integer Resize ->
Upsample, Split -> Slices, ConvTranspose -> Deconv, BatchNormalization -> Scale, ...)."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..ops import DEFAULT_OPSET, lookup, with_slots
from .ir import Graph, Node
from .rewrite import scalar, weight


def convert(graph: Graph) -> None:
    """ONNX op types -> the reference's Top op types, op for op, names kept."""
    for node in list(graph.nodes):
        fn = CONVERTERS.get(node.op_type)
        if fn is not None:
            fn(graph, node)
    graph.changed()


def _convert_sub(graph: Graph, node: Node) -> None:
    a, b = node.inputs
    if scalar(graph, b) is not None and a not in graph.weights:
        node.op_type, node.inputs, node.attrs = "AddConst", [a], {"const_val": -scalar(graph, b)}
    elif scalar(graph, a) is not None and b not in graph.weights:
        node.op_type, node.inputs = "SubConst", [b]
        node.attrs = {"const_val": scalar(graph, a), "is_reverse": 1}


def _convert_div(graph: Graph, node: Node) -> None:
    a, b = node.inputs
    c = scalar(graph, b)
    if c is not None and c != 0 and a not in graph.weights:
        node.op_type, node.inputs, node.attrs = "MulConst", [a], {"const_val": 1.0 / c}


def _clip_bounds(graph: Graph, node: Node) -> tuple[float | None, float | None] | None:
    if len(node.inputs) == 1 and ("min" in node.attrs or "max" in node.attrs):
        return float(node.attrs.get("min", -math.inf)), float(node.attrs.get("max", math.inf))
    bounds = []
    for i in (1, 2):
        t = node.inputs[i] if len(node.inputs) > i else ""
        if not t:
            bounds.append(-math.inf if i == 1 else math.inf)
            continue
        v = scalar(graph, t)
        if v is None:
            return None
        bounds.append(v)
    return bounds[0], bounds[1]


def _convert_clip(graph: Graph, node: Node) -> None:
    bounds = _clip_bounds(graph, node)
    if bounds is not None and bounds[0] == 0 and bounds[1] > 0:
        node.op_type, node.inputs = "Relu", [node.inputs[0]]
        node.attrs = {"relu_limit": bounds[1]} if math.isfinite(bounds[1]) else {}


def _convert_global_pool(graph: Graph, node: Node) -> None:
    shape = graph.shapes.get(node.inputs[0])
    if shape is None or len(shape) != 4:
        return
    node.op_type = "AvgPool" if node.op_type == "GlobalAveragePool" else "MaxPool"
    node.attrs = {"kernel_shape": list(shape[2:]), "strides": [1, 1], "pads": [0, 0, 0, 0]}
    if node.op_type == "AvgPool":
        node.attrs["count_include_pad"] = 1


def _convert_average_pool(graph: Graph, node: Node) -> None:
    if node.attrs.get("auto_pad", "NOTSET") != "NOTSET" or node.attrs.get("dilations"):
        return
    node.op_type = "AvgPool"
    node.attrs = {k: v for k, v in node.attrs.items()
                  if k in ("kernel_shape", "strides", "pads", "count_include_pad", "ceil_mode")}
    node.attrs.setdefault("count_include_pad", 0)


def _convert_gemm(graph: Graph, node: Node) -> None:
    a = node.attrs
    w = graph.weights.get(node.inputs[1])
    if a.get("transA") or w is None or w.ndim != 2:
        return
    w = np.asarray(w, np.float32)
    w = w.T if a.get("transB") else w
    if a.get("alpha", 1.0) != 1.0:
        w = w * np.float32(a["alpha"])
    inputs = [node.inputs[0], weight(graph, f"{node.name}_filter", np.ascontiguousarray(w))]
    if len(node.inputs) > 2 and node.inputs[2]:
        bias = graph.weights.get(node.inputs[2])
        if bias is None:
            return
        bias = np.asarray(bias, np.float32) * np.float32(a.get("beta", 1.0))
        inputs.append(weight(graph, f"{node.name}_bias", bias))
    node.op_type, node.inputs = "MatMul", inputs
    node.attrs = {k: v for k, v in a.items() if k.startswith("_")}


def _resize_factors(graph: Graph, node: Node) -> tuple[int, int] | None:
    src, dst = graph.shapes.get(node.inputs[0]), graph.shapes.get(node.outputs[0])
    if not src or not dst or len(src) < 4 or len(src) != len(dst) or src[:-2] != dst[:-2]:
        return None
    if dst[-2] % src[-2] or dst[-1] % src[-1]:
        return None
    fh, fw = dst[-2] // src[-2], dst[-1] // src[-1]
    return (fh, fw) if fh == fw and fh >= 1 else None


def _repeats_pixels(graph: Graph, node: Node, factor: int) -> bool:
    """Whether the resize, run on a probe, repeats every pixel `factor` x `factor` times (its
    coordinate mode, rounding and ROI decide; a crop-and-resize does not)."""
    shape = (1,) + tuple(graph.shapes[node.inputs[0]][1:])
    probe = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    slots = [None] + [graph.weights.get(t) if t else "" for t in node.inputs[1:]]
    try:
        y = with_slots(lookup(node.op_type, int(graph.meta.get("opset", DEFAULT_OPSET))),
                       slots, node.attrs)(probe)
    except (ValueError, TypeError, IndexError):
        return False
    return np.array_equal(y, np.repeat(np.repeat(probe, factor, axis=-2), factor, axis=-1))


def _convert_resize(graph: Graph, node: Node) -> None:
    factors = _resize_factors(graph, node)
    if node.attrs.get("mode", "nearest") != "nearest" or factors is None \
            or len(graph.consumers(node.outputs[0])) > 1 \
            or not _repeats_pixels(graph, node, factors[0]):
        return
    node.op_type, node.inputs = "Upsample", [node.inputs[0]]
    node.attrs = {"scale_h": factors[0], "scale_w": factors[1]}


def _convert_split(graph: Graph, node: Node) -> None:
    """Split -> one Slice per output, each keeping its output's name (`<out_i>_Split`)."""
    shape = graph.shapes.get(node.inputs[0])
    if shape is None:
        return
    axis = int(node.attrs.get("axis", 0)) % len(shape)
    at = graph.nodes.index(node)
    graph.nodes.remove(node)
    start = 0
    for i, out in enumerate(node.outputs):
        if not out:
            continue
        size = graph.shapes[out][axis]
        params = [weight(graph, f"{out}_{k}", np.array([v], np.int64))
                  for k, v in (("starts", start), ("ends", start + size), ("axes", axis))]
        graph.nodes.insert(at + i, Node(out, "Slice", [node.inputs[0]] + params, [out], {}))
        start += size
    graph.changed()


def _convert_flatten(graph: Graph, node: Node) -> None:
    shape = graph.shapes.get(node.outputs[0])
    if shape is None:
        return
    node.op_type = "Reshape"
    node.inputs = [node.inputs[0], weight(graph, f"{node.name}_shape", np.array(shape, np.int64))]
    node.attrs = {}


def _convert_batchnorm(graph: Graph, node: Node) -> None:
    """BatchNormalization left after folding -> Scale (float32, as the reference)."""
    if not all(t in graph.weights for t in node.inputs[1:5]):
        return
    gamma, beta, mean, var = (np.asarray(graph.weights[t], np.float32) for t in node.inputs[1:5])
    eps = np.float32(node.attrs.get("epsilon", 1e-5))
    scale = (gamma / np.sqrt(var + eps)).astype(np.float32)
    bias = (beta - mean * scale).astype(np.float32)
    node.op_type = "Scale"
    node.inputs = [node.inputs[0], weight(graph, f"{node.name}_scale", scale),
                   weight(graph, f"{node.name}_bias", bias)]
    node.attrs = {}


def _convert_reduce(graph: Graph, node: Node) -> None:
    """ReduceMean / ReduceMax of a 4-D tensor over H and W (dims kept) -> AvgPool / MaxPool."""
    shape = graph.shapes.get(node.inputs[0])
    axes = node.attrs.get("axes")
    if len(node.inputs) > 1 and node.inputs[1] in graph.weights:
        axes = graph.weights[node.inputs[1]].tolist()
    if shape is None or len(shape) != 4 or axes is None or not node.attrs.get("keepdims", 1):
        return
    if sorted(int(a) % 4 for a in axes) != [2, 3]:
        return
    node.op_type = "AvgPool" if node.op_type == "ReduceMean" else "MaxPool"
    node.inputs = [node.inputs[0]]
    node.attrs = {"kernel_shape": list(shape[2:]), "strides": [1, 1], "pads": [0, 0, 0, 0]}
    if node.op_type == "AvgPool":
        node.attrs["count_include_pad"] = 1


def _convert_layer_norm(graph: Graph, node: Node) -> None:
    if len([t for t in node.outputs if t]) == 1 and node.attrs.get("_num_outputs", 1) < 2:
        node.op_type = "LayerNorm"
        node.attrs = {"axis": node.attrs.get("axis", -1), "epsilon": node.attrs.get("epsilon", 1e-5)}


def _rename_op(new: str, attrs: Callable[[dict], dict] = dict) -> Callable[[Graph, Node], None]:
    def convert_one(graph: Graph, node: Node) -> None:
        node.op_type, node.attrs = new, attrs(node.attrs)
    return convert_one


def _convert_transpose(graph: Graph, node: Node) -> None:
    shape = graph.shapes.get(node.inputs[0], ())
    perm = node.attrs.get("perm")
    node.op_type = "Permute"
    node.attrs = {"order": list(perm) if perm is not None else list(range(len(shape)))[::-1]}


def _convert_depth_to_space(graph: Graph, node: Node) -> None:
    b = int(node.attrs["blocksize"])
    inverse = node.op_type == "SpaceToDepth"
    node.attrs = {"block_h": b, "block_w": b, "is_inversed": int(inverse),
                  "is_CRD": int(node.attrs.get("mode", "DCR") == "CRD")}
    node.op_type = "Depth2Space"


CONVERTERS: dict[str, Callable[[Graph, Node], None]] = {
    "Sub": _convert_sub, "Div": _convert_div, "Clip": _convert_clip,
    "GlobalAveragePool": _convert_global_pool, "GlobalMaxPool": _convert_global_pool,
    "AveragePool": _convert_average_pool, "Gemm": _convert_gemm, "Resize": _convert_resize,
    "Upsample": _convert_resize, "Split": _convert_split, "Flatten": _convert_flatten,
    "BatchNormalization": _convert_batchnorm, "ReduceMean": _convert_reduce,
    "ReduceMax": _convert_reduce, "Transpose": _convert_transpose,
    "ConvTranspose": _rename_op("Deconv"),
    "LayerNormalization": _convert_layer_norm,
    "DepthToSpace": _convert_depth_to_space, "SpaceToDepth": _convert_depth_to_space,
}
