"""The per-layer sensitivity bars: which layers hurt the outputs in INT8, and by how much.

    sensitivity_figure(session.sensitivity(), top=30)

Two bars per layer, most sensitive first: the output cosine lost when only that layer is INT8
(others F32), and the output cosine gained over all-INT8 when only that layer is in float
(others INT8). Both are distances in true cosine, drawn on a log scale because a broken layer
loses a thousand times more than a harmless one.
"""
from __future__ import annotations

from typing import Any

LOSS_COLOR = "#d73027"
GAIN_COLOR = "#4575b4"
FLOOR = 1e-9           # a log axis cannot show 0: differences below this are drawn at it


def sensitivity_figure(table: Any, top: int = 30):
    """Bars of the `top` most sensitive layers of a SensitivityTable (core/search/sensitivity.py)."""
    from matplotlib.figure import Figure
    names = table.ranked()[:top]
    rows = [table.rows[n] for n in names]
    loss = [max(FLOOR, 1.0 - r.int8_only) if r.int8_only is not None else FLOOR for r in rows]
    gain = [max(FLOOR, r.float_only - table.int8_cos) if r.float_only is not None else FLOOR
            for r in rows]
    fig = Figure(figsize=(8.0, max(3.0, 0.26 * len(names) + 1.4)), layout="constrained")
    ax = fig.subplots()
    ys = list(range(len(names)))
    ax.barh([y - 0.2 for y in ys], loss, height=0.4, color=LOSS_COLOR,
            label="output cos lost with only this layer INT8 (others F32)")
    ax.barh([y + 0.2 for y in ys], gain, height=0.4, color=GAIN_COLOR,
            label=f"output cos gained with only this layer {table.float_mode} (others INT8)")
    ax.set_xscale("log")
    ax.set_yticks(ys, [f"{n} ({r.op_type})" for n, r in zip(names, rows)], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("true cosine difference (log scale)")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(fontsize=7, loc="outside lower center")   # below the axes: never over a bar
    ax.set_title(f"layer sensitivity on {table.samples} sample(s), top {len(names)} of "
                 f"{len(table.rows)}; all-INT8 output cos {table.int8_cos:.6f}", fontsize=9)
    return fig
