"""Our INT8 simulation against the reference's chip simulator on each shared real model.

    python benchmarks/golden_int8.py [--shared ../shared]

With the reference's own calibration table, runs the golden test input through our bm1684x INT8
plan and prints, per model: tensors of the reference's INT8 run that we reproduce to >= 99%
identical values, the output cosine to the reference's INT8 output, INT8 vs our F32, and the time
of the lowering and of one simulated forward.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from tpushell.core.calibration.tables import read_calibration_table
from tpushell.core.graph.interpreter import run
from tpushell.core.graph.onnx_import import import_onnx
from tpushell.core.metrics import cosine
from tpushell.core.quant.lowering import Lowerer
from tpushell.core.quant.simulate import simulate

MODELS = {"nudenet_yolov8n_320": [1, 3, 320, 320], "ppocr_cls_mv3": [1, 3, 48, 192],
          "ppocrv4_rec": [1, 3, 48, 320]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared"))
    shared = Path(ap.parse_args().shared)
    print(f"{'model':22} {'tensors >=99% same':>19} {'out cos to ref INT8':>20} "
          f"{'INT8 vs F32':>12} {'lower s':>8} {'forward s':>9}")
    for name, shape in MODELS.items():
        gold = shared / "golden" / name
        graph = import_onnx(shared / "zoo" / name / f"{name}.onnx", input_shapes=[shape], name=name)
        with np.load(gold / f"{name}_in.npz") as f:
            x = f[f.files[0]]
        t0 = time.perf_counter()
        plan = Lowerer(graph, read_calibration_table(gold / f"{name}_cali_table")).plan("INT8")
        t1 = time.perf_counter()
        ours = simulate(plan, {graph.inputs[0].name: x}, keep_all=True)
        t2 = time.perf_counter()
        f32 = run(graph, {graph.inputs[0].name: x})
        with np.load(gold / f"{name}_int8_tpu.npz") as ref:
            same = [float(np.mean(ours[k] == ref[k])) >= 0.99 for k in ref.files if k in ours]
            out_ref = min(cosine(ours[plan.tensor(t)], ref[plan.tensor(t)]) for t in graph.outputs)
            total = len(ref.files)
        vs_f32 = min(cosine(ours[plan.tensor(t)], f32[t]) for t in graph.outputs)
        print(f"{name:22} {f'{sum(same)} / {total}':>19} {out_ref:>20.6f} {vs_f32:>12.5f} "
              f"{t1 - t0:>8.2f} {t2 - t1:>9.2f}")


if __name__ == "__main__":
    main()
