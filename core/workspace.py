"""Workspaces: a session saved to one JSON file and opened again later.

    save_workspace(session, "tutorial.tpw")
    open_workspace(session, "tutorial.tpw")     # replaces the session's state in place

The model is referenced, not copied: its path (relative to the workspace file, and absolute as a
fallback), the options it was loaded with, and its sha256 so that a changed model is reported.
Settings and the journal are stored in the file. Opening builds the whole state first and only
then swaps it into the session, so a failed open leaves the session as it was.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import warnings
from dataclasses import asdict
from typing import Any

from .errors import InputFileError, OptionError, StateError, TpuWarning
from .fileio import atomic_write, require_file
from .session import Session

FORMAT = "tpushell-workspace"
VERSION = 1


def file_sha256(path: str) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _reference(path: str | None, base: str) -> dict[str, str] | None:
    if path is None:
        return None
    return {"path": os.path.relpath(path, base), "abspath": path, "sha256": file_sha256(path)}


def _resolve(ref: dict[str, str] | None, base: str, where: str, what: str) -> str | None:
    """The referenced file: relative to the workspace first, then the absolute path; warn if changed."""
    if ref is None:
        return None
    candidates = [os.path.normpath(os.path.join(base, ref["path"])), ref["abspath"]]
    found = next((c for c in candidates if os.path.isfile(c)), None)
    if found is None:
        raise InputFileError(f"{where}: {what} not found at {candidates[0]} nor at {candidates[1]}")
    if file_sha256(found) != ref["sha256"]:
        warnings.warn(TpuWarning(f"{where}: {what} {found} changed since the workspace was saved"))
    return found


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
        "history": list(session.history),
    }
    with atomic_write(path) as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    return path


def read_workspace(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed workspace document, checked for format and version."""
    path = require_file(path, "workspace")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputFileError(f"{path} is not a tpushell workspace (not JSON: {e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputFileError(f"{path} is not a tpushell workspace (no '\"format\": \"{FORMAT}\"')")
    if doc.get("version") != VERSION:
        raise InputFileError(f"{path}: workspace version {doc.get('version')} is not supported "
                             f"(this tpushell reads version {VERSION})")
    return doc


def open_workspace(session: Session, path: str | os.PathLike) -> Session:
    """Replace the state of `session` with the workspace at `path` (all or nothing)."""
    path = os.fspath(path)
    doc = read_workspace(path)
    base = os.path.dirname(os.path.abspath(path))
    fresh = Session(progress=session.progress)
    model = _resolve(doc["model"], base, path, "model")
    model_data = _resolve(doc.get("model_data"), base, path, "model data")
    fresh.load(model, model_data=model_data, **doc.get("load_options", {}))
    for name, value in doc["settings"].items():
        try:
            fresh.settings.set(name, value)
        except OptionError as e:
            raise InputFileError(f"{path}: {e}") from None
    fresh.history = list(doc.get("history", []))
    session.__dict__.clear()
    session.__dict__.update(fresh.__dict__)
    return session
