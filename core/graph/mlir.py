"""The .mlir text form of a Graph (Top-dialect style) and its weight .npz; they round-trip exactly.

    write_mlir(graph, "yolov3_tiny.mlir")      # + yolov3_tiny_top_f32_all_weight.npz beside it
    g = read_mlir("yolov3_tiny.mlir")

One op per line, like TPU-MLIR's top dialect:

    %4 = "top.Conv"(%1, %2, %3) {pads = [1, 1, 1, 1]} : (tensor<1x3x416x416xf32>, ...)
         -> tensor<1x16x416x416xf32> loc("conv0_Conv")

Op types and attribute names are ONNX's (our IR's), weights are `top.Weight` ops named by `loc`,
absent optional inputs are a `top.None`, preprocessing is stored on `top.Input`, and the graph's
`meta` as `tpushell.<key>` module attributes. It is our format: readable, diffable and exact; it
is not meant to be loaded by MLIR itself.
"""
from __future__ import annotations

import json
import math
import os
import re
from typing import Any

import numpy as np

from ..errors import InputFileError, ModelError
from ..fileio import FileGroup, check_file_stem, load_npz, read_text, require_file, save_npz
from .ir import Graph, Node, TensorInfo
from .limits import MAX_NESTING, check_shape
from .preprocess import PreprocessConfig

FORMAT_STATE = "TOP_F32"
_DTYPES = {"float32": "f32", "float16": "f16", "float64": "f64", "int64": "i64", "int32": "i32",
           "int16": "i16", "int8": "i8", "uint8": "ui8", "uint16": "ui16", "bool": "i1"}
_NP_DTYPES = {v: k for k, v in _DTYPES.items()}


def weight_file_name(graph_name: str) -> str:
    return f"{graph_name}_top_f32_all_weight.npz"


# ---- writing ------------------------------------------------------------------------------------
def _type(shape: tuple[int, ...], dtype: str) -> str:
    elem = _DTYPES.get(dtype)
    if elem is None:
        raise ModelError(f"dtype {dtype} cannot be written to .mlir")
    return "tensor<" + "".join(f"{d}x" for d in shape) + elem + ">"


def format_value(v: Any) -> str:
    """An attribute value in our MLIR-like syntax (exact for floats: shortest repr)."""
    if isinstance(v, bool) or isinstance(v, np.bool_):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return repr(f)
    if isinstance(v, str):
        return json.dumps(v)
    if v is None:
        return "none"
    if isinstance(v, np.ndarray):
        flat = ", ".join(format_value(x) for x in v.reshape(-1).tolist())
        return f"dense<[{flat}]> : {_type(v.shape, str(v.dtype))}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {format_value(x)}" for k, x in v.items()) + "}"
    raise ModelError(f"attribute value {v!r} of type {type(v).__name__} cannot be written to .mlir")


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z_][\w.]*", k) else json.dumps(k)


