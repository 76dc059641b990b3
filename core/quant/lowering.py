"""Lowering: Graph + calibration table + qtable + chip + mode -> QuantPlan (reference D).

    lw = Lowerer(graph, table, chip="bm1684x")        # ranges (D.1, D.2) computed once
    plan = lw.plan("INT8", qtable)                     # per-op steps, casts inserted
    print(plan.describe())                             # modes, types, multipliers, casts
    plan.steps["conv0_Conv"].run([codes])              # one step, in the plan's representation

A plan is a list of steps in execution order: one per graph op, plus the casts and requants the
reference inserts between ops of different types, named as its npz keys
(`input_1conv0_Conv_ui8`, `conv4_leaky_LeakyRelu_to_concat20_Concat`,
`conv1_Convconv1_leaky_LeakyRelu_f16`, `transpose_output1_Transpose_f32`). Values are held as
described in `core/quant/qtype.py` (int8 codes, or float32 arrays rounded to the op's float type).

Re-lowering is cheap: a Lowerer caches every step by what determines it (op, mode, input and
output types), so `lw.plan(...)` after one op's mode changed rebuilds only the steps around it,
and `new.stale(old)` names the tensors whose cached values must be recomputed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..calibration.tables import CalibrationTable, QTable
from ..errors import CalibrationError, QuantizationError, TpuError, did_you_mean
from ..graph.ir import Graph, Node
from ..ops import DEFAULT_OPSET, as_tuple
from .chips import Chip, check_mode, get_chip, resolve_fp_type
from .kernels import build_kernel
from .qtype import F32, RAW, ROUND, QType, cast, float_qtype, int_qtype, requant_params
from .ranges import Range, propagate, table_ranges
from .top_optimize import optimize
from .rules import Int8Op, MissingRange, NoInt8Rule, RuleContext, lower_int8

# Weight inputs of these ops are parameters (scales, sizes), not data: never rounded to F16.
PARAMETER_INPUTS = ("Resize", "Upsample", "Reshape", "Slice", "Pad", "Tile", "Expand", "Squeeze",
                    "Unsqueeze", "Gather", "Split")
# Biases stay float32 in F16/BF16 ops (checked against the reference's F16 conv results).
BIAS_INPUT = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2}
# Reshape-likes that keep a float input's type rather than casting it to INT8 (ForwardTypePattern).
FORWARD_TYPE = ("Reshape", "Squeeze", "Unsqueeze", "Tile")
# Float ops whose output the reference's interpreter leaves in float32 even in F16 (the cast
# after them rounds): LayerNorm.
UNROUNDED_FLOAT_OUTPUT = ("LayerNorm",) + FORWARD_TYPE
# Ops the bm1684x lowering runs in F32 when F16 is asked for (K 6.2, 6.9).
F32_FOR_F16 = ("SiLU", "Sigmoid", "HardSigmoid", "GELU", "AvgPool")
F16_MAX = 65504.0


def float_mode(node: Node, mode: str, chip: Chip) -> str:
    """The float mode the chip runs `node` in when `mode` is asked for (the reference's
    lowering: SiLU, Sigmoid, HardSigmoid, GELU and AvgPool go to F32 for F16 on bm1684x, and a
    MulConst whose constant exceeds F16's range)."""
    if mode != "F16" or chip.name != "bm1684x" or "F32" not in chip.modes:
        return mode
    if node.op_type in F32_FOR_F16:
        return "F32"
    if node.op_type == "MulConst" and abs(float(node.attrs["const_val"])) > F16_MAX:
        return "F32"
    return mode


# A table that knows fewer than this fraction of the model's tensors is for another model.
MIN_TABLE_MATCH = 0.5


@dataclass(eq=False)
class Step:
    """One computation of the plan: a graph op in some mode, or an inserted cast / requant.

    `run(inputs)` takes the values of `inputs` and returns the values of `outputs`, all in the
    plan's representation (core/quant/qtype.py). `key` identifies the computation: two steps with
    equal keys compute the same function of the same inputs.
    """

    name: str
    op_type: str                       # ONNX op type, or "Cast" / "Requant"
    mode: str                          # INT8 / F16 / BF16 / F32 (a cast: its target mode)
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    in_types: tuple[QType, ...]
    out_types: tuple[QType, ...]
    kind: str                          # kernel kind (core/quant/kernels.py)
    attrs: dict[str, Any] = field(default_factory=dict, repr=False)
    slots: tuple = field(default=(None,), repr=False)   # per ONNX input: weight, None, or ""
    params: dict[str, Any] = field(default_factory=dict, repr=False)
    opset: int = DEFAULT_OPSET
    op: str = ""                       # the graph op this step is (or, for a cast, serves)
    note: str = ""                     # why the op runs in this mode, when not the asked one
    key: tuple = ()

    def __post_init__(self) -> None:
        self.kernel = build_kernel(self.kind, self.op_type, self.in_types, self.out_types,
                                   self.attrs, self.slots, self.params, self.mode, self.opset)

    def run(self, inputs: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
        """Compute the outputs from the input values (plan representation in and out)."""
        return as_tuple(self.kernel(*inputs))

    @property
    def is_cast(self) -> bool:
        return self.op_type in ("Cast", "Requant")


@dataclass
class QuantPlan:
    """The lowered model: steps in execution order, every tensor's type, per-op modes."""

    graph: Graph
    chip: Chip
    mode: str
    fp_type: str
    steps: dict[str, Step]
    types: dict[str, QType]
    op_modes: dict[str, str]
    ranges: dict[str, Range]
    asymmetric: bool = False
    aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._producer = {t: s for s in self.steps.values() for t in s.outputs}

    @property
    def inputs(self) -> list[str]:
        return self.graph.input_names

    @property
    def outputs(self) -> list[str]:
        """The plan tensors holding the graph outputs (see `tensor`)."""
        return [self.tensor(t) for t in self.graph.outputs]

    def tensor(self, name: str) -> str:
        """The plan tensor holding graph tensor `name` (its own name unless the plan renames it,
        as the reference's INT8 Softmax of a 3-D tensor ends in `<name>__softmax_reshape`)."""
        return self.aliases.get(name, name)

    def producer(self, tensor: str) -> Step | None:
        """The step computing `tensor` (None for graph inputs)."""
        return self._producer.get(tensor)

    def tensor_names(self) -> list[str]:
        """Graph inputs, then every step output in execution order."""
        return self.inputs + [t for s in self.steps.values() for t in s.outputs]

    def casts(self) -> list[Step]:
        """The inserted casts and requants."""
        return [s for s in self.steps.values() if s.is_cast]

    def float_ops(self) -> dict[str, str]:
        """Ops that do not run in INT8: {op: mode}."""
        return {op: m for op, m in self.op_modes.items() if m != "INT8"}

    def dequantize(self, tensor: str, value: np.ndarray) -> np.ndarray:
        """A value of `tensor` in the plan's representation -> float32."""
        return self.types[tensor].dequantize(value)

    def encode(self, tensor: str, value: np.ndarray) -> np.ndarray:
        """A float32 value -> the representation of `tensor` (as a cast from F32 would make it),
        e.g. to feed F32 reference values into one step and measure the error it adds alone."""
        t = self.types[tensor]
        return value if t == RAW or t == F32 else cast(np.asarray(value, np.float32), F32, t)

    def stale(self, old: "QuantPlan") -> set[str]:
        """Tensors of this plan whose values computed under `old` cannot be reused.

        A step is changed when `old` has no step of that name with the same key; its outputs and
        everything downstream of them are stale.
        """
        stale: set[str] = set()
        for s in self.steps.values():
            changed = s.name not in old.steps or old.steps[s.name].key != s.key
            if changed or any(t in stale for t in s.inputs):
                stale.update(s.outputs)
        return stale

    def describe(self) -> str:
        """A table of every step: mode, types in and out, and the numbers it uses."""
        rows = [f"plan for {self.graph.name}: chip {self.chip.name}, mode {self.mode}, "
                f"float type {self.fp_type}, {len(self.float_ops())} op(s) not INT8, "
                f"{len(self.casts())} cast(s)"]
        for s in self.steps.values():
            ins = ", ".join(f"{t}:{ty}" for t, ty in zip(s.inputs, s.in_types))
            outs = ", ".join(str(ty) for ty in s.out_types)
            line = f"{s.name:<44} {s.op_type:<10} {s.mode:<5} ({ins}) -> {outs}"
            summary = _param_summary(s.params)
            if summary:
                line += f"  [{summary}]"
            if s.note:
                line += f"  ({s.note})"
            rows.append(line)
        return "\n".join(rows)


def _param_summary(params: dict[str, Any]) -> str:
    parts = []
    for k in ("multiplier", "shift", "multipliers", "shifts"):
        if k in params:
            v = np.asarray(params[k])
            parts.append(f"{k}={v.tolist()}" if v.size <= 4 else
                         f"{k}=[{v.min()}..{v.max()}] x{v.size}")
    return ", ".join(parts)


class Lowerer:
    """Lowers one graph with one calibration table for one chip; caches steps across plans."""

    def __init__(self, graph: Graph, table: CalibrationTable | None, chip: str | Chip = "bm1684x",
                 *, asymmetric: bool = False) -> None:
        self.source = graph
        self.table = table
        self.chip = get_chip(chip)
        self.asymmetric = asymmetric
        if table is not None:
            check_table_matches(graph, table)
        imported = table_ranges(graph, table, self.chip, asymmetric)
        # The processor's rewrites (merged Scales, split MatMuls) see the imported ranges and
        # come before propagation, as in the reference (core/quant/top_optimize.py).
        self.graph, imported, self.renamed, self.replaced = optimize(graph, imported)
        self.ranges = propagate(self.graph, imported, self.chip)
        self.opset = int(graph.meta.get("opset", DEFAULT_OPSET))
        self._cache: dict[tuple, Step] = {}
        self._int8: dict[str, Int8Op | NoInt8Rule | MissingRange] = {}
        self._ctx = RuleContext(self.graph, self.home, asymmetric, self.opset)

    # ---- public ---------------------------------------------------------------------------------
    def plan(self, mode: str = "INT8", qtable: QTable | None = None,
             fp_type: str = "auto") -> QuantPlan:
        """The plan for a whole-model `mode` with the per-op overrides of `qtable`."""
        mode = check_mode(self.chip, mode, "--quantize")
        fp = resolve_fp_type(self.chip, fp_type)
        requested = self.op_modes(mode, qtable)
        build = _PlanBuilder(self, fp)
        for node in self.graph.nodes:
            build.add_op(node, requested[node.name])
        build.add_output_casts()
        build.raise_missing()
        return QuantPlan(self.graph, self.chip, mode, fp, build.steps, build.types,
                         build.modes, self.ranges, self.asymmetric, build.aliases)

    def op_modes(self, mode: str, qtable: QTable | None) -> dict[str, str]:
        """Requested mode per op: `mode`, overlaid by the qtable (validated against the chip)."""
        return resolve_modes(self.graph, self.chip, mode, qtable, self.replaced)

    # ---- cached pieces --------------------------------------------------------------------------
    def home(self, tensor: str) -> QType:
        """The int8/uint8 type of `tensor` from its propagated range; MissingRange if none."""
        r = self.ranges.get(tensor)
        if r is None:
            raise MissingRange(tensor)
        return int_qtype(r, self.asymmetric)

    def int8(self, node: Node) -> Int8Op | NoInt8Rule | MissingRange:
        """The node's INT8 lowering (or why there is none); computed once per Lowerer."""
        if node.name not in self._int8:
            try:
                self._int8[node.name] = lower_int8(node, self._ctx)
            except (NoInt8Rule, MissingRange) as e:
                self._int8[node.name] = e
        return self._int8[node.name]

    def cached(self, key: tuple, make: Callable[[], Step]) -> Step:
        step = self._cache.get(key)
        if step is None:
            step = self._cache[key] = make()
        return step


class _PlanBuilder:
    """Accumulates the steps and tensor types of one plan (see Lowerer.plan)."""

    def __init__(self, lw: Lowerer, fp: str) -> None:
        self.lw, self.fp, self.g = lw, fp, lw.graph
        self.steps: dict[str, Step] = {}
        self.types: dict[str, QType] = {}
        self.modes: dict[str, str] = {}
        self.missing: dict[str, list[str]] = {}
        # graph tensor -> the plan tensor holding its value, where the plan renames it
        self.aliases: dict[str, str] = dict(lw.renamed)
        for info in self.g.inputs:
            self.types[info.name] = F32 if info.dtype == "float32" else RAW

    def add_op(self, node: Node, mode: str) -> None:
        note = ""
        int8 = None
        acts = [self.aliases.get(t, t) for t in self.g.activation_inputs(node)]
        inherited = self._inherited_float(node, acts) if mode == "INT8" else None
        if inherited is not None:
            mode, note = inherited, f"takes its input's {inherited} (as the reference)"
        elif mode == "INT8":
            int8 = self.lw.int8(node)
            if isinstance(int8, NoInt8Rule):
                mode = self._fallback(int8.mode)
                note, int8 = f"{int8}: runs in {mode}", None
            elif isinstance(int8, MissingRange):
                self.missing.setdefault(int8.tensor, []).append(node.name)
                mode, note, int8 = self.fp, "missing calibration", None
        else:
            actual = float_mode(node, mode, self.lw.chip)
            if actual != mode:
                mode, note = actual, f"{node.op_type} runs in {actual} for {mode} on {self.lw.chip.name} (as the reference)"
        if int8 is not None:
            in_types = int8.in_types
            out_types = int8.out_types or (int8.out_type,)
        else:
            in_types = tuple(self._float_in(t, mode) for t in acts)
            out_types = tuple(self._float_out(t, mode) for t in node.outputs if t)
        inputs = tuple(self._arrive(t, need, node.name) for t, need in zip(acts, in_types))
        key = (node.name, mode, in_types, out_types, inputs)
        step = self.lw.cached(key, lambda: self._op_step(node, mode, inputs, in_types, out_types,
                                                         int8, note, key))
        self._add(step)
        if step.outputs[-1] != node.outputs[0] and len(node.outputs) == 1:
            self.aliases[node.outputs[0]] = step.outputs[-1]
        self.modes[node.name] = mode

    def _inherited_float(self, node: Node, acts: list[str]) -> str | None:
        """A reshape-like op reading a float tensor keeps that float type instead of casting to
        INT8 first (the reference's ForwardTypePattern: a Reshape after an F16 LayerNorm is F16)."""
        if node.op_type not in FORWARD_TYPE or len(acts) != 1:
            return None
        have = self.types.get(acts[0])
        if have is None or not have.is_float or have.kind == "f32" or acts[0] in self.g.input_names:
            return None
        return have.kind.upper()

    def add_output_casts(self) -> None:
        for t in self.g.outputs:
            t = self.aliases.get(t, t)
            have = self.types[t]
            if have.kind not in ("f32", "raw"):
                self._cast(t, have, F32, f"{t}_f32", t)

    def _fallback(self, prescribed: str | None) -> str:
        """The float mode for an op without INT8: the one prescribed if the chip has it."""
        return prescribed if prescribed in self.lw.chip.modes else self.fp

    def raise_missing(self) -> None:
        if not self.missing:
            return
        source = self.lw.table.path if self.lw.table is not None and self.lw.table.path else None
        items = [f"{t} (needed by {', '.join(ops)})" for t, ops in self.missing.items()]
        shown = "; ".join(items[:6]) + (f"; and {len(items) - 6} more" if len(items) > 6 else "")
        if self.lw.table is None:
            raise CalibrationError(f"INT8 needs a calibration table; none is loaded "
                                   f"({len(items)} tensor(s) need ranges: {shown})")
        raise CalibrationError(f"calibration table {source or '(in memory)'} has no row for "
                               f"{len(items)} tensor(s) the INT8 plan needs: {shown}")

    # ---- helpers --------------------------------------------------------------------------------
    def _float_in(self, tensor: str, mode: str) -> QType:
        return RAW if self.types[tensor] == RAW else float_qtype(mode)

    def _float_out(self, tensor: str, mode: str) -> QType:
        return float_qtype(mode) if self.g.dtypes.get(tensor, "float32") == "float32" else RAW

    def _arrive(self, tensor: str, need: QType, consumer: str) -> str:
        """The name of `tensor` converted to `need` (inserting a cast or requant if needed)."""
        have = self.types[tensor]
        if have == need or have == RAW or need == RAW:
            return tensor
        if have.is_int and need.is_int:
            return self._cast(tensor, have, need, f"{tensor}_to_{consumer}", consumer)
        return self._cast(tensor, have, need, f"{tensor}{consumer}_{need.suffix}", consumer)

    def _cast(self, tensor: str, have: QType, need: QType, name: str, consumer: str) -> str:
        for s in self.steps.values():  # one cast per (tensor, type), shared by its consumers
            if s.is_cast and s.inputs == (tensor,) and s.out_types == (need,):
                return s.name
        key = ("cast", name, tensor, have, need)
        self._add(self.lw.cached(key, lambda: _cast_step(name, tensor, have, need, consumer, key)))
        return name

    def _add(self, step: Step) -> None:
        self.steps[step.name] = step
        for t, ty in zip(step.outputs, step.out_types):
            self.types[t] = ty

    def _op_step(self, node: Node, mode: str, inputs, in_types, out_types, int8, note,
                 key) -> Step:
        outs = tuple(t for t in node.outputs if t)
        common = dict(attrs=node.attrs, opset=self.lw.opset, op=node.name, note=note, key=key)
        if int8 is not None:
            # Integer kernels take their weights from `params`: no float weights are kept.
            slots = self._slots(node, mode) if int8.kind in ("same_scale", "table") else ()
            name = int8.outputs[-2] if len(int8.outputs) > 1 else node.name
            return Step(name, node.op_type, "INT8", inputs, int8.outputs or outs, in_types,
                        out_types, int8.kind, slots=slots, params=int8.params, **common)
        params = {"round_output": False} if node.op_type in UNROUNDED_FLOAT_OUTPUT else {}
        return Step(node.name, node.op_type, mode, inputs, outs, in_types, out_types, "float",
                    slots=self._slots(node, mode), params=params, **common)

    def _slots(self, node: Node, mode: str) -> tuple:
        """The op's weights per input slot (None for an activation, "" for an absent optional
        input), rounded to a float `mode`:
        data weights are rounded, biases stay float32, parameters (shapes, scales) untouched."""
        round_fn = ROUND[mode.lower()] if mode in ("F16", "BF16") else None
        slots: list = []
        for i, t in enumerate(node.inputs):
            if not t:
                slots.append("")    # an absent optional input
                continue
            w = self.g.weights.get(t)
            if w is None:
                slots.append(None)
                continue
            if w is not None and round_fn is not None and w.dtype == np.float32 and \
                    not (i > 0 and node.op_type in PARAMETER_INPUTS) and \
                    BIAS_INPUT.get(node.op_type) != i:
                w = round_fn(w)
            slots.append(w)
        return tuple(slots)


def _cast_step(name: str, tensor: str, have: QType, need: QType, consumer: str,
               key: tuple) -> Step:
    mode = "INT8" if need.is_int else need.kind.upper()
    if have.is_int and need.is_int:
        m, r = requant_params(have, need)
        return Step(name, "Requant", mode, (tensor,), (name,), (have,), (need,), "requant",
                    params={"multiplier": m, "shift": r}, op=consumer, key=key)
    return Step(name, "Cast", mode, (tensor,), (name,), (have,), (need,), "cast", op=consumer,
                key=key)


def resolve_modes(graph: Graph, chip: str | Chip, mode: str, qtable: QTable | None,
                  replaced: dict[str, list[str]] | None = None) -> dict[str, str]:
    """Mode per op: `mode` for all, overlaid by `qtable`; QuantizationError naming the qtable
    line for an unknown op (with the closest names) or a mode the chip lacks. `replaced` maps
    ops the processor rewrote away to the ops that compute them now (they take the mode)."""
    chip = get_chip(chip)
    modes = {n.name: mode for n in graph.nodes}
    if qtable is None:
        return modes
    replaced = replaced or {}
    source = qtable.path or "qtable"
    for name, m in qtable.items():
        where = f"{source}:{qtable.lines[name]}" if name in qtable.lines else f"{source} ({name})"
        canonical = graph.canonical_op(name)
        targets = [name] if name in modes else [t for t in replaced.get(name, ()) if t in modes] \
            or ([canonical] if canonical is not None else [])
        if not targets:
            raise QuantizationError(f"{where}: no op '{name}' in model '{graph.name}'"
                                    f"{did_you_mean(name, graph.op_names)}")
        try:
            checked = check_mode(chip, m, where)
        except TpuError as e:
            raise QuantizationError(str(e)) from None
        for t in targets:
            modes[t] = checked
    return modes


def check_table_matches(graph: Graph, table: CalibrationTable) -> None:
    """CalibrationError when the table names too few of the model's tensors (another model)."""
    names = graph.tensor_names()
    known = [t for t in names if t in table]
    if len(known) >= MIN_TABLE_MATCH * len(names):
        return
    source = table.path or "the calibration table"
    theirs = [t for t in table if t not in set(names)][:3]
    raise CalibrationError(
        f"{source} does not match model '{graph.name}': it has rows for {len(known)} of the "
        f"model's {len(names)} tensors (table names e.g. {', '.join(theirs) or '-'}; model "
        f"tensors e.g. {', '.join(names[:3])}); was it made for another model?")


def lower(graph: Graph, table: CalibrationTable | None, qtable: QTable | None = None, *,
          chip: str | Chip = "bm1684x", mode: str = "INT8", fp_type: str = "auto",
          asymmetric: bool = False) -> QuantPlan:
    """One-shot lowering (see Lowerer for repeated re-lowering)."""
    return Lowerer(graph, table, chip, asymmetric=asymmetric).plan(mode, qtable, fp_type)


def needs_calibration(mode: str, qtable: QTable | None) -> bool:
    """Whether a plan in `mode` with `qtable` has INT8 ops (and so needs a table)."""
    return mode.upper() == "INT8" or any(m.upper() == "INT8" for _, m in (qtable or {}).items())

