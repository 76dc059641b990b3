"""The auto-tuner of the reference calibrator (tpu-mlir-reference.md C.4, v1.3 flavour).

    tune_table(graph, table, feeds)   # raises KLD thresholds in place; feeds = the tuning samples

Walking the ops in order, each op E re-evaluates the threshold of its producers: every activation
input of E is fake-quantized to signed int8 with a candidate threshold (kld + k*(absmax-kld)/20,
k = 0..20), E runs alone with per-channel fake-quantized weights, and the candidate whose output is
closest to E's FP32 output (||ref-out||_2 / ||ref||_1, averaged over the samples) wins if it is a
strict improvement. A threshold is only ever raised. Graph outputs have no consumer, so they are
never tuned. The FP32 reference tensors come from one forward over the tuning samples whose
observer does the tuning, so only the interpreter's live tensors are held at any time.
"""
from __future__ import annotations

import contextlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np

from . import thresholds as th
from .interpreter import run
from .ir import Graph, Node
from .ops import DEFAULT_OPSET, as_tuple, lookup
from .progress import Progress, ProgressFn
from .quantmath import fake_quant_weights
from .tables import CalibrationTable
from .ops.parallel import THREADS, blas_single_threaded, inline

# Bytes of candidate inputs + outputs evaluated in one call of the op (per worker thread).
CHUNK_BYTES = 32 << 20
# Ops that treat every item of axis 0 independently, so candidates can be stacked on it.
PER_SAMPLE_OPS = {"Conv", "ConvTranspose", "Relu", "LeakyRelu", "PRelu", "MaxPool", "AveragePool",
                  "GlobalAveragePool", "GlobalMaxPool", "Sigmoid", "Tanh", "Clip", "HardSigmoid",
                  "HardSwish", "Softplus", "Elu", "Selu", "Abs", "Neg", "Exp", "Log", "Sqrt", "Erf",
                  "BatchNormalization", "Resize", "Upsample", "Add", "Sub", "Mul", "Div", "Max",
                  "Min", "Concat", "Softmax", "LogSoftmax"}


def weight_channel_axis(node: Node) -> int | None:
    """Output-channel axis of the op's weight operand (input 1), None when it has no such weight."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
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
    proposal, so the evaluations can run in any order, on any thread.
    """

    def __init__(self, graph: Graph, table: CalibrationTable, samples: int, steps: int,
                 submit: Callable[[Callable[[], list[tuple[str, float]]]], None]) -> None:
        self.graph, self.table, self.samples, self.steps = graph, table, samples, steps
        self.submit = submit
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
        self.submit(lambda: [(t, self.tune(node, ins, ref, t)) for t in targets])

    def tune(self, node: Node, ins: Sequence[Any], ref: np.ndarray, target: str) -> float:
        """The best candidate threshold for `target` as seen by E = `node` (its KLD if untuned)."""
        row = self.table.rows[target]
        candidates = th.tune_candidates(self.kld[target], max(abs(row.min), abs(row.max)), self.steps)
        if candidates is None:
            return self.kld[target]
        return float(candidates[th.best_candidate(self.distances(node, ins, ref, candidates))])

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
        args = self.weights(node, ins)
        quantized = [i for i, t in enumerate(node.inputs) if t in self.table and t not in self.graph.weights]
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


def _inline(job: Callable[[], Any]) -> Any:
    with inline():                # the op's blocks stay on this worker: each core has a job
        return job()


def tune_table(graph: Graph, table: CalibrationTable, feeds: dict[str, np.ndarray], *,
               steps: int = th.TUNE_STEPS, progress: ProgressFn | None = None) -> int:
    """Raise the thresholds of `table` in place by the auto-tuner on the samples stacked in
    `feeds` (one sample = the model's batch size); returns the number of samples.

    The evaluations run on worker threads, at most one queued per worker, while the FP32 forward
    goes on; each holds only its op's inputs and output.
    """
    batch = max(1, int(graph.inputs[0].shape[0]))
    samples = max(1, len(next(iter(feeds.values()))) // batch)
    evaluated = sum(1 for n in graph.nodes if any(t in table for t in graph.activation_inputs(n)))
    workers = THREADS
    with blas_single_threaded() if workers > 1 else contextlib.nullcontext(), \
            Progress(progress, "calibration tuning", evaluated) as p:
        pool = ThreadPoolExecutor(workers, thread_name_prefix="tpushell-tune") if workers > 1 else None
        pending: deque = deque()

        def apply(proposals: list[tuple[str, float]]) -> None:
            for target, best in proposals:
                row = table.rows[target]
                row.threshold = max(row.threshold, best)
            p.advance()

        def submit(job: Callable[[], list[tuple[str, float]]]) -> None:
            if pool is None:
                apply(job())
                return
            pending.append(pool.submit(_inline, job))
            while len(pending) > workers or (pending and pending[0].done()):
                apply(pending.popleft().result())

        try:
            run(graph, feeds, observers=[_Tuner(graph, table, samples, steps, submit)])
            while pending:
                apply(pending.popleft().result())
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    return samples
