"""Run TPU-MLIR's mixed-precision tutorial (tiny-YOLOv3) verbatim with tpushell's tools.

    python examples/tutorial.py [--workdir DIR] [--zoo PATH]

Lays out the tutorial's folders (`yolov3_tiny/` holding the model and `COCO2017/`, and
`yolov3_tiny/workspace/` where the commands run), then runs each command of the chapter exactly
as printed there, through bash, and shows what it printed. The model and images come from
`../shared/zoo` next to the repository, `--zoo`, or `$TPUSHELL_ZOO`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The chapter's commands, in order, exactly as printed (continuation lines joined; the inline
# remark after `--min_layer_cos 0.999 \` is prose in the chapter, not part of the command).
COMMANDS = [
    "detect_yolov3.py --model ../tiny-yolov3-11.onnx --input ../COCO2017/000000366711.jpg "
    "--output yolov3_onnx.jpg",
    "model_transform.py --model_name yolov3_tiny --model_def ../tiny-yolov3-11.onnx "
    "--input_shapes [[1,3,416,416]] --scale 0.0039216,0.0039216,0.0039216 --pixel_format rgb "
    "--keep_aspect_ratio --pad_value 128 --output_names=transpose_output1,transpose_output "
    "--mlir yolov3_tiny.mlir",
    "run_calibration.py yolov3_tiny.mlir --dataset ../COCO2017 --input_num 100 -o yolov3_cali_table",
    "model_deploy.py --mlir yolov3_tiny.mlir --quantize INT8 --calibration_table yolov3_cali_table "
    "--chip bm1684x --model yolov3_int8.bmodel",
    "detect_yolov3.py --model yolov3_int8.bmodel --input ../COCO2017/000000366711.jpg "
    "--output yolov3_int8.jpg",
    "run_qtable.py yolov3_tiny.mlir --dataset ../COCO2017 --calibration_table yolov3_cali_table "
    "--min_layer_cos 0.999 --expected_cos 0.9999 --chip bm1684x -o yolov3_qtable",
    "model_deploy.py --mlir yolov3_tiny.mlir --quantize INT8 --quantize_table yolov3_qtable "
    "--calibration_table yolov3_cali_table --chip bm1684x --model yolov3_mix.bmodel",
    "detect_yolov3.py --model yolov3_mix.bmodel --input ../COCO2017/000000366711.jpg "
    "--output yolov3_mix.jpg",
]


def find_zoo(explicit: str | None) -> Path:
    """The zoo folder (holding yolov3-tiny/ and COCO2017/)."""
    candidates = [explicit, os.environ.get("TPUSHELL_ZOO"), str(REPO.parent / "shared")]
    for c in filter(None, candidates):
        p = Path(c)
        for zoo in (p, p / "zoo"):
            if (zoo / "COCO2017").is_dir() and (zoo / "yolov3-tiny").is_dir():
                return zoo
    sys.exit("error: the tutorial needs the model and images: put them in ../shared/zoo next to "
             "the repository, or pass --zoo PATH (a folder with yolov3-tiny/ and COCO2017/)")


def layout(workdir: Path, zoo: Path) -> Path:
    """Create workdir/yolov3_tiny/{tiny-yolov3-11.onnx, COCO2017, workspace/}; return workspace."""
    project = workdir / "yolov3_tiny"
    workspace = project / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    for name, target in (("tiny-yolov3-11.onnx", zoo / "yolov3-tiny" / "tiny-yolov3-11.onnx"),
                         ("COCO2017", zoo / "COCO2017")):
        link = project / name
        if link.is_symlink() or link.exists():
            link.unlink() if link.is_symlink() or link.is_file() else shutil.rmtree(link)
        link.symlink_to(target)
    return workspace


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(REPO / "work"), help="where to lay out the tutorial")
    parser.add_argument("--zoo", help="folder with yolov3-tiny/ and COCO2017/ (default ../shared/zoo)")
    args = parser.parse_args()
    workspace = layout(Path(args.workdir).resolve(), find_zoo(args.zoo))
    bindir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    print(f"tutorial workspace: {workspace}")
    total = time.perf_counter()
    for i, command in enumerate(COMMANDS, 1):
        print(f"\n[{i}/{len(COMMANDS)}] $ {command}", flush=True)
        start = time.perf_counter()
        done = subprocess.run(["bash", "-c", command], cwd=workspace, env=env)
        if done.returncode != 0:
            print(f"error: step {i} failed with exit status {done.returncode}", file=sys.stderr)
            return done.returncode
        print(f"[{i}/{len(COMMANDS)}] done in {time.perf_counter() - start:.1f} s")
    print(f"\nThe whole tutorial ran in {time.perf_counter() - total:.1f} s. Results in {workspace}:")
    for f in sorted(workspace.iterdir()):
        print(f"  {f.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
