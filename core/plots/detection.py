"""The side-by-side detection figure: one panel per model, what changed against the reference.

Reference boxes are solid; in the other panels matched boxes are solid, boxes the model gained are
dashed green and boxes it lost (found by the reference only) are dotted red.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

GAINED_COLOR = "#1a9850"
LOST_COLOR = "#d73027"
LABEL_SIZE = 11        # box labels readable when the figure is shown at notebook width


def _box(ax: Any, det: Any, color: Any, style: str, text: str) -> None:
    from matplotlib.patches import Rectangle
    x0, y0, x1, y1 = det.box
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color,
                           linewidth=2, linestyle=style))
    ax.text(x0, y0, text, color="white", fontsize=LABEL_SIZE, fontweight="bold", va="bottom",
            bbox={"facecolor": color, "edgecolor": "none", "pad": 2, "alpha": 0.85})


def _rgb(class_id: int) -> tuple[float, float, float]:
    from ..vision.draw import class_color
    return tuple(c / 255 for c in class_color(class_id))


def _panel(ax: Any, image: Any, title: str, solid: Sequence[Any], gained: Sequence[Any] = (),
           lost: Sequence[Any] = ()) -> None:
    ax.imshow(image)
    ax.set_title(title, fontsize=11)
    ax.set_axis_off()
    for det in solid:
        _box(ax, det, _rgb(det.class_id), "-", det.label)
    for det in gained:
        _box(ax, det, GAINED_COLOR, "--", "+ " + det.label)
    for det in lost:
        _box(ax, det, LOST_COLOR, ":", "lost " + det.label)


def detection_figure(comparison: Any):
    """A Figure with one panel per model of a `core.vision.detect.DetectionComparison`."""
    from matplotlib.figure import Figure

    from ..graph.preprocess import read_image
    image = read_image(comparison.image, "rgb")
    names = list(comparison.results)
    h, w = image.shape[:2]
    fig = Figure(figsize=(4.2 * len(names), 4.2 * h / w + 0.8), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    ref = comparison.reference
    _panel(axes[0], image, f"{ref} (reference): {len(comparison.results[ref])} object(s)",
           comparison.results[ref])
    for ax, name in zip(axes[1:], names[1:]):
        diff = comparison.diffs[name]
        drift = ", ".join(f"{m.ref.name} {m.drift:+.3f}" for m in diff.matched)
        title = (f"{name}: {len(diff.detections)} object(s), lost {len(diff.lost)}, "
                 f"gained {len(diff.gained)}" + (f"\nscore drift {drift}" if drift else ""))
        _panel(ax, image, title, [m.other for m in diff.matched], diff.gained, diff.lost)
    fig.suptitle(f"detections on {os.path.basename(comparison.image)} (solid: also found by "
                 f"{ref}; dashed green: gained; dotted red: lost)", fontsize=11)
    return fig
