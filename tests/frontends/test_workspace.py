"""Workspaces: save, open in another session, all-or-nothing on errors, moved folders."""
from __future__ import annotations

import json
import shutil

import onnx
import pytest

from tpushell.core import Session
from tpushell.core.errors import InputFileError, StateError, TpuWarning
from tpushell.core.workspace import open_workspace, save_workspace

from shelldrive import tiny_model


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
