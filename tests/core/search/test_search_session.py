"""Session methods of the mixed-precision workflow: set_precision, check, undo / redo, search,
save / diff qtables; incremental results equal a fresh session's (identical numbers)."""
from __future__ import annotations

import pytest
from searchkit import fragile_onnx, sample_folder
from tpushell.core import Session
from tpushell.core.calibration.tables import QTable, read_qtable, write_qtable
from tpushell.core.errors import ModelError, OptionError, StateError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fragile")
    return sample_folder(root, fragile_onnx(root / "fragile.onnx"), 12)


def session(data, samples=4) -> Session:
    model, folder, table = data
    s = Session()
    s.load(model)
    s.calibration = table
    s.use_data(folder)
    s.settings.set("samples", samples)
    return s


def test_set_precision_by_name_glob_and_type(data):
    s = session(data)
    assert list(s.set_precision("f_Conv", "F16").changed) == ["f_Conv"]
    assert s.qtable.modes == {"f_Conv": "F16"}
    s.set_precision("*_l_LeakyRelu", "bf16")
    assert [op for op, m in s.qtable.items() if m == "BF16"] == \
        ["a_l_LeakyRelu", "f_l_LeakyRelu", "b_l_LeakyRelu"]
    edit = s.set_precision("Conv", "INT8")               # INT8 is the default: override removed
    assert "f_Conv" not in s.qtable and edit.changed == {"f_Conv": ("F16", "INT8")}
    assert "1 layer(s) changed" in str(edit)


def test_bad_precision_requests_change_nothing(data):
    s = session(data)
    s.set_precision("f_Conv", "F16")
    with pytest.raises(ModelError, match="did you mean f_Conv"):
        s.set_precision("f_Con", "F16")
    with pytest.raises(ModelError, match="matches"):
        s.set_precision("zz*", "F16")
    with pytest.raises(OptionError, match="unknown quantize mode"):
        s.set_precision("f_Conv", "F8")
    s.settings.set("chip", "bm1684")
    with pytest.raises(OptionError, match="bm1684 has no F16"):
        s.set_precision("a_Conv", "F16")
    assert s.qtable.modes == {"f_Conv": "F16"} and len(s.edits.done) == 1
    with pytest.raises(StateError, match="nothing to redo"):
        s.redo()


def test_incremental_check_equals_a_fresh_session(data):
    s = session(data)
    first = s.check(own=True)
    s.set_precision("b_Conv", "F16")
    second = s.check(own=True)
    assert 0 < second.recomputed < first.recomputed
    fresh = session(data)
    fresh.set_precision("b_Conv", "F16")
    assert_same(second, fresh.check(own=True))
    again = s.check(own=True)                            # no-op re-check
    assert again.recomputed == 0 and again.layers == second.layers


def assert_same(a, b):
    assert a.outputs == b.outputs and a.layers == b.layers and a.own == b.own
    assert a.modes == b.modes


def test_undo_and_redo_give_back_the_same_numbers(data):
    s = session(data)
    int8 = s.check()
    s.set_precision("f_Conv", "F16")
    mixed = s.check()
    assert mixed.outputs["c_Conv"] > int8.outputs["c_Conv"]
    s.undo()
    assert len(s.qtable) == 0
    back = s.check()
    assert_same(back, int8) and back.recomputed == 0
    s.redo()
    assert_same(s.check(), mixed)
    with pytest.raises(StateError, match="nothing to undo"):
        s.undo(), s.undo()


@pytest.mark.parametrize("method", ["reference", "greedy"])
def test_search_applies_an_undoable_qtable(data, method):
    s = session(data)
    s.set_precision("a_Conv", "F32")
    result = s.search_qtable(0.999, 0.99, method=method)
    assert "f_Conv" in s.qtable and s.qtable.modes == result.qtable.modes
    assert s.loss_table is result.loss_table and s.loss_table.chip == "bm1684x"
    assert s.check().outputs["c_Conv"] == pytest.approx(result.mix_cos)
    s.undo()
    assert s.qtable.modes == {"a_Conv": "F32"}


def test_search_on_another_sample_count_and_compare_layers(data):
    s = session(data)
    result = s.search_qtable(0.999, 0.99, samples=6, apply=False)
    assert result.samples == 6 and len(s.qtable) == 0
    with pytest.raises(OptionError, match="outside"):
        s.search_qtable(1.5, 0.99)
    with pytest.raises(OptionError, match="unknown search"):
        s.search_qtable(0.99, 0.99, method="random")
    with pytest.raises(ModelError, match="did you mean"):
        s.search_qtable(0.99, 0.99, compare_layers="b_Con")


