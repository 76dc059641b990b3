"""The reference search (v1.3 run_qtable with our fixes) and the greedy search, on a tiny model
with one fragile layer."""
from __future__ import annotations

import pytest
from searchkit import fragile_graph, max_table, overflow_graph, samples
from tpushell.core.calibration.tables import format_loss_table, read_loss_table, write_loss_table
from tpushell.core.errors import ModelError, OptionError
from tpushell.core.quant.lowering import Lowerer
from tpushell.core.search import run_search
from tpushell.core.search.evaluator import Evaluator
from tpushell.core.search.greedy import greedy_search, seed_units
from tpushell.core.search.reference import reference_search
from tpushell.core.search.space import SearchSpace, check_cos, parse_compare_layers

SEARCHES = {
    "reference": lambda space, target: reference_search(space, expected_cos=target,
                                                        min_layer_cos=0.99),
    "greedy": lambda space, target: greedy_search(space, expected_cos=target, min_layer_cos=0.99),
}


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    graph = fragile_graph(tmp_path_factory.mktemp("fragile"))
    lowerer = Lowerer(graph, max_table(graph, samples(graph, 20, seed=5)), "bm1684x")
    return graph, lowerer, samples(graph, 6)


def space_of(kit, **kw) -> SearchSpace:
    graph, lowerer, feeds = kit
    return SearchSpace(Evaluator(graph, feeds), lambda q: lowerer.plan("INT8", q), **kw)


@pytest.mark.parametrize("method", SEARCHES)
def test_every_search_keeps_the_fragile_layer_in_float(kit, method):
    space = space_of(kit)
    result = SEARCHES[method](space, 0.999)
    assert "f_Conv" in result.qtable and result.qtable["f_Conv"] == "F16"
    assert result.reached and result.reason == "target reached"
    assert result.int8_cos < 0.5 < 0.999 < result.mix_cos
    # the reported cosine is that of the final plan, evaluated from scratch
    graph, lowerer, feeds = kit
    fresh = Evaluator(graph, feeds)
    fresh.set_plan(lowerer.plan("INT8", result.qtable))
    assert fresh.loss() == result.mix_cos


def test_greedy_needs_no_more_float_layers_than_the_reference(kit):
    ref = SEARCHES["reference"](space_of(kit), 0.999)
    greedy = SEARCHES["greedy"](space_of(kit), 0.999)
    assert len(greedy.qtable) <= len(ref.qtable)
    assert list(greedy.qtable) == ["f_Conv"]
    assert greedy.curve[0].floats == 0 and greedy.curve[-1].cos == greedy.mix_cos
    assert greedy.mix_cos > 0.999 and [t.decision for t in greedy.trials] == \
        ["walk: target reached", "dropped: not needed"]


def test_reference_walk_sets_the_layer_and_its_consumers(kit):
    result = SEARCHES["reference"](space_of(kit), 0.999)
    assert list(result.qtable) == ["f_Conv", "f_l_LeakyRelu"]
    assert [t.decision for t in result.trials] == ["target reached"]
    # the loss table lists every candidate, worst first; the walk stopped at f_Conv
    rows = result.loss_table.rows
    assert {r.layer for r in rows} == set(kit[0].op_names)
    assert rows[0].layer == "f_Conv" and rows[0].visited
    assert [r.cos for r in rows] == sorted(r.cos for r in rows)
    assert {r.layer for r in rows if r.visited} == {"a_Conv", "a_l_LeakyRelu", "f_Conv"}


