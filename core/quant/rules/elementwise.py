"""INT8 element-wise ops (reference D.6, D.9, K 6.2-6.7): LeakyRelu, Relu, Add, AddConst,
MulConst, Mul, and the functions lowered to a 256-entry table of output codes (SiLU, Sigmoid,
HardSwish, HardSigmoid, GELU, ...), with their integer kernels; Sub runs in F16 as the reference's
bm1684x lowering puts it. Element-wise int8 functions of one input become lookup tables (exact by
construction: the table is the function applied to every code).
"""
from __future__ import annotations

import math
from functools import partial
from typing import Sequence

import numpy as np

from ... import quantmath as qm
from ...ops import lookup
from ..kernels_int8 import add_codes, lut_kernel, mul_codes, table_lookup
from . import Int8Op, NoInt8Rule, RuleContext, kernel, rule

# Element-wise functions lowered to a 256-entry table of output codes, as the reference lowers
# its activations (create_lookup_table): f evaluated in double on every input code.
TABLE_OPS = ("Sigmoid", "SiLU", "HardSigmoid", "HardSwish", "GELU", "Tanh", "Erf", "Exp",
             "Softplus", "Abs", "Neg", "Clip")


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


# The reference's own double-precision functions (LutFunc); other table ops use the float op.
LUT_FUNCTIONS = {
    "Sigmoid": lambda x, a: 1 / (1 + np.exp(-x)),
    "SiLU": lambda x, a: x / (1 + np.exp(-x)),
    "HardSwish": lambda x, a: x * np.maximum(0.0, np.minimum(1.0, x / 6 + 0.5)),
    "HardSigmoid": lambda x, a: np.maximum(0.0, np.minimum(
        1.0, float(a.get("alpha", 0.2)) * x + float(a.get("beta", 0.5)))),
    "GELU": lambda x, a: (0.5 * x * (1 + _erf(x / math.sqrt(2)))) if a.get("approx_mode", "normal")
    == "normal" else 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
}


@rule("LeakyRelu")
def leaky_relu(node, ctx: RuleContext) -> Int8Op:
    """D.6: negative side times m / 2**r with (m, r) = get_scale_and_shift(alpha, 8)."""
    if ctx.asymmetric:
        raise NoInt8Rule("asymmetric LeakyRelu runs in float (as the reference)")
    t = ctx.home(node.outputs[0])
    m, r = qm.get_scale_and_shift(float(node.attrs.get("alpha", 0.01)), 8)
    return Int8Op((t,), t, "leaky_relu", {"multiplier": m, "shift": r})


@rule("Relu")
def relu(node, ctx: RuleContext) -> Int8Op:
    if node.attrs.get("relu_limit", -1.0) > 0:
        return table(node, ctx)
    t = ctx.home(node.outputs[0])
    return Int8Op((t,), t, "relu")


@rule(*TABLE_OPS)
def table(node, ctx: RuleContext) -> Int8Op:
    """An element-wise function as a lookup table from input codes to output codes (K 6.2):
    f evaluated in double at every input code, divided by the output scale, rounded half away
    from zero and saturated to the output type."""
    g = ctx.graph
    acts = g.activation_inputs(node)
    if len(acts) != 1 or node.inputs[0] != acts[0]:
        raise NoInt8Rule(f"{node.op_type} with {len(acts)} data inputs has no INT8 rule")
    tin, tout = ctx.home(acts[0]), ctx.home(node.outputs[0])
    codes = np.arange(256, dtype=np.uint8)
    real = ((codes.view(np.int8) if tin.signed else codes).astype(np.float64) - tin.zp) * tin.scale
    with np.errstate(all="ignore"):
        if node.op_type in LUT_FUNCTIONS:
            y = LUT_FUNCTIONS[node.op_type](real, node.attrs)
        else:
            args = [real] + [g.weights.get(t) if t else None for t in node.inputs[1:]]
            y = lookup(node.op_type, ctx.opset)(*args, **node.attrs)
        y = np.nan_to_num(np.asarray(y, np.float64) / tout.scale, nan=0.0, posinf=1e9, neginf=-1e9)
    codes_out = qm.to_codes(qm.round_half_away(y) + tout.zp, tout.signed)
    return Int8Op((tin,), tout, "table", {"table": codes_out})


def weight_codes(w: np.ndarray, divide: str) -> tuple[np.ndarray, float, bool]:
    """(codes, scale, signed) of a constant operand, per tensor: int8 when any value is negative
    (scale max|w|/127) else uint8 (/255). `divide` is how the reference forms the codes: "double"
    w * qmax / max|w| in double (Add), "float32" w / float32 scale (Mul)."""
    w = np.asarray(w, np.float32)
    signed = bool(w.min() < 0)
    qmax = qm.INT8_MAX if signed else qm.UINT8_MAX
    peak = float(np.abs(w).max()) if w.size else 0.0
    if divide == "double":
        scale = peak / qmax
        q = w.astype(np.float64) * qmax / peak if peak else np.zeros(w.shape)
    else:
        scale = float(np.float32(peak) / np.float32(qmax))
        q = (w / np.float32(scale)) if scale else np.zeros(w.shape, np.float32)
    return qm.to_codes(qm.round_half_away(q), signed), scale, signed


