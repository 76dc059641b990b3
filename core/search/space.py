"""What every search works on: the space of precision plans over the incremental evaluator, the
trials and curve points a search records, and its result (qtable, loss table, curve).

    space = SearchSpace(evaluator, make_plan, float_mode="F16")
    cos = space.evaluate(["conv3_Conv"])      # output cosine with that layer in float
    result.qtable, result.loss_table, result.curve

Every cosine here is a true cosine (the tools convert to the reference's 0.5+0.5*cos).
"""
from __future__ import annotations

import re

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..calibration.tables import LossRow, LossTable, QTable
from ..errors import ModelError, OptionError, did_you_mean
from ..metrics import reference_cos, true_cos
from ..progress import ProgressFn
from .cost import PlanCost, plan_cost
from .evaluator import Evaluator


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


# Cosines in a trial's decision and a search's reason are written with six decimals, and only
# they are: the report rewrites them into the session's cosine scale.
SIX_DECIMALS = re.compile(r"(?<![\d.])-?\d+\.\d{6}(?![\d.])")


@dataclass
class Trial:
    """One evaluated change: the layer that triggered it, the layers set to float, the output
    cosine reached, and what the search did with it (`kept` False when reverted). `floats`,
    `float_macs` and `bytes` describe the plan that was evaluated (a point of the curve of
    every trial, kept or not), when the search records them."""

    layer: str
    added: tuple[str, ...]
    cos: float
    decision: str
    kept: bool | None = None
    floats: int | None = None
    float_macs: int | None = None
    bytes: int | None = None


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
    all_float_cos: float | None = None    # the plan with every candidate in float, when measured
    pattern: list[str] = field(default_factory=list)   # the head pattern the search started from
    next_step: str = ""                   # what to try when the target was not reached

    @property
    def float_layers(self) -> list[str]:
        return list(self.qtable.modes)

    @property
    def reached(self) -> bool:
        """Whether the final plan meets the target (strictly above, as the reference tests)."""
        return self.mix_cos > self.expected_cos

    def __str__(self) -> str:
        return self.text()

    def text(self, scale: str = "true") -> str:
        """The report with every cosine in `scale` (true, or reference: 0.5+0.5*cos), named."""
        def shown(c: float) -> float:
            return reference_cos(c) if scale == "reference" else c

        def said(text: str) -> str:     # the cosines in decisions and reasons (six decimals)
            return text if scale != "reference" else SIX_DECIMALS.sub(
                lambda m: f"{reference_cos(float(m.group())):.6f}", text)

        def both(c: float) -> str:
            other = "true cos" if scale == "reference" else "0.5+0.5*cos"
            return f"{shown(c):.6f} ({other} {c if scale == 'reference' else reference_cos(c):.6f})"
        unit = "0.5+0.5*cos (reference scale)" if scale == "reference" else "true cosine"
        lines = [f"{self.method} search on {self.samples} sample(s): {said(self.reason)}",
                 f"cosines to F32 as {unit}; an output cosine is the mean over the outputs "
                 "and samples",
                 f"target output cosine {both(self.expected_cos)}"]
        if self.min_layer_cos is not None:
            lines.append(f"min layer cosine {both(self.min_layer_cos)}")
        lines += [f"int8 output cosine {both(self.int8_cos)}",
                  f"mix output cosine  {both(self.mix_cos)} with {len(self.qtable)} "
                  f"{self.float_mode} layer(s): {' '.join(self.qtable) or '-'}"]
        if self.all_float_cos is not None:
            lines.append(f"all-float output cosine {both(self.all_float_cos)}")
        if self.pattern:
            kept = [op for op in self.pattern if op in self.qtable]
            lines.append(f"head pattern: started from its {len(self.pattern)} layer(s); the "
                         f"target needs {len(kept)} of them")
        if self.cost is not None:
            lines.append(f"estimated cost: {self.cost}")
        if self.trials:
            lines.append(f"{len(self.trials)} trial(s), output cosine after each:")
            for t in self.trials:
                lines.append(f"  {t.layer:<40} +{len(t.added)} -> {shown(t.cos):.6f}  {said(t.decision)}")
        if self.next_step:
            lines.append(said(self.next_step))
        lines.append(f"{self.seconds:.1f} s")
        return "\n".join(lines)


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


def trial(space: SearchSpace, layer: str, added: Sequence[str], floats: Sequence[str], cos: float,
          decision: str, kept: bool) -> Trial:
    """A Trial of the plan with `floats` in float, with its place on the curve."""
    c = space.cost(floats)
    return Trial(layer, tuple(added), cos, decision, kept, len(floats), c.float_macs, c.bytes)


def bisect_prefix(space: SearchSpace, floats: Sequence[str], ranked: Sequence[str],
                  expected_cos: float, record: Callable[[Trial], None],
                  over: Callable[[], bool] = lambda: False, *, name: str = "ranked",
                  full: float | None = None) -> tuple[list[str], float] | None:
    """The shortest prefix of `ranked` that, added to `floats`, beats `expected_cos`, found by
    bisection (log2(len(ranked)) evaluations: the full list is evaluated first, unless its
    cosine is given as `full`, and must reach it). None when even the full list does not, or
    `over()` says the time is up first. `name` says in the trials what the list is."""
    rest = [op for op in ranked if op not in floats]
    base = list(floats)
    if full is None:
        full = space.evaluate(base + rest)
        record(trial(space, f"bisect: all {name}", rest, base + rest, full,
                     f"bisect: every {name} layer gives {full:.6f}", full > expected_cos))
    if full <= expected_cos:
        return None
    lo, hi, best = 0, len(rest), full          # lo: known short of the target, hi: reaches it
    while hi - lo > 1 and not over():
        mid = (lo + hi) // 2
        cos = space.evaluate(base + rest[:mid])
        reached = cos > expected_cos
        record(trial(space, f"bisect: first {mid} {name}", rest[:mid], base + rest[:mid], cos,
                     f"bisect: the first {mid} {name} layer(s) give {cos:.6f} "
                     f"{'>' if reached else '<='} target {expected_cos:.6f}", reached))
        if reached:
            hi, best = mid, cos
        else:
            lo = mid
    return base + rest[:hi], best
