"""The better search (`--search greedy`): the reference walk as a seed, then layers dropped where
the outputs do not need them and added greedily where they gain the most.

    result = greedy_search(space, expected_cos=0.9998, min_layer_cos=0.998, time_budget=60)
    result.curve        # output cosine against the number of float layers and their cost

Why this shape: on a CNN, float pays off in runs. A float layer whose output is cast back to
INT8 for an INT8 consumer keeps the activation quantization it was meant to remove, so a
single layer gains little; a run of float layers removes the quantization of every activation
inside it. The reference walk grows such a run from the first layer that loses accuracy, which
a ranking of single layers cannot see. So:
1. Seed: the reference walk (core/search/reference.py) with the same targets.
2. Extension, while the target is not reached: lazy greedy on the output cosine gained per
   layer added, over runs of up to three layers next to the float ones (a run grows by its
   ends, or closes a gap that pays off only when all of it is float); when none helps, units
   (one layer, or a layer with its consumers) are each measured once with the float layers so
   far, and the best seeds a new run.
3. Swaps, at the cap short of the target: the float layer missed least goes back to INT8 for
   the best layer next to the others, while that raises the output cosine.
4. Pruning: each float layer, the latest added first, is dropped if the outputs keep the target
   (or, short of the target, lose nothing) without it; short of the target this is done before
   the extension too, so layers that do nothing leave room under the cap.
It never ends worse than the walk it started from: same target with no more float layers, or a
higher cosine within the same number. A time budget stops it at the next trial with the best
plan found so far; `max_float` caps the float layers.
"""
from __future__ import annotations

import math
import time

from ..progress import Progress
from .reference import reference_search
from .space import SearchResult, SearchSpace, Trial, bisect_prefix, point

Unit = tuple[str, ...]


class _Budget:
    """The time budget; `over()` says whether it is used up (and remembers that it was)."""

    def __init__(self, start: float, seconds: float | None) -> None:
        self.deadline = start + seconds if seconds else math.inf
        self.hit = False

    def over(self) -> bool:
        self.hit = self.hit or time.perf_counter() >= self.deadline
        return self.hit


class _Search:
    """The float set being built, its output cosine, and the trials and curve that record it."""

    def __init__(self, space: SearchSpace, result: SearchResult, candidates: list[str],
                 budget: _Budget, cap: int) -> None:
        self.space, self.result, self.budget, self.cap = space, result, budget, cap
        self.candidates = candidates
        self.floats = list(result.qtable)
        self.cos = result.mix_cos
        self.ranking: dict[Unit, float] | None = None

    def reached(self) -> bool:
        return self.cos > self.result.expected_cos

    def added(self, unit: Unit) -> list[str]:
        return [op for op in unit if op not in self.floats]

    def measure(self, unit: Unit) -> float:
        """Output cosine with `unit` added; the current plan's values stay stored meanwhile."""
        self.space.use(self.floats)
        with self.space.evaluator.keeping():
            return self.space.evaluate(self.floats + self.added(unit))

    def record(self, what: str, floats: list[str], cos: float, decision: str,
               changed: tuple[str, ...]) -> None:
        self.floats, self.cos = floats, cos
        self.result.trials.append(Trial(what, changed, cos, decision))
        self.result.curve.append(point(self.space, floats, cos))

    # ---- 2. extension -----------------------------------------------------------------------
    def extend(self, bar: Progress) -> None:
        measured: dict[Unit, float] = {}      # output cosine with the unit, maybe stale
        gain: dict[Unit, float] = {}          # ... gained per layer added, when measured
        fresh: set[Unit] = set()
        while not self.reached() and not self.budget.over():
            if len(self.floats) >= self.cap:
                self.result.reason = (f"no layer left to try within {self.cap} float layers; "
                                      f"target not reached")
                return
            for unit in self.frontier(depth=3):
                gain.setdefault(unit, math.inf)     # not measured yet: measured first
            gain = {u: g for u, g in gain.items()
                    if self.added(u) and len(self.floats) + len(self.added(u)) <= self.cap}
            unit = max(gain, key=lambda u: (gain[u], u in fresh, -len(u))) if gain else None
            if unit is not None and unit not in fresh:
                measured[unit] = self.measure(unit)
                gain[unit] = (measured[unit] - self.cos) / len(self.added(unit))
                fresh.add(unit)
                continue
            if unit is None or gain[unit] <= 0:
                if self.seed(measured, gain, fresh):
                    continue
                self.result.reason = "no remaining layer improves the outputs" if gain else \
                    f"no layer left to try within {self.cap} float layers"
                self.result.reason += "; target not reached"
                return
            new = tuple(self.added(unit))
            self.record("+".join(unit), self.floats + list(new), measured.pop(unit), "added", new)
            bar.advance(len(new))
            del gain[unit]
            fresh = set()

    def frontier(self, floats: list[str] | None = None, depth: int = 1) -> list[Unit]:
        """Runs of up to `depth` layers next to the float ones (or to `floats`), reaching away
        from them: a gap of several INT8 layers often pays off only when all are float."""
        graph, allowed = self.space.graph, set(self.candidates)
        floats = self.floats if floats is None else floats

        def before(op: str) -> list[str]:
            node = graph.node(op)
            return [graph.producer(t).name for t in graph.activation_inputs(node)
                    if graph.producer(t)]

        def after(op: str) -> list[str]:
            return [c.name for t in graph.node(op).outputs for c in graph.consumers(t)]

        units: list[Unit] = []
        for op in floats:
            for step, start in [(before, p) for p in before(op)] + [(after, c) for c in after(op)]:
                run = [start]
                while run[-1] in allowed and run[-1] not in floats:
                    unit = tuple(run) if step is after else tuple(reversed(run))
                    units.append(unit)
                    nxt = step(run[-1])
                    if len(run) >= depth or len(nxt) != 1:
                        break
                    run.append(nxt[0])
        return list(dict.fromkeys(units))

    def seed(self, measured: dict[Unit, float], gain: dict[Unit, float], fresh: set[Unit]) -> bool:
        """Measure every seed unit once with the current float layers and make them
        candidates; False when that was done before."""
        if self.ranking is not None:
            return False
        self.ranking = {}
        units = seed_units(self.space, self.candidates)
        with Progress(self.space.progress, "ranking layers", len(units)) as bar:
            for unit in units:
                if self.budget.over():
                    break
                self.ranking[unit] = self.measure(unit)
                bar.advance()
        for unit, cos in self.ranking.items():
            if self.added(unit):
                measured[unit] = cos
                gain[unit] = (cos - self.cos) / len(self.added(unit))
                fresh.add(unit)
        self.result.ranking = {"+".join(u): c for u, c in
                               sorted(self.ranking.items(), key=lambda kv: -kv[1])}
        return True

    # ---- 3. swaps at the cap ------------------------------------------------------------------
    def swap(self) -> None:
        """At the cap short of the target: put the layer missed least back in INT8 and float
        the best layer next to the others instead, while that raises the output cosine."""
        while not self.reached() and len(self.floats) >= self.cap and not self.budget.over():
            without = {op: self.without(op) for op in self.floats}
            weakest = max(without, key=without.get)
            kept = [f for f in self.floats if f != weakest]
            best, best_cos = None, self.cos
            for (op,) in self.frontier(kept):
                if op == weakest or self.budget.over():
                    continue
                self.space.use(kept)
                with self.space.evaluator.keeping():
                    cos = self.space.evaluate(kept + [op])
                if cos > best_cos:
                    best, best_cos = op, cos
            if best is None:
                break
            self.record(f"-{weakest}+{best}", kept + [best], best_cos, "swapped", (best,))
        self.space.use(self.floats)

    # ---- 4. pruning -------------------------------------------------------------------------
    def without(self, op: str) -> float:
        """Output cosine with `op` back in INT8."""
        self.space.use(self.floats)
        with self.space.evaluator.keeping():
            return self.space.evaluate([f for f in self.floats if f != op])

    def prune(self) -> None:
        """Drop each float layer (latest added first) the target, or the cosine, keeps without."""
        target = self.reached()
        for op in reversed(list(self.floats)):
            if self.budget.over():
                break
            cos = self.without(op)
            if (cos > self.result.expected_cos) if target else (cos >= self.cos):
                self.record(op, [f for f in self.floats if f != op], cos, "dropped: not needed",
                            ())
        self.space.use(self.floats)


