"""What every command-line tool shares: option parsing helpers and error/interrupt handling."""
from __future__ import annotations

import os
import sys
import warnings
from typing import Callable, Sequence

from ..progressbar import ProgressBar
from tpushell.core.errors import SYSTEM_ERRORS, TpuError, system_error_message
from tpushell.core.fileio import WriteLog
# option parsers live in core (the shell commands use them too); the tools import them from here
from tpushell.core.options import parse_floats, parse_names, parse_shapes, parse_tolerance  # noqa: F401

DEBUG_ENV = "TPUSHELL_DEBUG"   # set to 1 to get the traceback of an unexpected error


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def interrupted_message(written: Sequence[str]) -> str:
    """The true message after Ctrl-C: nothing written, or which files were replaced."""
    if not written:
        return "interrupted: nothing was written"
    return (f"interrupted: {len(written)} file(s) were written before the interrupt "
            f"({', '.join(written)}); the other outputs were not")


def run_tool(main: Callable[[Sequence[str] | None], int | None],
             argv: Sequence[str] | None = None) -> int:
    """Run a tool's `main`: TpuError and OS/decoding/memory errors -> one 'error: ...' line and
    exit 1; Ctrl-C -> exit 130 with what was written; anything else -> one 'internal error' line."""
    warnings.showwarning = _show_warning
    with WriteLog() as log:
        try:
            return int(main(argv) or 0)
        except TpuError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except SYSTEM_ERRORS as e:
            print(f"error: {_one_line(system_error_message(e))}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(interrupted_message(log.paths), file=sys.stderr)
            return 130
        except Exception as e:   # a bug: one line (the traceback with TPUSHELL_DEBUG=1)
            if os.environ.get(DEBUG_ENV):
                raise
            print(f"error: internal error ({type(e).__name__}: {_one_line(e)}); please report it "
                  f"(set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
            return 1


def progress_bar() -> ProgressBar:
    """The progress sink the tools hand to the core (a bar with ETA on stderr)."""
    return ProgressBar()
