"""Small edits of a Graph used by the canonicalization passes: renaming an op's output (readers,
shapes and ONNX names follow), one op taking over another's output, dropping a pass-through op,
reading scalar weights. Every op an edit removes is remembered in `meta["canonical_names"]`."""
from __future__ import annotations

import numpy as np

from .ir import Graph, Node

CANONICAL_NAMES = "canonical_names"


def onnx_tensor(graph: Graph, tensor: str) -> str:
    """The ONNX tensor name behind an IR tensor (its name without the `_<OpType>` suffix)."""
    name = graph.meta.get("onnx_names", {}).get(tensor)
    if name is not None:
        return name
    node = graph.producer(tensor)
    suffix = f"_{node.op_type}" if node is not None else ""
    return tensor[: -len(suffix)] if suffix and tensor.endswith(suffix) else tensor


def unique(graph: Graph, name: str) -> str:
    taken = set(graph.tensor_names()) | set(graph.weights)
    while name in taken:
        name += "_"
    return name


def remember(graph: Graph, old: str, new: str) -> None:
    names = graph.meta.setdefault(CANONICAL_NAMES, {})
    for k, v in names.items():
        if v == old:
            names[k] = new
    if old != new:
        names[old] = new


def redirect(graph: Graph, old: str, new: str) -> None:
    for node in graph.nodes:
        if old in node.inputs:
            node.inputs = [new if t == old else t for t in node.inputs]
    graph.outputs = [new if t == old else t for t in graph.outputs]


def rename_output(graph: Graph, node: Node, new: str, onnx_from: str | None = None) -> None:
    """Give `node`'s first output (and the node) the name `new`; readers follow. `onnx_from`:
    the tensor whose ONNX name the renamed output now carries (for the onnxruntime self-check)."""
    old = node.outputs[0]
    if old == new:
        return
    redirect(graph, old, new)
    node.outputs = [new] + node.outputs[1:]
    if node.name == old:
        node.name = new
    for table in (graph.shapes, graph.dtypes):
        if old in table:
            table[new] = table.pop(old)
    onnx_names = graph.meta.setdefault("onnx_names", {})
    source = onnx_names.pop(old, None)
    if onnx_from is not None:
        source = onnx_names.get(onnx_from, source)
    if source is not None:
        onnx_names[new] = source
    remember(graph, old, new)
    graph.changed()


def take_over(graph: Graph, keeper: Node, swallowed: Node) -> None:
    """`keeper` now computes `swallowed`'s output (a fusion): it takes that output's name, and
    `swallowed` leaves the graph."""
    out = swallowed.outputs[0]
    graph.nodes.remove(swallowed)
    for table in (graph.shapes, graph.dtypes):
        table.pop(keeper.outputs[0], None)
    onnx_names = graph.meta.setdefault("onnx_names", {})
    onnx_names.pop(keeper.outputs[0], None)
    old = keeper.outputs[0]
    keeper.outputs = [out] + keeper.outputs[1:]
    keeper.name = out
    remember(graph, old, out)
    remember(graph, swallowed.name, out)
    graph.changed()


def drop(graph: Graph, node: Node, source: str | None = None) -> bool:
    """Remove a node that passes `source` (default: its first input) through unchanged; its
    readers read `source`. Not done when its output is a graph output."""
    out = node.outputs[0]
    if out in graph.outputs:
        return False
    src = source if source is not None else node.inputs[0]
    graph.nodes.remove(node)
    redirect(graph, out, src)
    graph.shapes.pop(out, None)
    graph.dtypes.pop(out, None)
    graph.meta.get("onnx_names", {}).pop(out, None)
    producer = graph.producer(src)
    remember(graph, node.name, producer.name if producer is not None else src)
    graph.changed()
    return True


def scalar(graph: Graph, tensor: str) -> float | None:
    """The value of a one-element float weight, else None."""
    w = graph.weights.get(tensor)
    if w is None or w.size != 1 or not np.issubdtype(w.dtype, np.floating):
        return None
    return float(np.asarray(w).reshape(-1)[0])


def single_use(graph: Graph, tensor: str) -> bool:
    readers = graph.consumers(tensor)
    return tensor not in graph.outputs and len(readers) == 1 and readers[0].inputs.count(tensor) == 1


def weight(graph: Graph, name: str, value: np.ndarray) -> str:
    name = unique(graph, name)
    graph.weights[name] = value
    return name


def sole_reader(graph: Graph, tensor: str, op_type: str | tuple[str, ...]) -> Node | None:
    types = (op_type,) if isinstance(op_type, str) else op_type
    if not single_use(graph, tensor):
        return None
    reader = graph.consumers(tensor)[0]
    return reader if reader.op_type in types else None


def other(node: Node, tensor: str) -> str:
    return node.inputs[1] if node.inputs[0] == tensor else node.inputs[0]
