"""Workspaces: save, open in another session, all-or-nothing on errors, moved folders."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from shelldrive import tiny_model
from tpushell.core import Session
from tpushell.core.calibration.tables import LossRow, LossTable
from tpushell.core.errors import InputFileError, StateError, TpuWarning
from tpushell.core.workspace import open_workspace, save_workspace


@pytest.fixture
def tiny(tmp_path):
    """tiny.onnx in its own project folder."""
    folder = tmp_path / "project"
    folder.mkdir()
    return tiny_model(folder / "tiny.onnx")


def test_round_trip_restores_model_settings_and_history(tiny):
    s = Session()
    s.load(tiny, name="tiny", scale=[0.5, 0.5, 0.5], pixel_format="rgb")
    s.settings.set("chip", "bm1688")
    s.settings.set("samples", 30)
    s.history += ["load tiny.onnx", "set chip bm1688"]
    path = save_workspace(s, tiny.parent / "w.tpw")
    t = Session()
    same = t
    open_workspace(t, path)
    assert t is same
    assert t.model.op_names == s.model.op_names and t.model.name == "tiny"
    assert t.preprocess_config.scale == [0.5, 0.5, 0.5] and t.preprocess_config.pixel_format == "rgb"
    assert (t.settings.chip, t.settings.samples) == ("bm1688", 30)
    assert t.history == ["load tiny.onnx", "set chip bm1688"]


def test_a_moved_project_still_opens_and_a_changed_model_warns(tiny, tmp_path):
    s = Session()
    s.load(tiny)
    save_workspace(s, tiny.parent / "w.tpw")
    moved = shutil.move(str(tiny.parent), str(tmp_path / "elsewhere"))
    t = Session()
    open_workspace(t, f"{moved}/w.tpw")
    assert t.load_options["model"] == f"{moved}/tiny.onnx"
    proto = onnx.load(f"{moved}/tiny.onnx")
    proto.doc_string = "edited"
    onnx.save(proto, f"{moved}/tiny.onnx")
    with pytest.warns(TpuWarning, match="changed since the workspace was saved"):
        open_workspace(Session(), f"{moved}/w.tpw")


def test_failed_open_leaves_the_session_as_it_was(tiny):
    s = Session()
    s.load(tiny)
    save_workspace(s, tiny.parent / "w.tpw")
    before = dict(vars(s))
    doc = json.loads((tiny.parent / "w.tpw").read_text())
    doc["settings"]["chip"] = "bm9999"
    (tiny.parent / "bad.tpw").write_text(json.dumps(doc))
    with pytest.raises(InputFileError, match="bad.tpw: setting 'chip' cannot be 'bm9999'"):
        open_workspace(s, tiny.parent / "bad.tpw")
    tiny.unlink()
    with pytest.raises(InputFileError, match="model not found"):
        open_workspace(s, tiny.parent / "w.tpw")
    (tiny.parent / "other.tpw").write_text('{"format": "something else"}')
    with pytest.raises(InputFileError, match="not a tpushell workspace"):
        open_workspace(s, tiny.parent / "other.tpw")
    assert vars(s) == before


def test_nothing_to_save_before_a_model_is_loaded(tmp_path):
    with pytest.raises(StateError, match="no model loaded"):
        save_workspace(Session(), tmp_path / "w.tpw")
    assert not (tmp_path / "w.tpw").exists()


def _tiny_samples(folder, n=3):
    data = folder / "samples"
    data.mkdir()
    rng = np.random.default_rng(7)
    for i in range(n):
        np.savez(data / f"s{i}.npz", x=rng.random((1, 3, 8, 8), np.float32))
    return data


def test_tables_qtable_edits_and_sample_data_come_back_exactly(tiny, tmp_path):
    s = Session()
    s.load(tiny)
    s.calibrate(_tiny_samples(tiny.parent))       # thresholds with all their digits
    s.settings.set("samples", 3)
    s.set_precision("LeakyRelu", "F16")
    s.set_precision("y_Conv", "BF16")
    s.undo()                                      # an edit that can be redone after open
    s.loss_table = LossTable([LossRow("y_Conv", 0.97123456789), LossRow("c1_Conv", 0.99, False)],
                             sample_number=3, chip="bm1684x", mix_mode="F16")
    before = s.check()
    path = save_workspace(s, tiny.parent / "w.tpw")
    moved = shutil.move(str(tiny.parent), str(tmp_path / "moved"))
    t = Session()
    open_workspace(t, f"{moved}/w.tpw")
    assert t.dataset == f"{moved}/samples"
    assert {n: vars(r) for n, r in t.calibration.rows.items()} == \
        {n: vars(r) for n, r in s.calibration.rows.items()}
    assert dict(t.qtable.items()) == {"r1_LeakyRelu": "F16"}
    after = t.check()
    assert after.outputs == before.outputs and after.layers == before.layers
    assert [(r.layer, r.cos, r.visited) for r in t.loss_table] == \
        [("y_Conv", 0.97123456789, True), ("c1_Conv", 0.99, False)]
    assert "BF16" in str(t.redo()) and t.qtable.modes == {"r1_LeakyRelu": "F16", "y_Conv": "BF16"}
    t.undo(), t.undo()
    assert not len(t.qtable)
    assert path.endswith("w.tpw")


def _damaged_copy(folder, edit):
    """folder/d.tpw: folder/w.tpw's document after `edit(doc)`."""
    doc = json.loads((folder / "w.tpw").read_text())
    edit(doc)
    (folder / "d.tpw").write_text(json.dumps(doc))
    return folder / "d.tpw"