def format_mlir(graph: Graph) -> str:
    """The whole .mlir text of `graph`."""
    module_attrs = {"module.name": graph.name, "module.state": FORMAT_STATE,
                    "module.weight_file": weight_file_name(graph.name)}
    module_attrs.update({f"tpushell.{k}": v for k, v in graph.meta.items()})
    lines = [f"module attributes {format_value(module_attrs)} {{"]
    args = ", ".join(f"%arg{i}: {_type(t.shape, t.dtype)}" for i, t in enumerate(graph.inputs))
    outs = ", ".join(_type(graph.shapes[o], graph.dtypes[o]) for o in graph.outputs)
    lines.append(f"  func.func @main({args}) -> ({outs}) {{")
    ssa: dict[str, str] = {}
    types: dict[str, str] = {}
    counter = 0

    def emit(result: str, op: str, operands: list[str], attrs: dict, in_types: list[str],
             out_types: list[str], locs: list[str]) -> None:
        attr_text = f" {format_value(attrs)}" if attrs else ""
        out = out_types[0] if len(out_types) == 1 else "(" + ", ".join(out_types) + ")"
        loc = json.dumps(locs[0]) if len(locs) == 1 else "fused[" + ", ".join(
            json.dumps(x) for x in locs) + "]"
        lines.append(f"    {result} = \"top.{op}\"({', '.join(operands)}){attr_text} : "
                     f"({', '.join(in_types)}) -> {out} loc({loc})")

    emit("%none", "None", [], {}, [], ["none"], ["none"])
    ssa[""], types[""] = "%none", "none"
    for i, t in enumerate(graph.inputs):
        name = f"%{counter}"
        counter += 1
        attrs = graph.preprocess.to_dict() if (graph.preprocess is not None and i == 0) else {}
        ty = _type(t.shape, t.dtype)
        emit(name, "Input", [f"%arg{i}"], attrs, [ty], [ty], [t.name])
        ssa[t.name], types[t.name] = name, ty
    for w, arr in graph.weights.items():
        name = f"%{counter}"
        counter += 1
        ty = _type(arr.shape, str(arr.dtype))
        emit(name, "Weight", [], {}, [], [ty], [w])
        ssa[w], types[w] = name, ty
    for node in graph.nodes:
        base = f"%{counter}"
        counter += 1
        n_out = len(node.outputs)
        result = base if n_out == 1 else f"{base}:{n_out}"
        out_types = []
        for k, t in enumerate(node.outputs):
            if t:
                ssa[t] = base if n_out == 1 else f"{base}#{k}"
                types[t] = _type(graph.shapes[t], graph.dtypes[t])
                out_types.append(types[t])
            else:
                out_types.append("none")
        plain = n_out == 1 and node.outputs[0] == node.name
        emit(result, node.op_type, [ssa[t] for t in node.inputs], node.attrs,
             [types[t] for t in node.inputs], out_types,
             [node.name] if plain else [node.name] + node.outputs)
    ret = ", ".join(ssa[o] for o in graph.outputs)
    lines.append(f"    return {ret} : {outs}")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def write_mlir(graph: Graph, path: str | os.PathLike) -> str:
    """Write the .mlir and its weight npz (next to it); returns the weight file path."""
    path = os.fspath(path)
    name = check_file_stem(graph.name, f"model {graph.name!r}")
    weights_path = os.path.join(os.path.dirname(os.path.abspath(path)), weight_file_name(name))
    text = format_mlir(graph)
    with FileGroup() as files:   # the .mlir and its weights are replaced together
        save_npz(weights_path, graph.weights, group=files)
        with files.open(path) as f:
            f.write(text)
    return weights_path


