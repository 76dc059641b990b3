"""Figures of the mixed-precision workflow: per-layer cosine bars with the thresholds, and the
search curve (output cosine against the number of float layers and against their cost).

    cosine_figure(session.check(own=True), min_layer_cos=0.998, expected_cos=0.9998)
    search_curve_figure(session.search_qtable(0.9998, 0.998, method="greedy"))

Cosines are drawn in the result's display scale (true, or the reference's 0.5+0.5*cos).
"""
from __future__ import annotations

from typing import Any

from ..metrics import reference_cos

INT8_COLOR = "#4575b4"
FLOAT_COLOR = "#fdae61"
OWN_COLOR = "#1a1a1a"
THRESHOLD_COLOR = "#d73027"


def _scale(scale: str):
    return reference_cos if scale == "reference" else (lambda c: c)


def cosine_figure(check: Any, *, min_layer_cos: float | None = None,
                  expected_cos: float | None = None):
    """Bars of each layer's accumulated cosine to F32 (orange where the layer is not INT8),
    dots for its own error when the check has them, dashed lines at the thresholds (true
    cosines given, drawn in the check's scale)."""
    from matplotlib.figure import Figure
    shown = _scale(check.scale)
    names = list(check.layers)
    values = [shown(check.layers[n]) for n in names]
    fig = Figure(figsize=(max(6.0, 0.28 * len(names) + 2), 4.2), layout="constrained")
    ax = fig.subplots()
    colors = [INT8_COLOR if check.modes.get(n) == "INT8" else FLOAT_COLOR for n in names]
    ax.bar(range(len(names)), values, color=colors)
    low = min(values + [shown(c) for c in check.outputs.values()])
    if check.own:
        own = [shown(check.own[n]) for n in names]
        ax.plot(range(len(names)), own, "o", color=OWN_COLOR, markersize=3,
                label="own error (inputs from F32)")
        low = min(low, min(own))
    min_layer_cos = check.min_layer_cos if min_layer_cos is None else min_layer_cos
    for value, label in ((min_layer_cos, "min_layer_cos"), (expected_cos, "expected_cos")):
        if value is not None:
            ax.axhline(shown(value), color=THRESHOLD_COLOR, linestyle="--", linewidth=1,
                       label=f"{label} {shown(value):.6f}")
            low = min(low, shown(value))
    ax.set_ylim(low - (1 - low) * 0.1, 1 + (1 - low) * 0.02)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    scale = "0.5+0.5*cos" if check.scale == "reference" else "cosine"
    ax.set_ylabel(f"{scale} to F32")
    outs = ", ".join(f"{t} {shown(c):.6f}" for t, c in check.outputs.items())
    ax.set_title(f"per-layer {scale} on {check.samples} sample(s) (blue INT8, orange float); "
                 f"outputs: {outs}", fontsize=8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower left")
    return fig


def search_curve_figure(result: Any, scale: str = "true"):
    """Output cosine after each accepted change of a search, against the number of float
    layers and against the MACs they run in float; the target drawn dashed."""
    from matplotlib.figure import Figure
    shown = _scale(scale)
    points = result.curve
    cos = [shown(p.cos) for p in points]
    fig = Figure(figsize=(9.0, 3.8), layout="constrained")
    by_count, by_macs = fig.subplots(1, 2, sharey=True)
    by_count.plot([p.floats for p in points], cos, "o-", color=INT8_COLOR)
    by_macs.plot([p.float_macs / 1e6 for p in points], cos, "o-", color=FLOAT_COLOR)
    for ax in (by_count, by_macs):
        ax.axhline(shown(result.expected_cos), color=THRESHOLD_COLOR, linestyle="--",
                   linewidth=1, label=f"target {shown(result.expected_cos):.6f}")
        ax.grid(alpha=0.3)
    by_count.set_xlabel(f"{result.float_mode} layers")
    by_macs.set_xlabel(f"MMACs in {result.float_mode} per sample")
    by_count.set_ylabel("output 0.5+0.5*cos" if scale == "reference" else "output cosine")
    by_count.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{result.method} search on {result.samples} sample(s): {result.reason}; "
                 f"final {shown(result.mix_cos):.6f} with {len(result.qtable)} layer(s)",
                 fontsize=9)
    return fig
