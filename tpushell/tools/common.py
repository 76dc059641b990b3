"""What every command-line tool shares: option parsing helpers and error/interrupt handling."""
from __future__ import annotations

import sys
import warnings
from typing import Callable, Sequence

from ..progressbar import ProgressBar
from tpushell.core.errors import TpuError
# option parsers live in core (the shell commands use them too); the tools import them from here
from tpushell.core.options import parse_floats, parse_names, parse_shapes, parse_tolerance  # noqa: F401


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def run_tool(main: Callable[[Sequence[str] | None], int | None],
             argv: Sequence[str] | None = None) -> int:
    """Run a tool's `main`; TpuError -> 'error: ...' and exit 1, Ctrl-C -> exit 130."""
    warnings.showwarning = _show_warning
    try:
        return int(main(argv) or 0)
    except TpuError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130


def progress_bar() -> ProgressBar:
    """The progress sink the tools hand to the core (a bar with ETA on stderr)."""
    return ProgressBar()

