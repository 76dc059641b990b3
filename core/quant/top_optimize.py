"""The reference's bm1684x processor-top-optimize (tpu-mlir-opset.md 4.2): graph rewrites that run
after the calibration table is read and before threshold propagation, so they see calibrated
ranges and the ops they create carry ranges of the ops they replace.

    g2, ranges2, renamed, replaced = optimize(graph, table_ranges)

- MergeScale2Conv: a Scale after a single-use Conv without relu folds into the Conv, which takes
  the Scale's name, relu flag and range (its own range is dropped).
- ConvertScaleOp: any other Scale on a 3-D or 4-D tensor becomes a 1x1 depthwise Conv.
- SplitMatMul: a MatMul by a weight whose output goes (through at most one Reshape) only into
  Slices becomes one MatMul per slice (`<mm>_matmul_<k>`), each with its own weight slice and the
  original's range, and a Reshape (`<mm>_reshape_<k>`) where the slice fed a Squeeze or Reshape.

`renamed` maps a graph tensor to the tensor holding its value in the new graph (for outputs and
per-layer comparisons); `replaced` maps an op that is gone to the ops that compute it now (so a
qtable naming it still applies).
"""
from __future__ import annotations

import numpy as np

from ..graph.ir import Graph, Node
from ..graph.rewrite import single_use, sole_reader, weight
from .ranges import Ranges


def optimize(graph: Graph, ranges: Ranges) -> tuple[Graph, Ranges, dict[str, str], dict[str, list[str]]]:
    """The rewritten copy of `graph` and its ranges (see the module docstring)."""
    g, r = graph.copy(), dict(ranges)
    renamed: dict[str, str] = {}
    replaced: dict[str, list[str]] = {}
    for node in [n for n in g.nodes if n.op_type == "Scale"]:
        if not _merge_scale_into_conv(g, r, node, replaced):
            _scale_to_depthwise(g, node)
    for node in [n for n in g.nodes if n.op_type == "MatMul"]:
        _split_matmul(g, r, node, renamed, replaced)
    g.changed()
    return g, r, renamed, replaced


def _scale_weights(g: Graph, node: Node) -> tuple[np.ndarray, np.ndarray] | None:
    if len(node.inputs) < 3 or not all(t in g.weights for t in node.inputs[1:3]):
        return None
    return (np.asarray(g.weights[node.inputs[1]], np.float32).reshape(-1),
            np.asarray(g.weights[node.inputs[2]], np.float32).reshape(-1))


