"""Interactive re-check latency (issue 5, acceptance 3; issue 14, acceptance 3).

    python benchmarks/recheck_latency.py [--samples 10] [--zoo ../shared]
                                         [--model nudenet_yolov8n_320 --calibrate 10]

A session with the tutorial model (or --model, any shared model), the reference's calibration
table (or with --calibrate N our own of the first N COCO images) and the working set of 10
COCO images. After a first full check, one middle layer at a time is set to F16 and the full
re-check (outputs + every per-layer cosine) is timed, then a no-op re-check, an undo and a redo.
Beside it: the same check computed from scratch (a fresh evaluator, what a tool without
incremental evaluation must do), and the ratio. Targets: re-check <= 1.0 s, no-op <= 0.1 s.
"""
from __future__ import annotations

import argparse
import statistics
import time

from models import BY_NAME, load_average
from zoo import shared_dir

from tpushell.core import Session
from tpushell.core.search.evaluator import Evaluator

MIDDLE_LAYERS = ("conv4_Conv", "conv5_Conv", "pool9_MaxPool", "conv5_leaky_LeakyRelu",
                 "conv6_Conv")          # yolov3-tiny's; other models: the convs mid-model


def timed(fn):
    t = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--zoo", help="path of the shared folder (zoo/ and golden/)")
    ap.add_argument("--model", default="yolov3_tiny", choices=sorted(BY_NAME))
    ap.add_argument("--calibrate", type=int, metavar="N",
                    help="our own calibration of the first N COCO images, not the reference's table")
    args = ap.parse_args()
    shared = shared_dir(args.zoo)
    m = BY_NAME[args.model]
    s = Session("bm1684x")
    s.load(m.onnx_path(shared), name=m.name, input_shapes=[m.shape], output_names=m.output_names,
           **m.preprocess)
    s.use_data(shared / "zoo/COCO2017")
    if args.calibrate:
        _, cal_s = timed(lambda: s.calibrate(shared / "zoo/COCO2017", input_num=args.calibrate))
        print(f"{m.name}: our calibration of {args.calibrate} images {cal_s:.1f} s")
    else:
        s.load_calibration(m.table_path(shared))
    s.settings.set("samples", args.samples)
    _, load_s = timed(s.evaluator)
    first, first_s = timed(s.check)
    print(f"{m.name}, {args.samples} samples ({load_average()}): loading {load_s:.2f} s, first "
          f"full check {first_s:.2f} s (F32 reference + INT8 plan, {len(first.layers)} layers)")
    edits, noops, fulls = [], [], []
    for layer in MIDDLE_LAYERS if m.name == "yolov3_tiny" else middle_convs(s.model):
        s.set_precision(layer, "F16")
        r, t = timed(s.check)
        edits.append(t)
        _, t0 = timed(s.check)
        noops.append(t0)
        fresh = Evaluator(s.model, s.working_set(), f32_engine=True)     # as the session's
        fresh.set_plan(s.plan())
        fresh.reference(s.model.outputs[0])          # the F32 reference is the same for both
        full, tf = timed(fresh.check)
        fulls.append(tf)
        assert full.layers == r.layers and full.outputs == r.outputs, "incremental != full"
        print(f"set {layer[-40:]:<40} F16: re-check {t:5.2f} s ({r.recomputed:2d} steps), no-op "
              f"{t0 * 1000:5.1f} ms, from scratch {tf:5.2f} s; outputs "
              f"{' '.join(f'{c:.6f}' for c in r.outputs.values())}")
        s.undo()
    _, undo_s = timed(s.check)
    s.redo()
    _, redo_s = timed(s.check)
    edit, noop, full = statistics.median(edits), statistics.median(noops), statistics.median(fulls)
    print(f"median re-check after one edit: {edit:.2f} s (target <= 1.0: "
          f"{'met' if edit <= 1.0 else 'NOT met'}); from scratch {full:.2f} s = "
          f"{full / edit:.1f}x slower")
    print(f"median no-op re-check: {noop * 1000:.1f} ms (target <= 100 ms: "
          f"{'met' if noop <= 0.1 else 'NOT met'})")
    print(f"re-check after undo {undo_s:.2f} s, after redo {redo_s:.2f} s (values still stored)")



def middle_convs(graph, count: int = 3) -> list[str]:
    """`count` convolutions from the middle of the model."""
    convs = [n.name for n in graph.nodes if n.op_type == "Conv"]
    mid = len(convs) // 2
    return convs[max(0, mid - count // 2):mid - count // 2 + count]


if __name__ == "__main__":
    main()
