"""Mixed-precision search on yolov3-tiny, ours beside the reference's own run (issue 5, acceptance 2).

    python benchmarks/search.py [--input_num 30] [--zoo ../shared] [--skip-greedy]

Runs the tutorial's run_qtable command (with --input_num 30, as the reference's run) through our
tool in a fresh process: the reference algorithm, --search greedy capped at the float-layer count
the reference algorithm ended with, and --search greedy uncapped; prints wall time, CPU time,
peak RSS, the INT8 and mixed output cosines and the number of float layers, with the
reference's figures (golden/yolov3_tiny/README.md) and the ratios.
Targets: reference algorithm <= 20 s and <= 1.5 GB; greedy reaches the target with no more float
layers than the reference algorithm. The cpu column (user + system time of all threads) is the
figure to trust on a busy machine, where wall time also measures the other processes.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zoo import shared_dir

# golden/yolov3_tiny/README.md: TPU-MLIR 1.30.2 mix_search, 30 samples, on a 2-core machine
GREEDY = "greedy, capped at ref's"
UNCAPPED = "greedy, uncapped"
REFERENCE = {"seconds": 107.0, "rss_gb": 4.1, "int8": 0.999387, "mix": 0.999769, "floats": 6}

CHILD = """
import resource, sys
from tpushell.tools.run_qtable import main
rc = main(sys.argv[1:])
use = resource.getrusage(resource.RUSAGE_SELF)
print(f"MAXRSS_KB {use.ru_maxrss} CPU_S {use.ru_utime + use.ru_stime}", file=sys.stderr)
sys.exit(rc)
"""


def prepare(shared: Path, work: Path) -> None:
    """The tutorial's folders: the mlir from model_transform, the reference's calibration table."""
    (work.parent / "COCO2017").symlink_to(shared / "zoo" / "COCO2017")
    subprocess.run([sys.executable, "-m", "tpushell.tools.model_transform", "--model_name",
                    "yolov3_tiny", "--model_def", str(shared / "zoo/yolov3-tiny/tiny-yolov3-11.onnx"),
                    "--input_shapes", "[[1,3,416,416]]", "--scale", "0.0039216,0.0039216,0.0039216",
                    "--pixel_format", "rgb", "--keep_aspect_ratio", "--pad_value", "128",
                    "--output_names=transpose_output1,transpose_output", "--mlir", "yolov3_tiny.mlir"],
                   cwd=work, check=True, capture_output=True)
    (work / "yolov3_cali_table").write_text(
        (shared / "golden/yolov3_tiny/tpumlir_cali_table").read_text())


def run_search(work: Path, input_num: int, extra: list[str]) -> dict:
    argv = ("yolov3_tiny.mlir --dataset ../COCO2017 --calibration_table yolov3_cali_table "
            "--min_layer_cos 0.999 --expected_cos 0.9999 --chip bm1684x -o yolov3_qtable").split()
    argv += ["--input_num", str(input_num)] + extra
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD] + argv, cwd=work, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - t
    if done.returncode:
        raise SystemExit(f"run_qtable failed:\n{done.stderr}")
    out = done.stdout
    true = re.search(r"true cosine: int8 (\S+), mix (\S+), target \S+; (\d+) \S+ layer", out)
    return {"seconds": seconds,
            "rss_gb": int(re.search(r"MAXRSS_KB (\d+)", done.stderr).group(1)) / 2**20,
            "cpu": float(re.search(r"CPU_S (\S+)", done.stderr).group(1)),
            "int8": float(re.search(r"int8 outputs_cos:(\S+)", out).group(1)),
            "mix": float(re.search(r"mix model outputs_cos:(\S+)", out).group(1)),
            "floats": int(true.group(3)), "true_int8": float(true.group(1)),
            "true_mix": float(true.group(2)),
            "reason": re.search(r"search: (.*)$", out, re.M).group(1),
            "curve": (re.search(r"^curve \(.*\): (.*)$", out, re.M) or [None, "-"])[1],
            "qtable": [ln.split()[0] for ln in (work / "yolov3_qtable").read_text().splitlines()
                       if ln.strip() and not ln.startswith("#")]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input_num", type=int, default=30)
    ap.add_argument("--zoo", help="path of the shared folder (zoo/ and golden/)")
    ap.add_argument("--skip-greedy", action="store_true")
    args = ap.parse_args()
    shared = shared_dir(args.zoo)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "workspace"
        work.mkdir()
        prepare(shared, work)
        rows = {"reference algorithm": run_search(work, args.input_num, [])}
        cap = rows["reference algorithm"]["floats"]
        if not args.skip_greedy:
            rows[GREEDY] = run_search(work, args.input_num,
                                      ["--search", "greedy", "--max_float_layers", str(cap)])
            rows[UNCAPPED] = run_search(work, args.input_num,
                                        ["--search", "greedy", "--time_budget", "900"])
    print(f"yolov3-tiny mixed-precision search, {args.input_num} samples, expected_cos 0.9999, "
          f"min_layer_cos 0.999 (0.5+0.5*cos scale)")
    print(f"{'':<26} {'time':>8} {'cpu':>7} {'peak RSS':>9} {'int8 cos':>9} {'mix cos':>9} "
          f"{'floats':>6}")
    r = REFERENCE
    print(f"{'TPU-MLIR 1.30.2 (golden)':<26} {r['seconds']:7.1f}s {'-':>7} {r['rss_gb']:7.2f}GB "
          f"{r['int8']:9.6f} {r['mix']:9.6f} {r['floats']:6d}   (its mix cos is from its last trial)")
    for name, m in rows.items():
        print(f"{name:<26} {m['seconds']:7.1f}s {m['cpu']:6.1f}s {m['rss_gb']:7.2f}GB {m['int8']:9.6f} "
              f"{m['mix']:9.6f} {m['floats']:6d}   true cos {m['true_int8']:.6f} -> "
              f"{m['true_mix']:.6f}; {m['reason']}")
    ours = rows["reference algorithm"]
    print(f"reference algorithm: {r['seconds'] / ours['seconds']:.1f}x faster "
          f"(target <= 20 s: {'met' if ours['seconds'] <= 20 else 'NOT met'}), "
          f"{r['rss_gb'] / ours['rss_gb']:.1f}x less memory "
          f"(target <= 1.5 GB: {'met' if ours['rss_gb'] <= 1.5 else 'NOT met'})")
    for name, m in rows.items():
        print(f"{name}: {' '.join(m['qtable']) or '(empty qtable)'}")
    if GREEDY in rows:
        g = rows[GREEDY]
        better = g["mix"] >= ours["mix"] and g["floats"] <= ours["floats"]
        print(f"greedy vs reference algorithm: {g['floats']} vs {ours['floats']} float layers, "
              f"mix cos {g['mix']:.6f} vs {ours['mix']:.6f} "
              f"({'at least as good with no more float layers' if better else 'NOT better'}); "
              f"time {g['seconds']:.1f}s vs {ours['seconds']:.1f}s")
        u = rows[UNCAPPED]
        print(f"greedy, uncapped: {u['floats']} float layers, mix cos {u['mix']:.6f} (true "
              f"{u['true_mix']:.6f}): {u['reason']}")
        print(f"greedy curves: capped {g['curve']}; uncapped {u['curve']}")


if __name__ == "__main__":
    main()
