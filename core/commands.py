"""The command layer: every shell command and IPython magic is defined here, once.

    parser = build_parser("load")                       # any argparse parser class
    args = parser.parse_args(["tiny-yolov3-11.onnx", "--input_shapes", "[[1,3,416,416]]"])
    result = execute(session, "load", args, line="tiny-yolov3-11.onnx --input_shapes [[1,3,416,416]]")
    print(result)                                        # plain text; result._repr_html_() in notebooks

A command is a name, a one-line doc, `add_arguments(parser)` (called on whatever parser class the
front end needs: cmd2's Cmd2ArgumentParser, IPython's MagicArgumentParser) and `run(session, args)
-> Result`. Arguments carry a completion kind (COMPLETION_KINDS) that the front ends turn into
their own completers; the core never imports cmd2 or IPython.
Option values are parsed inside `run` so that a bad value is a TpuError like any other.
"""
from __future__ import annotations

import argparse
import os
import warnings
from dataclasses import dataclass, fields
from typing import Any, Callable

import numpy as np

from .calibration.calibrate import HISTOGRAMS
from .calibration.calibrate import METHODS as CALI_METHODS
from .errors import (SYSTEM_ERRORS, InputFileError, OptionError, StateError, SystemFileError,
                     TpuError, did_you_mean)
from .fileio import atomic_write, check_writable, load_npz, save_npz
from .graph.preprocess import CHANNEL_FORMATS, KEEP_RATIO_MODES, PAD_TYPES, PIXEL_FORMATS
from .options import parse_floats, parse_names, parse_shapes, parse_tolerance
from .results import Column, Message, Result, Table
from .search import SEARCH_METHODS
from .search.precision import select_ops
from .session import FP_TYPES, Session

# layer_then_mode: layers, and the precisions once a layer is typed (set_precision)
COMPLETION_KINDS = ("path", "layer", "layer_then_mode", "setting", "setting_value")
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


INTERRUPTED = "interrupted: nothing changed"   # what both front ends print after Ctrl-C


@dataclass
class Outcome:
    """What a front end renders: the result, or the domain error, plus the warnings issued;
    `interrupted` when Ctrl-C stopped the command (the session is then as it was before)."""

    result: Result | None
    error: TpuError | None
    warnings: list[str]
    interrupted: bool = False


def _snapshot(session: Session) -> Callable[[], None]:
    """A function that puts the session back as it is now: its attributes, settings, undo stacks
    and journal (a command replaces tables and qtables, it does not edit them in place)."""
    state, settings = dict(vars(session)), dict(vars(session.settings))
    done, undone, history = list(session.edits.done), list(session.edits.undone), list(session.history)

    def restore() -> None:
        vars(session).clear()
        vars(session).update(state)
        vars(session.settings).update(settings)
        session.edits.done[:], session.edits.undone[:], session.history[:] = done, undone, history
    return restore


def attempt(session: Session, name: str, args: argparse.Namespace, line: str = "") -> Outcome:
    """`execute` for front ends: TpuError and warnings are captured instead of raised or printed;
    OS, decoding and memory errors become one TpuError line naming the file. A command that
    fails or is interrupted (Ctrl-C) leaves the session as it was."""
    restore = _snapshot(session)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result, error = execute(session, name, args, line), None
        except TpuError as e:
            restore()
            result, error = None, e
        except SYSTEM_ERRORS as e:
            restore()
            result, error = None, SystemFileError.wrap(e)
        except KeyboardInterrupt:
            restore()
            session._working = None      # an interrupted search may have left its evaluator mid-way
            return Outcome(None, None, [str(w.message) for w in caught], interrupted=True)
    return Outcome(result, error, [str(w.message) for w in caught])


def expand_path(text: str) -> str:
    """`~` and `$VARS` expanded, so scripts can say `$HOME/data/img.jpg`."""
    return os.path.expanduser(os.path.expandvars(text))


def _arg(parser: argparse.ArgumentParser, *flags: str, complete: str | None = None,
         **kwargs: Any) -> argparse.Action:
    """parser.add_argument plus a completion kind; path arguments get `~`/`$VAR` expansion."""
    assert complete is None or complete in COMPLETION_KINDS, complete
    if complete == "path":
        kwargs.setdefault("type", expand_path)
    action = parser.add_argument(*flags, **kwargs)
    action.tpu_complete = complete
    return action


def _positional_or_flag(p: argparse.ArgumentParser, dest: str, flag: str, *, complete: str | None,
                        help: str, metavar: str | None = None) -> None:
    """A positional that the tutorial's tool names as an option: `load X` = `load --model_def X`."""
    metavar = metavar or dest.upper()
    _arg(p, dest, nargs="?", metavar=metavar, complete=complete, help=f"{help} (or {flag} {metavar})")
    _arg(p, flag, dest=f"{dest}_flag", metavar=metavar, complete=complete,
         help=f"the same as {metavar}, as the tutorial's tool names it")


