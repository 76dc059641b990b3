"""Deploy: a QuantPlan written as a model file, read back and run (docs/model_format.md).

    result = deploy(plan, "yolov3_int8.bmodel", test_input="img.jpg")   # validate, then write
    model = load_deployed("yolov3_int8.bmodel")
    y = model.run({"input_1": x})                                       # as the plan computes

The file is tpushell's own container (format `tpushell-model`, version 1): a zip holding
`manifest.json` (model, target chip and mode, tensor types, every step with its numbers) and
`arrays/*.npy` (integer weights, bias codes, multipliers, F16 weights, ...). It is a simulator
model, not a Sophgo binary; the reference's `.bmodel` / `.cvimodel` names are accepted. A name
ending in `.onnx` writes a QDQ ONNX instead (core/quant/qdq_export.py).

Validation (reference F.2) with `test_input`: the plan's outputs (or every tensor with
`compare_all`) are compared with the F32 model's (or `test_reference`) at `tolerance`; on failure
nothing is written. After writing, the file is loaded and run again, and must reproduce the plan.
"""
from __future__ import annotations

import datetime
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputFileError, QuantizationError, TpuError
from ..fileio import FileGroup, atomic_write, check_file_stem, check_writable, load_npz, save_npz
from ..graph.interpreter import run
from ..graph.limits import MAX_MANIFEST_BYTES, MAX_MEMBER_BYTES
from ..graph.ir import Graph, Node, TensorInfo
from ..graph.preprocess import PreprocessConfig
from ..metrics import CompareReport, compare_npz
from ..progress import Progress, ProgressFn
from .chips import get_chip
from .lowering import QuantPlan, Step
from .qtype import QType
from .ranges import Range
from .simulate import simulate

FORMAT, VERSION = "tpushell-model", 1
DEPLOYED_SUFFIXES = (".bmodel", ".cvimodel", ".tpsm")
MANIFEST = "manifest.json"
# Default tolerances (cos, euclid) of the plan-vs-F32 check, by mode (reference F.1, 1.30.2).
TOLERANCE = {"INT8": (0.90, 0.80), "F16": (0.99, 0.90), "BF16": (0.99, 0.90), "F32": (0.99, 0.99)}
# Deployed file (or QDQ ONNX) vs the plan ("--correctness" of F.1).
CORRECTNESS = (0.99, 0.90)


