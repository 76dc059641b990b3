"""The reference's canonical ops written as the ONNX ops they stand for, for the QDQ export:
SiLU as x * Sigmoid(x), MulConst as Mul by a constant, Permute as Transpose, Upsample as a
nearest Resize, and so on. Each form takes the export builder, the ONNX-ordered inputs (weights
already named) and the op's attributes, and returns the name of its float output."""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

# LayerNormalization is an ONNX op from opset 17 on.
LAYER_NORM_OPSET = 17


def _const(b, name: str, value) -> str:
    return b.init(name, np.asarray(value, np.float32))


def _shape(b, s) -> tuple:
    """The shape of the step's output (the inputs may be casts the graph does not know)."""
    return tuple(b.plan.graph.shapes.get(s.op, b.plan.graph.shapes.get(s.outputs[-1], ())))


def _silu(b, ins, a, s) -> str:
    return b.node("Mul", [ins[0], b.node("Sigmoid", [ins[0]])])


def _hard_swish(b, ins, a, s) -> str:
    # HardSwish is ONNX from opset 14 on; x * HardSigmoid(x) (1/6, 1/2) is the same function.
    return b.node("Mul", [ins[0], b.node("HardSigmoid", [ins[0]], alpha=1 / 6, beta=0.5)])


def _gelu(b, ins, a, s) -> str:
    x = ins[0]
    half = b.node("Mul", [x, _const(b, "half", 0.5)])
    if a.get("approx_mode", "normal") == "tanh":
        cube = b.node("Mul", [b.node("Mul", [x, x]), x])
        inner = b.node("Add", [x, b.node("Mul", [cube, _const(b, "c", 0.044715)])])
        t = b.node("Tanh", [b.node("Mul", [inner, _const(b, "k", math.sqrt(2 / math.pi))])])
        return b.node("Mul", [half, b.node("Add", [t, _const(b, "one", 1.0)])])
    erf = b.node("Erf", [b.node("Mul", [x, _const(b, "rsqrt2", 1 / math.sqrt(2))])])
    return b.node("Mul", [half, b.node("Add", [erf, _const(b, "one", 1.0)])])


def _mul_const(b, ins, a, s) -> str:
    return b.node("Mul", [ins[0], _const(b, "c", a["const_val"])])


def _add_const(b, ins, a, s) -> str:
    return b.node("Add", [ins[0], _const(b, "c", a["const_val"])])


def _sub_const(b, ins, a, s) -> str:
    c = _const(b, "c", a["const_val"])
    return b.node("Sub", [c, ins[0]] if a.get("is_reverse", 1) else [ins[0], c])


def _channel(b, name: str, w: str, rank: int) -> str:
    shape = b.init(name + "_shape", np.array([1, -1] + [1] * (rank - 2), np.int64))
    return b.node("Reshape", [w, shape])


def _scale(b, ins, a, s) -> str:
    rank = len(_shape(b, s)) or 4
    y = b.node("Mul", [ins[0], _channel(b, "scale", ins[1], rank)])
    return b.node("Add", [y, _channel(b, "bias", ins[2], rank)]) if len(ins) > 2 and ins[2] else y


def _matmul(b, ins, a, s) -> str:
    y = b.node("MatMul", ins[:2])
    return b.node("Add", [y, ins[2]]) if len(ins) > 2 and ins[2] else y


def _avg_pool(b, ins, a, s) -> str:
    out = _shape(b, s)
    if len(out) == 4 and tuple(out[2:]) == (1, 1) and not any(a.get("pads") or ()):
        return b.node("GlobalAveragePool", ins[:1])      # the window is the whole plane
    if not any(a.get("pads") or ()) and len(out) == 4:
        # A depthwise Conv of 1/(kh*kw): onnxruntime's fused QLinearAveragePool rejects these models.
        kh, kw = a["kernel_shape"]
        w = b.init("avg", np.full((out[1], 1, kh, kw), 1.0 / (kh * kw), np.float32))
        return b.node("Conv", [ins[0], w], group=int(out[1]), kernel_shape=[kh, kw],
                      strides=list(a.get("strides") or [kh, kw]))
    attrs = {k: v for k, v in a.items() if k in ("kernel_shape", "strides", "pads", "count_include_pad",
                                                 "ceil_mode")}
    return b.node("AveragePool", ins[:1], **attrs)


