"""INT8 lowering rules and their integer kernels (reference D.5-D.9, bm1684x symmetric), one module
per op family, named as the float kernels' families in core/ops/ (conv, elementwise, pool, shape,
resize): an op's float code and its INT8 rule are found under the same family name.

A rule turns a graph node into an `Int8Op`: the type each activation input must arrive in (the
planner inserts casts / requants where the producer differs), the output type, the kind of
integer kernel and the numbers it uses (shown by `plan.describe`, stored by deploy). A rule raises
`NoInt8Rule(reason)` when the op cannot run in INT8; the planner then runs it in the chip's
float type and records the reason. A kernel builder turns a kind plus a step's own data
(types, ONNX attributes, weight slots, numbers) into the function that computes the step, so a
deployed model file, which stores exactly that data, rebuilds the same functions.

    @rule("LeakyRelu")
    def leaky_relu(node, ctx) -> Int8Op: ...
    @kernel("leaky_relu")
    def leaky_relu_kernel(*, in_types, out_types, params, **_): ...
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ...graph.ir import Graph, Node
from ...ops import DEFAULT_OPSET
from ..qtype import QType


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
    """The INT8 form of one op: input/output types, kernel kind, numbers. `outputs` (with
    `out_types`) names the step's outputs when the reference computes the op as several tensors
    (Softmax on a 3-D tensor: reshape, softmax, reshape back); the last one is the op's value."""

    in_types: tuple[QType, ...]
    out_type: QType
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    out_types: tuple[QType, ...] = ()


@dataclass
class RuleContext:
    """What a rule may look at: the graph, the per-tensor int types, the options, the opset."""

    graph: Graph
    home: Callable[[str], QType]       # tensor -> its int8/uint8 type; raises MissingRange
    asymmetric: bool = False
    opset: int = DEFAULT_OPSET


RuleFn = Callable[[Node, RuleContext], Int8Op]
RULES: dict[str, RuleFn] = {}
KERNELS: dict[str, Callable[..., Any]] = {}


def rule(*op_types: str) -> Callable[[RuleFn], RuleFn]:
    """Register `fn` as the INT8 rule of each of `op_types`."""
    def register(fn: RuleFn) -> RuleFn:
        for t in op_types:
            RULES[t] = fn
        return fn
    return register


def kernel(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `fn` as the builder of the integer kernels of kind `kind` (core/quant/kernels.py)."""
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        KERNELS[kind] = fn
        return fn
    return register


def lower_int8(node: Node, ctx: RuleContext) -> Int8Op:
    """The INT8 form of `node`; NoInt8Rule when there is none."""
    fn = RULES.get(node.op_type)
    if fn is None:
        raise NoInt8Rule(f"no INT8 rule for {node.op_type}")
    if len([o for o in node.outputs if o]) != 1:
        raise NoInt8Rule(f"{node.op_type} with {len(node.outputs)} outputs has no INT8 rule")
    if ctx.graph.dtypes.get(node.outputs[0], "float32") != "float32":
        raise NoInt8Rule(f"{node.op_type} produces {ctx.graph.dtypes[node.outputs[0]]}, not float")
    return fn(node, ctx)


from . import conv, elementwise, nn, pool, shape, resize  # noqa: E402,F401  (registration side effects)
