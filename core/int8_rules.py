"""INT8 lowering rules, one per op type (reference D.5-D.9, bm1684x symmetric).

A rule turns a graph node into an `Int8Op`: the type each activation input must arrive in (the
planner inserts casts / requants where the producer differs), the output type, the kind of
integer kernel (core/kernels.py builds it) and the numbers it uses (shown by `plan.describe`,
stored by deploy). A rule raises
`NoInt8Rule(reason)` when the op cannot run in INT8; the planner then runs it in the chip's
float type and records the reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import quantmath as qm
from .ir import Graph, Node
from .ops import DEFAULT_OPSET, lookup
from .qtype import QType
from .ranges import is_upsample

# Element-wise functions lowered to a 256-entry table of output codes, as the reference lowers
# its activations (create_lookup_table): f evaluated in double on every input code.
TABLE_OPS = ("Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Erf", "Exp", "Softplus", "Abs",
             "Neg", "Clip")
SAME_SCALE = ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Slice", "Tile",
              "MaxPool", "Pad")


class NoInt8Rule(Exception):
    """The op has no INT8 lowering here; the message says why. `mode` is the float mode the
    reference uses instead, when it prescribes one (else the chip's float type)."""

    def __init__(self, reason: str, mode: str | None = None) -> None:
        super().__init__(reason)
        self.mode = mode


class MissingRange(Exception):
    """A tensor the INT8 lowering needs has no calibrated range."""

    def __init__(self, tensor: str) -> None:
        super().__init__(tensor)
        self.tensor = tensor


@dataclass
class Int8Op:
    """The INT8 form of one op: input/output types, kernel kind (core/kernels.py), numbers."""

    in_types: tuple[QType, ...]
    out_type: QType
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class RuleContext:
    """What a rule may look at: the graph, the per-tensor int types, the options, the opset."""

    graph: Graph
    home: Callable[[str], QType]       # tensor -> its int8/uint8 type; raises MissingRange
    asymmetric: bool = False
    opset: int = DEFAULT_OPSET


def lower_int8(node: Node, ctx: RuleContext) -> Int8Op:
    """The INT8 form of `node`; NoInt8Rule when there is none."""
    rule = RULES.get(node.op_type)
    if rule is None and is_upsample(ctx.graph, node):
        rule = _same_scale
    if rule is None:
        raise NoInt8Rule(f"no INT8 rule for {node.op_type}")
    if len([o for o in node.outputs if o]) != 1:
        raise NoInt8Rule(f"{node.op_type} with {len(node.outputs)} outputs has no INT8 rule")
    if ctx.graph.dtypes.get(node.outputs[0], "float32") != "float32":
        raise NoInt8Rule(f"{node.op_type} produces {ctx.graph.dtypes[node.outputs[0]]}, not float")
    return rule(node, ctx)


# ---- rules -------------------------------------------------------------------------------------
def _conv(node: Node, ctx: RuleContext) -> Int8Op:
    """D.5: per-channel weights, int32 bias, per-channel multiplier/shift, fused relu."""
    g = ctx.graph
    if len(node.inputs) < 2 or node.inputs[1] not in g.weights:
        raise NoInt8Rule("Conv filter is not a constant weight")
    if any(t in g.weights for t in node.inputs[:1]) or \
            (len(node.inputs) > 2 and node.inputs[2] and node.inputs[2] not in g.weights):
        raise NoInt8Rule("Conv input or bias is not of the supported kind")
    tin, tout = ctx.home(node.inputs[0]), ctx.home(node.outputs[0])
    w = np.asarray(g.weights[node.inputs[1]], np.float32)
    b_name = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    b = np.asarray(g.weights[b_name], np.float32) if b_name else None
    wq, ws, w_signed = qm.quantize_weights(w, has_bias=b is not None)
    s_in = tin.scale
    if s_in <= 1e-5:  # an all-zero input during calibration (D.5 guard)
        s_in = float(np.abs(b).max()) / 127 if b is not None else float(np.abs(w).max()) / 127
    bias_q = qm.quantize_bias(b, ws, s_in) if b is not None else np.zeros(w.shape[0], np.int64)
    if tin.zp:
        bias_q = bias_q - wq.reshape(wq.shape[0], -1).sum(axis=1).astype(np.int64) * tin.zp
    mult, shift = qm.scales_and_shifts(ws.astype(np.float64) * s_in / tout.scale, 32)
    params = {"weight_codes": wq.astype(np.int8 if w_signed else np.uint8), "weight_scales": ws,
              "bias_codes": bias_q, "multipliers": mult, "shifts": shift,
              "relu": bool(node.attrs.get("_relu"))}
    return Int8Op((tin,), tout, "conv", params)


def _leaky_relu(node: Node, ctx: RuleContext) -> Int8Op:
    """D.6: negative side times m / 2**r with (m, r) = get_scale_and_shift(alpha, 8)."""
    if ctx.asymmetric:
        raise NoInt8Rule("asymmetric LeakyRelu runs in float (as the reference)")
    t = ctx.home(node.outputs[0])
    m, r = qm.get_scale_and_shift(float(node.attrs.get("alpha", 0.01)), 8)
    return Int8Op((t,), t, "leaky_relu", {"multiplier": m, "shift": r})


def _relu(node: Node, ctx: RuleContext) -> Int8Op:
    t = ctx.home(node.outputs[0])
    return Int8Op((t,), t, "relu")


def _same_scale(node: Node, ctx: RuleContext) -> Int8Op:
    """Ops that move codes without arithmetic (D.7): MaxPool, Upsample, reshape-likes."""
    g = ctx.graph
    acts = g.activation_inputs(node)
    if len(acts) != 1:
        raise NoInt8Rule(f"{node.op_type} with {len(acts)} data inputs has no INT8 rule")
    if node.op_type == "Pad" and not _zero_constant_pad(node, g):
        raise NoInt8Rule("Pad other than constant zero padding has no INT8 rule")
    t = ctx.home(node.outputs[0])
    if node.op_type == "Pad" and t.zp:
        raise NoInt8Rule("zero padding with a zero point has no INT8 rule")
    # MaxPool pads with the lowest code (-128 for int8), as the chip does.
    return Int8Op((t,), t, "same_scale")


def _zero_constant_pad(node: Node, graph: Graph) -> bool:
    if node.attrs.get("mode", "constant") != "constant":
        return False
    value = node.attrs.get("value", 0.0)
    if len(node.inputs) > 2 and node.inputs[2]:
        value = graph.weights.get(node.inputs[2], np.array(1.0))
    return float(np.asarray(value).reshape(-1)[0]) == 0.0 if np.size(value) else True


def _table(node: Node, ctx: RuleContext) -> Int8Op:
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
    table = qm.to_codes(qm.round_half_away(y) + tout.zp, tout.signed)
    return Int8Op((tin,), tout, "table", {"table": table})


def _concat(node: Node, ctx: RuleContext) -> Int8Op:
    """D.8: inputs requantized to the output's scale (the planner inserts the MulShifts)."""
    if any(t in ctx.graph.weights for t in node.inputs):
        raise NoInt8Rule("Concat with a weight input runs in float (as the reference)")
    t = ctx.home(node.outputs[0])
    return Int8Op((t,) * len(node.inputs), t, "same_scale")


def _add(node: Node, ctx: RuleContext) -> Int8Op:
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


RULES: dict[str, Callable[[Node, RuleContext], Int8Op]] = {
    "Conv": _conv,
    "LeakyRelu": _leaky_relu,
    "Relu": _relu,
    "Concat": _concat,
    "Add": _add,
    **{t: _same_scale for t in SAME_SCALE},
    **{t: _table for t in TABLE_OPS},
}
