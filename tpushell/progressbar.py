"""A terminal progress bar with an ETA, fed by core's progress callback (task, done, total)."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Callable progress sink: `Session(progress=ProgressBar())`; draws on stderr when it is a tty,
    otherwise prints one line at 0%, every 25% and at the end (logs stay readable)."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self._task: str | None = None
        self._start = 0.0
        self._last_quarter = -1

    def __call__(self, task: str, done: int, total: int) -> None:
        if task != self._task or done == 0:
            self._task, self._start, self._last_quarter = task, time.monotonic(), -1
        total = max(total, 1)
        frac = min(done / total, 1.0)
        elapsed = time.monotonic() - self._start
        eta = elapsed / done * (total - done) if done else 0.0
        text = (f"{task}: [{'#' * int(frac * self.width):<{self.width}}] {done}/{total} "
                f"{elapsed:5.1f}s elapsed, ETA {eta:5.1f}s")
        if self.stream.isatty():
            self.stream.write("\r" + text + ("\n" if done >= total else ""))
            self.stream.flush()
            return
        quarter = int(frac * 4)
        if quarter != self._last_quarter or done >= total:
            self._last_quarter = quarter
            self.stream.write(text + "\n")
            self.stream.flush()