def test_save_load_and_diff_qtables(data, tmp_path):
    s = session(data)
    s.set_precision("f_Conv", "F16")
    path = s.save_qtable(tmp_path / "q")
    assert read_qtable(path).modes == {"f_Conv": "F16"}
    assert "# number of F16 layer: 1" in open(path).read()
    other = tmp_path / "q2"
    write_qtable(other, QTable({"f_Conv": "F16", "b_Conv": "F16"}), chip="bm1684x")
    diff = s.diff_qtables(path, other)
    assert diff.changed == {"b_Conv": ("INT8", "F16")} and "1 layer(s) differ" in str(diff)
    assert not s.diff_qtables(None, path)
    s.load_qtable(other)
    assert len(s.qtable) == 2
    s.undo()                                              # a load is an edit too
    assert s.qtable.modes == {"f_Conv": "F16"}


def test_check_needs_data(data):
    model, _, table = data
    s = Session()
    s.load(model)
    s.calibration = table
    with pytest.raises(StateError, match="calibrate on a dataset, or give a folder"):
        s.check()
    with pytest.raises(Exception, match="not found"):
        s.use_data("/no/such/folder")


def test_check_limits_layers_and_marks_low_ones(data):
    s = session(data)
    r = s.check(layers=["LeakyRelu", "c_Conv"], min_layer_cos=0.99)
    assert list(r.layers) == ["a_l_LeakyRelu", "f_l_LeakyRelu", "b_l_LeakyRelu", "c_Conv"]
    assert "f_l_LeakyRelu" in r.below
    s.set_precision("f_Conv", "F16")
    assert "; 1 layer(s) not INT8;" in str(s.check(layers=["c_Conv"]))   # the plan, not the rows
    s.settings.set("cosine_scale", "reference")
    assert "0.5+0.5*cos" in str(s.check())


def test_plots(data, tmp_path):
    from tpushell.core.plots.search import _phases, cosine_figure, search_curve_figure
    s = session(data)
    result = s.search_qtable(0.999, 0.99, method="greedy")
    check = s.check(own=True, min_layer_cos=0.99)
    fig = cosine_figure(check, expected_cos=0.999)
    ax = fig.axes[0]
    assert len(ax.patches) == len(check.layers)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(check.layers)
    assert {line.get_label().split()[0] for line in ax.lines} >= {"min_layer_cos", "expected_cos"}
    fig.savefig(tmp_path / "cos.png")
    curve = search_curve_figure(result, scale="reference")
    assert len(curve.axes) == 2 and "greedy search" in curve._suptitle.get_text()
    phases = _phases(result)      # adding, then (greedy) dropping: each phase drawn as a line
    assert {i for _, idx in phases for i in idx} == set(range(len(result.curve)))
    assert [len(line.get_xdata()) for line in curve.axes[0].lines[:len(phases)]] == \
        [len(idx) for _, idx in phases]
    curve.savefig(tmp_path / "curve.png")


def test_targets_in_the_reference_scale(data):
    s = session(data)
    a = s.search_qtable(0.9995, 0.995, scale="reference", apply=False)
    b = s.search_qtable(0.999, 0.99, apply=False)
    assert a.expected_cos == pytest.approx(0.999) and a.min_layer_cos == pytest.approx(0.99)
    assert a.qtable.modes == b.qtable.modes
    assert s.check(min_layer_cos=0.995, scale="reference").min_layer_cos == pytest.approx(0.99)
    with pytest.raises(OptionError, match="scale 'half'"):
        s.search_qtable(0.99, 0.99, scale="half")


def test_calibration_data_is_the_working_set(data):
    model, folder, _ = data
    s = Session()
    s.load(model)
    s.calibrate(folder, method="max", tune_num=0)
    assert s.dataset == str(folder)
    assert s.check().samples == s.settings.samples


def test_the_report_in_the_reference_scale_rewrites_the_cosines_of_every_decision(data):
    from tpushell.core.metrics import reference_cos
    from tpushell.core.search.space import SIX_DECIMALS
    result = session(data).search_qtable(0.999, 0.99, method="sensitivity", apply=False)
    shown = result.text("reference")
    said = [float(c) for t in result.trials for c in SIX_DECIMALS.findall(t.decision)]
    assert said, "the trials give their cosines"
    assert all(f"{reference_cos(c):.6f}" in shown for c in said)
    assert SIX_DECIMALS.findall("outputs 0.998123 <= 0.5, cost 12.5, 3.1415926") == ["0.998123"]