@pytest.mark.parametrize("method", SEARCHES)
def test_int8_already_good_enough_gives_an_empty_qtable(kit, method):
    result = SEARCHES[method](space_of(kit), 0.1)
    assert len(result.qtable) == 0 and result.mix_cos == result.int8_cos
    assert "already meets the target" in result.reason
    assert len(result.loss_table) == len(kit[0].op_names)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_reference_reverts_a_trial_worse_than_int8(tmp_path):
    graph = overflow_graph(tmp_path)
    feeds = samples(graph, 4)
    lowerer = Lowerer(graph, max_table(graph, feeds), "bm1684x")
    space = SearchSpace(Evaluator(graph, feeds), lambda q: lowerer.plan("INT8", q))
    result = reference_search(space, expected_cos=0.99999999, min_layer_cos=0.99999999)
    # F16 overflows on g: the trial scores 0 (a NaN output) and is reverted
    assert [(t.layer, t.cos, t.decision) for t in result.trials] == \
        [("g_Conv", 0.0, f"reverted: outputs 0.000000 < INT8 {result.int8_cos:.6f}")]
    assert len(result.qtable) == 0 and result.mix_cos == result.int8_cos > 0.999


def test_float_limit_stops_the_reference_walk(kit):
    space = space_of(kit)
    result = reference_search(space, expected_cos=0.9999999, min_layer_cos=0.9999999,
                              max_float=1)
    assert "more than 1 float layers" in result.reason
    assert not result.reached


def test_greedy_time_budget_keeps_the_best_so_far(kit):
    result = greedy_search(space_of(kit), expected_cos=0.999, min_layer_cos=0.99, time_budget=1e-9)
    assert "time budget" in result.reason
    assert list(result.qtable) == ["f_Conv", "f_l_LeakyRelu"]      # the walk's, not pruned


def test_greedy_seeds_a_run_when_the_walk_finds_nothing(kit, monkeypatch):
    """A walk that tries nothing (its min_layer_cos below every cosine): ranked units seed the
    greedy, which finds the fragile layer."""
    import tpushell.core.search.greedy as search_greedy
    monkeypatch.setattr(search_greedy, "reference_search", lambda space, **kw: reference_search(
        space, **{**kw, "min_layer_cos": -1.0}))
    result = greedy_search(space_of(kit), expected_cos=0.999, min_layer_cos=0.99)
    assert result.trials[0].decision == "added" and "f_Conv" in result.trials[0].added
    assert result.reached and list(result.qtable) == ["f_Conv"]
    assert "f_Conv" in list(result.ranking)[0].split("+")


@pytest.mark.parametrize("method", SEARCHES)
def test_lean_release_mode_gives_the_same_result(kit, method):
    graph, lowerer, feeds = kit
    a = SEARCHES[method](space_of(kit), 0.999)
    lean = Evaluator(graph, feeds, lean=True, spare_bytes=0)
    b = SEARCHES[method](SearchSpace(lean, lambda q: lowerer.plan("INT8", q), release=True), 0.999)
    assert a.qtable.modes == b.qtable.modes and a.mix_cos == b.mix_cos
    assert [r.cos for r in a.loss_table] == [r.cos for r in b.loss_table]


def test_units_pair_a_layer_with_its_consumers(kit):
    space = space_of(kit)
    space.evaluate([])
    found = seed_units(space, space.candidates())
    assert ("f_Conv",) in found and ("f_Conv", "f_l_LeakyRelu") in found
    assert ("c_Conv",) in found and not any(u[0] == "c_Conv" and len(u) > 1 for u in found)


def test_progress_is_reported(kit):
    seen = []
    space = space_of(kit, progress=lambda task, done, total: seen.append((task, done, total)))
    greedy_search(space, expected_cos=0.999, min_layer_cos=0.99)
    assert [task for task, done, total in seen if done == 0] == \
        ["mixed-precision search", "adding float layers"]
    last = {task: (done, total) for task, done, total in seen}
    assert all(done == total for done, total in last.values())


def test_loss_table_round_trip(kit, tmp_path):
    result = SEARCHES["reference"](space_of(kit), 0.999)
    table = result.loss_table
    table.chip = "bm1684x"
    path = tmp_path / "full_loss_table.txt"
    write_loss_table(path, table)
    text = path.read_text()
    assert "No.0   : Layer: f_Conv" in text and "# chip: bm1684x  mix_mode: F16" in text
    back = read_loss_table(path)
    assert [r.layer for r in back] == [r.layer for r in table]
    assert [r.visited for r in back] == [r.visited for r in table]
    assert [round(r.cos, 5) for r in back] == [round(r.cos, 5) for r in table]
    assert back.sample_number == 6 and back.mix_mode == "F16"
    assert format_loss_table(back).count("No.") == len(table)


