"""INT8 forward of every shared model (batch 1): our simulator beside our F32 interpreter and
onnxruntime, with the reference's calibration table of each model (golden/<model>/).

    python benchmarks/int8_forward.py [--models ...] [--repeat 7] [--zoo ../shared]

Prints the median wall time of each and the ratios; the target (issue 14) is INT8 <= 3x our F32
interpreter on every model. For scale: the reference's INT8 interpreter takes about 1.05 s per
image of yolov3-tiny on this kind of machine.
"""
from __future__ import annotations

import argparse
import statistics
import time

from models import load_average, pick
from tpushell.core.calibration.tables import read_calibration_table
from tpushell.core.graph.interpreter import run
from tpushell.core.quant.engine import fast_run
from tpushell.core.quant.lowering import Lowerer
from tpushell.core.quant.simulate import simulate
from zoo import shared_dir


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
    ap.add_argument("--models", help="comma-separated names (default: every shared model)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--zoo", help="path of the shared folder (zoo/ and golden/)")
    args = ap.parse_args()
    shared = shared_dir(args.zoo)
    print(f"batch 1, median of {args.repeat}; {load_average()}")
    print(f"{'model':20} {'F32 interp':>10} {'F32 engine':>10} {'INT8':>8} {'INT8/interp':>11} "
          f"{'INT8/engine':>11} {'lowering':>9}")
    for model in pick(args.models):
        graph, x = model.graph(shared), model.input(shared)
        feeds = {graph.inputs[0].name: x}
        lw = Lowerer(graph, read_calibration_table(model.table_path(shared)), "bm1684x")
        t = time.perf_counter()
        plan = lw.plan("INT8")
        lower_s = time.perf_counter() - t
        f32 = median_time(lambda: run(graph, feeds), args.repeat)
        engine = median_time(lambda: fast_run(graph, feeds), args.repeat)
        int8 = median_time(lambda: simulate(plan, feeds), args.repeat)
        print(f"{model.name:20} {f32 * 1e3:8.1f}ms {engine * 1e3:8.1f}ms {int8 * 1e3:6.1f}ms "
              f"{int8 / f32:10.2f}x {int8 / engine:10.2f}x {lower_s * 1e3:7.0f}ms", flush=True)
    print(f"done; {load_average()}")


if __name__ == "__main__":
    main()
