"""Mixed-precision search: which layers to take out of INT8 so the outputs reach a target cosine.

    space = SearchSpace(evaluator, make_plan, float_mode="F16")
    result = reference_search(space, expected_cos=0.9998, min_layer_cos=0.998)
    result.qtable, result.loss_table, print(result)

`reference_search` is the reference's `run_qtable` (v1.3, tpu-mlir-reference.md E.1) with the
deliberate fixes of DESIGN.md: the outputs are compared with the F32 model, the printed mixed
cosine is that of the final mixed plan, and the loss table lists every candidate layer. A trial
that makes the outputs worse than all-INT8 is reverted before the float-layer limit is checked,
so a failed search never writes a harmful layer. `core/search_greedy.py` holds the better search,
which starts from this walk.

Every cosine here is a true cosine (the tools convert to the reference's 0.5+0.5*cos).
Trials run on the incremental evaluator: a trial recomputes from the first changed layer on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from .cost import PlanCost, plan_cost
from .errors import ModelError, OptionError, did_you_mean
from .evaluator import Evaluator
from .metrics import reference_cos, true_cos
from .progress import Progress, ProgressFn
from .tables import LossRow, LossTable, QTable


def check_cos(value: float, option: str) -> float:
    """`value` if it is a cosine target in (0, 1], else OptionError naming `option`."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"{option} '{value}' is not a number; give a cosine in (0, 1]") from None
    if not 0.0 < v <= 1.0:
        raise OptionError(f"{option} {value} is outside (0, 1]; give a cosine such as 0.99")
    return v


def to_true_cos(value: float, scale: str) -> float:
    """A cosine given in `scale` (`true`, or `reference` for 0.5+0.5*cos) as a true cosine."""
    if scale not in ("true", "reference"):
        raise OptionError(f"cosine scale '{scale}' is not known; use true or reference")
    return true_cos(value) if scale == "reference" else value


def parse_compare_layers(text: str | None) -> dict[str, float] | None:
    """'a,b' or 'a:0.3,b:0.7' -> {layer: rate} (rates must sum to 1); None for ''/None."""
    if not text:
        return None
    rates: dict[str, float] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, rate = item.partition(":")
        try:
            rates[name.strip()] = float(rate) if rate else 1.0
        except ValueError:
            raise OptionError(f"--global_compare_layers: '{item}' needs 'layer' or 'layer:rate' "
                              f"with a number rate") from None
    weighted = any(":" in item for item in text.split(","))
    if weighted and abs(sum(rates.values()) - 1.0) > 1e-6:
        raise OptionError(f"--global_compare_layers rates sum to {sum(rates.values()):g}; "
                          f"they must sum to 1")
    return rates


@dataclass
class SearchSpace:
    """What a search works on: the evaluator (samples, caches), how to lower a qtable into a
    plan, the float type layers move to, and the tensors whose cosine is the goal."""

    evaluator: Evaluator
    make_plan: Callable[[QTable], Any]
    float_mode: str = "F16"
    rates: dict[str, float] | None = None
    release: bool = False        # forget values the walk no longer needs (big sample sets)
    progress: ProgressFn | None = None

    def __post_init__(self) -> None:
        graph = self.graph
        for t in self.rates or {}:
            if t not in set(graph.tensor_names()):
                raise ModelError(f"--global_compare_layers: no layer '{t}' in model "
                                 f"'{graph.name}'{did_you_mean(t, graph.op_names)}")

    @property
    def graph(self):
        return self.evaluator.graph

    def qtable(self, floats: Iterable[str]) -> QTable:
        """The qtable setting `floats` to the float type, in the given order."""
        return QTable({op: self.float_mode for op in floats})

    def use(self, floats: Iterable[str]) -> None:
        """Make the plan with `floats` in float current (nothing computed yet)."""
        self.evaluator.set_plan(self.make_plan(self.qtable(floats)))

    def evaluate(self, floats: Iterable[str]) -> float:
        """Output cosine (true) of the plan with `floats` in float: recomputes what changed."""
        self.use(floats)
        return self.evaluator.loss(self.rates)

    def baseline(self) -> list[str]:
        """Make the all-INT8 plan current, compare every candidate layer and the outputs with
        F32 in one pass (cached), and return the candidates."""
        self.use([])
        found = self.candidates()
        self.evaluator.layer_cos_many(list(dict.fromkeys(
            found + list(self.rates or self.graph.outputs))))
        return found

    def candidates(self) -> list[str]:
        """Ops the search may move to float: those running INT8 in the current plan, in order,
        restricted to ancestors of the compare layers when those are given."""
        modes = self.evaluator.plan.op_modes
        ops = [op for op in self.graph.op_names if modes.get(op) == "INT8"]
        if self.rates:
            needed = {n.name for n in self.graph.upstream(self.rates)}
            ops = [op for op in ops if op in needed]
        return ops

    def cost(self, floats: Iterable[str]) -> PlanCost:
        return plan_cost(self.graph, {op: self.float_mode for op in floats})


