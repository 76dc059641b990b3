"""Typed errors of the core. Front ends render them; core never prints or exits.

Every message says what was expected, what was found, and what is valid.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class TpuError(Exception):
    """Base of every error the core raises on purpose (bad input, bad state)."""


class InputFileError(TpuError):
    """A file is missing, unreadable, or not of the expected kind."""


class ModelError(TpuError):
    """The model graph is malformed or does not fit the requested use."""


class UnsupportedOpError(ModelError):
    """One or more ops have no implementation (the message lists all of them)."""


class OptionError(TpuError):
    """A command-line or API option has an invalid value."""


class CalibrationError(TpuError):
    """Calibration data or a calibration table is invalid or does not match the model."""


class QuantizationError(TpuError):
    """Lowering to a quantized plan failed (qtable, chip or mode problem)."""


class StateError(TpuError):
    """A step was asked for out of order (e.g. deploy before calibrate)."""


class TpuWarning(UserWarning):
    """Something the user should know that does not stop the work (issued with warnings.warn)."""


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The few candidates closest to `name`, for 'did you mean' hints."""
    candidates = list(candidates)
    found = difflib.get_close_matches(name, candidates, n=n, cutoff=0.4)
    if not found:
        found = [c for c in candidates if name.lower() in c.lower()][:n]
    return found


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A ' (did you mean a, b?)' suffix, or '' when nothing is close."""
    found = closest(name, candidates)
    return f" (did you mean {', '.join(found)}?)" if found else ""


def system_error_message(e: BaseException, path: str | None = None) -> str:
    """One line for an OSError / UnicodeDecodeError / MemoryError / RecursionError, naming the
    file (`path`, else the one the error carries) and the cause; the one place these are worded."""
    if isinstance(e, UnicodeDecodeError):
        where = path or "a text file"
        return (f"{where} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                "save it as UTF-8")
    if isinstance(e, MemoryError):
        where = f" reading {path}" if path else ""
        return (f"out of memory{where}: the input asks for more memory than this machine has "
                "(a shape, size or count in it is too large)")
    if isinstance(e, RecursionError):
        where = f"{path}: " if path else ""
        return f"{where}nesting too deep to read (a damaged or hostile file)"
    if isinstance(e, OSError):
        name = path or e.filename
        cause = e.strerror or str(e) or type(e).__name__
        if e.filename2:
            name = f"{name} -> {e.filename2}"
        return f"{name}: {cause}" if name else cause
    return f"{type(e).__name__}: {e}"


class SystemFileError(InputFileError):
    """An OSError / UnicodeDecodeError / MemoryError turned into a one-line error naming the file."""

    @classmethod
    def wrap(cls, e: BaseException, path: str | None = None) -> "SystemFileError":
        """The one-line error for `e` (see system_error_message)."""
        return cls(system_error_message(e, path))


# What the tools and the shell turn into one-line errors instead of tracebacks.
SYSTEM_ERRORS = (OSError, UnicodeDecodeError, MemoryError, RecursionError)
