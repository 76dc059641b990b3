"""The reference's Top canonicalization (`tpu-mlir-opset.md` section 3), applied to a fixpoint.

A rewrite that swallows a consumer takes the consumer's name (SiLU is named after its Mul, a
Conv that absorbed a MulConst after the MulConst, a MatMul that absorbed its bias Add after the
Add), as the reference keeps the location of the op it replaces.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .ir import Graph, Node
from .rewrite import drop, rename_output, scalar, single_use, sole_reader, take_over, weight

# A MulConst this close to 1, or an AddConst of 0, is the identity and removed (as the reference).
MULCONST_ONE = 2e-5


def top_patterns(graph: Graph) -> None:
    """Apply every pattern until none changes the graph."""
    for _ in range(len(graph.nodes) + 1):
        changed = False
        for pattern in PATTERNS:
            for node in list(graph.nodes):
                if node in graph.nodes and pattern(graph, node):
                    changed = True
                    graph.changed()
        if not changed:
            return


def _mul_to_silu(graph: Graph, node: Node) -> bool:
    """Mul(a, Sigmoid(a)) with the Sigmoid read only there -> SiLU(a), the Mul's name."""
    if node.op_type != "Mul" or len(node.inputs) != 2:
        return False
    for i, t in enumerate(node.inputs):
        sig = graph.producer(t)
        other = node.inputs[1 - i]
        if sig is not None and sig.op_type == "Sigmoid" and single_use(graph, t) \
                and sig.inputs[0] == other and other not in graph.weights:
            graph.nodes.remove(sig)
            graph.shapes.pop(t, None)
            graph.meta.get("onnx_names", {}).pop(t, None)
            node.op_type, node.inputs, node.attrs = "SiLU", [other], {}
            graph.meta.setdefault("canonical_names", {})[sig.name] = node.name
            return True
    return False


def _scalar_operand(graph: Graph, node: Node) -> tuple[str, float] | None:
    if len(node.inputs) != 2:
        return None
    for i, t in enumerate(node.inputs):
        c = scalar(graph, t)
        if c is not None and node.inputs[1 - i] not in graph.weights:
            return node.inputs[1 - i], c
    return None


CONST_OPS = {"Mul": "MulConst", "Add": "AddConst"}


def _to_const_op(graph: Graph, node: Node) -> bool:
    """Mul / Add with a one-element weight -> MulConst / AddConst (a fused Relu kept)."""
    found = _scalar_operand(graph, node) if node.op_type in CONST_OPS else None
    if found is None:
        return False
    x, c = found
    node.op_type, node.inputs = CONST_OPS[node.op_type], [x]
    node.attrs = {"const_val": c, **{k: v for k, v in node.attrs.items() if k == "_relu"}}
    return True


def _remove_identity_consts(graph: Graph, node: Node) -> bool:
    if node.op_type == "MulConst" and abs(node.attrs["const_val"] - 1) < MULCONST_ONE:
        return drop(graph, node)
    if node.op_type == "AddConst" and node.attrs["const_val"] == 0 and not node.attrs.get("_relu"):
        return drop(graph, node)
    return False


def _channel_weight(graph: Graph, node: Node) -> tuple[str, np.ndarray] | None:
    """(data input, per-channel values [C]) of a 4-D Mul/Add by a weight of C elements laid along
    axis 1, else None."""
    if len(node.inputs) != 2:
        return None
    for i, t in enumerate(node.inputs):
        w = graph.weights.get(t)
        x = node.inputs[1 - i]
        shape = graph.shapes.get(x)
        if w is None or x in graph.weights or shape is None or len(shape) != 4 or w.ndim != 4:
            continue
        c = shape[1]
        if w.size == c and c > 1 and w.shape[1] == c and np.issubdtype(w.dtype, np.floating):
            return x, np.asarray(w, np.float32).reshape(-1)
    return None


