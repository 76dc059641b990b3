"""INT8 dense layers, softmax and normalisation (K 6.8, 6.11, 6.12): MatMul (per-tensor weight,
or activation x activation), Softmax along axis 1 (a 256-entry exp table), LayerNorm (F16 inside
an INT8 model, always, as the reference lowers it on bm1684x); with their integer kernels."""
from __future__ import annotations

import numpy as np

from ... import quantmath as qm
from ..kernels_int8 import requant_away, softmax_codes
from . import Int8Op, NoInt8Rule, RuleContext, kernel, rule

FLOAT32_EXACT = 2**24


@rule("MatMul")
def matmul(node, ctx: RuleContext) -> Int8Op:
    """K 6.8. A weight right operand: per-tensor s_w = float32(max|W|) / 127 (in double), int8
    codes, int32 bias, (m, r) the 32-bit pair of float32(s_in * s_w / s_out). Two activations:
    the pair of s_l * s_r / s_out. A weight left operand runs in F16."""
    g = ctx.graph
    a, b = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    if a in g.weights:
        raise NoInt8Rule("MatMul with a constant left operand runs in F16 (as the reference)", "F16")
    out = ctx.home(node.outputs[0])
    tin = ctx.home(a)
    params: dict = {"relu": bool(node.attrs.get("_relu"))}
    if b in g.weights:
        w = np.asarray(g.weights[b], np.float32)
        s_w = float(np.float32(np.abs(w).max())) / 127.0
        s_w = s_w if s_w > 0 else 1.0
        params["weight_codes"] = qm.to_codes(qm.round_half_away(w.astype(np.float64) / s_w), True)
        params["weight_scale"] = s_w
        if bias is not None:
            bq = qm.round_half_away(np.asarray(g.weights[bias], np.float64) / (s_w * tin.scale))
            params["bias_codes"] = bq.astype(np.int64)
        scale = float(np.float32(tin.scale * s_w / out.scale))
        types = (tin,)
    else:
        if bias is not None and bias not in g.weights:
            raise NoInt8Rule("MatMul with a data bias has no INT8 rule")
        tr = ctx.home(b)
        scale = tin.scale * tr.scale / out.scale
        types = (tin, tr)
        if bias is not None:
            raise NoInt8Rule("MatMul of two activations with a bias has no INT8 rule")
    params["multiplier"], params["shift"] = qm.get_scale_and_shift(scale, 32)
    return Int8Op(types, out, "matmul", params)


def matmul_int8(a: np.ndarray, b: np.ndarray, *, bias: np.ndarray | None, multiplier: int,
                shift: int, relu: bool, out_signed: bool) -> np.ndarray:
    """sat(RightShiftRound((A Wq + bias) * m, r)), rounding half away from zero (the reference's
    MatMul requant mode), the products summed exactly."""
    k = a.shape[-1]
    ft = np.float32 if k * 128 * 128 < FLOAT32_EXACT else np.float64
    acc = np.matmul(a.astype(ft), b.astype(ft))
    return requant_away(acc, bias, multiplier, shift, relu=relu, out_dtype=qm.code_dtype(out_signed))


@kernel("matmul")
def matmul_kernel(*, out_types, params, **_):
    w = params.get("weight_codes")
    bias = params.get("bias_codes")
    bias = None if bias is None else np.asarray(bias, np.int64)
    opts = dict(bias=bias, multiplier=int(params["multiplier"]), shift=int(params["shift"]),
                relu=bool(params.get("relu")), out_signed=out_types[0].signed)
    if w is not None:
        w = np.asarray(w)
        return lambda x: matmul_int8(x, w, **opts)
    return lambda x, y: matmul_int8(x, y, **opts)


# ---- Softmax ---------------------------------------------------------------------------------------
def softmax_axis(node, rank: int, opset: int) -> int:
    axis = node.attrs.get("axis", 1 if opset < 13 else -1)
    return int(axis) % rank


@rule("Softmax")
def softmax(node, ctx: RuleContext) -> Int8Op:
    """K 6.11: INT8 only along axis 1 of a tensor of rank <= 4 (else F16). The table holds
    exp(-i * s_in) for the 256 code distances; the output is [0, 1] in uint8. A tensor of rank
    < 4 is reshaped to 4-D around it: the step also produces the reference's `<producer>_reshape`
    and `<name>__softmax` tensors and ends in `<name>__softmax_reshape`."""
    shape = ctx.graph.shapes.get(node.inputs[0], ())
    if not shape or len(shape) > 4 or softmax_axis(node, len(shape), ctx.opset) != 1:
        raise NoInt8Rule("Softmax other than along axis 1 of a tensor of rank <= 4 runs in F16 "
                         "(as the reference)", "F16")
    tin, tout = ctx.home(node.inputs[0]), ctx.home(node.outputs[0])
    i = np.arange(256, dtype=np.float64)
    table = np.exp(-i * tin.scale).astype(np.float32)
    params = {"table": table, "out_scale": tout.scale}
    op = Int8Op((tin,), tout, "softmax", params)
    if len(shape) < 4:
        producer = ctx.graph.producer(node.inputs[0])
        base = producer.outputs[0] if producer is not None else node.inputs[0]
        name = node.outputs[0]
        op.outputs = (f"{base}_reshape", f"{name}__softmax", f"{name}__softmax_reshape")
        op.out_types = (tin, tout, tout)
        params["rank"] = len(shape)
    return op


def softmax_int8(x: np.ndarray, *, table: np.ndarray, out_scale: float, out_signed: bool) -> np.ndarray:
    """Along axis 1: d = sat_u8(max - x); p = T[d] / (sum T[d] * s_out), the sum in float32 in
    axis order; codes floor(p + 0.5) (uint8) or rounded half away (int8)."""
    fast = softmax_codes(x, table, out_scale, out_signed)
    if fast is not None:
        return fast
    xi = x.astype(np.int32)
    d = np.clip(xi.max(axis=1, keepdims=True) - xi, 0, 255)
    e = table[d]
    total = np.cumsum(e, axis=1, dtype=np.float32)[:, -1:]
    p = e / (total * np.float32(out_scale))
    q = np.floor(p + np.float32(0.5)) if not out_signed else qm.round_half_away(p)
    return qm.to_codes(q, out_signed)


@kernel("softmax")
def softmax_kernel(*, out_types, params, **_):
    table = np.asarray(params["table"], np.float32)
    opts = dict(table=table, out_scale=float(params["out_scale"]), out_signed=out_types[-1].signed)
    rank = params.get("rank")
    if rank is None:
        return lambda x: softmax_int8(x, **opts)

    def run(x: np.ndarray):
        x4 = x.reshape(x.shape + (1,) * (4 - x.ndim))
        y4 = softmax_int8(x4, **opts)
        return x4, y4, y4.reshape(x.shape)
    return run


@rule("LayerNorm")
def layer_norm(node, ctx: RuleContext) -> Int8Op:
    raise NoInt8Rule("LayerNorm runs in F16 inside an INT8 model (as the reference)", "F16")
