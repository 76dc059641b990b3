"""The command layer: every shell command and IPython magic is defined here, once.

    parser = build_parser("load")                       # any argparse parser class
    args = parser.parse_args(["tiny-yolov3-11.onnx", "--input_shapes", "[[1,3,416,416]]"])
    result = execute(session, "load", args, line="tiny-yolov3-11.onnx --input_shapes [[1,3,416,416]]")
    print(result)                                        # plain text; result._repr_html_() in notebooks

A command is a name, a one-line doc, `add_arguments(parser)` (called on whatever parser class the
front end needs: cmd2's Cmd2ArgumentParser, IPython's MagicArgumentParser) and `run(session, args)
-> Result`. Arguments carry a completion kind ("path", "layer", "setting", "setting_value") that
the front ends turn into their own completers; the core never imports cmd2 or IPython.
Option values are parsed inside `run` so that a bad value is a TpuError like any other.
"""
from __future__ import annotations

import argparse
import fnmatch
import os
import warnings
from dataclasses import dataclass, fields
from typing import Any, Callable

import numpy as np

from .errors import InputFileError, ModelError, OptionError, StateError, TpuError, did_you_mean
from .fileio import atomic_write, load_npz, save_npz
from .options import parse_floats, parse_names, parse_shapes, parse_tolerance
from .preprocess import CHANNEL_FORMATS, KEEP_RATIO_MODES, PAD_TYPES, PIXEL_FORMATS
from .results import Column, Message, Result, Table
from .session import Session

COMPLETION_KINDS = ("path", "layer", "setting", "setting_value")
F6 = "{:.6f}"   # fixed float format: transcripts and golden outputs stay stable


@dataclass(frozen=True)
class Command:
    """One command: see the module docstring. `records(args)` says whether the journal keeps it."""

    name: str
    doc: str
    category: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Session, argparse.Namespace], Result]
    records: Callable[[argparse.Namespace], bool]


COMMANDS: dict[str, Command] = {}


def command(name: str, arguments: Callable[[argparse.ArgumentParser], None], *, category: str,
            records: bool | Callable[[argparse.Namespace], bool] = False):
    """Register `run(session, args)` as command `name`; its docstring's first line is the help."""
    def register(run: Callable[[Session, argparse.Namespace], Result]):
        keep = records if callable(records) else (lambda args, _r=records: _r)
        doc = (run.__doc__ or "").strip().splitlines()[0]
        COMMANDS[name] = Command(name, doc, category, arguments, run, keep)
        return run
    return register


def build_parser(name: str, parser_cls: type[argparse.ArgumentParser] = argparse.ArgumentParser,
                 **kwargs: Any) -> argparse.ArgumentParser:
    """A fresh parser for command `name`, of the front end's parser class."""
    cmd = COMMANDS[name]
    kwargs.setdefault("prog", name)
    parser = parser_cls(description=cmd.doc, **kwargs)
    cmd.add_arguments(parser)
    return parser


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommand parsers of `parser` ({} when it has none), e.g. `qtable show`."""
    return {name: sub for a in parser._actions if isinstance(a, argparse._SubParsersAction)
            for name, sub in a.choices.items()}


def completion_kinds(parser: argparse.ArgumentParser) -> dict[str, str]:
    """{argument dest: completion kind} for the arguments of `parser` itself that have one."""
    return {a.dest: a.tpu_complete for a in parser._actions if getattr(a, "tpu_complete", None)}


def execute(session: Session, name: str, args: argparse.Namespace, line: str = "") -> Result:
    """Run command `name` with parsed `args`; on success the journal records `name line`."""
    cmd = COMMANDS[name]
    result = cmd.run(session, args)
    if cmd.records(args):
        session.history.append(f"{name} {line}".strip())
    return result


@dataclass
class Outcome:
    """What a front end renders: the result, or the domain error, plus the warnings issued."""

    result: Result | None
    error: TpuError | None
    warnings: list[str]


def attempt(session: Session, name: str, args: argparse.Namespace, line: str = "") -> Outcome:
    """`execute` for front ends: TpuError and warnings are captured instead of raised or printed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result, error = execute(session, name, args, line), None
        except TpuError as e:
            result, error = None, e
    return Outcome(result, error, [str(w.message) for w in caught])


def expand_path(text: str) -> str:
    """`~` and `$VARS` expanded, so scripts can say `$HOME/data/img.jpg`."""
    return os.path.expanduser(os.path.expandvars(text))