@rule("Add")
def add(node, ctx: RuleContext) -> Int8Op:
    """K 6.3: sum of RightShiftRound(x_i * m_i, r_i) with positive 8-bit (m_i, r_i) per input; a
    constant input is quantized per tensor and enters as one more term."""
    if ctx.asymmetric:
        raise NoInt8Rule("asymmetric Add runs in F32 (as the reference)", "F32")
    g = ctx.graph
    out = ctx.home(node.outputs[0])
    acts = g.activation_inputs(node)
    consts = [g.weights[t] for t in node.inputs if t in g.weights]
    if not acts or len(consts) > 1:
        raise NoInt8Rule("Add needs a data input and at most one constant")
    types = tuple(ctx.home(t) for t in acts)
    pairs = [qm.get_scale_and_shift(t.scale / out.scale, 8, positive_only=True) for t in types]
    params = {"relu": bool(node.attrs.get("_relu"))}
    if consts:
        codes, scale, _ = weight_codes(consts[0], "double")
        pairs.append(qm.get_scale_and_shift(scale / out.scale, 8, positive_only=True))
        params["constant_codes"], params["constant_scale"] = codes, scale
    params["multipliers"] = np.array([p[0] for p in pairs], np.int64)
    params["shifts"] = np.array([p[1] for p in pairs], np.int64)
    return Int8Op(types, out, "add", params)


@rule("AddConst")
def add_const(node, ctx: RuleContext) -> Int8Op:
    """K 6.4: y = sat(RightShiftRound(x * m + C, r)), (m, r) the positive 8-bit pair of
    s_in / s_out and C = round(c / s_out) * 2**r."""
    if ctx.asymmetric:
        raise NoInt8Rule("asymmetric AddConst runs in F16 (as the reference)", "F16")
    tin, tout = ctx.home(node.inputs[0]), ctx.home(node.outputs[0])
    m, r = qm.get_scale_and_shift(tin.scale / tout.scale, 8, positive_only=True)
    c = int(qm.round_half_away(float(node.attrs["const_val"]) / tout.scale)) * (1 << r if r >= 0 else 1)
    return Int8Op((tin,), tout, "add_const", {"multiplier": m, "shift": r, "offset": c,
                                             "relu": bool(node.attrs.get("_relu"))})


@rule("MulConst")
def mul_const(node, ctx: RuleContext) -> Int8Op:
    """K 6.5: a MulShift, (m, r) the signed 8-bit pair of s_in / s_out * c (with the forwarded
    threshold, (1, 0) for c > 0)."""
    tin, tout = ctx.home(node.inputs[0]), ctx.home(node.outputs[0])
    m, r = qm.get_scale_and_shift(tin.scale / tout.scale * float(node.attrs["const_val"]), 8)
    return Int8Op((tin,), tout, "mul_shift", {"multiplier": m, "shift": r})


@rule("Mul")
def mul(node, ctx: RuleContext) -> Int8Op:
    """K 6.6: y = sat(RightShiftRound(a * b * m, r)), (m, r) the signed 8-bit pair of
    s_a * s_b / s_out; a constant operand is quantized per tensor (float32 scale)."""
    g = ctx.graph
    acts = g.activation_inputs(node)
    if len(node.inputs) != 2 or not acts:
        raise NoInt8Rule("Mul needs two operands, one of them data")
    out = ctx.home(node.outputs[0])
    types = tuple(ctx.home(t) for t in acts)
    scale = float(np.prod([t.scale for t in types]))
    params: dict = {"relu": bool(node.attrs.get("_relu"))}
    consts = [t for t in node.inputs if t in g.weights]
    if consts:
        codes, w_scale, _ = weight_codes(g.weights[consts[0]], "float32")
        scale *= w_scale
        params["constant_codes"], params["constant_scale"] = codes, w_scale
        params["constant_first"] = node.inputs[0] == consts[0]
    params["multiplier"], params["shift"] = qm.get_scale_and_shift(scale / out.scale, 8)
    return Int8Op(types, out, "mul", params)


@rule("Sub")
def sub(node, ctx: RuleContext) -> Int8Op:
    raise NoInt8Rule("Sub runs in F16 on bm1684x, as the reference lowers it", "F16")


