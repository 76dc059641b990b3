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
from ..fileio import FileGroup, atomic_write
from .lowering import QuantPlan, Step
from .onnx_ops import LAYER_NORM_OPSET, ONNX_FORMS
from .qtype import QType

MIN_OPSET = 13
# Step kinds that map int8 codes to int8 codes one by one (a 256-entry table in the export).
LUT_KINDS = ("table", "relu", "leaky_relu", "requant", "add_const", "mul_shift")
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

    def codes(self, tensor: str, t: QType, dtype: int = TensorProto.DOUBLE) -> str:
        """The integer codes of an int8/uint8 plan tensor minus its zero point, as floats."""
        zp = self.init(tensor + "_zp0", np.array(t.zp, np.int8 if t.signed else np.uint8))
        one = self.init(tensor + "_one", np.array(1.0, np.float32))
        value = self.node("DequantizeLinear", [tensor + "_q", one, zp])
        return self.node("Cast", [value], to=dtype) if dtype != TensorProto.FLOAT else value

    def shift_round(self, value: str, shift: int) -> str:
        """RightShiftRound(v, r) HALF_UP on integer-valued doubles: floor(v / 2**r + 1/2)."""
        if shift <= 0:
            return self.node("Mul", [value, self.init("pow2", np.array(2.0 ** -shift, np.float64))])
        scaled = self.node("Mul", [value, self.init("pow2", np.array(2.0 ** -shift, np.float64))])
        return self.node("Floor", [self.node("Add", [scaled, self.init("half", np.array(0.5, np.float64))])])

    def store_codes(self, value: str, t: QType, out: str) -> None:
        """Integer-valued doubles (before the zero point) saturated into `t` as plan tensor `out`."""
        self.quantize(self.node("Cast", [value], to=TensorProto.FLOAT), t, out, codes=True)

    # ---- steps ----------------------------------------------------------------------------------
    def step(self, s: Step) -> None:
        if s.kind in LUT_KINDS and len(s.inputs) == 1 and s.in_types[0].is_int and s.out_types[0].is_int:
            self._lookup(s)
            return
        getattr(self, "_" + s.kind)(s)

    def _lookup(self, s: Step) -> None:
        """An int8 -> int8 step of one input is a function of 256 codes: the chip's own table,
        read with Gather, so the export computes exactly what the chip computes."""
        tin, tout = s.in_types[0], s.out_types[0]
        all_codes = np.arange(256, dtype=np.uint8)
        table = np.asarray(s.run([all_codes.view(np.int8) if tin.signed else all_codes])[0])
        values = self.init(s.name + "_table", (table.astype(np.float32) - tout.zp))
        raw = self.codes(s.inputs[0], tin, TensorProto.INT64)
        if tin.zp:
            raw = self.node("Add", [raw, self.init("zp", np.array(tin.zp, np.int64))])
        index = self.node("Mod", [self.node("Add", [raw, self.init("wrap", np.array(256, np.int64))]),
                                  self.init("n", np.array(256, np.int64))])
        self.quantize(self.node("Gather", [values, index]), tout, s.name, codes=True)

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

    def _onnx_op(self, s: Step, slots: list[str | None], attrs: dict) -> list[str]:
        """The op itself on float inputs; returns its (float) outputs. The reference's canonical
        ops are written as the ONNX ops they stand for (core/quant/onnx_ops.py)."""
        acts = iter(s.inputs)
        ins = [next(acts) if w is None else w for w in slots]
        public = {k: v for k, v in attrs.items() if not k.startswith("_")}
        emit = ONNX_FORMS.get(s.op_type)
        if emit is not None:
            outs = [emit(self, ins, public, s)]
        else:
            outs = [self.name(o) for o in s.outputs]
            self.nodes.append(helper.make_node(s.op_type, ins, outs, name=self.name(s.op_type), **public))
        if attrs.get("_relu"):
            outs[0] = self.node("Relu", [outs[0]])
        if attrs.get("_relu_limit", -1) > 0:
            outs[0] = self.node("Min", [outs[0], self.init("limit", np.array(attrs["_relu_limit"], np.float32))])
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
        rounded = s.params.get("round_output", True)
        for value, name, t in zip(outs, s.outputs, s.out_types):
            self.round_float(value, t.kind if t.is_float and rounded else "f32", name)

    def _int8_op(self, s: Step, slots: list[str | None], attrs: dict) -> None:
        out = self._onnx_op(s, slots, attrs)[0]
        self.quantize(out, s.out_types[0], s.name)

    def _same_scale(self, s: Step) -> None:
        self._int8_op(s, self._weights(s, "f32"), s.attrs)

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

    def _deconv(self, s: Step) -> None:
        # Filter [ic, oc, kh, kw] with one scale per output channel (axis 1); symmetric input.
        p, tin = s.params, s.in_types[0]
        codes = np.asarray(p["weight_codes"])
        ws = np.asarray(p["weight_scales"], np.float32)
        w = self.node("DequantizeLinear", [self.init(s.name + "_wq", codes),
                                           self.init(s.name + "_wscale", ws),
                                           self.init(s.name + "_wzp", np.zeros_like(codes[0, :, 0, 0]))],
                      axis=1)
        b = self.node("DequantizeLinear", [
            self.init(s.name + "_bq", np.asarray(p["bias_codes"], np.int64).astype(np.int32)),
            self.init(s.name + "_bscale", (ws.astype(np.float64) * tin.scale).astype(np.float32)),
            self.init(s.name + "_bzp", np.zeros(len(ws), np.int32))], axis=0)
        self._int8_op(s, [None, w, b], {**s.attrs, "_relu": p.get("relu")})

    def _constant(self, s: Step) -> str:
        p = s.params
        return self.init(s.name + "_const", (np.asarray(p["constant_codes"], np.float32)
                                             * np.float32(p["constant_scale"])).astype(np.float32))

    def _times(self, value: str, factor: float) -> str:
        return self.node("Mul", [value, self.init("factor", np.array(factor, np.float64))])

    def _add(self, s: Step) -> None:
        # The chip: sat(sum_i RightShiftRound(x_i * m_i, r_i)), each term rounded alone.
        out, p = s.out_types[0], s.params
        terms = [self.codes(x, t) for x, t in zip(s.inputs, s.in_types)]
        if p.get("constant_codes") is not None:
            terms.append(self.init(s.name + "_const", np.asarray(p["constant_codes"], np.float64)))
        total = None
        for x, m, r in zip(terms, p["multipliers"], p["shifts"]):
            term = self.shift_round(self._times(x, float(m)), int(r))
            total = term if total is None else self.node("Add", [total, term])
        if p.get("relu"):
            total = self.node("Relu", [total])
        self.store_codes(total, out, s.name)

    def _mul(self, s: Step) -> None:
        # The chip: sat(RightShiftRound(a * b * m, r)).
        out, p = s.out_types[0], s.params
        ins = [self.codes(x, t) for x, t in zip(s.inputs, s.in_types)]
        if p.get("constant_codes") is not None:
            c = self.init(s.name + "_const", np.asarray(p["constant_codes"], np.float64))
            ins = [c] + ins if p.get("constant_first") else ins + [c]
        y = self.shift_round(self._times(self.node("Mul", ins), float(p["multiplier"])), int(p["shift"]))
        if p.get("relu"):
            y = self.node("Relu", [y])
        self.store_codes(y, out, s.name)

    def _avg_pool(self, s: Step) -> None:
        # The chip: the window's integer sum S, then sat(RightShiftRound(S * m, r)).
        out, p = s.out_types[0], s.params
        x = self.node("Cast", [self.codes(s.inputs[0], s.in_types[0])], to=TensorProto.FLOAT)
        avg = self.node("Cast", [ONNX_FORMS["AvgPool"](self, [x], s.attrs, s)], to=TensorProto.DOUBLE)
        total = self.node("Round", [self._times(avg, float(p["area"]))])
        self.store_codes(self.shift_round(self._times(total, float(p["multiplier"])), int(p["shift"])),
                         out, s.name)

    def _matmul(self, s: Step) -> None:
        p, tin = s.params, s.in_types[0]
        slots: list[str | None] = [None] * len(s.inputs)
        if p.get("weight_codes") is not None:
            codes = np.asarray(p["weight_codes"])
            w = self.node("DequantizeLinear", [self.init(s.name + "_wq", codes),
                                               self.init(s.name + "_wscale", np.array(p["weight_scale"], np.float32)),
                                               self.init(s.name + "_wzp", np.array(0, np.int8))])
            slots = [None, w]
            if p.get("bias_codes") is not None:
                bias = np.asarray(p["bias_codes"], np.int64).astype(np.int32)
                slots.append(self.node("DequantizeLinear", [
                    self.init(s.name + "_bq", bias),
                    self.init(s.name + "_bscale", np.array(p["weight_scale"] * tin.scale, np.float32)),
                    self.init(s.name + "_bzp", np.array(0, np.int32))]))
        self._int8_op(s, slots, {"_relu": p.get("relu")})

    def _softmax(self, s: Step) -> None:
        axis = {"axis": 1}
        if len(s.outputs) == 1:
            out = self.node("Softmax", [s.inputs[0]], **axis)
            self.quantize(out, s.out_types[0], s.name)
            return
        x4 = self.node("Reshape", [s.inputs[0], self._shape4(s)])
        self.quantize(x4, s.out_types[0], s.outputs[0])
        y4 = self.node("Softmax", [s.outputs[0]], **axis)
        self.quantize(y4, s.out_types[1], s.outputs[1])
        back = self.node("Shape", [s.inputs[0]])
        self.quantize(self.node("Reshape", [s.outputs[1], back]), s.out_types[2], s.outputs[2])

    def _shape4(self, s: Step) -> str:
        """[N, rest..., 1, 1]: the reference's 4-D view of a rank < 4 tensor (ones appended)."""
        shape = self.node("Shape", [s.inputs[0]])
        ones = self.init(s.name + "_ones", np.ones(4 - int(s.params["rank"]), np.int64))
        return self.node("Concat", [shape, ones], axis=0)


