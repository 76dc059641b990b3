"""Statistics collection and thresholds on tiny models built here, checked against numpy on all the
activations at once (which the streaming code never holds)."""
from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tpushell.core.calibration import calibrate as cal
from tpushell.core.calibration import thresholds as th
from tpushell.core.calibration.tables import CalibrationTable, CalRow
from tpushell.core.errors import CalibrationError, OptionError, TpuWarning
from tpushell.core.graph.interpreter import run
from tpushell.core.graph.onnx_import import import_onnx


def tiny_cnn(tmp_path, name="tiny"):
    """x -> Conv -> LeakyRelu -> MaxPool -> Conv -> Relu(-) (all zeros), plus Concat: 6 tensors."""
    rng = np.random.default_rng(7)
    w1 = numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.5, (4, 4, 1, 1)).astype(np.float32), "w2")
    neg = numpy_helper.from_array(np.array(-1.0, np.float32), "neg")
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("LeakyRelu", ["c1"], ["l1"], alpha=0.1),
        helper.make_node("MaxPool", ["l1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"]),
        helper.make_node("Abs", ["c2"], ["a2"]),
        helper.make_node("Mul", ["a2", "neg"], ["m2"]),
        helper.make_node("Relu", ["m2"], ["r2"]),                   # always 0
        helper.make_node("Concat", ["c2", "r2"], ["y"], axis=1),
    ]
    graph = helper.make_graph(nodes, name,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [w1, b1, w2, neg])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return import_onnx(path, name=name)


@pytest.fixture
def cnn(tmp_path):
    return tiny_cnn(tmp_path)


def samples(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 1 + i % 3, (1, 3, 8, 8)).astype(np.float32) for i in range(n)]


def source(xs, batch=1):
    def batches():
        for i in range(0, len(xs), batch):
            yield {"x": np.concatenate(xs[i:i + batch])}
    return batches


def all_tensors(graph, xs):
    """Every tensor over every sample, the way the streaming code must never do it."""
    out = run(graph, {"x": np.concatenate(xs)}, keep_all=True)
    out["x"] = np.concatenate(xs)
    return out


@pytest.mark.filterwarnings("ignore::tpushell.core.errors.TpuWarning")
def test_rows_are_graph_inputs_then_op_outputs(cnn):
    stats = cal.collect_statistics(cnn, source(samples(3)), 3, histogram="two_pass")
    assert list(stats.tensors) == cal.calibrated_tensors(cnn)
    assert list(stats.tensors)[:2] == ["x", "c1_Conv"]


def test_min_max_and_histogram_equal_numpy_on_all_activations(cnn):
    xs = samples(7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TpuWarning)
        stats = cal.collect_statistics(cnn, source(xs, batch=2), len(xs), histogram="two_pass")
    ref = all_tensors(cnn, xs)
    for name, s in stats.tensors.items():
        a = ref[name]
        if np.abs(a).max() <= 1e-5:
            continue
        assert (s.min, s.max) == (float(a.min()), float(a.max())), name
        assert s.samples == 7 and s.size == a.size // 7
        width = th.bin_width(s.absmax, 2048)
        t = np.abs(a.ravel())
        t = t[t != 0]
        expected, _ = np.histogram(np.floor(t / width + np.float32(0.5)), bins=2048, range=(0, 2047))
        assert np.array_equal(s.hist, expected), name


def test_statistics_do_not_depend_on_sample_order_or_batching(cnn):
    xs = samples(9, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TpuWarning)
        a = cal.collect_statistics(cnn, source(xs, 1), 9, histogram="two_pass")
        b = cal.collect_statistics(cnn, source(xs[::-1], 4), 9, histogram="two_pass")
    for name in a.tensors:
        sa, sb = a.tensors[name], b.tensors[name]
        assert (sa.min, sa.max, sa.width) == (sb.min, sb.max, sb.width)
        assert np.array_equal(sa.hist, sb.hist)


