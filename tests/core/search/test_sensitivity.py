"""Per-layer sensitivity, the sensitivity search and the head pattern, on a tiny model with two
fragile layers and a pair that matters only in combination (searchkit.combination_onnx)."""
from __future__ import annotations

import contextlib
import threading
from types import SimpleNamespace

import pytest
from searchkit import combination_graph, combination_onnx, max_table, sample_folder, samples
from tpushell.core import Session
from tpushell.core.commands import build_parser, execute
from tpushell.core.progress import Progress
from tpushell.core.quant.lowering import Lowerer
from tpushell.core.search import run_search
from tpushell.core.search.evaluator import Evaluator
from tpushell.core.search.patterns import output_tail
from tpushell.core.search.ranked import PATIENCE, PRUNE_PATIENCE, _Run
from tpushell.core.search.sensitivity import layer_sensitivity
from tpushell.core.search.space import SearchResult, SearchSpace

TARGET = 0.998
NEEDED = {"f1_Conv", "f2_Conv", "g1_Conv", "g2_Conv"}


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    graph = combination_graph(tmp_path_factory.mktemp("combination"))
    lowerer = Lowerer(graph, max_table(graph, samples(graph, 20, seed=5)), "bm1684x")
    return graph, lowerer, samples(graph, 6)


def space_of(kit) -> SearchSpace:
    graph, lowerer, feeds = kit
    return SearchSpace(Evaluator(graph, feeds), lambda q: lowerer.plan("INT8", q))


def table_of(kit, **kw):
    graph, lowerer, feeds = kit
    return layer_sensitivity(Evaluator(graph, feeds), lambda mode, q: lowerer.plan(mode, q),
                             graph.op_names, "F16", **kw)


def test_the_model_needs_all_four_layers(kit):
    space = space_of(kit)
    int8 = space.evaluate([])
    assert int8 < 0.5
    assert space.evaluate(sorted(NEEDED)) > TARGET
    for op in NEEDED:                       # any one of them back in INT8 breaks the outputs
        assert space.evaluate(sorted(NEEDED - {op})) < 0.7
    for op in NEEDED:                       # and no one of them alone helps
        assert space.evaluate([op]) <= int8 + 1e-9


def test_sensitivity_equals_full_evaluations(kit):
    graph, lowerer, feeds = kit
    table = table_of(kit, workers=1)
    ev = Evaluator(graph, feeds)
    for op in graph.op_names:
        ev.set_plan(lowerer.plan("INT8", _q({op: "F16"})))
        assert table.rows[op].float_only == pytest.approx(ev.loss(), abs=1e-7), op
        ev.set_plan(lowerer.plan("F32", _q({op: "INT8"})))
        assert table.rows[op].int8_only == pytest.approx(ev.loss(), abs=1e-7), op
    assert table.int8_cos == pytest.approx(space_of(kit).evaluate([]), abs=1e-7)
    # the four layers the target needs lose most alone in INT8, though none gains alone in float
    assert set(table.ranked()[:4]) == NEEDED
    assert all(table.rows[op].int8_only < 0.9 for op in NEEDED)
    assert all(table.rows[op].float_only <= table.int8_cos + 1e-9 for op in NEEDED)
    assert table.complete and table.computed == 2 * len(graph.op_names)


def test_int8_only_trials_run_their_f32_tail_on_onnxruntime(kit, monkeypatch):
    pytest.importorskip("onnxruntime")
    from tpushell.core.quant import engine
    made, build = [], engine.f32_tail
    monkeypatch.setattr(engine, "f32_tail", lambda *a: made.append(build(*a)) or made[-1])
    fast = table_of(kit, workers=1)
    assert sum(t is not None for t in made) == len(kit[0].op_names) - 1   # all but the last op
    monkeypatch.setenv("TPUSHELL_ENGINE", "numpy")
    slow = table_of(kit, workers=1)
    for op, r in slow.rows.items():
        assert fast.rows[op].int8_only == pytest.approx(r.int8_only, abs=1e-7), op
        assert fast.rows[op].float_only == r.float_only, op


