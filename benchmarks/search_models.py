"""Sensitivity and mixed-precision search on each shared real model, beside the reference's figures.

    python benchmarks/search_models.py [--shared ../shared] [--samples 10] [--models a,b]
                                       [--cold-only] [--time_budget S]

With the reference's own calibration table and the first N COCO images, per model: the
sensitivity search in a fresh session (ranked by each layer's own error), the `sensitivity`
table's time and its top entries, then `qtable search --method sensitivity` (from
all-INT8 and from the known-head pattern) and `--method greedy` towards the issue's target (true
output cosine 0.99 on YOLOv8n, 0.999 on MobileNetV3 and SVTR), with the all-float cosine, the
float layers, the estimated cost and the time. The reference's own search_qtable on YOLOv8n: 31
F16 layers (its shape pattern) in 56.5 s (golden/README.md); its mix_search aborts.
"""
from __future__ import annotations

import argparse
import time

from models import BY_NAME, pick
from zoo import shared_dir

from tpushell.core import Session

TARGETS = {"nudenet_yolov8n_320": 0.99, "ppocr_cls_mv3": 0.999, "ppocrv4_rec": 0.999}  # the issue's
REFERENCE = {"nudenet_yolov8n_320": "reference search_qtable: 31 F16 layers, 56.5 s; mix_search aborts"}


def session(shared, name: str, samples: int) -> Session:
    m = BY_NAME[name]
    s = Session()
    s.load(m.onnx_path(shared), name=name, input_shapes=[m.shape], **m.preprocess)
    s.load_calibration(m.table_path(shared))
    s.settings.set("samples", samples)
    s.use_data(shared / "zoo" / "COCO2017")
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--models", default=",".join(TARGETS))
    ap.add_argument("--cold-only", action="store_true",
                    help="only the sensitivity search in a fresh session (no sensitivity table)")
    ap.add_argument("--time_budget", type=float, help="seconds per search; the best table so far")
    args = ap.parse_args()
    shared = shared_dir(args.shared)
    for name in [m.name for m in pick(args.models)]:
        target = TARGETS.get(name, 0.99)
        print(f"== {name}: target true output cosine {target}, {args.samples} samples")
        if name in REFERENCE:
            print(f"   {REFERENCE[name]}")
        cold = session(shared, name, args.samples)     # no sensitivity table: own errors rank
        t0 = time.perf_counter()
        found = cold.search_qtable(target, target, method="sensitivity", apply=False,
                                   time_budget=args.time_budget)
        show("sensitivity, cold session", found, time.perf_counter() - t0)
        del cold
        if args.cold_only:
            continue
        s = session(shared, name, args.samples)
        t0 = time.perf_counter()
        s.check()
        print(f"   first cos (F32 + INT8 of every sample): {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        table = s.sensitivity()
        print(f"   sensitivity: {time.perf_counter() - t0:.1f} s, {len(table.rows)} layers; top 8:")
        print("\n".join("     " + line for line in str(table).splitlines()[:12]))
        for method, start in (("sensitivity", None), ("sensitivity", "pattern"), ("greedy", None)):
            t0 = time.perf_counter()
            found = s.search_qtable(target, target, method=method, apply=False,
                                    time_budget=args.time_budget,
                                    **({"start": start} if start else {}))
            show(method + (f" from {start}" if start else ""), found, time.perf_counter() - t0)


def show(label: str, found, seconds: float) -> None:
    print(f"   {label:26} reached={found.reached!s:5} mix {found.mix_cos:.6f} "
          f"int8 {found.int8_cos:.6f} all-float {found.all_float_cos or float('nan'):.6f} "
          f"float layers {len(found.qtable):3} {seconds:.1f} s: {found.reason}")
    print(f"   {'':26} cost {found.cost}" + (
        f"; head pattern of {len(found.pattern)} layer(s), "
        f"{sum(op in found.qtable for op in found.pattern)} needed" if found.pattern else ""))


if __name__ == "__main__":
    main()
