"""Progress bars on tqdm, fed by core's progress callback (task, done, total).

`tqdm.auto` draws a widget in Jupyter and a bar updated in place (carriage return) in a terminal;
each task (phase) gets its own bar with its rate and ETA, closed when the phase ends.
"""
from __future__ import annotations

import sys
from typing import TextIO

from tqdm.auto import tqdm


class ProgressBar:
    """Callable progress sink: `Session(progress=ProgressBar())`; one bar per task."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream      # None: tqdm's default, stderr (a widget in Jupyter)
        self._bar = None
        self._task: str | None = None

    def __call__(self, task: str, done: int, total: int) -> None:
        if self._bar is None or task != self._task or done < self._bar.n:
            self.finish()
            self._task = task
            # the stream is looked up now: the shell and tests swap sys.stderr
            self._bar = tqdm(total=total, desc=task, unit="step", leave=True, dynamic_ncols=True,
                             file=self.stream or sys.stderr)
        if total != self._bar.total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)
        if done >= total:
            self.finish()

    def finish(self, task: str | None = None) -> None:
        """Close the open bar (core's Progress calls this when a phase ends, also on Ctrl-C)."""
        if self._bar is not None:
            # a phase cut short (an error, Ctrl-C) wipes its bar: the error line stands alone
            self._bar.leave = self._bar.total is None or self._bar.n >= self._bar.total
            self._bar.close()
            self._bar, self._task = None, None
