"""The graph IR: named tensors flowing between ONNX-typed nodes, weights as numpy arrays.

Conventions (DESIGN.md):
- A node's name is `<first ONNX output name>_<OpType>`; its first output tensor carries the same
  name, so op names, tensor names and the keys of calibration tables and npz dumps coincide.
- Graph inputs keep their ONNX name. Weights are named by their initializer name.
- `shapes` holds the static shape of every activation tensor at the model's own batch size.
- Nodes are kept in topological order; passes that reorder call `Graph.sort()`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from ..errors import ModelError, did_you_mean


@dataclass
class Node:
    """One operation: ONNX op type, ONNX attribute names and meanings, tensor names in and out."""

    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Node({self.name!r}, {self.op_type}, in={self.inputs}, out={self.outputs})"


@dataclass
class TensorInfo:
    """A graph input: name, static shape and numpy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass
class Graph:
    """A model: inputs, nodes in topological order, weights, outputs and static shapes.

    `preprocess` is the image preprocessing config of the (first) input, or None.
    `meta` holds JSON-serialisable extras kept with the model (source file, opset, YOLO anchors
    and masks read from a darknet cfg).
    """

    name: str
    inputs: list[TensorInfo]
    outputs: list[str]
    nodes: list[Node]
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)
    preprocess: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index: dict[str, Any] | None = None

    # ---- lookups (cached; call `changed()` after editing nodes) -------------------------------
    def changed(self) -> None:
        """Drop cached lookups after nodes, inputs or outputs were edited in place."""
        self._index = None

    def _idx(self) -> dict[str, Any]:
        if self._index is None:
            producer: dict[str, Node] = {}
            consumers: dict[str, list[Node]] = {}
            by_name: dict[str, Node] = {}
            position: dict[str, int] = {}
            for i, node in enumerate(self.nodes):
                by_name[node.name] = node
                position[node.name] = i
                for t in node.outputs:
                    producer[t] = node
                for t in node.inputs:
                    if t:
                        consumers.setdefault(t, []).append(node)
            self._index = {"producer": producer, "consumers": consumers, "by_name": by_name,
                           "position": position, "cache": {}}
        return self._index

    def cache(self) -> dict[str, Any]:
        """A scratch dict for derived data (schedules, plans); cleared by `changed()`."""
        return self._idx()["cache"]

    def producer(self, tensor: str) -> Node | None:
        """The node that produces `tensor`, or None for graph inputs and weights."""
        return self._idx()["producer"].get(tensor)

    def consumers(self, tensor: str) -> list[Node]:
        """The nodes that read `tensor`, in topological order."""
        return self._idx()["consumers"].get(tensor, [])

    def node(self, name: str) -> Node:
        """The node called `name`; ModelError with close names if there is none (naming the
        canonical op an ONNX op became, when the import fused it)."""
        found = self._idx()["by_name"].get(name)
        if found is None:
            became = self.canonical_op(name)
            if became is not None:
                raise ModelError(f"op '{name}' of the ONNX file is part of '{became}' "
                                 f"({self.node(became).op_type}) in model '{self.name}'")
            raise ModelError(f"no op named '{name}' in model '{self.name}'"
                             f"{did_you_mean(name, self.op_names)}")
        return found

    def canonical_op(self, name: str) -> str | None:
        """The op that an ONNX op fused away at import now belongs to (the reference's canonical
        graph: a Sigmoid inside a SiLU, a Div inside a HardSwish), or None."""
        became = self.meta.get("canonical_names", {}).get(name)
        return became if became is not None and self.has_node(became) else None

    def has_node(self, name: str) -> bool:
        return name in self._idx()["by_name"]

    def position(self, name: str) -> int:
        """Index of node `name` in topological order."""
        return self._idx()["position"][name]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def op_names(self) -> list[str]:
        """Names of all ops in topological order (graph inputs excluded)."""
        return [n.name for n in self.nodes]

    def is_weight(self, tensor: str) -> bool:
        return tensor in self.weights

    def activation_inputs(self, node: Node) -> list[str]:
        """The node's inputs that are activations (not weights, not empty)."""
        return [t for t in node.inputs if t and t not in self.weights]

    def tensor_names(self) -> list[str]:
        """Every activation tensor: graph inputs, then node outputs in topological order."""
        names = self.input_names[:]
        for node in self.nodes:
            names.extend(node.outputs)
        return names

    def downstream(self, tensors: Iterable[str]) -> set[str]:
        """Names of all nodes that depend (transitively) on any of `tensors`."""
        frontier = list(tensors)
        seen_t = set(frontier)
        result: set[str] = set()
        while frontier:
            t = frontier.pop()
            for c in self.consumers(t):
                if c.name not in result:
                    result.add(c.name)
                    for o in c.outputs:
                        if o not in seen_t:
                            seen_t.add(o)
                            frontier.append(o)
        return result

    def upstream(self, tensors: Iterable[str]) -> list[Node]:
        """The nodes needed to compute `tensors`, in topological order."""
        needed: set[str] = set()
        stack = [t for t in tensors]
        while stack:
            t = stack.pop()
            node = self.producer(t)
            if node is None or node.name in needed:
                continue
            needed.add(node.name)
            stack.extend(i for i in node.inputs if i)
        return [n for n in self.nodes if n.name in needed]

    # ---- structure ------------------------------------------------------------------------------
    def sort(self) -> None:
        """Put nodes in a topological order (stable: keeps the current order where allowed)."""
        available = set(self.input_names) | set(self.weights) | {""}
        remaining = list(self.nodes)
        ordered: list[Node] = []
        while remaining:
            progressed = False
            rest = []
            for node in remaining:
                if all(i in available for i in node.inputs):
                    ordered.append(node)
                    available.update(node.outputs)
                    progressed = True
                else:
                    rest.append(node)
            if not progressed:
                missing = sorted({i for n in rest for i in n.inputs if i not in available})
                raise ModelError(f"graph '{self.name}' has a cycle or undefined tensors: "
                                 f"{', '.join(missing[:10])} (needed by {rest[0].name})")
            remaining = rest
        self.nodes = ordered
        self.changed()

    def check(self) -> None:
        """Validate invariants: unique names, defined inputs, known outputs, topological order."""
        seen = set(self.input_names) | set(self.weights) | {""}
        names: set[str] = set()
        for node in self.nodes:
            if node.name in names:
                raise ModelError(f"duplicate op name '{node.name}' in model '{self.name}'")
            names.add(node.name)
            for t in node.inputs:
                if t not in seen:
                    raise ModelError(f"op '{node.name}' reads '{t}', which is not defined before it")
            for t in filter(None, node.outputs):         # "" marks an optional output left out
                if t in seen:
                    raise ModelError(f"tensor '{t}' is produced twice (second time by '{node.name}')")
                seen.add(t)
        for t in self.outputs:
            if t not in seen or t in self.weights:
                raise ModelError(f"graph output '{t}' is not produced by any op")

    def copy(self) -> "Graph":
        """A structural copy: new node and dict objects, weight arrays shared (treat as immutable)."""
        g = Graph(self.name, [copy.copy(t) for t in self.inputs], list(self.outputs),
                  [Node(n.name, n.op_type, list(n.inputs), list(n.outputs), dict(n.attrs))
                   for n in self.nodes],
                  dict(self.weights), dict(self.shapes), dict(self.dtypes),
                  copy.deepcopy(self.preprocess), copy.deepcopy(self.meta))
        return g

    def summary(self) -> dict[str, int]:
        """Count of ops per type, e.g. {'Conv': 13, 'LeakyRelu': 11, ...}."""
        counts: dict[str, int] = {}
        for node in self.nodes:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
        return counts
