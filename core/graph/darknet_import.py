"""darknet `.cfg` + `.weights` -> Graph, through an ONNX model built like the zoo's ONNX twin.

    g = import_darknet("yolov3-tiny.cfg", "yolov3-tiny.weights")
    g.outputs               # ['transpose_output1_Transpose', 'transpose_output_Transpose']
    g.meta["yolo"]          # anchors, per-head masks and grids, classes, read from the cfg

Why through ONNX: the darknet layers are written as the ONNX nodes the zoo's `tiny-yolov3-11.onnx`
holds (Conv, BatchNormalization, LeakyRelu, MaxPool, Resize, Concat, Transpose), then
`import_onnx` runs on that ModelProto. The graph then goes through the very passes every model
goes through (BN folded in float32, reference op naming, shapes, cutting at `output_names`), so it
is op for op and number for number the ONNX twin's; and the same ModelProto can be saved as an
`.onnx` file (`core/vision/fetch.py`) or handed to onnxruntime for a self-check (`darknet_to_onnx`).

Tensor names follow the twin: `conv{k}` (k counts convolutional layers), `conv{k}_bn`,
`conv{k}_leaky`, `pool{i}`, `up{i}`, `concat{i}`, `shortcut{i}` (i = darknet layer index), and
the input of each [yolo] layer exposed NHWC as `transpose_output{n}`: the last head is
`transpose_output`, the one before it `transpose_output1`, and so on (the tutorial's names).
BatchNormalization uses epsilon 1e-5 as the twin does (darknet adds 1e-6 to the standard
deviation instead; the two differ by far less than float32 noise of the network).

Supported layers: [convolutional] (batch_normalize, groups, activation leaky / linear / relu /
logistic), [maxpool] (darknet's asymmetric padding: size 2 stride 1 keeps the size, pads
[0,0,1,1] as in the twin), [upsample], [route] (one or more layers, no `groups`), [shortcut],
[yolo]. Anything else stops the import with the cfg line and the supported kinds.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import InputFileError, ModelError, OptionError
from .ir import Graph
from .limits import MAX_DIM, check_shape

INPUT_NAME = "input_1"
OPSET = 13
BN_EPSILON = 1e-5
LEAKY_ALPHA = 0.1
# darknet activation -> (ONNX op, tensor-name suffix); "linear" adds no node
ACTIVATIONS = {"leaky": ("LeakyRelu", "leaky"), "relu": ("Relu", "relu"),
               "logistic": ("Sigmoid", "logistic"), "linear": None}


@dataclass
class Section:
    """One `[kind]` block of a cfg file with its options and the line it starts on."""

    kind: str
    line: int
    options: dict[str, str] = field(default_factory=dict)


def parse_cfg(path: str) -> list[Section]:
    """The sections of a darknet cfg file, in order; errors name the file and line."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise InputFileError(f"cannot read darknet cfg {path}: {e.strerror}") from e
    sections: list[Section] = []
    for number, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not text:
            continue
        if text.startswith("["):
            if not text.endswith("]"):
                raise InputFileError(f"{path}:{number}: malformed section header '{text}'")
            sections.append(Section(text[1:-1].strip().lower(), number))
        elif "=" in text and sections:
            key, value = text.split("=", 1)
            sections[-1].options[key.strip()] = value.strip()
        else:
            raise InputFileError(f"{path}:{number}: expected '[section]' or 'key = value', "
                                 f"found '{text}'")
    if not sections or sections[0].kind not in ("net", "network"):
        raise InputFileError(f"{path} is not a darknet cfg: it must start with a [net] section")
    return sections