def qdq_model(plan: QuantPlan) -> onnx.ModelProto:
    """The QDQ ONNX form of `plan` (see the module docstring)."""
    b = _Builder(plan)
    for s in plan.steps.values():
        b.step(s)
    g = plan.graph
    inputs = [helper.make_tensor_value_info(t.name, helper.np_dtype_to_tensor_dtype(np.dtype(t.dtype)),
                                            _batch_free(t.shape)) for t in g.inputs]
    outputs = [helper.make_tensor_value_info(plan.tensor(t), TensorProto.FLOAT, _batch_free(g.shapes[t]))
               for t in g.outputs]
    graph = helper.make_graph(b.nodes, f"{g.name}_{plan.mode.lower()}_qdq", inputs, outputs, b.inits)
    opset = max(MIN_OPSET, int(g.meta.get("opset", MIN_OPSET)))
    if any(s.op_type == "LayerNorm" for s in plan.steps.values()):
        opset = max(opset, LAYER_NORM_OPSET)
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


def write_qdq(plan: QuantPlan, path: str | os.PathLike,
              group: FileGroup | None = None) -> onnx.ModelProto:
    """Build, check (onnx.checker) and atomically write the QDQ model of `plan` (with `group`:
    renamed when the group commits)."""
    model = qdq_model(plan)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ModelError(f"the QDQ export of '{plan.graph.name}' is not valid ONNX: {e}") from e
    with (group.open(path, "wb") if group is not None else atomic_write(path, "wb")) as f:
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
    values = dict(zip(names, sess.run(names, {k: np.asarray(v) for k, v in feeds.items()})))
    # named as `simulate` names them: graph outputs by their graph names
    renamed = {g: values[p] for g, p in plan.aliases.items() if p in values}
    if not keep_all:
        return {g: values[plan.tensor(g)] for g in plan.graph.outputs}
    return values | renamed