def seed_units(space: SearchSpace, candidates: list[str]) -> list[Unit]:
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


def greedy_search(space: SearchSpace, *, expected_cos: float, min_layer_cos: float,
                  time_budget: float | None = None, max_float: int | None = None) -> SearchResult:
    """See the module docstring; cosines are true cosines."""
    start = time.perf_counter()
    budget = _Budget(start, time_budget)
    result = reference_search(space, expected_cos=expected_cos, min_layer_cos=min_layer_cos,
                              max_float=max_float, hard_cap=max_float is not None)
    result.method = "greedy"
    result.trials = [Trial(t.layer, t.added, t.cos, f"walk: {t.decision}") for t in result.trials]
    if result.int8_cos > expected_cos:
        return _finish(space, result, [], start)
    candidates = [op for op in space.graph.op_names if op in {r.layer for r in result.loss_table}]
    cap = max_float or len(candidates)
    search = _Search(space, result, candidates, budget, cap)
    if not search.reached():
        search.prune()                           # frees the cap of walk layers that do nothing
    with Progress(space.progress, "adding float layers", cap) as bar:
        bar.advance(len(search.floats))
        search.extend(bar)
        bar.advance(bar.total - bar.done)        # the cap is only an upper bound
    search.swap()
    search.prune()
    fell_back = not search.reached() and not budget.hit and max_float is None and \
        _fall_back(search)
    if search.reached() and not fell_back:
        result.reason = "target reached"
    if budget.hit:
        result.reason = f"time budget of {time_budget:g} s used up; best plan found so far"
    return _finish(space, result, search.floats, start)


def _fall_back(search: _Search) -> bool:
    """Greedy stalled short of the target: bisect over its ranking (the all-float plan first),
    so that a target the all-float plan reaches is reached; then prune."""
    result = search.result
    units = sorted((search.ranking or {}).items(), key=lambda kv: -kv[1])
    ranked = list(dict.fromkeys([op for unit, _ in units for op in unit] + search.candidates))
    found = bisect_prefix(search.space, search.floats, ranked, result.expected_cos,
                          result.trials.append, search.budget.over)
    result.all_float_cos = next(t.cos for t in result.trials if t.layer == "bisect: all ranked")
    if found is None:
        result.reason += f"; even every candidate in float gives {result.all_float_cos:.6f}"
        return False
    search.record("bisect", found[0], found[1], "bisect: target reached", ())
    search.prune()
    result.reason = "target reached by the bisection fallback (greedy stalled), then pruned"
    return True


def _finish(space: SearchSpace, result: SearchResult, floats: list[str],
            start: float) -> SearchResult:
    """Re-evaluate the final plan: its cosine is the one reported."""
    result.qtable = space.qtable(floats)
    result.mix_cos = space.evaluate(floats)
    result.cost = space.cost(floats)
    result.seconds = time.perf_counter() - start
    return result
