"""Incremental evaluation of a quantization plan against F32, on a fixed working set of samples.

    ev = Evaluator(graph, feeds)              # feeds: {input name: (N, ...) array}, N samples
    ev.set_plan(plan)                         # a QuantPlan (core/quant/lowering.py)
    ev.output_cos()                           # {output: mean true cosine to F32}
    ev.layer_cos("conv3_Conv")                # per-sample true cosines, shape (N,)
    ev.set_plan(lowerer.plan("INT8", q2))     # only the changed steps and what follows recompute
    print(ev.check(own=True))                 # outputs, every layer, each layer's own error

A value is stored under its provenance: the key of the step that computed it and the provenance
of that step's inputs. Plans that compute a tensor the same way share the stored value, so a
precision change recomputes the changed op and what is downstream of it only, and undo, redo or a
reverted search trial find their values still stored while the spare-memory budget allows.
Step keys are those of one Lowerer (one graph, table and chip): use a new Evaluator when those
change.

The plan protocol (core/lowering.QuantPlan): `steps` {name: step} in execution order, each step
with `inputs`, `outputs`, `key` and `run(values) -> tuple`; `types` {tensor: QType};
`dequantize(tensor, value)` to float32; `encode(tensor, f32_value)` into the plan's
representation; `op_modes` {op: mode}.
"""
from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ..errors import ModelError, OptionError, did_you_mean
from ..graph.ir import Graph
from ..metrics import reference_cos
from ..ops import DEFAULT_OPSET, as_tuple, lookup
from ..jit import compiled
from ..quant.engine import f32_tensors
from ..quant.kernels import with_slots

# Values of plans other than the current one kept for undo / redo / reverted trials.
SPARE_BYTES = 1 << 30
# Samples are run through a step in chunks so that temporaries (int64 requantization, im2col)
# stay near this many elements whatever the number of samples.
CHUNK_ELEMENTS = 4 << 20
# A lean evaluator runs the F32 reference depth-first over chunks of samples this large (in
# elements of the largest tensor), so only the tensors asked for are ever whole.
STREAM_ELEMENTS = 16 << 20
# ... and keeps an F32 value it compared only when it is at most this big.
LEAN_KEEP_BYTES = 128 << 20


@dataclass(eq=False)
class _ReferenceStep:
    """One graph op computed in float32: the F32 reference the plan is compared against."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    key: tuple
    fn: Any = field(repr=False)

    def run(self, values: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
        return as_tuple(self.fn(*values))


def reference_steps(graph: Graph) -> dict[str, _ReferenceStep]:
    """The F32 steps of `graph` (one per op), in the same form as a plan's steps."""
    opset = int(graph.meta.get("opset", DEFAULT_OPSET))
    return {node.name: _ReferenceStep(
        node.name, tuple(graph.activation_inputs(node)), tuple(t for t in node.outputs if t),
        ("F32", node.name),
        with_slots(lookup(node.op_type, opset), [graph.weights.get(t) for t in node.inputs],
                   node.attrs))
        for node in graph.nodes}


def per_sample_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """True cosine of each sample (axis 0) of two batches, accumulated in float64; 0 when either
    sample is all zero (as metrics.cosine), and a NaN cosine counts as 0 (the reference's rule)
    so that a broken layer scores low instead of poisoning the mean."""
    n = a.shape[0]
    a, b = a.reshape(n, -1), b.reshape(n, -1)
    sums = _cos_sums(a, b)
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.sqrt(sums[:, 1] * sums[:, 2])
        out = np.where(norms > 0, sums[:, 0] / np.where(norms > 0, norms, 1.0), 0.0)
    return np.where(np.isfinite(out), out, 0.0)


# Element types the compiled sums take as they are (each pair compiles once, then is cached).
_KERNEL_TYPES = frozenset(map(np.dtype, (np.int8, np.uint8, np.int16, np.uint16, np.int32,
                                         np.float32, np.float64)))


