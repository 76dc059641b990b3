"""Incremental evaluation: a change recomputes only what it must, and gives exactly the numbers
of a full recomputation."""
from __future__ import annotations

import numpy as np
import pytest
from searchkit import fragile_graph, max_table, samples
from tpushell.core.calibration.tables import QTable
from tpushell.core.errors import ModelError, OptionError
from tpushell.core.graph.interpreter import run
from tpushell.core.quant.lowering import Lowerer
from tpushell.core.search.evaluator import Evaluator, per_sample_cos


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    graph = fragile_graph(tmp_path_factory.mktemp("fragile"))
    lowerer = Lowerer(graph, max_table(graph, samples(graph, 20, seed=5)), "bm1684x")
    return graph, lowerer, samples(graph, 5)


def plan_of(kit, **modes):
    return kit[1].plan("INT8", QTable(dict(modes)))


def output_casts(graph) -> set[str]:
    """The casts of the graph outputs to F32: a check compares the outputs without them."""
    return {f"{t}_f32" for t in graph.outputs}


def full(kit, plan):
    """Every value and cosine from a fresh evaluator: the full recomputation."""
    graph, _, feeds = kit
    ev = Evaluator(graph, feeds)
    ev.set_plan(plan)
    return ({t: ev.value(t) for t in graph.op_names},
            {t: ev.layer_cos(t) for t in graph.op_names}, ev.output_cos())


def assert_same(ev, kit, plan):
    values, cos, outputs = full(kit, plan)
    for t in values:
        assert np.array_equal(ev.value(t), values[t]), t
        assert np.array_equal(ev.layer_cos(t), cos[t]), t
    assert ev.output_cos() == outputs


def test_reference_is_the_f32_interpreter(kit):
    graph, _, feeds = kit
    ev = Evaluator(graph, feeds, chunk_elements=300)      # several chunks per step
    expected = run(graph, feeds, keep_all=True)
    for t in graph.op_names:
        assert np.array_equal(ev.reference(t), expected[t]), t


def test_change_recomputes_only_downstream(kit):
    graph, _, feeds = kit
    ev = Evaluator(graph, feeds)
    ev.set_plan(plan_of(kit))
    ev.check()
    ran = ev.steps_run
    old, new = ev.plan, plan_of(kit, b_Conv="F16")
    stale = ev.set_plan(new)
    assert stale == new.stale(old)
    assert {ev.source(t) for t in stale} == {"f_l_LeakyRelu", "b_Conv", "b_l_LeakyRelu", "c_Conv"}
    assert all(ev.source(t) != "f_l_LeakyRelu" or new.producer(t).op == "b_Conv" for t in stale)
    ev.check()
    assert ev.steps_run - ran == len({new.producer(t).name for t in stale} - output_casts(graph))
    assert_same(ev, kit, new)


def test_noop_recheck_computes_nothing(kit):
    graph, _, feeds = kit
    ev = Evaluator(graph, feeds)
    ev.set_plan(plan_of(kit, f_Conv="F16"))
    first = ev.check(own=True)
    ran = ev.steps_run
    ev.set_plan(plan_of(kit, f_Conv="F16"))
    again = ev.check(own=True)
    assert ev.steps_run == ran and again.recomputed == 0
    assert again.layers == first.layers and again.own == first.own


def test_switching_back_reuses_stored_values(kit):
    graph, _, feeds = kit
    ev = Evaluator(graph, feeds)
    for modes in ({}, {"f_Conv": "F16"}, {}, {"f_Conv": "F16", "b_Conv": "F16"},
                  {"f_Conv": "F16"}):
        before = ev.steps_run
        ev.set_plan(plan_of(kit, **modes))
        ev.check()
        assert_same(ev, kit, plan_of(kit, **modes))
    # the last two plans were computed before: nothing ran for them
    assert ev.steps_run == before


