"""Precision edits by hand: which ops a selector names, and the undo / redo history of the qtable.

    select_ops(graph, "conv3_Conv")      # one op
    select_ops(graph, "conv1*")          # a glob over op names
    select_ops(graph, "LeakyRelu")       # every op of a type
    q2 = with_modes(q, ["conv3_Conv"], "F16")
    history.record(q, q2, "set conv3_Conv F16"); history.undo(); history.redo()
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Iterable

from ..calibration.tables import QTable, diff_qtables
from ..errors import ModelError, StateError, closest
from ..graph.ir import Graph

GLOB_CHARS = "*?["


def select_ops(graph: Graph, selector: str) -> list[str]:
    """Ops named by `selector`: an op name, a glob over op names, or an op type (in graph order).
    An unknown name is an error listing the closest op names and types."""
    if graph.has_node(selector):
        return [selector]
    if graph.canonical_op(selector) is not None:    # an ONNX op fused into a canonical one
        return [graph.canonical_op(selector)]
    if any(c in selector for c in GLOB_CHARS):
        found = [op for op in graph.op_names if fnmatch.fnmatchcase(op, selector)]
        if not found:
            raise ModelError(f"no op of model '{graph.name}' matches '{selector}'")
        return found
    types = {n.op_type.lower(): n.op_type for n in graph.nodes}
    if selector.lower() in types:
        return [n.name for n in graph.nodes if n.op_type == types[selector.lower()]]
    hints = closest(selector, graph.op_names) + closest(selector, sorted(set(types.values())), 2)
    hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
    raise ModelError(f"no op or op type '{selector}' in model '{graph.name}'{hint}; give an op "
                     f"name, a glob such as 'conv1*' or an op type such as 'Conv'")


def with_modes(qtable: QTable, ops: Iterable[str], mode: str) -> QTable:
    """A copy of `qtable` with `ops` set to `mode` (INT8 removes the override: it is the default)."""
    modes = dict(qtable.modes)
    for op in ops:
        if mode == "INT8":
            modes.pop(op, None)
        else:
            modes[op] = mode
    return QTable(modes)


@dataclass
class Edit:
    """One change of the qtable: what it was before and after, and what did it."""

    what: str
    before: QTable
    after: QTable

    @property
    def changed(self) -> dict[str, tuple[str, str]]:
        """{op: (mode before, mode after)} for every op whose mode changed."""
        return diff_qtables(self.before, self.after).changed

    def __str__(self) -> str:
        return self.describe()

    def describe(self, undone: bool = False) -> str:
        """`what: N layer(s) changed (op A -> B, ...)`; with `undone` the arrows point back."""
        arrows = [(op, b, a) if undone else (op, a, b) for op, (a, b) in self.changed.items()]
        changes = ", ".join(f"{op} {x} -> {y}" for op, x, y in arrows)
        return f"{self.what}: {len(self.changed)} layer(s) changed" + \
            (f" ({changes})" if changes else "")


@dataclass
class EditHistory:
    """Undo and redo stacks of qtable edits."""

    done: list[Edit] = field(default_factory=list)
    undone: list[Edit] = field(default_factory=list)

    def record(self, before: QTable, after: QTable, what: str) -> Edit:
        """Remember an edit; a new edit clears what could be redone."""
        edit = Edit(what, before, after)
        self.done.append(edit)
        self.undone.clear()
        return edit

    def undo(self) -> Edit:
        """The last edit, moved to the redo stack (its `before` is the qtable to restore)."""
        if not self.done:
            raise StateError("nothing to undo: no precision edit yet")
        edit = self.done.pop()
        self.undone.append(edit)
        return edit

    def redo(self) -> Edit:
        """The last undone edit, moved back (its `after` is the qtable to restore)."""
        if not self.undone:
            raise StateError("nothing to redo")
        edit = self.undone.pop()
        self.done.append(edit)
        return edit
