"""The reference's canonical graph: ONNX patterns fused into its Top ops, named as it names them.

    canonicalize(graph)       # in place, after constant folding and BatchNorm folding

TPU-MLIR's calibration tables and qtables name the tensors of its Top dialect, which is not the
ONNX graph: its import fuses x*sigmoid(x) into one SiLU named after the Mul, Paddle's
Add+Clip+Mul+Div into a HardSwish named after the Div, the LayerNorm subgraph into one op, and
turns scalar Mul/Add into MulConst/AddConst (reference K, `tpu-mlir-opset.md` sections 2-3).
Doing the same here makes tables and qtables interchangeable on every model, and gives each
fused op the reference's INT8 rule (one lookup table for SiLU, not Sigmoid then Mul).
The passes, in the reference's order:

1. what its ONNX simplifier changes in names (`simplify`): an Identity producing a graph output
   renames its producer, a per-channel Add folds into the bias of a bias-less Conv (the Conv
   keeps its name), MatMul + Add of a 2-D weight becomes a Gemm named after the Add, and
   attribute-less duplicates (same op, same inputs) are merged;
2. its ONNX pattern rewriter (`onnx_patterns`): LayerNorm, HardSigmoid, HardSwish (both forms)
   and GELU (erf and tanh forms), matched only as consecutive runs of nodes in file order, as
   the reference matches them, and named `<output of the last node>_<new ONNX op type>`;
3. its converter (`convert`): op for op, names kept (Transpose -> Permute, Gemm -> MatMul,
   x - c -> AddConst(-c), x / c -> MulConst(1/c), Clip(0, m) -> Relu, GlobalAveragePool ->
   AvgPool, nearest integer Resize -> Upsample, Split -> Slices, ConvTranspose -> Deconv, ...);
4. its Top canonicalization (`top_patterns`), to a fixpoint: SiLU, MulConst / AddConst (and
   their removal when they do nothing), per-channel Mul/Add -> Scale and Scale merges, a
   MulConst merged into the Conv or MatMul before it, MatMul + bias, Focus slices ->
   Depth2Space, ReduceMean over H, W -> AvgPool, and the permute moved past a QKV split.

Every op a pass removes is remembered in `meta["canonical_names"]` (raw name -> the canonical
op it became), so names typed from the ONNX file still resolve.
"""
from __future__ import annotations

from .convert import convert
from .ir import Graph
from .onnx_patterns import onnx_patterns, simplify
from .passes import record_shapes, remove_unused_weights
from .top_patterns import top_patterns


def canonicalize(graph: Graph) -> Graph:
    """The reference's canonical graph of `graph`, in place (see the module docstring)."""
    simplify(graph)
    onnx_patterns(graph)
    convert(graph)
    record_shapes(graph)
    top_patterns(graph)
    remove_unused_weights(graph)
    record_shapes(graph)
    return graph
