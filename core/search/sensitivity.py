"""Per-layer sensitivity: which layers hurt the outputs in INT8, and by how much.

    table = layer_sensitivity(evaluator, make_plan, candidates, float_mode="F16")
    print(table)                      # worst first: output cos with only that layer INT8 / float
    table.ranked()                    # layer names, most sensitive first (seeds the searches)

For every candidate layer two output cosines (true, to F32), as PPQ's layerwise analysis, AIMET's
per-layer analysis and the reference's search_qtable measure them:
- `int8_only`: that layer INT8, every other layer F32 (the error it causes on its own);
- `float_only`: that layer in the float type, every other layer INT8 (what floating it alone buys).
A trial runs only the steps that differ from its baseline plan (all-F32, or all-INT8): the
prefix before the layer is the baseline's stored values, and a trial stops recomputing where its
values meet the baseline's again (a float Reshape between INT8 layers gives the same codes).
Layers are spread over threads (both cores; ops run inline on each thread, BLAS on one thread),
and an interrupted run keeps the rows it finished: asking again computes only the others.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..calibration.tables import QTable
from ..metrics import reference_cos
from ..ops.parallel import THREADS, blas_single_threaded, inline
from ..progress import Progress, ProgressFn
from ..quant import engine
from .cost import op_costs
from .evaluator import Evaluator, per_sample_cos

# Baseline plan mode of each column, and the mode the measured layer gets in it.
INT8_ONLY = "int8_only"
FLOAT_ONLY = "float_only"


@dataclass
class SensitivityRow:
    """One layer: output cosine with only it in INT8 (others F32) and with only it in float
    (others INT8), and what floating it costs (MACs, extra bytes moved per sample)."""

    layer: str
    op_type: str
    int8_only: float | None = None
    float_only: float | None = None
    macs: int = 0
    extra_bytes: int = 0

    def score(self, int8_cos: float) -> float:
        """How much the layer matters: the output cosine it loses alone in INT8 plus what
        floating it alone gains over all-INT8 (0 for what was not measured)."""
        loss = 1.0 - self.int8_only if self.int8_only is not None else 0.0
        gain = self.float_only - int8_cos if self.float_only is not None else 0.0
        return loss + max(gain, 0.0)


@dataclass
class SensitivityTable:
    """Rows per candidate layer (true cosines), the all-INT8 output cosine, and how they were
    measured; `str()` is the stable text the shell prints (most sensitive first)."""

    rows: dict[str, SensitivityRow]
    int8_cos: float
    float_mode: str
    samples: int
    seconds: float = 0.0
    computed: int = 0                  # rows measured by the last call (the others were cached)
    interrupted: bool = False
    scale: str = "true"
    layers: list[str] = field(default_factory=list)   # the layers asked for, in model order

    @property
    def complete(self) -> bool:
        return all(self.rows.get(op) is not None and self.rows[op].int8_only is not None and
                   self.rows[op].float_only is not None for op in self.layers)

    def ranked(self) -> list[str]:
        """Measured layers, most sensitive first (ties: the cheaper to float first)."""
        rows = [self.rows[op] for op in self.layers if op in self.rows]
        return [r.layer for r in sorted(rows, key=lambda r: (-r.score(self.int8_cos),
                                                             r.extra_bytes))]

    def shown(self, cos: float | None) -> float | None:
        return None if cos is None else reference_cos(cos) if self.scale == "reference" else cos

    def header(self) -> list[str]:
        """The lines above the rows: what was measured, how long it took, what is missing."""
        what = "0.5+0.5*cos (reference scale)" if self.scale == "reference" else "true cosine"
        done = sum(1 for op in self.layers if op in self.rows and
                   self.rows[op].int8_only is not None and self.rows[op].float_only is not None)
        head = [f"sensitivity of {len(self.layers)} layer(s) on {self.samples} sample(s), {what}: "
                f"output cos with only the layer INT8 (others F32) and only the layer "
                f"{self.float_mode} (others INT8); all-INT8 {self.shown(self.int8_cos):.6f}; "
                f"{self.computed} measured in {self.seconds:.1f} s"]
        if done < len(self.layers):
            head.append(f"interrupted: {done} of {len(self.layers)} layer(s) measured; run it "
                        f"again to measure the rest")
        return head

    def __str__(self) -> str:
        lines = self.header() + [f"{'layer':<44} {'type':<10} {'int8 only':>9} {'float only':>10}"]
        for op in self.ranked():
            r = self.rows[op]
            cells = [f"{self.shown(c):9.6f}" if c is not None else f"{'-':>9}"
                     for c in (r.int8_only, r.float_only)]
            lines.append(f"{op:<44} {r.op_type:<10} {cells[0]} {cells[1]:>10}")
        return "\n".join(lines)


class _Baseline:
    """A plan and every value it computes on the working set (read-only while threads run)."""

    def __init__(self, ev: Evaluator, plan: Any) -> None:
        ev.set_plan(plan)
        names = list(plan.inputs) + [t for s in plan.steps.values() for t in s.outputs]
        self.plan = plan
        self.values = dict(zip(names, ev.values(names)))


def run_trial(base: _Baseline, trial: Any, outputs: Sequence[str],
              tail: Callable[[frozenset[str], tuple[str, ...]], Any] | None = None
              ) -> dict[str, np.ndarray]:
    """Float32 values of the graph tensors `outputs` under plan `trial`, computing only the
    steps whose key or input values differ from the baseline plan's.

    With `tail(cut, outputs)` (engine.f32_tail of the graph), the F32 steps the baseline also has
    but on changed inputs, when nothing else reads them, run there at the end: the trial's new
    values of the baseline tensors `cut` in, the baseline tensors `outputs` out.""" 
    same: dict[str, str] = {t: t for t in trial.inputs}   # trial tensor -> equal baseline tensor
    local: dict[str, np.ndarray] = {}
    later: list[tuple[Any, Any]] = []                     # (trial step, baseline step) for `tail`
    deferred: dict[str, str] = {}                         # their outputs -> the baseline's names
    for name, step in trial.steps.items():
        b = base.plan.steps.get(name)
        if b is not None and b.key == step.key and _inputs_same(step, b, same, local, base):
            same.update(zip(step.outputs, b.outputs))
            continue
        if tail is not None and b is not None and _same_f32_op(step, b) and \
                _reads_like(step, b, same, local, deferred):
            later.append((step, b))
            deferred.update(zip(step.outputs, b.outputs))
            continue
        if any(t in deferred for t in step.inputs):       # not a tail after all: compute it here
            _run_steps([s for s, _ in later], local, same, base)
            later, deferred, tail = [], {}, None
        _run_steps([step], local, same, base)
    wanted = {out: trial.tensor(out) for out in outputs}
    if later:
        cut = {u: local[t] for s, b in later for t, u in zip(s.inputs, b.inputs) if t in local}
        asked = tuple(dict.fromkeys(deferred[t] for t in wanted.values() if t in deferred))
        runner = tail(frozenset(cut), asked) if asked else None
        if runner is None:
            _run_steps([s for s, _ in later], local, same, base)
        else:
            feeds = {t: cut[t] if t in cut else base.values[t] for t in runner.inputs}
            back = {u: t for t, u in deferred.items()}
            local.update((back[u], v) for u, v in zip(asked, runner.run(feeds)))
    found = {}
    for out, t in wanted.items():
        value = local[t] if t in local else base.values[same[t]]
        found[out] = trial.dequantize(t, value)
    return found


def _same_f32_op(step: Any, b: Any) -> bool:
    """Whether two steps of one op compute the same F32 function (their inputs may be named
    differently: a cast the trial inserted feeds one)."""
    return not step.is_cast and step.mode == b.mode == "F32" and step.op_type == b.op_type and \
        step.in_types == b.in_types and step.out_types == b.out_types


def _reads_like(step: Any, b: Any, same: dict[str, str], local: dict[str, np.ndarray],
                deferred: dict[str, str]) -> bool:
    """Whether each input of `step` is either new (computed by the trial) or the baseline step's
    own input: then the baseline's F32 ops can compute it from the new values alone."""
    return len(step.inputs) == len(b.inputs) and all(
        t in local or t in deferred or same.get(t) == u for t, u in zip(step.inputs, b.inputs))