def _either(args: argparse.Namespace, dest: str, flag: str, command: str, *,
            required: bool = True) -> str | None:
    """The value of a `_positional_or_flag` argument; OptionError when missing or given twice."""
    given, flagged = getattr(args, dest, None), getattr(args, f"{dest}_flag", None)
    if given and flagged and given != flagged:
        raise OptionError(f"{command}: {dest.upper()} '{given}' and {flag} '{flagged}' differ; give one")
    if required and not (given or flagged):
        raise OptionError(f"{command} needs {dest.upper()}: `{command} {dest.upper()}` or "
                          f"`{command} {flag} {dest.upper()}`")
    return given or flagged


def _shape(shape: Any) -> str:
    return "x".join(str(d) for d in shape) if shape is not None else "?"


# ---- model ---------------------------------------------------------------------------------------
PREPROCESS_LIST_OPTIONS = ("mean", "scale")


def _load_args(p: argparse.ArgumentParser) -> None:
    _positional_or_flag(p, "model", "--model_def", complete="path", help="model file: .onnx, "
                        "darknet .cfg (weights in --model_data) or our .mlir")
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
    graph = session.load(_either(args, "model", "--model_def", "load"), model_data=args.model_data,
                         name=args.name,
                         input_shapes=parse_shapes(args.input_shapes) if args.input_shapes else None,
                         output_names=parse_names(args.output_names) or None, **preprocess)
    if args.mlir:
        from .graph.mlir import write_mlir
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


def _precisions(session: Session) -> dict[str, str]:
    """Each op's precision: the plan's when it can be made (calibrated), else the qtable's."""
    if session.calibration is not None:
        return dict(session.plan().op_modes)
    return {n.name: session.qtable.modes.get(n.name, "INT8") for n in session.model.nodes}


@command("layers", _layers_args, category="model")
def layers(session: Session, args: argparse.Namespace) -> Result:
    """List the model's layers: index, name, op type, output shape, precision, threshold."""
    graph = session.model
    chosen = set(select_ops(graph, args.pattern)) if args.pattern else None
    modes = _precisions(session)
    table = session.calibration
    rows = [[i, n.name, n.op_type, _shape(graph.shapes.get(n.outputs[0])), modes.get(n.name),
             table.rows[n.name].threshold if table is not None and n.name in table.rows else None]
            for i, n in enumerate(graph.nodes) if chosen is None or n.name in chosen]
    return Table(f"{graph.name}: {len(rows)} of {len(graph.nodes)} layers",
                 ["#", "name", "type", "shape", "precision", Column("threshold", F6)], rows,
                 data=[r[1] for r in rows])


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
    if args.name == "chip" and session.graph is not None and len(session.qtable):
        _check_qtable_on(session, args.value)
    session.settings.set(args.name, args.value)
    return Message(f"{args.name} = {getattr(session.settings, args.name)}")


def _check_qtable_on(session: Session, chip: str) -> None:
    """OptionError, chip unchanged, when the session's qtable holds a mode `chip` lacks."""
    from .errors import QuantizationError
    from .quant.chips import CHIPS
    from .quant.lowering import resolve_modes
    if chip not in CHIPS:
        return                                  # settings.set names the valid chips
    try:
        resolve_modes(session.model, chip, "INT8", session.qtable)
    except QuantizationError as e:
        raise OptionError(f"chip stays {session.settings.chip}: the qtable does not fit {chip} "
                          f"({e}); set those layers to a mode {chip} has first") from None


WORKSPACE_EXT = ".tpw"   # added by `save NAME` when the name has no extension


def _path_arg(help_text: str) -> Callable[[argparse.ArgumentParser], None]:
    return lambda p: _arg(p, "path", complete="path", help=help_text)


@command("save", _path_arg("workspace file to write (.tpw)"), category="workspace")
def save(session: Session, args: argparse.Namespace) -> Result:
    """Save the workspace (model reference, settings, tables, qtable, journal) to a file."""
    from .workspace import save_workspace
    path = args.path if os.path.splitext(args.path)[1] else args.path + WORKSPACE_EXT
    return Message(f"saved workspace to {save_workspace(session, path)}")


@command("open", _path_arg("workspace file to open (.tpw)"), category="workspace")
def open_(session: Session, args: argparse.Namespace) -> Result:
    """Open a saved workspace: reload its model, settings, tables, qtable and journal."""
    from .workspace import open_workspace
    open_workspace(session, args.path, check_line=check_replayable)
    graph = session.model
    kept = [f"model {graph.name} ({len(graph.nodes)} ops)"]
    if session.calibration is not None:
        kept.append(f"calibration of {len(session.calibration)} tensors")
    kept.append(f"qtable of {len(session.qtable)} layer(s)")
    if session.loss_table is not None:
        kept.append(f"loss table of {len(session.loss_table)} layer(s)")
    kept.append(f"{len(session.history)} journal entries")
    return Message(f"opened {args.path}: {', '.join(kept)}")


