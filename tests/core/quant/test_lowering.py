"""Lowering: ranges and their propagation (D.1, D.2), cast insertion and naming, modes, chips,
qtable overlay and the errors for bad tables."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from tiny_quant import max_table, samples, yolo_like
from tpushell.core.calibration.tables import CalRow, read_qtable
from tpushell.core.errors import CalibrationError, OptionError, QuantizationError
from tpushell.core.graph.onnx_import import import_onnx
from tpushell.core.quant.chips import CHIPS, check_mode, get_chip, resolve_fp_type
from tpushell.core.quant.lowering import Lowerer, lower
from tpushell.core.quant.ranges import Range, propagate, table_ranges


@pytest.fixture(scope="module")
def graph():
    return yolo_like()


@pytest.fixture(scope="module")
def table(graph):
    t = max_table(graph, samples(), path="tiny_table")
    # A KLD-like table: the concat threshold below its inputs' forces both to be requantized.
    t.rows["cat_Concat"] = dataclasses.replace(t["cat_Concat"],
                                               threshold=0.6 * t["cat_Concat"].threshold)
    t.rows["p1_MaxPool"] = dataclasses.replace(t["p1_MaxPool"],
                                               threshold=0.7 * t["p1_MaxPool"].threshold)
    return t


def write_qtable(tmp_path, text):
    p = tmp_path / "qtable"
    p.write_text(text)
    return read_qtable(p)


# ---- D.1 / D.2 -----------------------------------------------------------------------------------
def test_table_ranges_symmetric_and_unsigned(graph, table):
    r = table_ranges(graph, table, get_chip("bm1684x"))
    assert r["input_1"] == Range(0.0, table["input_1"].threshold)        # min >= 0: unsigned
    th = table["c1_Conv"].threshold
    assert r["c1_Conv"] == Range(-th, th)
    cv = table_ranges(graph, table, get_chip("cv183x"))                   # CV18xx: min = -max
    assert cv["input_1"].min == -cv["input_1"].max


def test_conv_leaky_maxpool_chain_shares_one_scale(graph, table):
    r = propagate(graph, table_ranges(graph, table, get_chip("bm1684x")), get_chip("bm1684x"))
    th = max(table["c1_Conv"].threshold, table["cat_Concat"].threshold)
    for t in ("c1_Conv", "l1_LeakyRelu", "p1_MaxPool"):
        assert r[t].threshold == pytest.approx(th) and r[t].signed
    # Upsample keeps its input's range (step 7 overrides the Concat backward of step 4).
    assert r["up_Resize"] == r["l2_LeakyRelu"] == r["c2_Conv"]
    assert r["cat_Concat"].threshold == pytest.approx(table["cat_Concat"].threshold)
    assert r["out_Transpose"] == r["c3_Conv"]


def test_concat_inputs_are_requantized_with_the_reference_names(graph, table):
    plan = lower(graph, table)
    requants = {s.name: s for s in plan.casts() if s.op_type == "Requant"}
    assert set(requants) == {"up_Resize_to_cat_Concat", "l1_LeakyRelu_to_cat_Concat"}
    assert plan.steps["cat_Concat"].inputs == ("up_Resize_to_cat_Concat",
                                               "l1_LeakyRelu_to_cat_Concat")
    s = requants["l1_LeakyRelu_to_cat_Concat"]
    m, r = s.params["multiplier"], s.params["shift"]
    assert 0 < m < 127 and m / 2**r == pytest.approx(s.in_types[0].scale / s.out_types[0].scale,
                                                      rel=0.02)


def test_input_and_output_casts(graph, table):
    plan = lower(graph, table)
    first = plan.steps["input_1c1_Conv_ui8"]
    assert first.op_type == "Cast" and first.out_types[0].kind == "uint8"
    assert first.out_types[0].scale == pytest.approx(table["input_1"].threshold / 255)
    last = plan.steps["out_Transpose_f32"]
    assert last.in_types[0].kind == "int8" and last.out_types[0].kind == "f32"
    assert list(plan.steps)[-1] == "out_Transpose_f32"
    assert plan.steps["l1_LeakyRelu"].params == {"multiplier": 51, "shift": 9}


def test_qtable_overlay_inserts_float_casts(graph, table, tmp_path):
    q = write_qtable(tmp_path, "# comment\nl2_LeakyRelu F16\nup_Resize F16\n")
    plan = lower(graph, table, q)
    assert plan.float_ops() == {"l2_LeakyRelu": "F16", "up_Resize": "F16"}
    assert "c2_Convl2_LeakyRelu_f16" in plan.steps
    assert plan.steps["l2_LeakyRelu"].inputs == ("c2_Convl2_LeakyRelu_f16",)
    # F16 -> INT8 at the concat's scale, named as the reference names casts.
    assert "up_Resizecat_Concat_si8" in plan.steps
    assert plan.steps["up_Resizecat_Concat_si8"].out_types[0] == plan.types["cat_Concat"]


def test_whole_model_float_modes_need_no_table(graph):
    for mode in ("F32", "F16", "BF16"):
        plan = lower(graph, None, mode=mode)
        assert set(plan.op_modes.values()) == {mode}
    with pytest.raises(CalibrationError, match="INT8 needs a calibration table"):
        lower(graph, None, mode="INT8")


def test_f16_conv_keeps_a_float32_bias(graph, table):
    step = lower(graph, table, mode="F16").steps["c1_Conv"]
    w, b = step.slots[1], step.slots[2]
    assert np.array_equal(w, w.astype(np.float16).astype(np.float32))
    assert np.array_equal(b, graph.weights[graph.node("c1_Conv").inputs[2]])


# ---- ops without an INT8 rule, chips --------------------------------------------------------------
def sigmoid_graph():
    w = numpy_helper.from_array(np.full((2, 3, 1, 1), 0.5, np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]),
             helper.make_node("Sigmoid", ["c"], ["s"]),
             helper.make_node("Div", ["c", "s"], ["y"])]
    g = helper.make_graph(nodes, "sig", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                       [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], [w])
    return import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))


@pytest.mark.parametrize("chip,fp", [("bm1684x", "F16"), ("bm1684", "F32"), ("cv183x", "BF16")])
def test_ops_without_int8_rule_run_in_the_chip_float_type(chip, fp):
    g = sigmoid_graph()
    plan = lower(g, max_table(g, samples(2, shape=(3, 4, 4))), chip=chip)
    assert plan.float_ops() == {"y_Div": fp}
    assert plan.steps["y_Div"].note == f"no INT8 rule for Div: runs in {fp}"
    assert plan.op_modes["c_Conv"] == plan.op_modes["s_Sigmoid"] == "INT8"


def test_chips_and_fp_type():
    assert set(CHIPS) == {"bm1684x", "bm1684", "bm1688", "cv183x", "cv182x", "cv181x", "cv180x"}
    assert resolve_fp_type(get_chip("bm1684x"), "auto") == "F16"
    assert resolve_fp_type(get_chip("cv181x"), "auto") == "BF16"
    assert resolve_fp_type(get_chip("bm1688"), "bf16") == "BF16"
    with pytest.raises(OptionError, match="bm1684 has no F16"):
        resolve_fp_type(get_chip("bm1684"), "F16")
    with pytest.raises(OptionError, match="did you mean bm1684x"):
        get_chip("bm1648x")
    with pytest.raises(OptionError, match="--quantize: chip cv183x has no F32"):
        check_mode(get_chip("cv183x"), "F32")


# ---- bad qtables and tables -----------------------------------------------------------------------
def test_qtable_unknown_op_names_the_line_and_close_names(graph, table, tmp_path):
    q = write_qtable(tmp_path, "# op_name quantize_mode\nl1_LeakyRelu F16\nc2_Cnv F16\n")
    with pytest.raises(QuantizationError) as e:
        lower(graph, table, q)
    msg = str(e.value)
    assert f"{tmp_path / 'qtable'}:3" in msg and "'c2_Cnv'" in msg and "c2_Conv" in msg


def test_qtable_mode_the_chip_lacks_names_the_line(graph, table, tmp_path):
    q = write_qtable(tmp_path, "l1_LeakyRelu F16\n")
    with pytest.raises(QuantizationError, match=r"qtable:1: chip bm1684 has no F16"):
        lower(graph, table, q, chip="bm1684")
    q = write_qtable(tmp_path, "l1_LeakyRelu int4\n")
    with pytest.raises(QuantizationError, match=r"qtable:1: unknown quantize mode 'INT4'"):
        lower(graph, table, q)


def test_qtable_lines_the_compiler_passes_over_are_warned_about_by_line(tmp_path):
    from tpushell.core.calibration.tables import read_qtable
    from tpushell.core.errors import TpuWarning
    path = tmp_path / "qtable"
    path.write_text("# op_name mode\nc1_Conv\nl1_LeakyRelu f16 extra\nc2_Conv F16\nc2_Conv bf16\n")
    with pytest.warns(TpuWarning) as seen:
        q = read_qtable(path)
    assert q.modes == {"l1_LeakyRelu": "F16", "c2_Conv": "BF16"}
    assert [str(w.message).split(f"{path}:")[1] for w in seen] == [
        "2: 'c1_Conv' has no quantize mode; line ignored",
        "3: text after the mode ignored: 'extra'",
        "5: 'c2_Conv' again (first on line 4); this line's BF16 wins"]


def test_table_missing_rows_names_file_tensors_and_ops(graph, table):
    partial = dataclasses.replace(table, rows={k: v for k, v in table.rows.items()
                                               if k not in ("c2_Conv", "l2_LeakyRelu", "up_Resize")})
    with pytest.raises(CalibrationError) as e:
        lower(graph, partial)
    msg = str(e.value)
    assert msg.startswith("calibration table tiny_table has no row for")
    assert "c2_Conv (needed by c2_Conv" in msg
    # A qtable keeping those ops in float makes the same table sufficient.
    from tpushell.core.calibration.tables import QTable
    q = QTable({"c2_Conv": "F16", "l2_LeakyRelu": "F16", "up_Resize": "F16"})
    lower(graph, partial, q)


def test_table_for_another_model(graph):
    other = max_table(graph, samples(), path="other_table")
    other.rows = {"conv%d_Conv" % i: CalRow(1.0, -1.0, 1.0) for i in range(12)} | {
        "c1_Conv": other["c1_Conv"]}
    with pytest.raises(CalibrationError, match=r"other_table does not match model 'yolo_like'.*"
                                               r"conv0_Conv.*another model"):
        Lowerer(graph, other)


# ---- re-lowering for the search -------------------------------------------------------------------
def test_relowering_reuses_steps_and_names_stale_tensors(graph, table):
    from tpushell.core.calibration.tables import QTable
    lw = Lowerer(graph, table)
    a = lw.plan("INT8")
    b = lw.plan("INT8", QTable({"c2_Conv": "F16"}))
    for name in ("input_1c1_Conv_ui8", "c1_Conv", "l1_LeakyRelu", "p1_MaxPool"):
        assert a.steps[name] is b.steps[name]
    stale = b.stale(a)
    assert "c1_Conv" not in stale and "p1_MaxPool" not in stale
    assert {"p1_MaxPoolc2_Conv_f16", "c2_Conv", "c2_Convl2_LeakyRelu_si8", "l2_LeakyRelu",
            "cat_Concat", "out_Transpose_f32"} <= stale
    assert lw.plan("INT8").steps["c3_Conv"] is a.steps["c3_Conv"]
    assert a.stale(lw.plan("INT8")) == set()


def avgpool_graph():
    w = numpy_helper.from_array(np.full((2, 3, 1, 1), 0.5, np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]),
             helper.make_node("AveragePool", ["c"], ["a"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("MaxPool", ["a"], ["m"], kernel_shape=[1, 1])]
    g = helper.make_graph(nodes, "avg", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                       [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("m", TensorProto.FLOAT, [1, 2, 2, 2])], [w])
    return import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))


def test_average_pool_forward_only_on_bm1684_and_keep_sign():
    g = avgpool_graph()
    from tpushell.core.calibration.tables import CalibrationTable
    t = CalibrationTable({"x": CalRow(1, -1, 1), "c_Conv": CalRow(10, -10, 9),
                          "a_AveragePool": CalRow(3, 0.5, 3), "m_MaxPool": CalRow(3, 0.5, 3)})
    x_ranges = propagate(g, table_ranges(g, t, get_chip("bm1684x")), get_chip("bm1684x"))
    # Keep-sign: a pool of a signed tensor stays signed, with min = -0.1 max.
    assert x_ranges["a_AveragePool"] == x_ranges["m_MaxPool"] == pytest.approx(Range(-0.3, 3.0))
    assert x_ranges["c_Conv"] == Range(-10, 10)
    b_ranges = propagate(g, table_ranges(g, t, get_chip("bm1684")), get_chip("bm1684"))
    assert b_ranges["a_AveragePool"] == b_ranges["m_MaxPool"] == Range(-10, 10)
