"""The auto-tuner: its walk over the ops, and its choice against a brute-force search written here."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tpushell.core.calibration import thresholds as th
from tpushell.core.calibration import tuning
from tpushell.core.calibration.tables import CalibrationTable, CalRow
from tpushell.core.graph.interpreter import run
from tpushell.core.graph.onnx_import import import_onnx
from tpushell.core.ops import eval_op
from tpushell.core.quantmath import fake_quant_weights


def imported(tmp_path, name, nodes, inits, outputs=("y",), shape=(1, 3, 6, 6)):
    """The graph of `nodes` on input x of `shape`, saved as ONNX and imported."""
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in outputs],
                              inits)
    path = tmp_path / f"{name}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return import_onnx(path)


@pytest.fixture
def branchy(tmp_path):
    """x -> Relu a; a -> Conv c1 and Conv c2 (a has two consumers); Add(c1, c2) is the output."""
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(rng.normal(0, 0.4, (4, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.normal(0, 0.4, (4, 3, 1, 1)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("Conv", ["a", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["a", "w2"], ["c2"]),
             helper.make_node("Add", ["c1", "c2"], ["y"])]
    return imported(tmp_path, "branchy", nodes, inits)


def heavy_tailed(n, seed=1):
    """Samples whose few large values make the KLD cut far below absmax (tuning then matters)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 3, 6, 6)).astype(np.float32)
    x[:, 0, 0, 0] = 9.0
    return x


def kld_table(graph, feeds, kld_fraction=0.3):
    """Rows with the observed ranges and a 'KLD' threshold at a fraction of absmax."""
    every = run(graph, feeds, keep_all=True) | dict(feeds)
    rows = {}
    for name in graph.tensor_names():
        a = every[name]
        absmax = float(np.abs(a).max())
        rows[name] = CalRow(kld_fraction * absmax, float(a.min()), float(a.max()))
    return CalibrationTable(rows)


def brute_force(node_fn, inputs, weights, ref, kld, absmax, samples):
    """The tuner's choice written out directly: all 21 candidates, strict improvement from k=0."""
    best, best_d = kld, None
    for k in range(21):
        t = kld + k * (absmax - kld) / 20
        q = [np.clip(np.rint(x * np.float32(127 / t)), -128, 127) / np.float32(127 / t) for x in inputs]
        out = node_fn(*q, *weights)
        d = np.mean([np.linalg.norm(r - o) / np.abs(r).sum()
                     for r, o in zip(ref.reshape(samples, -1), out.reshape(samples, -1))])
        if best_d is None or d < best_d:
            best, best_d = t, d
    return best


def test_walk_tunes_unvisited_producers_and_retunes_the_first_when_all_are_done(branchy, monkeypatch):
    events = []
    part = tuning._Part
    monkeypatch.setattr(tuning, "_Part", lambda op, target, *rest: events.append((op, target))
                        or part(op, target, *rest))
    feeds = {"x": heavy_tailed(2)}
    tuning.tune_table(branchy, kld_table(branchy, feeds), feeds)
    # the evaluations run on worker threads, in any order, candidates split over the workers
    parts = min(tuning.THREADS, 21)
    assert all(events.count(e) == parts for e in events)
    assert sorted(set(events)) == [("a_Relu", "x"), ("c1_Conv", "a_Relu"), ("c2_Conv", "a_Relu"),
                              ("y_Add", "c1_Conv"), ("y_Add", "c2_Conv")]