def _q(modes):
    from tpushell.core.calibration.tables import QTable
    return QTable(modes)


def test_threads_give_the_same_table(kit):
    one, two = table_of(kit, workers=1), table_of(kit, workers=2)
    assert {op: (r.int8_only, r.float_only) for op, r in one.rows.items()} == \
        {op: (r.int8_only, r.float_only) for op, r in two.rows.items()}


def test_an_interrupted_table_keeps_its_rows_and_the_next_call_measures_the_rest(kit):
    stop = threading.Event()
    seen = []

    def progress(task, done, total):
        seen.append(done)
        if done >= 3:
            stop.set()
    part = table_of(kit, workers=1, stop=stop, progress=progress)
    measured = {op: r for op, r in part.rows.items() if r.float_only is not None}
    assert part.interrupted and not part.complete and len(measured) == 3
    assert "interrupted: 0 of 10" in str(part)
    rest = table_of(kit, workers=1, known=part.rows)
    assert rest.complete and rest.computed == 2 * len(part.rows) - 3


@pytest.mark.parametrize("method", ["greedy", "sensitivity"])
def test_every_search_but_the_walk_reaches_the_target(kit, method):
    result = run_search(space_of(kit), method, expected_cos=TARGET, min_layer_cos=0.99)
    assert result.reached and NEEDED <= set(result.qtable), result
    # pruned: every layer left is needed
    space = space_of(kit)
    for op in result.qtable:
        assert space.evaluate([f for f in result.qtable if f != op]) <= TARGET, op


def test_the_sensitivity_search_falls_back_to_bisection(kit):
    result = run_search(space_of(kit), "sensitivity", expected_cos=TARGET, min_layer_cos=0.99)
    decisions = [t.decision for t in result.trials]
    assert any(d.startswith("reverted: outputs") for d in decisions)
    bisect = [t for t in result.trials if t.layer.startswith("bisect")]
    ranked = [t for t in bisect if t.layer.endswith("ranked")]
    # the full list first, then log2(10) halvings at most, over the ranking and then over the
    # model order from either end (the full list is the same set: not evaluated again)
    assert bisect[0].layer == "bisect: all ranked" and 2 <= len(ranked) <= 1 + 4
    assert len(bisect) <= 1 + 3 * 4 and sum(t.layer.startswith("bisect: all") for t in bisect) == 1
    assert "bisection" in result.reason and set(result.qtable) == NEEDED
    assert result.all_float_cos > TARGET
    assert all(t.floats is not None and t.kept is not None for t in result.trials)
    assert result.curve[-1].cos == result.mix_cos and result.curve[0].floats == 0


def test_the_reference_walk_says_which_search_reaches_the_target(kit):
    result = run_search(space_of(kit), "reference", expected_cos=TARGET, min_layer_cos=0.99)
    assert not result.reached
    assert "--search sensitivity" in result.next_step and result.next_step in str(result)


def test_a_measured_ranking_seeds_the_search(kit):
    ranking = table_of(kit, workers=1).ranked()
    result = run_search(space_of(kit), "sensitivity", expected_cos=TARGET, min_layer_cos=0.99,
                        ranking=ranking)
    assert result.reached and set(result.qtable) == NEEDED


def test_an_unreachable_target_is_called_so_with_the_all_float_cosine(kit):
    result = run_search(space_of(kit), "sensitivity", expected_cos=1.0, min_layer_cos=0.99)
    assert not result.reached and "not reachable" in result.reason
    assert result.all_float_cos == pytest.approx(max(t.cos for t in result.trials))
    assert "even all-float reaches only" in result.next_step


