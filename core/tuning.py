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

from typing import Any, Sequence

import numpy as np

from . import thresholds as th
from .interpreter import run
from .ir import Graph, Node
from .ops import DEFAULT_OPSET, as_tuple, lookup
from .progress import Progress, ProgressFn
from .quantmath import fake_quant_weights
from .tables import CalibrationTable

# Bytes of candidate inputs + outputs evaluated in one call of the op.
CHUNK_BYTES = 64 << 20
# Ops that treat every item of axis 0 independently, so candidates can be stacked on it.
PER_SAMPLE_OPS = {"Conv", "ConvTranspose", "Relu", "LeakyRelu", "PRelu", "MaxPool", "AveragePool",
                  "GlobalAveragePool", "GlobalMaxPool", "Sigmoid", "Tanh", "Clip", "HardSigmoid",
                  "HardSwish", "Softplus", "Elu", "Selu", "Abs", "Neg", "Exp", "Log", "Sqrt", "Erf",
                  "BatchNormalization", "Resize", "Upsample", "Add", "Sub", "Mul", "Div", "Max",
                  "Min", "Pad", "Softmax"}


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
    if node.op_type == "Concat":
        return node.attrs.get("axis", 0) % max(ndim, 1) != 0
    return node.op_type in PER_SAMPLE_OPS


class _Tuner:
    """The observer that tunes the producers of each op as the FP32 forward reaches it."""

    def __init__(self, graph: Graph, table: CalibrationTable, samples: int, steps: int,
                 progress: Progress) -> None:
        self.graph, self.table, self.samples, self.steps = graph, table, samples, steps
        self.progress = progress
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
        if isinstance(outs[0], np.ndarray) and outs[0].dtype.kind == "f":
            targets = pre[:1] if all(t in self.tuned for t in pre) else \
                [t for t in pre if t not in self.tuned]
            for target in targets:
                self.tune(node, ins, outs[0], target)
                self.tuned.add(target)
        self.progress.advance()

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

    def tune(self, node: Node, ins: Sequence[Any], ref: np.ndarray, target: str) -> None:
        row = self.table.rows[target]
        candidates = th.tune_candidates(self.kld[target], max(abs(row.min), abs(row.max)), self.steps)
        if candidates is None:
            return
        distances = self.distances(node, ins, ref, candidates)
        best = float(candidates[th.best_candidate(distances)])
        if best > row.threshold:
            row.threshold = best

    def distances(self, node: Node, ins: Sequence[Any], ref: np.ndarray,
                  candidates: np.ndarray) -> np.ndarray:
        """The distance of E's output from `ref` for every candidate threshold."""
        args = self.weights(node, ins)
        quantized = [i for i, t in enumerate(node.inputs) if t in self.table and t not in self.graph.weights]
        fn = lookup(node.op_type, self.opset)
        per_candidate = ref.nbytes + sum(args[i].nbytes for i in quantized)
        chunk = max(1, CHUNK_BYTES // max(per_candidate, 1)) if _stackable(node, ref.ndim) else 1
        result = []
        for start in range(0, len(candidates), chunk):
            group = candidates[start:start + chunk]
            call = list(args)
            for i in quantized:
                call[i] = np.concatenate([th.fake_quant_int8(ins[i], c) for c in group])
            out = as_tuple(fn(*call, **node.attrs))[0].reshape((len(group),) + ref.shape)
            result += [th.relative_l2_distance(ref, o, self.samples) for o in out]
        return np.array(result)


def tune_table(graph: Graph, table: CalibrationTable, feeds: dict[str, np.ndarray], *,
               steps: int = th.TUNE_STEPS, progress: ProgressFn | None = None) -> int:
    """Raise the thresholds of `table` in place by the auto-tuner on the samples stacked in
    `feeds` (one sample = the model's batch size); returns the number of samples."""
    batch = max(1, int(graph.inputs[0].shape[0]))
    samples = max(1, len(next(iter(feeds.values()))) // batch)
    evaluated = sum(1 for n in graph.nodes
                    if any(t in table for t in graph.activation_inputs(n)))
    with Progress(progress, "calibration tuning", evaluated) as p:
        run(graph, feeds, observers=[_Tuner(graph, table, samples, steps, p)])
    return samples