class _Options:
    """Typed access to a section's options, with errors naming the cfg line."""

    def __init__(self, path: str, section: Section) -> None:
        self.where = f"{path}:{section.line} [{section.kind}]"
        self.options = section.options

    def _get(self, key: str, default: Any, convert: Callable[[str], Any]) -> Any:
        if key not in self.options:
            if default is None:
                raise ModelError(f"{self.where}: option '{key}' is required")
            return default
        try:
            return convert(self.options[key])
        except ValueError:
            raise ModelError(f"{self.where}: option {key}={self.options[key]} is not "
                             f"{'a whole number' if convert is int else 'valid'}") from None

    def int(self, key: str, default: int | None = None, low: int | None = None,
            high: int | None = None) -> int:
        value = self._get(key, default, int)
        if (low is not None and value < low) or (high is not None and value > high):
            valid = f"{low} to {high}" if high is not None else f"{low} or more"
            raise ModelError(f"{self.where}: option {key}={value} is out of range (valid: "
                             f"{valid})")
        return value

    def ints(self, key: str, default: list[int] | None = None) -> list[int]:
        return self._get(key, default, lambda v: [int(t) for t in v.split(",") if t.strip()])

    def str(self, key: str, default: str) -> str:
        return self.options.get(key, default).strip()

    def reject(self, key: str, allowed: object, why: str) -> None:
        """Stop on an option value this importer does not implement."""
        if key in self.options and self.options[key].strip() != str(allowed):
            raise ModelError(f"{self.where}: {key}={self.options[key]} is not supported ({why})")