def _cos_sums(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row of two (n, m) arrays: sum(a*b), sum(a*a), sum(b*b) in float64, shape (n, 3).
    The compiled kernel reads each element once and never widens a whole array (a check of
    SVTR compares 200 tensors: 3-4x faster than three float64 einsums)."""
    if a.shape != b.shape:          # the kernel would read past the shorter one
        raise ValueError(f"per_sample_cos of arrays of shapes {a.shape} and {b.shape}")
    kernel = compiled(_cos_sums_rows, reassociate=True)
    if kernel is not None and a.dtype in _KERNEL_TYPES and b.dtype in _KERNEL_TYPES:
        out = np.empty((a.shape[0], 3))
        kernel(np.ascontiguousarray(a), np.ascontiguousarray(b), out)
        return out
    with np.errstate(invalid="ignore", over="ignore"):
        # einsum in float64 without BLAS: exact enough, and no BLAS threads for small vectors
        return np.stack([np.einsum("ij,ij->i", x, y, dtype=np.float64)
                         for x, y in ((a, b), (a, a), (b, b))], axis=1)


def _cos_sums_rows(a, b, out):
    """The numba kernel of _cos_sums: one pass, three float64 accumulators per row."""
    for i in range(a.shape[0]):
        ab = 0.0
        aa = 0.0
        bb = 0.0
        for j in range(a.shape[1]):
            x = np.float64(a[i, j])
            y = np.float64(b[i, j])
            ab += x * y
            aa += x * x
            bb += y * y
        out[i, 0] = ab
        out[i, 1] = aa
        out[i, 2] = bb


class _Track:
    """The steps of one plan (or of the F32 reference) and the provenance of each tensor."""

    def __init__(self, steps: Mapping[str, Any], prov: dict[str, int],
                 aliases: Mapping[str, str] | None = None) -> None:
        self.steps = list(steps.values())
        self.prov = prov
        self.producer = {t: s for s in self.steps for t in s.outputs}
        # graph tensors the plan holds under another name (core/quant/lowering.QuantPlan.tensor)
        for t, a in (aliases or {}).items():
            if a in prov:
                prov[t] = prov[a]
                self.producer[t] = self.producer[a]
        self.position = {s.name: i for i, s in enumerate(self.steps)}
        self.consumers: dict[str, list[Any]] = {}
        for step in self.steps:
            for t in step.inputs:
                self.consumers.setdefault(t, []).append(step)


class Evaluator:
    """Cached F32 and plan values of a working sample set; recomputes only what a change needs."""

    def __init__(self, graph: Graph, feeds: Mapping[str, np.ndarray], *, lean: bool = False,
                 pack: bool = True, spare_bytes: int = SPARE_BYTES,
                 chunk_elements: int = CHUNK_ELEMENTS, f32_engine: bool = False) -> None:
        """`lean` keeps F32 values only of the tensors asked for, and compares a layer with F32
        chunk by chunk, keeping its F32 value only when small (a search over many samples
        releases values as it goes); otherwise every F32 value computed is kept. `pack` stores
        F16 / BF16 values in two bytes (half the memory, a little time to widen them).
        `f32_engine` computes the F32 reference on onnxruntime where it can (not when lean):
        2-3x faster with every tensor an output, within float rounding of the interpreter."""
        missing = [t for t in graph.input_names if t not in feeds]
        if missing:
            raise ModelError(f"no samples for input(s) {missing} of model '{graph.name}'")
        sizes = {int(np.shape(feeds[t])[0]) for t in graph.input_names}
        if len(sizes) != 1 or 0 in sizes:
            raise OptionError(f"the working set needs the same number (>= 1) of samples for every "
                              f"input; got {sorted(sizes)}")
        self.graph = graph
        self.samples = sizes.pop()
        self.lean = lean
        self.f32_engine = f32_engine and not lean
        self.pack = pack
        self.spare_bytes = int(spare_bytes)
        self.chunk_elements = int(chunk_elements)
        self.steps_run = 0                       # how many steps were computed (tests, benchmarks)
        self._ids: dict[tuple, int] = {}
        self._store: OrderedDict[int, np.ndarray] = OrderedDict()
        self._packed: dict[int, str] = {}       # values stored in 2 bytes: their float type
        self._cos: dict[tuple, np.ndarray] = {}
        self._tensors = set(graph.tensor_names())
        self._ref_keep = set(graph.outputs)      # F32 values a lean evaluator always keeps
        inputs = {t: self._intern(("input", t)) for t in graph.input_names}
        for t in graph.input_names:
            self._store[inputs[t]] = np.ascontiguousarray(feeds[t])
        self._inputs = inputs
        self._ref = self._track(reference_steps(graph))
        self.plan: Any = None
        self._plan: _Track | None = None
        self._kept: list[_Track] = []

    # ---- plans ----------------------------------------------------------------------------------
    def set_plan(self, plan: Any) -> set[str]:
        """Make `plan` current; returns the tensors whose values it must compute anew."""
        self.plan = plan
        self._plan = self._track(plan.steps, getattr(plan, "aliases", None))
        self._evict()
        return {t for t, pid in self._plan.prov.items() if pid not in self._store}

    def _track(self, steps: Mapping[str, Any], aliases: Mapping[str, str] | None = None) -> _Track:
        prov = dict(self._inputs)
        for step in steps.values():
            ins = tuple(prov[t] for t in step.inputs)
            for k, t in enumerate(step.outputs):
                prov[t] = self._intern((step.key, ins, k))
        return _Track(steps, prov, aliases)

    def _intern(self, key: tuple) -> int:
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = len(self._ids)
        return found

    @property
    def _current(self) -> _Track:
        if self._plan is None:
            raise OptionError("the evaluator has no plan yet; call set_plan(plan) first")
        return self._plan

    # ---- values ---------------------------------------------------------------------------------
    def value(self, tensor: str) -> np.ndarray:
        """The plan's value of `tensor` for all samples (in the plan's representation)."""
        track = self._current
        self._known(tensor, track)
        return self._ensure(track, [tensor])[0]

    def values(self, tensors: Sequence[str]) -> list[np.ndarray]:
        """Plan values of several tensors, computed together."""
        track = self._current
        for t in tensors:
            self._known(t, track)
        return self._ensure(track, tensors)

    def reference(self, tensor: str) -> np.ndarray:
        """The F32 value of graph tensor `tensor` for all samples."""
        self._known(tensor, self._ref)
        return self._ensure(self._ref, [tensor])[0]

    def _comparable(self, tensor: str, value: np.ndarray) -> np.ndarray:
        """A plan value ready for a cosine: symmetric integer codes as they are (a positive
        scale does not change a cosine, and skipping the dequantization saves a pass), other
        values dequantized."""
        tensor = self._plan_name(tensor)
        ty = self.plan.types[tensor]
        if ty.is_int and not ty.zp and ty.scale > 0:
            return value
        return self.plan.dequantize(tensor, value)

    def _plan_name(self, tensor: str) -> str:
        """The plan's name of a graph tensor (the same unless the plan renames it)."""
        return getattr(self.plan, "aliases", {}).get(tensor, tensor)

    def _known(self, tensor: str, track: _Track) -> None:
        if tensor not in track.prov:
            raise ModelError(f"no tensor named '{tensor}' in model '{self.graph.name}'"
                             f"{did_you_mean(tensor, track.prov)}")

    def _missing(self, track: _Track, tensors: Sequence[str]) -> list[Any]:
        """The steps that compute what is not stored of `tensors`, in plan order."""
        need: dict[str, Any] = {}
        stack = [t for t in tensors if track.prov[t] not in self._store]
        while stack:
            step = track.producer[stack.pop()]
            if step.name in need:
                continue
            need[step.name] = step
            stack.extend(t for t in step.inputs if track.prov[t] not in self._store)
        return sorted(need.values(), key=lambda s: track.position[s.name])

    def _ensure(self, track: _Track, tensors: Sequence[str]) -> list[np.ndarray]:
        """Compute whatever is missing for `tensors` (and only that), in plan order."""
        self._compute(track, tensors)
        return [self._get(track.prov[t]) for t in tensors]

    def _compute(self, track: _Track, tensors: Sequence[str]) -> None:
        """_ensure without reading the values back (F16 / BF16 ones would be widened for
        nothing)."""
        steps = self._missing(track, tensors)
        if not steps:
            return                  # nothing stored, so nothing to evict (a no-op re-check)
        if track is self._ref and self.f32_engine and self._reference_on_engine(steps):
            steps = self._missing(track, tensors)         # what the engine does not give
        if not (self.lean and track is self._ref and len(steps) > 1 and
                self._stream(track, steps, set(tensors))):
            for step in steps:
                ins = [self._get(track.prov[t]) for t in step.inputs]
                outs = self._run(step, ins)
                for t, v in zip(step.outputs, outs):
                    kind = self.plan.types[t].kind if self.pack and track is self._plan and \
                        t in self.plan.types else None
                    self._put(track.prov[t], v, kind)
            self.steps_run += len(steps)
        self._evict()

    def _reference_on_engine(self, steps: list[Any]) -> bool:
        """Store the F32 values of the outputs of `steps` that onnxruntime gives; True when any
        was. Every F32 value of such a tensor comes from there, whatever asked first, so the
        numbers do not depend on the order of the questions; the interpreter computes the rest
        (a MatMul the plan splits) from them."""
        found = f32_tensors(self.graph, self._feeds(), [t for step in steps for t in step.outputs])
        self._store_reference(found)
        return bool(found)

    def _feeds(self) -> dict[str, np.ndarray]:
        return {t: self._store[pid] for t, pid in self._inputs.items()}

    def _store_reference(self, found: Mapping[str, np.ndarray]) -> None:
        for t, v in found.items():
            self._put(self._ref.prov[t], v)

    @contextlib.contextmanager
    def _reference_alongside(self, tensors: Sequence[str]) -> Iterator[None]:
        """The F32 values of `tensors` computed on onnxruntime on a thread of its own while the
        body computes the plan's values (onnxruntime runs without the GIL), stored after it.
        Why: a first check needs both, and the INT8 steps are Python-heavy (SVTR, 10 samples:
        2.0-2.15 -> 1.66-1.95 s)."""
        steps = self._missing(self._ref, tensors) if self.f32_engine else []
        if not steps:
            yield
            return
        names = [t for step in steps for t in step.outputs]
        with ThreadPoolExecutor(1, thread_name_prefix="tpushell-reference") as pool:
            job = pool.submit(f32_tensors, self.graph, self._feeds(), names)
            try:
                yield
            finally:
                found = job.result()
        self._store_reference(found)

    def _stream(self, track: _Track, steps: list[Any], keep: set[str],
                visit: Callable[[int, int, dict[str, np.ndarray]], None] | None = None,
                hold: frozenset[str] = frozenset()) -> bool:
        """Run `steps` depth-first over chunks of samples; store only the tensors in `keep` and
        hand each chunk's values (those in `hold` among them) to `visit(start, stop, values)`.
        False (nothing stored) when a step is not per-sample."""
        n = self.samples
        last = {t: i for i, step in enumerate(steps) for t in step.inputs}
        size_of = {t: int(np.prod(self.graph.shapes.get(t, (1,))[1:]))
                   for step in steps for t in step.outputs}
        per_sample = max(max(size_of.values()), sum(size_of.get(t, 0) for t in hold))
        chunk = max(1, STREAM_ELEMENTS // per_sample)
        out: dict[str, np.ndarray] = {}
        for s0 in range(0, n, chunk):
            size = min(chunk, n - s0)
            env: dict[str, np.ndarray] = {}
            for i, step in enumerate(steps):
                ins = [env[t] if t in env else self._get(track.prov[t])[s0:s0 + size]
                       for t in step.inputs]
                for t, v in zip(step.outputs, as_tuple(step.run(ins))):
                    if v.ndim == 0 or v.shape[0] != size:
                        return False
                    env[t] = v
                for t in step.inputs:
                    if last[t] == i and t not in keep and t not in hold:
                        env.pop(t, None)
            if visit is not None:
                visit(s0, s0 + size, env)
            for t in keep & set(env):
                if t not in out:
                    out[t] = np.empty((n,) + env[t].shape[1:], env[t].dtype)
                out[t][s0:s0 + size] = env[t]
        for t, v in out.items():
            self._put(track.prov[t], v)
        self.steps_run += len(steps)
        return True

    def _get(self, pid: int) -> np.ndarray:
        self._store.move_to_end(pid)
        value = self._store[pid]
        kind = self._packed.get(pid)
        if kind == "f16":
            return value.astype(np.float32)
        if kind == "bf16":
            return np.left_shift(value, 16, dtype=np.uint32).view(np.float32)    # one pass
        return value

    def _put(self, pid: int, value: np.ndarray, kind: str | None = None) -> None:
        """Store a value; F16 / BF16 values (float32 arrays holding values of that type) are
        kept in 2 bytes an element, exactly, and widened again when read."""
        if kind in ("f16", "bf16") and value.dtype == np.float32:
            self._packed[pid] = kind
            value = value.astype(np.float16) if kind == "f16" else \
                (np.ascontiguousarray(value).view(np.uint32) >> 16).astype(np.uint16)
        self._store[pid] = value
        self._store.move_to_end(pid)

    def _run(self, step: Any, ins: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        """Run `step` over the samples in chunks that bound the temporaries' size."""
        n = self.samples
        per_sample = max([x[0].size for x in ins if x.ndim and x.shape[0] == n] +
                         [int(np.prod(self.graph.shapes.get(t, (1,))[1:]))
                          for t in step.outputs if t in self.graph.shapes] + [1])
        chunk = max(1, self.chunk_elements // per_sample)
        if chunk >= n or any(x.ndim == 0 or x.shape[0] != n for x in ins):
            return as_tuple(step.run(ins))
        outs: list[np.ndarray] | None = None
        for s0 in range(0, n, chunk):
            part = as_tuple(step.run([x[s0:s0 + chunk] for x in ins]))
            if outs is None:
                if any(p.ndim == 0 or p.shape[0] != min(chunk, n) for p in part):
                    return as_tuple(step.run(ins))      # not a per-sample op: run it whole
                outs = [np.empty((n,) + p.shape[1:], p.dtype) for p in part]
            for o, p in zip(outs, part):
                o[s0:s0 + len(p)] = p
        return tuple(outs)

    # ---- memory ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def keeping(self) -> Iterator[None]:
        """Inside the block the current plan's values are never evicted (trials of other plans
        then always find this plan's prefix stored)."""
        track = self._current
        self._kept.append(track)
        try:
            yield
        finally:
            self._kept.remove(track)

    def _pinned(self) -> set[int]:
        pinned = set(self._inputs.values()) | set(self._ref.prov.values())
        for track in self._kept + ([self._plan] if self._plan is not None else []):
            pinned |= set(track.prov.values())
        return pinned

    def _evict(self) -> None:
        """Drop the least recently used values of other plans beyond the spare budget."""
        pinned = self._pinned()
        spare = [(pid, v.nbytes) for pid, v in self._store.items() if pid not in pinned]
        excess = sum(b for _, b in spare) - self.spare_bytes
        for pid, nbytes in spare:           # oldest first
            if excess <= 0:
                break
            del self._store[pid]
            excess -= nbytes

    def release(self, tensors: Iterable[str]) -> None:
        """Forget the stored plan and F32 values of graph tensors (and of the casts made from
        them); they are recomputed if asked for again."""
        drop = set(tensors)
        track = self._plan
        if track is not None:
            for step in track.steps:
                for t in step.outputs:
                    if t in drop or (t not in self._tensors and self.source(t) in drop):
                        self._store.pop(track.prov[t], None)
        for t in drop:
            if t in self._ref.prov and t not in self._inputs:
                self._store.pop(self._ref.prov[t], None)

    def stored_bytes(self) -> int:
        """Bytes held by all stored values."""
        return sum(v.nbytes for v in self._store.values())

    def source(self, tensor: str) -> str:
        """The graph tensor a plan tensor (maybe an inserted cast) was made from."""
        return self._walk_back(tensor)[0]

    def _walk_back(self, tensor: str) -> tuple[str, list]:
        """The graph tensor a plan tensor was made from, and the inserted steps between them
        (casts, requantizations, or ops of a deploy-time rewrite)."""
        track, steps = self._current, []
        while tensor not in self._tensors:
            steps.append(track.producer[tensor])
            tensor = steps[-1].inputs[0]
        return tensor, steps

    # ---- cosines --------------------------------------------------------------------------------
    def layer_cos(self, tensor: str) -> np.ndarray:
        """Per-sample true cosine of the plan's `tensor` to F32: the error accumulated up to it."""
        key = ("acc", self._current.prov.get(tensor, -1), tensor)
        if key not in self._cos and self.lean:
            self._lean_cos([tensor])
        if key not in self._cos:
            self._cos[key] = per_sample_cos(self._comparable(tensor, self.value(tensor)),
                                            self.reference(tensor))
        return self._cos[key]

    def layer_cos_many(self, tensors: Sequence[str]) -> dict[str, np.ndarray]:
        """layer_cos of several tensors, their values computed in one pass of each track (one
        F32 run on onnxruntime, not one per tensor; a lean evaluator compares chunk by chunk)."""
        for t in tensors:
            self._known(t, self._current)
        todo = [t for t in tensors if ("acc", self._current.prov[t], t) not in self._cos]
        if self.lean:
            self._lean_cos(todo)
        elif todo:
            self._compute(self._current, todo)
            self._compute(self._ref, todo)
        return {t: self.layer_cos(t) for t in tensors}

    def _lean_cos(self, tensors: list[str]) -> None:
        """Cache the cosines of `tensors` the lean way: F32 values are compared chunk by chunk
        as they are computed, and only small ones are kept. While the F32 value of a single
        tensor asked for is too big to keep, the ops that follow it in a chain are compared in
        the same pass, so a big early activation is computed once, not once per layer after it."""
        track = self._ref
        steps = self._missing(track, tensors)
        if not steps:
            return                                  # F32 values stored: compared directly
        compared = list(tensors)
        while len(tensors) == 1 and not self._small(compared[-1]):
            after = track.consumers.get(compared[-1], [])
            if len(after) != 1 or len(after[0].outputs) != 1 or any(
                    track.prov[t] not in self._store and track.producer.get(t) not in steps
                    for t in after[0].inputs):
                break
            steps.append(after[0])
            compared.append(after[0].outputs[0])
        compared = [t for t in compared if t in self._current.prov]
        values = dict(zip(compared, self.values(compared)))
        cos = {t: np.empty(self.samples) for t in compared}

        def visit(s0: int, s1: int, env: dict[str, np.ndarray]) -> None:
            for t in compared:
                cos[t][s0:s1] = per_sample_cos(self._comparable(t, values[t][s0:s1]), env[t])
        # a single layer keeps its value (the next layer starts from it); a batch keeps none
        keep = {t for t in compared[-1:] if self._small(t)} if len(tensors) == 1 else set()
        keep |= self._ref_keep & set(compared)
        if self._stream(track, steps, keep, visit, frozenset(compared)):
            for t in compared:
                self._cos[("acc", self._current.prov[t], t)] = cos[t]

    def _small(self, tensor: str) -> bool:
        """Whether an F32 value of `tensor` for all samples is small enough for a lean
        evaluator to keep."""
        per_sample = int(np.prod(self.graph.shapes.get(tensor, (1,))[1:]))
        return per_sample * self.samples * 4 <= LEAN_KEEP_BYTES

    def own_cos(self, op: str) -> np.ndarray:
        """Per-sample true cosine to F32 of op `op` run as the plan runs it on F32 inputs: the
        error the layer adds on its own."""
        track = self._current
        step = track.producer.get(op)
        if step is None or op not in self._tensors:
            raise ModelError(f"no op named '{op}' in model '{self.graph.name}'"
                             f"{did_you_mean(op, self.graph.op_names)}")
        key = ("own", step.key, op)
        found = self._cos.get(key)
        if found is None and any(s.kind not in ("cast", "requant")
                                 for t in step.inputs for s in self._walk_back(t)[1]):
            # fed by an op the lowering inserted (a slice of the split QKV MatMul, its reshape):
            # no F32 value exists for that input, so the error accumulated up to `op` stands in
            found = self._cos[key] = self.layer_cos(op)
        if found is None:
            ins = [self.plan.encode(t, self.reference(self.source(t))) for t in step.inputs]
            out = self._run(step, ins)[step.outputs.index(self._plan_name(op))]
            found = self._cos[key] = per_sample_cos(self._comparable(op, out),
                                                    self.reference(op))
        return found

    def output_cos(self, layers: Mapping[str, float] | Sequence[str] | None = None) -> dict[str, float]:
        """Mean true cosine over samples of each graph output (or of the given layers)."""
        names = list(layers) if layers is not None else list(self.graph.outputs)
        self._ref_keep.update(names)                   # compared again after every change
        for t in names:
            self._known(t, self._current)
        self._compute(self._current, names)
        self._compute(self._ref, names)                # one F32 pass for all of them
        return {t: float(self.layer_cos(t).mean()) for t in names}

    def loss(self, rates: Mapping[str, float] | None = None) -> float:
        """The reference's output loss as a true cosine: the rate-weighted mean over outputs
        (equal rates by default) of the per-output mean cosine."""
        rates = dict(rates) if rates else {t: 1.0 for t in self.graph.outputs}
        cos = self.output_cos(list(rates))
        return sum(rates[t] * cos[t] for t in rates) / sum(rates.values())

    def check(self, *, own: bool = False, layers: Sequence[str] | None = None,
              min_layer_cos: float | None = None, scale: str = "true") -> "CheckResult":
        """Output cosines and, per layer, the accumulated (and with `own`, the own) cosine."""
        start = time.perf_counter()
        before = self.steps_run
        # ops the plan does not compute as such (a MatMul split in parts) have no cosine of their own
        ops = list(layers) if layers is not None else \
            [op for op in self.graph.op_names if op in self._current.prov]
        for op in ops:
            self._known(op, self._current)
        wanted = [t for t in ops if t not in self.graph.outputs] + list(self.graph.outputs)
        with self._reference_alongside(wanted):
            self._compute(self._current, wanted)
        outputs = self.output_cos()
        acc = {op: float(self.layer_cos(op).mean()) for op in ops}
        own_cos = {op: float(self.own_cos(op).mean()) for op in ops} if own else {}
        modes = dict(getattr(self.plan, "op_modes", {}))
        floats = sum(1 for op in self.graph.op_names if modes.get(op, "INT8") != "INT8")
        return CheckResult(self.samples, outputs, acc, own_cos, {op: modes.get(op, "?") for op in ops},
                           min_layer_cos, scale, self.steps_run - before,
                           time.perf_counter() - start, floats)


@dataclass
class CheckResult:
    """What a re-check reports: output cosines, per-layer cosines and modes (true cosines)."""

    samples: int
    outputs: dict[str, float]
    layers: dict[str, float]
    own: dict[str, float] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)
    min_layer_cos: float | None = None
    scale: str = "true"
    recomputed: int = 0
    seconds: float = 0.0
    floats: int = 0                    # layers of the whole plan not in INT8 (`modes`: rows only)

    def shown(self, cos: float) -> float:
        """A cosine in this result's display scale."""
        return reference_cos(cos) if self.scale == "reference" else cos

    @property
    def below(self) -> list[str]:
        """Layers whose accumulated cosine is under `min_layer_cos`."""
        if self.min_layer_cos is None:
            return []
        return [op for op, c in self.layers.items() if c < self.min_layer_cos]

    def __str__(self) -> str:
        what = "0.5+0.5*cos (reference scale)" if self.scale == "reference" else "true cosine"
        lines = [f"check on {self.samples} sample(s), {what}; {self.floats} layer(s) not INT8; "
                 f"{self.recomputed} step(s) recomputed in {self.seconds:.2f} s"]
        for t, c in self.outputs.items():
            lines.append(f"output {t:<44} {self.shown(c):.6f}")
        head = f"{'layer':<44} {'mode':<5} {'cos':>9}" + (f" {'own cos':>9}" if self.own else "")
        lines.append(head)
        below = set(self.below)
        for op, c in self.layers.items():
            line = f"{op:<44} {self.modes.get(op, '?'):<5} {self.shown(c):9.6f}"
            if self.own:
                line += f" {self.shown(self.own[op]):9.6f}"
            if op in below:
                line += f"  < {self.shown(self.min_layer_cos):.6f}"
            lines.append(line)
        return "\n".join(lines)