@pytest.mark.filterwarnings("ignore::tpushell.core.errors.TpuWarning")
@pytest.mark.parametrize("workers", [2, 3])
def test_one_pass_statistics_on_several_threads_equal_those_of_one(cnn, monkeypatch, workers):
    # The one-pass histogram depends on the sample order (ranges growing from sample to sample
    # add bins of the first sample's width), and so do the per-sample sums: each tensor must be
    # reduced in batch order whichever thread runs the batch.
    xs = [x * (1 + (7 * i) % 5) for i, x in enumerate(samples(12, seed=5))]
    monkeypatch.setattr(cal, "THREADS", 1)
    one = cal.collect_statistics(cnn, source(xs), 12, methods=cal.METHODS)
    monkeypatch.setattr(cal, "THREADS", workers)
    for trial in range(3):
        many = cal.collect_statistics(cnn, source(xs), 12, methods=cal.METHODS)
        for name, a in one.tensors.items():
            b = many.tensors[name]
            assert (a.min, a.max, a.width, a.range, a.samples) == (b.min, b.max, b.width, b.range, b.samples)
            assert np.array_equal(a.hist, b.hist) and a.per_sample == b.per_sample
            assert np.array_equal(np.sort(a.top), np.sort(b.top))


@pytest.mark.parametrize("bad", [0, 3, 7])
def test_a_failing_batch_on_several_threads_is_the_error_reported(cnn, monkeypatch, bad):
    # later batches wait for its tensors: they must stop, not hang, and not hide its error
    monkeypatch.setattr(cal, "THREADS", 3)
    xs = samples(9)
    xs[bad][0, 1, 2, 3] = np.inf
    with pytest.raises(CalibrationError, match=f"tensor 'x' has NaN or infinite values in batch {bad + 1}$"):
        cal.collect_statistics(cnn, source(xs), 9)


@pytest.mark.parametrize("workers, slack", [(1, 1.3), (2, 2.5)])
def test_memory_does_not_grow_with_the_number_of_samples(cnn, monkeypatch, workers, slack):
    # with two workers the peak depends on how many batches happen to overlap: a looser bound,
    # still far below the 10x of keeping every sample
    monkeypatch.setattr(cal, "THREADS", workers)

    def peak(n):
        xs = samples(n)
        tracemalloc.start()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TpuWarning)
            cal.collect_statistics(cnn, source(xs), n, methods=cal.METHODS, replay_bytes=0)
        size = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return size
    peak(2)
    assert peak(60) < slack * peak(6)


@pytest.mark.filterwarnings("ignore::tpushell.core.errors.TpuWarning")
def test_replayed_outputs_give_the_same_statistics_within_the_budget(cnn, monkeypatch):
    xs = samples(6, seed=8)
    chosen = []
    end_batch = cal._Replay.end_batch

    def spy(self, index, n):
        end_batch(self, index, n)
        kept = [o for op, outs in self.kept[index].items() if op != cal._Replay.INPUTS for o in outs]
        chosen.append((set(self.chosen), sum(o.nbytes for o in kept)))
    monkeypatch.setattr(cal._Replay, "end_batch", spy)
    budget = 6 * 4 * 4 * 4 * 4 * 2          # room for two 4x4x4 float outputs of every sample
    kept = cal.collect_statistics(cnn, source(xs), 6, replay_bytes=budget, histogram="two_pass")
    fresh = cal.collect_statistics(cnn, source(xs), 6, replay_bytes=0, histogram="two_pass")
    ops, first_batch_bytes = chosen[0]
    assert ops and first_batch_bytes * 6 <= budget
    for name, s in kept.tensors.items():
        assert np.array_equal(s.hist, fresh.tensors[name].hist), name


@pytest.mark.filterwarnings("ignore::tpushell.core.errors.TpuWarning")
def test_with_room_the_input_batches_are_kept_and_not_loaded_again(cnn):
    xs = samples(5, seed=4)
    calls = []

    def batches():
        calls.append(1)
        return source(xs, 2)()
    kept = cal.collect_statistics(cnn, batches, 5, replay_bytes=1 << 30, histogram="two_pass")
    assert len(calls) == 1
    fresh = cal.collect_statistics(cnn, source(xs, 2), 5, replay_bytes=0, histogram="two_pass")
    for name, s in kept.tensors.items():
        assert np.array_equal(s.hist, fresh.tensors[name].hist), name


