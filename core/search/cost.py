"""Estimated cost of a precision plan: multiply-accumulates and bytes moved, per op and precision.

    costs = op_costs(graph)                          # {op: OpCost(macs, elements moved, weights)}
    plan_cost(graph, {"conv3_Conv": "F16"})          # PlanCost(MACs per mode, bytes moved)

Figures are per sample at the model's declared shapes. They rank plans (the search curve: output
cosine against what the float layers cost); they are not a chip timing model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..graph.ir import Graph, Node

# Bytes per element in each precision; INT8 weights and activations are one byte each.
ELEMENT_BYTES = {"INT8": 1, "F16": 2, "BF16": 2, "F32": 4}


@dataclass(frozen=True)
class OpCost:
    """Work of one op per sample: MACs, activation elements read and written, weight elements."""

    macs: int
    in_elems: int
    out_elems: int
    weight_elems: int

    def bytes(self, mode: str) -> int:
        """Bytes moved when the op runs in `mode` (activations and weights at that width)."""
        return (self.in_elems + self.out_elems + self.weight_elems) * ELEMENT_BYTES[mode]


@dataclass
class PlanCost:
    """A plan's estimated work: MACs per precision and bytes moved, per sample."""

    macs: dict[str, int] = field(default_factory=dict)
    bytes: int = 0

    @property
    def total_macs(self) -> int:
        return sum(self.macs.values())

    @property
    def float_macs(self) -> int:
        """MACs not run in INT8."""
        return sum(v for m, v in self.macs.items() if m != "INT8")

    def __str__(self) -> str:
        parts = ", ".join(f"{m} {v / 1e6:.1f} M" for m, v in sorted(self.macs.items()) if v)
        return f"MACs {parts or '0'}; {self.bytes / 1e6:.2f} MB moved per sample"


def _elems(graph: Graph, tensor: str) -> int:
    shape = graph.shapes.get(tensor)
    if shape is None:
        return 0
    return int(np.prod(shape[1:])) if len(shape) > 1 else int(np.prod(shape))


def _macs(graph: Graph, node: Node) -> int:
    """Multiply-accumulates of the ops that do them (conv, matmul); 0 for the others."""
    out = _elems(graph, node.outputs[0])
    w = graph.weights.get(node.inputs[1]) if len(node.inputs) > 1 else None
    if node.op_type == "Conv" and w is not None:
        return out * int(np.prod(w.shape[1:]))
    if node.op_type == "ConvTranspose" and w is not None:
        return _elems(graph, node.inputs[0]) * int(np.prod(w.shape[1:]))
    if node.op_type in ("MatMul", "Gemm"):
        a = graph.shapes.get(node.inputs[0])
        if a:
            k = a[0] if node.op_type == "Gemm" and node.attrs.get("transA") else a[-1]
            return out * int(k)
    return 0


def op_costs(graph: Graph) -> dict[str, OpCost]:
    """Per-op cost of every op of `graph` (cached on the graph)."""
    cache = graph.cache()
    if "op_costs" not in cache:
        cache["op_costs"] = {
            n.name: OpCost(_macs(graph, n),
                           sum(_elems(graph, t) for t in graph.activation_inputs(n)),
                           sum(_elems(graph, t) for t in n.outputs if t),
                           sum(int(graph.weights[t].size) for t in n.inputs if t in graph.weights))
            for n in graph.nodes}
    return cache["op_costs"]


def plan_cost(graph: Graph, modes: Mapping[str, str], default: str = "INT8") -> PlanCost:
    """Cost of running every op in `modes.get(op, default)`."""
    cost = PlanCost()
    for name, c in op_costs(graph).items():
        mode = modes.get(name, default)
        cost.macs[mode] = cost.macs.get(mode, 0) + c.macs
        cost.bytes += c.bytes(mode)
    return cost