def _to_scale(graph: Graph, node: Node) -> bool:
    """4-D Mul/Add by a per-channel weight -> Scale(x, s, 0) / Scale(x, 1, b)."""
    if node.op_type not in ("Mul", "Add"):
        return False
    found = _channel_weight(graph, node)
    if found is None:
        return False
    x, w = found
    ones, zeros = np.ones_like(w), np.zeros_like(w)
    s, b = (w, zeros) if node.op_type == "Mul" else (ones, w)
    node.op_type = "Scale"
    node.inputs = [x, weight(graph, f"{node.name}_scale", s), weight(graph, f"{node.name}_bias", b)]
    node.attrs = {k: v for k, v in node.attrs.items() if k == "_relu"}
    return True


def _scale_params(graph: Graph, node: Node) -> tuple[np.ndarray, np.ndarray] | None:
    if node.op_type != "Scale" or not all(t in graph.weights for t in node.inputs[1:3]):
        return None
    return (np.asarray(graph.weights[node.inputs[1]], np.float32).reshape(-1),
            np.asarray(graph.weights[node.inputs[2]], np.float32).reshape(-1))


def _merge_scales(graph: Graph, node: Node) -> bool:
    """Scale -> Scale (the first read only there) -> one Scale with the second's name."""
    second = _scale_params(graph, node)
    first_node = graph.producer(node.inputs[0]) if second is not None else None
    first = _scale_params(graph, first_node) if first_node is not None else None
    if first is None or first_node.attrs.get("_relu") or not single_use(graph, node.inputs[0]):
        return False
    (s1, b1), (s2, b2) = first, second
    node.inputs = [first_node.inputs[0], weight(graph, f"{node.name}_scale", (s1 * s2).astype(np.float32)),
                   weight(graph, f"{node.name}_bias", (b1 * s2 + b2).astype(np.float32))]
    graph.nodes.remove(first_node)
    graph.shapes.pop(first_node.outputs[0], None)
    graph.meta.setdefault("canonical_names", {})[first_node.name] = node.name
    return True


def _merge_mulconst(graph: Graph, node: Node) -> bool:
    """Conv or weight-MatMul read only by a MulConst: its weights (filter and bias) times c,
    the MulConst gone; the op takes the MulConst's name (weights `<op>__mergeMulConst`)."""
    if node.op_type not in ("Conv", "MatMul") or node.attrs.get("_relu"):
        return False
    mc = sole_reader(graph, node.outputs[0], "MulConst")
    if mc is None or not all(t in graph.weights for t in node.inputs[1:] if t):
        return False
    if node.op_type == "Conv" and len(graph.weights[node.inputs[1]].shape) != 4:
        return False
    c = np.float32(mc.attrs["const_val"])
    node.inputs = [node.inputs[0]] + [
        weight(graph, f"{t}__mergeMulConst", (np.asarray(graph.weights[t], np.float32) * c).astype(np.float32))
        if t else t for t in node.inputs[1:]]
    take_over(graph, node, mc)
    return True


def _matmul_bias(graph: Graph, node: Node) -> bool:
    """MatMul by a weight, no bias yet, read only by an Add of a weight along the last axis: the
    bias joins the MatMul, which takes the Add's name."""
    if node.op_type != "MatMul" or len(node.inputs) != 2 or node.inputs[1] not in graph.weights:
        return False
    add = sole_reader(graph, node.outputs[0], "Add")
    if add is None or add.attrs.get("_relu"):
        return False
    other = add.inputs[1] if add.inputs[0] == node.outputs[0] else add.inputs[0]
    bias = graph.weights.get(other)
    n = graph.weights[node.inputs[1]].shape[-1]
    if bias is None or bias.shape[-1:] != (n,) or bias.size != n:
        return False
    node.inputs = node.inputs + [other]
    take_over(graph, node, add)
    return True