def test_tuned_thresholds_equal_a_brute_force_search(branchy):
    feeds = {"x": heavy_tailed(3)}
    table = kld_table(branchy, feeds)
    kld = {n: r.threshold for n, r in table.rows.items()}
    absmax = {n: max(abs(r.min), abs(r.max)) for n, r in table.rows.items()}
    every = run(branchy, feeds, keep_all=True) | feeds
    samples = 3
    assert tuning.tune_table(branchy, table, feeds) == samples

    w = branchy.weights
    conv1 = lambda a: eval_op("Conv", a, fake_quant_weights(w["w1"]), w["b1"], pads=[1, 1, 1, 1])
    conv2 = lambda a: eval_op("Conv", a, fake_quant_weights(w["w2"]))
    expected_x = brute_force(lambda x: np.maximum(x, 0), [every["x"]], [], every["a_Relu"],
                             kld["x"], absmax["x"], samples)
    # a has two consumers: each proposes a threshold, the larger is kept (only raising)
    by_c1 = brute_force(conv1, [every["a_Relu"]], [], every["c1_Conv"], kld["a_Relu"],
                        absmax["a_Relu"], samples)
    by_c2 = brute_force(conv2, [every["a_Relu"]], [], every["c2_Conv"], kld["a_Relu"],
                        absmax["a_Relu"], samples)
    # both inputs of the Add are quantized with the candidate of the producer being tuned
    add = lambda p, q: p + q
    by_add = {t: brute_force(add, [every["c1_Conv"], every["c2_Conv"]], [], every["y_Add"], kld[t],
                             absmax[t], samples) for t in ("c1_Conv", "c2_Conv")}
    assert table["x"].threshold == pytest.approx(expected_x)
    assert table["a_Relu"].threshold == pytest.approx(max(by_c1, by_c2))
    assert table["c1_Conv"].threshold == pytest.approx(by_add["c1_Conv"])
    assert table["c2_Conv"].threshold == pytest.approx(by_add["c2_Conv"])
    assert table["y_Add"].threshold == kld["y_Add"]            # the graph output is never tuned
    assert table["x"].threshold > kld["x"]                     # the outlier makes tuning matter


def test_tuned_thresholds_are_kld_plus_whole_steps(branchy):
    feeds = {"x": heavy_tailed(2, seed=4)}
    table = kld_table(branchy, feeds, kld_fraction=0.4)
    kld = {n: r.threshold for n, r in table.rows.items()}
    tuning.tune_table(branchy, table, feeds)
    for name, row in table.rows.items():
        absmax = max(abs(row.min), abs(row.max))
        steps = (row.threshold - kld[name]) / ((absmax - kld[name]) / 20)
        assert steps == pytest.approx(round(steps), abs=1e-6) and 0 <= round(steps) <= 20


@pytest.mark.parametrize("chunk", [1, 3 * 6 * 6 * 4 * 3])   # one sample a call; 3 samples
def test_stacking_candidates_and_splitting_samples_changes_nothing(branchy, monkeypatch, chunk):
    feeds = {"x": heavy_tailed(4, seed=9)}
    whole = kld_table(branchy, feeds)
    tuning.tune_table(branchy, whole, feeds)
    monkeypatch.setattr(tuning, "CHUNK_BYTES", chunk)
    split = kld_table(branchy, feeds)
    tuning.tune_table(branchy, split, feeds)
    assert {n: r.threshold for n, r in whole.rows.items()} == \
        pytest.approx({n: r.threshold for n, r in split.rows.items()})


def test_ranges_of_001_or_less_are_not_tuned(branchy):
    feeds = {"x": heavy_tailed(2)}
    table = kld_table(branchy, feeds)
    absmax = max(abs(table["x"].min), abs(table["x"].max))
    table["x"].threshold = absmax - 0.01
    tuning.tune_table(branchy, table, feeds)
    assert table["x"].threshold == absmax - 0.01


def test_weights_are_fake_quantized_per_output_channel():
    w = np.random.default_rng(0).normal(0, 1, (3, 5)).astype(np.float32)
    node = type("N", (), {"op_type": "MatMul", "attrs": {}})()
    axis = tuning.weight_channel_axis(node)
    assert np.array_equal(tuning.fake_quant_operand(w, axis), fake_quant_weights(w.T).T)
    for column in range(5):      # each output column has its own scale: its max stays exact
        assert np.abs(tuning.fake_quant_operand(w, axis)[:, column]).max() == \
            pytest.approx(np.abs(w[:, column]).max())


def test_tune_candidates_match_the_reference_regression_row():
    # Reference C.4: input_1 KLD 0.93797 (1920 of 2047 bins of 1.000008) + 19 of 20 steps = 0.996906
    kld = 1.000008 * 1920 / 2047
    assert th.tune_candidates(kld, 1.000008)[19] == pytest.approx(0.996906, abs=1e-6)