def _permute(b, ins, a, s) -> str:
    return b.node("Transpose", ins[:1], perm=list(a["order"]))


def _upsample(b, ins, a, s) -> str:
    if "scale_h" not in a:
        return b.node("Resize", [ins[0], "", ins[1]], mode=a.get("mode", "nearest"))
    rank = len(_shape(b, s)) or 4
    scales = _const(b, "scales", [1.0] * (rank - 2) + [float(a["scale_h"]), float(a["scale_w"])])
    return b.node("Resize", [ins[0], "", scales], mode="nearest",
                  coordinate_transformation_mode="asymmetric", nearest_mode="floor")


def _depth2space(b, ins, a, s) -> str:
    bh, bw = int(a["block_h"]), int(a["block_w"])
    if bh == bw:
        if a.get("is_inversed"):
            return b.node("SpaceToDepth", ins[:1], blocksize=bh)
        return b.node("DepthToSpace", ins[:1], blocksize=bh, mode="CRD" if a.get("is_CRD") else "DCR")
    raise NotImplementedError("Depth2Space with unequal blocks has no QDQ form")


def _deconv(b, ins, a, s) -> str:
    return b.node("ConvTranspose", ins, **a)


def _layer_norm(b, ins, a, s) -> str:
    x = ins[0]
    shape = _shape(b, s)
    axis = int(a.get("axis", -1)) % len(shape)
    norm = shape[axis:]
    scale = ins[1] if len(ins) > 1 and ins[1] else _const(b, "ones", np.ones(norm))
    inputs = [x, scale] + ([ins[2]] if len(ins) > 2 and ins[2] else [])
    return b.node("LayerNormalization", inputs, axis=axis, epsilon=float(a.get("epsilon", 1e-5)))


def _relu(b, ins, a, s) -> str:
    if a.get("relu_limit", -1) > 0:
        return b.node("Clip", [ins[0], _const(b, "zero", 0.0), _const(b, "limit", a["relu_limit"])])
    return b.node("Relu", ins[:1])


def _axes_input(op: str) -> Callable:
    """Squeeze / Unsqueeze: opset 13 takes the axes as an input (the export's opset is >= 13)."""
    def form(b, ins, a, s) -> str:
        if "axes" not in a:
            return b.node(op, ins)
        axes = b.init("axes", np.array(a["axes"], np.int64))
        return b.node(op, [ins[0], axes], **{k: v for k, v in a.items() if k != "axes"})
    return form


def _softmax(b, ins, a, s) -> str:
    """Softmax as opset 13 reads it; before 13 it normalised over all dims from `axis` on."""
    rank = len(_shape(b, s))
    if s.opset >= 13:
        return b.node("Softmax", ins[:1], **a)
    axis = int(a.get("axis", 1)) % rank
    if axis == rank - 1:
        return b.node("Softmax", ins[:1], axis=axis)
    flat = b.node("Flatten", ins[:1], axis=axis)
    y = b.node("Softmax", [flat], axis=1)
    return b.node("Reshape", [y, b.node("Shape", ins[:1])])


ONNX_FORMS: dict[str, Callable[[Any, list, dict, Any], str]] = {
    "Squeeze": _axes_input("Squeeze"), "Unsqueeze": _axes_input("Unsqueeze"), "Softmax": _softmax,
    "SiLU": _silu, "HardSwish": _hard_swish, "GELU": _gelu, "MulConst": _mul_const, "AddConst": _add_const,
    "SubConst": _sub_const, "Scale": _scale, "MatMul": _matmul, "AvgPool": _avg_pool,
    "Permute": _permute, "Upsample": _upsample, "Depth2Space": _depth2space, "Deconv": _deconv,
    "LayerNorm": _layer_norm, "Relu": _relu,
}
