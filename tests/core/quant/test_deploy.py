"""The model container (write, read back, run), deploy's validation, and the QDQ ONNX export."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import onnx
import pytest
from tiny_quant import max_table, samples, yolo_like
from tpushell.core.calibration.tables import QTable
from tpushell.core.errors import InputFileError
from tpushell.core.metrics import cosine
from tpushell.core.quant.deploy import (
    VERSION,
    ValidationError,
    deploy,
    is_deployed_model,
    load_deployed,
    write_model,
)
from tpushell.core.quant.lowering import Lowerer
from tpushell.core.quant.qdq_export import qdq_model, run_qdq, write_qdq
from tpushell.core.quant.simulate import simulate


@pytest.fixture(scope="module")
def lw():
    g = yolo_like()
    return Lowerer(g, max_table(g, samples(8)))


PLANS = {"int8": ("INT8", None), "mixed": ("INT8", {"c2_Conv": "F16", "l2_LeakyRelu": "BF16"}),
         "f16": ("F16", None), "bf16": ("BF16", None), "f32": ("F32", None)}


def make_plan(lw, which):
    mode, q = PLANS[which]
    return lw.plan(mode, QTable(q) if q else None)


@pytest.mark.parametrize("which", list(PLANS))
def test_written_model_runs_exactly_as_the_plan(lw, tmp_path, which):
    plan = make_plan(lw, which)
    path = tmp_path / "m.bmodel"
    write_model(plan, path)
    assert is_deployed_model(path)
    model = load_deployed(path)
    x = samples(2, seed=3)
    ours = model.run({"input_1": x}, keep_all=True, codes=True)
    ref = simulate(plan, {"input_1": x}, keep_all=True, codes=True)
    assert set(ours) == set(ref)
    for t in ref:
        assert ours[t].dtype == ref[t].dtype and np.array_equal(ours[t], ref[t]), t
    assert model.plan.op_modes == plan.op_modes and model.graph.outputs == plan.outputs


def test_manifest_is_documented_json_with_integer_weights(lw, tmp_path):
    path = tmp_path / "m.tpsm"
    write_model(make_plan(lw, "int8"), path)
    with zipfile.ZipFile(path) as z:
        doc = json.loads(z.read("manifest.json"))
        conv = next(s for s in doc["steps"] if s["name"] == "c1_Conv")
        codes = np.load(z.open(conv["params"]["weight_codes"]["$array"]))
    assert doc["format"] == "tpushell-model" and doc["version"] == VERSION
    assert doc["target"] == {"chip": "bm1684x", "mode": "INT8", "fp_type": "F16", "asymmetric": False}
    assert "not a Sophgo" in doc["note"]
    assert conv["kind"] == "conv" and conv["slots"] == [] and codes.dtype == np.int8
    assert doc["tensors"]["input_1c1_Conv_ui8"]["kind"] == "uint8"


def test_bad_model_files(lw, tmp_path):
    junk = tmp_path / "junk.bmodel"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(InputFileError, match="not a tpushell model file.*not Sophgo binaries"):
        load_deployed(junk)
    with pytest.raises(InputFileError, match="not found"):
        load_deployed(tmp_path / "missing.bmodel")
    newer = tmp_path / "newer.bmodel"
    with zipfile.ZipFile(newer, "w") as z:
        z.writestr("manifest.json", json.dumps({"format": "tpushell-model", "version": VERSION + 1}))
    with pytest.raises(InputFileError, match="newer than this tpushell reads"):
        load_deployed(newer)


def write_test_input(tmp_path, x):
    p = tmp_path / "in.npz"
    np.savez(p, input_1=x)
    return str(p)


def test_deploy_validates_then_writes_and_checks_the_file(lw, tmp_path):
    plan = make_plan(lw, "mixed")
    path = tmp_path / "tiny_mix.bmodel"
    result = deploy(plan, path, test_input=write_test_input(tmp_path, samples(1, seed=6)),
                    compare_all=True)
    assert path.is_file() and result.report.passed and result.correctness.passed
    assert result.correctness.count("EQUAL") == len(result.correctness.results)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["in.npz", "tiny_mix.bmodel", "yolo_like_bm1684x_int8_sym_model_outputs.npz",
                     "yolo_like_bm1684x_int8_sym_tpu_outputs.npz", "yolo_like_top_outputs.npz"]
    assert "c1_Conv" in {r.name for r in result.report.results}


def test_failed_validation_writes_no_model_and_keeps_an_old_one(lw, tmp_path):
    path = tmp_path / "m.bmodel"
    path.write_bytes(b"old")
    with pytest.raises(ValidationError, match="m.bmodel was not written") as e:
        deploy(make_plan(lw, "int8"), path, test_input=write_test_input(tmp_path, samples(1)),
               tolerance=(0.999999, 0.999999))
    assert not e.value.report.passed
    assert path.read_bytes() == b"old"


@pytest.mark.parametrize("which", ["int8", "mixed", "f16", "bf16"])
def test_qdq_onnx_is_valid_and_agrees_with_the_simulator(lw, tmp_path, which):
    plan = make_plan(lw, which)
    path = tmp_path / "m.onnx"
    model = write_qdq(plan, path)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    ops = {n.op_type for n in model.graph.node}
    if which in ("int8", "mixed"):
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    if which in ("f16", "mixed"):
        assert any(n.op_type == "Cast" and n.attribute[0].i == onnx.TensorProto.FLOAT16
                   for n in model.graph.node)
    x = samples(3, seed=12)
    ort = run_qdq(path, {"input_1": x}, plan, keep_all=True)
    ours = simulate(plan, {"input_1": x}, keep_all=True)
    assert cosine(ort["out_Transpose"], ours["out_Transpose"]) >= 0.999
    for t in ours:   # every tensor agrees closely, by name
        assert cosine(ort[t], ours[t]) > 0.99, t


def test_deploy_onnx_checks_it_with_onnxruntime(lw, tmp_path):
    result = deploy(make_plan(lw, "int8"), tmp_path / "m.onnx",
                    test_input=write_test_input(tmp_path, samples(1, seed=2)))
    assert result.correctness.passed and (tmp_path / "m.onnx").is_file()
    assert qdq_model(make_plan(lw, "int8")).graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


def test_asymmetric_plan_deploys_and_exports(tmp_path):
    g = yolo_like()
    plan = Lowerer(g, max_table(g, samples(8)), asymmetric=True).plan("INT8")
    x = samples(2, seed=31)
    ours = simulate(plan, {"input_1": x}, keep_all=True)
    result = deploy(plan, tmp_path / "asym.bmodel", test_input=write_test_input(tmp_path, x[:1]))
    assert result.correctness.passed and "int8_asym" in result.tpu_file
    back = load_deployed(tmp_path / "asym.bmodel")
    assert back.plan.asymmetric and all(
        np.array_equal(v, ours[t]) for t, v in back.run({"input_1": x}, keep_all=True).items())
    write_qdq(plan, tmp_path / "asym.onnx")
    ort = run_qdq(tmp_path / "asym.onnx", {"input_1": x}, plan, keep_all=True)
    for t in ours:
        assert cosine(ort[t], ours[t]) > 0.999, t


def test_written_files_get_the_usual_mode(lw, tmp_path):
    import os
    umask = os.umask(0)
    os.umask(umask)
    write_model(make_plan(lw, "int8"), tmp_path / "m.bmodel")
    assert (tmp_path / "m.bmodel").stat().st_mode & 0o777 == 0o666 & ~umask
