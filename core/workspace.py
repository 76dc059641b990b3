"""Workspaces: a session saved to one JSON file and opened again later.

    save_workspace(session, "tutorial.tpw")
    open_workspace(session, "tutorial.tpw")     # replaces the session's state in place

The model and the sample data are referenced, not copied: their paths (relative to the workspace
file, and absolute as a fallback), the options the model was loaded with, and the model's sha256
so that a changed model is reported. Stored in the file: settings, the calibration table, the
qtable with its undo / redo history, the loss table of the last search, the statistics of the last
calibration (histograms, so that `plot histogram` works after `open`), and the journal. Numbers
are kept exactly (JSON floats round-trip), not at the 7 decimals of the table files, so `cos`
after `open` gives the numbers it gave before `save`. Opening builds the whole state first and
only then swaps it into the session, so a failed open leaves the session as it was.
"""
from __future__ import annotations

import datetime
import json
import os
import warnings
from dataclasses import asdict, fields
from typing import Any, Callable

import numpy as np

from .calibration.calibrate import METHODS, Statistics, TensorStats, check_table
from .calibration.tables import CalibrationTable, CalRow, LossRow, LossTable, QTable, check_row
from .errors import InputFileError, StateError, TpuError, TpuWarning
from .fileio import atomic_write, check_file_stem, file_sha256, read_text
from .search.precision import Edit, EditHistory
from .session import Session

FORMAT = "tpushell-workspace"
VERSION = 2
READS = (1, 2)       # version 1 had no tables; what it lacks opens empty


def _reference(path: str | None, base: str) -> dict[str, str] | None:
    if path is None:
        return None
    return {"path": os.path.relpath(path, base), "abspath": path, "sha256": file_sha256(path)}


def _candidates(ref: dict[str, str], base: str) -> list[str]:
    """Where a referenced path may be now: relative to the workspace first, then absolute
    (once, when both are the same place)."""
    return list(dict.fromkeys([os.path.normpath(os.path.join(base, ref["path"])), ref["abspath"]]))


def _places(candidates: list[str]) -> str:
    return " nor at ".join(candidates)


def _resolve(ref: dict[str, str] | None, base: str, where: str, what: str) -> str | None:
    """The referenced file: relative to the workspace first, then the absolute path; warn if changed."""
    if ref is None:
        return None
    candidates = _candidates(ref, base)
    found = next((c for c in candidates if os.path.isfile(c)), None)
    if found is None:
        raise InputFileError(f"{what} not found at {_places(candidates)}")
    if file_sha256(found) != ref["sha256"]:
        warnings.warn(TpuWarning(f"{where}: {what} {found} changed since the workspace was saved"))
    return found


def _folder_reference(path: str | None, base: str) -> dict[str, str] | None:
    if path is None:
        return None
    path = os.path.abspath(path)
    return {"path": os.path.relpath(path, base), "abspath": path}


def _resolve_folder(ref: dict[str, str] | None, base: str, where: str) -> str | None:
    """The sample folder, relative to the workspace first; None (with a warning) when it is gone:
    everything else of the workspace is in the file, so it still opens."""
    if ref is None:
        return None
    candidates = _candidates(ref, base)
    found = next((c for c in candidates if os.path.isdir(c)), None)
    if found is None:
        warnings.warn(TpuWarning(f"{where}: sample folder not found at {_places(candidates)}; "
                                 f"give one with `data FOLDER` before cos or search"))
    return found


# ---- tables as JSON ------------------------------------------------------------------------------
def _calibration_doc(t: CalibrationTable | None) -> dict[str, Any] | None:
    if t is None:
        return None
    rows = lambda r: {n: [x.threshold, x.min, x.max] for n, x in r.items()}  # noqa: E731
    return {"rows": rows(t.rows), "int4_rows": rows(t.int4_rows), "asym_ops": list(t.asym_ops),
            "weight_scales": t.weight_scales, "header": t.header, "path": t.path}


def _calibration(doc: dict[str, Any] | None) -> CalibrationTable | None:
    if doc is None:
        return None
    rows = lambda r: {n: check_row(CalRow(*map(float, x)), f"calibration row '{n}'")  # noqa: E731
                      for n, x in r.items()}
    return CalibrationTable(rows(doc["rows"]), rows(doc.get("int4_rows", {})),
                            list(doc.get("asym_ops", [])), dict(doc.get("weight_scales", {})),
                            dict(doc.get("header", {})), doc.get("path"))


