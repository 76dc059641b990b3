"""run_qtable.py: the tutorial's command on the real model, the printed lines, the files it
writes, both searches, and bad input (clear errors, nothing written)."""
from __future__ import annotations

import re

import numpy as np
import pytest
from searchkit import fragile_onnx, max_table, samples
from tpushell.core.calibration.tables import (
    CalibrationTable,
    CalRow,
    read_loss_table,
    read_qtable,
    write_calibration_table,
)
from tpushell.core.graph.onnx_import import import_onnx

from tpushell.tools.run_qtable import main

TRUE_TARGET = 0.999


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The fragile tiny model, its calibration table and a folder of 10 npy samples."""
    root = tmp_path_factory.mktemp("run_qtable")
    model = fragile_onnx(root / "fragile.onnx")
    graph = import_onnx(model, name="fragile")
    write_calibration_table(root / "cali_table", max_table(graph, samples(graph, 20, seed=5)))
    data = root / "data"
    data.mkdir()
    for i, x in enumerate(samples(graph, 10, seed=7)["x"]):
        np.save(data / f"{i}.npy", x)
    (root / "empty").mkdir()
    other = CalibrationTable({f"other_{i}": CalRow(1.0, -1.0, 1.0) for i in range(9)})
    write_calibration_table(root / "other_table", other)
    return root


def run(tiny, tmp_path, *extra, expected=0.5 + 0.5 * TRUE_TARGET, min_layer=0.995):
    return main([str(tiny / "fragile.onnx"), "--dataset", str(tiny / "data"),
                 "--calibration_table", str(tiny / "cali_table"), "--chip", "bm1684x",
                 "--expected_cos", str(expected), "--min_layer_cos", str(min_layer),
                 "--loss_table", str(tmp_path / "loss.txt"), "-o", str(tmp_path / "qtable"),
                 *extra])


def test_reference_search_prints_the_reference_lines(tiny, tmp_path, capsys):
    assert run(tiny, tmp_path, "--input_num", "6") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert re.match(r"No\.0   : Layer: f_Conv\s+Cos: 0\.\d{6}$", lines[0])
    int8 = float(re.search(r"^int8 outputs_cos:(\S+) old$", out, re.M).group(1))
    mix = float(re.search(r"^mix model outputs_cos:(\S+)$", out, re.M).group(1))
    assert int8 < 0.8 and mix > 0.5 + 0.5 * TRUE_TARGET
    assert re.search(r"^true cosine: int8 0\.\d+, mix 0\.99\d+, target 0\.999000; 2 F16 layer\(s\); "
                     r"6 sample\(s\); reference search: target reached$", out, re.M)
    assert f"Output mix quantization table to {tmp_path / 'qtable'}" in lines
    assert re.match(r"total time:\d+ second$", lines[-1])
    q = read_qtable(tmp_path / "qtable")
    assert q.modes == {"f_Conv": "F16", "f_l_LeakyRelu": "F16"}
    assert "# sample number: 6" in (tmp_path / "qtable").read_text()
    loss = read_loss_table(tmp_path / "loss.txt")
    assert len(loss) == 7 and loss.rows[0].layer == "f_Conv" and loss.sample_number == 6


def test_greedy_search(tiny, tmp_path, capsys):
    assert run(tiny, tmp_path, "--search", "greedy", "--time_budget", "60") == 0
    out = capsys.readouterr().out
    assert "1 F16 layer(s); 10 sample(s); greedy search: target reached" in out
    assert re.search(r"^curve \(float layers: output cos, 0.5\+0.5\*cos\): 0: 0\.\d+, ", out, re.M)
    assert read_qtable(tmp_path / "qtable").modes == {"f_Conv": "F16"}
    assert run(tiny, tmp_path, "--search", "greedy", "--max_float_layers", "1",
               expected=0.99999999) == 0
    assert read_qtable(tmp_path / "qtable").modes == {"f_Conv": "F16"}
    assert run(tiny, tmp_path, "--max_float_layers", "1", min_layer=0.99999999) == 0
    assert "stopped: more than 1 float layers" in capsys.readouterr().out


def test_int8_good_enough_still_writes_an_empty_qtable(tiny, tmp_path, capsys):
    assert run(tiny, tmp_path, expected=0.55) == 0
    out = capsys.readouterr().out
    assert "INT8 already meets --expected_cos 0.55: no layer needs float" in out
    assert len(read_qtable(tmp_path / "qtable")) == 0
    assert len(read_loss_table(tmp_path / "loss.txt")) == 7


@pytest.mark.parametrize("change, message", [
    ({"expected": 1.5}, r"--expected_cos 1.5 is outside \(0, 1\]"),
    ({"min_layer": 0}, r"--min_layer_cos 0.0 is outside \(0, 1\]"),
    ({"extra": ["--calibration_table", "{tiny}/other_table"]},
     r"other_table is for another model: 0 of its 9 rows name a tensor of model 'fragile'"),
    ({"extra": ["--dataset", "{tiny}/empty"]}, r"holds no samples"),
    ({"extra": ["--dataset", "{tiny}/nowhere"]}, r"dataset folder not found"),
    ({"extra": ["--input_num", "0"]}, r"--input_num 0 is not valid"),
    ({"extra": ["--global_compare_layers", "f_Con"]}, r"--global_compare_layers: no layer .f_Con.*did you mean f_Conv"),
    ({"extra": ["--time_budget", "-1"]}, r"--time_budget -1.0 must be a positive"),
])
def test_bad_input_writes_nothing(tiny, tmp_path, capsys, change, message):
    extra = [a.format(tiny=tiny) for a in change.get("extra", [])]
    kw = {k: v for k, v in change.items() if k != "extra"}
    assert run(tiny, tmp_path, *extra, **kw) == 1
    assert re.search("error: .*" + message, capsys.readouterr().err)
    assert not (tmp_path / "qtable").exists() and not (tmp_path / "loss.txt").exists()


@pytest.mark.zoo
def test_tutorial_step(zoo, golden, tmp_path, capsys, monkeypatch):
    """The tutorial's run_qtable command (with 3 samples to stay fast), then deploy of the
    mixed model with the qtable it wrote."""
    from tpushell.tools.model_transform import main as transform
    work = tmp_path / "workspace"
    work.mkdir()
    (tmp_path / "COCO2017").symlink_to(zoo / "COCO2017")
    monkeypatch.chdir(work)
    assert transform(["--model_name", "yolov3_tiny", "--model_def",
                      str(zoo / "yolov3-tiny" / "tiny-yolov3-11.onnx"),
                      "--input_shapes", "[[1,3,416,416]]", "--scale", "0.0039216,0.0039216,0.0039216",
                      "--pixel_format", "rgb", "--keep_aspect_ratio", "--pad_value", "128",
                      "--output_names=transpose_output1,transpose_output",
                      "--mlir", "yolov3_tiny.mlir"]) == 0
    (work / "yolov3_cali_table").write_text((golden / "tpumlir_cali_table").read_text())
    argv = ("yolov3_tiny.mlir --dataset ../COCO2017 --calibration_table yolov3_cali_table "
            "--min_layer_cos 0.999 --expected_cos 0.9999 --chip bm1684x -o yolov3_qtable").split()
    assert main(argv + ["--input_num", "3"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^int8 outputs_cos:0\.999\d+ old$", out, re.M)
    assert "Output mix quantization table to yolov3_qtable" in out
    q = read_qtable(work / "yolov3_qtable")
    assert len(q) > 0 and set(q.modes.values()) == {"F16"}
    assert len(read_loss_table(work / "full_loss_table.txt")) > 0