# What a journal entry or a script line may be: a tpushell command (plus help / quit). Never
# cmd2's shell, !, py, run_pyscript, ipy, alias, macro, edit, run_script, @ or history, nor a pipe
# or redirection: a tampered workspace or script must not reach the OS shell or Python.
SCRIPT_BUILTINS = ("help", "quit")


def check_replayable(line: str, builtins: tuple[str, ...] = ()) -> str:
    """`line` if it is a tpushell command (or one of `builtins`) with no pipe or redirection
    outside quotes; else OptionError naming what is refused."""
    words = line.split()
    name = words[0] if words else ""
    if name not in COMMANDS and name not in builtins:
        raise OptionError(f"'{line[:60]}' is not a tpushell command ({name[:30] or 'empty'}); "
                          f"only {', '.join(sorted(COMMANDS))} are replayed, never shell, !, py, "
                          "run_pyscript, ipy, alias, macro or edit")
    quote = None
    for c in line:
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in "|>":
            raise OptionError(f"'{line[:60]}': a pipe or redirection ('{c}') is not replayed; "
                              "quote the text if it belongs to an argument")
    return line


def _journal_args(p: argparse.ArgumentParser) -> None:
    _arg(p, "-o", "--output", complete="path", help="write the journal as a script for "
         "`tpushell --script`")


@command("journal", _journal_args, category="workspace")
def journal(session: Session, args: argparse.Namespace) -> Result:
    """Show the commands that built this session's state (saved with the workspace)."""
    if args.output:
        for line in session.history:   # a journal only ever holds replayable commands
            check_replayable(line)
        with atomic_write(args.output) as f:
            f.write("# tpushell journal: replay with `tpushell --script FILE`\n")
            f.writelines(line + "\n" for line in session.history)
    notes = [f"wrote {args.output}"] if args.output else []
    return Table("journal", ["#", "command"], list(enumerate(session.history, 1)), notes=notes,
                 data=list(session.history))


# ---- detection -----------------------------------------------------------------------------------
def _detect_args(p: argparse.ArgumentParser) -> None:
    _positional_or_flag(p, "image", "--input", complete="path", help="image to detect objects in")
    p.add_argument("--model", default="f32",
                   help="f32 (the loaded model), int8, mixed (the session's plans), or a model file")
    p.add_argument("--compare", metavar="MODELS",
                   help="side by side: comma-separated models, the first is the reference "
                        "(e.g. f32,int8,mixed); draws the figure")
    p.add_argument("--score_thres", type=float, help="minimum objectness x class score "
                   "(default 0.56; 0.25 for a YOLOv8-style anchor-free head)")
    p.add_argument("--iou_thres", type=float, help="NMS overlap threshold (default 0.5; 0.45 anchor-free)")
    _arg(p, "--class_names", complete="path", help="class names file, one a line (default: COCO's "
         "80 names for 80 classes, else class0, class1, ...)")
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
    from .vision.yolo import read_class_names
    image = _either(args, "image", "--input", "detect")
    thresholds = {"score_thres": args.score_thres, "iou_thres": args.iou_thres,
                  "names": read_class_names(args.class_names) if args.class_names else None}
    if args.compare:
        from .plots.detection import detection_figure
        cmp = session.compare_detections(image, parse_names(args.compare), **thresholds)
        return _saved(Message(str(cmp), data=cmp, figure=detection_figure(cmp)), args.output)
    found = session.detect(image, model=args.model, **thresholds)
    notes = ["No object was detected"] if not found.detections else []
    if args.output:
        from .vision.draw import draw_detections, save_image
        save_image(draw_detections(image, found.detections), args.output)
        notes.append(f"saved {args.output}")
    rows = [[d.name, d.score, _box_text(d.box)] for d in found.detections]
    return Table(f"{found.model} on {os.path.basename(image)}: {len(rows)} object(s)",
                 ["class", Column("score", "{:.3f}"), "box x0,y0,x1,y1"], rows, notes=notes,
                 data=found)


# ---- plots ---------------------------------------------------------------------------------------
def _plot_args(p: argparse.ArgumentParser) -> None:
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True,
                             help="what to plot: detections, cos, histogram, calibration")
    c = kinds.add_parser("cos", help="per-layer cosines to F32 as bars, thresholds drawn",
                         description="Per-layer cosines to F32 as bars (float layers highlighted), "
                         "each layer's own error as dots, the thresholds as lines.")
    _cos_arg(c, "--min_layer_cos", None, "draw this layer threshold; default: the last `cos` or "
             "search's, else 0.99")
    _cos_arg(c, "--expected_cos", None, "draw this output target; default: the last search's, "
             "else 0.99")
    _arg(c, "-o", "--output", complete="path", help="also save the figure here (.png, .svg, .pdf)")
    h = kinds.add_parser("histogram", help="a tensor's |x| histogram with min, max and thresholds",
                         description="A tensor's |x| histogram from the last calibration, with its "
                         "min, max and the threshold of each method collected.")
    _arg(h, "tensor", complete="layer", help="tensor (op) name")
    _arg(h, "-o", "--output", complete="path", help="also save the figure here (.png, .svg, .pdf)")
    t = kinds.add_parser("calibration", help="threshold / absmax of every tensor as bars",
                         description="Threshold / absmax of every tensor of the calibration table.")
    _arg(t, "-o", "--output", complete="path", help="also save the figure here (.png, .svg, .pdf)")
    d = kinds.add_parser("detections", help="boxes of one or more models on an image, side by side",
                         description="Boxes of one or more models on an image, side by side.")
    _arg(d, "image", complete="path", help="the image")
    d.add_argument("--models", default="f32", help="comma-separated models, the first is the "
                   "reference: f32, int8, mixed or model files (default: f32)")
    _arg(d, "-o", "--output", complete="path", help="also save the figure here (.png, .svg, .pdf)")