class _WeightReader:
    """Sequential reader of a .weights file: header, then float32 values layer by layer."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise InputFileError(f"cannot read darknet weights {path}: {e.strerror}") from e
        if len(data) < 16:
            raise InputFileError(f"{path} is not a darknet weights file ({len(data)} bytes)")
        major, minor, revision = (int(v) for v in np.frombuffer(data, "<i4", 3))
        # darknet >= 0.2 stores the 'seen' image count as int64, older files as int32
        seen_bytes = 8 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 4
        self.version = (major, minor, revision)
        body = len(data) - 12 - seen_bytes
        if body % 4:
            raise InputFileError(f"{path} is not a darknet weights file: {body} bytes after the "
                                 "header is not a whole number of float32 values")
        self.values = np.frombuffer(data, "<f4", offset=12 + seen_bytes)
        self.pos = 0

    def take(self, count: int, where: str) -> np.ndarray:
        end = self.pos + count
        if end > self.values.size:
            raise InputFileError(f"weights file {self.path} ends inside {where}: it has "
                                 f"{self.values.size} values, the cfg needs at least {end} "
                                 "(do the cfg and the weights belong together?)")
        chunk = self.values[self.pos:end].copy()
        self.pos = end
        return chunk

    def finish(self, cfg_path: str) -> None:
        left = self.values.size - self.pos
        if left:
            raise InputFileError(f"weights file {self.path} has {left} values left after the last "
                                 f"layer of {cfg_path} (needs {self.pos}): the cfg and the weights "
                                 "do not belong together")


@dataclass
class _Layer:
    tensor: str                     # ONNX tensor holding the layer's output
    shape: tuple[int, int, int]     # C, H, W


class _Builder:
    """Turns cfg sections into ONNX nodes and initializers, layer by layer."""

    def __init__(self, cfg_path: str, weights: _WeightReader) -> None:
        self.cfg_path = cfg_path
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.layers: list[_Layer] = []
        self.heads: list[dict[str, Any]] = []
        self.anchors: list[list[int]] | None = None
        self.classes: int | None = None
        self.convs = 0

    def node(self, op_type: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], f"{output}_{op_type}", **attrs))
        return output

    def init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def source(self, index: int, opts: _Options, ref: int) -> _Layer:
        """The layer a route/shortcut refers to (negative = relative to the current layer)."""
        target = index + ref if ref < 0 else ref
        if not 0 <= target < index:
            raise ModelError(f"{opts.where}: layer reference {ref} points to layer {target}, valid "
                             f"are 0..{index - 1} (or -1..-{index})")
        return self.layers[target]

    def activation(self, opts: _Options, x: str, base: str, default: str) -> str:
        kind = opts.str("activation", default)
        if kind not in ACTIVATIONS:
            raise ModelError(f"{opts.where}: activation '{kind}' is not supported; supported: "
                             f"{', '.join(ACTIVATIONS)}")
        if ACTIVATIONS[kind] is None:
            return x
        op_type, suffix = ACTIVATIONS[kind]
        attrs = {"alpha": LEAKY_ALPHA} if op_type == "LeakyRelu" else {}
        return self.node(op_type, [x], f"{base}_{suffix}", **attrs)

    # ---- one method per layer kind: (index, options, input layer) -> output layer -------------
    def convolutional(self, i: int, opts: _Options, prev: _Layer) -> _Layer:
        c, h, w = prev.shape
        filters, size = opts.int("filters", low=1, high=MAX_DIM), opts.int("size", 1, 1, 64)
        stride, groups = opts.int("stride", 1, 1, 64), opts.int("groups", 1, 1, MAX_DIM)
        opts.reject("dilation", 1, "dilated convolution")
        pad = size // 2 if opts.int("pad", 0) else opts.int("padding", 0)
        if c % groups or filters % groups:
            raise ModelError(f"{opts.where}: groups={groups} does not divide {c} input channels "
                             f"and {filters} filters")
        base = f"conv{self.convs}"
        self.convs += 1
        where = f"layer {i} ({base}, {opts.where})"
        bias = self.weights.take(filters, where)
        bn = opts.int("batch_normalize", 0)
        if bn:
            gamma, mean, var = (self.weights.take(filters, where) for _ in range(3))
        kernel = self.weights.take(filters * (c // groups) * size * size, where)
        kernel = kernel.reshape(filters, c // groups, size, size)
        inputs = [prev.tensor, self.init(f"{base}_W", kernel)]
        if not bn:
            inputs.append(self.init(f"{base}_B", bias))
        attrs: dict[str, Any] = {"kernel_shape": [size, size], "pads": [pad] * 4,
                                 "strides": [stride, stride]}
        if groups > 1:
            attrs["group"] = groups
        x = self.node("Conv", inputs, base, **attrs)
        if bn:
            params = [self.init(f"{base}_bn_{s}", v)
                      for s, v in (("s", gamma), ("b", bias), ("m", mean), ("v", var))]
            x = self.node("BatchNormalization", [x] + params, f"{base}_bn", epsilon=BN_EPSILON)
        x = self.activation(opts, x, base, "logistic")
        out_h, out_w = ((d + 2 * pad - size) // stride + 1 for d in (h, w))
        if out_h < 1 or out_w < 1:
            raise ModelError(f"{opts.where}: size={size} does not fit the {h}x{w} map it reads")
        return _Layer(x, (filters, out_h, out_w))

    def maxpool(self, i: int, opts: _Options, prev: _Layer) -> _Layer:
        c, h, w = prev.shape
        stride = opts.int("stride", 1, 1, 64)
        size = opts.int("size", stride, 1, 64)
        padding = opts.int("padding", size - 1, 0, 64)
        out_h, out_w = ((d + padding - size) // stride + 1 for d in (h, w))
        if out_h < 1 or out_w < 1:
            raise ModelError(f"{opts.where}: size={size} does not fit the {h}x{w} map it reads")
        # darknet starts windows at -padding/2 and ignores cells outside the map; the end padding
        # is what the last window needs (size 2 stride 1 -> [0,0,1,1], like the twin)
        begin = padding // 2
        end_h, end_w = (max(0, (o - 1) * stride + size - d - begin)
                        for o, d in ((out_h, h), (out_w, w)))
        x = self.node("MaxPool", [prev.tensor], f"pool{i}", kernel_shape=[size, size],
                      pads=[begin, begin, end_h, end_w], strides=[stride, stride])
        return _Layer(x, (c, out_h, out_w))

    def upsample(self, i: int, opts: _Options, prev: _Layer) -> _Layer:
        c, h, w = prev.shape
        stride = opts.int("stride", 2, high=64)
        if stride < 1:
            raise ModelError(f"{opts.where}: stride={stride} (downsampling) is not supported")
        opts.reject("scale", 1, "only plain nearest upsampling")
        scales = self.init(f"up{i}_scales", np.array([1, 1, stride, stride], np.float32))
        x = self.node("Resize", [prev.tensor, "", scales], f"up{i}", mode="nearest")
        return _Layer(x, (c, h * stride, w * stride))

    def route(self, i: int, opts: _Options, prev: _Layer) -> _Layer:
        opts.reject("groups", 1, "grouped route (yolov4-tiny)")
        sources = [self.source(i, opts, ref) for ref in opts.ints("layers")]
        if len(sources) == 1:
            return sources[0]
        sizes = {s.shape[1:] for s in sources}
        if len(sizes) > 1:
            found = ", ".join(f"{s.tensor} {s.shape[1]}x{s.shape[2]}" for s in sources)
            raise ModelError(f"{opts.where}: cannot concatenate maps of different sizes ({found}); "
                             "the input size must be a multiple of the network's total stride")
        x = self.node("Concat", [s.tensor for s in sources], f"concat{i}", axis=1)
        return _Layer(x, (sum(s.shape[0] for s in sources),) + sources[0].shape[1:])

    def shortcut(self, i: int, opts: _Options, prev: _Layer) -> _Layer:
        other = self.source(i, opts, opts.int("from"))
        if other.shape != prev.shape:
            raise ModelError(f"{opts.where}: cannot add {other.tensor} {other.shape} to "
                             f"{prev.tensor} {prev.shape} (shapes differ)")
        x = self.node("Add", [prev.tensor, other.tensor], f"shortcut{i}")
        return _Layer(self.activation(opts, x, f"shortcut{i}", "linear"), prev.shape)

    def yolo(self, i: int, opts: _Options, prev: _Layer) -> _Layer:
        classes = opts.int("classes", 20, 1, 100000)
        values = opts.ints("anchors")
        if len(values) % 2:
            raise ModelError(f"{opts.where}: anchors must be w,h pairs, got {len(values)} numbers")
        anchors = [values[j:j + 2] for j in range(0, len(values), 2)]
        mask = opts.ints("mask", list(range(len(anchors))))
        if any(not 0 <= m < len(anchors) for m in mask):
            raise ModelError(f"{opts.where}: mask {mask} refers to anchors beyond the "
                             f"{len(anchors)} given")
        if prev.shape[0] != len(mask) * (classes + 5):
            raise ModelError(f"{opts.where}: the layer before has {prev.shape[0]} channels, a "
                             f"head of {len(mask)} anchors x (5 + {classes} classes) needs "
                             f"{len(mask) * (classes + 5)}")
        if self.anchors not in (None, anchors) or self.classes not in (None, classes):
            raise ModelError(f"{opts.where}: [yolo] layers disagree on anchors or classes")
        self.anchors, self.classes = anchors, classes
        self.heads.append({"source": prev.tensor, "grid": list(prev.shape[1:]), "mask": mask,
                           "channels": prev.shape[0]})
        return prev

    def add_head_transposes(self, batch: int) -> list[tuple[str, list[int]]]:
        """Expose every head NHWC under the tutorial's names; (name, NHWC shape) in cfg order."""
        outputs = []
        for j, head in enumerate(self.heads):
            suffix = len(self.heads) - 1 - j
            name = f"transpose_output{suffix or ''}"
            self.node("Transpose", [head.pop("source")], name, perm=[0, 2, 3, 1])
            outputs.append((name, [batch] + head["grid"] + [head.pop("channels")]))
        return outputs


