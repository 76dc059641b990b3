"""The real interactive shell, driven as a person would through a terminal (pexpect): start
`tpushell`, load the tutorial model, complete a layer name with Tab, set that layer to F16,
re-check the cosines and see the output cosine move, quit."""
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


def output_cosines(text: str) -> dict[str, float]:
    """{output tensor: cosine} from what `cos` drew."""
    return {m[1]: float(m[2]) for m in re.finditer(r"output (\S+) (\d\.\d{6})", text)}


@pytest.mark.zoo
def test_a_person_completes_a_layer_sets_it_to_f16_and_rechecks(zoo_workdir):
    term = Terminal(zoo_workdir)
    try:
        term.wait(r"\(tpu\)")
        term.send("load zoo/yolov3-tiny/tiny-yolov3-11.onnx --model_name yolov3_tiny "
                  "--output_names transpose_output1,transpose_output --scale 0.0039216,0.0039216,"
                  "0.0039216 --pixel_format rgb --keep_aspect_ratio --pad_value 128\r")
        term.wait(r"yolov3_tiny: 34 ops[\s\S]*\(tpu\)")
        term.send("layers conv1_le\t")                       # Tab completes the layer name:
        term.wait(r"aky_LeakyRelu")                           # the terminal draws the rest of it
        term.send("\r")                                      # and the command runs on the full name
        term.wait(r"1 of 34 layers[\s\S]*conv1_leaky_LeakyRelu +LeakyRelu +1x32x208x208[\s\S]*\(tpu\)")
        term.send("set samples 2\r")
        term.wait(r"samples = 2[\s\S]*\(tpu\)")
        term.send("calibrate zoo/COCO2017 --table golden/tpumlir_cali_table\r")
        term.wait(r"calibration table golden/tpumlir_cali_table[\s\S]*\(tpu\)")
        term.send("cos\r")
        int8 = output_cosines(term.wait(r"output transpose_output_\S+ \d\.\d{6}[\s\S]*\(tpu\)"))
        term.send("set_precision conv1_le\t")                # the same completion, then a precision
        term.wait(r"aky_LeakyRelu")
        term.send("F1\t")                                    # F16 completes too (the redraw may
        term.wait(r"F1[\s\S]*6")                              # put the 6 after cursor moves)
        term.send("\r")
        term.wait(r"conv1_leaky_LeakyRelu INT8 -> F16[\s\S]*\(tpu\)")
        term.send("cos\r")
        mixed = output_cosines(term.wait(r"output transpose_output_\S+ \d\.\d{6}[\s\S]*\(tpu\)"))
        assert mixed.keys() == int8.keys() and len(int8) == 2
        assert mixed != int8, f"F16 on conv1_leaky_LeakyRelu did not move the output cosine: {int8}"
        assert all(0.99 < c < 1 for c in [*int8.values(), *mixed.values()])
        term.send("layers conv99\r")
        term.wait(r"error: no op or op type 'conv99'[\s\S]*\(tpu\)")
        term.send("quit\r")                                  # unsaved work: it asks once
        term.wait(r"quit anyway\? \[y/N\]")
        term.send("y\r")
        term.child.expect(pexpect.EOF, timeout=30)
    finally:
        term.child.close()
    assert term.child.exitstatus == 0


@pytest.mark.zoo
@pytest.mark.slow
def test_ctrl_c_during_calibrate_changes_nothing_and_quit_asks_about_unsaved_work(zoo_workdir):
    term = Terminal(zoo_workdir)
    try:
        term.wait(r"Start with `load MODEL.onnx`[\s\S]*\(tpu\)")      # the banner says what to type
        term.send("load --model_def zoo/yolov3-tiny/tiny-yolov3-11.onnx --output_names "
                  "transpose_output1,transpose_output --scale 0.0039216,0.0039216,0.0039216 "
                  "--pixel_format rgb --keep_aspect_ratio --pad_value 128\r")
        term.wait(r"34 ops[\s\S]*\(tpu\)")
        term.send("set samples 2\r")
        term.wait(r"samples = 2[\s\S]*\(tpu\)")
        term.send("calibrate zoo/COCO2017 --table golden/tpumlir_cali_table\r")
        term.wait(r"calibration table golden/tpumlir_cali_table[\s\S]*\(tpu\)")
        term.send("cos\r")
        before = output_cosines(term.wait(r"output transpose_output_\S+ \d\.\d{6}[\s\S]*\(tpu\)"))
        term.send("calibrate --dataset zoo/COCO2017 --input_num 100 -o new_table\r")
        term.wait(r"calibration statistics: +\d+%.*\d+/100")       # the bar is drawing
        term.send("\x03")                                            # Ctrl-C
        text = term.wait(r"interrupted: nothing changed[\s\S]*\(tpu\)", timeout=60)
        assert "Traceback" not in text
        term.send("cos\r")
        after = output_cosines(term.wait(r"output transpose_output_\S+ \d\.\d{6}[\s\S]*\(tpu\)"))
        assert after == before and len(before) == 2
        assert not (zoo_workdir / "new_table").exists()
        term.send("quit\r")
        term.wait(r"\d+ command\(s\) since the last save are not in a workspace; quit anyway\? \[y/N\]")
        term.send("n\r")
        term.wait(r"not quitting; `save NAME` keeps the work in NAME.tpw[\s\S]*\(tpu\)")
        term.send("save work\r")
        term.wait(r"saved workspace to work.tpw[\s\S]*\(tpu\)")
        term.send("quit\r")                                          # saved: no question
        term.child.expect(pexpect.EOF, timeout=30)
    finally:
        term.child.close()
    assert term.child.exitstatus == 0
