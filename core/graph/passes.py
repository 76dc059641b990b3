"""Graph passes run at import: cut at outputs, fold constants and shapes, fold BN.

Each pass edits the graph in place and returns True when it changed something. `meta["onnx_names"]`
(IR tensor name -> ONNX tensor name holding the same values) is kept up to date, so that a model
can be checked tensor by tensor against onnxruntime on the original file.
"""
from __future__ import annotations

import numpy as np

from ..errors import ModelError, did_you_mean
from ..ops.conv import bn_factor
from .interpreter import run
from .ir import Graph, Node
from .rewrite import redirect


def cut_outputs(graph: Graph, outputs: list[str]) -> bool:
    """Make `outputs` the graph outputs and drop every node not needed for them."""
    known = set(graph.tensor_names())
    for t in outputs:
        if t not in known:
            raise ModelError(f"--output_names: no tensor '{t}' in model '{graph.name}'"
                             f"{did_you_mean(t, known)}")
    keep = {n.name for n in graph.upstream(outputs)}
    before = len(graph.nodes)
    graph.nodes = [n for n in graph.nodes if n.name in keep]
    graph.outputs = list(outputs)
    graph.changed()
    remove_unused_weights(graph)
    return len(graph.nodes) != before


def remove_unused_weights(graph: Graph) -> None:
    used = {t for n in graph.nodes for t in n.inputs}
    graph.weights = {k: v for k, v in graph.weights.items() if k in used}


def _run_on_zeros(graph: Graph, observe) -> None:
    feeds = {t.name: np.zeros(t.shape, dtype=t.dtype) for t in graph.inputs}
    with np.errstate(all="ignore"):
        run(graph, feeds, graph.outputs, observers=[observe])


def record_shapes(graph: Graph) -> None:
    """Record the static shape and dtype of every activation tensor (one run on zeros)."""
    shapes = {t.name: tuple(t.shape) for t in graph.inputs}
    dtypes = {t.name: t.dtype for t in graph.inputs}

    def observe(node: Node, ins, outs) -> None:
        for t, v in zip(node.outputs, outs):
            shapes[t] = tuple(int(d) for d in v.shape)
            dtypes[t] = str(v.dtype)

    _run_on_zeros(graph, observe)
    graph.shapes, graph.dtypes = shapes, dtypes


def fold_constants(graph: Graph) -> bool:
    """Evaluate every node whose value cannot depend on the input data, record all shapes.

    Runs the graph once on zeros: a tensor is constant when it comes from `Shape` (static shapes)
    or from a node whose inputs are all constant. Constant tensors become weights and their
    producers vanish; every remaining tensor's static shape and dtype are recorded.
    """
    constant: dict[str, np.ndarray] = {}
    shapes: dict[str, tuple[int, ...]] = {t.name: tuple(t.shape) for t in graph.inputs}
    dtypes: dict[str, str] = {t.name: t.dtype for t in graph.inputs}

    def observe(node: Node, ins, outs) -> None:
        is_const = node.op_type == "Shape" or node.op_type == "Size" or all(
            (not t) or t in graph.weights or t in constant for t in node.inputs)
        for t, v in zip(node.outputs, outs):
            shapes[t] = tuple(int(d) for d in v.shape)
            dtypes[t] = str(v.dtype)
            if is_const:
                constant[t] = np.array(v, copy=True)

    _run_on_zeros(graph, observe)
    folded = [n for n in graph.nodes if all((not t) or t in constant for t in n.outputs)]
    for node in folded:
        for t in node.outputs:
            if t in graph.outputs:
                raise ModelError(f"graph output '{t}' does not depend on the model input")
            graph.weights[t] = constant[t]
    names = {n.name for n in folded}
    graph.nodes = [n for n in graph.nodes if n.name not in names]
    graph.changed()
    remove_unused_weights(graph)
    graph.shapes = {t: s for t, s in shapes.items() if t not in graph.weights}
    graph.dtypes = {t: d for t, d in dtypes.items() if t not in graph.weights}
    return bool(folded)