def _run_steps(steps: Sequence[Any], local: dict[str, np.ndarray], same: dict[str, str],
               base: _Baseline) -> None:
    for step in steps:
        ins = [local[t] if t in local else base.values[same[t]] for t in step.inputs]
        local.update(zip(step.outputs, step.run(ins)))


def _inputs_same(step: Any, b: Any, same: dict[str, str], local: dict[str, np.ndarray],
                 base: _Baseline) -> bool:
    """Whether each input of `step` holds the value of the baseline step's input (a recomputed
    value equal to it is remembered as the same)."""
    if len(step.inputs) != len(b.inputs):
        return False
    for t, u in zip(step.inputs, b.inputs):
        if same.get(t) == u:
            continue
        v, w = local.get(t), base.values[u]
        if v is None or not _equal(v, w):
            return False
        same[t] = u
    return True


def _equal(v: np.ndarray, w: np.ndarray) -> bool:
    """np.array_equal, deciding most unequal pairs from every 61st element (a recomputed value
    after a changed layer differs nearly everywhere; a full compare is a pass over both)."""
    if v.shape != w.shape or v.dtype != w.dtype:
        return False
    if v.size > 4096 and not np.array_equal(v.reshape(-1)[::61], w.reshape(-1)[::61]):
        return False
    return bool(np.array_equal(v, w))