def test_an_all_zero_tensor_gets_1e5_and_a_warning(cnn):
    with pytest.warns(TpuWarning, match="r2_Relu.*all zeros"):
        stats = cal.collect_statistics(cnn, source(samples(2)), 2)
    table = cal.calibration_table(stats, "kl")
    row = table["r2_Relu"]
    assert (row.threshold, row.min, row.max) == (1e-5, 0.0, 1e-5)
    assert table["m2_Mul"].min < 0


@pytest.mark.filterwarnings("ignore::tpushell.core.errors.TpuWarning")
def test_kl_threshold_is_the_kld_of_the_histogram_clamped_to_absmax(cnn):
    stats = cal.collect_statistics(cnn, source(samples(4)), 4)
    table = cal.calibration_table(stats, "kl")
    for name, s in stats.tensors.items():
        if s.absmax > 1e-5:
            expected = min(th.kld_threshold(s.hist, s.width), s.absmax)
            assert table[name].threshold == pytest.approx(expected), name
            assert (table[name].min, table[name].max) == (s.min, s.max)
    assert table.header["sample number"] == "4"


@pytest.mark.filterwarnings("ignore::tpushell.core.errors.TpuWarning")
def test_other_methods_equal_numpy_on_all_activations(cnn):
    xs = samples(5, seed=11)
    stats = cal.collect_statistics(cnn, source(xs, 2), len(xs), methods=cal.METHODS)
    ref = all_tensors(cnn, xs)
    names = list(stats.tensors)
    tables = {m: cal.calibration_table(stats, m) for m in cal.METHODS}
    for index, name in enumerate(names):
        a = ref[name]
        absmax = float(np.abs(a).max())
        if absmax <= 1e-5:
            continue
        per = a.reshape(len(xs), -1)
        assert tables["max"][name].threshold == absmax
        if name != "x":
            mse = np.mean([th.mse_threshold(r) for r in per])
            assert tables["mse"][name].threshold == pytest.approx(min(mse, absmax), rel=1e-6)
            gauss = np.mean([th.aciq_gauss_threshold(float(r.min()), float(r.max()), r.size) for r in per])
            assert tables["aciq_gauss"][name].threshold == pytest.approx(min(gauss, absmax), rel=1e-6)
            lap = np.mean([th.aciq_laplace_threshold(r) for r in per])
            assert tables["aciq_laplace"][name].threshold == pytest.approx(min(lap, absmax), rel=1e-6)
        else:
            assert tables["mse"][name].threshold == absmax     # graph inputs keep absmax
        p = th.percentile_of(index, len(names))
        k = th.percentile_tail_length(a.size, p)
        ordered = np.sort(a.ravel())
        lo, hi = th.percentile_from_tails(ordered[::-1][:k], ordered[:k], a.size, p)
        row = tables["percentile9999"][name]
        assert (row.min, row.max) == pytest.approx((lo, hi))
        assert row.threshold == pytest.approx(max(abs(lo), abs(hi)))


def test_non_finite_activations_are_an_error_naming_the_tensor_and_batch(cnn):
    xs = samples(3)
    xs[1][0, 0, 0, 0] = np.nan
    with pytest.raises(CalibrationError, match="tensor 'x' has NaN or infinite values in batch 2"):
        cal.collect_statistics(cnn, source(xs), 3)
    with pytest.raises(CalibrationError, match="'x' has NaN .* in b.jpg"):
        cal.collect_statistics(cnn, source(xs), 3, describe=lambda i: "abc"[i] + ".jpg")


def test_bad_method_and_bins_are_option_errors(cnn):
    with pytest.raises(OptionError, match="cali_method 'kld'.*kl, max"):
        cal.collect_statistics(cnn, source(samples(1)), 1, methods=("kld",))
    with pytest.raises(OptionError, match="histogram_bin_num 64"):
        cal.collect_statistics(cnn, source(samples(1)), 1, bins=64)


