"""Calibration: statistics of every tensor over a dataset, then one threshold per tensor (C.2-C.5).

    stats = collect_statistics(graph, batches, num_samples=100, methods=("kl",))
    table = calibration_table(stats, "kl")                   # KLD thresholds, untuned
    table, stats = calibrate(graph, batches, 100, tune_feeds=feeds)   # run_calibration's step

`batches` is a zero-argument callable returning a fresh iterator of feeds dicts
({input name: array}); it is called once per pass and must give the same samples each time.
By default the histogram and the tuner are TPU-MLIR 1.30.2's (DEFAULT_HISTOGRAM, DEFAULT_TUNE_STEPS),
so a table made here equals the reference's on the same images: a one-pass histogram whose bin
width the first sample fixes (order-dependent: batches run side by side, but each
tensor is reduced in batch order) and 21 tuning steps. v1.3's two-pass
histogram is an option (`histogram="two_pass"`): pass 1 finds every tensor's min and max over
all samples, pass 2 histograms |x| over [0, absmax] with those final ranges, so the result does
not depend on sample order. Memory does not grow with the number of samples: each batch's tensors are reduced to
counters as the interpreter produces them and freed after their last use; only a bounded set of
expensive outputs is kept from pass 1 for pass 2 (REPLAY_BYTES). Batches run on one worker thread
per core, each with a single-threaded BLAS and the ops' blocks inline (core/ops/parallel.py).
"""
from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import CalibrationError, OptionError, TpuWarning, did_you_mean
from ..graph.interpreter import run
from ..graph.ir import Graph, Node
from ..ops.parallel import THREADS, blas_single_threaded, inline
from ..progress import Progress, ProgressFn
from . import thresholds as th
from .tables import CalibrationTable, CalRow

METHODS = ("kl", "max", "percentile9999", "mse", "aciq_gauss", "aciq_laplace")
PER_SAMPLE_METHODS = ("mse", "aciq_gauss", "aciq_laplace")
DEFAULT_BINS = 2048
MAX_BINS = 1 << 17          # 64 x the default: far past any use, and a few MB per tensor
HISTOGRAMS = ("one_pass", "two_pass")
# TPU-MLIR 1.30.2's calibration (the reference's tables were made so; tpu-mlir-reference.md C.2).
DEFAULT_HISTOGRAM = "one_pass"
DEFAULT_TUNE_STEPS = 21
ONE_PASS_MAX_BINS = 8_000_000     # 1.30.2 restarts a one-pass histogram beyond this
BATCH_SIZE = 1        # samples per forward in the statistics passes
REPLAY_BYTES = 384 << 20   # op outputs kept from pass 1 for pass 2 (peak RSS ~650 MB at 100 images)

Feeds = dict[str, np.ndarray]
BatchSource = Callable[[], Iterable[Feeds]]


@dataclass
class TensorStats:
    """What the statistics passes learnt about one tensor."""

    name: str
    size: int = 0                     # values per sample
    samples: int = 0
    min: float = math.inf
    max: float = -math.inf
    hist: np.ndarray | None = None    # |x| counts over [0, absmax] (kl)
    width: float = 0.0
    range: float = 0.0                # one-pass histogram: the |x| its bins reach
    per_sample: dict[str, float] = field(default_factory=dict)   # method -> sum over samples
    tail: int = 0                     # percentile: how many extreme values are kept per side
    top: np.ndarray | None = None     # the `tail` largest values seen (any order)
    bottom: np.ndarray | None = None  # the `tail` largest values of -x seen (any order)

    @property
    def absmax(self) -> float:
        return max(abs(self.min), abs(self.max))


@dataclass
class Statistics:
    """Per-tensor statistics in table order (graph inputs, then op outputs), plus how they were made."""

    tensors: dict[str, TensorStats]
    samples: int
    bins: int
    methods: tuple[str, ...]
    inputs: tuple[str, ...]


def check_method(method: str) -> str:
    if method not in METHODS:
        raise OptionError(f"--cali_method '{method}' is not valid; choose one of {', '.join(METHODS)}")
    return method


