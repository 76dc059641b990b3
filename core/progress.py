"""Progress reporting: core calls one callback; front ends draw a bar, tests stay quiet.

A callback that has a `finish(task)` method is told when a task ends (also when it is interrupted),
so that its bar closes; tpushell/progressbar.py draws the bars with tqdm.

    def show(task, done, total): ...
    with Progress(show, "calibration", total=100) as p:
        for item in items:
            ...
            p.advance()
"""
from __future__ import annotations

from typing import Callable, Optional

ProgressFn = Callable[[str, int, int], None]


class Progress:
    """Counts steps of one task and forwards (task, done, total) to the callback, if any."""

    def __init__(self, callback: Optional[ProgressFn], task: str, total: int) -> None:
        self.callback, self.task, self.total, self.done = callback, task, int(total), 0

    def __enter__(self) -> "Progress":
        self._emit()
        return self

    def __exit__(self, *exc) -> None:
        finish = getattr(self.callback, "finish", None)
        if finish is not None:
            finish(self.task)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._emit()

    def _emit(self) -> None:
        if self.callback is not None:
            self.callback(self.task, self.done, self.total)