def _arg(parser: argparse.ArgumentParser, *flags: str, complete: str | None = None,
         **kwargs: Any) -> argparse.Action:
    """parser.add_argument plus a completion kind; path arguments get `~`/`$VAR` expansion."""
    if complete == "path":
        kwargs.setdefault("type", expand_path)
    action = parser.add_argument(*flags, **kwargs)
    action.tpu_complete = complete
    return action


def _shape(shape: Any) -> str:
    return "x".join(str(d) for d in shape) if shape is not None else "?"


def select_layers(graph, pattern: str) -> list[str]:
    """Op names matching `pattern`: an op name, a glob (`conv1*`) or an op type (`Conv`, any case)."""
    names = graph.op_names
    if graph.has_node(pattern):
        return [pattern]
    if any(c in pattern for c in "*?["):
        found = fnmatch.filter(names, pattern)
    else:
        found = [n.name for n in graph.nodes if n.op_type.lower() == pattern.lower()]
    if not found:
        types = sorted(graph.summary())
        raise ModelError(f"no layer matches '{pattern}' in model '{graph.name}'"
                         f"{did_you_mean(pattern, names + types)}; give a layer name, a glob such "
                         f"as 'conv1*', or an op type ({', '.join(types)})")
    return found


# ---- model ---------------------------------------------------------------------------------------
PREPROCESS_LIST_OPTIONS = ("mean", "scale")


def _load_args(p: argparse.ArgumentParser) -> None:
    _arg(p, "model", complete="path", help="model file: .onnx, darknet .cfg (weights in "
         "--model_data) or our .mlir")
    _arg(p, "--model_data", complete="path", help="darknet .weights for a .cfg model")
    p.add_argument("--model_name", "--name", dest="name", help="model name (default: file name)")
    p.add_argument("--input_shapes", help="input shapes, e.g. [[1,3,416,416]]")
    p.add_argument("--output_names", help="cut the model at these tensors (comma-separated)")
    p.add_argument("--resize_dims", help="h,w to resize to before a center crop (default: net size)")
    p.add_argument("--keep_aspect_ratio", action="store_true", default=None,
                   help="letterbox instead of stretching")
    p.add_argument("--keep_ratio_mode", choices=KEEP_RATIO_MODES, help="how to keep the aspect ratio")
    p.add_argument("--mean", help="per-channel mean, e.g. 0,0,0")
    p.add_argument("--scale", help="per-channel scale, e.g. 0.0039216,0.0039216,0.0039216")
    p.add_argument("--pixel_format", choices=PIXEL_FORMATS, help="channel order the model expects")
    p.add_argument("--channel_format", choices=CHANNEL_FORMATS, help="input layout")
    p.add_argument("--pad_value", type=int, help="letterbox fill value (0-255)")
    p.add_argument("--pad_type", choices=PAD_TYPES, help="center the letterboxed image or not")
    _arg(p, "--mlir", complete="path", help="also write the model as .mlir (like model_transform)")


@command("load", _load_args, category="model", records=True)
def load(session: Session, args: argparse.Namespace) -> Result:
    """Load a model (.onnx, darknet .cfg, .mlir) with its preprocessing (model_transform options)."""
    preprocess = {k: getattr(args, k) for k in ("keep_aspect_ratio", "keep_ratio_mode", "pixel_format",
                                                 "channel_format", "pad_value", "pad_type")}
    for key in PREPROCESS_LIST_OPTIONS:
        value = getattr(args, key)
        preprocess[key] = parse_floats(value, f"--{key}") if value is not None else None
    if args.resize_dims is not None:
        preprocess["resize_dims"] = [int(v) for v in parse_floats(args.resize_dims, "--resize_dims")]
    graph = session.load(args.model, model_data=args.model_data, name=args.name,
                         input_shapes=parse_shapes(args.input_shapes) if args.input_shapes else None,
                         output_names=parse_names(args.output_names) or None, **preprocess)
    if args.mlir:
        from .mlir import write_mlir
        write_mlir(graph, args.mlir)
    counts = ", ".join(f"{t} {n}" for t, n in sorted(graph.summary().items(), key=lambda kv: -kv[1]))
    rows = [["input", t.name, _shape(t.shape), t.dtype] for t in graph.inputs]
    rows += [["output", o, _shape(graph.shapes.get(o)), graph.dtypes.get(o, "float32")]
             for o in graph.outputs]
    notes = [f"wrote {args.mlir}"] if args.mlir else []
    return Table(f"{graph.name}: {len(graph.nodes)} ops ({counts})",
                 ["", "tensor", "shape", "dtype"], rows, notes=notes, data=graph)