# TensorStats fields held as numpy arrays, with their dtypes; the others are plain numbers or dicts.
STATS_ARRAYS = {"hist": np.int64, "top": np.float32, "bottom": np.float32}


def _stats_doc(stats: Statistics | None) -> dict[str, Any] | None:
    if stats is None:
        return None

    def tensor(t: TensorStats) -> dict[str, Any]:
        values = {f.name: getattr(t, f.name) for f in fields(TensorStats) if f.name != "name"}
        return {k: (None if v is None else v.tolist()) if k in STATS_ARRAYS else v
                for k, v in values.items()}
    return {"samples": stats.samples, "bins": stats.bins, "methods": list(stats.methods),
            "inputs": list(stats.inputs),
            "tensors": {name: tensor(t) for name, t in stats.tensors.items()}}


def _stats(doc: dict[str, Any] | None, tensor_names: set[str]) -> Statistics | None:
    """Statistics from their JSON form; ValueError for names, methods or arrays that cannot be."""
    if doc is None:
        return None
    methods = tuple(str(m) for m in doc["methods"])
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"calibration statistics of unknown method(s) {', '.join(unknown)}")

    def value(f, v):
        if f.name in STATS_ARRAYS:
            if v is None:
                return None
            a = np.asarray(v, dtype=STATS_ARRAYS[f.name])
            if a.ndim != 1 or (f.name == "hist" and (a < 0).any()):
                raise ValueError("calibration statistics hold an array that is not a list of "
                                 "counts/values")
            return a
        if f.name == "per_sample":
            return {str(k): float(x) for k, x in v.items()}
        return type(f.default)(v)                  # int or float, as the field's default

    tensors = {}
    for name, t in doc["tensors"].items():
        if name not in tensor_names:
            raise ValueError(f"calibration statistics name tensor '{name}', which the model lacks")
        tensors[name] = TensorStats(name, **{f.name: value(f, t[f.name])
                                             for f in fields(TensorStats) if f.name != "name"})
    return Statistics(tensors, int(doc["samples"]), int(doc["bins"]), methods,
                      tuple(str(i) for i in doc["inputs"]))


def _loss_doc(t: LossTable | None) -> dict[str, Any] | None:
    if t is None:
        return None
    return {"rows": [[r.layer, r.cos, r.visited] for r in t.rows], "sample_number": t.sample_number,
            "chip": t.chip, "mix_mode": t.mix_mode}


def _loss(doc: dict[str, Any] | None) -> LossTable | None:
    if doc is None:
        return None
    return LossTable([LossRow(str(n), float(c), bool(v)) for n, c, v in doc["rows"]],
                     doc.get("sample_number"), doc.get("chip"), doc.get("mix_mode"))


def _edits_doc(h: EditHistory) -> dict[str, list]:
    edit = lambda e: {"what": e.what, "before": e.before.modes, "after": e.after.modes}  # noqa: E731
    return {"done": [edit(e) for e in h.done], "undone": [edit(e) for e in h.undone]}


def _edits(doc: dict[str, list]) -> EditHistory:
    edit = lambda e: Edit(e["what"], QTable(dict(e["before"])), QTable(dict(e["after"])))  # noqa: E731
    return EditHistory([edit(e) for e in doc.get("done", [])],
                       [edit(e) for e in doc.get("undone", [])])


def save_workspace(session: Session, path: str | os.PathLike) -> str:
    """Write `session` to `path` (atomically) and return the path."""
    path = os.fspath(path)
    _ = session.model   # StateError when nothing is loaded yet
    if not session.load_options:
        raise StateError("the model was not loaded with Session.load, so the workspace cannot "
                         "reference its file; load it with `load MODEL` first")
    base = os.path.dirname(os.path.abspath(path))
    options = dict(session.load_options)
    doc: dict[str, Any] = {
        "format": FORMAT, "version": VERSION,
        "saved": datetime.datetime.now().isoformat(timespec="seconds"),
        "model": _reference(options.pop("model"), base),
        "model_data": _reference(options.pop("model_data"), base),
        "load_options": options,
        "settings": asdict(session.settings),
        "dataset": _folder_reference(session.dataset, base),
        "data_list": _reference(session.data_list and os.path.abspath(session.data_list), base),
        "calibration": _calibration_doc(session.calibration),
        "calibration_stats": _stats_doc(session.calibration_stats),
        "qtable": dict(session.qtable.modes),
        "edits": _edits_doc(session.edits),
        "loss_table": _loss_doc(session.loss_table),
        "history": list(session.history),
    }
    with atomic_write(path) as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    return path


