"""The tutorial's calibration step, timed, beside the reference toolchain's recorded figures.

    python benchmarks/calibration.py [--shared /work/shared] [--runs 1] [--keep DIR]

Lays out the tutorial's folders (yolov3_tiny/{tiny-yolov3-11.onnx, COCO2017, workspace}), runs its
step 1 (model_transform.py), then step 2 verbatim in a subprocess,
    run_calibration.py yolov3_tiny.mlir --dataset ../COCO2017 --input_num 100 -o yolov3_cali_table
and prints wall time, CPU time and peak RSS (of that process), the time
of each phase (from the progress lines), and the ratio to TPU-MLIR 1.30.2's 45.7 s and 1.2 GB
(golden/yolov3_tiny/README.md, the same step on a 2-core machine of this kind). The machine's load
average is printed too: other work on the same cores slows every figure down.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

from zoo import shared_dir

REFERENCE_SECONDS, REFERENCE_BYTES = 45.7, 1.2e9
COMMAND = ["yolov3_tiny.mlir", "--dataset", "../COCO2017", "--input_num", "100",
           "-o", "yolov3_cali_table"]


STEP_1 = ["--model_name", "yolov3_tiny", "--model_def", "../tiny-yolov3-11.onnx", "--input_shapes",
          "[[1,3,416,416]]", "--scale", "0.0039216,0.0039216,0.0039216", "--pixel_format", "rgb",
          "--keep_aspect_ratio", "--pad_value", "128",
          "--output_names=transpose_output1,transpose_output", "--mlir", "yolov3_tiny.mlir"]


def lay_out(root: str, shared: str) -> str:
    """The tutorial's folders under `root` and its step 1 (model_transform.py); returns the workspace."""
    os.symlink(os.path.join(shared, "zoo", "yolov3-tiny", "tiny-yolov3-11.onnx"),
               os.path.join(root, "tiny-yolov3-11.onnx"))
    os.symlink(os.path.join(shared, "zoo", "COCO2017"), os.path.join(root, "COCO2017"))
    workspace = os.path.join(root, "workspace")
    os.makedirs(workspace)
    tool = os.path.join(os.path.dirname(sys.executable), "model_transform.py")
    subprocess.run([tool, *STEP_1], cwd=workspace, check=True, capture_output=True)
    return workspace


def phases(stderr: str) -> dict[str, float]:
    """Elapsed seconds of each progress task (whole seconds), from the tqdm bar's last update per
    task: 'calibration tuning: 100%|...| 34/34 [00:19<00:00, 1.72step/s]'."""
    found = {}
    for task, minutes, seconds in re.findall(r"(calibration \w+): +\d+%\|[^|]*\| *\d+/\d+ "
                                             r"\[(\d+):(\d+)", stderr.replace("\r", "\n")):
        found[task] = 60 * int(minutes) + int(seconds)
    return found


def run_once(workspace: str) -> tuple[float, float, float, str]:
    """(wall s, cpu s, peak RSS bytes, stderr) of one verbatim run in a fresh process."""
    tool = os.path.join(os.path.dirname(sys.executable), "run_calibration.py")
    code = ("import resource, subprocess, sys, time\n"
            "t = time.perf_counter()\n"
            "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "wall = time.perf_counter() - t\n"
            "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
            "sys.stderr.write(p.stderr)\n"
            "print(p.returncode, wall, u.ru_utime + u.ru_stime, u.ru_maxrss * 1024)\n")
    done = subprocess.run([sys.executable, "-c", code, tool, *COMMAND], cwd=workspace,
                          capture_output=True, text=True)
    rc, wall, cpu, rss = done.stdout.split()
    if rc != "0":
        sys.exit(f"run_calibration failed:\n{done.stderr}")
    return float(wall), float(cpu), float(rss), done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", help="folder holding zoo/ and golden/ (default: $TPUSHELL_ZOO or ../shared)")
    parser.add_argument("--runs", type=int, default=1, help="runs; the fastest is reported")
    parser.add_argument("--keep", help="lay out the tutorial here and keep it (default: a temp dir)")
    args = parser.parse_args()
    args.shared = str(shared_dir(args.shared))
    root = args.keep or tempfile.mkdtemp(prefix="calib-bench-")
    os.makedirs(root, exist_ok=True)
    workspace = lay_out(root, os.path.abspath(args.shared))
    print(f"run_calibration.py {' '.join(COMMAND)}  (in {workspace})")
    best = None
    for i in range(args.runs):
        load = os.getloadavg()[0]
        result = run_once(workspace)
        print(f"run {i + 1}: wall {result[0]:.1f} s, cpu {result[1]:.1f} s, peak RSS "
              f"{result[2] / 1e6:.0f} MB (load average before the run {load:.1f} on "
              f"{os.cpu_count()} cpus)")
        best = result if best is None or result[0] < best[0] else best
    wall, cpu, rss, stderr = best
    for task, seconds in phases(stderr).items():
        print(f"  {task:<26} {seconds:4d} s")
    print(f"{'':<26} {'ours':>10} {'TPU-MLIR 1.30.2':>16} {'ratio':>8}")
    print(f"{'wall time':<26} {wall:9.1f}s {REFERENCE_SECONDS:15.1f}s {wall / REFERENCE_SECONDS:7.2f}x")
    print(f"{'peak RSS':<26} {rss / 1e6:8.0f}MB {REFERENCE_BYTES / 1e6:14.0f}MB "
          f"{rss / REFERENCE_BYTES:7.2f}x")
    print(f"targets: <= 10 s wall and <= 800 MB peak RSS")


if __name__ == "__main__":
    main()