class ValidationError(QuantizationError):
    """The deployed model failed its comparison; `report` holds every tensor's result."""

    def __init__(self, message: str, report: CompareReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class DeployResult:
    """What deploy wrote and how the checks went."""

    path: str
    plan: QuantPlan
    files: list[str] = field(default_factory=list)        # npz evidence written
    report: CompareReport | None = None                   # plan vs F32 (or test_reference)
    correctness: CompareReport | None = None              # written file vs plan
    reference_file: str | None = None                     # the npz the plan was compared with
    tpu_file: str | None = None                           # the plan's results on test_input

    def __str__(self) -> str:
        p = self.plan
        kind = "QDQ ONNX" if self.path.endswith(".onnx") else "tpushell model (simulator, not a Sophgo binary)"
        lines = [f"wrote {self.path}: {kind}, chip {p.chip.name}, {p.mode}, "
                 f"{len(p.float_ops())} op(s) not INT8, {len(p.casts())} cast(s)"]
        lines += [f"saved {f}" for f in self.files]
        return "\n".join(lines)


# ---- deploy ---------------------------------------------------------------------------------------
def deploy(plan: QuantPlan, path: str | os.PathLike, *, test_input: str | None = None,
           test_reference: str | None = None, tolerance: tuple[float, float] | None = None,
           correctness: tuple[float, float] = CORRECTNESS, compare_all: bool = False,
           excepts: Sequence[str] = (), progress: ProgressFn | None = None) -> DeployResult:
    """Validate `plan` (with `test_input`), write it to `path`, and check the written file.

    The model and its evidence npz files are written to temp files and renamed together at the
    end, after the written model passed its check: the old files stay as they were until then.
    """
    path = check_writable(os.fspath(path), "model")
    folder = os.path.dirname(os.path.abspath(path))
    prefix(plan)   # a model name that cannot name files fails before any work
    result = DeployResult(path, plan)
    with Progress(progress, "deploy", 3 if test_input else 1) as bar, FileGroup() as files:
        feeds = None
        if test_input:
            feeds, tpu = _validate(plan, result, test_input, test_reference, tolerance, compare_all,
                                   excepts, folder, files)
            bar.advance()
        if path.lower().endswith(".onnx"):
            from .qdq_export import write_qdq
            write_qdq(plan, path, group=files)
        else:
            write_model(plan, path, group=files)
        bar.advance()
        if feeds is not None:
            _check_written(plan, result, feeds, tpu, correctness, compare_all, excepts, folder,
                           files)
            bar.advance()
    return result


def prefix(plan: QuantPlan) -> str:
    """The reference's file prefix: `<model>_<chip>_<mode>[_sym]`."""
    sym = ("_asym" if plan.asymmetric else "_sym") if plan.mode == "INT8" else ""
    name = check_file_stem(plan.graph.name, f"model {plan.graph.name!r}")
    return f"{name}_{plan.chip.name}_{plan.mode.lower()}{sym}"


def _evidence_only(files: FileGroup, model_path: str) -> str:
    """Commit the evidence npz files of a failed check (not the model); what to say about them."""
    files.drop(model_path)
    written = files.commit()
    return f" (the compared tensors are in {', '.join(written)})" if written else ""


def _validate(plan, result, test_input, test_reference, tolerance, compare_all, excepts, folder,
              files):
    from ..graph.transform import test_feeds
    feeds = test_feeds(plan.graph, test_input)
    tpu = simulate(plan, feeds, keep_all=compare_all)
    if test_reference:
        ref = load_npz(test_reference)
        result.reference_file = test_reference
    else:
        ref = run(plan.graph, feeds, keep_all=compare_all)
        result.reference_file = os.path.join(folder, f"{check_file_stem(plan.graph.name, 'model')}"
                                                     "_top_outputs.npz")
        save_npz(result.reference_file, ref, group=files)
        result.files.append(result.reference_file)
    result.tpu_file = os.path.join(folder, f"{prefix(plan)}_tpu_outputs.npz")
    save_npz(result.tpu_file, tpu, group=files)
    result.files.append(result.tpu_file)
    tol = tolerance or TOLERANCE[plan.mode]
    result.report = compare_npz(tpu, ref, tol, excepts)
    if not result.report.results:
        files.discard()
        raise ValidationError(f"--test_reference {test_reference} has none of the tensors the "
                              f"model computes (e.g. {', '.join(list(tpu)[:3])}); nothing was "
                              "written", result.report)
    if not result.report.passed:
        saved = _evidence_only(files, result.path)
        raise ValidationError(_failure("the simulated model against the F32 model", result.report,
                                       tol) + f"; {result.path} was not written{saved}",
                              result.report)
    return feeds, tpu


def _check_written(plan, result, feeds, tpu, tol, compare_all, excepts, folder, files):
    written = files.temp(result.path)   # the new file, not yet renamed over the old one
    if result.path.lower().endswith(".onnx"):
        from .qdq_export import run_qdq
        ours = run_qdq(written, feeds, plan, keep_all=compare_all)
        if ours is None:
            return   # onnxruntime is not installed: nothing to run the file with
    else:
        ours = load_deployed(written).run(feeds, keep_all=compare_all)
    out_path = os.path.join(folder, f"{prefix(plan)}_model_outputs.npz")
    save_npz(out_path, ours, group=files)
    result.files.append(out_path)
    result.correctness = compare_npz(ours, tpu, tol, excepts)
    old = " (the old file is unchanged)" if os.path.exists(result.path) else ""
    if not result.correctness.results:   # a check that compared nothing must not pass
        raise ValidationError(f"the written model computes none of the simulated model's tensors "
                              f"({', '.join(list(tpu)[:3])}); {result.path} was not written{old}"
                              f"{_evidence_only(files, result.path)}", result.correctness)
    if not result.correctness.passed:
        saved = _evidence_only(files, result.path)
        raise ValidationError(_failure(f"{result.path} against the simulated model",
                                       result.correctness, tol) +
                              f"; {result.path} was not written{old}{saved}", result.correctness)


def _failure(what: str, report: CompareReport, tol: tuple[float, float]) -> str:
    failed = [r for r in report.results if not r.passed]
    worst = min(failed, key=lambda r: r.cosine)
    return (f"{what}: {len(failed)} of {len(report.results)} tensor(s) below tolerance cos "
            f"{tol[0]}, euclid {tol[1]} (worst {worst.name}: {worst.state}, cos {worst.cosine:.6f}, "
            f"euclid {worst.euclid:.6f})")


# ---- the container --------------------------------------------------------------------------------
class _Arrays:
    """Collects arrays for the zip and replaces them by {"$array": member} in the manifest."""

    def __init__(self) -> None:
        self.members: dict[str, np.ndarray] = {}

    def encode(self, value: Any) -> Any:
        if isinstance(value, np.ndarray):
            name = f"arrays/{len(self.members):05d}.npy"
            self.members[name] = value
            return {"$array": name}
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, (list, tuple)):
            return [self.encode(v) for v in value]
        if isinstance(value, dict):
            return {str(k): self.encode(v) for k, v in value.items()}
        return value