@command("plot", _plot_args, category="plots")
def plot(session: Session, args: argparse.Namespace) -> Result:
    """Plot detections side by side, per-layer cosines, a tensor's histogram or the thresholds."""
    if args.kind == "cos":
        from .plots.search import cosine_figure
        check = session.check(own=True)
        used = {name: session.thresholds_used.get(name, _true(session, DEFAULT_COS, name))
                if typed is None else _true(session, typed, name)
                for name, typed in (("min_layer_cos", args.min_layer_cos),
                                    ("expected_cos", args.expected_cos))}
        figure = cosine_figure(check, **used)
        result = Message(f"cosines of {len(check.layers)} layers on {check.samples} sample(s)",
                         data=check, figure=figure)
    elif args.kind == "histogram":
        result = Message(f"histogram of {args.tensor}", figure=session.plot_histogram(args.tensor))
    elif args.kind == "calibration":
        result = Message(f"thresholds of {len(session.calibration or ())} tensors",
                         data=session.calibration, figure=session.plot_calibration())
    else:
        from .plots.detection import detection_figure
        cmp = session.compare_detections(args.image, parse_names(args.models))
        result = Message(f"detections on {os.path.basename(args.image)} by {', '.join(cmp.results)}",
                         data=cmp, figure=detection_figure(cmp))
    return _saved(result, args.output)


def _saved(result: Result, path: str | None) -> Result:
    """`result` with its figure saved to `path` (if given) and a line saying so."""
    if path:
        result.figure_path = save_figure(result.figure, path)
    return result


# ---- quantization tables -------------------------------------------------------------------------
def _tool_state_args(p: argparse.ArgumentParser, *, qtable: bool = False, data: bool = False) -> None:
    """The tutorial tools' options that name the session's state: a chip, float type, tables and
    data given on the command line are set / loaded for the session (`_apply_tool_state`)."""
    from .quant.chips import CHIP_NAMES
    p.add_argument("--chip", "--processor", dest="chip", type=str.lower, choices=CHIP_NAMES,
                   help="set the session's chip first (the `chip` setting)")
    p.add_argument("--fp_type", choices=FP_TYPES, help="set the float type of float layers first "
                   "(the `fp_type` setting)")
    _arg(p, "--calibration_table", complete="path",
         help="load this calibration table into the session first (as `calibrate --table`)")
    if qtable:
        _arg(p, "--quantize_table", complete="path",
             help="load this qtable into the session first (as `qtable load`)")
    if data:
        _arg(p, "--dataset", complete="path", help="use this folder as the sample data (as `data`)")
        _arg(p, "--data_list", complete="path", help="file listing the samples (as `data --data_list`)")


def _apply_tool_state(session: Session, args: argparse.Namespace) -> list[str]:
    """Set / load what `_tool_state_args` named, in the order a later one needs; lines saying so."""
    said = []
    for name in ("chip", "fp_type"):
        value = getattr(args, name, None)
        if value is not None and value != getattr(session.settings, name):
            if name == "chip" and session.graph is not None and len(session.qtable):
                _check_qtable_on(session, value)
            session.settings.set(name, value)
            said.append(f"{name} = {value} (from --{name})")
    if getattr(args, "calibration_table", None):
        table = session.load_calibration(args.calibration_table)
        said.append(f"loaded calibration table {args.calibration_table} ({len(table)} tensors)")
    if getattr(args, "quantize_table", None):
        q = session.load_qtable(args.quantize_table)
        said.append(f"loaded qtable {args.quantize_table}: {len(q)} layer(s) ({_qtable_summary(q)})")
    if getattr(args, "dataset", None) or getattr(args, "data_list", None):
        session.use_data(args.dataset, data_list=args.data_list)
        said.append(f"sample data: {args.dataset or args.data_list}")
    return said


