"""The ten findings of issue 17 (hostile and broken inputs), each as the adversarial run that
found it: now a one-line error (or a correct result), no traceback, nothing written outside the
paths given. The tools run in-process on a tiny real project (tests/hostilekit.py)."""
from __future__ import annotations

import builtins
import errno
import json
import os
import re
import shutil
import stat

import numpy as np
import pytest
from hostilekit import assert_one_line_error, make_project, run_main, snapshot
from tpushell.tools import (model_deploy, model_runner, model_transform, npz_tool,
                            run_calibration, run_qtable)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("hostile"))


@pytest.fixture
def proj(project, tmp_path):
    """A fresh copy of the project (tests damage it)."""
    dest = tmp_path / "p"
    shutil.copytree(project, dest, symlinks=True)
    return dest


def _mlir_with(proj, old: str, new: str, name: str = "bad.mlir"):
    text = (proj / "tiny.mlir").read_text()
    assert old in text
    (proj / name).write_text(text.replace(old, new, 1))
    return proj / name


def _deploy(proj, mlir, *extra):
    return [model_deploy.main, ["--mlir", mlir, "--quantize", "INT8", "--calibration_table",
                                proj / "cali_table", "--chip", "bm1684x",
                                "--model", proj / "new.bmodel", *extra]]


# ---- 1. names and paths inside files never steer where files are written or read --------------
@pytest.mark.parametrize("name", ["../escaped/evil", "/tmp/issue17_abs_evil", "a/b"])
def test_1_an_mlir_module_name_cannot_place_evidence_files(proj, capsys, name):
    os.makedirs(proj.parent / "escaped", exist_ok=True)
    bad = _mlir_with(proj, 'module.name = "tiny"', f'module.name = {json.dumps(name)}')
    before, outside = snapshot(proj), snapshot(proj.parent / "escaped")
    main, argv = _deploy(proj, bad, "--test_input", proj / "input.npz")
    rc, out, err = run_main(main, argv, capsys)
    assert_one_line_error(rc, err, name)
    assert "module.name" in err and "cannot be part of a file name" in err
    assert snapshot(proj) == before and snapshot(proj.parent / "escaped") == outside
    assert not os.path.exists("/tmp/issue17_abs_evil_top_outputs.npz")


@pytest.mark.parametrize("weights", ["/etc/passwd", "../other/w.npz", "sub/../../w.npz"])
def test_1_an_mlir_weight_file_is_read_only_from_beside_it(proj, capsys, weights):
    bad = _mlir_with(proj, 'module.weight_file = "tiny_top_f32_all_weight.npz"',
                     f'module.weight_file = {json.dumps(weights)}')
    rc, _, err = run_main(model_runner.main, ["--input", proj / "input.npz", "--model", bad,
                                              "--output", proj / "o.npz"], capsys)
    assert_one_line_error(rc, err)
    assert "tpushell reads weights only from beside the .mlir" in err
    assert not (proj / "o.npz").exists()


def test_1_a_workspace_model_name_cannot_place_files(proj):
    from tpushell.core import Session
    from tpushell.core.errors import InputFileError
    from tpushell.core.workspace import open_workspace, save_workspace
    s = Session()
    s.load(str(proj / "tiny.onnx"))
    save_workspace(s, proj / "ws.tpw")
    doc = json.loads((proj / "ws.tpw").read_text())
    doc["load_options"]["name"] = "../escaped/evil"
    (proj / "ws.tpw").write_text(json.dumps(doc))
    with pytest.raises(InputFileError, match=r"ws.tpw: load_options.name: model name "
                                             r"'../escaped/evil' cannot be part of a file name"):
        open_workspace(Session(), proj / "ws.tpw")


# ---- 2. a tampered journal is never replayed into a shell command ------------------------------
@pytest.mark.parametrize("entry", ["shell touch PWNED", "!touch PWNED", "py open('PWNED','w')",
                                   "layers | touch PWNED", "alias create x shell touch PWNED",
                                   "run_pyscript evil.py", "edit x", "macro create m shell ls"])
def test_2_a_tampered_journal_entry_is_refused_on_open(proj, entry, capsys):
    from tpushell.app import main as shell_main
    from tpushell.core import Session
    from tpushell.core.workspace import save_workspace
    s = Session()
    s.load(str(proj / "tiny.onnx"))
    save_workspace(s, proj / "ws.tpw")
    doc = json.loads((proj / "ws.tpw").read_text())
    doc["history"] = ["layers", entry]
    (proj / "ws.tpw").write_text(json.dumps(doc))
    os.chdir(proj)
    rc = shell_main(["-c", "open ws.tpw", "-c", "journal -o replay.tps"])
    err = capsys.readouterr().err
    assert rc == 1 and "journal entry 2:" in err
    assert "is not a tpushell command" in err or "pipe or redirection" in err
    assert not (proj / "replay.tps").exists() and not (proj / "PWNED").exists()