@pytest.fixture
def selecting(tmp_path):
    """x -> Conv c -> MaxPool p -> Resize (nearest, x2) r -> Concat(c, r) k -> Transpose t -> Relu y:
    every op after the Conv only picks, moves or zeroes values."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.normal(0, 0.4, (4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Resize", ["p", "", "scales"], ["r"], mode="nearest"),
             helper.make_node("Concat", ["c", "r"], ["k"], axis=1),
             helper.make_node("Transpose", ["k"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("Relu", ["t"], ["y"])]
    return imported(tmp_path, "selecting", nodes, inits)


@pytest.mark.parametrize("chunk", [tuning.CHUNK_BYTES, 1])      # all samples at once; one by one
def test_ops_that_select_values_give_the_same_distances_without_running(selecting, monkeypatch, chunk):
    """Quantizing E's output instead of running E on quantized inputs is exact, not close."""
    monkeypatch.setattr(tuning, "CHUNK_BYTES", chunk)
    feeds = {"x": heavy_tailed(3, seed=2)}
    seen: dict[str, dict] = {"short": {}, "full": {}}
    distances = tuning._Tuner.distances

    def record(into):
        def wrapped(self, node, ins, ref, candidates):
            d = distances(self, node, ins, ref, candidates)
            into[node.name, float(candidates[0])] = (candidates.copy(), d.copy())
            return d
        return wrapped
    shortcut = tuning._Tuner._selected_distances
    skipped: list[str] = []
    monkeypatch.setattr(tuning._Tuner, "_selected_distances", lambda self, ref, candidates:
                        skipped.append(ref.shape) or shortcut(self, ref, candidates))
    monkeypatch.setattr(tuning._Tuner, "distances", record(seen["short"]))
    short = kld_table(selecting, feeds)
    tuning.tune_table(selecting, short, feeds)
    # every E but the Conv took the shortcut (for each part of its candidates)
    assert len(skipped) == 5 * min(tuning.THREADS, 21)
    monkeypatch.setattr(tuning, "SELECTING_OPS", set())
    monkeypatch.setattr(tuning._Tuner, "distances", record(seen["full"]))
    full = kld_table(selecting, feeds)
    tuning.tune_table(selecting, full, feeds)
    assert sorted({op for op, _ in seen["short"]}) == ["c_Conv", "k_Concat", "p_MaxPool", "r_Resize",
                                                       "t_Transpose", "y_Relu"]
    assert seen["short"].keys() == seen["full"].keys()
    for name, (candidates, d) in seen["short"].items():
        assert np.array_equal(candidates, seen["full"][name][0]), name
        assert np.array_equal(d, seen["full"][name][1]), name
    assert {n: r.threshold for n, r in short.rows.items()} == {n: r.threshold for n, r in full.rows.items()}


def test_a_concat_with_a_constant_or_a_crop_and_resize_runs_the_op(tmp_path):
    """Values the quantization does not reach (a constant input, a crop's fill value) rule the
    shortcut out."""
    const = numpy_helper.from_array(np.full((1, 1, 4, 4), 1.5, np.float32), "k")
    roi = numpy_helper.from_array(np.array([0, 0, .1, .1, 1, 1, .9, .9], np.float32), "roi")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("Concat", ["a", "k"], ["c"], axis=1),
             helper.make_node("Resize", ["a", "roi", "scales"], ["r"], mode="nearest",
                              coordinate_transformation_mode="tf_crop_and_resize",
                              extrapolation_value=1.5),
             helper.make_node("Resize", ["a", "", "scales"], ["n"], mode="nearest")]
    g = imported(tmp_path, "g", nodes, [const, roi, scales], outputs=("c", "r", "n"), shape=[1, 2, 4, 4])
    quantized = {"a_Relu"}
    by_name = {n.name: n for n in g.nodes}
    assert not tuning._selects_values(g, by_name["c_Concat"], quantized)
    assert not tuning._selects_values(g, by_name["r_Resize"], quantized)
    assert tuning._selects_values(g, by_name["n_Resize"], quantized)
