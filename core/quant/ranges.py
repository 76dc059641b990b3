"""Per-tensor quantization ranges: calibration table -> ranges (D.1), then the threshold
propagation passes of the reference, in its order (D.2).

    ranges = tensor_ranges(graph, table, chip)     # {tensor: Range(min, max)}
    ranges["conv0_leaky_LeakyRelu"].threshold      # 44.452... (= the conv's, not the table row)

The passes work on the reference's Top op types (core/graph/canonical.py): do_relu is an op
with a fused Relu (`_relu`), MinConst / MaxConst are Min / Max with a constant operand.
Each pass is applied until nothing changes (the reference rewrites greedily to a fixpoint);
the order and the rules are those of tpu-mlir-opset.md 4.3.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from ..calibration.tables import CalibrationTable
from ..graph.ir import Graph, Node
from .chips import Chip

RESHAPES = ("Reshape", "Flatten", "Transpose", "Permute")
KEEP_SIGN = ("MaxPool", "AvgPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool", "Abs",
             "SubConst")
BACKWARD_SAME = ("Relu", "MaxPool", "Depth2Space", "Abs")
BACKWARD_KEEP_MIN = ("LeakyRelu", "PRelu")
# Producers a Concat's range is pushed back through (D.2 step 4).
CONCAT_BACK_THROUGH = ("Reshape", "Permute", "Depth2Space")
FORWARD_SAME = ("Relu", "MaxPool", "Reshape", "Flatten", "Unsqueeze", "Squeeze", "Slice", "Tile",
                "Pad", "Transpose", "Permute", "LeakyRelu", "Abs", "PRelu", "MaxUnpool",
                "ReverseSequence")
COMPARES = ("Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual")
MAX_SWEEPS = 100


class Range(NamedTuple):
    """A tensor's calibrated real range; symmetric quantization uses `threshold` and the sign."""

    min: float
    max: float

    @property
    def signed(self) -> bool:
        return self.min < 0

    @property
    def threshold(self) -> float:
        return max(abs(self.min), abs(self.max))


Ranges = dict[str, Range]


# ---- graph helpers ---------------------------------------------------------------------------
def uses(graph: Graph, tensor: str) -> int:
    """Number of operand uses of `tensor` (a graph output counts as one use, as in MLIR)."""
    n = sum(node.inputs.count(tensor) for node in graph.consumers(tensor))
    return n + (tensor in graph.outputs)


def is_upsample(graph: Graph, node: Node) -> bool:
    """The reference's top.Upsample (a nearest Resize by one integer factor, canonicalized)."""
    return node.op_type == "Upsample" and "scale_h" in node.attrs


def _const_operand(graph: Graph, node: Node) -> np.ndarray | None:
    consts = [graph.weights[t] for t in node.inputs if t in graph.weights]
    return consts[0] if len(consts) == 1 and len(node.inputs) == 2 else None


def _data_in(graph: Graph, node: Node) -> str | None:
    acts = graph.activation_inputs(node)
    return acts[0] if acts else None


# ---- D.1 -------------------------------------------------------------------------------------
def table_ranges(graph: Graph, table: CalibrationTable | None, chip: Chip,
                 asymmetric: bool = False) -> Ranges:
    """Ranges read from the table (D.1), for every tensor the table (or a fixed rule) gives."""
    ranges: Ranges = {}
    for t in graph.input_names:
        if table is not None and t in table:
            ranges[t] = _row_range(table[t], asymmetric, chip)
    for node in graph.nodes:
        t = node.outputs[0]
        if node.op_type in ("Sigmoid", "Softmax"):
            ranges[t] = Range(0.0, 1.0)
            continue
        if table is None or t not in table:
            continue
        row = table[t]
        r = _row_range(row, asymmetric, chip)
        if not asymmetric:
            r = _special_symmetric(graph, node, row, r)
        if node.attrs.get("_relu"):
            r = Range(0.0, r.max)
        ranges[t] = r
    return ranges


def _row_range(row, asymmetric: bool, chip: Chip) -> Range:
    if asymmetric:
        return Range(float(row.min), float(row.max))
    th = float(row.threshold)
    if chip.family == "cv18xx":
        return Range(-th, th)
    return Range(-th if row.min < 0 else 0.0, th)


