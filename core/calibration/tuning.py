"""The auto-tuner of the reference calibrator (tpu-mlir-reference.md C.4, v1.3 flavour).

    tune_table(graph, table, feeds)   # raises KLD thresholds in place; feeds = the tuning samples

Walking the ops in order, each op E re-evaluates the threshold of its producers: every activation
input of E is fake-quantized to signed int8 with a candidate threshold (kld + k*(absmax-kld)/20,
k = 0..20), E runs alone with per-channel fake-quantized weights, and the candidate whose output is
closest to E's FP32 output (||ref-out||_2 / ||ref||_1, averaged over the samples) wins if it is a
strict improvement. An E that only selects values (MaxPool, Concat, ...) does not run: its output
for a candidate is the fake quantization of its FP32 output, bit for bit. A threshold is only
ever raised. Graph outputs have no consumer, so they are never tuned. The FP32 reference tensors
come from one forward over the tuning samples whose observer does the tuning, so only the
interpreter's live tensors are held at any time.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..graph.interpreter import run
from ..graph.ir import Graph, Node
from ..ops import DEFAULT_OPSET, as_tuple, lookup
from ..ops.parallel import THREADS, blas_single_threaded, inline
from ..progress import Progress, ProgressFn
from ..quantmath import fake_quant_weights
from . import thresholds as th
from .tables import CalibrationTable

# Bytes of candidate inputs + outputs evaluated in one call of the op (per worker thread).
CHUNK_BYTES = 32 << 20
# Ops that treat every item of axis 0 independently, so candidates can be stacked on it.
PER_SAMPLE_OPS = {"Conv", "ConvTranspose", "Deconv", "Relu", "LeakyRelu", "PRelu", "MaxPool",
                  "AveragePool", "AvgPool", "GlobalAveragePool", "GlobalMaxPool", "Sigmoid", "Tanh",
                  "Clip", "HardSigmoid", "HardSwish", "SiLU", "GELU", "Softplus", "Elu", "Selu", "Abs",
                  "Neg", "Exp", "Log", "Sqrt", "Erf", "BatchNormalization", "Scale", "Resize",
                  "Upsample", "Depth2Space", "Add", "Sub", "Mul", "Div", "MulConst", "AddConst",
                  "SubConst", "Max", "Min", "Concat", "Softmax", "LogSoftmax"}


# Ops that only pick, move or zero values of input 0: for a monotone fake quantization f with
# f(0) = 0, op(f(x)) == f(op(x)) bit for bit, so a candidate's output is f of the FP32 output.
SELECTING_OPS = {"MaxPool", "GlobalMaxPool", "Relu", "Concat", "Transpose", "Permute", "Reshape",
                 "Flatten", "Squeeze", "Unsqueeze", "Identity", "Slice", "Split", "Resize", "Upsample",
                 "Depth2Space"}


def _selects_values(graph: Graph, node: Node, quantized: set[str]) -> bool:
    """Whether E's output is made of the values of its quantized inputs only: every input of a
    Concat is quantized; other ops quantize input 0 and take constants (shape, scales) besides.
    Resize must be nearest and not crop-and-resize (which fills with a constant)."""
    if node.op_type not in SELECTING_OPS or node.attrs.get("relu_limit", -1) > 0:
        return False      # a clipped Relu's limit is not a quantized value
    if node.op_type in ("Resize", "Upsample") and (
            node.attrs.get("mode", "nearest") != "nearest"
            or node.attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize"):
        return False
    inputs = [t for t in node.inputs if t]
    if node.op_type == "Concat":
        return all(t in quantized for t in inputs)
    return bool(inputs) and inputs[0] in quantized and all(t in graph.weights for t in inputs[1:])


def weight_channel_axis(node: Node) -> int | None:
    """Output-channel axis of the op's weight operand (input 1), None when it has no such weight."""
    if node.op_type == "Conv":
        return 0
    if node.op_type in ("ConvTranspose", "Deconv"):
        return 1
    if node.op_type == "MatMul":
        return -1
    if node.op_type == "Gemm":
        return 0 if node.attrs.get("transB", 0) else 1
    return None


def fake_quant_operand(w: np.ndarray, axis: int) -> np.ndarray:
    """Per-channel int8 fake quantization of a weight whose output channels lie on `axis`."""
    moved = np.moveaxis(w, axis, 0)
    return np.ascontiguousarray(np.moveaxis(fake_quant_weights(moved), 0, axis))


def _stackable(node: Node, ndim: int) -> bool:
    """Whether E's samples are independent along axis 0 (an op with an `axis` must not use 0)."""
    if node.op_type not in PER_SAMPLE_OPS:
        return False
    return "axis" not in node.attrs or node.attrs["axis"] % max(ndim, 1) != 0