def test_reads_the_reference_loss_table(golden):
    table = read_loss_table(golden / "tpumlir_qtable_loss.txt")
    assert len(table) == 13 and table.sample_number == 30 and table.chip == "bm1684x"
    assert table.rows[0].layer == "conv3_leaky_LeakyRelu"
    assert table.rows[0].cos == pytest.approx(2 * 0.993343 - 1)
    assert [r.layer for r in table.sorted("layer")][:2] == ["conv0_Conv", "conv0_leaky_LeakyRelu"]


def test_bad_targets_and_compare_layers(kit):
    for bad in (0, -0.5, 1.5, "x"):
        with pytest.raises(OptionError, match="expected_cos"):
            check_cos(bad, "--expected_cos")
    assert check_cos("1", "--expected_cos") == 1.0
    assert parse_compare_layers("a:0.3,b:0.7") == {"a": 0.3, "b": 0.7}
    assert parse_compare_layers("a,b") == {"a": 1.0, "b": 1.0}
    assert parse_compare_layers("") is None
    with pytest.raises(OptionError, match="sum to 1"):
        parse_compare_layers("a:0.3,b:0.3")
    with pytest.raises(OptionError, match="rate"):
        parse_compare_layers("a:x")
    with pytest.raises(ModelError, match="did you mean"):
        space_of(kit, rates={"f_Con": 1.0})
    with pytest.raises(Exception, match="sort"):
        read_loss_table.__globals__["LossTable"]().sorted("size")


def test_float_cap_of_the_greedy_search(kit):
    result = greedy_search(space_of(kit), expected_cos=0.9999999, min_layer_cos=0.9999999,
                           max_float=2)
    assert len(result.qtable) <= 2 and "f_Conv" in result.qtable
    assert "within 2 float layers" in result.reason or "no remaining layer" in result.reason
    with pytest.raises(OptionError, match="max_float_layers 0"):
        from tpushell.core.search import run_search
        run_search(space_of(kit), "greedy", expected_cos=0.99, min_layer_cos=0.99, max_float=0)


def test_hard_cap_stops_the_walk_before_passing_it(kit):
    result = reference_search(space_of(kit), expected_cos=0.9999999, min_layer_cos=0.9999999,
                              max_float=1, hard_cap=True)
    assert len(result.qtable) == 0 and "would pass the cap of 1" in result.reason


def test_swap_at_the_cap_trades_a_layer_for_a_better_neighbour(kit):
    """Two float layers that do nothing at a cap of 2: the one missed least goes back to INT8
    and the fragile layer next to the other takes its place."""
    from tpushell.core.search.greedy import _Budget, _Search
    space = space_of(kit)
    walk = reference_search(space, expected_cos=0.99999999, min_layer_cos=-1.0)
    floats = ["b_Conv", "f_l_LeakyRelu"]
    walk.qtable, walk.mix_cos = space.qtable(floats), space.evaluate(floats)
    search = _Search(space, walk, space.graph.op_names, _Budget(0.0, None), cap=2)
    search.swap()
    swaps = [t for t in walk.trials if t.decision == "swapped"]
    assert swaps[0].layer == "-b_Conv+f_Conv"             # then on while it keeps improving
    assert "f_Conv" in search.floats and len(search.floats) == 2 and search.cos > 0.99
    assert [t.cos for t in swaps] == sorted(t.cos for t in swaps)


@pytest.mark.parametrize("budget", [-5.0, 0.0, float("nan")])
@pytest.mark.parametrize("method", ["greedy", "sensitivity"])
def test_a_time_budget_that_is_not_positive_is_refused(kit, method, budget):
    with pytest.raises(OptionError, match=r"time_budget .* is not valid; give a positive"):
        run_search(space_of(kit), method, expected_cos=0.999, min_layer_cos=0.99,
                   time_budget=budget)