def _merge_scale_into_conv(g: Graph, r: Ranges, node: Node, replaced: dict) -> bool:
    conv = g.producer(node.inputs[0])
    params = _scale_weights(g, node)
    if conv is None or conv.op_type != "Conv" or conv.attrs.get("_relu") or params is None \
            or not single_use(g, conv.outputs[0]) or conv.inputs[1] not in g.weights \
            or any(t not in g.weights for t in conv.inputs[2:] if t):
        return False
    s, b = params
    w = np.asarray(g.weights[conv.inputs[1]], np.float32)
    bias = np.asarray(g.weights[conv.inputs[2]], np.float32) if len(conv.inputs) > 2 and conv.inputs[2] \
        else np.zeros(w.shape[0], np.float32)
    new_w = (w * s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
    new_b = (bias * s + b).astype(np.float32)
    conv.inputs = [conv.inputs[0], weight(g, f"{node.name}_filter", new_w), weight(g, f"{node.name}_bias", new_b)]
    if node.attrs.get("_relu"):
        conv.attrs = {**conv.attrs, "_relu": 1}
    r.pop(conv.outputs[0], None)
    replaced[conv.name] = [node.name]
    g.shapes.pop(conv.outputs[0], None)
    conv.outputs = [node.outputs[0]]
    conv.name = node.name
    g.nodes.remove(node)
    g.changed()
    return True


def _scale_to_depthwise(g: Graph, node: Node) -> None:
    params = _scale_weights(g, node)
    shape = g.shapes.get(node.inputs[0], ())
    if params is None or len(shape) not in (3, 4):
        return
    s, b = params
    spatial = len(shape) - 2
    node.op_type = "Conv"
    node.inputs = [node.inputs[0], weight(g, f"{node.name}_filter", s.reshape((-1, 1) + (1,) * spatial)),
                   weight(g, f"{node.name}_bias", b)]
    node.attrs = {"group": int(shape[1]), "kernel_shape": [1] * spatial,
                  **{k: v for k, v in node.attrs.items() if k == "_relu"}}


def _slice_span(g: Graph, s: Node, axis_from: int) -> tuple[int, int] | None:
    """(offset, width) of a Slice along the dims from `axis_from` on, in flat elements of those
    dims, when it cuts exactly one contiguous block there; else None."""
    src, dst = g.shapes.get(s.inputs[0]), g.shapes.get(s.outputs[0])
    if src is None or dst is None or len(src) != len(dst):
        return None
    if tuple(src[:axis_from]) != tuple(dst[:axis_from]):
        return None
    ws = [g.weights.get(t) if t else None for t in s.inputs[1:5]]
    if len(ws) < 2 or ws[0] is None or ws[1] is None:
        return None
    axes = ws[2].tolist() if len(ws) > 2 and ws[2] is not None else list(range(len(ws[0])))
    steps = ws[3].tolist() if len(ws) > 3 and ws[3] is not None else [1] * len(axes)
    if any(k != 1 for k in steps):
        return None
    cut = [i for i in range(len(src)) if src[i] != dst[i]]
    if len(cut) != 1 or cut[0] < axis_from:
        return None
    a = cut[0]
    start = next(int(st) % src[a] for ax, st in zip(axes, ws[0].tolist()) if ax % len(src) == a)
    inner = int(np.prod(src[a + 1:], dtype=np.int64))
    return start * inner, int(np.prod(dst[axis_from:], dtype=np.int64))


def _split_matmul(g: Graph, r: Ranges, mm: Node, renamed: dict, replaced: dict) -> None:
    if len(mm.inputs) < 2 or mm.inputs[1] not in g.weights or mm.inputs[0] in g.weights:
        return
    out = mm.outputs[0]
    if out in g.outputs:
        return
    readers = g.consumers(out)
    reshape = None
    if len(readers) == 1 and readers[0].op_type == "Reshape" and readers[0].outputs[0] not in g.outputs:
        reshape = readers[0]
        readers = g.consumers(reshape.outputs[0])
    source = reshape.outputs[0] if reshape is not None else out
    if not readers or any(s.op_type != "Slice" or s.inputs[0] != source for s in readers):
        return
    mm_shape = g.shapes[out]
    spans = [_slice_span(g, s, len(mm_shape) - 1) for s in readers]
    if any(sp is None for sp in spans) or sum(sp[1] for sp in spans) != mm_shape[-1]:
        return
    order = sorted(range(len(readers)), key=lambda i: spans[i][0])
    w = np.asarray(g.weights[mm.inputs[1]], np.float32)
    bias = g.weights.get(mm.inputs[2]) if len(mm.inputs) > 2 and mm.inputs[2] else None
    at = g.nodes.index(mm)
    new_nodes, k = [], 0
    for i in order:
        s = readers[i]
        lo, width = spans[i]
        k += 1
        name = f"{mm.name}_matmul_{k}"
        inputs = [mm.inputs[0], weight(g, f"{mm.name}_filter_{k}", np.ascontiguousarray(w[..., lo:lo + width]))]
        if bias is not None:
            inputs.append(weight(g, f"{mm.name}_bias_{k}", np.ascontiguousarray(
                np.asarray(bias, np.float32)[..., lo:lo + width])))
        new_nodes.append(Node(name, "MatMul", inputs, [name], dict(mm.attrs)))
        g.shapes[name] = tuple(mm_shape[:-1]) + (width,)
        g.dtypes[name] = "float32"
        r[name] = r[out] if out in r else r.get(name)
        target = s
        nxt = sole_reader(g, s.outputs[0], ("Squeeze", "Reshape"))
        if nxt is not None or len(g.shapes[s.outputs[0]]) != len(mm_shape):
            target = nxt if nxt is not None else s
            rname = f"{mm.name}_reshape_{k}"
            shape = np.array(g.shapes[target.outputs[0]], np.int64)
            g.shapes[rname] = tuple(int(d) for d in shape)
            shape[0] = 0          # the batch copied: a working set of N samples runs at once
            new_nodes.append(Node(rname, "Reshape", [name, weight(g, f"{rname}_shape", shape)], [rname], {}))
            g.dtypes[rname] = "float32"
            if nxt is not None:
                k += 1
        else:
            rname = name
        _replace_tensor(g, target.outputs[0], rname)
        renamed[target.outputs[0]] = rname
        for gone in ([s, nxt] if nxt is not None else [s]):
            g.nodes.remove(gone)
            replaced[gone.name] = [name]
    for gone in [reshape, mm]:
        if gone is not None:
            g.nodes.remove(gone)
    replaced[mm.name] = [n.name for n in new_nodes if n.op_type == "MatMul"]
    for i, n in enumerate(new_nodes):
        g.nodes.insert(at + i, n)
    g.changed()
    g.sort()


def _replace_tensor(g: Graph, old: str, new: str) -> None:
    for node in g.nodes:
        node.inputs = [new if t == old else t for t in node.inputs]
    g.outputs = [new if t == old else t for t in g.outputs]