def test_eviction_keeps_numbers_right(kit):
    graph, _, feeds = kit
    ev = Evaluator(graph, feeds, spare_bytes=0)          # nothing of other plans is kept
    ev.set_plan(plan_of(kit))
    ev.check()
    ev.set_plan(plan_of(kit, a_Conv="F16"))
    ev.check()
    ran = ev.steps_run
    ev.set_plan(plan_of(kit))                            # everything must be recomputed
    assert_same(ev, kit, plan_of(kit))
    assert ev.steps_run - ran == len(set(plan_of(kit).steps) - output_casts(graph))


def test_keeping_pins_a_plan(kit):
    graph, _, feeds = kit
    ev = Evaluator(graph, feeds, spare_bytes=0)
    ev.set_plan(plan_of(kit))
    ev.check()
    with ev.keeping():
        ev.set_plan(plan_of(kit, c_Conv="F16"))
        ev.check()
    ran = ev.steps_run
    ev.set_plan(plan_of(kit))
    ev.check()
    assert ev.steps_run == ran


def test_release_forgets_and_recomputes_identically(kit):
    graph, _, feeds = kit
    ev = Evaluator(graph, feeds)
    ev.set_plan(plan_of(kit))
    ev.check()
    held = ev.stored_bytes()
    ev.release(["a_Conv", "a_l_LeakyRelu"])
    assert ev.stored_bytes() < held
    assert_same(ev, kit, plan_of(kit))


def test_own_error_takes_inputs_from_f32(kit):
    graph, _, feeds = kit
    ev = Evaluator(graph, feeds)
    ev.set_plan(plan_of(kit))
    r = ev.check(own=True)
    # the fragile layer is bad on its own; the layers after it only inherit its error
    assert r.own["f_Conv"] < 0.5 and r.layers["b_Conv"] < 0.5 and r.own["b_Conv"] > 0.99
    # own error of b_Conv = its INT8 step on the F32 input, quantized
    plan = ev.plan
    step = plan.steps["b_Conv"]
    codes = plan.encode(step.inputs[0], ev.reference("f_l_LeakyRelu"))
    assert codes.dtype == np.int8
    out = step.run([codes])[0]
    assert np.array_equal(ev.own_cos("b_Conv"), per_sample_cos(out, ev.reference("b_Conv")))
    # a cosine of symmetric codes is that of their dequantized values
    assert np.allclose(ev.own_cos("b_Conv"), per_sample_cos(plan.dequantize("b_Conv", out),
                                                             ev.reference("b_Conv")), atol=1e-9)


def test_check_text_and_threshold_marks(kit):
    graph, _, feeds = kit
    ev = Evaluator(graph, feeds)
    ev.set_plan(plan_of(kit))
    r = ev.check(min_layer_cos=0.99, scale="reference")
    assert "f_Conv" in r.below and "a_Conv" not in r.below
    text = str(r)
    assert "0.5+0.5*cos" in text and "< 0.995000" in text
    assert f"{0.5 + 0.5 * r.outputs['c_Conv']:.6f}" in text


def test_bad_requests(kit):
    graph, _, feeds = kit
    ev = Evaluator(graph, feeds)
    with pytest.raises(OptionError, match="set_plan"):
        ev.value("a_Conv")
    ev.set_plan(plan_of(kit))
    with pytest.raises(ModelError, match="did you mean f_Conv"):
        ev.layer_cos("f_Con")
    with pytest.raises(ModelError, match="no op named"):
        ev.own_cos("nope")
    with pytest.raises(OptionError, match="same number"):
        Evaluator(graph, {"x": feeds["x"][:0]})
    with pytest.raises(ModelError, match="no samples"):
        Evaluator(graph, {})


def test_per_sample_cos_counts_nan_as_zero():
    a = np.ones((2, 3), np.float32)
    b = np.array([[1, 1, 1], [np.nan, 1, 1]], np.float32)
    assert per_sample_cos(a, b).tolist() == pytest.approx([1.0, 0.0])