def _qtable_args(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", metavar="ACTION",
                               help="show (the default), load, save, search or diff")
    actions.add_parser("show", help="the layers the qtable keeps out of INT8",
                       description="The layers the qtable keeps out of INT8.")
    load_p = actions.add_parser("load", help="read a qtable file (the reference's format)",
                                description="Read a qtable file (the reference's format).")
    _arg(load_p, "path", complete="path", help="qtable file: '<op_name> <MODE>' lines")
    save_p = actions.add_parser("save", help="write the qtable (the reference's format)",
                                description="Write the qtable (the reference's format).")
    _arg(save_p, "path", complete="path", help="file to write")
    search = actions.add_parser("search", help="search the layers to keep in float (run_qtable)",
                                description="Search the layers to keep in float so the outputs reach "
                                "the target cosine; the result becomes the qtable (undo reverts it).")
    _cos_arg(search, "--expected_cos", DEFAULT_COS, "target output cosine")
    _cos_arg(search, "--min_layer_cos", DEFAULT_COS, "layers below this cosine are tried in float first")
    search.add_argument("--method", "--search", dest="method", default="reference",
                        choices=SEARCH_METHODS,
                        help="reference: the tutorial's run_qtable walk; greedy: fewer float "
                        "layers; sensitivity: reaches any target the all-float plan reaches")
    search.add_argument("--start", choices=("int8", "pattern"), default=None,
                        help="sensitivity: start from all-INT8 (default) or the known-head pattern")
    search.add_argument("--samples", "--input_num", dest="samples", type=int,
                        help="samples to search on (default: the `samples` setting)")
    search.add_argument("--time_budget", type=float, help="seconds; keep the best qtable found by then")
    search.add_argument("--max_float_layers", type=int, help="at most this many float layers "
                        "(reference walk default: a quarter of the ops)")
    search.add_argument("--global_compare_layers", help="compare these layers instead of the "
                        "outputs: 'a,b' or 'a:0.3,b:0.7'")
    _tool_state_args(search, data=True)
    _arg(search, "-o", "--quantize_table", dest="output", complete="path",
         help="also write the found qtable here (run_qtable's -o)")
    _arg(search, "--loss_table", complete="path", help="also write the loss table here")
    diff = actions.add_parser("diff", help="layers whose precision differs between two qtables",
                              description="Layers whose precision differs between two qtables.")
    _arg(diff, "a", nargs="?", complete="path", help="a qtable file (the current qtable if omitted)")
    _arg(diff, "b", nargs="?", complete="path", help="another qtable file (the current qtable if omitted)")


DEFAULT_COS = 0.99    # the tools' default --expected_cos and --min_layer_cos


def _cos_arg(p: argparse.ArgumentParser, flag: str, default: float | None, what: str) -> None:
    shown = f" (default {default})" if default is not None else ""
    p.add_argument(flag, type=float, default=default, help=f"{what}{shown}, in the "
                   "`cosine_scale` setting's scale: true cosine, or the reference's 0.5+0.5*cos")


def _true(session: Session, cos: float | None, option: str) -> float | None:
    """A cosine the user typed, as a true cosine (the cosine_scale setting says how it was typed);
    OptionError naming `option` and the typed value when it is no cosine in that scale."""
    from .metrics import true_cos
    if cos is None or session.settings.cosine_scale != "reference":
        return cos
    if not 0.5 < cos <= 1.0:
        raise OptionError(f"--{option} {cos} is outside (0.5, 1]: cosine_scale is reference "
                          f"(0.5+0.5*cos); give e.g. 0.9995, or `set cosine_scale true`")
    return true_cos(cos)


def _qtable_summary(q) -> str:
    modes: dict[str, int] = {}
    for m in q.modes.values():
        modes[m] = modes.get(m, 0) + 1
    return ", ".join(f"{m} {n}" for m, n in sorted(modes.items())) or "empty: every layer INT8"


@command("qtable", _qtable_args, category="quantization",
         records=lambda args: args.action in ("load", "search"))
def qtable(session: Session, args: argparse.Namespace) -> Result:
    """Show, load, save, search or diff qtables: the layers kept out of INT8 and their precision."""
    if args.action == "load":
        q = session.load_qtable(args.path)
        return Message(f"loaded {args.path}: {len(q)} layer(s) ({_qtable_summary(q)})", data=q)
    if args.action == "search":
        return _search(session, args)
    if args.action == "diff":
        return Message(str(session.diff_qtables(args.a, args.b)))
    q = session.qtable
    if args.action == "save":
        return Message(f"saved {len(q)} layer(s) to {session.save_qtable(args.path)}", data=q)
    model = session.model
    rows = [[model.position(n) if model.has_node(n) else None, n,
             model.node(n).op_type if model.has_node(n) else None, m] for n, m in q.items()]
    rows.sort(key=lambda r: (r[0] is None, r[0] or 0))    # model order; names the model lacks last
    return Table(f"qtable: {len(q)} layer(s) ({_qtable_summary(q)})", ["#", "layer", "type", "mode"],
                 rows, data=q)


