"""The executable function of a plan step, built only from the step's own data (kind, types,
ONNX attributes, weight slots, lowering numbers), so that a deployed model file, which stores
exactly that data, rebuilds the same functions.

Kinds: `cast`, `requant` (int -> int MulShift), `float` (the op in F32/F16/BF16), and the INT8
kinds of core/int8_rules.py: `conv`, `leaky_relu`, `relu`, `add`, `table` (a 256-entry table
of output codes: Sigmoid, Tanh, ...), `same_scale` (ops that move codes: MaxPool, Upsample,
Concat, reshape-likes). Elementwise int8 functions become 256-entry
lookup tables (exact by construction: the table is the function applied to every code).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Sequence

import numpy as np

from . import kernels_int8 as k
from .ops import as_tuple, lookup
from .qtype import ROUND, QType, cast

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


def with_slots(fn: Callable[..., Any], slots: Sequence[np.ndarray | None],
               attrs: dict[str, Any]) -> Kernel:
    """`fn` called ONNX-style: the weights in `slots`, activations in the None slots in order,
    None for absent optional inputs ("" slots)."""
    acts = [i for i, w in enumerate(slots) if w is None]
    base = [None if isinstance(w, str) else w for w in slots]

    def call(*xs: np.ndarray) -> Any:
        ins = list(base)
        for i, x in zip(acts, xs):
            ins[i] = x
        return fn(*ins, **attrs)
    return call


def _cast(*, in_types, out_types, **_) -> Kernel:
    src, dst = in_types[0], out_types[0]
    fn = partial(cast, src=src, dst=dst)
    return k.lut_kernel(fn, src.signed) if src.is_int else fn


def _requant(*, in_types, out_types, params, **_) -> Kernel:
    fn = partial(k.mul_shift, multiplier=int(params["multiplier"]), shift=int(params["shift"]),
                 out_signed=out_types[0].signed, zp_in=in_types[0].zp, zp_out=out_types[0].zp)
    return k.lut_kernel(fn, in_types[0].signed)


def _float(*, op_type, attrs, slots, mode, opset, **_) -> Kernel:
    """The F32 op on values rounded to `mode`, outputs rounded to `mode` (D.10)."""
    call = with_slots(lookup(op_type, opset), slots, attrs)
    if mode == "F32":
        return call
    round_fn = ROUND[mode.lower()]

    def run(*xs: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(round_fn(o) if o.dtype == np.float32 else o for o in as_tuple(call(*xs)))
    return run


def _conv(*, in_types, out_types, attrs, params, **_) -> Kernel:
    wq = np.asarray(params["weight_codes"])
    w_abs_sum = int(np.abs(wq.reshape(wq.shape[0], -1).astype(np.int64)).sum(axis=1).max())
    tin, tout = in_types[0], out_types[0]
    return partial(k.conv_int8, wq=wq.astype(np.float32), w_abs_sum=w_abs_sum,
                   bias_q=np.asarray(params["bias_codes"], np.int64),
                   multiplier=np.asarray(params["multipliers"], np.int64),
                   shift=np.asarray(params["shifts"], np.int64), attrs=attrs, zp_in=tin.zp,
                   zp_out=tout.zp, out_signed=tout.signed, relu=bool(params.get("relu")))


def _leaky_relu(*, in_types, out_types, params, **_) -> Kernel:
    fn = partial(k.leaky_relu_int8, multiplier=int(params["multiplier"]),
                 shift=int(params["shift"]), out_signed=out_types[0].signed)
    return k.lut_kernel(fn, in_types[0].signed)


def _relu(*, in_types, out_types, **_) -> Kernel:
    t = out_types[0]
    return k.lut_kernel(partial(k.relu_int8, zp=t.zp, out_signed=t.signed), in_types[0].signed)


def _add(*, out_types, params, **_) -> Kernel:
    const = params.get("constant_codes")
    ms = [int(m) for m in params["multipliers"]]
    rs = [int(r) for r in params["shifts"]]

    def run(*xs: np.ndarray) -> np.ndarray:
        return k.add_int8(xs, multipliers=ms, shifts=rs, const_codes=const,
                          relu=bool(params.get("relu")), out_signed=out_types[0].signed)
    return run


def _table(*, params, **_) -> Kernel:
    table = np.asarray(params["table"])
    return lambda x: np.take(table, x.view(np.uint8))


def _same_scale(*, op_type, attrs, slots, opset, **_) -> Kernel:
    # The F32 implementation works on codes unchanged (MaxPool pads with the lowest code).
    return with_slots(lookup(op_type, opset), slots, attrs)


BUILDERS: dict[str, Callable[..., Kernel]] = {
    "cast": _cast, "requant": _requant, "float": _float, "conv": _conv,
    "leaky_relu": _leaky_relu, "relu": _relu, "add": _add, "same_scale": _same_scale,
    "table": _table,
}
