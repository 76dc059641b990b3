"""The whole workbench on the shared real models beyond tiny-YOLOv3, as a user drives it: a shell
script on MobileNetV3 (load, the reference's table, cos, set_precision by op type and by a raw
ONNX name, undo, search, deploy to a model file and to QDQ ONNX, save/open) and YOLOv8n
detection, plus the same steps through the Python API on all three models."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tpushell.core import Session
from tpushell.core.metrics import cosine

pytestmark = [pytest.mark.zoo, pytest.mark.slow]

MODELS = {
    "ppocr_cls_mv3": ("[[1,3,48,192]]", "--mean 127.5,127.5,127.5 --scale 0.0078431,0.0078431,0.0078431 "
                      "--pixel_format bgr", "HardSwish"),
    "nudenet_yolov8n_320": ("[[1,3,320,320]]", "--scale 0.0039216,0.0039216,0.0039216 --pixel_format rgb "
                            "--keep_aspect_ratio --pad_value 114", "SiLU"),
    "ppocrv4_rec": ("[[1,3,48,320]]", "--mean 127.5,127.5,127.5 --scale 0.0078431,0.0078431,0.0078431 "
                    "--pixel_format bgr", "HardSwish"),
}
# NudeNet 3.4's 18 labels, in its output order.
NUDENET = ("FEMALE_GENITALIA_COVERED FACE_FEMALE BUTTOCKS_EXPOSED FEMALE_BREAST_EXPOSED "
           "FEMALE_GENITALIA_EXPOSED MALE_BREAST_EXPOSED ANUS_EXPOSED FEET_EXPOSED BELLY_COVERED "
           "FEET_COVERED ARMPITS_COVERED ARMPITS_EXPOSED FACE_MALE BELLY_EXPOSED "
           "MALE_GENITALIA_EXPOSED ANUS_COVERED FEMALE_BREAST_COVERED BUTTOCKS_COVERED").split()
IMAGE = "../shared/zoo/COCO2017/000000000632.jpg"


def load_line(model: str) -> str:
    shapes, pre, _ = MODELS[model]
    return (f"load ../shared/zoo/{model}/{model}.onnx --model_name {model} --input_shapes {shapes} "
            f"{pre}")


@pytest.fixture
def work(tmp_path, shared) -> Path:
    (tmp_path / "shared").symlink_to(shared)
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


def tpushell_script(work: Path, lines: list[str]) -> str:
    (work / "s.tps").write_text("\n".join(lines) + "\n")
    done = subprocess.run([sys.executable, "-m", "tpushell", "--script", "s.tps"], cwd=work,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TPUSHELL_HISTORY=""))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "warning" not in done.stdout.lower() + done.stderr.lower()
    return done.stdout


def output_cos(out: str) -> list[float]:
    return [float(v) for v in re.findall(r"^output \S+ ([0-9.]+)$", out, re.M)]


def test_mobilenet_v3_in_the_shell(work):
    out = tpushell_script(work, [
        load_line("ppocr_cls_mv3"), "layers HardSwish",
        "calibrate --table ../shared/golden/ppocr_cls_mv3/ppocr_cls_mv3_cali_table",
        "data ../shared/zoo/COCO2017", "set samples 4", "cos",
        "set_precision HardSwish F16", "cos", "undo",
        "set_precision Clip@1_Clip F16",       # a raw ONNX name inside a fused HardSwish
        "qtable search --expected_cos 0.999",
        f"deploy mv3.bmodel --quantize INT8 --test_input {IMAGE}", "cos",
        f"deploy mv3.onnx --quantize INT8 --test_input {IMAGE}",
        "save mv3.tpw", "open mv3.tpw", "cos"])
    assert "18 layer(s) changed" in out and "hardswish_1.tmp_0_HardSwish INT8 -> F16" in out
    int8, hswish_f16, after_search, reopened = output_cos(out)
    assert 0.98 < int8 < hswish_f16 and after_search == reopened
    assert "wrote mv3.bmodel" in out and "wrote mv3.onnx: QDQ ONNX" in out
    # The QDQ ONNX run by onnxruntime against our simulation of the same plan.
    prefix = "ppocr_cls_mv3_bm1684x_int8_sym"
    qdq = np.load(work / f"{prefix}_model_outputs.npz")
    sim = np.load(work / f"{prefix}_tpu_outputs.npz")
    for name in sim.files:
        assert cosine(qdq[name], sim[name]) >= 0.999, name


def test_yolov8n_detection_in_the_shell(work):
    (work / "nudenet.names").write_text("\n".join(NUDENET) + "\n")
    image = "../shared/zoo/COCO2017/000000009400.jpg"
    out = tpushell_script(work, [
        load_line("nudenet_yolov8n_320"),
        "calibrate --table ../shared/golden/nudenet_yolov8n_320/nudenet_yolov8n_320_cali_table",
        "set_precision SiLU F16", "undo",
        f"detect {image} --class_names nudenet.names -o f32.jpg",
        f"detect {image} --class_names nudenet.names --compare f32,int8 -o compare.png"])
    assert "set SiLU F16: 57 layer(s) changed" in out
    assert re.search(r"F32 on 000000009400.jpg: \d+ object\(s\)", out) and "FACE_" in out
    assert (work / "f32.jpg").stat().st_size > 0 and (work / "compare.png").stat().st_size > 0


PADDLE = dict(mean=[127.5] * 3, scale=[0.0078431] * 3, pixel_format="bgr")
PYTHON = {"ppocr_cls_mv3": ([[1, 3, 48, 192]], PADDLE),
          "nudenet_yolov8n_320": ([[1, 3, 320, 320]], dict(scale=[0.0039216] * 3, pixel_format="rgb",
                                                           keep_aspect_ratio=True, pad_value=114)),
          "ppocrv4_rec": ([[1, 3, 48, 320]], PADDLE)}


def api_session(shared, model: str, samples: int) -> Session:
    """A Python-API session on a shared model with the reference's table and COCO samples."""
    shapes, preprocess = PYTHON[model]
    s = Session()
    s.load(shared / "zoo" / model / f"{model}.onnx", name=model, input_shapes=shapes, **preprocess)
    s.load_calibration(shared / "golden" / model / f"{model}_cali_table")
    s.settings.set("samples", samples)
    s.use_data(shared / "zoo" / "COCO2017")
    return s