def _search(session: Session, args: argparse.Namespace) -> Result:
    """`qtable search`: the named state set first, the search, then the files asked for."""
    from .calibration.tables import write_loss_table
    from .plots.search import search_curve_figure
    said = _apply_tool_state(session, args)
    _need_calibration(session)
    scale = session.settings.cosine_scale
    found = session.search_qtable(_true(session, args.expected_cos, "expected_cos"),
                                  _true(session, args.min_layer_cos, "min_layer_cos"),
                                  method=args.method, samples=args.samples,
                                  time_budget=args.time_budget, max_float=args.max_float_layers,
                                  compare_layers=args.global_compare_layers,
                                  **({"start": args.start} if args.start else {}))
    session.thresholds_used.update(expected_cos=found.expected_cos, **(
        {"min_layer_cos": found.min_layer_cos} if found.min_layer_cos is not None else {}))
    if args.output:
        said.append(f"saved the qtable to {session.save_qtable(args.output)}")
    if args.loss_table:
        write_loss_table(args.loss_table, found.loss_table, chip=session.settings.chip)
        said.append(f"saved the loss table to {args.loss_table}")
    return Message("\n".join(said + [found.text(scale)]), data=found,
                   figure=search_curve_figure(found, scale))


# ---- deploy --------------------------------------------------------------------------------------
QUANTIZE_MODES = ("INT8", "F16", "BF16", "F32")


def quantize_mode(text: str) -> str:
    """argparse type of a precision: upper-cased, and 'did you mean F16' for FP16 and the like."""
    from .quant.chips import suggest_mode
    mode = text.upper()
    if mode not in QUANTIZE_MODES:
        raise argparse.ArgumentTypeError(f"'{text}' is no precision{suggest_mode(mode)}; choose "
                                         f"from {', '.join(QUANTIZE_MODES)}")
    return mode


def _deploy_args(p: argparse.ArgumentParser) -> None:
    _positional_or_flag(p, "model", "--model", complete="path", help="model file to write: "
                        ".bmodel/.cvimodel/.tpsm (tpushell's simulator container) or .onnx (QDQ ONNX "
                        "for onnxruntime)")
    p.add_argument("--quantize", default="INT8", type=quantize_mode, choices=QUANTIZE_MODES,
                   help="precision of the whole model; the qtable overrides it per layer")
    _arg(p, "--mlir", complete="path", help="the model to deploy: loaded first unless it is the "
         "loaded one (model_deploy's --mlir)")
    _tool_state_args(p, qtable=True)
    p.add_argument("--asymmetric", action="store_true", help="asymmetric INT8 (zero points)")
    _arg(p, "--test_input", complete="path", help="image or npz to validate the model on")
    _arg(p, "--test_reference", complete="path", help="npz of reference tensors (default: the F32 model)")
    p.add_argument("--tolerance", help="minimum cosine,euclidean similarity, e.g. 0.99,0.90")
    p.add_argument("--compare_all", action="store_true", help="compare every tensor, not only outputs")
    p.add_argument("--excepts", help="tensors not to compare (comma-separated)")


@command("deploy", _deploy_args, category="quantization")
def deploy(session: Session, args: argparse.Namespace) -> Result:
    """Write the quantized model (the current plan: chip, calibration, qtable) to a file."""
    from .quant.lowering import needs_calibration
    path = _either(args, "model", "--model", "deploy")
    said = []
    if args.mlir and (session.graph is None or
                      session.load_options.get("model") != os.path.abspath(args.mlir)):
        said.append(f"loaded {args.mlir}: {len(session.load(args.mlir).nodes)} ops")
    _ = session.model                          # "no model loaded; load one first" before all else
    said += _apply_tool_state(session, args)
    if needs_calibration(args.quantize, session.qtable) and getattr(session, "calibration", None) is None:
        raise StateError(f"deploy --quantize {args.quantize} has INT8 layers, which need a calibration "
                         "table: calibrate first (or deploy --quantize F16)")
    options = {"test_input": args.test_input, "test_reference": args.test_reference,
               "compare_all": args.compare_all, "excepts": parse_names(args.excepts)}
    if args.tolerance:
        options["tolerance"] = parse_tolerance(args.tolerance)
    result = session.deploy(path, quantize=args.quantize, asymmetric=args.asymmetric, **options)
    return Message("\n".join(said + [str(result)]), data=result)


# ---- calibration ---------------------------------------------------------------------------------


CALIBRATE_SHOWN = 10     # rows of the new table printed; `layers` lists every threshold


