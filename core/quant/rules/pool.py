"""INT8 pooling (reference D.7, K 6.9, 6.10): MaxPool moves codes (padding with the lowest code,
as the chip); AvgPool sums the window's codes and requantizes with one 8-bit multiplier."""
from __future__ import annotations

import numpy as np

from ... import quantmath as qm
from ...ops import lookup
from . import Int8Op, NoInt8Rule, RuleContext, kernel, rule
from .shape import same_scale

rule("MaxPool")(same_scale)


@rule("AvgPool")
def avg_pool(node, ctx: RuleContext) -> Int8Op:
    """K 6.9: (m, r) the signed 8-bit pair of s_in / (s_out * kh * kw); y = sat(RSR(S * m, r))
    with S the window's integer sum. Not 2-D: F32."""
    kernel_shape = list(node.attrs.get("kernel_shape", ()))
    if len(kernel_shape) != 2 or ctx.asymmetric:
        raise NoInt8Rule("AvgPool other than 2-D symmetric runs in F32 (as the reference)", "F32")
    tin, tout = ctx.home(node.inputs[0]), ctx.home(node.outputs[0])
    area = kernel_shape[0] * kernel_shape[1]
    m, r = qm.get_scale_and_shift(tin.scale / (tout.scale * area), 8)
    return Int8Op((tin,), tout, "avg_pool", {"multiplier": m, "shift": r, "area": area})


@kernel("avg_pool")
def avg_pool_kernel(*, out_types, attrs, params, opset, **_):
    pool = lookup("AvgPool", opset)
    area, m, r = int(params["area"]), int(params["multiplier"]), int(params["shift"])
    signed = out_types[0].signed

    def run(x: np.ndarray) -> np.ndarray:
        # The interpreter's window sum: the average of the codes times the window size, rounded
        # (exact for windows inside the input).
        avg = pool(x.astype(np.float32), **attrs)
        total = qm.round_half_away(avg.astype(np.float64) * area).astype(np.int64)
        return qm.to_codes(qm.right_shift_round(total * m, r), signed)
    return run