def _layers_args(p: argparse.ArgumentParser) -> None:
    _arg(p, "pattern", nargs="?", complete="layer",
         help="only these layers: a name, a glob such as 'conv1*', or an op type such as Conv")


@command("layers", _layers_args, category="model")
def layers(session: Session, args: argparse.Namespace) -> Result:
    """List the model's layers: index, name, op type, output shape."""
    graph = session.model
    chosen = set(select_layers(graph, args.pattern)) if args.pattern else None
    rows = [[i, n.name, n.op_type, _shape(graph.shapes.get(n.outputs[0]))]
            for i, n in enumerate(graph.nodes) if chosen is None or n.name in chosen]
    return Table(f"{graph.name}: {len(rows)} of {len(graph.nodes)} layers",
                 ["#", "name", "type", "shape"], rows, data=[r[1] for r in rows])


NPZ_KINDS = (".npz",)


def _feeds_from_files(session: Session, paths: list[str]) -> dict[str, np.ndarray]:
    """Input batch from images (the model's preprocessing) or from one .npz file."""
    npz = [p for p in paths if p.lower().endswith(NPZ_KINDS)]
    if not npz:
        return session.feeds(session.preprocess(paths))
    if len(paths) != 1:
        raise OptionError(f"give either image files or one .npz, not {len(paths)} files with an npz "
                          f"({npz[0]})")
    arrays = load_npz(paths[0])
    names = session.model.input_names
    if all(n in arrays for n in names):
        return {n: arrays[n] for n in names}
    if len(arrays) == 1 and len(names) == 1:
        return {names[0]: next(iter(arrays.values()))}
    raise InputFileError(f"{paths[0]} holds {sorted(arrays)} but the model's inputs are {names}; "
                         "name the arrays after the inputs (or store one array for a one-input model)")


def _infer_args(p: argparse.ArgumentParser) -> None:
    _arg(p, "inputs", nargs="+", metavar="INPUT", complete="path",
         help="image file(s), preprocessed as the model says, or one .npz of input arrays")
    _arg(p, "-o", "--output", complete="path", help="save the outputs to this .npz")
    p.add_argument("--all", action="store_true", help="keep (and save) every tensor, not only outputs")


@command("infer", _infer_args, category="model")
def infer(session: Session, args: argparse.Namespace) -> Result:
    """Run the F32 model on images or an npz and summarise the outputs (optionally save them)."""
    feeds = _feeds_from_files(session, args.inputs)
    values = session.run(feeds, keep_all=args.all)
    if args.output:
        save_npz(args.output, values)
    shown = values if args.all else {k: values[k] for k in session.model.outputs}
    rows = [[k, _shape(v.shape), float(v.min()), float(v.max()), float(v.mean())]
            for k, v in shown.items()]
    notes = [f"saved {len(values)} tensors to {args.output}"] if args.output else []
    return Table(f"{session.model.name} on {', '.join(os.path.basename(p) for p in args.inputs)}",
                 ["tensor", "shape", Column("min", F6), Column("max", F6), Column("mean", F6)], rows,
                 notes=notes, data=values)


# ---- settings and workspace ----------------------------------------------------------------------
def _set_args(p: argparse.ArgumentParser) -> None:
    _arg(p, "name", nargs="?", complete="setting", help="setting to show or change")
    _arg(p, "value", nargs="?", complete="setting_value", help="new value")


def _settings_table(session: Session, names: list[str]) -> Table:
    spec = {f.name: f for f in fields(session.settings)}
    rows = []
    for n in names:
        meta = spec[n].metadata
        choices = meta.get("choices")
        rows.append([n, str(getattr(session.settings, n)), meta.get("help", ""),
                     ", ".join(choices) if choices else ""])
    return Table("settings", ["name", "value", "meaning", "choices"], rows)


@command("set", _set_args, category="settings", records=lambda args: args.value is not None)
def set_(session: Session, args: argparse.Namespace) -> Result:
    """Show the settings, or change one: `set chip bm1688`, `set samples 30`."""
    names = [f.name for f in fields(session.settings)]
    if args.name is None:
        return _settings_table(session, names)
    if args.name not in names:
        raise OptionError(f"unknown setting '{args.name}'{did_you_mean(args.name, names)}; "
                          f"settings are {', '.join(names)}")
    if args.value is None:
        return _settings_table(session, [args.name])
    session.settings.set(args.name, args.value)
    return Message(f"{args.name} = {getattr(session.settings, args.name)}")


def _path_arg(help_text: str) -> Callable[[argparse.ArgumentParser], None]:
    return lambda p: _arg(p, "path", complete="path", help=help_text)