def test_lean_evaluator_streams_the_reference(kit, monkeypatch):
    import tpushell.core.search.evaluator as evaluator
    graph, _, feeds = kit
    monkeypatch.setattr(evaluator, "STREAM_ELEMENTS", 2 * 8 * 64)     # 2 samples a chunk
    ev = Evaluator(graph, feeds, lean=True)
    expected = run(graph, feeds, keep_all=True)
    out = ev.reference("c_Conv")
    assert np.array_equal(out, expected["c_Conv"])
    # only the input and the asked-for tensor are stored
    assert ev.stored_bytes() == feeds["x"].nbytes + out.nbytes
    assert np.array_equal(ev.reference("b_Conv"), expected["b_Conv"])
    ev.set_plan(plan_of(kit))
    assert_same(ev, kit, plan_of(kit))


def test_lean_cosines_equal_the_full_ones(kit, monkeypatch):
    import tpushell.core.search.evaluator as evaluator
    graph, _, feeds = kit
    monkeypatch.setattr(evaluator, "STREAM_ELEMENTS", 2 * 8 * 64)
    monkeypatch.setattr(evaluator, "LEAN_KEEP_BYTES", 0)               # keep no F32 value
    lean = Evaluator(graph, feeds, lean=True)
    lean.set_plan(plan_of(kit, b_Conv="F16"))
    _, cos, outputs = full(kit, plan_of(kit, b_Conv="F16"))
    for t in graph.op_names:
        assert np.array_equal(lean.layer_cos(t), cos[t]), t
    assert lean.output_cos() == outputs
    ran = lean.steps_run
    lean.layer_cos("a_Conv")                       # cached cosine: nothing is recomputed
    assert lean.steps_run == ran


@pytest.mark.zoo
def test_yolov3_recheck_equals_a_full_recomputation(yolo_graph, golden, golden_input):
    """On the real model: one middle layer to F16 recomputes only what follows it, with exactly
    the numbers of a fresh evaluation."""
    from tpushell.core.calibration.tables import read_calibration_table
    lowerer = Lowerer(yolo_graph, read_calibration_table(golden / "tpumlir_cali_table"),
                      "bm1684x")
    feeds = {"input_1": np.concatenate([golden_input, golden_input[:, :, ::-1]])}
    ev = Evaluator(yolo_graph, feeds)
    ev.set_plan(lowerer.plan("INT8", QTable()))
    first = ev.check()
    changed = lowerer.plan("INT8", QTable({"conv5_Conv": "F16"}))
    stale = ev.set_plan(changed)
    assert {ev.source(t) for t in stale} == \
        {"pool9_MaxPool"} | {"conv5_Conv"} | yolo_graph.downstream(["conv5_Conv"])
    second = ev.check()
    assert second.recomputed < first.recomputed / 2
    fresh = Evaluator(yolo_graph, feeds)
    fresh.set_plan(changed)
    again = fresh.check()
    assert again.layers == second.layers and again.outputs == second.outputs
    unchanged = yolo_graph.op_names[:yolo_graph.position("conv5_Conv")]
    assert all(second.layers[op] == first.layers[op] for op in unchanged)


@pytest.mark.parametrize("mode", ["F16", "BF16"])
def test_float_values_are_stored_in_two_bytes_exactly(kit, mode):
    graph, _, feeds = kit
    plan = plan_of(kit, a_Conv=mode, f_Conv=mode, b_Conv=mode)
    ev = Evaluator(graph, feeds)
    ev.set_plan(plan)
    from tpushell.core.quant.simulate import simulate
    direct = simulate(plan, feeds, keep_all=True, codes=True)       # no evaluator, no packing
    values = {t: ev.value(t) for t in graph.op_names}
    for t in graph.op_names:
        assert values[t].dtype == direct[t].dtype and np.array_equal(values[t], direct[t]), t
    halves = {"f16": 2, "bf16": 2}
    expected = feeds["x"].nbytes + sum(ev.value(t).nbytes // halves.get(plan.types[t].kind, 1)
                                       for t in plan.tensor_names() if t != "x")
    assert ev.stored_bytes() == expected
    assert_same(ev, kit, plan)


