"""A QuantPlan as a QDQ ONNX model that onnxruntime (and other ONNX runtimes) can run.

    write_qdq(plan, "yolov3_int8.onnx")
    y = run_qdq("yolov3_int8.onnx", feeds, plan)      # onnxruntime, None when it is absent

Every plan tensor T appears as a float32 tensor named T (for integer tensors: the output of a
DequantizeLinear of the int8/uint8 tensor `T_q`), so results compare by name with
`simulate(..., keep_all=True)`. INT8 ops are float ops between DequantizeLinear and
QuantizeLinear, with per-channel int8 weights and int32 biases (runtimes fuse them into integer
kernels); LeakyRelu uses the chip's alpha m / 2**r. F16 ops keep float16 weights, compute in
float32 and round their outputs with Cast(FLOAT16) -> Cast(FLOAT), as the simulator does; BF16
ops likewise with bfloat16. Differences from the simulator are the runtime's rounding (ONNX
QuantizeLinear rounds half to even, the chip's requant half up), so results agree closely, not
bit for bit.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import quantmath as qm
from ..errors import ModelError
from ..fileio import atomic_write
from .lowering import QuantPlan, Step
from .qtype import QType

MIN_OPSET = 13
FLOAT16_CAST = {"f16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}


class _Builder:
    """Accumulates nodes and initializers; every plan tensor gets a float32 tensor of its name."""

    def __init__(self, plan: QuantPlan) -> None:
        self.plan = plan
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}/{self.count}"

    def init(self, base: str, array: np.ndarray) -> str:
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def half(self) -> str:
        return self.init("half", np.array(0.5, np.float32))

    def node(self, op: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        output = output or self.name(op)
        self.nodes.append(helper.make_node(op, inputs, [output], name=self.name(op), **attrs))
        return output

    # ---- representations ----------------------------------------------------------------------
    def quantize(self, value: str, t: QType, out: str, codes: bool = False) -> None:
        """QuantizeLinear to `t` as `out`_q, DequantizeLinear back as `out` (float32). With
        `codes`, `value` already holds rounded codes (minus the zero point): scale 1 on the way in."""
        zp_dtype = np.int8 if t.signed else np.uint8
        scale = self.init(out + "_scale", np.array(t.scale, np.float32))
        zp = self.init(out + "_zp", np.array(t.zp, zp_dtype))
        q_scale = self.init(out + "_one", np.array(1.0, np.float32)) if codes else scale
        self.node("QuantizeLinear", [value, q_scale, zp], out + "_q")
        self.node("DequantizeLinear", [out + "_q", scale, zp], out)

    def round_float(self, value: str, kind: str, out: str) -> None:
        """`value` rounded to F16/BF16 and held in float32 as `out` (identity for F32)."""
        if kind not in FLOAT16_CAST:
            self.node("Identity", [value], out)
            return
        half = self.node("Cast", [value], to=FLOAT16_CAST[kind])
        self.node("Cast", [half], out, to=TensorProto.FLOAT)

    def weight(self, base: str, w: np.ndarray, kind: str) -> str:
        """A weight as float32; stored in the op's float type (F16/BF16 + a Cast) when its values
        are of that type (the lowering rounded them; biases stay float32)."""
        exact = w.dtype == np.float32 and kind in FLOAT16_CAST and np.array_equal(
            w, _round_to(w, kind))
        if exact and kind == "f16":
            return self.node("Cast", [self.init(base, w.astype(np.float16))], to=TensorProto.FLOAT)
        if exact and kind == "bf16":
            t = helper.make_tensor(self.name(base), TensorProto.BFLOAT16, w.shape,
                                   (w.view(np.uint32) >> 16).astype(np.uint16).tobytes(), raw=True)
            self.inits.append(t)
            return self.node("Cast", [t.name], to=TensorProto.FLOAT)
        return self.init(base, w)

    # ---- steps ----------------------------------------------------------------------------------
    def step(self, s: Step) -> None:
        getattr(self, "_" + s.kind)(s)

    def _cast(self, s: Step) -> None:
        src, dst, x = s.in_types[0], s.out_types[0], s.inputs[0]
        if src.kind in FLOAT16_CAST and dst.is_int:
            # The chip: round(F16(x * F16(1/scale))), codes then read at the scale.
            inv = self.init(s.name + "_inv", _round_to(np.float32(1.0 / dst.scale), src.kind))
            scaled = self.name(s.name + "_scaled")
            self.round_float(self.node("Mul", [x, inv]), src.kind, scaled)
            rounded = self.node("Mul", [self.node("Sign", [scaled]), self.node("Floor", [
                self.node("Add", [self.node("Abs", [scaled]), self.half()])])])   # half away
            self.quantize(rounded, dst, s.name, codes=True)
        elif dst.is_int:
            self.quantize(x, dst, s.name)
        elif src.is_int and dst.kind in FLOAT16_CAST:
            # The chip: F16(F16(scale) * (q - zp)).
            scale = self.init(s.name + "_scale", _round_to(np.float32(src.scale), dst.kind))
            zp = self.init(s.name + "_zp", np.array(src.zp, np.int8 if src.signed else np.uint8))
            self.round_float(self.node("DequantizeLinear", [x + "_q", scale, zp]), dst.kind, s.name)
        else:
            self.round_float(x, dst.kind, s.name)

    def _requant(self, s: Step) -> None:
        # The chip's MulShift: codes times m / 2**r (exact in float32), rounded half up.
        src, dst = s.in_types[0], s.out_types[0]
        ratio = s.params["multiplier"] / 2.0 ** s.params["shift"]
        scale = self.init(s.name + "_mulshift", np.array(ratio, np.float32))
        zp = self.init(s.name + "_inzp", np.array(src.zp, np.int8 if src.signed else np.uint8))
        value = self.node("DequantizeLinear", [s.inputs[0] + "_q", scale, zp])
        codes = self.node("Floor", [self.node("Add", [value, self.half()])])   # ties up (HALF_UP)
        self.quantize(codes, dst, s.name, codes=True)

    def _onnx_op(self, s: Step, slots: list[str | None], attrs: dict) -> list[str]:
        """The op itself on float inputs; returns its (float) outputs."""
        acts = iter(s.inputs)
        ins = [next(acts) if w is None else w for w in slots]
        outs = [self.name(o) for o in s.outputs]
        public = {k: v for k, v in attrs.items() if not k.startswith("_")}
        self.nodes.append(helper.make_node(s.op_type, ins, outs, name=self.name(s.op_type), **public))
        if attrs.get("_relu"):
            outs[0] = self.node("Relu", [outs[0]])
        return outs

    def _weights(self, s: Step, kind: str) -> list[str | None]:
        names = []
        for i, w in enumerate(s.slots):
            if w is None or isinstance(w, str):
                names.append(w)      # an activation, or "" for an absent optional input
            else:
                names.append(self.weight(f"{s.name}_w{i}", w, kind))
        return names

    def _float(self, s: Step) -> None:
        kind = s.out_types[0].kind if s.out_types and s.out_types[0].is_float else "f32"
        outs = self._onnx_op(s, self._weights(s, kind), s.attrs)
        for value, name, t in zip(outs, s.outputs, s.out_types):
            self.round_float(value, t.kind if t.is_float else "f32", name)

    def _int8_op(self, s: Step, slots: list[str | None], attrs: dict) -> None:
        out = self._onnx_op(s, slots, attrs)[0]
        self.quantize(out, s.out_types[0], s.name)

    def _same_scale(self, s: Step) -> None:
        self._int8_op(s, self._weights(s, "f32"), s.attrs)

    def _table(self, s: Step) -> None:
        self._int8_op(s, self._weights(s, "f32"), s.attrs)

    def _relu(self, s: Step) -> None:
        self._int8_op(s, [None], s.attrs)

    def _leaky_relu(self, s: Step) -> None:
        alpha = s.params["multiplier"] / 2.0 ** s.params["shift"]
        self._int8_op(s, [None], {**s.attrs, "alpha": alpha})

    def _conv(self, s: Step) -> None:
        p, tin = s.params, s.in_types[0]
        codes = np.asarray(p["weight_codes"])
        ws = np.asarray(p["weight_scales"], np.float32)
        w = self.node("DequantizeLinear", [self.init(s.name + "_wq", codes),
                                           self.init(s.name + "_wscale", ws),
                                           self.init(s.name + "_wzp", np.zeros_like(codes[:, 0, 0, 0]))],
                      axis=0)
        bscale = (ws.astype(np.float64) * tin.scale).astype(np.float32)
        # The integer kernel folds -sum(Wq) * zp_in into the bias; the float conv reads x - zp.
        bias = np.asarray(p["bias_codes"], np.int64) + \
            codes.reshape(len(ws), -1).astype(np.int64).sum(axis=1) * tin.zp
        b = self.node("DequantizeLinear", [self.init(s.name + "_bq", bias.astype(np.int32)),
                                           self.init(s.name + "_bscale", bscale),
                                           self.init(s.name + "_bzp", np.zeros(len(ws), np.int32))],
                      axis=0)
        self._int8_op(s, [None, w, b], {**s.attrs, "_relu": p.get("relu")})

    def _add(self, s: Step) -> None:
        slots: list[str | None] = [None] * len(s.inputs)
        const = s.params.get("constant_codes")
        if const is not None:
            t = s.out_types[0]
            slots.append(self.init(s.name + "_const", (np.asarray(const) * t.scale).astype(np.float32)))
        self._int8_op(s, slots, {"_relu": s.params.get("relu")})


def qdq_model(plan: QuantPlan) -> onnx.ModelProto:
    """The QDQ ONNX form of `plan` (see the module docstring)."""
    b = _Builder(plan)
    for s in plan.steps.values():
        b.step(s)
    g = plan.graph
    inputs = [helper.make_tensor_value_info(t.name, helper.np_dtype_to_tensor_dtype(np.dtype(t.dtype)),
                                            _batch_free(t.shape)) for t in g.inputs]
    outputs = [helper.make_tensor_value_info(t, TensorProto.FLOAT, _batch_free(g.shapes[t]))
               for t in g.outputs]
    graph = helper.make_graph(b.nodes, f"{g.name}_{plan.mode.lower()}_qdq", inputs, outputs, b.inits)
    opset = max(MIN_OPSET, int(g.meta.get("opset", MIN_OPSET)))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="tpushell",
                              doc_string=f"tpushell QDQ export: chip {plan.chip.name}, {plan.mode}, "
                                         f"float ops {plan.float_ops()}")
    model.ir_version = min(model.ir_version, 10)
    return model


def _round_to(x: np.ndarray, kind: str) -> np.ndarray:
    """Float32 values rounded to F16 / BF16 (held in float32)."""
    return np.asarray(qm.to_f16(x) if kind == "f16" else qm.to_bf16(x), np.float32)


def _batch_free(shape) -> list:
    """A shape whose first (batch) dimension is symbolic: the model runs any batch size."""
    return ["N"] + list(shape[1:]) if len(shape) else []


def write_qdq(plan: QuantPlan, path: str | os.PathLike) -> onnx.ModelProto:
    """Build, check (onnx.checker) and atomically write the QDQ model of `plan`."""
    model = qdq_model(plan)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ModelError(f"the QDQ export of '{plan.graph.name}' is not valid ONNX: {e}") from e
    with atomic_write(path, "wb") as f:
        f.write(model.SerializeToString())
    return model


def run_qdq(path: str | os.PathLike, feeds: Mapping[str, np.ndarray], plan: QuantPlan, *,
            keep_all: bool = False) -> dict[str, np.ndarray] | None:
    """Run an exported file with onnxruntime: the plan's outputs (every plan tensor with
    `keep_all`), or None when onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    model = onnx.load(os.fspath(path))
    names = list(plan.outputs)
    if keep_all:
        names = [t for t in plan.tensor_names() if plan.types[t].kind != "raw"]
        known = {o.name for o in model.graph.output}
        model.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None)
                                  for t in names if t not in known)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = sess.run(names, {k: np.asarray(v) for k, v in feeds.items()})
    return dict(zip(names, values))