@command("save", _path_arg("workspace file to write (.tpw)"), category="workspace")
def save(session: Session, args: argparse.Namespace) -> Result:
    """Save the workspace (model reference, settings, tables, qtable, journal) to a file."""
    from .workspace import save_workspace
    return Message(f"saved workspace to {save_workspace(session, args.path)}")


@command("open", _path_arg("workspace file to open (.tpw)"), category="workspace")
def open_(session: Session, args: argparse.Namespace) -> Result:
    """Open a saved workspace: reload its model, settings, tables, qtable and journal."""
    from .workspace import open_workspace
    open_workspace(session, args.path)
    graph = session.model
    return Message(f"opened {args.path}: model {graph.name} ({len(graph.nodes)} ops), "
                   f"{len(session.history)} journal entries")


def _journal_args(p: argparse.ArgumentParser) -> None:
    _arg(p, "-o", "--output", complete="path", help="write the journal as a script for "
         "`tpushell --script`")


@command("journal", _journal_args, category="workspace")
def journal(session: Session, args: argparse.Namespace) -> Result:
    """Show the commands that built this session's state (saved with the workspace)."""
    if args.output:
        with atomic_write(args.output) as f:
            f.write("# tpushell journal: replay with `tpushell --script FILE`\n")
            f.writelines(line + "\n" for line in session.history)
    notes = [f"wrote {args.output}"] if args.output else []
    return Table("journal", ["#", "command"], list(enumerate(session.history, 1)), notes=notes,
                 data=list(session.history))


# ---- detection -----------------------------------------------------------------------------------
def _detect_args(p: argparse.ArgumentParser) -> None:
    _arg(p, "image", complete="path", help="image to detect objects in")
    p.add_argument("--model", default="f32",
                   help="f32 (the loaded model), int8, mixed (the session's plans), or a model file")
    p.add_argument("--compare", metavar="MODELS",
                   help="side by side: comma-separated models, the first is the reference "
                        "(e.g. f32,int8,mixed); draws the figure")
    p.add_argument("--score_thres", type=float, help="minimum objectness x class score")
    p.add_argument("--iou_thres", type=float, help="NMS overlap threshold")
    _arg(p, "-o", "--output", complete="path", help="draw the boxes on the image and save it here")


def save_figure(figure, path: str) -> str:
    """Save a matplotlib figure atomically, in the format its extension names."""
    ext = os.path.splitext(path)[1][1:].lower()
    formats = figure.canvas.get_supported_filetypes()
    if ext not in formats:
        raise OptionError(f"cannot save a figure as '{path}': use one of "
                          f"{', '.join('.' + f for f in sorted(formats))}")
    with atomic_write(path, "wb") as f:
        figure.savefig(f, format=ext, bbox_inches="tight")
    return path


def _box_text(box) -> str:
    return ",".join(str(round(v)) for v in box)


@command("detect", _detect_args, category="detection")
def detect(session: Session, args: argparse.Namespace) -> Result:
    """Detect objects (YOLO) in an image with one model, or compare models side by side."""
    image = args.image
    thresholds = {"score_thres": args.score_thres, "iou_thres": args.iou_thres}
    if args.compare:
        cmp = session.compare_detections(image, parse_names(args.compare), **thresholds)
        return _saved(Message(str(cmp), data=cmp, figure=cmp.figure()), args.output)
    found = session.detect(image, model=args.model, **thresholds)
    notes = ["No object was detected"] if not found.detections else []
    if args.output:
        from .draw import draw_detections, save_image
        save_image(draw_detections(image, found.detections), args.output)
        notes.append(f"saved {args.output}")
    rows = [[d.name, d.score, _box_text(d.box)] for d in found.detections]
    return Table(f"{found.model} on {os.path.basename(image)}: {len(rows)} object(s)",
                 ["class", Column("score", "{:.3f}"), "box x0,y0,x1,y1"], rows, notes=notes,
                 data=found)


# ---- plots ---------------------------------------------------------------------------------------
def _plot_args(p: argparse.ArgumentParser) -> None:
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True,
                             help="what to plot: detections")
    d = kinds.add_parser("detections", help="boxes of one or more models on an image, side by side",
                         description="Boxes of one or more models on an image, side by side.")
    _arg(d, "image", complete="path", help="the image")
    d.add_argument("--models", default="f32", help="comma-separated models, the first is the "
                   "reference: f32, int8, mixed or model files (default: f32)")
    _arg(d, "-o", "--output", complete="path", help="also save the figure here (.png, .svg, .pdf)")


