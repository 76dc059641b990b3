"""What the reference does to an ONNX graph before converting it (tpu-mlir-opset.md 2.1-2.3):
the effect of its ONNX simplifier on names (`simplify`), and its pattern rewriter
(`onnx_patterns`: LayerNorm, PixelNorm, HardSigmoid, HardSwish in both forms, GELU in erf and
tanh forms), whose patterns match only as consecutive runs of nodes in file order."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .ir import Graph, Node
from .rewrite import drop, onnx_tensor, other, remember, rename_output, sole_reader, take_over, weight


# ---- 1. the ONNX simplifier's effect on names -----------------------------------------------------
def simplify(graph: Graph) -> None:
    _output_identities(graph)
    _add_bias_into_conv(graph)
    _matmul_add_into_gemm(graph)
    _merge_duplicates(graph)


def _output_identities(graph: Graph) -> None:
    """An Identity that produces a graph output vanishes; its producer takes the output's name."""
    for node in [n for n in graph.nodes if n.op_type == "Identity" and n.outputs[0] in graph.outputs]:
        src = node.inputs[0]
        producer = graph.producer(src)
        if producer is None or src in graph.outputs or len(graph.consumers(src)) != 1 \
                or producer.outputs[0] != src:
            continue
        out = node.outputs[0]
        name = onnx_tensor(graph, out)
        graph.nodes.remove(node)
        graph.outputs = [src if t == out else t for t in graph.outputs]
        graph.shapes.pop(out, None)
        graph.dtypes.pop(out, None)
        graph.changed()
        rename_output(graph, producer, f"{name}_{producer.op_type}", onnx_from=out)
        graph.meta.get("onnx_names", {}).pop(out, None)


def _channel_bias(graph: Graph, tensor: str, channels: int, rank: int) -> np.ndarray | None:
    """A weight that adds one value per channel (axis 1) of a rank-`rank` tensor, as [C]."""
    w = graph.weights.get(tensor)
    if w is None or w.size != channels or not np.issubdtype(w.dtype, np.floating):
        return None
    shape = list(w.shape)
    if len(shape) > rank or (len(shape) == rank and shape[0] != 1) or \
            (len(shape) >= rank - 1 and shape[-(rank - 1)] != channels):
        return None
    return np.asarray(w, np.float32).reshape(-1)


def _add_bias_into_conv(graph: Graph) -> None:
    for conv in [n for n in graph.nodes if n.op_type == "Conv" and len(n.inputs) == 2]:
        out = conv.outputs[0]
        add = sole_reader(graph, out, "Add")
        if add is None or add.outputs[0] in graph.outputs or conv.inputs[1] not in graph.weights:
            continue
        channels = graph.weights[conv.inputs[1]].shape[0]
        bias = _channel_bias(graph, other(add, out), channels, len(graph.shapes.get(out, ())))
        if bias is None:
            continue
        conv.inputs = conv.inputs + [weight(graph, f"{conv.name}_bias", bias)]
        onnx_names = graph.meta.setdefault("onnx_names", {})
        if add.outputs[0] in onnx_names:
            onnx_names[out] = onnx_names[add.outputs[0]]
        drop(graph, add, out)


def _matmul_add_into_gemm(graph: Graph) -> None:
    """MatMul of a 2-D input by a 2-D weight, then Add of a bias: a Gemm named after the Add."""
    for mm in [n for n in graph.nodes if n.op_type == "MatMul"]:
        a, b = mm.inputs
        out = mm.outputs[0]
        add = sole_reader(graph, out, "Add")
        w = graph.weights.get(b)
        if add is None or w is None or w.ndim != 2 or len(graph.shapes.get(a, ())) != 2:
            continue
        bias = graph.weights.get(other(add, out))
        if bias is None or bias.size != w.shape[1] or bias.ndim > 2:
            continue
        mm.op_type = "Gemm"
        mm.inputs = [a, b, weight(graph, f"{add.name}_bias", np.asarray(bias).reshape(-1))]
        take_over(graph, mm, add)
        rename_output(graph, mm, f"{onnx_tensor(graph, add.outputs[0])}_Gemm")


def _merge_duplicates(graph: Graph) -> None:
    """Nodes without attributes computing the same op of the same inputs: the first one stays."""
    seen: dict[tuple, Node] = {}
    for node in list(graph.nodes):
        if any(not k.startswith("_") for k in node.attrs) or len(node.outputs) != 1:
            continue
        key = (node.op_type, tuple(node.inputs))
        first = seen.setdefault(key, node)
        if first is not node:
            drop(graph, node, first.outputs[0])


