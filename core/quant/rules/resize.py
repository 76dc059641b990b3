"""INT8 resize (reference D.7, K 6.15): the reference's Upsample (a nearest Resize by one integer
factor) repeats codes at the input's scale; any other resize is its Interp, which bm1684x runs in
F16 inside an INT8 model."""
from __future__ import annotations

from ..ranges import is_upsample
from . import Int8Op, NoInt8Rule, RuleContext, rule
from .shape import same_scale


@rule("Resize", "Upsample")
def upsample(node, ctx: RuleContext) -> Int8Op:
    if not is_upsample(ctx.graph, node):
        raise NoInt8Rule(f"{node.op_type} other than a nearest upsample by one integer factor "
                         "(the reference's Interp) runs in F16", "F16")
    return same_scale(node, ctx)