# ---- per-tensor reductions ----------------------------------------------------------------------
def _keep_largest(kept: np.ndarray | None, values: np.ndarray, k: int) -> np.ndarray:
    """The k largest of `kept` and `values` together (any order); only values that can enter move."""
    flat = values.ravel()
    if kept is not None:
        if len(kept) >= k:
            flat = flat[flat > kept.min()]
        flat = np.concatenate([kept, flat])
    if len(flat) > k:
        flat = np.partition(flat, len(flat) - k)[len(flat) - k:]
    return flat


class _Collector:
    """Turns each batch's tensors into the statistics of `Statistics`.

    Worker threads each reduce into their own partial statistics (`_part`), merged after a pass,
    so no lock is taken per tensor and the merged result does not depend on which thread did what.
    The one-pass histogram depends on the order of the samples, so there every thread reduces
    into the same statistics, one tensor at a time in batch order (`_InOrder`).
    """

    def __init__(self, graph: Graph, methods: Sequence[str], bins: int, num_samples: int,
                 one_pass: bool) -> None:
        self.methods = tuple(methods)
        self.one_pass = one_pass
        self.bins = bins
        self.num_samples = num_samples
        self.per_sample_batch = max(1, int(graph.inputs[0].shape[0])) if graph.inputs else 1
        self.order = graph.tensor_names()
        self.index = {name: i for i, name in enumerate(self.order)}
        self.tensors: dict[str, TensorStats] = {}
        self._parts: dict[int, tuple[dict[str, Any], th.Scratch]] = {}
        self._lock = threading.Lock()

    def _part(self) -> tuple[dict[str, Any], th.Scratch]:
        """This thread's partial results (stats or histograms by tensor name) and work buffers;
        one-pass: the results all threads share, with this thread's buffers."""
        key = threading.get_ident()
        part = self._parts.get(key)
        if part is None:
            with self._lock:
                shared = next(iter(self._parts.values()))[0] if self.one_pass and self._parts else {}
                part = self._parts.setdefault(key, (shared, th.Scratch()))
        return part

    def _results(self) -> list[dict[str, Any]]:
        """Every thread's partial results (the shared ones once), then forgotten."""
        parts = list({id(tensors): tensors for tensors, _ in self._parts.values()}.values())
        self._parts = {}
        return parts

    def _samples(self, x: np.ndarray) -> int:
        return max(1, x.shape[0] // self.per_sample_batch) if x.ndim else 1

    def first_pass(self, name: str, x: np.ndarray) -> None:
        if x.dtype.kind != "f" or x.size == 0:
            return
        tensors, scratch = self._part()
        s = tensors.get(name)
        n = self._samples(x)
        if s is None:
            s = tensors[name] = TensorStats(name, size=x.size // n)
        lo, hi = float(x.min()), float(x.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise CalibrationError(f"tensor '{name}' has NaN or infinite values")
        if self.one_pass and "kl" in self.methods:
            for row in x.reshape(n, -1):
                span = (lo, hi) if n == 1 else (float(row.min()), float(row.max()))
                self._grow_histogram(s, row, span, scratch)
        s.min, s.max = min(s.min, lo), max(s.max, hi)
        s.samples += n
        if "percentile9999" in self.methods:
            if not s.tail:
                p = th.percentile_of(self.index[name], len(self.order))
                s.tail = th.percentile_tail_length(self.num_samples * s.size, p)
            s.top = _keep_largest(s.top, x, s.tail)
            s.bottom = _keep_largest(s.bottom, -x, s.tail)
        if any(m in self.methods for m in PER_SAMPLE_METHODS):
            self._per_sample(s, x.reshape(n, -1))

    def _grow_histogram(self, s: TensorStats, x: np.ndarray, span: tuple[float, float],
                        scratch: th.Scratch) -> None:
        """1.30.2's one-pass histogram (C.2): the first sample fixes the bin width; a sample that
        widens the range adds whole bins of the old width. Order-dependent, kept for comparisons.
        `span` is x's (min, max)."""
        s.min, s.max = min(s.min, span[0]), max(s.max, span[1])
        top = s.absmax
        if s.hist is None or s.range == 0:
            s.range, s.width = top, float(th.bin_width(top, self.bins))
            s.hist = th.abs_histogram(x, s.width, self.bins, scratch) if top > 0 else \
                np.zeros(self.bins, np.int64)
            return
        if top <= s.range:
            s.hist += th.abs_histogram(x, s.width, len(s.hist), scratch)
            return
        old = len(s.hist)
        step = s.range / old
        added = int((top - s.range) // step + 1)
        if old + added > ONE_PASS_MAX_BINS:
            warnings.warn(TpuWarning(f"tensor '{s.name}': the one-pass histogram would need "
                                     f"{old + added} bins; restarted from this sample"))
            s.range, s.width = top, float(th.bin_width(top, self.bins))
            s.hist = th.abs_histogram(x, s.width, self.bins, scratch)
            return
        s.range = added * step + s.range
        s.width = float(th.bin_width(s.range, old + added))
        grown = th.abs_histogram(x, s.width, old + added, scratch)
        grown[:old] += s.hist
        s.hist = grown

    def _per_sample(self, s: TensorStats, rows: np.ndarray) -> None:
        acc = s.per_sample
        if "mse" in self.methods:
            acc["mse"] = acc.get("mse", 0.0) + sum(th.mse_threshold(r) for r in rows)
        if "aciq_gauss" in self.methods:
            spans = zip(rows.min(axis=1), rows.max(axis=1))
            acc["aciq_gauss"] = acc.get("aciq_gauss", 0.0) + sum(
                th.aciq_gauss_threshold(float(lo), float(hi), rows.shape[1]) for lo, hi in spans)
        if "aciq_laplace" in self.methods:
            acc["aciq_laplace"] = acc.get("aciq_laplace", 0.0) + sum(
                th.aciq_laplace_threshold(r) for r in rows)

    def finish_first_pass(self) -> None:
        """Merge the threads' statistics in table order and fix the histogram ranges; tensors at
        most 1e-5 in magnitude get the reference's ±1e-5."""
        parts = self._results()
        for name in self.order:
            found = [p[name] for p in parts if name in p]
            if found:
                self.tensors[name] = _merged(found)
        for s in self.tensors.values():
            if s.absmax <= th.MIN_THRESHOLD:
                warnings.warn(TpuWarning(f"tensor '{s.name}' is all zeros (|x| <= 1e-5 on every "
                                         f"sample); its range is set to 1e-5; check the input data"))
                s.min, s.max = (-th.MIN_THRESHOLD if s.min < 0 else 0.0), th.MIN_THRESHOLD
            if "kl" in self.methods and not self.one_pass:
                s.width = float(th.bin_width(s.absmax, self.bins))

    def second_pass(self, name: str, x: np.ndarray) -> None:
        s = self.tensors.get(name)
        if s is None or not s.width:
            return
        hists, scratch = self._part()
        hist = th.abs_histogram(x, s.width, self.bins, scratch)
        if name in hists:
            hists[name] += hist
        else:
            hists[name] = hist

    def finish_second_pass(self) -> None:
        parts = self._results()
        for name, s in self.tensors.items():
            s.hist = sum((p[name] for p in parts if name in p), np.zeros(self.bins, np.int64))


def _merged(parts: list[TensorStats]) -> TensorStats:
    """One tensor's statistics from several threads' (the one-pass histogram runs on one only)."""
    s = parts[0]
    for o in parts[1:]:
        s.min, s.max, s.samples = min(s.min, o.min), max(s.max, o.max), s.samples + o.samples
        for method, total in o.per_sample.items():
            s.per_sample[method] = s.per_sample.get(method, 0.0) + total
        if o.top is not None:
            s.top = _keep_largest(s.top, o.top, s.tail)
            s.bottom = _keep_largest(s.bottom, o.bottom, s.tail)
    return s


class _Cancelled(Exception):
    """A batch stopped because an earlier batch failed (that batch's error is the one reported)."""


class _InOrder:
    """Lets several threads each run a batch while every tensor is reduced in batch order: batch
    i reduces tensor t once batch i-1 has (batches start in order, so the one waited for is
    running and never waits for a later one). A failed batch cancels the later ones' waits."""

    def __init__(self) -> None:
        self.turn: dict[str, int] = {}        # tensor -> the batch whose turn it is
        self.failed = math.inf                # the first batch that failed
        self.changed = threading.Condition()

    def reduce(self, reduce: Callable[[str, np.ndarray], None], index: int) -> Callable[[str, np.ndarray], None]:
        """`reduce` for batch `index`, called on each tensor in its turn."""
        def in_turn(name: str, x: np.ndarray) -> None:
            with self.changed:
                while self.turn.get(name, 0) != index:
                    if self.failed < index:
                        raise _Cancelled()
                    self.changed.wait()
            reduce(name, x)
            with self.changed:
                self.turn[name] = index + 1
                self.changed.notify_all()
        return in_turn

    def fail(self, index: int) -> None:
        with self.changed:
            self.failed = min(self.failed, index)
            self.changed.notify_all()


def _observer(reduce: Callable[[str, np.ndarray], None]):
    def observe(node: Node, ins: Sequence[np.ndarray], outs: Sequence[np.ndarray]) -> None:
        for name, value in zip(node.outputs, outs):
            if name:
                reduce(name, value)
    return observe


class _Replay:
    """Op outputs (and input batches) kept from pass 1 so that pass 2 need not compute them again.

    After the first batch, the ops that cost the most CPU time per byte of output are chosen until
    their outputs for every sample fill `budget` bytes (the deep, narrow convolutions: much
    arithmetic, small outputs); the input batches compete too, at the cost of loading one. Pass 2
    replays the very arrays pass 1 produced through the interpreter's overrides, so the
    statistics are exactly those of a recomputation.
    """

    INPUTS = ""          # the input batch's entry (no op has an empty name)

    def __init__(self, budget: int, num_samples: int) -> None:
        self.budget, self.num_samples = budget, num_samples
        self.chosen: set[str] | None = None
        self.kept: dict[int, dict[str, Any]] = {}
        self.load_cost = 0.0
        self._local = threading.local()
        self._lock = threading.Lock()

    def start_batch(self, index: int, feeds: Feeds) -> None:
        self._local.kept = self.kept[index] = {self.INPUTS: feeds}
        self._local.cost = {self.INPUTS: self.load_cost}
        self._local.clock = time.thread_time()

    def observe(self, node: Node, ins: Sequence[np.ndarray], outs: Sequence[np.ndarray]) -> None:
        local = self._local
        local.cost[node.name] = time.thread_time() - local.clock
        if self.chosen is None or node.name in self.chosen:
            local.kept[node.name] = tuple(outs)
        local.clock = time.thread_time()

    def end_batch(self, index: int, samples: int) -> None:
        """Choose what to keep from the first finished batch's costs; drop the rest."""
        with self._lock:
            if self.chosen is None:
                self._choose(self.kept[index], self._local.cost, samples)
        self.kept[index] = {op: kept for op, kept in self.kept[index].items() if op in self.chosen}

    def _choose(self, kept: dict[str, Any], cost: dict[str, float], samples: int) -> None:
        arrays = lambda item: item.values() if isinstance(item, dict) else item
        size = {op: sum(a.nbytes for a in arrays(item)) / samples * self.num_samples
                for op, item in kept.items()}
        total, self.chosen = 0.0, set()
        for op in sorted(kept, key=lambda op: cost[op] / max(size[op], 1), reverse=True):
            if total + size[op] <= self.budget:
                self.chosen.add(op)
                total += size[op]

    def batches(self, load: BatchSource) -> BatchSource:
        """Pass 2's batches: the kept input batches when they were kept, else loaded again."""
        if self.INPUTS not in (self.chosen or ()):
            return load
        return lambda: (self.kept[i].pop(self.INPUTS) for i in sorted(self.kept))

    def overrides(self, index: int) -> dict[str, Callable[..., Any]]:
        """Interpreter overrides returning batch `index`'s kept outputs (then forgotten)."""
        kept = self.kept.pop(index, {})
        kept.pop(self.INPUTS, None)
        return {op: (lambda *args, _outs=outs, **attrs: _outs if len(_outs) > 1 else _outs[0])
                for op, outs in kept.items()}


def _timed(batches: Iterable[Feeds], replay: _Replay) -> Iterator[Feeds]:
    """The batches, with the wait for the first (nothing is loaded ahead yet) as the load cost."""
    items = iter(batches)
    start = time.perf_counter()
    first = next(items, None)
    replay.load_cost = time.perf_counter() - start
    if first is not None:
        yield first
        yield from items


def _map_batches(work: Callable[[int, Feeds], int], batches: Iterable[Feeds], progress: Progress,
                 workers: int) -> int:
    """work(index, feeds) for every batch, on `workers` threads (here for one), at most one batch
    queued per worker; progress is reported from this thread, in batch order. An error or
    Ctrl-C cancels what has not started and waits for what has."""
    seen = 0
    if workers <= 1:
        for index, feeds in enumerate(batches):
            n = work(index, feeds)
            seen += n
            progress.advance(n)
        return seen
    def work_inline(index: int, feeds: Feeds) -> int:
        with inline():            # the op's blocks stay on this worker: each core has a batch
            return work(index, feeds)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="tpushell-calibrate")
    pending: deque = deque()
    try:
        for index, feeds in enumerate(batches):
            pending.append(pool.submit(work_inline, index, feeds))
            while len(pending) > workers or (pending and pending[0].done()):
                n = pending.popleft().result()
                seen += n
                progress.advance(n)
        while pending:
            n = pending.popleft().result()
            seen += n
            progress.advance(n)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return seen


def _pass(graph: Graph, batches: BatchSource, reduce: Callable[[str, np.ndarray], None],
          progress: Progress, workers: int, describe: Callable[[int], str],
          replay: _Replay | None = None, record: bool = False, in_order: bool = False) -> int:
    """One forward over every batch, feeding graph inputs and op outputs to `reduce`; with
    `record` the batches' expensive outputs are kept in `replay`, else replayed from it; with
    `in_order` each tensor is reduced in batch order (as on one thread)."""
    order = _InOrder() if in_order and workers > 1 else None

    def work(index: int, feeds: Feeds) -> int:
        n = len(next(iter(feeds.values())))
        reduce_batch = reduce if order is None else order.reduce(reduce, index)
        observers = [_observer(reduce_batch)]
        if replay is not None and record:
            observers.insert(0, replay.observe)
        try:
            for name, x in feeds.items():
                reduce_batch(name, np.asarray(x))
            if replay is not None and record:
                replay.start_batch(index, feeds)
            overrides = replay.overrides(index) if replay is not None and not record else None
            run(graph, feeds, observers=observers, overrides=overrides)
        except BaseException as e:
            if order is not None:
                order.fail(index)
            if isinstance(e, CalibrationError):
                raise CalibrationError(f"{e} in {describe(index)}") from None
            raise
        if replay is not None and record:
            replay.end_batch(index, n)
        return n
    if replay is None:
        items: Iterable[Feeds] = batches()
    else:
        items = _timed(batches(), replay) if record else replay.batches(batches)()
    return _map_batches(work, items, progress, workers)


def collect_statistics(graph: Graph, batches: BatchSource, num_samples: int, *,
                       methods: Sequence[str] = ("kl",), bins: int = DEFAULT_BINS,
                       histogram: str = DEFAULT_HISTOGRAM, replay_bytes: int | None = None,
                       describe: Callable[[int], str] | None = None,
                       progress: ProgressFn | None = None) -> Statistics:
    """Min, max and what each of `methods` needs, for every float tensor, over all batches.

    `histogram="one_pass"` (the default) builds 1.30.2's order-dependent histogram (it needs no
    second forward; each tensor is reduced in batch order, as on one thread); "two_pass" v1.3's.
    Up to `replay_bytes` of op outputs are kept between the passes (default REPLAY_BYTES, see _Replay). `describe(index)` names a batch in errors.
    """
    if histogram not in HISTOGRAMS:
        raise OptionError(f"histogram '{histogram}' is not valid; choose one of {', '.join(HISTOGRAMS)}")
    for m in methods:
        check_method(m)
    if bins < th.KLD_TARGET_BINS:
        raise OptionError(f"--histogram_bin_num {bins} is too small; give at least "
                          f"{th.KLD_TARGET_BINS} (default {DEFAULT_BINS})")
    if bins > MAX_BINS:   # a histogram per tensor: 1e8 bins ran into the OOM killer
        raise OptionError(f"--histogram_bin_num {bins} is above the limit {MAX_BINS} "
                          f"(default {DEFAULT_BINS})")
    describe = describe or (lambda index: f"batch {index + 1}")
    collector = _Collector(graph, methods, bins, num_samples, histogram == "one_pass")
    two_pass = "kl" in methods and not collector.one_pass
    replay_bytes = REPLAY_BYTES if replay_bytes is None else replay_bytes
    replay = _Replay(replay_bytes, num_samples) if two_pass and replay_bytes > 0 else None
    workers = THREADS
    with blas_single_threaded() if workers > 1 else contextlib.nullcontext():
        with Progress(progress, "calibration statistics", num_samples) as p:
            seen = _pass(graph, batches, collector.first_pass, p, workers, describe, replay,
                         record=True, in_order=collector.one_pass)
        if seen == 0:
            raise CalibrationError("no calibration samples were loaded")
        collector.finish_first_pass()
        if two_pass:
            with Progress(progress, "calibration histograms", seen) as p:
                _pass(graph, batches, collector.second_pass, p, workers, describe, replay)
            collector.finish_second_pass()
    some = next(iter(collector.tensors.values()))
    return Statistics(collector.tensors, some.samples, bins, tuple(methods),
                      tuple(graph.input_names))


def calibrated_tensors(graph: Graph) -> list[str]:
    """The tensors that get a table row: graph inputs and op outputs of a float type, in order."""
    return [t for t in graph.tensor_names() if t and graph.dtypes.get(t, "float32").startswith("float")]


def check_table(graph: Graph, table: CalibrationTable) -> None:
    """CalibrationError unless every calibrated tensor of `graph` has a row; a TpuWarning for rows
    that name no tensor of the model (they are ignored)."""
    where = table.path or "calibration table"
    missing = [t for t in calibrated_tensors(graph) if t not in table]
    known = set(graph.tensor_names())
    shared = sum(1 for name in table.rows if name in known)
    if missing and shared <= len(table.rows) // 10:
        raise CalibrationError(
            f"{where} is for another model: {shared} of its {len(table.rows)} rows name a tensor "
            f"of model '{graph.name}' (its rows: {', '.join(list(table.rows)[:3])} ...; this "
            f"model's: {', '.join(missing[:3])} ...)")
    if missing:
        raise CalibrationError(
            f"{where}: no row for {len(missing)} tensor(s) of model '{graph.name}': "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
            f"{did_you_mean(missing[0], table.rows)}; is the table for this model?")
    warn_unknown_rows(graph, table)


def warn_unknown_rows(graph: Graph, table: CalibrationTable) -> None:
    """A TpuWarning naming the rows of `table` that name no tensor of `graph` (ignored)."""
    where = table.path or "calibration table"
    known = set(graph.tensor_names())
    extra = [name for name in table.rows if name not in known]
    if extra:
        warnings.warn(TpuWarning(f"{where}: {len(extra)} row(s) name no tensor of model "
                                 f"'{graph.name}' and are ignored: {', '.join(extra[:5])}"))


# ---- thresholds ---------------------------------------------------------------------------------
def tensor_threshold(s: TensorStats, method: str, stats: Statistics) -> CalRow:
    """The table row of one tensor for `method` (threshold not yet floored at 1e-5)."""
    absmax = s.absmax
    if method == "max":
        return CalRow(absmax, s.min, s.max)
    if method == "kl":
        return CalRow(min(th.kld_threshold(s.hist, s.width), absmax), s.min, s.max)
    if method == "percentile9999":
        index = list(stats.tensors).index(s.name)
        p = th.percentile_of(index, len(stats.tensors))
        lo, hi = th.percentile_from_tails(-np.sort(-s.top), np.sort(-s.bottom),
                                          stats.samples * s.size, p)
        return CalRow(max(abs(lo), abs(hi)), lo, hi)
    if s.name in stats.inputs:        # the reference keeps graph inputs at absmax for mse / aciq
        return CalRow(absmax, s.min, s.max)
    return CalRow(min(s.per_sample[method] / s.samples, absmax), s.min, s.max)


def method_thresholds(stats: Statistics, name: str) -> dict[str, float]:
    """Tensor `name`'s untuned threshold by max and every method whose statistics were collected."""
    s = stats.tensors[name]
    methods = dict.fromkeys(("max",) + stats.methods)
    return {m: th.table_threshold(tensor_threshold(s, m, stats).threshold) for m in methods}


def calibration_table(stats: Statistics, method: str = "kl") -> CalibrationTable:
    """One row per tensor for `method` from collected statistics (untuned)."""
    check_method(method)
    if method not in stats.methods:
        raise CalibrationError(f"statistics for '{method}' were not collected (have "
                               f"{', '.join(stats.methods)})")
    table = CalibrationTable()
    for name, s in stats.tensors.items():
        row = tensor_threshold(s, method, stats)
        if method == "percentile9999" and max(abs(row.min), abs(row.max)) <= th.MIN_THRESHOLD:
            row = CalRow(row.threshold, -th.MIN_THRESHOLD if row.min < 0 else 0.0, th.MIN_THRESHOLD)
        row.threshold = th.table_threshold(row.threshold)
        table.rows[name] = row
    table.header = {"histogram number": str(stats.bins), "sample number": str(stats.samples),
                    "quantization threshold calculation method": method}
    return table


def calibrate(graph: Graph, batches: BatchSource, num_samples: int, *, method: str = "kl",
              tune_feeds: Feeds | None = None, bins: int = DEFAULT_BINS,
              tune_steps: int = DEFAULT_TUNE_STEPS, all_methods: bool = False,
              histogram: str = DEFAULT_HISTOGRAM, describe: Callable[[int], str] | None = None,
              progress: ProgressFn | None = None) -> tuple[CalibrationTable, Statistics]:
    """Statistics, thresholds by `method`, and for 'kl' the auto-tuner on `tune_feeds`.

    `all_methods` also collects what every other method needs (slower), for comparisons.
    """
    methods = METHODS if all_methods else (check_method(method),)
    stats = collect_statistics(graph, batches, num_samples, methods=methods, bins=bins,
                               histogram=histogram, describe=describe, progress=progress)
    table = calibration_table(stats, method)
    if method == "kl" and tune_feeds is not None:
        from .tuning import tune_table
        samples = tune_table(graph, table, tune_feeds, steps=tune_steps, progress=progress)
        table.header["tune number"] = str(samples)
    return table, stats


def calibrate_samples(graph: Graph, samples: Sequence[Sequence[str]], *, method: str = "kl",
                      tune_samples: Sequence[Sequence[str]] | None = None, tune_num: int = 5,
                      bins: int = DEFAULT_BINS, tune_steps: int = DEFAULT_TUNE_STEPS,
                      all_methods: bool = False, histogram: str = DEFAULT_HISTOGRAM,
                      progress: ProgressFn | None = None) -> tuple[CalibrationTable, Statistics]:
    """The run_calibration step on sample files (from `dataset.select_samples`).

    Tuning (kl only) uses the first `tune_num` of `tune_samples`, by default of `samples`.
    """
    from .dataset import load_batches
    if tune_num < 0:
        raise OptionError(f"--tune_num {tune_num} is not valid; give a count >= 0")
    check_method(method)
    tune = list(samples if tune_samples is None else tune_samples)[:tune_num]
    tune_feeds = None
    if method == "kl" and tune:
        parts = list(load_batches(tune, graph, len(tune)))
        tune_feeds = {n: np.concatenate([p[n] for p in parts]) for n in parts[0]}
    def describe(index: int) -> str:
        return ", ".join(f for sample in samples[index * BATCH_SIZE:(index + 1) * BATCH_SIZE]
                         for f in sample)
    return calibrate(graph, lambda: load_batches(samples, graph, BATCH_SIZE), len(samples),
                     method=method, tune_feeds=tune_feeds, bins=bins, tune_steps=tune_steps,
                     all_methods=all_methods, histogram=histogram, describe=describe,
                     progress=progress)