# ---- 2. the ONNX pattern rewriter -----------------------------------------------------------------
@dataclass
class P:
    """One node of a pattern: its op type and inputs. An input is `"x"` (the pattern's outer
    input, bound at its first use), an int (the output of that earlier pattern node), a float
    (a weight that must hold exactly this one value), a `Near` (a weight within float32 rounding
    of a value) or `"w:<name>"` (any weight, kept)."""

    op_type: str
    inputs: tuple
    check: Callable[[Node], bool] | None = None


@dataclass(frozen=True)
class Near:
    """A one-value weight equal to `value` up to float32 rounding (exporters write sqrt(2) as
    1.4142135 or 1.41421356...)."""

    value: float


@dataclass
class Pattern:
    name: str
    nodes: list[P]
    make: Callable[[Graph, dict[str, Any], list[Node]], tuple[str, list[str], dict]]


def _last_dims(node: Node) -> bool:
    axes = node.attrs.get("axes")
    return axes is not None and len(axes) > 0 and list(axes)[-1] == -1 and \
        bool(np.all(np.diff(list(axes)) == 1))


def _channel_dim(node: Node) -> bool:
    return list(node.attrs.get("axes") or []) == [1]


def _hardsigmoid_sixth(node: Node) -> bool:
    # Exactly ONNX's float32 1/6: what torch exports for hardswish's hardsigmoid.
    return node.attrs.get("alpha", 0.2) == 0.1666666716337204 and node.attrs.get("beta", 0.5) == 0.5


def _norm(axis_check: Callable[[Node], bool], affine: bool) -> list[P]:
    nodes = [P("ReduceMean", ("x",), axis_check), P("Sub", ("x", 0)), P("Pow", (1, 2.0)),
             P("ReduceMean", (2,), axis_check), P("Add", (3, "w:eps")), P("Sqrt", (4,)),
             P("Div", (1, 5))]
    if affine:
        nodes += [P("Mul", (6, "w:scale")), P("Add", (7, "w:bias"))]
    return nodes


def _make_norm(op_type: str, affine: bool):
    def make(graph: Graph, b: dict[str, Any], matched: list[Node]):
        attrs = {"epsilon": float(np.asarray(graph.weights[b["eps"]]).reshape(-1)[0])}
        if op_type == "LayerNorm":
            attrs["axis"] = int(list(matched[0].attrs["axes"])[0])
        inputs = [b["x"]] + ([b["scale"], b["bias"]] if affine else [])
        return op_type, inputs, attrs
    return make


def _unary(op_type: str, **attrs: Any):
    return lambda graph, b, matched: (op_type, [b["x"]], dict(attrs))


ONNX_PATTERNS = [
    Pattern("layernorm_aff", _norm(_last_dims, True), _make_norm("LayerNorm", True)),
    Pattern("layernorm", _norm(_last_dims, False), _make_norm("LayerNorm", False)),
    Pattern("pixelnorm_aff", _norm(_channel_dim, True), _make_norm("PixelNorm", True)),
    Pattern("pixelnorm", _norm(_channel_dim, False), _make_norm("PixelNorm", False)),
    Pattern("hardsigmoid", [P("Add", ("x", 3.0)), P("Clip", (0, 0.0, 6.0)), P("Div", (1, 6.0))],
            _unary("HardSigmoid", alpha=1 / 6, beta=0.5)),
    Pattern("hardswish", [P("HardSigmoid", ("x",), _hardsigmoid_sixth), P("Mul", ("x", 0))],
            _unary("HardSwish")),
    Pattern("hardswish2", [P("Add", ("x", 3.0)), P("Clip", (0, 0.0, 6.0)), P("Mul", ("x", 1)),
                           P("Div", (2, 6.0))], _unary("HardSwish")),
    # The reference fuses any constants here; only GELU's own are GELU, so other constants stay
    # unfused (and exact) rather than silently change the numbers.
    Pattern("gelu", [P("Div", ("x", Near(math.sqrt(2)))), P("Erf", (0,)), P("Add", (1, 1.0)),
                     P("Mul", ("x", 2)), P("Mul", (3, 0.5))], _unary("GELU", approx_mode="normal")),
    Pattern("gelu_tanh", [P("Mul", ("x", 0.5)), P("Pow", ("x", 3.0)),
                          P("Mul", (1, Near(0.044715))), P("Add", ("x", 2)),
                          P("Mul", (3, Near(math.sqrt(2 / math.pi)))), P("Tanh", (4,)),
                          P("Add", (5, 1.0)), P("Mul", (0, 6))], _unary("GELU", approx_mode="tanh")),
]
# The ONNX op type the reference's rewriter creates, which its converter puts in the op name.
ONNX_TYPE_OF = {"LayerNorm": "LayerNormalization", "PixelNorm": "PixelNormalization"}