def _special_symmetric(graph: Graph, node: Node, row, r: Range) -> Range:
    th = float(row.threshold)
    if node.op_type == "Abs":
        return Range(-th, th)
    if node.op_type == "Sub":
        return Range(-th if row.min < 0 else -1e-5, th)
    if node.op_type == "Mul":
        ins = node.inputs
        producers = [graph.producer(t) for t in ins]
        if (len(ins) == 2 and ins[0] == ins[1]) or all(
                p is not None and p.op_type in ("Sigmoid", "Relu") for p in producers):
            return Range(0.0, th)
    return r


# ---- D.2 -------------------------------------------------------------------------------------
def propagate(graph: Graph, ranges: Ranges, chip: Chip) -> Ranges:
    """The reference's threshold propagation passes, in its order (D.2); returns a new dict."""
    r = dict(ranges)
    cv18xx = chip.family == "cv18xx"
    _fixpoint(graph, r, _forward_reshape, reverse=False)
    _fixpoint(graph, r, _keep_sign, reverse=False)
    if not cv18xx:
        _fixpoint(graph, r, _mul_sign, reverse=False)
    _fixpoint(graph, r, _sub_signed, reverse=False)
    _fixpoint(graph, r, _concat_backward, reverse=True)
    _fixpoint(graph, r, _backward_cv18xx if cv18xx else _backward, reverse=True)
    if not cv18xx:
        _fixpoint(graph, r, _add_of_muls_backward, reverse=True)
    _fixpoint(graph, r, _unify_compare, reverse=False)
    _fixpoint(graph, r, _forward_bm1684 if chip.name == "bm1684" else _forward, reverse=False)
    _fixpoint(graph, r, _keep_sign, reverse=False)
    return r


def tensor_ranges(graph: Graph, table: CalibrationTable | None, chip: Chip,
                  asymmetric: bool = False) -> Ranges:
    """D.1 then D.2: the range every tensor is quantized with."""
    return propagate(graph, table_ranges(graph, table, chip, asymmetric), chip)


Rule = Callable[[Graph, Node, Ranges], bool]


def _fixpoint(graph: Graph, r: Ranges, rule: Rule, reverse: bool) -> None:
    nodes = graph.nodes[::-1] if reverse else graph.nodes
    for _ in range(MAX_SWEEPS):
        changed = False
        for node in nodes:
            changed |= rule(graph, node, r)
        if not changed:
            return


def _set(r: Ranges, t: str, value: Range) -> bool:
    if r.get(t) == value:
        return False
    r[t] = value
    return True


def _copy_forward(graph: Graph, node: Node, r: Ranges) -> bool:
    src = _data_in(graph, node)
    if src is None or src not in r:
        return False
    return _set(r, node.outputs[0], r[src])


def _forward_reshape(graph: Graph, node: Node, r: Ranges) -> bool:
    return node.op_type in RESHAPES and _copy_forward(graph, node, r)


def _keep_sign(graph: Graph, node: Node, r: Ranges) -> bool:
    src, out = _data_in(graph, node), node.outputs[0]
    if node.op_type not in KEEP_SIGN or src not in r or out not in r:
        return False
    rin, rout = r[src], r[out]
    if rin.signed and not rout.signed:
        return _set(r, out, Range(-0.1 * rout.max, rout.max))
    if not rin.signed and rout.signed:
        return _set(r, out, Range(0.0, rout.max))
    return False


def _mul_sign(graph: Graph, node: Node, r: Ranges) -> bool:
    """KeepMulSign: a Mul whose unsigned output matches the sign of none of its data inputs (all
    signed), or that multiplies by a negative constant, produces a signed tensor."""
    out = node.outputs[0]
    if node.op_type != "Mul" or out not in r or r[out].signed:
        return False
    acts = [t for t in graph.activation_inputs(node) if t in r]
    const = _const_operand(graph, node)
    if (acts and all(r[t].signed for t in acts)) or (const is not None and np.asarray(const).min() < 0):
        return _set(r, out, Range(-r[out].max, r[out].max))
    return False


def _sub_signed(graph: Graph, node: Node, r: Ranges) -> bool:
    out = node.outputs[0]
    if node.op_type != "Sub" or out not in r or r[out].signed:
        return False
    return _set(r, out, Range(-r[out].max, r[out].max))