@pytest.mark.parametrize("methods", [{}, {"all_methods": True}])
def test_calibration_statistics_come_back_so_histograms_plot_after_open(tiny, methods):
    """Histograms, per-sample sums and percentile tails, exactly: every method's threshold and the
    plotted figure are those of the session that calibrated."""
    from tpushell.core.calibration.calibrate import method_thresholds
    s = Session()
    s.load(tiny)
    s.calibrate(_tiny_samples(tiny.parent), **methods)
    path = save_workspace(s, tiny.parent / "w.tpw")
    t = Session()
    open_workspace(t, path)
    a, b = s.calibration_stats, t.calibration_stats
    assert (b.samples, b.bins, b.methods, b.inputs) == (a.samples, a.bins, a.methods, a.inputs)
    assert list(b.tensors) == list(a.tensors)
    for name in a.tensors:
        assert method_thresholds(b, name) == method_thresholds(a, name)
        np.testing.assert_array_equal(b.tensors[name].hist, a.tensors[name].hist)
    labels = lambda fig: [line.get_label() for line in fig.axes[0].lines]  # noqa: E731
    assert labels(t.plot_histogram("r1_LeakyRelu")) == labels(s.plot_histogram("r1_LeakyRelu"))


def test_damaged_calibration_statistics_are_one_error_naming_the_workspace(tiny):
    s = Session()
    s.load(tiny)
    s.calibrate(_tiny_samples(tiny.parent))
    save_workspace(s, tiny.parent / "w.tpw")
    damage = {"tensor": lambda st: st["tensors"].update(c99_Conv=st["tensors"]["c1_Conv"]),
              "method": lambda st: st.update(methods=["kl", "magic"]),
              "counts": lambda st: st["tensors"]["c1_Conv"].update(hist=[[1, 2]]),
              "type": lambda st: st["tensors"]["c1_Conv"].update(min="low")}
    expect = {"tensor": "c99_Conv", "method": "magic", "counts": "not a list", "type": "low"}
    t = Session()
    for what, edit in damage.items():
        damaged = _damaged_copy(tiny.parent, lambda doc: edit(doc["calibration_stats"]))
        with pytest.raises(InputFileError, match=rf"^\S*d.tpw: .*{expect[what]}"):
            open_workspace(t, damaged)
    assert t.graph is None


