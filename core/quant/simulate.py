"""Run a batch through a QuantPlan: every value as the chip computes it.

    y = simulate(plan, {"input_1": x})                      # graph outputs, float32
    every = simulate(plan, feeds, keep_all=True)             # every tensor, keys as the golden npz
    codes = simulate(plan, feeds, keep_all=True, codes=True) # int8 codes / float values (qtype.py)

Incremental re-evaluation (the mixed-precision search): pass values already computed, in the
plan's representation (`codes=True`), as `start`; only what they do not cover is computed.

    old = simulate(plan, feeds, keep_all=True, codes=True)
    new_plan = lowerer.plan("INT8", qtable2)
    stale = new_plan.stale(plan)
    y = simulate(new_plan, feeds, start={t: v for t, v in old.items() if t not in stale})
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from ..errors import ModelError, did_you_mean
from ..graph.interpreter import check_feeds
from .lowering import QuantPlan, Step


def simulate(plan: QuantPlan, feeds: Mapping[str, np.ndarray], outputs: Iterable[str] | None = None,
             *, keep_all: bool = False, codes: bool = False,
             start: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Values of `outputs` (graph outputs by default; every tensor with `keep_all`).

    Values are float32 (integer codes dequantized) unless `codes`, which returns them in the
    plan's representation. `start` maps tensor names to values in that representation that are
    taken as computed.
    """
    env: dict[str, np.ndarray] = dict(start or {})
    missing_inputs = [t for t in plan.inputs if t not in env]
    if missing_inputs:
        check_feeds(plan.graph, feeds)
        for t in missing_inputs:
            env[t] = np.asarray(feeds[t])
    asked = None if keep_all else list(plan.graph.outputs if outputs is None else outputs)
    wanted = plan.tensor_names() if keep_all else [plan.tensor(t) for t in asked]
    _check_names(plan, wanted)
    steps = _needed_steps(plan, wanted, env)
    keep = set(wanted)
    last_use = _last_uses(steps, keep)
    for i, step in enumerate(steps):
        _run_step(step, env)
        for t in last_use.get(i, ()):
            env.pop(t, None)
    # graph tensors the plan renames are returned under the name they were asked by (with
    # `keep_all`, under both names)
    names = dict(zip(asked, wanted)) if asked is not None else \
        {t: t for t in wanted} | {g: p for g, p in plan.aliases.items() if p in keep}
    if codes:
        return {t: env[w] for t, w in names.items() if w in env}
    return {t: plan.dequantize(w, env[w]) for t, w in names.items() if w in env}


def _check_names(plan: QuantPlan, wanted: list[str]) -> None:
    known = set(plan.tensor_names())
    for t in wanted:
        if t not in known:
            raise ModelError(f"no tensor named '{t}' in the plan of '{plan.graph.name}'"
                             f"{did_you_mean(t, known)}")


def _needed_steps(plan: QuantPlan, wanted: list[str], env: Mapping[str, np.ndarray]) -> list[Step]:
    """The steps that compute `wanted` from what `env` already holds, in plan order."""
    needed: set[str] = set()
    stack = [t for t in wanted if t not in env]
    seen: set[str] = set()
    while stack:
        t = stack.pop()
        if t in seen or t in env:
            continue
        seen.add(t)
        step = plan.producer(t)
        if step is None:
            raise ModelError(f"no value for graph input '{t}'")
        needed.add(step.name)
        stack.extend(step.inputs)
    return [s for s in plan.steps.values() if s.name in needed]


def _last_uses(steps: list[Step], keep: set[str]) -> dict[int, list[str]]:
    """Step index -> tensors that can be freed after it (not wanted, not read later)."""
    last: dict[str, int] = {}
    for i, s in enumerate(steps):
        for t in s.inputs:
            last[t] = i
        for t in s.outputs:
            last.setdefault(t, i)
    frees: dict[int, list[str]] = {}
    for t, i in last.items():
        if t not in keep:
            frees.setdefault(i, []).append(t)
    return frees


def _run_step(step: Step, env: dict[str, np.ndarray]) -> None:
    ins = [env[t] for t in step.inputs]
    try:
        outs = step.run(ins)
    except (TypeError, ValueError, IndexError) as e:
        raise ModelError(f"step '{step.name}' ({step.op_type}, {step.mode}) failed: {e}") from e
    for t, v in zip(step.outputs, outs):
        env[t] = v