def _concat_to_depth2space(graph: Graph, node: Node) -> bool:
    """The Focus stem: Concat(axis 1) of the b*b stride-b slices of one tensor, read only by a
    group-1 Conv -> Depth2Space (space-to-depth). Slices in another order than 0..k-1 permute
    the conv filter's input blocks (`<filter>_filter_S2D`) and name the op `<concat>_r_Depth2Space`."""
    if node.op_type != "Concat" or int(node.attrs.get("axis", 0)) % 4 != 1:
        return False
    conv = sole_reader(graph, node.outputs[0], "Conv")
    shape = graph.shapes.get(node.outputs[0])
    if conv is None or int(conv.attrs.get("group", 1)) != 1 or shape is None or len(shape) != 4 \
            or conv.inputs[1] not in graph.weights:
        return False
    slices = [graph.producer(t) for t in node.inputs]
    source = {s.inputs[0] for s in slices if s is not None}
    if len(source) != 1 or any(s is None or s.op_type != "Slice" for s in slices):
        return False
    x = source.pop()
    in_shape = graph.shapes.get(x)
    params = [_slice_params(graph, s, in_shape) for s in slices]
    if in_shape is None or any(p is None for p in params):
        return False
    steps = {(p[1][2], p[1][3]) for p in params}
    if len(steps) != 1:
        return False
    bh, bw = steps.pop()
    offsets = [(p[0][2], p[0][3]) for p in params]
    if len(slices) != bh * bw or len(set(offsets)) != len(offsets) or \
            any(o[0] >= bh or o[1] >= bw for o in offsets) or \
            any(p[0][:2] != (0, 0) or p[1][:2] != (1, 1) for p in params):
        return False
    order = [oh * bw + ow for oh, ow in offsets]
    for s in slices:
        if not single_use(graph, s.outputs[0]):
            return False
    for s in slices:
        graph.nodes.remove(s)
        graph.shapes.pop(s.outputs[0], None)
        graph.meta.get("onnx_names", {}).pop(s.outputs[0], None)
        graph.meta.setdefault("canonical_names", {})[s.name] = node.name
    node.op_type, node.inputs = "Depth2Space", [x]
    node.attrs = {"block_h": bh, "block_w": bw, "is_inversed": 1, "is_CRD": 0}
    if order != list(range(len(order))):
        w = np.asarray(graph.weights[conv.inputs[1]])
        c = in_shape[1]
        blocks = [w[:, k * c:(k + 1) * c] for k in range(len(order))]
        new = np.concatenate([blocks[order.index(i)] for i in range(len(order))], axis=1)
        conv.inputs = [conv.inputs[0], weight(graph, f"{conv.name}_filter_S2D", new)] + conv.inputs[2:]
        rename_output(graph, node, f"{node.outputs[0]}_r_Depth2Space")
    return True


def _slice_params(graph: Graph, node: Node, shape) -> tuple[tuple, tuple] | None:
    """(starts, steps) per axis of a Slice with constant parameters on a 4-D tensor."""
    if shape is None or len(shape) != 4 or len(node.inputs) < 3:
        return None
    ws = [graph.weights.get(t) if t else None for t in node.inputs[1:5]]
    if ws[0] is None or ws[1] is None:
        return None
    starts, ends = ws[0].tolist(), ws[1].tolist()
    axes = ws[2].tolist() if len(ws) > 2 and ws[2] is not None else list(range(len(starts)))
    steps = ws[3].tolist() if len(ws) > 3 and ws[3] is not None else [1] * len(starts)
    begin, step = [0, 0, 0, 0], [1, 1, 1, 1]
    for a, s, e, k in zip(axes, starts, ends, steps):
        a %= 4
        if k <= 0:
            return None
        begin[a] = s if s >= 0 else s + shape[a]
        step[a] = k
        if min(e, shape[a]) <= shape[a] - k:       # it must run to the end of the axis
            return None
    return tuple(begin), tuple(step)


def _pointwise_conv(graph: Graph, node: Node) -> bool:
    """A 1x1, stride-1, unpadded, ungrouped Conv with constant weights."""
    if node.op_type != "Conv" or node.inputs[1] not in graph.weights or \
            any(t not in graph.weights for t in node.inputs[2:] if t):
        return False
    w = graph.weights[node.inputs[1]]
    a = node.attrs
    return w.ndim == 4 and w.shape[2:] == (1, 1) and int(a.get("group", 1)) == 1 and \
        not any(a.get("pads") or ()) and all(s == 1 for s in a.get("strides") or [1]) and \
        a.get("auto_pad", "NOTSET") in ("NOTSET", "VALID")


