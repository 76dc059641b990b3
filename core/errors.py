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
