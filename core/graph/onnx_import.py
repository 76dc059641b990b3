"""ONNX -> Graph: weights, attributes, reference op naming, then the import passes.

    g = import_onnx("tiny-yolov3-11.onnx", input_shapes=[[1, 3, 416, 416]],
                    output_names=["transpose_output1", "transpose_output"])

Every op and its first output are renamed `<first ONNX output name>_<OpType>` (DESIGN.md); graph
inputs keep their names. Unsupported ops are reported all at once, before anything runs.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import InputFileError, ModelError, OptionError, UnsupportedOpError, did_you_mean
from ..ops import supported
from . import passes
from .canonical import canonicalize
from .ir import Graph, Node, TensorInfo
from .limits import check_shape

MIN_OPSET, MAX_OPSET = 7, 21
ONNX_ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64",
                   9: "bool", 10: "float16", 11: "float64"}


def load_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """Read an ONNX file, with errors that name the file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InputFileError(f"{path} is a directory, not an ONNX model file")
    if not os.path.isfile(path):
        raise InputFileError(f"model file not found: {path}")
    try:
        model = onnx.load(path)
    except Exception as e:  # protobuf raises DecodeError and friends
        raise InputFileError(f"{path} is not a readable ONNX model ({type(e).__name__}: {e})") from e
    # Protobuf parses an empty file (and some short garbage) as a valid, empty message.
    if not model.graph.node or not model.graph.output:
        raise InputFileError(f"{path} is not an ONNX model (no graph nodes or outputs in it)")
    return model


def tensor_array(t: onnx.TensorProto, where: str) -> np.ndarray:
    """An ONNX tensor as numpy, its dims checked against the limits before any allocation; a
    tensor whose data does not match its dims is a ModelError naming `where`."""
    check_shape(list(t.dims), where)
    try:
        return numpy_helper.to_array(t)
    except Exception as e:   # onnx raises ValueError/TypeError/... for damaged data
        raise ModelError(f"{where}: tensor data does not match its dims {list(t.dims)} "
                         f"({type(e).__name__}: {e})") from None


def _text(value: bytes, where: str) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise ModelError(f"{where}: string attribute is not UTF-8 text") from None


def _attr_value(attr: onnx.AttributeProto, node: str = "?") -> Any:
    where = f"op '{node}' attribute '{attr.name}'"
    if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
        raise UnsupportedOpError(f"attribute '{attr.name}' holds a subgraph (control flow is "
                                 "not supported)")
    if attr.type == onnx.AttributeProto.TENSOR:
        return tensor_array(attr.t, where)
    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return _text(value, where)
    if isinstance(value, onnx.TensorProto):
        return tensor_array(value, where)
    if isinstance(value, list):
        return [_text(v, where) if isinstance(v, bytes) else v for v in value]
    return value


def _constant_value(node: onnx.NodeProto) -> np.ndarray:
    if not node.attribute or not node.output:
        raise ModelError(f"Constant node '{node.name}' has no value or no output")
    attr = node.attribute[0]
    value = _attr_value(attr, node.name or node.output[0])
    if attr.name in ("value_float", "value_floats"):
        return np.array(value, dtype=np.float32)
    if attr.name in ("value_int", "value_ints"):
        return np.array(value, dtype=np.int64)
    if attr.name == "value":
        return np.asarray(value)
    raise UnsupportedOpError(f"Constant node '{node.name}' uses '{attr.name}', not supported")


def _input_infos(graph: onnx.GraphProto, initializers: set[str],
                 input_shapes: Sequence[Sequence[int]] | None,
                 used: set[str] | None = None) -> list[TensorInfo]:
    real = [i for i in graph.input if i.name not in initializers]
    if used is not None:
        # After a cut, inputs nothing needs are dropped; shapes may be given for either set.
        kept = [i for i in real if i.name in used]
        if input_shapes is not None and len(input_shapes) == len(real) != len(kept):
            input_shapes = [s for i, s in zip(real, input_shapes) if i.name in used]
        real = kept
    if input_shapes is not None and len(input_shapes) != len(real):
        raise OptionError(f"--input_shapes gives {len(input_shapes)} shape(s) but the model has "
                          f"{len(real)} input(s): {[i.name for i in real]}")
    infos = []
    for k, inp in enumerate(real):
        tt = inp.type.tensor_type
        declared = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if input_shapes is not None:
            shape = [int(d) for d in input_shapes[k]]
            if len(shape) != len(declared) or any(
                    d is not None and d != s and j > 0 for j, (d, s) in enumerate(zip(declared, shape))):
                raise OptionError(f"--input_shapes {shape} does not fit input '{inp.name}' of "
                                  f"shape {['?' if d is None else d for d in declared]}")
        else:
            if any(d is None for d in declared):
                raise OptionError(f"input '{inp.name}' has a dynamic shape "
                                  f"{['?' if d is None else d for d in declared]}; give "
                                  "--input_shapes")
            shape = declared
        shape = list(check_shape(shape, f"input '{inp.name}'"))
        infos.append(TensorInfo(inp.name, tuple(shape), ONNX_ELEM_TYPES.get(tt.elem_type, "float32")))
    return infos


def _check_supported(nodes: Sequence[onnx.NodeProto]) -> None:
    missing: dict[str, list[str]] = {}
    for n in nodes:
        if n.domain not in ("", "ai.onnx") or not supported(n.op_type):
            label = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
            missing.setdefault(label, []).append(n.name or (n.output[0] if n.output else "?"))
    if missing:
        parts = [f"{t} ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"
                 for t, names in sorted(missing.items())]
        raise UnsupportedOpError(f"unsupported op types: {'; '.join(parts)}")