def _concat_backward(graph: Graph, node: Node, r: Ranges) -> bool:
    """Concat/Min/Max: give every input the output's range when that is safe (D.2 step 4)."""
    if node.op_type not in ("Concat", "Min", "Max"):
        return False
    ins, out = graph.activation_inputs(node), node.outputs[0]
    if not ins or out not in r or any(t not in r for t in ins) or len(ins) != len(node.inputs):
        return False
    first = r[ins[0]]
    if all(r[t] == first for t in ins):
        return _set(r, out, first)
    if node.op_type == "Concat" and any(r[t].signed != first.signed for t in ins):
        return False
    for t in ins:
        others = [c for c in graph.consumers(t) if c is not node]
        if t in graph.outputs or any(c.op_type != "MaxPool" for c in others) or \
                node.inputs.count(t) != 1:
            return False
    changed = False
    changed = False
    for t in ins:
        changed |= _push_back(graph, r, t, r[out])
    return changed


def _push_back(graph: Graph, r: Ranges, tensor: str, value: Range) -> bool:
    """Set `tensor`'s range, and its producer's input's when the producer only moves values
    (Reshape, Permute, Depth2Space) for this one reader."""
    changed = _set(r, tensor, value)
    prod = graph.producer(tensor)
    if prod is not None and prod.op_type in CONCAT_BACK_THROUGH:
        src = _data_in(graph, prod)
        if src is not None and uses(graph, src) == 1:
            changed |= _push_back(graph, r, src, value)
    return changed


def _backward(graph: Graph, node: Node, r: Ranges) -> bool:
    src, out = _data_in(graph, node), node.outputs[0]
    if src is None or out not in r or uses(graph, src) != 1:
        return False
    if node.op_type in BACKWARD_SAME:
        return _set(r, src, r[out])
    if node.op_type in BACKWARD_KEEP_MIN and src in r:
        return _set(r, src, Range(r[src].min, r[out].max))
    return False


def _backward_cv18xx(graph: Graph, node: Node, r: Ranges) -> bool:
    src, out = _data_in(graph, node), node.outputs[0]
    if src is None or out not in r or uses(graph, src) != 1:
        return False
    if node.op_type in BACKWARD_SAME + BACKWARD_KEEP_MIN:
        return _set(r, src, r[out])
    return False


def _add_of_muls_backward(graph: Graph, node: Node, r: Ranges) -> bool:
    out = node.outputs[0]
    if node.op_type != "Add" or out not in r:
        return False
    producers = [graph.producer(t) for t in node.inputs]
    if not producers or any(p is None or p.op_type != "Mul" or uses(graph, p.outputs[0]) != 1
                            for p in producers):
        return False
    changed = False
    for p in producers:
        changed |= _set(r, p.outputs[0], r[out])
    return changed


def _unify_compare(graph: Graph, node: Node, r: Ranges) -> bool:
    ins = graph.activation_inputs(node)
    if node.op_type not in COMPARES or len(ins) != 2 or any(t not in r for t in ins):
        return False
    widest = max((r[t] for t in ins), key=lambda v: v.threshold)
    changed = False
    for t in ins:
        changed |= _set(r, t, widest)
    return changed


def _forward_bm1684(graph: Graph, node: Node, r: Ranges) -> bool:
    """Step 7 on bm1684, where AvgPool also takes its input's range."""
    if node.op_type in ("AvgPool", "AveragePool"):
        return _copy_forward(graph, node, r)
    return _forward(graph, node, r)


def _forward(graph: Graph, node: Node, r: Ranges) -> bool:
    """D.2 step 7: ops whose output takes the input's range (Upsample, LeakyRelu, MaxPool, ...)."""
    t = node.op_type
    if t in FORWARD_SAME or is_upsample(graph, node):
        return _copy_forward(graph, node, r)
    if t in ("Min", "Max") and _const_operand(graph, node) is not None:
        return _copy_forward(graph, node, r)
    if t == "MulConst":
        src = _data_in(graph, node)
        if src in r:
            c = float(node.attrs["const_val"])
            lo, hi = sorted((r[src].min * c, r[src].max * c))
            return _set(r, node.outputs[0], Range(lo, hi))
    return False