@dataclass
class Trial:
    """One evaluated change: the layer that triggered it, the layers set to float, the output
    cosine reached, and what the search did with it."""

    layer: str
    added: tuple[str, ...]
    cos: float
    decision: str


@dataclass
class CurvePoint:
    """The search curve: output cosine against the number of float layers and their cost."""

    floats: int
    cos: float
    float_macs: int
    bytes: int


@dataclass
class SearchResult:
    """A search's outcome (true cosines); `str()` is the stable text the shell prints."""

    method: str
    qtable: QTable
    int8_cos: float
    mix_cos: float
    expected_cos: float
    loss_table: LossTable
    float_mode: str
    samples: int
    reason: str
    seconds: float = 0.0
    min_layer_cos: float | None = None
    trials: list[Trial] = field(default_factory=list)
    curve: list[CurvePoint] = field(default_factory=list)
    cost: PlanCost | None = None
    ranking: dict[str, float] = field(default_factory=dict)   # greedy: output cos per unit

    @property
    def float_layers(self) -> list[str]:
        return list(self.qtable.modes)

    @property
    def reached(self) -> bool:
        """Whether the final plan meets the target (strictly above, as the reference tests)."""
        return self.mix_cos > self.expected_cos

    def __str__(self) -> str:
        def both(c: float) -> str:
            return f"{c:.6f} (0.5+0.5*cos {reference_cos(c):.6f})"
        lines = [f"{self.method} search on {self.samples} sample(s): {self.reason}",
                 f"target output cosine {both(self.expected_cos)}"]
        if self.min_layer_cos is not None:
            lines.append(f"min layer cosine {both(self.min_layer_cos)}")
        lines += [f"int8 output cosine {both(self.int8_cos)}",
                  f"mix output cosine  {both(self.mix_cos)} with {len(self.qtable)} "
                  f"{self.float_mode} layer(s): {' '.join(self.qtable) or '-'}"]
        if self.cost is not None:
            lines.append(f"estimated cost: {self.cost}")
        if self.trials:
            lines.append(f"{len(self.trials)} trial(s):")
            for t in self.trials:
                lines.append(f"  {t.layer:<40} +{len(t.added)} -> {t.cos:.6f}  {t.decision}")
        lines.append(f"{self.seconds:.1f} s")
        return "\n".join(lines)


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


def loss_table(space: SearchSpace, rows: Mapping[str, LossRow],
               candidates: Sequence[str]) -> LossTable:
    """A row per candidate, worst first: the rows recorded by the walk, the others measured in
    the current (final) plan."""
    ev = space.evaluator
    cos = ev.layer_cos_many([op for op in candidates if op not in rows])
    full = [rows[op] if op in rows else LossRow(op, float(cos[op].mean()), False)
            for op in candidates]
    return LossTable(sorted(full, key=lambda r: r.cos), ev.samples, None, space.float_mode)


def point(space: SearchSpace, floats: Sequence[str], cos: float) -> CurvePoint:
    """A point of the search curve for the float set `floats` reaching output cosine `cos`."""
    c = space.cost(floats)
    return CurvePoint(len(floats), cos, c.float_macs, c.bytes)


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
                trials.append(Trial(op, tuple(added), out, "reverted: worse than INT8"))
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


SEARCH_METHODS = ("reference", "greedy")


def run_search(space: SearchSpace, method: str, *, expected_cos: float, min_layer_cos: float,
               time_budget: float | None = None, max_float: int | None = None) -> SearchResult:
    """Run the search called `method` (`reference` or `greedy`)."""
    if max_float is not None and max_float < 1:
        raise OptionError(f"max_float_layers {max_float} is not valid; give 1 or more")
    if method == "reference":
        return reference_search(space, expected_cos=expected_cos, min_layer_cos=min_layer_cos,
                                max_float=max_float)
    if method == "greedy":
        from .search_greedy import greedy_search
        return greedy_search(space, expected_cos=expected_cos, min_layer_cos=min_layer_cos,
                             time_budget=time_budget, max_float=max_float)
    raise OptionError(f"unknown search '{method}'; choose one of {', '.join(SEARCH_METHODS)}")


def _has_int8_consumer(space: SearchSpace, op: str) -> bool:
    """Whether some consumer of `op` still runs INT8 (the reference skips a layer otherwise)."""
    modes = space.evaluator.plan.op_modes
    graph = space.graph
    return any(modes.get(c.name) == "INT8" for t in graph.node(op).outputs
               for c in graph.consumers(t))