def test_a_damaged_table_is_one_error_naming_the_workspace(tiny):
    s = Session()
    s.load(tiny)
    s.calibrate(_tiny_samples(tiny.parent))
    s.set_precision("y_Conv", "F16")
    save_workspace(s, tiny.parent / "w.tpw")
    doc = json.loads((tiny.parent / "w.tpw").read_text())
    del doc["calibration"]["rows"]["p1_MaxPool"]
    (tiny.parent / "short.tpw").write_text(json.dumps(doc))
    doc = json.loads((tiny.parent / "w.tpw").read_text())
    doc["qtable"] = {"conv99": "F16"}
    (tiny.parent / "badq.tpw").write_text(json.dumps(doc))
    doc["qtable"] = {}
    doc["loss_table"] = {"rows": [["y_Conv"]]}
    (tiny.parent / "badloss.tpw").write_text(json.dumps(doc))
    t = Session()
    with pytest.raises(InputFileError, match=r"short.tpw: .*no row for 1 tensor.*p1_MaxPool"):
        open_workspace(t, tiny.parent / "short.tpw")
    with pytest.raises(InputFileError, match=r"badq.tpw: .*conv99"):
        open_workspace(t, tiny.parent / "badq.tpw")
    with pytest.raises(InputFileError, match=r"badloss.tpw: the workspace is damaged"):
        open_workspace(t, tiny.parent / "badloss.tpw")
    damaged = {"edits": None, "settings": [], "model": "tiny.onnx", "load_options": {"colour": 1},
               "history": 5}
    for key, value in damaged.items():
        path = _damaged_copy(tiny.parent, lambda doc: doc.update({key: value}))
        with pytest.raises(InputFileError, match=r"^\S*d.tpw: the workspace is damaged \(\w+: .*\); save"):
            open_workspace(t, path)
    doc = json.loads((tiny.parent / "w.tpw").read_text())
    doc["edits"]["done"][0]["after"] = {"y_Conv": "F17"}        # undo / redo would install it
    (tiny.parent / "badedit.tpw").write_text(json.dumps(doc))
    with pytest.raises(InputFileError, match=r"badedit.tpw: .*F17"):
        open_workspace(t, tiny.parent / "badedit.tpw")
    assert t.graph is None


def test_a_lost_sample_folder_warns_and_version_1_files_still_open(tiny):
    s = Session()
    s.load(tiny)
    s.calibrate(_tiny_samples(tiny.parent))
    save_workspace(s, tiny.parent / "w.tpw")
    shutil.rmtree(tiny.parent / "samples")
    t = Session()
    with pytest.warns(TpuWarning, match=r"^\S*w.tpw: sample folder not found at .*samples; .*`data FOLDER`"):
        open_workspace(t, tiny.parent / "w.tpw")
    assert t.dataset is None and len(t.calibration) == len(s.calibration)
    doc = json.loads((tiny.parent / "w.tpw").read_text())
    v1 = {k: doc[k] for k in ("format", "saved", "model", "model_data", "load_options", "settings",
                              "history")} | {"version": 1}
    (tiny.parent / "v1.tpw").write_text(json.dumps(v1))
    open_workspace(t, tiny.parent / "v1.tpw")
    assert t.calibration is None and not len(t.qtable) and t.model.op_names == s.model.op_names


@pytest.mark.zoo
def test_cos_on_the_tutorial_model_is_the_same_after_save_and_open(zoo_workdir, frontend):
    """The tutorial model with the reference's own tables: `cos` before save == after open."""
    run = frontend
    run("load zoo/yolov3-tiny/tiny-yolov3-11.onnx --model_name yolov3_tiny --output_names "
        "transpose_output1,transpose_output --scale 0.0039216,0.0039216,0.0039216 "
        "--pixel_format rgb --keep_aspect_ratio --pad_value 128")
    run("set samples 2")
    run("calibrate zoo/COCO2017 --table golden/tpumlir_cali_table")
    run("qtable load golden/tpumlir_qtable")
    run("set_precision conv5_Conv F16")
    before = run("cos")[1:]                      # line 0 says how long it took
    assert any(line.startswith("output transpose_output") for line in before), before
    assert "saved workspace" in run("save tutorial.tpw")[-1]
    run("set_precision conv* F32")               # changes after the save are not kept
    assert run("cos")[1:] != before
    assert "opened tutorial.tpw" in run("open tutorial.tpw")[-1]
    assert run("cos")[1:] == before
    assert any("undid set conv5_Conv F16" in line for line in run("undo"))   # edits kept too