# ---- integer kernels -----------------------------------------------------------------------------
def leaky_relu_int8(x: np.ndarray, *, multiplier: int, shift: int, out_signed: bool) -> np.ndarray:
    """INT8 LeakyRelu (D.6): x >= 0 ? x : RightShiftRound(x * m, r); scales assumed equal."""
    xi = x.astype(np.int32)
    neg = qm.right_shift_round(xi * multiplier, shift)
    return qm.to_codes(np.where(xi >= 0, xi, neg), out_signed)


def relu_int8(x: np.ndarray, *, zp: int, out_signed: bool) -> np.ndarray:
    """INT8 Relu at an unchanged scale: max(x, zp)."""
    return qm.to_codes(np.maximum(x.astype(np.int32), zp), out_signed)


def add_int8(xs: Sequence[np.ndarray], *, multipliers: Sequence[int], shifts: Sequence[int],
             relu: bool, out_signed: bool) -> np.ndarray:
    """INT8 Add (K 6.3): sat(sum_i RightShiftRound(x_i * m_i, r_i)), each term shifted alone."""
    if len(xs) == 2:
        out = add_codes(xs[0], xs[1], multipliers, shifts, relu, qm.code_dtype(out_signed))
        if out is not None:
            return out
    total = None
    for x, m, r in zip(xs, multipliers, shifts):
        term = qm.right_shift_round(x.astype(np.int64) * m, r)
        total = term if total is None else total + term
    if relu:
        np.maximum(total, 0, out=total)
    return qm.to_codes(total, out_signed)


def add_const_int8(x: np.ndarray, *, multiplier: int, shift: int, offset: int, relu: bool,
                   out_signed: bool) -> np.ndarray:
    """INT8 AddConst (K 6.4): sat(RightShiftRound(x * m + C, r))."""
    y = qm.right_shift_round(x.astype(np.int64) * multiplier + offset, shift)
    return qm.to_codes(np.maximum(y, 0) if relu else y, out_signed)


def mul_int8(a: np.ndarray, b: np.ndarray, *, multiplier: int, shift: int, relu: bool,
             out_signed: bool) -> np.ndarray:
    """INT8 Mul (K 6.6): sat(RightShiftRound(a * b * m, r)) with broadcasting."""
    out = mul_codes(a, b, multiplier, shift, relu, qm.code_dtype(out_signed))
    if out is not None:
        return out
    y = qm.right_shift_round(a.astype(np.int64) * b.astype(np.int64) * multiplier, shift)
    return qm.to_codes(np.maximum(y, 0) if relu else y, out_signed)


@kernel("leaky_relu")
def leaky_relu_kernel(*, in_types, out_types, params, **_):
    fn = partial(leaky_relu_int8, multiplier=int(params["multiplier"]),
                 shift=int(params["shift"]), out_signed=out_types[0].signed)
    return lut_kernel(fn, in_types[0].signed)


@kernel("relu")
def relu_kernel(*, in_types, out_types, **_):
    t = out_types[0]
    return lut_kernel(partial(relu_int8, zp=t.zp, out_signed=t.signed), in_types[0].signed)


@kernel("add")
def add_kernel(*, out_types, params, **_):
    const = params.get("constant_codes")
    ms = [int(m) for m in params["multipliers"]]
    rs = [int(r) for r in params["shifts"]]
    extra = () if const is None else (np.asarray(const),)

    def run(*xs: np.ndarray) -> np.ndarray:
        return add_int8(xs + extra, multipliers=ms, shifts=rs, relu=bool(params.get("relu")),
                        out_signed=out_types[0].signed)
    return run


@kernel("add_const")
def add_const_kernel(*, in_types, out_types, params, **_):
    fn = partial(add_const_int8, multiplier=int(params["multiplier"]), shift=int(params["shift"]),
                 offset=int(params["offset"]), relu=bool(params.get("relu")),
                 out_signed=out_types[0].signed)
    return lut_kernel(fn, in_types[0].signed)


@kernel("mul_shift")
def mul_shift_kernel(*, in_types, out_types, params, **_):
    fn = partial(qm.mul_shift, multiplier=int(params["multiplier"]), shift=int(params["shift"]),
                 out_signed=out_types[0].signed)
    return lut_kernel(fn, in_types[0].signed)


@kernel("mul")
def mul_kernel(*, out_types, params, **_):
    const = params.get("constant_codes")
    fn = partial(mul_int8, multiplier=int(params["multiplier"]), shift=int(params["shift"]),
                 relu=bool(params.get("relu")), out_signed=out_types[0].signed)
    if const is None:
        return fn
    const = np.asarray(const)
    if params.get("constant_first"):
        return lambda x: fn(const, x)
    return lambda x: fn(x, const)


@kernel("table")
def table_kernel(*, params, **_):
    return partial(table_lookup, np.asarray(params["table"]))