# ---- reading ------------------------------------------------------------------------------------
class _Scanner:
    """A tiny recursive-descent reader for one line of our MLIR-like syntax."""

    def __init__(self, text: str, where: str) -> None:
        self.s, self.i, self.where = text, 0, where
        self.depth = 0   # of brackets and braces, bounded by MAX_NESTING

    def error(self, what: str) -> ModelError:
        return ModelError(f"{self.where}: expected {what} at column {self.i + 1}: "
                          f"'{self.s[self.i:self.i + 40]}'")

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def peek(self, token: str) -> bool:
        self.ws()
        return self.s.startswith(token, self.i)

    def take(self, token: str) -> bool:
        if self.peek(token):
            self.i += len(token)
            return True
        return False

    def expect(self, token: str) -> None:
        if not self.take(token):
            raise self.error(f"'{token}'")

    def regex(self, pattern: str, what: str) -> str:
        self.ws()
        m = re.compile(pattern).match(self.s, self.i)
        if not m:
            raise self.error(what)
        self.i = m.end()
        return m.group(0)

    def string(self) -> str:
        self.ws()
        m = re.compile(r'"(?:[^"\\]|\\.)*"').match(self.s, self.i)
        if not m:
            raise self.error("a string")
        self.i = m.end()
        return json.loads(m.group(0))

    def value(self) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise ModelError(f"{self.where}: values nested more than {MAX_NESTING} deep")
            return self._value()
        finally:
            self.depth -= 1

    def _value(self) -> Any:
        self.ws()
        if self.peek('"'):
            return self.string()
        if self.take("["):
            items = []
            if not self.take("]"):
                while True:
                    items.append(self.value())
                    if self.take("]"):
                        break
                    self.expect(",")
            return items
        if self.peek("{"):
            return self.attr_dict()
        if self.take("dense<"):
            items = self.value()
            self.expect(">")
            self.expect(":")
            shape, dtype = self.tensor_type()
            try:
                return np.array(items, dtype=_np_dtype(dtype, self.where)).reshape(shape)
            except (ValueError, TypeError) as e:
                raise ModelError(f"{self.where}: dense value does not fit "
                                 f"tensor<{'x'.join(map(str, shape))}x{dtype}> ({e})") from None
        word = self.regex(r"-?[\w.+\-]+", "a value")
        if word == "true":
            return True
        if word == "false":
            return False
        if word == "none":
            return None
        if re.fullmatch(r"-?\d+", word):
            return int(word)
        try:
            return float(word)
        except ValueError:
            raise self.error("a number") from None

    def attr_dict(self) -> dict[str, Any]:
        self.expect("{")
        out: dict[str, Any] = {}
        if self.take("}"):
            return out
        while True:
            key = self.string() if self.peek('"') else self.regex(r"[A-Za-z_][\w.]*", "a key")
            self.expect("=")
            out[key] = self.value()
            if self.take("}"):
                return out
            self.expect(",")

    def tensor_type(self) -> tuple[tuple[int, ...], str]:
        if self.take("none"):
            return (), "none"
        self.expect("tensor<")
        body = self.regex(r"[\dx]*[a-z]+\d*", "a tensor type")
        self.expect(">")
        *dims, elem = body.split("x")
        if any(not d.isdigit() for d in dims):
            raise self.error("a tensor type with whole-number dims")
        shape = check_shape([int(d) for d in dims], self.where)
        _np_dtype(elem, self.where)
        return shape, elem

    def type_list(self) -> list[tuple[tuple[int, ...], str]]:
        if not self.take("("):
            return [self.tensor_type()]
        types = []
        if self.take(")"):
            return types
        while True:
            types.append(self.tensor_type())
            if self.take(")"):
                return types
            self.expect(",")


def _np_dtype(elem: str, where: str) -> str:
    """The numpy dtype of an MLIR element type, else ModelError naming the valid ones."""
    if elem == "none":
        return elem
    if elem not in _NP_DTYPES:
        raise ModelError(f"{where}: unknown element type '{elem}'; valid: "
                         f"{', '.join(_NP_DTYPES)}")
    return _NP_DTYPES[elem]


_OP_LINE = re.compile(r'^\s*(%[\w]+)(?::(\d+))?\s*=\s*"top\.(\w+)"\(')