def _node_inputs(graph: Graph, node: Node, want: int) -> list[str | float]:
    """The node's inputs, Clip's min/max attributes (opset < 11) appended as values."""
    ins: list[str | float] = list(node.inputs)
    if node.op_type == "Clip" and len(ins) < want:
        ins += [float(node.attrs[k]) for k in ("min", "max")[len(ins) - 1: want - 1] if k in node.attrs]
    return ins


def _match_input(graph: Graph, got: str | float, spec, binding: dict, outputs: list[str]) -> bool:
    if spec == "x":
        if "x" not in binding:
            if isinstance(got, float) or got in graph.weights:
                return False
            binding["x"] = got
        return binding["x"] == got
    if isinstance(spec, int):
        return got == outputs[spec]
    if isinstance(spec, float):
        value = got if isinstance(got, float) else graph.weights.get(got)
        if value is None:
            return False
        value = np.atleast_1d(np.asarray(value))
        return value.shape == (1,) and float(value[0]) == spec
    if isinstance(spec, Near):
        value = got if isinstance(got, float) else graph.weights.get(got)
        value = None if value is None else np.atleast_1d(np.asarray(value, np.float64))
        return value is not None and value.shape == (1,) and \
            abs(float(value[0]) - spec.value) <= 1e-6 * spec.value
    if isinstance(spec, str) and spec.startswith("w:"):
        if isinstance(got, float) or got not in graph.weights:
            return False
        binding[spec[2:]] = got
        return True
    return False


def _match_node(graph: Graph, node: Node, p: P, binding: dict, outputs: list[str]) -> bool:
    if node.op_type != p.op_type:
        return False
    ins = _node_inputs(graph, node, len(p.inputs))
    orders = [ins]
    if node.op_type in ("Mul", "Add") and len(ins) == 2:
        orders.append(ins[::-1])
    for order in orders:
        trial = dict(binding)
        if len(order) == len(p.inputs) and all(
                _match_input(graph, g, s, trial, outputs) for g, s in zip(order, p.inputs)):
            if p.check is not None and not p.check(node):
                return False
            binding.clear()
            binding.update(trial)
            return True
    return False


def _find(graph: Graph, pattern: Pattern) -> list[tuple[list[Node], dict]]:
    """Matches of `pattern` as consecutive runs of nodes in graph order (the reference's rule)."""
    found = []
    run: list[Node] = []
    binding: dict = {}
    for node in graph.nodes:
        p = pattern.nodes[len(run)]
        if _match_node(graph, node, p, binding, [n.outputs[0] for n in run]):
            run.append(node)
        else:
            run, binding = [], {}
            if _match_node(graph, node, pattern.nodes[0], binding, []):
                run.append(node)
        if len(run) == len(pattern.nodes):
            found.append((run, binding))
            run, binding = [], {}
    return found


def onnx_patterns(graph: Graph) -> None:
    """The reference's ONNX rewrites, pattern by pattern, repeated while any applies."""
    changed = True
    while changed:
        changed = False
        for pattern in ONNX_PATTERNS:
            for matched, binding in _find(graph, pattern):
                if any(n not in graph.nodes for n in matched):
                    continue
                inner = [n.outputs[0] for n in matched[:-1]]
                if any(t in graph.outputs or any(c not in matched for c in graph.consumers(t))
                       for t in inner):
                    continue     # an inner tensor is read outside the pattern: leave it
                op_type, inputs, attrs = pattern.make(graph, binding, matched)
                last = matched[-1]
                name = f"{onnx_tensor(graph, last.outputs[0])}_{ONNX_TYPE_OF.get(op_type, op_type)}"
                new = Node(last.outputs[0], op_type, inputs, [last.outputs[0]], attrs)
                graph.nodes[graph.nodes.index(last)] = new
                for n in matched[:-1]:
                    graph.nodes.remove(n)
                    remember(graph, n.name, name)
                    graph.shapes.pop(n.outputs[0], None)
                    graph.meta.get("onnx_names", {}).pop(n.outputs[0], None)
                graph.changed()
                rename_output(graph, new, name, onnx_from=last.outputs[0])
                changed = True
