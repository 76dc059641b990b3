"""INT8 ops that move codes without arithmetic (reference D.7, D.8): reshape-likes, Slice, Tile,
Pad with zeros, Concat (its inputs requantized to the output's scale by the planner's MulShifts).
The float implementation runs on the codes unchanged.
"""
from __future__ import annotations

import numpy as np

from ...graph.ir import Graph
from ...ops import lookup, with_slots
from . import Int8Op, NoInt8Rule, RuleContext, kernel, rule

SAME_SCALE = ("Reshape", "Flatten", "Transpose", "Permute", "Squeeze", "Unsqueeze", "Slice", "Tile",
              "Pad", "Depth2Space")


@rule(*SAME_SCALE)
def same_scale(node, ctx: RuleContext) -> Int8Op:
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


def _zero_constant_pad(node, graph: Graph) -> bool:
    if node.attrs.get("mode", "constant") != "constant":
        return False
    value = node.attrs.get("value", 0.0)
    if len(node.inputs) > 2 and node.inputs[2]:
        value = graph.weights.get(node.inputs[2], np.array(1.0))
    return float(np.asarray(value).reshape(-1)[0]) == 0.0 if np.size(value) else True


@rule("Concat")
def concat(node, ctx: RuleContext) -> Int8Op:
    """D.8: inputs requantized to the output's scale (the planner inserts the MulShifts)."""
    if any(t in ctx.graph.weights for t in node.inputs):
        raise NoInt8Rule("Concat with a weight input runs in float (as the reference)")
    t = ctx.home(node.outputs[0])
    return Int8Op((t,) * len(node.inputs), t, "same_scale")


@kernel("same_scale")
def same_scale_kernel(*, op_type, attrs, slots, opset, **_):
    # The F32 implementation works on codes unchanged (MaxPool pads with the lowest code).
    return with_slots(lookup(op_type, opset), slots, attrs)
