"""detect_yolov3.py: the tutorial's command verbatim, directories, and bad input."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from tpushell.tools.detect_yolov3 import main


def test_single_image(tiny_yolo, photo, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert main(["--model", str(tiny_yolo), "--input", str(photo), "--output", str(out),
                 "--score_thres", "0.3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(" box " in line and "%" in line for line in lines)
    assert Image.open(out).size == (128, 96)
    assert main(["--model", str(tiny_yolo), "--input", str(photo), "--output", str(out),
                 "--score_thres", "1"]) == 0
    assert capsys.readouterr().out == "No object was detected\n"


def test_directory(tiny_yolo, photo, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(photo, images / "a.jpg")
    Image.open(photo).save(images / "b.png")
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "results"
    assert main(["--model", str(tiny_yolo), "--input", str(images), "--output", str(out),
                 "--score_thres", "0.3"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("a.jpg:\n") and "\nb.png:\n" in printed
    assert sorted(os.listdir(out)) == ["a.jpg", "b.png", "tiny_yolo_image_dir_result"]
    summary = (out / "tiny_yolo_image_dir_result").read_text().splitlines()
    assert [s.split(":")[0] for s in summary] == ["a.jpg", "b.png"] and "%" in summary[0]


@pytest.mark.parametrize("args, message", [
    (["--input", "{bad}", "--output", "{tmp}/o.jpg"], "error: cannot read image .*broken.jpg"),
    (["--input", "{tmp}/none.jpg", "--output", "{tmp}/o.jpg"], "error: --input not found"),
    (["--input", "{photo}", "--output", "{tmp}/o.gif"], "error: cannot write image .*'.gif'"),
    (["--input", "{photo}", "--output", "{tmp}/o.jpg", "--net_input_dims", "416"],
     "error: --net_input_dims '416' needs two positive whole numbers"),
    (["--input", "{photo}", "--output", "{tmp}/o.jpg", "--fuse_preprocess"],
     "error: --fuse_preprocess is not available"),
    (["--input", "{tmp}", "--output", "{photo}"], "error: --input is a directory, so --output "
                                                  "must be one"),
])
def test_bad_input(tiny_yolo, photo, tmp_path, capsys, args, message):
    import re
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    argv = ["--model", str(tiny_yolo)] + [a.format(bad=bad, tmp=tmp_path, photo=photo) for a in args]
    assert main(argv) == 1
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "o.jpg").exists() and not (tmp_path / "o.gif").exists()


@pytest.mark.zoo
def test_tutorial_command_verbatim(zoo, tmp_path):
    """The tutorial's `detect_yolov3.py` step, run as a console script from a workspace folder."""
    work = tmp_path / "yolov3_tiny" / "workspace"
    work.mkdir(parents=True)
    os.symlink(zoo / "yolov3-tiny" / "tiny-yolov3-11.onnx", work.parent / "tiny-yolov3-11.onnx")
    os.symlink(zoo / "COCO2017", work.parent / "COCO2017")
    script = os.path.join(os.path.dirname(sys.executable), "detect_yolov3.py")
    done = subprocess.run([script, "--model", "../tiny-yolov3-11.onnx", "--input",
                           "../COCO2017/000000366711.jpg", "--output", "yolov3_onnx.jpg"],
                          cwd=work, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["orange:79.1% box 272,244,335,305",
                                        "person:67.5% box 35,104,271,316"]
    assert Image.open(work / "yolov3_onnx.jpg").size == (427, 640)


@pytest.mark.zoo
def test_tutorial_int8_step_with_a_deployed_model(zoo, golden, tmp_path, monkeypatch, capsys):
    """Tutorial 'Step 4: Run model': detect_yolov3.py on the deployed INT8 model (deployed here
    from the reference's calibration table), as the chip computes it."""
    from tpushell.core import Session
    from tpushell.core.calibration.tables import read_calibration_table
    s = Session()
    s.load(zoo / "yolov3-tiny" / "tiny-yolov3-11.onnx", input_shapes=[[1, 3, 416, 416]],
           output_names=["transpose_output1", "transpose_output"], scale=[0.0039216] * 3,
           pixel_format="rgb", keep_aspect_ratio=True, pad_value=128)
    s.calibration = read_calibration_table(golden / "tpumlir_cali_table")
    s.deploy(tmp_path / "yolov3_int8.bmodel", quantize="INT8")
    monkeypatch.chdir(tmp_path)
    assert main(["--model", "yolov3_int8.bmodel", "--input",
                 str(zoo / "COCO2017" / "000000366711.jpg"), "--output", "yolov3_int8.jpg"]) == 0
    # the boxes decoded from the reference's own INT8 heads (golden dump) are the same
    assert capsys.readouterr().out.splitlines() == ["orange:76.1% box 269,245,339,305",
                                                    "person:64.9% box 23,106,279,318"]
    assert Image.open(tmp_path / "yolov3_int8.jpg").size == (427, 640)