def remove_identities(graph: Graph) -> bool:
    """Drop Identity and inference Dropout nodes (their readers read the source tensor)."""
    changed = False
    for node in list(graph.nodes):
        if node.op_type in ("Identity", "Dropout") and node.outputs[0] not in graph.outputs \
                and len([o for o in node.outputs if o]) == 1:
            redirect(graph, node.outputs[0], node.inputs[0])
            graph.nodes.remove(node)
            changed = True
    if changed:
        graph.changed()
    return changed


def fold_batchnorm(graph: Graph) -> bool:
    """Fold BatchNormalization into the Conv before it, in float32 like the reference's import.

    W' = W * f and b' = (b - mean) * f + beta with f = scale / sqrt(var + eps), every step
    rounded to float32: folding in float64 flips some INT8 codes of the reference's results.
    The Conv keeps its name; readers of the BN output read the Conv output.
    """
    changed = False
    onnx_names = graph.meta.setdefault("onnx_names", {})
    for bn in [n for n in graph.nodes if n.op_type == "BatchNormalization"]:
        conv = graph.producer(bn.inputs[0])
        if (conv is None or conv.op_type != "Conv" or len(graph.consumers(conv.outputs[0])) != 1
                or conv.outputs[0] in graph.outputs
                or not all(t in graph.weights for t in conv.inputs[1:] + bn.inputs[1:] if t)):
            continue
        scale, beta, mean, var = (graph.weights[t] for t in bn.inputs[1:5])
        f = bn_factor(scale, var, bn.attrs.get("epsilon", 1e-5))
        w = graph.weights[conv.inputs[1]].astype(np.float32)
        m = w.shape[0]
        has_bias = len(conv.inputs) > 2 and conv.inputs[2]
        b = graph.weights[conv.inputs[2]].astype(np.float32) if has_bias else np.zeros(m, np.float32)
        w_new = (w * f.reshape((m,) + (1,) * (w.ndim - 1))).astype(np.float32)
        b_new = ((b - mean.astype(np.float32)) * f + beta.astype(np.float32)).astype(np.float32)
        w_name, b_name = conv.name + "_filter", conv.name + "_bias"
        graph.weights[w_name] = w_new
        graph.weights[b_name] = b_new
        conv.inputs = [conv.inputs[0], w_name, b_name]
        redirect(graph, bn.outputs[0], conv.outputs[0])
        if bn.outputs[0] in onnx_names:
            onnx_names[conv.outputs[0]] = onnx_names.pop(bn.outputs[0])
        graph.nodes.remove(bn)
        graph.changed()
        changed = True
    remove_unused_weights(graph)
    return changed


def batch_agnostic_reshapes(graph: Graph) -> bool:
    """Let Reshape targets copy the batch dimension (0) so a batch-1 model runs N samples."""
    changed = False
    for node in graph.nodes:
        if node.op_type != "Reshape" or node.attrs.get("allowzero", 0):
            continue
        src = graph.shapes.get(node.inputs[0])
        target = graph.weights.get(node.inputs[1])
        if src is None or target is None or target.size == 0 or len(src) == 0:
            continue
        if int(target[0]) == src[0] and src[0] == graph.inputs[0].shape[0]:
            new = target.astype(np.int64).copy()
            new[0] = 0
            name = node.name + "_shape"
            graph.weights[name] = new
            node.inputs = [node.inputs[0], name]
            changed = True
    if changed:
        remove_unused_weights(graph)
        graph.changed()
    return changed


def prune_onnx_names(graph: Graph) -> bool:
    """Forget ONNX names of tensors that no longer exist (cut, folded or fused away)."""
    names = graph.meta.get("onnx_names")
    if names is None:
        return False
    live = set(graph.tensor_names())
    graph.meta["onnx_names"] = {k: v for k, v in names.items() if k in live}
    return len(graph.meta["onnx_names"]) != len(names)