def _merge_pointwise_convs(graph: Graph, node: Node) -> bool:
    """Two 1x1 convolutions in a row, the first without activation and read only by the second:
    one convolution with the second's name (weights `<second>_merge_filter_weight`,
    `_merge_bias_weight`), as the reference merges MobileNetV3's linear and expand convs."""
    if not _pointwise_conv(graph, node):
        return False
    first = graph.producer(node.inputs[0])
    if first is None or not _pointwise_conv(graph, first) or first.attrs.get("_relu") \
            or not single_use(graph, first.outputs[0]):
        return False
    w1 = np.asarray(graph.weights[first.inputs[1]], np.float32)[:, :, 0, 0]
    w2 = np.asarray(graph.weights[node.inputs[1]], np.float32)[:, :, 0, 0]
    b1 = graph.weights.get(first.inputs[2]) if len(first.inputs) > 2 and first.inputs[2] else None
    b2 = graph.weights.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    w = (w2 @ w1).astype(np.float32)[:, :, None, None]
    b = np.zeros(w2.shape[0], np.float32) if b2 is None else np.asarray(b2, np.float32).copy()
    if b1 is not None:
        b = (w2 @ np.asarray(b1, np.float32) + b).astype(np.float32)
    node.inputs = [first.inputs[0], weight(graph, f"{node.name}_merge_filter_weight", w),
                   weight(graph, f"{node.name}_merge_bias_weight", b)]
    graph.nodes.remove(first)
    graph.shapes.pop(first.outputs[0], None)
    graph.meta.get("onnx_names", {}).pop(first.outputs[0], None)
    graph.meta.setdefault("canonical_names", {})[first.name] = node.name
    return True


def _fuse_relu(graph: Graph, node: Node) -> bool:
    """A Relu (clipped or not) after a producer read only there: the producer does it and takes
    the Relu's name (the reference's do_relu)."""
    if node.op_type != "Relu":
        return False
    prod = graph.producer(node.inputs[0])
    if prod is None or prod.op_type not in FUSABLE_RELU or prod.attrs.get("_relu") \
            or not single_use(graph, node.inputs[0]):
        return False
    limit = node.attrs.get("relu_limit", -1.0)
    if limit > 0 and prod.op_type != "Conv":
        return False
    prod.attrs["_relu"] = 1
    if limit > 0:
        prod.attrs["_relu_limit"] = limit
    take_over(graph, prod, node)
    return True


FUSABLE_RELU = ("Conv", "Deconv", "Add", "MatMul", "Scale", "AddConst")


