"""The real interactive shell, driven as a person would through a terminal (pexpect): start
`tpushell`, load the tutorial model, complete a layer name with Tab, look at it, quit."""
from __future__ import annotations

import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[=>]|\r")   # what the terminal draws, as text


class Terminal:
    """A pseudo-terminal running `tpushell`; `wait(regex)` reads until the drawn text matches."""

    def __init__(self, cwd: Path) -> None:
        exe = shutil.which("tpushell", path=os.path.dirname(sys.executable)) or "tpushell"
        env = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
        self.child = pexpect.spawn(exe, cwd=str(cwd), env=env, encoding="utf-8", dimensions=(50, 200))
        self.seen = ""

    def wait(self, pattern: str, timeout: float = 60) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                self.seen += self.child.read_nonblocking(100000, timeout=0.2)
            except pexpect.TIMEOUT:
                pass
            text = ANSI.sub("", self.seen)
            if re.search(pattern, text):
                self.seen = ""
                return text
        raise AssertionError(f"the shell never showed {pattern!r}; it showed:\n{ANSI.sub('', self.seen)[-3000:]}")

    def send(self, keys: str) -> None:
        self.child.send(keys)


@pytest.mark.zoo
def test_a_person_loads_completes_and_quits(zoo_workdir):
    term = Terminal(zoo_workdir)
    try:
        term.wait(r"\(tpu\)")
        term.send("load zoo/yolov3-tiny/tiny-yolov3-11.onnx --model_name yolov3_tiny "
                  "--output_names transpose_output1,transpose_output\r")
        term.wait(r"yolov3_tiny: 34 ops[\s\S]*\(tpu\)")
        term.send("layers conv1_le\t")                       # Tab completes the layer name:
        term.wait(r"aky_LeakyRelu")                           # the terminal draws the rest of it
        term.send("\r")                                      # and the command runs on the full name
        term.wait(r"1 of 34 layers[\s\S]*conv1_leaky_LeakyRelu +LeakyRelu +1x32x208x208[\s\S]*\(tpu\)")
        term.send("layers conv99\r")
        term.wait(r"error: no op or op type 'conv99'[\s\S]*\(tpu\)")
        term.send("quit\r")
        term.child.expect(pexpect.EOF, timeout=30)
    finally:
        term.child.close()
    assert term.child.exitstatus == 0