@command("plot", _plot_args, category="plots")
def plot(session: Session, args: argparse.Namespace) -> Result:
    """Plot the detections of one or more models on an image, side by side."""
    cmp = session.compare_detections(args.image, parse_names(args.models))
    result = Message(f"detections on {os.path.basename(args.image)} by {', '.join(cmp.results)}",
                     data=cmp, figure=cmp.figure())
    return _saved(result, args.output)


def _saved(result: Result, path: str | None) -> Result:
    """`result` with its figure saved to `path` (if given) and a line saying so."""
    if path:
        result.figure_path = save_figure(result.figure, path)
    return result


# ---- quantization tables -------------------------------------------------------------------------
def _qtable_args(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True,
                               help="show, load or save the qtable (per-layer precisions)")
    actions.add_parser("show", help="the layers the qtable keeps out of INT8",
                       description="The layers the qtable keeps out of INT8.")
    load_p = actions.add_parser("load", help="read a qtable file (the reference's format)",
                                description="Read a qtable file (the reference's format).")
    _arg(load_p, "path", complete="path", help="qtable file: '<op_name> <MODE>' lines")
    save_p = actions.add_parser("save", help="write the qtable (the reference's format)",
                                description="Write the qtable (the reference's format).")
    _arg(save_p, "path", complete="path", help="file to write")


def _qtable_summary(q) -> str:
    modes: dict[str, int] = {}
    for m in q.modes.values():
        modes[m] = modes.get(m, 0) + 1
    return ", ".join(f"{m} {n}" for m, n in sorted(modes.items())) or "empty: every layer INT8"


@command("qtable", _qtable_args, category="quantization",
         records=lambda args: args.action == "load")
def qtable(session: Session, args: argparse.Namespace) -> Result:
    """Show, load or save the qtable: the layers kept out of INT8 and their precision."""
    if args.action == "load":
        q = session.load_qtable(args.path)
        return Message(f"loaded {args.path}: {len(q)} layer(s) ({_qtable_summary(q)})", data=q)
    q = session.qtable
    if args.action == "save":
        from .tables import write_qtable
        floats = [m for m in q.modes.values() if m != "INT8"]
        mix_mode = max(set(floats), key=floats.count) if floats else "F16"
        write_qtable(args.path, q, chip=session.settings.chip, mix_mode=mix_mode)
        return Message(f"saved {len(q)} layer(s) to {args.path}", data=q)
    model = session.model
    rows = [[model.position(n) if model.has_node(n) else None, n,
             model.node(n).op_type if model.has_node(n) else None, m] for n, m in q.items()]
    return Table(f"qtable: {len(q)} layer(s) ({_qtable_summary(q)})", ["#", "layer", "type", "mode"],
                 rows, data=q)


# ---- deploy --------------------------------------------------------------------------------------
QUANTIZE_MODES = ("INT8", "F16", "BF16", "F32")


def _deploy_args(p: argparse.ArgumentParser) -> None:
    _arg(p, "model", complete="path", help="model file to write: .bmodel/.cvimodel/.tpsm (tpushell's "
         "simulator container) or .onnx (QDQ ONNX for onnxruntime)")
    p.add_argument("--quantize", default="INT8", type=str.upper, choices=QUANTIZE_MODES,
                   help="precision of the whole model; the qtable overrides it per layer")
    _arg(p, "--test_input", complete="path", help="image or npz to validate the model on")
    _arg(p, "--test_reference", complete="path", help="npz of reference tensors (default: the F32 model)")
    p.add_argument("--tolerance", help="minimum cosine,euclidean similarity, e.g. 0.99,0.90")
    p.add_argument("--compare_all", action="store_true", help="compare every tensor, not only outputs")
    p.add_argument("--excepts", help="tensors not to compare (comma-separated)")


@command("deploy", _deploy_args, category="quantization")
def deploy(session: Session, args: argparse.Namespace) -> Result:
    """Write the quantized model (the current plan: chip, calibration, qtable) to a file."""
    from .lowering import needs_calibration
    if needs_calibration(args.quantize, session.qtable) and getattr(session, "calibration", None) is None:
        raise StateError(f"deploy --quantize {args.quantize} has INT8 layers, which need a calibration "
                         "table: calibrate first (or deploy --quantize F16)")
    options = {"test_input": args.test_input, "test_reference": args.test_reference,
               "compare_all": args.compare_all, "excepts": parse_names(args.excepts)}
    if args.tolerance:
        options["tolerance"] = parse_tolerance(args.tolerance)
    result = session.deploy(args.model, quantize=args.quantize, **options)
    return Message(str(result), data=result)
