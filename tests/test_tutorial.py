"""The whole mixed-precision chapter, verbatim: every command of the seed tutorial, run with our
console scripts in the chapter's folder layout, each produced file and printed figure checked."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from tpushell.core.calibration.tables import read_calibration_table, read_qtable

pytestmark = pytest.mark.zoo
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = ("detect_yolov3.py", "model_transform.py", "run_calibration.py", "model_deploy.py",
         "run_qtable.py")


def load_tutorial_module():
    spec = importlib.util.spec_from_file_location("tutorial", os.path.join(REPO, "examples", "tutorial.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seed_commands(text: str) -> list[str]:
    """The chapter's `$ tool ...` commands, continuation lines joined, inline prose removed."""
    commands, current = [], None
    for raw in text.splitlines():
        line = re.sub(r"\\\s+#.*$", "\\\\", raw.strip())   # '... \ #remark' -> '... \'
        if current is None:
            if line.startswith("$ "):
                current = line[2:]
            else:
                continue
        else:
            current += " " + line
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        words = current.split()
        if words and words[0] in TOOLS:
            commands.append(" ".join(words))
        current = None
    return commands


def test_our_command_list_is_the_chapter_verbatim(shared):
    text = (shared / "seed" / "mix_precision_tutorial.txt").read_text()
    assert seed_commands(text) == [" ".join(c.split()) for c in load_tutorial_module().COMMANDS]


@pytest.fixture(scope="module")
def chapter(tmp_path_factory, shared):
    """Run every command once; yield (workspace, {step: stdout})."""
    tutorial = load_tutorial_module()
    workspace = tutorial.layout(tmp_path_factory.mktemp("chapter"), shared / "zoo")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    outputs = {}
    for command in tutorial.COMMANDS:
        done = subprocess.run(["bash", "-c", command], cwd=workspace, env=env, capture_output=True,
                              text=True)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        outputs[command] = done.stdout
    return workspace, outputs


def _step(outputs, prefix, output_name=None):
    return next(out for cmd, out in outputs.items() if cmd.startswith(prefix)
                and (output_name is None or output_name in cmd))


def test_every_file_of_the_chapter_is_produced(chapter):
    workspace, _ = chapter
    for name in ("yolov3_onnx.jpg", "yolov3_tiny.mlir", "yolov3_tiny_top_f32_all_weight.npz",
                 "yolov3_cali_table", "yolov3_int8.bmodel", "yolov3_int8.jpg", "yolov3_qtable",
                 "full_loss_table.txt", "yolov3_mix.bmodel", "yolov3_mix.jpg"):
        assert (workspace / name).is_file() and (workspace / name).stat().st_size > 0, name


def test_onnx_detection_finds_the_person_and_an_orange(chapter):
    _, outputs = chapter
    text = _step(outputs, "detect_yolov3.py", "yolov3_onnx.jpg")
    assert "person" in text and "orange" in text


def test_calibration_table_covers_every_tensor(chapter):
    workspace, _ = chapter
    table = read_calibration_table(workspace / "yolov3_cali_table")
    assert len(table) == 35 and "input_1" in table and "concat20_Concat" in table
    assert all(r.threshold > 0 for r in table.rows.values())


def test_int8_and_mixed_detections_are_printed(chapter):
    _, outputs = chapter
    for name in ("yolov3_int8.jpg", "yolov3_mix.jpg"):
        text = _step(outputs, "detect_yolov3.py", name)
        assert "person" in text or "No object was detected" in text


def test_run_qtable_prints_the_reference_lines_and_improves_the_model(chapter):
    workspace, outputs = chapter
    text = _step(outputs, "run_qtable.py")
    int8 = float(re.search(r"int8 outputs_cos:\s*([0-9.]+)", text).group(1))
    mix = float(re.search(r"mix model outputs_cos:\s*([0-9.]+)", text).group(1))
    assert "Output mix quantization table to yolov3_qtable" in text
    assert re.search(r"total time:\s*[0-9.]+", text)
    qtable = read_qtable(workspace / "yolov3_qtable")
    if int8 < 0.9999:
        assert len(qtable) > 0 and mix > int8
    assert 0.99 < int8 < 1.0 and 0.99 < mix <= 1.0
    assert np.isfinite([int8, mix]).all()
