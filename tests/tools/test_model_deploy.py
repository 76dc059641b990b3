"""model_deploy.py on the real model: the tutorial step verbatim, validation, the QDQ ONNX,
model_runner on the deployed file, and bad input (clear errors, nothing written)."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
from tpushell.core.graph.mlir import write_mlir
from tpushell.core.metrics import cosine
from tpushell.core.quant.deploy import load_deployed

from tpushell.tools import model_deploy, model_runner

pytestmark = pytest.mark.zoo

TUTORIAL = ("--mlir yolov3_tiny.mlir --quantize INT8 --calibration_table yolov3_cali_table "
            "--chip bm1684x --model yolov3_int8.bmodel")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, yolo_graph, golden):
    """The tutorial's workspace after steps 1-2: yolov3_tiny.mlir and yolov3_cali_table."""
    work = tmp_path_factory.mktemp("workspace")
    graph = yolo_graph.copy()
    from tpushell.core.graph.loader import make_preprocess
    graph.preprocess = make_preprocess(graph, dict(scale=[0.0039216] * 3, pixel_format="rgb",
                                                   keep_aspect_ratio=True, pad_value=128))
    write_mlir(graph, work / "yolov3_tiny.mlir")
    (work / "yolov3_cali_table").write_text((golden / "tpumlir_cali_table").read_text())
    (work / "yolov3_qtable").write_text((golden / "tpumlir_qtable").read_text())
    return work


def deploy_in(work, args: str) -> int:
    cwd = os.getcwd()
    os.chdir(work)
    try:
        return model_deploy.main(shlex.split(args))
    finally:
        os.chdir(cwd)


def test_tutorial_step_verbatim(workspace, golden):
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ["PATH"])
    done = subprocess.run(["bash", "-c", "model_deploy.py " + TUTORIAL], cwd=workspace, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "wrote yolov3_int8.bmodel" in done.stdout and "not a Sophgo binary" in done.stdout
    model = load_deployed(workspace / "yolov3_int8.bmodel")
    assert set(model.plan.op_modes.values()) == {"INT8"}
    # The deployed file run by model_runner reproduces the reference's bm1684x dump exactly.
    out = workspace / "runner_int8.npz"
    assert model_runner.main(["--input", str(golden / "000000366711_input.npz"), "--model",
                              str(workspace / "yolov3_int8.bmodel"), "--output", str(out),
                              "--dump_all_tensors"]) == 0
    ours = np.load(out)
    with np.load(golden / "000000366711_int8_bm1684x.npz") as gold:
        assert all(np.array_equal(ours[k], gold[k]) for k in gold.files)


def test_mixed_with_validation_of_every_tensor(workspace, zoo, capsys):
    image = zoo / "COCO2017" / "000000366711.jpg"
    rc = deploy_in(workspace, "--mlir yolov3_tiny.mlir --quantize INT8 --calibration_table "
                   "yolov3_cali_table --quantize_table yolov3_qtable --chip bm1684x --model "
                   f"yolov3_mix.bmodel --test_input {image} --compare_all")
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "34 compared\n34 passed" in out and "npz compare PASSED." in out
    assert load_deployed(workspace / "yolov3_mix.bmodel").plan.float_ops() == {
        "conv1_leaky_LeakyRelu": "F16", "pool5_MaxPool": "F16", "conv3_Conv": "F16",
        "conv3_leaky_LeakyRelu": "F16", "pool7_MaxPool": "F16", "conv4_Conv": "F16"}
    for f in ("yolov3_tiny_top_outputs.npz", "yolov3_tiny_bm1684x_int8_sym_tpu_outputs.npz",
              "yolov3_tiny_bm1684x_int8_sym_model_outputs.npz"):
        assert (workspace / f).is_file()


def test_qdq_onnx_runs_in_onnxruntime_and_agrees(workspace, golden, golden_input):
    import onnxruntime as ort
    assert deploy_in(workspace, TUTORIAL.replace("yolov3_int8.bmodel", "yolov3_int8.onnx")) == 0
    sess = ort.InferenceSession(str(workspace / "yolov3_int8.onnx"),
                                providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, {"input_1": golden_input})))
    ours = load_deployed(workspace / "yolov3_int8.bmodel").run({"input_1": golden_input})
    for name in ours:
        assert cosine(got[name], ours[name]) >= 0.999, name


BAD = [
    ("--quantize_table bad_qtable", "bad_qtable:2: no op 'conv3_Cnv' in model 'yolov3_tiny' "
                                    "(did you mean conv3_Conv"),
    ("--quantize_table yolov3_qtable --chip bm1684", "yolov3_qtable:14: chip bm1684 has no F16; "
                                                     "it runs INT8, F32"),
    ("--calibration_table partial_table", "partial_table has no row for 2 tensor(s) the INT8 plan "
                                          "needs: conv5_Conv (needed by conv5_Conv); conv9_Conv"),
    ("--calibration_table other_table", "does not match model 'yolov3_tiny': it has rows for 0"),
    ("--calibration_table missing_table", "calibration table not found: missing_table"),
    ("--quantize F16 --chip cv183x", "--quantize: chip cv183x has no F16; it runs INT8, BF16"),
]


@pytest.mark.parametrize("extra,message", BAD)
def test_bad_input_is_a_clear_error_and_writes_nothing(workspace, capsys, extra, message):
    (workspace / "bad_qtable").write_text("conv1_Conv F16\nconv3_Cnv F16\n")
    rows = (workspace / "yolov3_cali_table").read_text().splitlines()
    (workspace / "partial_table").write_text("\n".join(
        r for r in rows if not r.startswith(("conv5_Conv ", "conv9_Conv "))) + "\n")
    (workspace / "other_table").write_text("".join(
        f"layer{i}_Conv 1.0 -1.0 1.0\n" for i in range(30)))
    before = set(os.listdir(workspace))
    args = TUTORIAL.replace("yolov3_int8.bmodel", "bad.bmodel") + " " + extra  # last one wins
    assert deploy_in(workspace, args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert set(os.listdir(workspace)) == before


def test_int8_without_a_table_is_an_error(workspace, capsys):
    assert deploy_in(workspace, "--mlir yolov3_tiny.mlir --quantize INT8 --chip bm1684x "
                                "--model x.bmodel") == 1
    assert "INT8 has INT8 ops and needs --calibration_table" in capsys.readouterr().err
    assert not (workspace / "x.bmodel").exists()
