"""The workshop examples run end to end on the real model and data: the shell script (the whole
tutorial story) and the Python API example. The notebook has its own test (test_notebook.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tpushell.app import script_lines

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def tutorial_dir(tmp_path, shared) -> Path:
    """A work folder with ../shared beside it, as the examples expect from the repository root."""
    (tmp_path / "shared").symlink_to(shared)
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


def tpushell(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tpushell", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, TPUSHELL_HISTORY=""))


@pytest.mark.zoo
def test_tutorial_script_runs_the_whole_story(tutorial_dir):
    done = tpushell("--script", str(EXAMPLES / "yolov3_tiny.tps"), cwd=tutorial_dir)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    ran = [line for line in out.splitlines() if line.startswith("(tpu) ")]
    assert len(ran) == len(list(script_lines(str(EXAMPLES / "yolov3_tiny.tps")))) and "error:" not in out
    # the chapter's flags on every step, each named table / chip said
    assert "(tpu) load --model_name yolov3_tiny --model_def " in out and "yolov3_tiny: 34 ops" in out
    assert "F32 on 000000366711.jpg: 2 object(s)" in out and "person" in out and "orange" in out
    assert "(tpu) calibrate --dataset " in out and "... 25 more: `layers` lists every threshold" in out
    assert "loaded calibration table yolov3_cali_table (35 tensors)" in out
    assert "yolov3_int8 on 000000366711.jpg: 2 object(s)" in out and "reference search on 10 sample(s)" in out
    assert "saved the qtable to yolov3_qtable" in out and "\n(tpu) qtable\nqtable: " in out
    assert "loaded qtable yolov3_qtable: " in out and "yolov3_mix on 000000366711.jpg" in out
    assert "wrote yolov3_mix.bmodel" in out and "INT8: " in out and "mixed: " in out
    for name in ("yolov3_onnx.jpg", "yolov3_f32.jpg", "yolov3_int8.jpg", "yolov3_cali_table",
                 "yolov3_tiny.mlir", "yolov3_int8.bmodel", "yolov3_qtable", "yolov3_cos.png",
                 "yolov3_mix.bmodel", "yolov3_mix.jpg", "yolov3_compare.png", "yolov3_tiny.tpw",
                 "conv1_leaky_histogram.png"):
        assert (tutorial_dir / name).stat().st_size > 0, name


@pytest.mark.zoo
def test_python_api_example(tmp_path, shared):
    done = subprocess.run([sys.executable, str(EXAMPLES / "python_api.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TPUSHELL_ZOO=str(shared)))
    assert done.returncode == 0, done.stderr
    assert "F32 finds 2 object(s)" in done.stdout and "person" in done.stdout
    assert (tmp_path / "yolov3_f32_api.jpg").stat().st_size > 0