def parse_mlir(text: str, where: str = "<mlir>") -> tuple[Graph, str]:
    """Parse our .mlir text; returns the graph without weights and the weight file name."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("module attributes"):
        raise ModelError(f"{where}: not a tpushell .mlir file (first line should be "
                         "'module attributes {...} {')")
    head = _Scanner(lines[0][len("module attributes"):], f"{where}:1")
    module = head.attr_dict()
    for key in ("module.name", "module.weight_file"):
        if not isinstance(module.get(key), str):
            raise ModelError(f"{where}:1: the module has no {key} string (our .mlir files carry "
                             "module.name and module.weight_file)")
    check_file_stem(module["module.name"], f"{where}:1: module.name")
    if module.get("module.state") != FORMAT_STATE:
        raise ModelError(f"{where}: unsupported module.state {module.get('module.state')!r}, "
                         f"expected {FORMAT_STATE!r}")
    meta = {k[len("tpushell."):]: v for k, v in module.items() if k.startswith("tpushell.")}
    graph = Graph(str(module["module.name"]), [], [], [], meta=meta)
    ssa: dict[str, str] = {}
    weights: list[str] = []
    returned = False
    for lineno, line in enumerate(lines[1:], 2):
        stripped = line.strip()
        if stripped.startswith("return"):
            rest = stripped[len("return"):].split(":")[0]
            refs = [r.strip() for r in rest.split(",") if r.strip()]
            unknown = [r for r in refs if r not in ssa]
            if unknown or not refs:
                raise ModelError(f"{where}:{lineno}: return names "
                                 f"{', '.join(unknown) if unknown else 'no value'}; it must "
                                 "return values defined above it")
            graph.outputs = [ssa[r] for r in refs]
            returned = True
            continue
        m = _OP_LINE.match(line)
        if not m:
            continue
        sc = _Scanner(line, f"{where}:{lineno}")
        sc.i = m.end()
        result, count, op = m.group(1), int(m.group(2) or 1), m.group(3)
        operands = []
        if not sc.take(")"):
            while True:
                operands.append(sc.regex(r"%[\w#]+", "an operand"))
                if sc.take(")"):
                    break
                sc.expect(",")
        attrs = sc.attr_dict() if sc.peek("{") else {}
        sc.expect(":")
        sc.type_list()
        sc.expect("->")
        out_types = sc.type_list()
        sc.expect("loc(")
        fused = sc.take("fused[")
        locs = [sc.string()]
        if fused:
            while sc.take(","):
                locs.append(sc.string())
            sc.expect("]")
        names = [result] if count == 1 else [f"{result}#{k}" for k in range(count)]
        if op == "None":
            ssa[result] = ""
        elif op == "Input":
            shape, elem = out_types[0]
            if elem == "none":
                raise ModelError(f"{where}:{lineno}: input '{locs[0]}' has no tensor type")
            graph.inputs.append(TensorInfo(locs[0], shape, _NP_DTYPES[elem]))
            graph.shapes[locs[0]], graph.dtypes[locs[0]] = shape, _NP_DTYPES[elem]
            if attrs:
                graph.preprocess = PreprocessConfig.from_dict(attrs)
            ssa[result] = locs[0]
        elif op == "Weight":
            ssa[result] = locs[0]
            weights.append(locs[0])
        else:
            outs = locs[1:] if fused else [locs[0]]
            if len(outs) != count:
                raise ModelError(f"{where}:{lineno}: {count} result(s) but {len(outs)} name(s)")
            for k, (ref, out) in enumerate(zip(names, outs)):
                ssa[ref] = out
                if out_types[k][1] != "none":
                    graph.shapes[out] = out_types[k][0]
                    graph.dtypes[out] = _NP_DTYPES[out_types[k][1]]
            try:
                inputs = [ssa[o] for o in operands]
            except KeyError as e:
                raise ModelError(f"{where}:{lineno}: operand {e} is used before it is defined") from None
            graph.nodes.append(Node(locs[0], op, inputs, outs, attrs))
    if not returned:
        raise ModelError(f"{where}: no 'return' line: the model has no outputs (a .mlir from "
                         "model_transform ends its function with 'return ...')")
    graph.meta["_weights"] = weights
    return graph, module["module.weight_file"]


def weights_beside(path: str, weight_file: str) -> str:
    """The weight file a .mlir names, in the .mlir's own folder: a name read from the file never
    leads elsewhere (absolute paths and '..' are refused)."""
    folder = os.path.dirname(os.path.abspath(path))
    resolved = os.path.normpath(os.path.join(folder, weight_file))
    if os.path.isabs(weight_file) or os.path.dirname(resolved) != folder:
        raise InputFileError(f"{path}: module.weight_file {weight_file[:120]!r} is not a file name "
                             f"in the .mlir's folder ({folder}); tpushell reads weights only "
                             "from beside the .mlir")
    return resolved


def read_mlir(path: str | os.PathLike) -> Graph:
    """Read a .mlir written by `write_mlir`, with its weight npz (found next to it)."""
    path = require_file(path, "mlir file")
    graph, weight_file = parse_mlir(read_text(path, "mlir file"), path)
    names = graph.meta.pop("_weights")
    weights_path = weights_beside(path, weight_file)
    if not os.path.isfile(weights_path):
        raise InputFileError(f"{path}: its weight file {weights_path} is missing "
                             f"(written by model_transform next to the .mlir)")
    arrays = load_npz(weights_path)
    missing = [n for n in names if n not in arrays]
    if missing:
        raise InputFileError(f"{weights_path} lacks weights {missing[:5]} needed by {path}")
    graph.weights = {n: arrays[n] for n in names}
    graph.check()
    return graph