@pytest.mark.parametrize("line", ["shell touch PWNED", "!touch PWNED", "py open('PWNED', 'w')",
                                  "layers > PWNED", "ipy"])
def test_2_a_script_runs_only_tpushell_commands(proj, line, capsys):
    from tpushell.app import main as shell_main
    (proj / "replay.tps").write_text(f"# tpushell journal\nload tiny.onnx\n{line}\n")
    os.chdir(proj)
    assert shell_main(["--script", "replay.tps"]) == 1
    err = capsys.readouterr().err
    assert re.search(r"error: replay.tps:3: .*(not a tpushell command|pipe or redirection)", err)
    assert not (proj / "PWNED").exists()


# ---- 3. calibration tables: numbers validated at load ------------------------------------------
@pytest.mark.parametrize("row, message", [
    ("c1_Conv nan -1 1", r"threshold nan is not valid"),
    ("c1_Conv inf -1 1", r"threshold inf is not valid"),
    ("c1_Conv 1e38 -1 1", r"threshold 1e\+38 is not valid"),
    ("c1_Conv -2 -1 1", r"threshold -2.0 is not valid"),
    ("c1_Conv 0 -1 1", r"threshold 0.0 is not valid"),
    ("c1_Conv 1 2 1", r"min 2.0 is above max 1.0"),
    ("c1_Conv 1 nan 1", r"min nan / max 1.0 must be finite"),
])
def test_3_bad_thresholds_are_one_error_naming_line_and_value(proj, capsys, row, message):
    lines = (proj / "cali_table").read_text().splitlines()
    k = next(i for i, t in enumerate(lines) if t.startswith("c1_Conv "))
    lines[k] = row
    (proj / "cali_table").write_text("\n".join(lines) + "\n")
    before = snapshot(proj)
    main, argv = _deploy(proj, proj / "tiny.mlir")
    rc, _, err = run_main(main, argv, capsys)
    assert_one_line_error(rc, err, row)
    assert re.search(rf"cali_table:{k + 1}: 'c1_Conv': {message}", err), err
    assert snapshot(proj) == before


def test_3_duplicate_rows_name_both_lines_and_unknown_rows_are_warned(proj, capsys):
    text = (proj / "cali_table").read_text()
    first = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("c1_Conv "))
    (proj / "cali_table").write_text(text + "c1_Conv 1.0 -1.0 1.0\n")
    main, argv = _deploy(proj, proj / "tiny.mlir")
    rc, _, err = run_main(main, argv, capsys)
    assert_one_line_error(rc, err)
    assert f"'c1_Conv' again (first on line {first})" in err
    (proj / "cali_table").write_text(text + "no_such_tensor 1.0 -1.0 1.0\n")
    rc, _, err = run_main(main, argv, capsys)
    assert rc == 0 and "1 row(s) name no tensor of model 'tiny' and are ignored: no_such_tensor" in err


# ---- 4. "nothing was written" only when nothing was ----------------------------------------------
def test_4_ctrl_c_during_the_check_after_writing_leaves_the_old_model(proj, capsys, monkeypatch):
    from tpushell.core.quant import deploy as deploy_module
    (proj / "new.bmodel").write_bytes((proj / "m.bmodel").read_bytes())
    before = snapshot(proj)

    def interrupted(path):
        assert os.path.basename(path).startswith(".new.bmodel.")   # the temp file is checked
        raise KeyboardInterrupt
    monkeypatch.setattr(deploy_module, "load_deployed", interrupted)
    main, argv = _deploy(proj, proj / "tiny.mlir", "--test_input", proj / "input.npz")
    rc, _, err = run_main(main, argv, capsys)
    assert rc == 130 and err.strip().endswith("interrupted: nothing was written")
    assert snapshot(proj) == before


