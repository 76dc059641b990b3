"""Mixed-precision search: which layers to take out of INT8 so the outputs reach a target cosine.

    space = SearchSpace(evaluator, make_plan, float_mode="F16")     # core/search/space.py
    result = run_search(space, "greedy", expected_cos=0.9998, min_layer_cos=0.998)
    result.qtable, result.loss_table, print(result)

One module per search: `reference.py` (the tutorial's run_qtable walk), `greedy.py` (the better
search, seeded by the walk), `ranked.py` (`sensitivity`: ordered by sensitivity, reaches any
target the all-float plan reaches). `sensitivity.py` measures the per-layer table,
`patterns.py` the known-head pattern. `space.py` holds what they share: the search space over the
incremental evaluator (core/search/evaluator.py), trials, curves and results. Every cosine here
is a true cosine (the tools convert to the reference's 0.5+0.5*cos).
"""
from __future__ import annotations

from typing import Sequence

from ..errors import OptionError
from .greedy import greedy_search
from .ranked import ranked_search
from .reference import reference_search
from .space import SearchResult, SearchSpace

SEARCH_METHODS = ("reference", "greedy", "sensitivity")
# What a search that stopped short of the target suggests (reaches what all-float reaches).
REACHES_ANY = "sensitivity"


def run_search(space: SearchSpace, method: str, *, expected_cos: float, min_layer_cos: float,
               time_budget: float | None = None, max_float: int | None = None,
               ranking: Sequence[str] | None = None,
               start: Sequence[str] | None = None) -> SearchResult:
    """Run the search called `method` (`reference`, `greedy` or `sensitivity`); `ranking` (most
    sensitive layers first) and `start` (a pattern to start from) serve `sensitivity`."""
    if max_float is not None and max_float < 1:
        raise OptionError(f"max_float_layers {max_float} is not valid; give 1 or more")
    if time_budget is not None and not time_budget > 0:          # NaN too
        raise OptionError(f"time_budget {time_budget} is not valid; give a positive number of "
                          f"seconds")
    if method == "reference":
        result = reference_search(space, expected_cos=expected_cos, min_layer_cos=min_layer_cos,
                                  max_float=max_float)
    elif method == "greedy":
        result = greedy_search(space, expected_cos=expected_cos, min_layer_cos=min_layer_cos,
                               time_budget=time_budget, max_float=max_float)
    elif method == "sensitivity":
        return ranked_search(space, expected_cos=expected_cos, min_layer_cos=min_layer_cos,
                             time_budget=time_budget, max_float=max_float, ranking=ranking,
                             start=start)
    else:
        raise OptionError(f"unknown search '{method}'; choose one of {', '.join(SEARCH_METHODS)}")
    if not result.reached and not result.next_step:
        result.next_step = (f"target not reached: `--search {REACHES_ANY}` reaches any target "
                            f"the all-float plan reaches")
    return result