def layer_sensitivity(ev: Evaluator, make_plan: Callable[[str, QTable], Any],
                      layers: Sequence[str], float_mode: str, *,
                      rates: Mapping[str, float] | None = None,
                      known: Mapping[str, SensitivityRow] | None = None,
                      progress: ProgressFn | None = None, workers: int | None = None,
                      stop: threading.Event | None = None) -> SensitivityTable:
    """Both columns for `layers` (see the module docstring); `make_plan(mode, qtable)` lowers a
    plan; rows in `known` are reused. Ctrl-C (or `stop`) ends it with the rows finished."""
    start = time.perf_counter()
    graph = ev.graph
    rates = dict(rates) if rates else {t: 1.0 for t in graph.outputs}
    rows = {op: SensitivityRow(op, graph.node(op).op_type, **_costs(graph, op, float_mode))
            for op in layers}
    for op, r in (known or {}).items():
        if op in rows:
            rows[op].int8_only, rows[op].float_only = r.int8_only, r.float_only
    refs = {t: ev.reference(t) for t in rates}

    def loss(values: dict[str, np.ndarray]) -> float:
        cos = {t: float(per_sample_cos(values[t], refs[t]).mean()) for t in rates}
        return sum(rates[t] * cos[t] for t in rates) / sum(rates.values())

    base = _Baseline(ev, make_plan("INT8", QTable()))
    int8 = loss(run_trial(base, base.plan, list(rates)))
    table = SensitivityTable(rows, int8, float_mode, ev.samples, layers=list(layers))
    jobs = [(col, op) for col in (FLOAT_ONLY, INT8_ONLY) for op in layers
            if getattr(rows[op], col) is None]
    stop = stop or threading.Event()
    with Progress(progress, "layer sensitivity", len(jobs)) as bar:
        for col, mode, other in ((FLOAT_ONLY, float_mode, "INT8"), (INT8_ONLY, "INT8", "F32")):
            todo = [op for c, op in jobs if c == col]
            if not todo or stop.is_set():
                continue
            if base.plan.mode != other:
                base = _Baseline(ev, make_plan(other, QTable()))
            plans = threading.Lock()
            tail = _f32_tail(graph) if col == INT8_ONLY else None

            def measure(op: str, col=col, mode=mode, other=other, base=base, tail=tail) -> None:
                with plans:                       # the lowerer's step cache is not thread-safe
                    trial = make_plan(other, QTable({op: mode}))
                setattr(rows[op], col, loss(run_trial(base, trial, list(rates), tail)))
            table.computed += _spread(measure, _costly_first(graph, todo), bar, stop, workers)
    table.interrupted = stop.is_set()
    table.seconds = time.perf_counter() - start
    return table


def _f32_tail(graph) -> Callable[[frozenset[str], tuple[str, ...]], Any] | None:
    """engine.f32_tail for `graph` (its F32 export made now, before the threads share it), or
    None when onnxruntime does not run it."""
    if not engine.tails_possible(graph):
        return None
    return lambda cut, outputs: engine.f32_tail(graph, cut, outputs)


def _spread(measure: Callable[[str], None], ops: list[str], bar: Progress,
            stop: threading.Event, workers: int | None) -> int:
    """Run measure(op) for every op on `workers` threads (each takes the next op); returns how
    many finished. Ctrl-C sets `stop`: running ops finish, the rest are left."""
    n = max(1, min(workers or THREADS, len(ops)))
    queue, lock, done = iter(ops), threading.Lock(), [0]

    def worker() -> None:
        with inline():
            while not stop.is_set():
                with lock:
                    op = next(queue, None)
                if op is None:
                    return
                measure(op)
                with lock:
                    done[0] += 1
    if n == 1:
        try:
            for op in ops:
                if stop.is_set():
                    break
                measure(op)
                done[0] += 1
                bar.advance()
        except KeyboardInterrupt:
            stop.set()
        return done[0]
    shown = 0
    with blas_single_threaded(), ThreadPoolExecutor(n, thread_name_prefix="tpushell-sens") as pool:
        futures = {pool.submit(worker) for _ in range(n)}
        try:
            while futures:
                finished, futures = wait(futures, timeout=0.2, return_when=FIRST_COMPLETED)
                for f in finished:
                    f.result()
                bar.advance(done[0] - shown)
                shown = done[0]
        except KeyboardInterrupt:
            stop.set()
            wait(futures)
    bar.advance(done[0] - shown)
    return done[0]


def _costly_first(graph, ops: list[str]) -> list[str]:
    """Earlier layers first: their trials recompute the most, so the threads end together."""
    return sorted(ops, key=graph.position)


def _costs(graph, op: str, float_mode: str) -> dict[str, int]:
    c = op_costs(graph)[op]
    return {"macs": c.macs, "extra_bytes": c.bytes(float_mode) - c.bytes("INT8")}
