"""The reference's search (`--search reference`): the tutorial's run_qtable walk.

    result = reference_search(space, expected_cos=0.9998, min_layer_cos=0.998)

`reference_search` is the reference's `run_qtable` (v1.3, tpu-mlir-reference.md E.1) with the
deliberate fixes of DESIGN.md: the outputs are compared with the F32 model, the printed mixed
cosine is that of the final mixed plan, and the loss table lists every candidate layer. A trial
that makes the outputs worse than all-INT8 is reverted before the float-layer limit is checked,
so a failed search never writes a harmful layer. Trials run on the incremental evaluator: a trial
recomputes from the first changed layer on.
"""
from __future__ import annotations

import time

from ..calibration.tables import LossRow
from ..progress import Progress
from .space import SearchResult, SearchSpace, Trial, loss_table, point


def _last_uses(space: SearchSpace) -> dict[str, int]:
    """Per graph tensor, the position of its last consumer (graph outputs and compare layers
    are kept to the end)."""
    graph = space.graph
    last: dict[str, int] = {}
    for pos, node in enumerate(graph.nodes):
        for t in graph.activation_inputs(node):
            last[t] = pos
        for t in node.outputs:
            last.setdefault(t, pos)
    for t in list(graph.outputs) + list(space.rates or {}):
        last[t] = len(graph.nodes)
    return last


def reference_search(space: SearchSpace, *, expected_cos: float, min_layer_cos: float,
                     max_float: int | None = None, hard_cap: bool = False) -> SearchResult:
    """The v1.3 run_qtable walk (E.1 steps 1-7) with our fixes; see the module docstring.

    Walk the INT8 layers in order; a layer whose accumulated cosine is below `min_layer_cos`
    goes to float with its direct consumers, and the outputs are re-evaluated: stop when they
    beat `expected_cos`, revert when they are worse than all-INT8, stop when more than
    `max_float` (a quarter of the ops) layers are float. With `hard_cap` the walk stops before
    a trial that would pass `max_float` instead.
    """
    start = time.perf_counter()
    ev, graph = space.evaluator, space.graph
    candidates = space.baseline()
    int8 = space.evaluate([])
    max_float = len(graph.nodes) // 4 if max_float is None else max_float
    rows: dict[str, LossRow] = {}
    floats: list[str] = []
    trials: list[Trial] = []
    curve = [point(space, [], int8)]
    reason = "every candidate visited; target not reached"
    walk = candidates
    if int8 > expected_cos:
        reason, walk = "INT8 already meets the target; no layer needs float", []
    last_use = _last_uses(space)
    with Progress(space.progress, "mixed-precision search", len(walk)) as bar:
        for op in walk:
            bar.advance()
            if space.release:
                pos = graph.position(op)
                ev.release([t for t, p in last_use.items() if p < pos])
            if op in floats:                      # its row was taken before it went float
                continue
            cos = float(ev.layer_cos(op).mean())
            visit = _has_int8_consumer(space, op)
            rows[op] = LossRow(op, cos, visit)
            if not visit or cos >= min_layer_cos:
                continue
            added = list(dict.fromkeys([op] + [c.name for t in graph.node(op).outputs
                                               for c in graph.consumers(t) if c.name not in floats]))
            if hard_cap and len(floats) + len(added) > max_float:
                reason = f"stopped: {op} would pass the cap of {max_float} float layers"
                break
            for c in added:
                if c not in rows and c in candidates:
                    rows[c] = LossRow(c, float(ev.layer_cos(c).mean()), False)
            with ev.keeping():                    # a revert finds the current values stored
                out = space.evaluate(floats + added)
            if out > expected_cos:
                floats += added
                trials.append(Trial(op, tuple(added), out, "target reached"))
                curve.append(point(space, floats, out))
                reason = "target reached"
                break
            if out < int8:
                trials.append(Trial(op, tuple(added), out,
                                    f"reverted: outputs {out:.6f} < INT8 {int8:.6f}"))
                space.use(floats)
                continue
            floats += added
            trials.append(Trial(op, tuple(added), out, "kept"))
            curve.append(point(space, floats, out))
            if len(floats) > max_float:
                reason = f"stopped: more than {max_float} float layers (a quarter of the ops)"
                break
        bar.advance(bar.total - bar.done)
    mix = space.evaluate(floats)
    return SearchResult("reference", space.qtable(floats), int8, mix, expected_cos,
                        loss_table(space, rows, candidates), space.float_mode, ev.samples,
                        reason, time.perf_counter() - start, min_layer_cos, trials, curve,
                        space.cost(floats))


def _has_int8_consumer(space: SearchSpace, op: str) -> bool:
    """Whether some consumer of `op` still runs INT8 (the reference skips a layer otherwise)."""
    modes = space.evaluator.plan.op_modes
    graph = space.graph
    return any(modes.get(c.name) == "INT8" for t in graph.node(op).outputs
               for c in graph.consumers(t))
