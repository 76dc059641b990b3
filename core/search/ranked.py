"""The search that reaches any target the all-float plan reaches (`--search sensitivity`).

    result = ranked_search(space, expected_cos=0.99, ranking=table.ranked())

1. Ranking: the layers most sensitive first: the `sensitivity` table when one was measured,
   else each layer's own error (its INT8 output on F32 inputs against F32: one step per layer).
   Ties go to the layer cheaper to float.
2. Start: all-INT8, or the known-head pattern (core/search/patterns.py) when asked.
3. Growth, greedy with re-evaluation: the next few ranked layers are measured in the current
   plan and the one gaining most output cosine per unit of cost (the cost model's extra bytes
   moved, the median layer counting 1) is added; layers that gain less than the mean gain per
   layer that reaches the target with every layer left are passed over.
4. Bisection fallback: when growth stalls (several measurements in a row gain too little) or the
   ranked list runs out, the shortest prefix of the ranked list that reaches the target is found
   by bisection (log2 of the list's length evaluations). The all-float plan is evaluated first:
   when even it is short of the target, the search says so, with its cosine.
   The same bisection over the candidates in model order (from either end) is tried too, and
   the cheapest set kept: INT8 noise spread over a region needs that region in float.
5. Pruning: the float set's ends in model order are trimmed by bisection, then float layers the
   target does not need go back to INT8, the costliest tried first, in halving groups (a group
   dropped at once when the target holds without it), single layers last, until PRUNE_PATIENCE
   in a row are needed.
A time budget (and Ctrl-C) stops it at the next evaluation with the best plan found so far. Every
evaluation is a Trial saying what it did and why ("reverted: outputs 0.9981 <= current 0.9983").
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Sequence

from ..progress import Progress
from .space import (SearchResult, SearchSpace, Trial, bisect_prefix, loss_table, point, trial)

WINDOW = 3        # ranked layers measured per growth step
PATIENCE = 6      # measurements in a row that gain too little before the bisection fallback
TRIM_FROM = 8     # float sets at least this large first lose their ends by bisection
PRUNE_PATIENCE = 20   # single layers in a row found needed before pruning stops


class _Stop(Exception):
    """The time budget is used up (or Ctrl-C): keep the best plan found so far."""


class _Run:
    """The float set, its cosine, the best plan so far, and the trials recording them."""

    def __init__(self, space: SearchSpace, result: SearchResult, deadline: float,
                 weights: dict[str, float]) -> None:
        self.space, self.result, self.deadline, self.weights = space, result, deadline, weights
        self.floats: list[str] = []
        self.cos = result.int8_cos
        self.best: tuple[list[str], float] = ([], result.int8_cos)
        self.stopped = ""
        self.pruning = ""              # why pruning stopped early, if it did

    @property
    def target(self) -> float:
        return self.result.expected_cos

    def reached(self, cos: float | None = None) -> bool:
        return (self.cos if cos is None else cos) > self.target

    def check_time(self) -> None:
        if time.perf_counter() >= self.deadline:
            raise _Stop("time budget used up")

    def measure(self, floats: Sequence[str]) -> float:
        """Output cosine with `floats` in float (the current plan's values stay stored)."""
        self.check_time()
        self.space.use(self.floats)
        with self.space.evaluator.keeping():
            return self.space.evaluate(floats)

    def record(self, t: Trial) -> None:
        self.result.trials.append(t)

    def move(self, floats: list[str], cos: float) -> None:
        """Make `floats` current; remember it when it is the best plan so far."""
        self.floats, self.cos = list(floats), cos
        self.result.curve.append(point(self.space, self.floats, cos))
        best_floats, best_cos = self.best
        if self.reached(cos):
            if not self.reached(best_cos) or self.cost(floats) < self.cost(best_floats):
                self.best = (list(floats), cos)
        elif not self.reached(best_cos) and cos > best_cos:
            self.best = (list(floats), cos)

    def cost(self, floats: Sequence[str]) -> tuple[int, float]:
        return len(floats), sum(self.weights[op] for op in floats)

    # ---- 3. growth ----------------------------------------------------------------------------
    def grow(self, ranked: list[str], cap: int, bar: Progress) -> None:
        """Add the best of the next WINDOW ranked layers while one gains; stop after PATIENCE
        measurements in a row that gain too little (see the module docstring)."""
        pool = [op for op in ranked if op not in self.floats]
        idle = 0
        while not self.reached() and pool and idle < PATIENCE and len(self.floats) < cap:
            window = pool[:WINDOW]
            measured = {op: self.measure(self.floats + [op]) for op in window}
            bar.advance(len(window))
            gain = {op: (c - self.cos) / self.weights[op] for op, c in measured.items()}
            best = max(window, key=lambda op: gain[op])
            # the mean gain per layer that reaches the target with every layer left: a smaller
            # one puts growth on course to run out of layers first (noise spread over a region,
            # where the bisection in model order is cheaper)
            enough = self.cos + (self.target - self.cos) / len(pool)
            taken = measured[best] > enough
            for op in window:
                c = measured[op]
                if op == best and taken:
                    continue
                why = (f"reverted: outputs {c:.6f} <= current {self.cos:.6f}" if c <= self.cos
                       else f"reverted: outputs {c:.6f} gain less than the {enough - self.cos:.1e} "
                            f"a layer must add to reach the target with the layers left"
                       if not taken
                       else f"not taken: {best} gains more per cost ({measured[best]:.6f})")
                self.record(trial(self.space, op, (op,), self.floats + [op], c, why, False))
            if taken:
                idle = 0
                floats = self.floats + [best]
                self.record(trial(self.space, best, (best,), floats, measured[best],
                                  f"kept: outputs {measured[best]:.6f} > {self.cos:.6f}", True))
                self.move(floats, measured[best])
                pool.remove(best)
                # the others are measured again in the new plan
            else:
                idle += len(window)
                pool = pool[len(window):]             # they gain too little now: passed over
        if not self.reached():
            self.stopped = ("the ranked list ran out" if not pool else
                            f"{PATIENCE} measurements in a row gained too little" if idle >= PATIENCE
                            else f"the cap of {cap} float layers")

    # ---- 4. bisection fallback ---------------------------------------------------------------
    def bisect(self, ranked: list[str], cap: int) -> bool:
        """The shortest prefix of the ranked list that reaches the target; then also of the
        candidates in model order, from the input end and from the output end, and the
        cheapest of the three. Why: when the INT8 noise is spread over a region (SVTR's
        backbone: no layer alone helps, the ranking's order is noise), a stretch of the model
        in float is what reaches the target."""
        over = lambda: time.perf_counter() >= self.deadline    # noqa: E731
        found = bisect_prefix(self.space, self.floats, ranked[:cap], self.target, self.record, over)
        full = next((t.cos for t in reversed(self.result.trials)
                     if t.layer == "bisect: all ranked"), None)
        self.result.all_float_cos = full
        if found is None:
            return False
        order = sorted(ranked, key=self.space.graph.position)
        for name, seq in (("in model order", order), ("from the outputs", order[::-1])):
            if len(found[0]) - len(self.floats) <= 1 or over():
                break
            other = bisect_prefix(self.space, self.floats, seq[:cap], self.target, self.record,
                                  over, name=name, full=full if cap >= len(seq) else None)
            if other is not None and self.cost(other[0]) < self.cost(found[0]):
                found = other
        self.move(*found)
        return True

    def trim(self) -> None:
        """Drop float layers from either end of the model order while the target holds, the
        number found by bisection: a float stretch found in model order usually reaches
        further than the target needs, and dropping its ends one by one would take a pass each."""
        if len(self.floats) < TRIM_FROM:
            return
        for end, backwards in (("first", False), ("last", True)):
            order = sorted(self.floats, key=self.space.graph.position, reverse=backwards)
            lo, hi = 0, len(order)      # lo: dropping that many keeps the target; hi: assumed not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                rest = [op for op in self.floats if op not in set(order[:mid])]
                cos = self.measure(rest)
                what = f"trim: the {end} {mid} in model order"
                if self.reached(cos):
                    self.record(trial(self.space, what, (), rest, cos,
                                      f"dropped: outputs {cos:.6f} > target {self.target:.6f} "
                                      f"without them", True))
                    self.move(rest, cos)
                    order, lo, hi = order[mid:], 0, hi - mid
                else:
                    self.record(trial(self.space, what, (), rest, cos,
                                      f"needed: outputs {cos:.6f} <= target {self.target:.6f} "
                                      f"without them", False))
                    hi = mid

    # ---- 5. pruning ---------------------------------------------------------------------------
    def prune(self, bar: Progress) -> None:
        """Drop float layers the target holds without: costliest first, in halving groups, then
        single layers until PRUNE_PATIENCE in a row were needed (the rest are cheaper; on
        SVTR's 146 float layers the single ones took 135 evaluations to drop 2)."""
        order = sorted(self.floats, key=lambda op: -self.weights[op])
        size = max(1, len(order) // 2)
        while order:
            needed = 0
            for k in range(0, len(order), size):
                group = [op for op in order[k:k + size] if op in self.floats]
                if not group:
                    continue
                if size == 1 and needed >= PRUNE_PATIENCE:
                    left = len(order) - k
                    self.pruning = (f"pruning stopped after {needed} layers in a row were "
                                    f"needed; the {left} cheaper one(s) left were not tried")
                    break
                rest = [op for op in self.floats if op not in group]
                cos = self.measure(rest)
                bar.advance(len(group) if size == 1 else 0)
                what = group[0] if len(group) == 1 else f"{group[0]} and {len(group) - 1} more"
                if self.reached(cos):
                    self.record(trial(self.space, what, (), rest, cos,
                                      f"dropped: outputs {cos:.6f} > target {self.target:.6f} "
                                      f"without {'it' if len(group) == 1 else 'them'}", True))
                    self.move(rest, cos)
                    needed = 0
                else:
                    needed += 1
                    self.record(trial(self.space, what, (), rest, cos,
                                      f"needed: outputs {cos:.6f} <= target {self.target:.6f} "
                                      f"without {'it' if len(group) == 1 else 'them'}", False))
            order = [op for op in order if op in self.floats]
            if size == 1:
                break
            size = max(1, size // 2)


def own_error_ranking(space: SearchSpace, candidates: Sequence[str]) -> list[str]:
    """Candidates by their own INT8 error (inputs from F32), worst first: the ranking used when
    no sensitivity table was measured. The all-INT8 plan must be current."""
    ev = space.evaluator
    own = {op: float(ev.own_cos(op).mean()) for op in candidates}
    return sorted(candidates, key=lambda op: own[op])


def cost_weights(space: SearchSpace, candidates: Sequence[str]) -> dict[str, float]:
    """Per candidate, what floating it costs in units of the median candidate (0.5 + half its
    extra bytes moved over the median's), so that gains compare per unit of cost."""
    from .cost import op_costs
    costs = op_costs(space.graph)
    extra = {op: costs[op].bytes(space.float_mode) - costs[op].bytes("INT8") for op in candidates}
    median = statistics.median(extra.values()) if extra else 0
    return {op: 0.5 + 0.5 * (extra[op] / median if median > 0 else 1.0) for op in candidates}


def ranked_search(space: SearchSpace, *, expected_cos: float, min_layer_cos: float | None = None,
                  time_budget: float | None = None, max_float: int | None = None,
                  ranking: Sequence[str] | None = None,
                  start: Sequence[str] | None = None) -> SearchResult:
    """See the module docstring; `ranking` (most sensitive first) comes from a sensitivity
    table, `start` is a pattern to start from. Cosines are true cosines."""
    began = time.perf_counter()
    deadline = began + time_budget if time_budget else math.inf
    candidates = space.baseline()
    int8 = space.evaluate([])
    result = SearchResult("sensitivity", space.qtable([]), int8, int8, expected_cos, None,
                          space.float_mode, space.evaluator.samples, "", min_layer_cos=min_layer_cos)
    result.curve.append(point(space, [], int8))
    run = _Run(space, result, deadline, cost_weights(space, candidates))
    allowed = set(candidates)
    if ranking is None:
        ranking = own_error_ranking(space, candidates)
    # sensitivity rows cover the candidates; any left out go last, in model order
    ranked = [op for op in ranking if op in allowed]
    ranked += [op for op in candidates if op not in set(ranked)]
    cap = max_float or len(candidates)
    try:
        if int8 > expected_cos:
            result.reason = "INT8 already meets the target; no layer needs float"
        else:
            _search(run, ranked, [op for op in start or () if op in allowed], cap)
    except (_Stop, KeyboardInterrupt) as e:
        why = f"time budget of {time_budget:g} s used up" if isinstance(e, _Stop) else "interrupted"
        result.reason = f"{why}; best plan found so far"
    floats = run.best[0]
    result.qtable = space.qtable(floats)
    result.mix_cos = space.evaluate(floats)
    result.cost = space.cost(floats)
    result.loss_table = loss_table(space, {}, candidates)
    if not result.reached:
        result.next_step = _advice(result)
    result.seconds = time.perf_counter() - began
    return result


def _search(run: _Run, ranked: list[str], start: list[str], cap: int) -> None:
    space, result = run.space, run.result
    if start:
        result.pattern = list(start)
        cos = run.measure(start)
        run.record(trial(space, "head pattern", start, start, cos,
                         f"start: the head pattern's {len(start)} layer(s) give {cos:.6f}", True))
        run.move(start, cos)
    with Progress(space.progress, "growing the float set", len(ranked)) as bar:
        run.grow(ranked, cap, bar)
        bar.advance(bar.total - bar.done)
    if not run.reached():
        if not run.bisect(ranked, cap):
            full = result.all_float_cos
            result.reason = (f"target not reachable: with every ranked layer in float the outputs "
                             f"reach {full:.6f}" if full is not None else
                             "time budget used up during the bisection")
            if full is not None and full <= result.expected_cos:
                run.best = (run.floats, run.cos)
            return
    how = "growth" if not run.stopped else f"bisection (growth stopped: {run.stopped})"
    run.trim()
    with Progress(space.progress, "pruning float layers", len(run.floats)) as bar:
        run.prune(bar)
        bar.advance(bar.total - bar.done)
    result.reason = f"target reached by {how}, then pruned" + \
        (f" ({run.pruning})" if run.pruning else "")


def _advice(result: SearchResult) -> str:
    """What to try when the target was not reached."""
    if result.all_float_cos is not None and result.all_float_cos <= result.expected_cos:
        return (f"even all-float reaches only {result.all_float_cos:.6f}: lower the target, or "
                f"check the calibration table")
    return "give it more time (--time_budget) or a higher float-layer cap"