LAYER_KINDS = ("convolutional", "maxpool", "upsample", "route", "shortcut", "yolo")
ALIASES = {"conv": "convolutional", "max": "maxpool"}


def _input_shape(path: str, net: Section, input_shapes: Sequence[Sequence[int]] | None) -> list[int]:
    opts = _Options(path, net)
    cfg_shape = [1, opts.int("channels", 3, 1, MAX_DIM), opts.int("height", 416, 1, MAX_DIM),
                 opts.int("width", 416, 1, MAX_DIM)]
    if input_shapes is None:
        return list(check_shape(cfg_shape, f"{opts.where}: input"))
    if len(input_shapes) != 1:
        raise OptionError(f"--input_shapes gives {len(input_shapes)} shapes; a darknet model has "
                          "one input, e.g. [[1,3,416,416]]")
    shape = [int(d) for d in input_shapes[0]]
    check_shape(shape, "--input_shapes")
    if len(shape) != 4 or shape[1] != cfg_shape[1]:
        raise OptionError(f"--input_shapes {shape} does not fit {path}: expected "
                          f"[N,{cfg_shape[1]},H,W] (the cfg says {cfg_shape})")
    return shape


def darknet_to_onnx(cfg_path: str | os.PathLike, weights_path: str | os.PathLike,
                    input_shapes: Sequence[Sequence[int]] | None = None
                    ) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The ONNX model of a darknet network (BN unfused, heads NHWC) and its YOLO metadata."""
    cfg_path, weights_path = os.fspath(cfg_path), os.fspath(weights_path)
    sections = parse_cfg(cfg_path)
    shape = _input_shape(cfg_path, sections[0], input_shapes)
    builder = _Builder(cfg_path, _WeightReader(weights_path))
    prev = _Layer(INPUT_NAME, tuple(shape[1:]))
    for i, section in enumerate(sections[1:]):
        kind = ALIASES.get(section.kind, section.kind)
        if kind not in LAYER_KINDS:
            raise ModelError(f"{cfg_path}:{section.line}: layer kind [{section.kind}] is not "
                             f"supported; supported: {', '.join(LAYER_KINDS)}")
        prev = getattr(builder, kind)(i, _Options(cfg_path, section), prev)
        if min(prev.shape[1:]) < 1:
            raise ModelError(f"{cfg_path}:{section.line}: layer {i} ({kind}) has an empty output "
                             f"map {prev.shape[1]}x{prev.shape[2]}: the input is too small")
        builder.layers.append(prev)
    builder.weights.finish(cfg_path)
    outputs = builder.add_head_transposes(shape[0]) or [(prev.tensor, [shape[0], *prev.shape])]
    value_outputs = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, dims)
                     for n, dims in outputs]
    graph = helper.make_graph(
        builder.nodes, os.path.splitext(os.path.basename(cfg_path))[0],
        [helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, shape)],
        value_outputs, builder.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tpushell.darknet_import")
    model.ir_version = 8
    meta: dict[str, Any] = {}
    if builder.heads:
        meta = {"anchors": builder.anchors, "classes": builder.classes,
                "input_size": shape[2:], "heads": builder.heads}
    return model, meta


def default_weights(cfg_path: str) -> str:
    """`<cfg without extension>.weights`, the file darknet releases ship beside the cfg."""
    return os.path.splitext(cfg_path)[0] + ".weights"


def import_darknet(cfg_path: str | os.PathLike, weights_path: str | os.PathLike | None = None, *,
                   name: str | None = None, input_shapes: Sequence[Sequence[int]] | None = None,
                   output_names: Sequence[str] | None = None) -> Graph:
    """Import a darknet network; without `weights_path`, `<cfg stem>.weights` beside the cfg."""
    from .onnx_import import import_onnx
    cfg_path = os.fspath(cfg_path)
    if not os.path.isfile(cfg_path):
        raise InputFileError(f"darknet cfg not found: {cfg_path}")
    if weights_path is None:
        weights_path = default_weights(cfg_path)
        if not os.path.isfile(weights_path):
            raise InputFileError(f"darknet cfg {cfg_path} needs its weights: pass --model_data "
                                 f"FILE.weights (looked for {weights_path})")
    weights_path = os.fspath(weights_path)
    if not os.path.isfile(weights_path):
        raise InputFileError(f"darknet weights not found: {weights_path}")
    proto, yolo = darknet_to_onnx(cfg_path, weights_path, input_shapes)
    default_name = os.path.splitext(os.path.basename(cfg_path))[0]
    graph = import_onnx(proto, name=name or default_name, output_names=output_names)
    graph.meta["source"] = os.path.abspath(cfg_path)
    graph.meta["weights"] = os.path.abspath(weights_path)
    if yolo:
        graph.meta["yolo"] = yolo
    return graph