def _calibrate_args(p: argparse.ArgumentParser) -> None:
    _positional_or_flag(p, "dataset", "--dataset", complete="path",
                        help="folder of images / npz / npy samples")
    _arg(p, "--data_list", complete="path", help="file listing one sample per line (instead of a folder)")
    p.add_argument("--input_num", type=int, default=0, help="use the first N samples (0: all)")
    p.add_argument("--cali_method", default="kl", choices=CALI_METHODS, help="threshold method")
    p.add_argument("--tune_num", type=int, default=5, help="samples used to tune the KL thresholds")
    _arg(p, "--tune_list", complete="path", help="file listing the tuning samples")
    p.add_argument("--histogram_bin_num", type=int, default=2048, help="histogram bins per tensor")
    p.add_argument("--histogram", choices=HISTOGRAMS, default=None,
                   help="one_pass (default, TPU-MLIR 1.30.2's tables) or two_pass (v1.3, order-independent)")
    p.add_argument("--all_methods", action="store_true",
                   help="keep every method's statistics, for `plot histogram` (slower)")
    _arg(p, "--table", complete="path", help="read the thresholds from this calibration table instead "
         "of computing them (a dataset, if given, is still the sample data for cos and search)")
    _arg(p, "-o", "--output", "--calibration_table", dest="output", complete="path",
         help="also write the table (the reference's format; run_calibration's -o)")


@command("calibrate", _calibrate_args, category="quantization", records=True)
def calibrate(session: Session, args: argparse.Namespace) -> Result:
    """Calibrate INT8 thresholds on a dataset (run_calibration), or load a calibration table."""
    if args.output:
        check_writable(args.output, "-o")   # before the calibration, not after it
    args.dataset = _either(args, "dataset", "--dataset", "calibrate", required=False)
    if args.table:
        table = session.load_calibration(args.table)
        title = f"calibration table {args.table}: {len(table)} tensors"
    elif args.dataset or args.data_list:
        table = session.calibrate(args.dataset, data_list=args.data_list, input_num=args.input_num,
                                  method=args.cali_method, tune_num=args.tune_num,
                                  tune_list=args.tune_list, histogram_bin_num=args.histogram_bin_num,
                                  all_methods=args.all_methods, histogram=args.histogram)
        title = f"calibrated {len(table)} tensors ({args.cali_method})"
    else:
        raise OptionError("calibrate needs a dataset folder (or --data_list FILE), or --table FILE")
    if args.dataset or args.data_list:
        session.use_data(args.dataset, data_list=args.data_list)
    notes = []
    if args.output:
        notes.append(f"saved {session.save_calibration(args.output)}")
    rows = [[name, r.threshold, r.min, r.max] for name, r in table.rows.items()]
    if len(rows) > CALIBRATE_SHOWN:
        notes.insert(0, f"... {len(rows) - CALIBRATE_SHOWN} more: `layers` lists every threshold, "
                        "`plot calibration` draws them")
    return Table(title, ["tensor", Column("threshold", F6), Column("min", F6), Column("max", F6)],
                 rows[:CALIBRATE_SHOWN], notes=notes, data=table)


# ---- mixed precision: edit, re-check, undo -------------------------------------------------------
def _set_precision_args(p: argparse.ArgumentParser) -> None:
    # completion offers the modes too once a layer is given: `layers` swallows every token
    _arg(p, "layers", nargs="+", metavar="LAYER", complete="layer_then_mode",
         help="layer name, glob such as 'conv1*', or op type such as Conv")
    p.add_argument("mode",
                   help=f"precision, one of {', '.join(QUANTIZE_MODES)}; INT8 removes the layer "
                   "from the qtable")


@command("set_precision", _set_precision_args, category="quantization", records=True)
def set_precision(session: Session, args: argparse.Namespace) -> Result:
    """Set layers to a precision (by name, glob or op type); `cos` re-checks, `undo` reverts."""
    mode = args.mode.upper()
    if mode not in QUANTIZE_MODES and args.layers[0].upper() in QUANTIZE_MODES:
        raise OptionError(f"set_precision takes the layers first, then the precision: "
                          f"`set_precision {' '.join(args.layers[1:] + [args.mode])} "
                          f"{args.layers[0].upper()}`")
    edit = session.set_precision(args.layers, mode)
    if not edit.changed:
        return Message(f"{edit.what}: no layer changed (nothing to undo)", data=edit)
    return Message(str(edit), data=edit)


def _cos_args(p: argparse.ArgumentParser) -> None:
    _arg(p, "layers", nargs="*", metavar="LAYER", complete="layer",
         help="only these layers (names, globs, op types); all by default")
    p.add_argument("--own", action="store_true",
                   help="also each layer's own error (its inputs taken from F32)")
    _cos_arg(p, "--min_layer_cos", DEFAULT_COS, "mark layers below this cosine")
    p.add_argument("--sort", choices=("order", "cos"), default="order",
                   help="rows in model order (default) or worst cosine first")


def _need_calibration(session: Session) -> None:
    """StateError saying what to do when the plan has INT8 layers and nothing calibrated them
    (the lowering would list every tensor that lacks a threshold instead)."""
    from .quant.lowering import needs_calibration
    from .session import NO_CALIBRATION
    _ = session.model
    if session.calibration is None and needs_calibration("INT8", session.qtable):
        raise StateError(NO_CALIBRATION)


