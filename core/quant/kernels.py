"""The executable function of a plan step, built only from the step's own data (kind, types,
ONNX attributes, weight slots, lowering numbers), so that a deployed model file, which stores
exactly that data, rebuilds the same functions.

Kinds: `cast`, `requant` (int -> int MulShift), `float` (the op in F32/F16/BF16), and the INT8
kinds registered by the rule families of core/quant/rules/ (`conv`, `leaky_relu`, `relu`,
`add`, `table`, `same_scale`, ...).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Sequence

import numpy as np

from .. import quantmath as qm
from ..ops import as_tuple, lookup, with_slots
from .kernels_int8 import lut_kernel
from .qtype import ROUND, QType, cast
from .rules import KERNELS

Kernel = Callable[..., Any]


def build_kernel(kind: str, op_type: str, in_types: Sequence[QType], out_types: Sequence[QType],
                 attrs: dict[str, Any], slots: Sequence[np.ndarray | None], params: dict[str, Any],
                 mode: str, opset: int) -> Kernel:
    """The function computing a step's outputs from its activation inputs (see module doc)."""
    builder = BUILDERS.get(kind)
    if builder is None:
        raise ValueError(f"unknown step kind '{kind}'; known: {', '.join(BUILDERS)}")
    return builder(op_type=op_type, in_types=tuple(in_types), out_types=tuple(out_types),
                   attrs=attrs, slots=tuple(slots), params=params, mode=mode, opset=opset)


def _cast(*, in_types, out_types, **_) -> Kernel:
    src, dst = in_types[0], out_types[0]
    fn = partial(cast, src=src, dst=dst)
    return lut_kernel(fn, src.signed) if src.is_int else fn


def _requant(*, in_types, out_types, params, **_) -> Kernel:
    fn = partial(qm.mul_shift, multiplier=int(params["multiplier"]), shift=int(params["shift"]),
                 out_signed=out_types[0].signed, zp_in=in_types[0].zp, zp_out=out_types[0].zp)
    return lut_kernel(fn, in_types[0].signed)


def _float(*, op_type, attrs, slots, mode, opset, params, **_) -> Kernel:
    """The F32 op on values rounded to `mode`, outputs rounded to `mode` (D.10) unless the step
    says the reference leaves them in float32 (`round_output` False: F16 LayerNorm)."""
    call = with_slots(lookup(op_type, opset), slots, attrs)
    if mode == "F32" or params.get("round_output", True) is False:
        return call
    round_fn = ROUND[mode.lower()]

    def run(*xs: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(round_fn(o) if o.dtype == np.float32 else o for o in as_tuple(call(*xs)))
    return run


BUILDERS: dict[str, Callable[..., Kernel]] = {
    "cast": _cast, "requant": _requant, "float": _float, **KERNELS,
}
