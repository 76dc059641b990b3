"""The better search (`--search greedy`): rank layers by what floating them gains, add them
greedily with re-evaluation, then drop the ones the target does not need.

    result = greedy_search(space, expected_cos=0.9998, time_budget=60)
    result.curve        # output cosine against the number of float layers and their cost

A unit is one layer, or one layer with its consumers (then the activation between them is
float too: a float layer whose output is cast back to INT8 for the next layer loses what a
huge-range activation lost, so some layers only pay off in pairs).
1. Ranking: the output cosine with only that unit in float, for every unit; each trial
   recomputes from the unit on, reusing the all-INT8 values before it.
2. Lazy greedy on the output cosine gained per layer added: the unit with the best estimate
   is measured again first if its gain is stale (measured before the last addition); it is added
   when its fresh gain per layer is the best and positive. Units next to an addition are measured
   again at once, since a float layer often makes its neighbours worth floating (only a run of
   float layers keeps the activations between them out of INT8), and gaining per layer makes
   extending such a run cheap.
3. Pruning: once the target is reached, each float layer (the latest added first) is dropped if
   the target still holds without it.
A time budget stops the search at the next trial and keeps the best qtable found so far.
"""
from __future__ import annotations

import math
import time
from .progress import Progress
from .search import SearchResult, SearchSpace, Trial, loss_table, point
from .tables import LossRow

Unit = tuple[str, ...]


def greedy_search(space: SearchSpace, *, expected_cos: float, time_budget: float | None = None,
                  max_float: int | None = None) -> SearchResult:
    """See the module docstring; cosines are true cosines. `max_float` caps the number of float
    layers (the best plan within the cap when the target needs more)."""
    start = time.perf_counter()
    budget = _Budget(start, time_budget)
    ev = space.evaluator
    int8 = space.evaluate([])
    candidates = space.candidates()
    rows = {op: LossRow(op, float(c.mean())) for op, c in ev.layer_cos_many(candidates).items()}
    result = SearchResult("greedy", space.qtable([]), int8, int8, expected_cos,
                          loss_table(space, rows, candidates), space.float_mode, ev.samples,
                          "INT8 already meets the target; no layer needs float",
                          curve=[point(space, [], int8)])
    if int8 > expected_cos:
        return _finish(space, result, [], start)
    measured: dict[Unit, float] = {}
    all_units = units(space, candidates)
    with ev.keeping(), Progress(space.progress, "ranking layers", len(all_units)) as bar:
        for unit in all_units:
            if budget.over():
                break
            measured[unit] = space.evaluate(unit)
            bar.advance()
    result.ranking = {"+".join(u): c for u, c in sorted(measured.items(), key=lambda kv: -kv[1])}
    cap = max_float or len(candidates)
    with Progress(space.progress, "adding float layers", cap) as bar:
        floats, cur = _add_greedily(space, result, measured, int8, expected_cos, budget, cap,
                                    bar)
        bar.advance(bar.total - bar.done)               # the cap is only an upper bound
    if cur > expected_cos:
        floats = _prune(space, result, floats, expected_cos, budget)
    if budget.hit:
        result.reason = f"time budget of {time_budget:g} s used up; best plan found so far"
    return _finish(space, result, floats, start)


class _Budget:
    """The time budget; `over()` says whether it is used up (and remembers that it was)."""

    def __init__(self, start: float, seconds: float | None) -> None:
        self.deadline = start + seconds if seconds else math.inf
        self.hit = False

    def over(self) -> bool:
        self.hit = self.hit or time.perf_counter() >= self.deadline
        return self.hit


def units(space: SearchSpace, candidates: list[str]) -> list[Unit]:
    """Each candidate alone, and with its consumers that are candidates too (when it has any)."""
    graph = space.graph
    allowed = set(candidates)
    found: list[Unit] = []
    for op in candidates:
        found.append((op,))
        after = [c.name for t in graph.node(op).outputs for c in graph.consumers(t)
                 if c.name in allowed]
        if after:
            found.append(tuple(dict.fromkeys([op] + after)))
    return found


def _add_greedily(space: SearchSpace, result: SearchResult, ranked: dict[Unit, float],
                  int8: float, expected_cos: float, budget: _Budget, max_float: int,
                  bar: Progress) -> tuple[list[str], float]:
    """Step 2: lazy greedy on the gain per added layer, with neighbour refresh; returns the
    float layers and their output cosine."""
    floats: list[str] = []
    cur = int8
    gain = {u: c - int8 for u, c in ranked.items()}     # output cosine gained, when measured
    cos = dict(ranked)                                   # output cosine with the unit, when fresh
    fresh = set(gain)

    def added(unit: Unit) -> list[str]:
        return [op for op in unit if op not in floats]

    def drop_unaffordable() -> None:
        for u in [u for u in gain if not added(u) or len(floats) + len(added(u)) > max_float]:
            del gain[u]                                  # nothing to add, or over the cap

    def measure(unit: Unit) -> None:
        space.use(floats)
        with space.evaluator.keeping():                 # the next trial reuses its prefix
            cos[unit] = space.evaluate(floats + added(unit))
        gain[unit] = cos[unit] - cur
        fresh.add(unit)

    drop_unaffordable()
    while gain and cur <= expected_cos and not budget.over():
        unit = max(gain, key=lambda u: (gain[u] / len(added(u)), u in fresh, -len(u)))
        if unit not in fresh:
            measure(unit)
            continue
        if gain[unit] <= 0:
            result.reason = "no remaining layer improves the outputs; target not reached"
            return floats, cur
        new = tuple(added(unit))
        floats += list(new)
        bar.advance(len(new))
        cur = cos[unit]
        result.trials.append(Trial("+".join(unit), new, cur, "kept"))
        result.curve.append(point(space, floats, cur))
        drop_unaffordable()
        near = set(new) | {n for op in new for n in _neighbours(space.graph, op)}
        fresh = set()
        for u in [u for u in gain if near & set(u)]:
            if cur > expected_cos or budget.over():
                break
            measure(u)
    if cur > expected_cos:
        result.reason = "target reached"
    elif not gain:
        result.reason = f"no layer left to try within {max_float} float layers; target not reached"
    return floats, cur


def _prune(space: SearchSpace, result: SearchResult, floats: list[str], expected_cos: float,
           budget: _Budget) -> list[str]:
    """Step 3: drop float layers the target does not need, the latest added first."""
    for op in reversed(list(floats)):
        if budget.over():
            break
        rest = [f for f in floats if f != op]
        cos = space.evaluate(rest)
        if cos > expected_cos:
            floats = rest
            result.trials.append(Trial(op, (), cos, "dropped: target holds without it"))
            result.curve.append(point(space, floats, cos))
    return floats


def _neighbours(graph, op: str) -> list[str]:
    """Ops feeding `op` and ops fed by it."""
    node = graph.node(op)
    before = [graph.producer(t).name for t in graph.activation_inputs(node) if graph.producer(t)]
    after = [c.name for t in node.outputs for c in graph.consumers(t)]
    return list(dict.fromkeys(before + after))


def _finish(space: SearchSpace, result: SearchResult, floats: list[str],
            start: float) -> SearchResult:
    """Re-evaluate the final plan: its cosine is the one reported."""
    result.qtable = space.qtable(floats)
    result.mix_cos = space.evaluate(floats)
    result.cost = space.cost(floats)
    result.seconds = time.perf_counter() - start
    return result
