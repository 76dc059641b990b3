"""Calibration figures: one tensor's |x| histogram with its thresholds, and a whole table at a glance.

    fig = histogram_figure(stats.tensors["conv3_Conv"], method_thresholds(stats, "conv3_Conv"),
                           table=table["conv3_Conv"].threshold)
    fig = table_figure(table)
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

METHOD_COLORS = {"kl": "#d73027", "max": "#4d4d4d", "percentile9999": "#1a9850", "mse": "#4575b4",
                 "aciq_gauss": "#984ea3", "aciq_laplace": "#ff7f00"}


def histogram_figure(stats, thresholds: Mapping[str, float], *, table: float | None = None,
                     table_label: str = "table"):
    """The tensor's |x| histogram (log counts, exact zeros left out) with |min|, max and each
    method's threshold drawn as vertical lines; `table` adds the table's threshold."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.subplots()
    if stats.hist is not None:
        edges = np.arange(len(stats.hist) + 1) * stats.width - stats.width / 2
        ax.stairs(np.maximum(stats.hist, 0.5), np.maximum(edges, 0), fill=True, color="#bdbdbd",
                  baseline=0.5, label=f"|x| ({stats.samples} samples)")
    ax.set_yscale("log")
    ax.axvline(abs(stats.min), color="black", linestyle=":", label=f"|min| {abs(stats.min):.4g}")
    ax.axvline(stats.max, color="black", linestyle="-.", label=f"max {stats.max:.4g}")
    for method, value in thresholds.items():
        if method == "max":
            continue              # the absmax: already drawn as |min| or max
        ax.axvline(value, color=METHOD_COLORS.get(method, "#000000"), linestyle="--",
                   label=f"{method} {value:.4g}")
    if table is not None:
        ax.axvline(table, color=METHOD_COLORS["kl"], linewidth=2, label=f"{table_label} {table:.4g}")
    ax.set_xlim(0, stats.absmax * 1.02)
    ax.set_xlabel("|x|")
    ax.set_ylabel("count")
    ax.set_title(f"{stats.name}: histogram of |x| and thresholds", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    return fig


def table_figure(table, *, title: str | None = None):
    """Bars of threshold / absmax per tensor in table order: how much of each range INT8 covers."""
    from matplotlib.figure import Figure
    names = list(table.rows)
    ratios = [row.threshold / max(abs(row.min), abs(row.max), 1e-30) for row in table.rows.values()]
    fig = Figure(figsize=(max(6.0, 0.22 * len(names) + 1.5), 4.2), layout="constrained")
    ax = fig.subplots()
    ax.bar(range(len(names)), ratios, color=METHOD_COLORS["kl"])
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.axhline(1.0, color="black", linewidth=0.5)
    ax.set_ylabel("threshold / absmax")
    ax.set_title(title or f"calibration: threshold / absmax of {len(names)} tensors", fontsize=10)
    return fig