def test_a_time_budget_keeps_the_best_plan_so_far(kit):
    result = run_search(space_of(kit), "sensitivity", expected_cos=TARGET, min_layer_cos=0.99,
                        time_budget=1e-9)
    assert "time budget" in result.reason and len(result.qtable) == 0


def test_the_head_pattern_is_the_tail_after_the_last_activation(kit):
    graph = kit[0]
    assert output_tail(graph) == ["g1_Conv", "g2_Conv"]
    result = run_search(space_of(kit), "sensitivity", expected_cos=TARGET, min_layer_cos=0.99,
                        start=output_tail(graph))
    assert result.reached and result.pattern == ["g1_Conv", "g2_Conv"]
    assert result.trials[0].decision.startswith("start: the head pattern's 2 layer(s)")
    assert "the target needs 2 of them" in str(result)


# ---- session and commands ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def session_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("combination_session")
    return sample_folder(root, combination_onnx(root / "combination.onnx"), 6)


def session(data) -> Session:
    model, folder, table = data
    s = Session()
    s.load(model)
    s.calibration = table
    s.use_data(folder)
    s.settings.set("samples", 6)
    return s


def run(s: Session, line: str):
    name, *rest = line.split()
    return execute(s, name, build_parser(name).parse_args(rest), line)


def test_sensitivity_command_is_cached_and_seeds_the_search(session_data):
    s = session(session_data)
    first = run(s, "sensitivity")
    assert first.data.computed == 20 and first.figure is not None
    assert set(first.column("layer")[:4]) == NEEDED
    again = run(s, "sensitivity")
    assert again.data.computed == 0 and again.column("int8 only") == first.column("int8 only")
    only = run(s, "sensitivity g*")
    assert only.column("layer") == ["g1_Conv", "g2_Conv"] or \
        set(only.column("layer")) == {"g1_Conv", "g2_Conv"}
    found = run(s, "qtable search --method sensitivity --expected_cos 0.998")
    assert set(found.data.qtable) == NEEDED and set(s.qtable) == NEEDED


def test_sensitivity_in_the_reference_scale(session_data):
    s = session(session_data)
    s.settings.set("cosine_scale", "reference")
    r = run(s, "sensitivity f1_Conv")
    assert r.column("int8 only")[0] == pytest.approx(0.5 + 0.5 * r.data.rows["f1_Conv"].int8_only)
    assert "0.5+0.5*cos" in r.title


def test_pattern_command_sets_the_tail_to_float_and_undo_reverts(session_data, tmp_path):
    s = session(session_data)
    shown = run(s, "pattern --show")
    assert shown.column("layer") == ["g1_Conv", "g2_Conv"] and len(s.qtable) == 0
    run(s, "pattern")
    assert s.qtable.modes == {"g1_Conv": "F16", "g2_Conv": "F16"}
    s.undo()
    assert len(s.qtable) == 0
    r = run(s, "qtable search --method sensitivity --expected_cos 0.998 --start pattern")
    assert r.data.pattern == ["g1_Conv", "g2_Conv"] and set(r.data.qtable) == NEEDED
    plot = run(s, f"sensitivity --top 3 -o {tmp_path / 'sens.png'}")
    assert (tmp_path / "sens.png").stat().st_size > 0 and "saved" in str(plot)


def test_a_large_float_set_loses_its_ends_by_bisection_before_pruning(kit):
    from tpushell.core.search.ranked import ranked_search
    graph = kit[0]
    result = ranked_search(space_of(kit), expected_cos=TARGET, start=graph.op_names)
    trims = [t for t in result.trials if t.layer.startswith("trim:")]
    assert trims and any(t.kept for t in trims)
    # every trim that kept the target dropped layers the target does not need
    assert all(t.decision.startswith("dropped") == t.kept for t in trims)
    assert result.reached and set(result.qtable) == NEEDED
    # fewer evaluations than dropping the 6 unneeded layers one by one after halving groups
    assert len(trims) <= 2 * 4