def test_compiled_cosine_sums_match_the_numpy_ones(monkeypatch):
    """The numba kernel (one pass, vectorized float64 sums) and the three einsums agree to 1e-12
    on int8 / uint8 codes and float32 values, a non-contiguous view, an all-zero, a NaN and an
    inf sample, and an element type the kernel does not take (float16)."""
    pytest.importorskip("numba")
    from tpushell.core.search import evaluator
    rng = np.random.default_rng(3)
    b = rng.standard_normal((6, 4098)).astype(np.float32)
    b[1] = 0
    b[2, 7], b[3, 9] = np.nan, np.inf
    pairs = [(rng.integers(-128, 128, b.shape).astype(np.int8), b),
             (rng.integers(0, 256, b.shape).astype(np.uint8), b),
             ((b + rng.standard_normal(b.shape) * 0.1).astype(np.float32), b),
             (b[:, ::2], b[:, 1::2]), (b.astype(np.float16), b)]
    fast = [per_sample_cos(x, y) for x, y in pairs]
    monkeypatch.setattr(evaluator, "compiled", lambda fn, **kw: None)
    for (x, y), got in zip(pairs, fast):
        want = per_sample_cos(x, y)
        assert np.allclose(got, want, rtol=0, atol=1e-12), x.dtype
        assert got[1] == 0 and got[2] == 0 and got[3] == 0      # zero, NaN and inf samples


def test_f32_engine_reference_does_not_depend_on_what_asks_first(kit):
    """With `f32_engine` every F32 value comes from onnxruntime (within float rounding of the
    interpreter), so a check and layer-by-layer questions in model order agree exactly."""
    pytest.importorskip("onnxruntime")
    from tpushell.core.quant import engine
    graph, _, feeds = kit
    first = Evaluator(graph, feeds, f32_engine=True)
    first.set_plan(plan_of(kit))
    checked = first.check()
    walked = Evaluator(graph, feeds, f32_engine=True)
    walked.set_plan(plan_of(kit))
    assert {op: float(walked.layer_cos(op).mean()) for op in checked.layers} == checked.layers
    assert walked.output_cos() == checked.outputs
    fast = engine.f32_tensors(graph, feeds, graph.op_names)
    assert fast, "nothing ran on onnxruntime"
    expected = run(graph, feeds, keep_all=True)
    for t in graph.op_names:
        if t in fast:
            assert np.array_equal(walked.reference(t), fast[t]), t
        np.testing.assert_allclose(first.reference(t), expected[t], rtol=1e-5, atol=1e-5, err_msg=t)


def test_layer_cos_many_runs_onnxruntime_once(kit, monkeypatch):
    """A search's baseline compares every layer at once: one F32 run on onnxruntime for all of
    them, not one per layer (each run is the whole model)."""
    pytest.importorskip("onnxruntime")
    from tpushell.core.search import evaluator
    graph, _, feeds = kit
    calls = []
    real = evaluator.f32_tensors
    monkeypatch.setattr(evaluator, "f32_tensors",
                        lambda *a, **kw: calls.append(1) or real(*a, **kw))
    ev = Evaluator(graph, feeds, f32_engine=True)
    ev.set_plan(plan_of(kit))
    many = ev.layer_cos_many(graph.op_names)
    assert len(calls) == 1
    one_by_one = Evaluator(graph, feeds, f32_engine=True)
    one_by_one.set_plan(plan_of(kit))
    for op in graph.op_names:
        assert np.array_equal(one_by_one.layer_cos(op), many[op]), op