# ---- 6. OS errors: one line naming the file, checked before long work ---------------------------
def test_6_disk_full_is_one_line_and_leaves_no_temp_file(proj, capsys, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(np, "savez", full)
    (proj / "o.npz").write_bytes(b"old")
    before = snapshot(proj)
    rc, _, err = run_main(model_runner.main, ["--input", proj / "input.npz", "--model",
                                              proj / "tiny.mlir", "--output", proj / "o.npz"], capsys)
    assert_one_line_error(rc, err)
    assert f"cannot write {proj / 'o.npz'}: No space left on device" in err
    assert snapshot(proj) == before


@pytest.mark.parametrize("target", ["folder", "missing_folder/t", "link"])
def test_6_an_output_that_cannot_be_written_fails_before_calibration(proj, capsys, target,
                                                                      monkeypatch):
    from tpushell.core import session
    (proj / "folder").mkdir()
    os.symlink(proj / "cali_table", proj / "link")
    monkeypatch.setattr(session.Session, "calibrate",
                        lambda *a, **k: pytest.fail("calibration ran before the -o check"))
    before = snapshot(proj)
    rc, _, err = run_main(run_calibration.main, [proj / "tiny.mlir", "--dataset", proj / "data",
                                                 "-o", proj / target], capsys)
    assert_one_line_error(rc, err, target)
    assert snapshot(proj) == before


@pytest.mark.parametrize("kind", ["table", "qtable", "mlir"])
def test_6_an_unreadable_input_is_one_line_naming_it(proj, capsys, monkeypatch, kind):
    victim = {"table": proj / "cali_table", "qtable": proj / "qtable", "mlir": proj / "tiny.mlir"}[kind]
    real_open = builtins.open

    def guarded(file, *a, **k):
        if os.fspath(file) == str(victim):
            raise PermissionError(errno.EACCES, "Permission denied", str(victim))
        return real_open(file, *a, **k)
    monkeypatch.setattr(builtins, "open", guarded)
    main, argv = _deploy(proj, proj / "tiny.mlir", "--quantize_table", proj / "qtable")
    rc, _, err = run_main(main, argv, capsys)
    assert_one_line_error(rc, err, kind)
    assert f"{victim}: Permission denied" in err


@pytest.mark.parametrize("option", ["--data_list", "--tune_list"])
def test_6_non_utf8_lists_are_one_line(proj, capsys, option):
    (proj / "list.txt").write_bytes(b"data/0.npy\n\xff\xfe\x00 bad\n")
    extra = ["--dataset", proj / "data"] if option == "--tune_list" else []
    rc, _, err = run_main(run_calibration.main, [proj / "tiny.mlir", option, proj / "list.txt",
                                                 *extra, "-o", proj / "t"], capsys)
    assert_one_line_error(rc, err)
    assert "list.txt is not UTF-8 text (byte 0xff at offset 11)" in err
    assert not (proj / "t").exists()


def test_6_a_non_utf8_script_is_one_line(proj, capsys):
    from tpushell.app import main as shell_main
    (proj / "s.tps").write_bytes(b"load tiny.onnx\n\xff\n")
    assert shell_main(["--script", str(proj / "s.tps")]) == 1
    assert "s.tps is not UTF-8 text (byte 0xff at offset 15)" in capsys.readouterr().err


# ---- 7. malformed model files ------------------------------------------------------------------------
def _onnx_variant(proj, change):
    import onnx
    model = onnx.load(proj / "tiny.onnx")
    change(model)
    path = proj / "bad.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _set_dim(model, value):
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = value


def _short_raw(model):
    w = model.graph.initializer[0]
    w.raw_data = np.zeros(3, np.float32).tobytes()
    del w.float_data[:]


def _bad_attr(model):
    from onnx import helper
    node = next(n for n in model.graph.node if n.op_type == "Resize")
    del node.attribute[:]
    node.attribute.append(helper.make_attribute("mode", b"\xffnearest"))


ONNX_DAMAGE = {
    "output nothing produces": (lambda m: setattr(m.graph.output[0], "name", "ghost"),
                                "graph output(s) ghost not produced"),
    "two nodes write one tensor": (lambda m: m.graph.node[3].output.__setitem__(0, "c1"),
                                   "tensor 'c1' is written twice"),
    "negative dim": (lambda m: _set_dim(m, -5), "dimension -5 of shape"),
    "huge input": (lambda m: (_set_dim(m, 100000), m.graph.input[0].type.tensor_type.shape.dim[3]
                              .__setattr__("dim_value", 100000)), "above the limit 1073741824"),
    "raw data shorter than dims": (_short_raw, "tensor data does not match its dims"),
    "non-UTF-8 attribute": (_bad_attr, "attribute 'mode': string attribute is not UTF-8"),
}


@pytest.mark.parametrize("case", ONNX_DAMAGE)
def test_7_malformed_onnx_is_one_line(proj, capsys, case):
    change, message = ONNX_DAMAGE[case]
    bad = _onnx_variant(proj, change)
    before = snapshot(proj)
    rc, _, err = run_main(model_transform.main, ["--model_name", "x", "--model_def", bad,
                                                 "--mlir", proj / "x.mlir"], capsys)
    assert_one_line_error(rc, err, case)
    assert message in err, err
    assert snapshot(proj) == before


MLIR_DAMAGE = {
    "no module name": (('module.name = "tiny", ', ""), "has no module.name string"),
    "deep nesting": (("module.state", "x = " + "[" * 5000 + "]" * 5000 + ", module.state"),
                     "nested more than 64 deep"),
    "unknown dtype": (("x8x8xf32>", "x8x8xq7>"), "unknown element type 'q7'"),
    "no return": (("    return", "    // gone"), "no 'return' line"),
}


@pytest.mark.parametrize("case", MLIR_DAMAGE)
def test_7_malformed_mlir_is_one_line(proj, capsys, case):
    (old, new), message = MLIR_DAMAGE[case]
    text = (proj / "tiny.mlir").read_text()
    (proj / "bad.mlir").write_text(text.replace(old, new))
    rc, _, err = run_main(model_runner.main, ["--input", proj / "input.npz", "--model",
                                              proj / "bad.mlir", "--output", proj / "o.npz"], capsys)
    assert_one_line_error(rc, err, case)
    assert message in err, err
    assert not (proj / "o.npz").exists()


def _manifest_variant(proj, change):
    import zipfile
    with zipfile.ZipFile(proj / "m.bmodel") as z:
        members = {n: z.read(n) for n in z.namelist()}
    doc = json.loads(members["manifest.json"])
    doc = change(doc)
    members["manifest.json"] = json.dumps(doc).encode()
    if isinstance(doc, dict) and doc.get("drop_array"):
        members.pop(sorted(n for n in members if n.startswith("arrays/"))[0])
    with zipfile.ZipFile(proj / "bad.bmodel", "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    return proj / "bad.bmodel"


def _step_kind(doc):
    doc["steps"][0]["kind"] = "warp_drive"
    return doc


MANIFEST_DAMAGE = {
    "a list": (lambda d: [d], "manifest.json is a list, not an object"),
    "no steps": (lambda d: {k: v for k, v in d.items() if k != "steps"}, "missing entry 'steps'"),
    "a missing array": (lambda d: d | {"drop_array": True}, "the model file is damaged"),
    "unknown step kind": (_step_kind, "unknown step kind 'warp_drive'"),
}


@pytest.mark.parametrize("case", MANIFEST_DAMAGE)
def test_7_damaged_deployed_models_are_one_line(proj, capsys, case):
    change, message = MANIFEST_DAMAGE[case]
    bad = _manifest_variant(proj, change)
    rc, _, err = run_main(model_runner.main, ["--input", proj / "input.npz", "--model", bad,
                                              "--output", proj / "o.npz"], capsys)
    assert_one_line_error(rc, err, case)
    assert message in err, err


def test_7_a_manifest_that_inflates_past_the_limit_is_refused_unread(proj, capsys, monkeypatch):
    from tpushell.core.quant import deploy as deploy_module
    monkeypatch.setattr(deploy_module, "MAX_MANIFEST_BYTES", 1000)   # a 3 GB bomb, scaled down
    rc, _, err = run_main(model_runner.main, ["--input", proj / "input.npz", "--model",
                                              proj / "m.bmodel", "--output", proj / "o.npz"], capsys)
    assert_one_line_error(rc, err)
    assert re.search(r"member manifest.json inflates to \d+ bytes, above the limit 1000", err)


@pytest.mark.parametrize("option, message", [
    ("stride=0", "stride=0 is out of range"), ("filters=-16", "filters=-16 is out of range"),
    ("width=100000000", "width=100000000 is out of range")])
def test_7_damaged_darknet_cfgs_are_one_line(tmp_path, capsys, option, message):
    key = option.split("=")[0]
    section = "[net]\nwidth=32\nheight=32\nchannels=3\n" if key != "width" else \
        f"[net]\n{option}\nheight=32\nchannels=3\n"
    conv = "[convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
    if key != "width":
        conv = re.sub(rf"^{key}=.*$", option, conv, flags=re.M)
    (tmp_path / "bad.cfg").write_text(section + conv)
    (tmp_path / "bad.weights").write_bytes(np.zeros(5, np.int32).tobytes() +
                                           np.zeros(200, np.float32).tobytes())
    rc, _, err = run_main(model_transform.main, ["--model_name", "d", "--model_def",
                                                 tmp_path / "bad.cfg", "--mlir",
                                                 tmp_path / "d.mlir"], capsys)
    assert_one_line_error(rc, err, option)
    assert message in err, err


@pytest.mark.parametrize("change, message", [
    (lambda d: "[" * 100000 + "]" * 100000, "JSON nested too deep"),
    (lambda d: json.dumps(d).replace('"samples": ', '"samples": 1e400, "x": '), "damaged"),
    (lambda d: json.dumps(d | {"version": "2"}), 'workspace "version" is "2", not a number'),
])
def test_7_9_damaged_workspaces_are_one_line(proj, capsys, change, message):
    from tpushell.app import main as shell_main
    from tpushell.core import Session
    from tpushell.core.workspace import save_workspace
    s = Session()
    s.load(str(proj / "tiny.onnx"))
    s.calibrate(str(proj / "data"), method="max")
    save_workspace(s, proj / "ws.tpw")
    doc = json.loads((proj / "ws.tpw").read_text())
    (proj / "ws.tpw").write_text(change(doc))
    assert shell_main(["-c", f"open {proj / 'ws.tpw'}"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


# ---- 8. option limits ---------------------------------------------------------------------------------
def test_8_option_values_out_of_range_fail_at_once(proj, capsys):
    rc, _, err = run_main(run_calibration.main, [proj / "tiny.mlir", "--dataset", proj / "data",
                                                 "--histogram_bin_num", "100000000",
                                                 "-o", proj / "t"], capsys)
    assert_one_line_error(rc, err)
    assert "--histogram_bin_num 100000000 is above the limit 131072" in err
    rc, _, err = run_main(model_transform.main, ["--model_name", "x", "--model_def",
                                                 proj / "tiny.onnx", "--scale", "nan,nan,nan",
                                                 "--mlir", proj / "x.mlir"], capsys)
    assert_one_line_error(rc, err)
    assert "--scale 'nan,nan,nan' must be finite numbers" in err


# ---- 9. wrong answers ---------------------------------------------------------------------------------
def test_9_npz_compare_of_empty_or_other_rank_tensors_fails(proj, capsys):
    np.savez(proj / "empty.npz", t=np.zeros((0, 3, 416, 416), np.float32))
    np.savez(proj / "full.npz", t=np.ones((1, 3, 416, 416), np.float32))
    np.savez(proj / "rank.npz", t=np.ones((3, 416), np.float32))
    for a, b in (("empty", "full"), ("full", "rank")):
        rc, out, err = run_main(npz_tool.main, ["compare", proj / f"{a}.npz", proj / f"{b}.npz"],
                                capsys)
        assert rc == 1 and "Traceback" not in err, (a, b, err)
        assert "NOT_EQUAL" in out and "FAILED" in out


def test_9_min_layer_cos_below_the_reference_scale_is_refused(proj, capsys):
    rc, _, err = run_main(run_qtable.main, [proj / "tiny.mlir", "--dataset", proj / "data",
                                            "--calibration_table", proj / "cali_table", "--chip",
                                            "bm1684x", "--min_layer_cos", "0.4",
                                            "-o", proj / "q"], capsys)
    assert_one_line_error(rc, err)
    assert "--min_layer_cos 0.4 is below the reference scale 0.5+0.5*cos" in err
    assert "-0.19999" not in err


# ---- 10. low: quoting, file modes, symbolic links ---------------------------------------------------
def test_10_a_data_list_line_is_never_quoted_back(proj, capsys):
    (proj / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    rc, _, err = run_main(run_calibration.main, [proj / "tiny.mlir", "--data_list",
                                                 proj / "passwd", "-o", proj / "t"], capsys)
    assert_one_line_error(rc, err)
    assert "root:x" not in err and "/bin/bash" not in err and "line 1: not a sample file" in err


def test_10_a_replaced_file_keeps_its_mode_and_a_link_is_never_followed(proj, capsys):
    out = proj / "o.npz"
    out.write_bytes(b"old")
    os.chmod(out, 0o600)
    argv = ["--input", proj / "input.npz", "--model", proj / "tiny.mlir", "--output", out]
    assert run_main(model_runner.main, argv, capsys)[0] == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and out.read_bytes() != b"old"
    (proj / "target.npz").write_bytes(b"target")
    os.symlink(proj / "target.npz", proj / "link.npz")
    rc, _, err = run_main(model_runner.main, argv[:-1] + [proj / "link.npz"], capsys)
    assert_one_line_error(rc, err)
    assert "is a symbolic link" in err
    assert os.path.islink(proj / "link.npz") and (proj / "target.npz").read_bytes() == b"target"