def _permute_past_split(graph: Graph, node: Node) -> bool:
    """MatMul -> Reshape -> Permute (-> Permute) -> n x (Slice of one along an axis -> Squeeze):
    the slices and squeezes move before the permute (`_r_new`), and each squeezed tensor gets a
    Permute per reader (`<squeeze>_r_permute_for_<reader>`), as the reference's
    MatmulWithPermuteAndSplit (its Reshape2 variant is not done here)."""
    if node.op_type != "MatMul":
        return False
    reshape = sole_reader(graph, node.outputs[0], "Reshape")
    if reshape is None:
        return False
    perm0 = sole_reader(graph, reshape.outputs[0], "Permute")
    if perm0 is None:
        return False
    order0 = list(perm0.attrs["order"])
    perm1 = sole_reader(graph, perm0.outputs[0], "Permute")
    before = (perm1 or perm0).outputs[0]
    slices = graph.consumers(before)
    if not slices or before in graph.outputs:
        return False
    axis = None
    for s in slices:
        sq = sole_reader(graph, s.outputs[0], "Squeeze") if s.op_type == "Slice" else None
        if sq is None:
            return False
        src, dst = graph.shapes[s.inputs[0]], graph.shapes[s.outputs[0]]
        diff = [i for i, (a, b) in enumerate(zip(src, dst)) if a != b]
        if len(diff) != 1 or dst[diff[0]] != 1:
            return False
        if axis is not None and diff[0] != axis:
            return False
        axis = diff[0]
    mm_shape, rs_shape = graph.shapes[node.outputs[0]], graph.shapes[reshape.outputs[0]]
    two_more = len(mm_shape) + 2 == len(rs_shape) and tuple(mm_shape[:-1]) == tuple(rs_shape[:len(mm_shape) - 1])
    one_more = len(mm_shape) + 1 == len(rs_shape) and len(mm_shape) >= 3 and \
        mm_shape[0] == rs_shape[0] and mm_shape[1] * mm_shape[2] == rs_shape[1]
    if not (two_more or one_more) or rs_shape[order0[axis]] != len(slices):
        return False
    final = [order0[o] for o in perm1.attrs["order"]] if perm1 else order0
    if final[axis] == axis:
        return False
    new_axis = final[axis]
    rank = len(rs_shape)
    inv = [final[i + 1] if final[i + 1] < final[0] else final[i + 1] - 1 for i in range(rank - 1)]
    for s in slices:
        sq = graph.consumers(s.outputs[0])[0]
        lo = _slice_offset(graph, s, graph.shapes[before], axis)
        if lo is None:
            return False
    for s in slices:
        sq = graph.consumers(s.outputs[0])[0]
        lo = _slice_offset(graph, s, graph.shapes[before], axis)
        s.inputs = [reshape.outputs[0]] + [
            weight(graph, f"{s.name}_{k}", np.array([v], np.int64))
            for k, v in (("starts", lo), ("ends", lo + 1), ("axes", new_axis))]
        rename_output(graph, s, f"{s.outputs[0]}_r_new")
        shape = list(rs_shape)
        shape[new_axis] = 1
        graph.shapes[s.outputs[0]] = tuple(shape)
        _set_squeeze_axis(graph, sq, new_axis)
        rename_output(graph, sq, f"{sq.outputs[0]}_r_new")
        sq_shape = tuple(d for i, d in enumerate(rs_shape) if i != new_axis)
        old_shape = graph.shapes[sq.outputs[0]]
        graph.shapes[sq.outputs[0]] = sq_shape
        for reader in list(graph.consumers(sq.outputs[0])):
            name = f"{sq.outputs[0]}_r_permute_for_{reader.name}"
            p = Node(name, "Permute", [sq.outputs[0]], [name], {"order": inv})
            graph.nodes.insert(graph.nodes.index(reader), p)
            reader.inputs = [name if t == sq.outputs[0] else t for t in reader.inputs]
            graph.shapes[name] = old_shape
            graph.dtypes[name] = graph.dtypes.get(sq.outputs[0], "float32")
    for p in [perm1, perm0]:
        if p is not None:
            graph.nodes.remove(p)
            graph.shapes.pop(p.outputs[0], None)
            graph.meta.get("onnx_names", {}).pop(p.outputs[0], None)
    graph.changed()
    graph.sort()
    return True


def _slice_offset(graph: Graph, node: Node, shape, axis: int) -> int | None:
    ws = [graph.weights.get(t) if t else None for t in node.inputs[1:5]]
    if len(ws) < 2 or ws[0] is None or ws[1] is None:
        return None
    axes = ws[2].tolist() if len(ws) > 2 and ws[2] is not None else list(range(len(ws[0])))
    for a, s in zip(axes, ws[0].tolist()):
        if a % len(shape) == axis:
            return int(s) % shape[axis]
    return None


def _set_squeeze_axis(graph: Graph, node: Node, axis: int) -> None:
    if len(node.inputs) > 1:
        node.inputs = [node.inputs[0], weight(graph, f"{node.name}_axes", np.array([axis], np.int64))]
    else:
        node.attrs = {**node.attrs, "axes": [axis]}


PATTERNS: list[Callable[[Graph, Node], bool]] = [
    _mul_to_silu, _to_const_op, _remove_identity_consts, _to_scale,
    _merge_scales, _merge_mulconst, _matmul_bias, _concat_to_depth2space, _merge_pointwise_convs,
    _fuse_relu,
    _permute_past_split,
]
