"""INT8 forward of yolov3-tiny (batch 1): our simulator vs our F32 interpreter vs onnxruntime.

    python benchmarks/int8_forward.py [--repeat 10] [--zoo ../shared]

Prints the median wall time of each and the ratios; the target (issue 4) is INT8 <= 3x our F32.
For scale: the reference's INT8 interpreter takes about 1.05 s per image on this kind of machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from tpushell.core.calibration.tables import read_calibration_table, read_qtable
from tpushell.core.graph.interpreter import run
from tpushell.core.graph.onnx_import import import_onnx
from tpushell.core.quant.lowering import Lowerer
from tpushell.core.quant.simulate import simulate
from zoo import shared_dir

REFERENCE_INT8_S = 1.05


def median_time(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--zoo", help="path of the shared folder (zoo/ and golden/)")
    args = ap.parse_args()
    shared = shared_dir(args.zoo)
    onnx_path = shared / "zoo" / "yolov3-tiny" / "tiny-yolov3-11.onnx"
    golden = shared / "golden" / "yolov3_tiny"
    graph = import_onnx(onnx_path, name="yolov3_tiny", input_shapes=[[1, 3, 416, 416]],
                        output_names=["transpose_output1", "transpose_output"])
    x = np.load(golden / "000000366711_input.npz")["input_1"]
    feeds = {"input_1": x}
    lw = Lowerer(graph, read_calibration_table(golden / "tpumlir_cali_table"), "bm1684x")
    t = time.perf_counter()
    int8 = lw.plan("INT8")
    lower_s = time.perf_counter() - t
    mix = lw.plan("INT8", read_qtable(golden / "tpumlir_qtable"))

    rows = [("our F32 interpreter", median_time(lambda: run(graph, feeds), args.repeat)),
            ("our INT8 simulator", median_time(lambda: simulate(int8, feeds), args.repeat)),
            ("our mixed (6 x F16)", median_time(lambda: simulate(mix, feeds), args.repeat))]
    try:
        import onnxruntime as ort
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        rows.append(("onnxruntime F32 (peer)",
                     median_time(lambda: sess.run(None, {"input_1": x}), args.repeat)))
    except ImportError:
        pass
    f32 = rows[0][1]
    print(f"lowering (INT8 plan, weights quantized): {lower_s * 1000:.0f} ms")
    print(f"{'batch 1, median of ' + str(args.repeat):<28} {'time':>9} {'vs our F32':>11}")
    for name, s in rows:
        print(f"{name:<28} {s * 1000:7.0f} ms {s / f32:10.2f}x")
    ours = rows[1][1]
    print(f"INT8 / F32 = {ours / f32:.2f} (target <= 3); reference INT8 interpreter ~"
          f"{REFERENCE_INT8_S:.2f} s/image = {REFERENCE_INT8_S / ours:.1f}x slower than ours")


if __name__ == "__main__":
    main()