def read_workspace(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed workspace document, checked for format and version."""
    text = read_text(path, "workspace")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputFileError(f"{path} is not a tpushell workspace (not JSON: {e})") from None
    except RecursionError:
        raise InputFileError(f"{path} is not a tpushell workspace (JSON nested too deep)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputFileError(f"{path} is not a tpushell workspace (no '\"format\": \"{FORMAT}\"')")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputFileError(f"{path}: workspace \"version\" is {json.dumps(version)}, not a "
                             f"number (this tpushell reads versions {', '.join(map(str, READS))})")
    if version not in READS:
        raise InputFileError(f"{path}: workspace version {doc.get('version')} is not supported "
                             f"(this tpushell reads versions {', '.join(map(str, READS))})")
    return doc


def open_workspace(session: Session, path: str | os.PathLike,
                   check_line: Callable[[str], None] | None = None) -> Session:
    """Replace the state of `session` with the workspace at `path` (all or nothing).
    `check_line` vets each journal entry (the command layer refuses what is not a tpushell
    command, so a tampered journal cannot be replayed into a shell command)."""
    path = os.fspath(path)
    doc = read_workspace(path)
    _check_journal(doc.get("history", []), path, check_line)
    try:
        fresh = _build(doc, os.path.dirname(os.path.abspath(path)), path, session.progress)
    except TpuError as e:
        raise InputFileError(f"{path}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as e:
        raise InputFileError(f"{path}: the workspace is damaged ({type(e).__name__}: {e}); "
                             f"save it again from a session") from None
    session.__dict__.clear()
    session.__dict__.update(fresh.__dict__)
    return session


def _check_journal(history: Any, path: str, check_line: Callable[[str], None] | None) -> None:
    """InputFileError naming the first journal entry that is not text or that `check_line`
    refuses."""
    if not isinstance(history, list):
        raise InputFileError(f"{path}: the workspace is damaged (TypeError: its journal "
                             "\"history\" is not a list of commands); save it again from a session")
    for number, line in enumerate(history, 1):
        if not isinstance(line, str):
            raise InputFileError(f"{path}: journal entry {number} is not a command line")
        if check_line is not None:
            try:
                check_line(line)
            except TpuError as e:
                raise InputFileError(f"{path}: journal entry {number}: {e}") from None


def _build(doc: dict[str, Any], base: str, path: str, progress) -> Session:
    """A new session with the model, settings, sample data, tables, edits and journal of `doc`;
    the tables are checked against the model and chip."""
    from .quant.lowering import resolve_modes
    fresh = Session(progress=progress)
    options = doc.get("load_options", {})
    if options.get("name") is not None:
        check_file_stem(options["name"], "load_options.name")
    model = _resolve(doc["model"], base, path, "model")
    model_data = _resolve(doc.get("model_data"), base, path, "model data")
    fresh.load(model, model_data=model_data, **options)
    for name, value in doc["settings"].items():
        fresh.settings.set(name, value)
    fresh.history = [str(line) for line in doc.get("history", [])]
    dataset = _resolve_folder(doc.get("dataset"), base, path)
    data_list = _resolve(doc.get("data_list"), base, path, "data list")
    if dataset or data_list:
        fresh.use_data(dataset, data_list=data_list)
    fresh.calibration = _calibration(doc.get("calibration"))
    if fresh.calibration is not None:
        check_table(fresh.model, fresh.calibration)
    fresh.calibration_stats = _stats(doc.get("calibration_stats"), set(fresh.model.tensor_names()))
    fresh.qtable = QTable(dict(doc.get("qtable", {})))
    fresh.edits = _edits(doc.get("edits", {}))
    for q in [fresh.qtable] + [q for e in fresh.edits.done + fresh.edits.undone for q in (e.before, e.after)]:
        resolve_modes(fresh.model, fresh.settings.chip, "INT8", q)
    fresh.loss_table = _loss(doc.get("loss_table"))
    return fresh