@pytest.mark.parametrize("model", list(MODELS))
def test_python_api_on_each_model(model, shared, tmp_path):
    s = api_session(shared, model, 2)
    int8 = s.check().outputs
    edit = s.set_precision(MODELS[model][2], "F16")
    assert edit.changed and all(v == ("INT8", "F16") for v in edit.changed.values())
    s.undo()
    assert s.check().outputs == int8
    # All-INT8 YOLOv8n and SVTR are below model_deploy's INT8 tolerance (the reference's own INT8
    # reaches 0.777 and 0.962): this checks the written file, not the quantization.
    result = s.deploy(tmp_path / f"{model}.onnx", tolerance=(0.7, -1.0),
                      test_input=str(shared / "golden" / model / f"{model}_in.npz"))
    assert result.correctness.passed
    qdq = np.load(next(f for f in result.files if f.endswith("_model_outputs.npz")))
    sim = np.load(result.tpu_file)
    for name in s.model.outputs:      # onnxruntime on the QDQ file against our simulation
        assert cosine(qdq[name], sim[name]) >= 0.999, name


def test_own_errors_of_every_svtr_layer_including_the_split_qkv_matmul(shared):
    """The sensitivity search ranks by each layer's own error; SVTR's lowering inserts slices of
    the split QKV MatMul and their reshapes, whose inputs have no F32 value of their own."""
    from tpushell.core.quant.chips import resolve_fp_type
    s = api_session(shared, "ppocrv4_rec", 1)
    ev, lw = s.evaluator(), s.lowerer()
    ev.set_plan(lw.plan("INT8", None, resolve_fp_type(lw.chip, s.settings.fp_type)))
    ops = [op for op in s.model.op_names if ev.plan.op_modes.get(op) == "INT8"]
    own = {op: float(ev.own_cos(op).mean()) for op in ops}
    assert any("permute_for" in op for op in ops)          # the inserted ops are among them
    assert all(-1.0 <= c <= 1.0 for c in own.values()) and min(own.values()) < 0.9999
