"""INT8 element-wise ops (reference D.6, D.9): LeakyRelu, Relu, Add, and the functions lowered
to a 256-entry table of output codes (Sigmoid, Tanh, HardSwish, ...), with their integer kernels.
Element-wise int8 functions of one input become lookup tables (exact by construction: the table
is the function applied to every code).
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import numpy as np

from ... import quantmath as qm
from ...ops import lookup
from . import Int8Op, NoInt8Rule, RuleContext, kernel, rule

# Element-wise functions lowered to a 256-entry table of output codes, as the reference lowers
# its activations (create_lookup_table): f evaluated in double on every input code.
TABLE_OPS = ("Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Erf", "Exp", "Softplus", "Abs",
             "Neg", "Clip")


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
    t = ctx.home(node.outputs[0])
    return Int8Op((t,), t, "relu")


@rule(*TABLE_OPS)
def table(node, ctx: RuleContext) -> Int8Op:
    """An element-wise function as a lookup table from input codes to output codes."""
    g = ctx.graph
    acts = g.activation_inputs(node)
    if len(acts) != 1 or node.inputs[0] != acts[0]:
        raise NoInt8Rule(f"{node.op_type} with {len(acts)} data inputs has no INT8 rule")
    tin, tout = ctx.home(acts[0]), ctx.home(node.outputs[0])
    codes = np.arange(256, dtype=np.uint8)
    real = ((codes.view(np.int8) if tin.signed else codes).astype(np.float64) - tin.zp) * tin.scale
    args = [real] + [g.weights.get(t) if t else None for t in node.inputs[1:]]
    with np.errstate(all="ignore"):
        y = np.asarray(lookup(node.op_type, ctx.opset)(*args, **node.attrs), np.float64)
        y = np.nan_to_num(y / tout.scale, nan=0.0, posinf=1e9, neginf=-1e9)
    codes_out = qm.to_codes(qm.round_half_away(y) + tout.zp, tout.signed)
    return Int8Op((tin,), tout, "table", {"table": codes_out})


@rule("Add")
def add(node, ctx: RuleContext) -> Int8Op:
    """D.9: sum of RightShiftRound(x_i * m_i, r_i); constants quantized at the output scale."""
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
    const_codes = None
    if consts:
        const_codes = qm.quantize(consts[0], out.scale, True).astype(np.int64)
    params = {"multipliers": np.array([p[0] for p in pairs], np.int64),
              "shifts": np.array([p[1] for p in pairs], np.int64),
              "relu": bool(node.attrs.get("_relu"))}
    if const_codes is not None:
        params["constant_codes"] = const_codes
    return Int8Op(types, out, "add", params)


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
             const_codes: np.ndarray | None, relu: bool, out_signed: bool) -> np.ndarray:
    """INT8 Add (D.9): sat(sum_i RightShiftRound(x_i * m_i, r_i)) (+ constant codes, relu)."""
    total = None
    for x, m, r in zip(xs, multipliers, shifts):
        term = qm.right_shift_round(x.astype(np.int64) * m, r)
        total = term if total is None else total + term
    if const_codes is not None:
        total = total + const_codes.astype(np.int64)
    if relu:
        np.maximum(total, 0, out=total)
    return qm.to_codes(total, out_signed)


@kernel("leaky_relu")
def leaky_relu_kernel(*, in_types, out_types, params, **_):
    fn = partial(leaky_relu_int8, multiplier=int(params["multiplier"]),
                 shift=int(params["shift"]), out_signed=out_types[0].signed)
    return qm.lut_kernel(fn, in_types[0].signed)


@kernel("relu")
def relu_kernel(*, in_types, out_types, **_):
    t = out_types[0]
    return qm.lut_kernel(partial(relu_int8, zp=t.zp, out_signed=t.signed), in_types[0].signed)


@kernel("add")
def add_kernel(*, out_types, params, **_):
    const = params.get("constant_codes")
    ms = [int(m) for m in params["multipliers"]]
    rs = [int(r) for r in params["shifts"]]

    def run(*xs: np.ndarray) -> np.ndarray:
        return add_int8(xs, multipliers=ms, shifts=rs, const_codes=const,
                        relu=bool(params.get("relu")), out_signed=out_types[0].signed)
    return run


@kernel("table")
def table_kernel(*, params, **_):
    codes = np.asarray(params["table"])
    return lambda x: np.take(codes, x.view(np.uint8))