def _decode(value: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$array"}:
            return arrays[value["$array"]]
        return {k: _decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value


def _qtype(t: QType) -> dict[str, Any]:
    return {"kind": t.kind, "scale": t.scale, "zp": t.zp}


def _step_record(s: Step, enc: _Arrays) -> dict[str, Any]:
    slots = []
    for w in s.slots:
        if isinstance(w, np.ndarray) and s.mode == "F16" and w.dtype == np.float32 and \
                np.array_equal(w, w.astype(np.float16).astype(np.float32)):
            w = w.astype(np.float16)   # F16 weights stored as float16 (exact, half the size)
        slots.append(w)
    return {"name": s.name, "op_type": s.op_type, "mode": s.mode, "kind": s.kind, "op": s.op,
            "inputs": list(s.inputs), "outputs": list(s.outputs),
            "in_types": [_qtype(t) for t in s.in_types], "out_types": [_qtype(t) for t in s.out_types],
            "attrs": enc.encode(s.attrs), "slots": enc.encode(slots), "params": enc.encode(s.params),
            "opset": s.opset, "note": s.note}


def manifest(plan: QuantPlan, enc: _Arrays) -> dict[str, Any]:
    """The JSON description of `plan` (arrays collected in `enc`)."""
    g = plan.graph
    return {
        "format": FORMAT, "version": VERSION,
        "producer": "tpushell", "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "note": "tpushell simulator model: not a Sophgo bmodel binary",
        "model": {
            "name": g.name,
            "inputs": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in g.inputs],
            "outputs": list(g.outputs),
            "preprocess": g.preprocess.to_dict() if g.preprocess is not None else None,
            "meta": enc.encode({k: v for k, v in g.meta.items() if _jsonable(v)}),
            "shapes": {t: list(s) for t, s in g.shapes.items()},
            "nodes": [{"name": n.name, "op_type": n.op_type, "inputs": n.inputs,
                       "outputs": n.outputs} for n in g.nodes],
        },
        "target": {"chip": plan.chip.name, "mode": plan.mode, "fp_type": plan.fp_type,
                   "asymmetric": plan.asymmetric},
        "op_modes": plan.op_modes,
        "ranges": {t: [r.min, r.max] for t, r in plan.ranges.items()},
        "tensors": {t: _qtype(ty) for t, ty in plan.types.items()},
        "steps": [_step_record(s, enc) for s in plan.steps.values()],
        "aliases": plan.aliases,
    }


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def write_model(plan: QuantPlan, path: str | os.PathLike, group: FileGroup | None = None) -> None:
    """Write `plan` as a tpushell model container, atomically (with `group`: renamed when the
    group commits)."""
    enc = _Arrays()
    doc = manifest(plan, enc)
    with (group.open(path, "wb") if group is not None else atomic_write(path, "wb")) as f:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
            z.writestr(MANIFEST, json.dumps(doc, indent=1), compress_type=zipfile.ZIP_DEFLATED)
            for name, a in enc.members.items():
                buf = io.BytesIO()
                np.save(buf, a, allow_pickle=False)
                z.writestr(name, buf.getvalue())


@dataclass
class DeployedModel:
    """A model file read back: its plan (runnable), manifest and path."""

    path: str
    plan: QuantPlan
    manifest: dict[str, Any]

    @property
    def graph(self) -> Graph:
        return self.plan.graph

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None, *,
            keep_all: bool = False, codes: bool = False) -> dict[str, np.ndarray]:
        """Outputs (float32) as the deployed model computes them; see core.quant.simulate."""
        try:
            return simulate(self.plan, feeds, outputs, keep_all=keep_all, codes=codes)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            # the steps came from a file: numbers that do not fit their op are damage
            raise InputFileError(f"{self.path}: a step of the model cannot run "
                                 f"({_damage(e)}); the file is damaged, write it again with "
                                 "model_deploy.py") from None