def test_interrupt_from_the_progress_callback_stops_the_run(cnn):
    def stop(task, done, total):
        if done == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        cal.collect_statistics(cnn, source(samples(5)), 5, progress=stop)


def test_progress_reports_both_passes(cnn):
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TpuWarning)
        cal.collect_statistics(cnn, source(samples(3)), 3, progress=lambda *a: seen.append(a), histogram="two_pass")
    assert seen[0] == ("calibration statistics", 0, 3) and ("calibration statistics", 3, 3) in seen
    assert seen[-1] == ("calibration histograms", 3, 3)


def test_check_table_names_missing_and_extra_rows(cnn):
    table = CalibrationTable({t: CalRow(1.0, -1.0, 1.0) for t in cal.calibrated_tensors(cnn)},
                             path="t.table")
    cal.check_table(cnn, table)
    table.rows["other"] = CalRow(1.0, 0.0, 1.0)
    with pytest.warns(TpuWarning, match="t.table: 1 row.*other"):
        cal.check_table(cnn, table)
    del table.rows["c1_Conv"]
    with pytest.raises(CalibrationError, match="t.table: no row for 1 tensor.*c1_Conv"):
        cal.check_table(cnn, table)


# ---- the Session API and the figures ------------------------------------------------------------
@pytest.fixture
def yolo_session(tiny_yolo, photo):
    from tpushell.core import Session
    s = Session()
    s.load(tiny_yolo, output_names=["transpose_output1", "transpose_output"], scale=[1 / 255] * 3,
           pixel_format="rgb")
    return s


def test_session_calibrate_save_load_and_plot(yolo_session, photo, tmp_path):
    import shutil
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        shutil.copy(photo, data / f"{i}.jpg")
    s = yolo_session
    table = s.calibrate(data, tune_num=1, all_methods=True)
    assert s.calibration is table and table.header["tune number"] == "1"
    fig = s.plot_histogram("coarse_Conv")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    for method in cal.METHODS:
        assert any(label.startswith(method + " ") for label in labels), (method, labels)
    assert any(label.startswith("table (tuned)") for label in labels)
    bars = s.plot_calibration().axes[0].patches
    assert len(bars) == len(table)
    path = s.save_calibration(tmp_path / "table")
    again = s.load_calibration(path)
    flat = lambda t: [v for r in t.rows.values() for v in (r.threshold, r.min, r.max)]
    assert list(again) == list(table) and flat(again) == pytest.approx(flat(table), abs=1e-7)
    assert s.calibration_stats is not None     # the table just written: its histograms stay
    other, first = tmp_path / "other", next(iter(table.rows))
    other.write_text((tmp_path / "table").read_text().replace(f"{table.rows[first].threshold:.7f}",
                                                    f"{table.rows[first].threshold * 2:.7f}", 1))
    s.load_calibration(other)
    assert s.calibration_stats is None         # another table: no histograms of its own
    with pytest.raises(Exception, match="no calibration statistics"):
        s.plot_histogram("coarse_Conv")


def test_session_load_calibration_rejects_a_table_of_another_model(yolo_session, tmp_path):
    path = tmp_path / "other"
    path.write_text("# genetated time: x\n###\ninput_1 1.0 0.0 1.0\nconv0_Conv 2.0 -1.0 2.0\n")
    with pytest.raises(CalibrationError, match=r"other: no row for 4 tensor\(s\) .*coarse_Conv"):
        yolo_session.load_calibration(path)
    assert yolo_session.calibration is None


def test_a_histogram_plot_says_when_the_method_kept_no_histogram(yolo_session, photo, tmp_path):
    import shutil
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(photo, data / "0.jpg")
    yolo_session.calibrate(data, method="percentile9999")
    with pytest.raises(Exception, match=r"\(percentile9999\) kept no histogram .*--all_methods"):
        yolo_session.plot_histogram("coarse_Conv")
    yolo_session.calibrate(data, tune_num=0)                  # kl, not tuned
    labels = [t.get_text() for t in yolo_session.plot_histogram("coarse_Conv").axes[0].get_legend().get_texts()]
    assert any(label.startswith("table ") for label in labels) and not any("tuned" in x for x in labels)
