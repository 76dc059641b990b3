"""The op registry: which ONNX ops exist, and the float32 implementation of each.

An op is a plain function registered with `@op("Conv")`; tensors are positional (optional ones
default to None) and attributes keyword-only with the ONNX default as the Python default, so the
signature is the spec. The interpreter calls `fn(*inputs, **node.attrs)`. Versioned semantics
register twice (`@op("Split", since=13)` beside `@op("Split", since=2)`); `lookup` picks the
highest `since` <= the model's opset. Attributes starting with `_` are hints added by the importer
(e.g. `_num_outputs`).

Every family module is imported at the bottom of this file, one line each: this file is the one
place that says which ops exist.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..errors import UnsupportedOpError

OpFn = Callable[..., Any]
OPS: dict[str, list[tuple[int, OpFn]]] = {}
DEFAULT_OPSET = 21


def op(op_type: str, since: int = 1) -> Callable[[OpFn], OpFn]:
    """Register `fn` as the implementation of `op_type` from opset `since` on."""
    def register(fn: OpFn) -> OpFn:
        versions = OPS.setdefault(op_type, [])
        versions.append((since, fn))
        versions.sort(key=lambda v: v[0])
        return fn
    return register


def supported(op_type: str) -> bool:
    return op_type in OPS


def lookup(op_type: str, opset: int = DEFAULT_OPSET) -> OpFn:
    """The implementation of `op_type` valid at `opset`."""
    versions = OPS.get(op_type)
    if not versions:
        raise UnsupportedOpError(f"op type {op_type} is not supported; supported: "
                                 f"{', '.join(sorted(OPS))}")
    chosen = [fn for since, fn in versions if since <= opset]
    return chosen[-1] if chosen else versions[0][1]


def eval_op(op_type: str, *inputs: Any, opset: int = DEFAULT_OPSET, **attrs: Any) -> Any:
    """Run one op on arrays, without a graph: `eval_op("Relu", x)`."""
    return lookup(op_type, opset)(*inputs, **attrs)


def with_slots(fn: OpFn, slots: Sequence[np.ndarray | None | str], attrs: dict[str, Any]) -> OpFn:
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


def as_tuple(result: Any) -> tuple[np.ndarray, ...]:
    return result if isinstance(result, tuple) else (result,)


from . import elementwise, conv, pool, shape, resize, nn  # noqa: E402,F401  (registration side effects)
