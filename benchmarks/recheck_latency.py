"""Interactive re-check latency on yolov3-tiny (issue 5, acceptance 3).

    python benchmarks/recheck_latency.py [--samples 10] [--zoo ../shared]

A session with the tutorial model, the reference's calibration table and the working set of 10
COCO images. After a first full check, one middle layer at a time is set to F16 and the full
re-check (outputs + every per-layer cosine) is timed, then a no-op re-check, an undo and a redo.
Beside it: the same check computed from scratch (a fresh evaluator, what a tool without
incremental evaluation must do), and the ratio. Targets: re-check <= 1.0 s, no-op <= 0.1 s.
"""
from __future__ import annotations

import argparse
import statistics
import time

from tpushell.core import Session
from tpushell.core.calibration.tables import read_calibration_table
from tpushell.core.search.evaluator import Evaluator
from zoo import shared_dir

MIDDLE_LAYERS = ("conv4_Conv", "conv5_Conv", "pool9_MaxPool", "conv5_leaky_LeakyRelu",
                 "conv6_Conv")


def timed(fn):
    t = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--zoo", help="path of the shared folder (zoo/ and golden/)")
    args = ap.parse_args()
    shared = shared_dir(args.zoo)
    s = Session("bm1684x")
    s.load(shared / "zoo/yolov3-tiny/tiny-yolov3-11.onnx", input_shapes=[[1, 3, 416, 416]],
           output_names=["transpose_output1", "transpose_output"], scale=[0.0039216] * 3,
           pixel_format="rgb", keep_aspect_ratio=True, pad_value=128)
    s.calibration = read_calibration_table(shared / "golden/yolov3_tiny/tpumlir_cali_table")
    s.use_data(shared / "zoo/COCO2017")
    s.settings.set("samples", args.samples)
    _, load_s = timed(s.evaluator)
    first, first_s = timed(s.check)
    print(f"{args.samples} samples: loading {load_s:.2f} s, first full check {first_s:.2f} s "
          f"(F32 reference + INT8 plan, {len(first.layers)} layers)")
    edits, noops, fulls = [], [], []
    for layer in MIDDLE_LAYERS:
        s.set_precision(layer, "F16")
        r, t = timed(s.check)
        edits.append(t)
        _, t0 = timed(s.check)
        noops.append(t0)
        fresh = Evaluator(s.model, s.working_set())
        fresh.set_plan(s.plan())
        fresh.reference(s.model.outputs[0])          # the F32 reference is the same for both
        full, tf = timed(fresh.check)
        fulls.append(tf)
        assert full.layers == r.layers and full.outputs == r.outputs, "incremental != full"
        print(f"set {layer:<24} F16: re-check {t:5.2f} s ({r.recomputed:2d} steps), no-op "
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


if __name__ == "__main__":
    main()