class _Tuner:
    """The observer that hands each op's tuning to `submit` as the FP32 forward reaches it.

    Which producers an op tunes depends on the graph only, and a threshold keeps the largest
    proposal, so the evaluations can run in any order, on any thread. Each producer's candidates
    are cut into `parts` slices evaluated separately, so that one large op (a deep Conv) keeps
    every worker busy instead of one.
    """

    def __init__(self, graph: Graph, table: CalibrationTable, samples: int, steps: int,
                 submit: Callable[[list["_Part"]], None], parts: int = 1) -> None:
        self.graph, self.table, self.samples, self.steps = graph, table, samples, steps
        self.submit, self.parts = submit, parts
        self.opset = int(graph.meta.get("opset", DEFAULT_OPSET))
        self.kld = {name: row.threshold for name, row in table.rows.items()}
        self.tuned: set[str] = set()
        self.fake_weights: dict[str, np.ndarray] = {}

    def producers(self, node: Node) -> list[str]:
        """E's distinct activation inputs that have a table row, in input order."""
        return list(dict.fromkeys(t for t in self.graph.activation_inputs(node) if t in self.table))

    def __call__(self, node: Node, ins: Sequence[Any], outs: Sequence[np.ndarray]) -> None:
        pre = self.producers(node)
        if not pre:
            return
        targets: list[str] = []
        if isinstance(outs[0], np.ndarray) and outs[0].dtype.kind == "f":
            targets = pre[:1] if all(t in self.tuned for t in pre) else \
                [t for t in pre if t not in self.tuned]
            self.tuned.update(targets)
        ref = outs[0]
        work = []
        for target in targets:
            candidates = self.candidates(target)
            if candidates is None:
                continue          # the KLD threshold stays
            for part in np.array_split(candidates, min(self.parts, len(candidates))):
                work.append(_Part(node.name, target, part,
                                  lambda part=part: self.distances(node, ins, ref, part)))
        self.submit(work)

    def candidates(self, target: str) -> np.ndarray | None:
        """The thresholds tried for `target`: its KLD one up to its absmax (None: not tuned)."""
        row = self.table.rows[target]
        return th.tune_candidates(self.kld[target], max(abs(row.min), abs(row.max)), self.steps)

    def weights(self, node: Node, ins: Sequence[Any]) -> list[Any]:
        """E's inputs with its weight operand fake-quantized (cached per weight)."""
        args = list(ins)
        axis = weight_channel_axis(node)
        if axis is not None and len(node.inputs) > 1 and node.inputs[1] in self.graph.weights:
            name = node.inputs[1]
            if name not in self.fake_weights:
                self.fake_weights[name] = fake_quant_operand(self.graph.weights[name], axis)
            args[1] = self.fake_weights[name]
        return args

    def distances(self, node: Node, ins: Sequence[Any], ref: np.ndarray,
                  candidates: np.ndarray) -> np.ndarray:
        """The distance of E's output from `ref` for every candidate threshold.

        When E treats samples independently, candidates are stacked on the batch axis (a deep
        Conv then runs as a few large GEMMs) and large tensors are split by samples, so that one
        call holds about CHUNK_BYTES of quantized inputs and outputs.
        """
        quantized = [i for i, t in enumerate(node.inputs) if t in self.table and t not in self.graph.weights]
        if _selects_values(self.graph, node, {node.inputs[i] for i in quantized}):
            return self._selected_distances(ref, candidates)
        args = self.weights(node, ins)
        fn = lookup(node.op_type, self.opset)
        samples, batch = self.samples, len(ref) // self.samples
        one = (2 * ref.nbytes + sum(ins[i].nbytes for i in quantized)) // samples
        # Stacked on axis 0 only when every activation input is one of the quantized ones.
        stack = _stackable(node, ref.ndim) and \
            len(quantized) == len(self.graph.activation_inputs(node))
        per_call = max(1, CHUNK_BYTES // max(one, 1)) if stack else samples
        count = min(samples, per_call)                        # samples per call
        group = max(1, per_call // samples) if count == samples else 1   # candidates per call
        l2 = np.empty((len(candidates), samples))
        for s0 in range(0, samples, count):
            rows = slice(s0 * batch, (s0 + count) * batch)
            part = {i: ins[i][rows] for i in quantized}
            buffers = {i: np.empty((min(group, len(candidates)),) + x.shape, np.float32)
                       for i, x in part.items()}
            for c0 in range(0, len(candidates), group):
                chosen = candidates[c0:c0 + group]
                call = list(args)
                for i, x in part.items():
                    for j, c in enumerate(chosen):
                        th.fake_quant_int8(x, c, out=buffers[i][j])
                    call[i] = buffers[i][:len(chosen)].reshape((-1,) + x.shape[1:])
                out = as_tuple(fn(*call, **node.attrs))[0]
                if any(np.may_share_memory(out, a) for a in call if isinstance(a, np.ndarray)):
                    out = out.copy()      # a view of an input (Reshape-like E): keep inputs intact
                sub = ref[rows]
                l2[c0:c0 + len(chosen), s0:s0 + count] = th.l2_distances(
                    sub, out.reshape((len(chosen), len(sub) // batch) + (-1,)))
        return th.mean_relative_distances(l2, th.l1_norms(ref, samples))

    def _selected_distances(self, ref: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """distances() for an E that only selects values: each candidate quantizes E's FP32
        output instead of its inputs, and E does not run (a pooling E has fewer values to touch);
        about CHUNK_BYTES of samples at a time."""
        rows = ref.reshape(self.samples, -1)
        count = max(1, min(self.samples, CHUNK_BYTES // max(rows[0].nbytes, 1)))
        out = np.empty((count, rows.shape[1]), np.float32)
        l2 = np.empty((len(candidates), self.samples))
        for s0 in range(0, self.samples, count):
            part = rows[s0:s0 + count]
            q = out[:len(part)]
            for k, c in enumerate(candidates):
                th.fake_quant_errors(part, c, out=q)          # the differences l2_distances takes
                l2[k, s0:s0 + len(part)] = th.l2_norms(q[None])[0]
        return th.mean_relative_distances(l2, th.l1_norms(ref, self.samples))


@dataclass(eq=False)
class _Part:
    """Some candidate thresholds of one producer, as seen by one op; `run` gives their distances."""

    op: str
    target: str
    candidates: np.ndarray
    run: Callable[[], np.ndarray]


def _inline(job: Callable[[], Any]) -> Any:
    with inline():                # the op's blocks stay on this worker: each core has a job
        return job()


def _best(parts: list[_Part], distances: list[np.ndarray]) -> dict[str, float]:
    """{producer: best candidate} over the parts of one op (in candidate order per producer)."""
    found: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for part, d in zip(parts, distances):
        c, ds = found.setdefault(part.target, ([], []))
        c.append(part.candidates)
        ds.append(d)
    return {t: float(np.concatenate(c)[th.best_candidate(np.concatenate(ds))])
            for t, (c, ds) in found.items()}


def tune_table(graph: Graph, table: CalibrationTable, feeds: dict[str, np.ndarray], *,
               steps: int = th.TUNE_STEPS, progress: ProgressFn | None = None) -> int:
    """Raise the thresholds of `table` in place by the auto-tuner on the samples stacked in
    `feeds` (one sample = the model's batch size); returns the number of samples.

    The evaluations run on worker threads while the FP32 forward goes on, each op's candidates
    split over the workers; the forward waits whenever more than one op per worker is in flight
    (any op finishing lets it go on), so only a few ops' inputs and outputs are held at any time.
    """
    batch = max(1, int(graph.inputs[0].shape[0]))
    samples = max(1, len(next(iter(feeds.values()))) // batch)
    evaluated = sum(1 for n in graph.nodes if any(t in table for t in graph.activation_inputs(n)))
    workers = THREADS
    with blas_single_threaded() if workers > 1 else contextlib.nullcontext(), \
            Progress(progress, "calibration tuning", evaluated) as p:
        pool = ThreadPoolExecutor(workers, thread_name_prefix="tpushell-tune") if workers > 1 else None
        in_flight: list[tuple[list[_Part], list[Future]]] = []

        def apply(parts: list[_Part], distances: list[np.ndarray]) -> None:
            for target, best in _best(parts, distances).items():
                row = table.rows[target]
                row.threshold = max(row.threshold, best)
            p.advance()

        def settle(limit: int) -> None:
            """Apply finished ops until at most `limit` are in flight."""
            while in_flight:
                for op in [op for op in in_flight if all(f.done() for f in op[1])]:
                    in_flight.remove(op)
                    apply(op[0], [f.result() for f in op[1]])
                if len(in_flight) <= limit:
                    return
                wait([f for _, fs in in_flight for f in fs if not f.done()], return_when=FIRST_COMPLETED)

        def submit(parts: list[_Part]) -> None:
            if pool is None:
                apply(parts, [part.run() for part in parts])
                return
            in_flight.append((parts, [pool.submit(_inline, part.run) for part in parts]))
            settle(workers)

        try:
            run(graph, feeds, observers=[_Tuner(graph, table, samples, steps, submit, parts=workers)])
            settle(0)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    return samples
