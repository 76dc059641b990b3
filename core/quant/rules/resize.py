"""INT8 resize (reference D.7): a nearest Resize/Upsample by integer factors (the reference's
top.Upsample) repeats codes; other resizes have no INT8 rule."""
from __future__ import annotations

from ..ranges import is_upsample
from . import Int8Op, NoInt8Rule, RuleContext, rule
from .shape import same_scale


@rule("Resize", "Upsample")
def upsample(node, ctx: RuleContext) -> Int8Op:
    if not is_upsample(ctx.graph, node):
        raise NoInt8Rule(f"no INT8 rule for {node.op_type}")
    return same_scale(node, ctx)