class _SpreadNoise:
    """A stand-in search space whose output cosine is a formula of the float set: every layer
    adds a little (INT8 noise spread over a region), none enough on its own."""

    class _Evaluator:
        @staticmethod
        def keeping():
            return contextlib.nullcontext()

    evaluator = _Evaluator()

    def __init__(self, layers: int, per_layer: float) -> None:
        self.layers = [f"l{i}" for i in range(layers)]
        self.per_layer, self.evaluations = per_layer, 0

    def use(self, floats):
        pass

    def evaluate(self, floats) -> float:
        self.evaluations += 1
        return 0.99 + self.per_layer * len(set(floats))

    def cost(self, floats):
        return SimpleNamespace(float_macs=0, bytes=0)


class _NeedsSome(_SpreadNoise):
    """A stand-in space that reaches the target exactly when every layer of `needed` is float."""

    def __init__(self, layers: int, needed) -> None:
        super().__init__(layers, 0.0)
        self.needed = set(needed)

    def evaluate(self, floats) -> float:
        self.evaluations += 1
        return 0.9995 if self.needed <= set(floats) else 0.99


def _run_of(space, weights=None, floats=()):
    """A ranked search's state on `space` towards 0.999 from 0.99, `floats` current."""
    result = SearchResult("sensitivity", None, 0.99, 0.99, 0.999, None, "F16", 1, "")
    run = _Run(space, result, float("inf"), weights or {op: 1.0 for op in space.layers})
    if floats:
        run.move(list(floats), space.evaluate(floats))
        space.evaluations = 0
    return run


def _grown(space):
    run = _run_of(space)
    with Progress(None, "growing", len(space.layers)) as bar:
        run.grow(space.layers, len(space.layers), bar)
    return run


def _pruned(space, weights):
    run = _run_of(space, weights, space.layers)
    with Progress(None, "pruning", len(space.layers)) as bar:
        run.prune(bar)
    return run


def test_growth_passes_over_gains_too_small_to_reach_the_target_in_time():
    """Gains of 1e-5 a layer against a gap of 9e-3 over 30 layers (3e-4 a layer needed): growth
    stops after PATIENCE measurements instead of walking the whole list."""
    space = _SpreadNoise(30, 1e-5)
    run = _grown(space)
    assert run.floats == [] and space.evaluations == PATIENCE
    assert "gained too little" in run.stopped
    assert [t.decision.split(" a layer")[0] for t in run.result.trials] == \
        ["reverted: outputs 0.990010 gain less than the 3.0e-04"] * 3 + \
        ["reverted: outputs 0.990010 gain less than the 3.3e-04"] * 3
    run = _grown(_SpreadNoise(30, 1e-3))             # enough a layer: growth takes them
    assert run.reached() and len(run.floats) == 10


def test_pruning_of_single_layers_stops_when_they_keep_being_needed():
    """30 float layers, all needed but two cheap ones: groups of 15, 7 and 3 cannot go (2 + 5 +
    10 evaluations), then single layers stop after PRUNE_PATIENCE needed ones in a row, saying
    so (the two are among the cheaper ones left)."""
    space = _NeedsSome(30, [f"l{i}" for i in range(30) if i not in (25, 28)])
    run = _pruned(space, {f"l{i}": 30.0 - i for i in range(30)})     # l0 costliest
    assert space.evaluations == 2 + 5 + 10 + PRUNE_PATIENCE
    assert len(run.floats) == 30 and f"the {30 - PRUNE_PATIENCE} cheaper one(s)" in run.pruning
    assert [t.decision.split(":")[0] for t in run.result.trials] == ["needed"] * (17 + PRUNE_PATIENCE)


def test_pruning_drops_every_layer_the_target_does_not_need():
    space = _NeedsSome(30, [f"l{i}" for i in range(0, 30, 3)])      # every third needed
    run = _pruned(space, {f"l{i}": 30.0 - i for i in range(30)})
    assert set(run.floats) == space.needed and not run.pruning