def _onnx_output_names(g: onnx.GraphProto, names: Sequence[str]) -> list[str]:
    """User output names (ONNX tensor names, or our `<tensor>_<OpType>` names) as ONNX names."""
    produced = {t: n.op_type for n in g.node for t in n.output if t}
    ours = {f"{t}_{op}": t for t, op in produced.items()}
    known = set(produced) | {i.name for i in g.input}
    result = []
    for n in names:
        if n in known:
            result.append(n)
        elif n in ours:
            result.append(ours[n])
        else:
            raise ModelError(f"--output_names: no tensor '{n}' in the model"
                             f"{did_you_mean(n, sorted(known))}")
    return result


def _needed_nodes(g: onnx.GraphProto, outputs: Sequence[str]) -> tuple[list[onnx.NodeProto], set[str]]:
    """The nodes needed for `outputs` (in file order) and every tensor name they read."""
    producer = {t: n for n in g.node for t in n.output if t}
    needed: set[int] = set()
    reads: set[str] = set(outputs)
    stack = list(outputs)
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        reads.update(t for t in node.input if t)
        stack.extend(t for t in node.input if t)
    return [n for n in g.node if id(n) in needed], reads


def onnx_to_graph(model: onnx.ModelProto, name: str = "model",
                  input_shapes: Sequence[Sequence[int]] | None = None,
                  output_names: Sequence[str] | None = None) -> Graph:
    """Convert a ModelProto to a Graph with reference naming; no passes yet.

    With `output_names` the graph is cut there first, so ops after the cut (a post-processing
    tail we cannot run, say) neither need support nor stay in the graph.
    """
    g = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), MAX_OPSET)
    if opset > MAX_OPSET:
        raise ModelError(f"model opset {opset} is newer than the supported {MIN_OPSET}..{MAX_OPSET}")
    if output_names:
        wanted = _onnx_output_names(g, output_names)
        all_nodes, used = _needed_nodes(g, wanted)
    else:
        wanted, all_nodes, used = [o.name for o in g.output], list(g.node), None
    weights = {t.name: tensor_array(t, f"initializer '{t.name}'") for t in g.initializer
               if used is None or t.name in used}
    inputs = _input_infos(g, {t.name for t in g.initializer}, input_shapes, used)
    body = [n for n in all_nodes if n.op_type != "Constant"]
    _check_supported(body)
    for n in all_nodes:
        if n.op_type == "Constant":
            weights[n.output[0]] = _constant_value(n)
    rename: dict[str, str] = {t.name: t.name for t in inputs}
    rename.update({w: w for w in weights})
    nodes, used = [], set(rename.values())
    for n in body:
        if not any(n.output):
            raise ModelError(f"op '{n.name}' ({n.op_type}) has no output")
        outs = []
        for t in n.output:
            if not t:
                outs.append("")
                continue
            if t in rename:
                raise ModelError(f"tensor '{t}' is written twice (again by op '{n.name or t}' "
                                 f"({n.op_type})); each tensor has one producer")
            new = f"{t}_{n.op_type}"
            while new in used:
                new += "_"
            used.add(new)
            rename[t] = new
            outs.append(new)
        attrs = {a.name: _attr_value(a, n.name or n.output[0]) for a in n.attribute}
        if n.op_type == "Split" or len(n.output) > 1:
            # Split needs its output count; other ops compute optional outputs only if asked.
            attrs["_num_outputs"] = len(n.output)
        nodes.append(Node(outs[0], n.op_type, list(n.input), outs, attrs))
    for node in nodes:
        missing = [t for t in node.inputs if t and t not in rename]
        if missing:
            raise ModelError(f"op '{node.name}' reads undefined tensor(s) {missing}")
        node.inputs = [rename[t] if t else "" for t in node.inputs]
    unproduced = [o for o in wanted if o not in rename]
    if unproduced:
        raise ModelError(f"graph output(s) {', '.join(unproduced[:5])} not produced by any op "
                         "or input")
    outputs = [rename[o] for o in wanted]
    graph = Graph(name, inputs, outputs, nodes, weights)
    graph.meta["opset"] = int(opset)
    graph.meta["onnx_names"] = {new: old for old, new in rename.items() if old not in weights}
    graph.sort()
    return graph


def import_onnx(model: str | os.PathLike | onnx.ModelProto, *, name: str | None = None,
                input_shapes: Sequence[Sequence[int]] | None = None,
                output_names: Sequence[str] | None = None, fold_bn: bool = True) -> Graph:
    """Load an ONNX model and run the import passes; see the module docstring."""
    if isinstance(model, onnx.ModelProto):
        proto, source = model, None
    else:
        proto, source = load_onnx(model), os.fspath(model)
    default_name = os.path.splitext(os.path.basename(source))[0] if source else "model"
    graph = onnx_to_graph(proto, name or default_name, input_shapes, output_names)
    if source:
        graph.meta["source"] = os.path.abspath(source)
    finish_import(graph, fold_bn=fold_bn)
    return graph


def finish_import(graph: Graph, fold_bn: bool = True) -> Graph:
    """The passes every importer runs: fold constants and shapes, drop identities, fold BN, then
    the reference's canonical graph (core/graph/canonical.py)."""
    passes.remove_identities(graph)
    passes.fold_constants(graph)
    if fold_bn:
        passes.fold_batchnorm(graph)
    canonicalize(graph)
    passes.batch_agnostic_reshapes(graph)
    passes.prune_onnx_names(graph)
    graph.check()
    return graph
