"""Figures of the mixed-precision workflow: per-layer cosine bars with the thresholds, and the
search curve (output cosine against the number of float layers and against their cost).

    cosine_figure(session.check(own=True), min_layer_cos=0.998, expected_cos=0.9998)
    search_curve_figure(session.search_qtable(0.9998, 0.998, method="greedy"))

Cosines are drawn in the result's display scale (true, or the reference's 0.5+0.5*cos).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..metrics import reference_cos

INT8_COLOR = "#4575b4"
FLOAT_COLOR = "#fdae61"
OWN_COLOR = "#1a1a1a"
THRESHOLD_COLOR = "#d73027"


def _scale(scale: str):
    return reference_cos if scale == "reference" else (lambda c: c)


def _error(cos: float) -> float:
    """1 - cos, kept above zero for the log axis (a layer can match F32 exactly)."""
    return max(1.0 - cos, 1e-9)


def _cos_ticks(ax: Any) -> None:
    """Label the 1-cos log axis with the cosines themselves (1e-3 reads 0.999)."""
    from matplotlib.ticker import FuncFormatter, LogLocator
    ax.yaxis.set_major_locator(LogLocator(base=10))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{1 - v:.{max(0, round(-np.log10(v)))}f}"
                                               if v < 1 else "0"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def cosine_figure(check: Any, *, min_layer_cos: float | None = None,
                  expected_cos: float | None = None):
    """Bars of each layer's error to F32 (1 - accumulated cosine, log axis labelled in cosines:
    taller is worse; orange where the layer is not INT8), dots for its own error when the check
    has them, the layer threshold dashed and the output target dotted (true cosines given, drawn
    in the check's scale), the legend outside the bars."""
    from matplotlib.figure import Figure
    shown = _scale(check.scale)
    names = list(check.layers)
    errors = [_error(shown(check.layers[n])) for n in names]
    fig = Figure(figsize=(max(6.0, 0.28 * len(names) + 2), 4.6), layout="constrained")
    ax = fig.subplots()
    colors = [INT8_COLOR if check.modes.get(n) == "INT8" else FLOAT_COLOR for n in names]
    from matplotlib.patches import Patch
    handles = [Patch(color=INT8_COLOR, label="INT8 layer"), Patch(color=FLOAT_COLOR, label="float layer")]
    min_layer_cos = check.min_layer_cos if min_layer_cos is None else min_layer_cos
    lines = [(v, label, style) for v, label, style in ((min_layer_cos, "min_layer_cos", "--"),
             (expected_cos, "expected_cos (outputs)", ":")) if v is not None]
    # the axis spans the bars and thresholds; a smaller own error (a float layer's is ~0) sits
    # on the bottom edge instead of stretching the axis over decades nobody reads
    bottom = min(errors + [_error(shown(v)) for v, _, _ in lines]) / 4
    ax.bar(range(len(names)), [e - bottom for e in errors], bottom=bottom, color=colors)
    if check.own:
        own = [max(_error(shown(check.own[n])), bottom) for n in names]
        handles += ax.plot(range(len(names)), own, "o", color=OWN_COLOR, markersize=3,
                           clip_on=False, label="own error (inputs from F32; at the bottom: below the axis)")
    for value, label, style in lines:
        handles.append(ax.axhline(_error(shown(value)), color=THRESHOLD_COLOR, linestyle=style,
                                  linewidth=1.5, label=f"{label} {shown(value):.6f}"))
    ax.set_yscale("log")
    ax.set_ylim(bottom, 1.5 * max(errors + [_error(shown(v)) for v, _, _ in lines]))
    _cos_ticks(ax)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_xlim(-0.6, len(names) - 0.4)
    scale = "0.5+0.5*cos" if check.scale == "reference" else "cosine"
    ax.set_ylabel(f"{scale} to F32 (log of 1 - cos; taller = worse)")
    outs = ", ".join(f"{t} {shown(c):.6f}" for t, c in check.outputs.items())
    ax.set_title(f"per-layer {scale} on {check.samples} sample(s), each the mean over the samples;"
                 f"\noutputs: {outs}", fontsize=8)
    fig.legend(handles=handles, fontsize=7, loc="outside lower center", ncols=3)
    return fig


def _phases(result: Any) -> list[tuple[str, list[int]]]:
    """The curve's points split into the phases drawn as separate lines: adding float layers,
    then dropping those not needed (the float count falls); each phase starts where the
    previous one ended, so the line does not fold back on itself."""
    points = result.curve
    phases: list[tuple[str, list[int]]] = [("adding float layers", [0])] if points else []
    for i in range(1, len(points)):
        name = "dropping unneeded layers" if points[i].floats < points[i - 1].floats \
            else "adding float layers"
        if name != phases[-1][0]:
            phases.append((name, [i - 1]))
        phases[-1][1].append(i)
    return phases


def _reverted(result: Any) -> list[tuple[int, float]]:
    """(float layers, output cosine) of each trial the search did not keep: from the trial's
    own plan size when the search recorded it, else counted from the kept layers before it."""
    points, floats = [], 0
    for t in result.trials:
        undone = t.kept is False or (t.kept is None and t.decision.startswith("reverted"))
        if undone:
            points.append((t.floats if t.floats is not None else floats + len(t.added), t.cos))
        elif t.floats is not None:
            floats = t.floats
        elif "dropped" in t.decision:
            floats -= 1
        elif "swapped" not in t.decision:
            floats += len(t.added)
    return points


def search_curve_figure(result: Any, scale: str = "true"):
    """Output cosine after each accepted change of a search, against the number of float
    layers and against the MACs they run in float: one line per phase (adding, dropping),
    reverted trials faint, the chosen table starred, the target dotted, the legend outside."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    shown = _scale(scale)
    points = result.curve
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    by_count, by_macs = fig.subplots(1, 2, sharey=True)
    styles = {"adding float layers": ("o-", INT8_COLOR), "dropping unneeded layers": ("s--", FLOAT_COLOR)}
    for name, idx in _phases(result):
        marker, color = styles[name]
        for ax, x in ((by_count, lambda p: p.floats), (by_macs, lambda p: p.float_macs / 1e6)):
            ax.plot([x(points[i]) for i in idx], [shown(points[i].cos) for i in idx], marker,
                    color=color, label=name if ax is by_count else None)
    reverted = _reverted(result)
    if reverted:
        by_count.plot([x for x, _ in reverted], [shown(c) for _, c in reverted], "x", color="grey",
                      alpha=0.45, label=f"trial not kept ({len(reverted)})")
    chosen_macs = result.cost.float_macs / 1e6 if result.cost is not None else (
        points[-1].float_macs / 1e6 if points else 0)
    for ax, x in ((by_count, len(result.qtable)), (by_macs, chosen_macs)):
        ax.plot([x], [shown(result.mix_cos)], "*", color=THRESHOLD_COLOR, markersize=14,
                markeredgecolor="black", zorder=5,
                label=f"chosen: {len(result.qtable)} layer(s), {shown(result.mix_cos):.6f}"
                if ax is by_count else None)
        ax.axhline(shown(result.expected_cos), color=THRESHOLD_COLOR, linestyle=":", linewidth=1.5,
                   label=f"target {shown(result.expected_cos):.6f}" if ax is by_count else None)
        ax.grid(alpha=0.3)
    by_count.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_count.set_xlabel(f"{result.float_mode} layers")
    by_macs.set_xlabel(f"MMACs in {result.float_mode} per sample")
    unit = "0.5+0.5*cos" if scale == "reference" else "cosine"
    by_count.set_ylabel(f"output {unit} (mean over outputs and samples)")
    fig.legend(fontsize=7, loc="outside lower center", ncols=5)
    fig.suptitle(f"{result.method} search on {result.samples} sample(s): {result.reason}; "
                 f"final {shown(result.mix_cos):.6f} with {len(result.qtable)} layer(s)",
                 fontsize=9)
    return fig
