"""model_transform.py and model_runner.py: the tutorial step verbatim, the self-check, bad input."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys

import numpy as np
import onnx
import pytest
from tpushell.core.graph.mlir import read_mlir
from tpushell.core.graph.onnx_reference import run_onnxruntime

from tpushell.tools import model_runner, model_transform

TUTORIAL = ("--model_name yolov3_tiny --model_def ../tiny-yolov3-11.onnx --input_shapes [[1,3,416,416]] "
            "--scale 0.0039216,0.0039216,0.0039216 --pixel_format rgb --keep_aspect_ratio "
            "--pad_value 128 --output_names=transpose_output1,transpose_output --mlir yolov3_tiny.mlir")


@pytest.fixture
def tutorial_dir(tmp_path, zoo):
    """The tutorial's layout: yolov3_tiny/{tiny-yolov3-11.onnx, COCO2017} and workspace/."""
    (tmp_path / "tiny-yolov3-11.onnx").symlink_to(zoo / "yolov3-tiny" / "tiny-yolov3-11.onnx")
    (tmp_path / "COCO2017").symlink_to(zoo / "COCO2017")
    work = tmp_path / "workspace"
    work.mkdir()
    return work


def run_cli(cwd, args: str) -> subprocess.CompletedProcess:
    """Run a console script through bash, as a user types it."""
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ["PATH"])
    return subprocess.run(["bash", "-c", args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.zoo
def test_tutorial_step_verbatim_with_self_check(tutorial_dir, golden_input):
    done = run_cli(tutorial_dir, "model_transform.py " + TUTORIAL +
                   " --test_input ../COCO2017/000000366711.jpg")
    assert done.returncode == 0, done.stderr
    assert "npz compare PASSED" in done.stdout
    graph = read_mlir(tutorial_dir / "yolov3_tiny.mlir")
    counts = graph.summary()
    assert len(graph.nodes) + len(graph.inputs) == 35
    assert counts == {"Conv": 13, "LeakyRelu": 11, "MaxPool": 6, "Upsample": 1, "Concat": 1,
                      "Permute": 2}
    for name in ("yolov3_tiny_top_f32_all_weight.npz", "yolov3_tiny_in_f32.npz",
                 "yolov3_tiny_ref_outputs.npz", "yolov3_tiny_top_outputs.npz"):
        assert (tutorial_dir / name).is_file(), name
    # The self-check's input is the reference's own preprocessed tutorial image.
    x = np.load(tutorial_dir / "yolov3_tiny_in_f32.npz")["input_1"]
    assert np.abs(x - golden_input).max() <= 1 / 255 + 1e-6


@pytest.mark.zoo
def test_model_runner_reproduces_onnxruntime_on_every_tensor(tutorial_dir, golden, yolo_onnx):
    assert model_transform.main(shlex.split(TUTORIAL.replace("../tiny-yolov3-11.onnx", str(yolo_onnx))
                                            .replace("yolov3_tiny.mlir", str(tutorial_dir / "m.mlir")))) == 0
    out = tutorial_dir / "all.npz"
    assert model_runner.main(["--input", str(golden / "000000366711_input.npz"), "--model",
                              str(tutorial_dir / "m.mlir"), "--output", str(out),
                              "--dump_all_tensors"]) == 0
    ours = dict(np.load(out))
    graph = read_mlir(tutorial_dir / "m.mlir")
    ref = run_onnxruntime(yolo_onnx, {"input_1": ours["input_1"]}, graph.meta["onnx_names"])
    assert set(ref) == set(graph.tensor_names())
    for name, r in ref.items():
        a, b = ours[name].astype(np.float64).ravel(), r.astype(np.float64).ravel()
        cos = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
        assert cos >= 0.99999, name
        assert np.abs(a - b).max() <= 1e-4 * np.abs(b).max(), name


def _unsupported_model(path):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    nodes = [onnx.helper.make_node("Relu", ["x"], ["a"], name="r"),
             onnx.helper.make_node("Selu", ["a"], ["b"], name="s1"),
             onnx.helper.make_node("Celu", ["b"], ["y"], name="c1")]
    model = onnx.helper.make_model(onnx.helper.make_graph(nodes, "g", [x], [y]),
                                   opset_imports=[onnx.helper.make_opsetid("", 13)])
    onnx.save(model, path)


@pytest.mark.parametrize("args, message", [
    ("--model_def missing.onnx", "model file not found: missing.onnx"),
    ("--model_def notonnx.onnx", "is not a readable ONNX model"),
    ("--model_def unsupported.onnx", "unsupported op types: Celu (c1); Selu (s1)"),
    ("--model_def model.onnx --input_shapes [[1,3,416]]", "--input_shapes [1, 3, 416] does not fit"),
    ("--model_def model.onnx --input_shapes [[1,x]]", "--input_shapes '[[1,x]]' is not a list"),
    ("--model_def model.onnx --output_names nope", "--output_names: no tensor 'nope'"),
    ("--model_def model.txt", "unknown model kind '.txt'"),
])
def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, args, message):
    (tmp_path / "notonnx.onnx").write_text("this is not a model")
    (tmp_path / "model.txt").write_text("")
    _unsupported_model(tmp_path / "unsupported.onnx")
    _unsupported_model(tmp_path / "model.onnx")
    m = onnx.load(tmp_path / "model.onnx")
    del m.graph.node[1:]
    m.graph.node[0].output[0] = "y"
    onnx.save(m, tmp_path / "model.onnx")
    before = set(os.listdir(tmp_path))
    done = run_cli(tmp_path, f"model_transform.py --model_name m --mlir m.mlir {args}")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr
    assert set(os.listdir(tmp_path)) == before


@pytest.mark.zoo
def test_darknet_model_def_is_self_checked_against_its_onnx_twin(tmp_path, zoo):
    cfg = zoo / "yolov3-tiny" / "yolov3-tiny.cfg"
    done = run_cli(tmp_path, f"model_transform.py --model_name dn --model_def {cfg} "
                   f"--model_data {cfg.with_suffix('.weights')} --scale 0.0039216 --pixel_format rgb "
                   f"--keep_aspect_ratio --pad_value 128 --mlir dn.mlir "
                   f"--test_input {zoo / 'COCO2017' / '000000366711.jpg'}")
    assert done.returncode == 0, done.stderr
    assert "npz compare PASSED" in done.stdout and (tmp_path / "dn_ref_outputs.npz").is_file()