def load_deployed(path: str | os.PathLike) -> DeployedModel:
    """Read a model file written by `deploy`; errors name the file and what is wrong."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputFileError(f"model file not found: {path}")
    try:
        with zipfile.ZipFile(path) as z:
            _check_sizes(z, path)
            doc = json.loads(z.read(MANIFEST))
            _check_format(doc, path)
            arrays = {n: np.load(io.BytesIO(z.read(n)), allow_pickle=False)
                      for n in z.namelist() if n.startswith("arrays/")}
    except (zipfile.BadZipFile, KeyError, ValueError, RecursionError, EOFError,
            NotImplementedError) as e:   # zipfile: an unknown version or compression
        raise InputFileError(f"{path} is not a tpushell model file ({type(e).__name__}: "
                             f"{str(e)[:200]}); tpushell runs the simulator models "
                             "model_deploy.py writes, not Sophgo binaries") from None
    try:
        plan = _plan_from(doc, arrays)
    except TpuError as e:
        raise InputFileError(f"{path}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as e:
        raise InputFileError(f"{path}: the model file is damaged ({_damage(e)}); write it again "
                             "with model_deploy.py") from None
    return DeployedModel(path, plan, doc)


def _damage(e: Exception) -> str:
    if isinstance(e, KeyError):
        return f"missing entry {e}"
    return f"{type(e).__name__}: {str(e)[:200]}"


def _check_sizes(z: zipfile.ZipFile, path: str) -> None:
    """Refuse members that would inflate past what any model holds (a zip bomb), before reading."""
    for info in z.infolist():
        limit = MAX_MANIFEST_BYTES if info.filename == MANIFEST else MAX_MEMBER_BYTES
        if info.file_size > limit:
            raise InputFileError(f"{path}: member {info.filename} inflates to {info.file_size} "
                                 f"bytes, above the limit {limit}; not a model file tpushell "
                                 "wrote")


def is_deployed_model(path: str | os.PathLike) -> bool:
    """True when `path` is a tpushell model container (whatever its extension)."""
    try:
        with zipfile.ZipFile(os.fspath(path)) as z:
            return MANIFEST in z.namelist()
    except (OSError, zipfile.BadZipFile, NotImplementedError):
        return False


def _check_format(doc: dict, path: str) -> None:
    if not isinstance(doc, dict):
        raise InputFileError(f"{path}: {MANIFEST} is a {type(doc).__name__}, not an object")
    if doc.get("format") != FORMAT:
        raise InputFileError(f"{path}: format '{doc.get('format')}' is not '{FORMAT}'")
    if not isinstance(doc.get("version"), int) or doc["version"] < 1:
        raise InputFileError(f"{path}: {FORMAT} version {doc.get('version')!r} is not a version "
                             f"number (this tpushell reads version {VERSION})")
    if doc["version"] > VERSION:
        raise InputFileError(f"{path}: {FORMAT} version {doc['version']} is newer than this "
                             f"tpushell reads ({VERSION}); upgrade tpushell")


def _plan_from(doc: dict, arrays: Mapping[str, np.ndarray]) -> QuantPlan:
    m = doc["model"]
    nodes = [Node(n["name"], n["op_type"], n["inputs"], n["outputs"]) for n in m["nodes"]]
    graph = Graph(m["name"], [TensorInfo(i["name"], tuple(i["shape"]), i["dtype"])
                              for i in m["inputs"]], list(m["outputs"]), nodes,
                  shapes={t: tuple(s) for t, s in m["shapes"].items()},
                  preprocess=PreprocessConfig.from_dict(m["preprocess"]) if m["preprocess"] else None,
                  meta=_decode(m["meta"], arrays))
    steps = {}
    for r in doc["steps"]:
        slots = [np.asarray(w, np.float32) if isinstance(w, np.ndarray) and w.dtype == np.float16
                 else w for w in _decode(r["slots"], arrays)]
        steps[r["name"]] = Step(
            r["name"], r["op_type"], r["mode"], tuple(r["inputs"]), tuple(r["outputs"]),
            tuple(QType(**t) for t in r["in_types"]), tuple(QType(**t) for t in r["out_types"]),
            r["kind"], attrs=_decode(r["attrs"], arrays), slots=tuple(slots),
            params=_decode(r["params"], arrays), opset=r["opset"], op=r["op"], note=r["note"],
            key=("deployed", r["name"]))
    t = doc["target"]
    return QuantPlan(graph, get_chip(t["chip"]), t["mode"], t["fp_type"], steps,
                     {k: QType(**v) for k, v in doc["tensors"].items()}, dict(doc["op_modes"]),
                     {k: Range(*v) for k, v in doc["ranges"].items()}, bool(t["asymmetric"]),
                     dict(doc.get("aliases", {})))