@command("cos", _cos_args, category="quantization")
def cos(session: Session, args: argparse.Namespace) -> Result:
    """Re-check the current plan: output and per-layer cosines to F32 (only changes recomputed)."""
    if session.dataset or session.data_list:     # without data, the data is what to give first
        _need_calibration(session)
    check = session.check(own=args.own, layers=args.layers or None,
                          min_layer_cos=_true(session, args.min_layer_cos, "min_layer_cos"))
    session.thresholds_used["min_layer_cos"] = check.min_layer_cos
    head = str(check).splitlines()[0]
    outputs = [f"output {t} {check.shown(c):.6f}" for t, c in check.outputs.items()]
    order = list(check.layers)
    if args.sort == "cos":
        order.sort(key=lambda op: check.layers[op])
    below = set(check.below)
    cols = ["layer", "mode", Column("cos", F6)] + ([Column("own cos", F6)] if args.own else [])
    rows = [[op, check.modes.get(op), check.shown(check.layers[op])]
            + ([check.shown(check.own[op])] if args.own else []) for op in order]
    marked = [i for i, op in enumerate(order) if op in below]
    notes = [f"* below {check.shown(check.min_layer_cos):.6f}"] if marked else []
    return Table("\n".join([head] + outputs), cols, rows, highlight=marked, notes=notes, data=check)


def _no_args(p: argparse.ArgumentParser) -> None:
    return None


@command("undo", _no_args, category="quantization", records=True)
def undo(session: Session, args: argparse.Namespace) -> Result:
    """Undo the last precision edit (set_precision, qtable load or search)."""
    return Message(f"undid {session.undo().describe(undone=True)}")


@command("redo", _no_args, category="quantization", records=True)
def redo(session: Session, args: argparse.Namespace) -> Result:
    """Redo the last undone precision edit."""
    return Message(f"redid {session.redo()}")


def _data_args(p: argparse.ArgumentParser) -> None:
    _arg(p, "dataset", nargs="?", complete="path", help="folder of images / npz / npy samples")
    _arg(p, "--data_list", complete="path", help="file listing one sample per line")


@command("data", _data_args, category="quantization", records=True)
def data(session: Session, args: argparse.Namespace) -> Result:
    """Choose the sample data for cos and search (calibrate DATASET does it too)."""
    if not (args.dataset or args.data_list):
        raise OptionError("data needs a dataset folder or --data_list FILE")
    session.use_data(args.dataset, data_list=args.data_list)
    return Message(f"cos and search use the first {session.settings.samples} samples of "
                   f"{args.dataset or args.data_list} (set samples N to change)")


# ---- sensitivity and head patterns ---------------------------------------------------------------
def _sensitivity_args(p: argparse.ArgumentParser) -> None:
    _arg(p, "layers", nargs="*", metavar="LAYER", complete="layer",
         help="only these layers (names, globs, op types); all by default")
    p.add_argument("--samples", type=int, help="samples to measure on (default: the setting)")
    p.add_argument("--top", type=int, default=30, help="layers drawn in the plot (default 30)")
    _arg(p, "-o", "--output", complete="path", help="also save the bar plot here (.png, .svg, .pdf)")


@command("sensitivity", _sensitivity_args, category="quantization")
def sensitivity(session: Session, args: argparse.Namespace) -> Result:
    """Per layer, the output cosine with only it INT8 and with only it float (cached; Ctrl-C keeps rows)."""
    from .plots.sensitivity import sensitivity_figure
    if args.top < 1:
        raise OptionError(f"--top {args.top} is not valid; give 1 or more layers to draw")
    table = session.sensitivity(samples=args.samples, layers=args.layers or None)
    head = "\n".join(table.header())
    rows = [[op, table.rows[op].op_type, table.shown(table.rows[op].int8_only),
             table.shown(table.rows[op].float_only)] for op in table.ranked()]
    cols = ["layer", "type", Column("int8 only", F6), Column("float only", F6)]
    result = Table(head, cols, rows, data=table, figure=sensitivity_figure(table, args.top))
    return _saved(result, args.output)


def _pattern_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", default="F16", type=str.upper, choices=QUANTIZE_MODES[1:],
                   help="float type to set the pattern's layers to (default F16)")
    p.add_argument("--show", action="store_true", help="only list the layers; change nothing")


@command("pattern", _pattern_args, category="quantization",
         records=lambda args: not args.show)
def pattern(session: Session, args: argparse.Namespace) -> Result:
    """Set the known-head pattern (the ops after the last activation, e.g. a YOLO decode tail) to float."""
    ops = session.head_pattern()
    model = session.model
    rows = [[model.position(op), op, model.node(op).op_type] for op in ops]
    title = f"head pattern: {len(ops)} layer(s) after the last activation"
    if not args.show and ops:
        edit = session.set_precision(ops, args.mode)
        title += (f"\nset to {args.mode}: {len(edit.changed)} layer(s) changed (undo reverts it; "
                  f"`qtable search --method sensitivity --start pattern` shows what the target needs)")
    return Table(title, ["#", "layer", "type"], rows, data=ops)
