"""detect_yolov3.py: YOLOv3 detection with any model kind, the tutorial's tool (reference G).

    detect_yolov3.py --model ../tiny-yolov3-11.onnx --input ../COCO2017/000000366711.jpg \\
        --output yolov3_onnx.jpg
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from tpushell.core.errors import InputFileError, OptionError
from tpushell.tools.common import parse_floats, progress_bar, run_tool

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

DESCRIPTION = ("Detect objects with a YOLOv3 model (.onnx, darknet .cfg, .mlir, or a deployed "
               "model) and draw them.")
EPILOG = """\
model kinds:
  .onnx  run by the tpushell F32 simulator. The model is cut at its YOLO heads automatically
         (found by ONNX shape inference): the outputs of the Conv layers shaped like heads
         (N x A*(5+C) x H x W), or the NHWC Transpose of each when there is one (the tutorial's
         transpose_output1,transpose_output). Whatever follows the heads (a Reshape/Sigmoid/Concat
         tail, a built-in NMS, an image_shape input) is dropped before import. The tutorial's
         preprocessing is used: RGB, x0.0039216, letterbox with pad 128.
  .cfg   darknet cfg (weights from --model_data, default <cfg stem>.weights); anchors and masks
         come from the cfg.
  .mlir  a model_transform output; its own preprocessing settings are used.
  .bmodel, .cvimodel, .tpsm  a model written by model_deploy.py (tpushell's simulator container,
         not a Sophgo binary), run as the chip computes it, with the preprocessing it carries.
decoding: heads NCHW or NHWC (read from the shape), matched to anchors by grid size; anchors
  10,14 23,27 37,58 81,82 135,169 344,319 with masks 3,4,5 (stride 32) and 1,2,3 (stride 16)
  unless the model came from a darknet cfg; score = objectness x class; per-class NMS.
output: one line per detection, "class:score% box x0,y0,x1,y1" in original image pixels, or
  "No object was detected". With a directory as --input, --output is a directory that gets one
  image per input image and the file <model name>_image_dir_result (one line per image).
differences from the reference script: its PIL bicubic letterbox is replaced by the model's own
  preprocessing (OpenCV-style bilinear, as in calibration); its NMS box-format bug is not
  reproduced; --conf_thres is accepted and unused (as in the reference); --fuse_preprocess and
  --fuse_postprocess are not available (tpushell models take float input and do no NMS).
"""


def build_parser() -> argparse.ArgumentParser:
    from tpushell.core.vision.yolo import (ANCHOR_FREE_IOU_THRES, ANCHOR_FREE_SCORE_THRES,
                                           DEFAULT_IOU_THRES, DEFAULT_SCORE_THRES)
    p = argparse.ArgumentParser(prog="detect_yolov3.py", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True,
                   help="model file: .onnx, darknet .cfg, .mlir or a deployed .bmodel")
    p.add_argument("--model_data", help="darknet .weights for a .cfg model")
    p.add_argument("--input", required=True, help="an image file, or a directory of images")
    p.add_argument("--output", required=True,
                   help="output image (.jpg/.png/.bmp), or a directory when --input is one")
    p.add_argument("--net_input_dims", help="network input h,w (default: the model's, else 416,416)")
    p.add_argument("--score_thres", type=float, default=None,
                   help=f"minimum objectness x class score (default {DEFAULT_SCORE_THRES}; "
                        f"{ANCHOR_FREE_SCORE_THRES} for a YOLOv8-style anchor-free head)")
    p.add_argument("--iou_thres", type=float, default=None,
                   help=f"NMS IoU above which the weaker box of a class is dropped "
                        f"(default {DEFAULT_IOU_THRES}; {ANCHOR_FREE_IOU_THRES} anchor-free)")
    p.add_argument("--conf_thres", type=float, default=0.001, help="accepted and unused, as in the "
                   "reference")
    p.add_argument("--coco_names", help="class names file, one a line (default: the 80 COCO names)")
    p.add_argument("--fuse_preprocess", action="store_true", help="not available (see below)")
    p.add_argument("--fuse_postprocess", action="store_true", help="not available (see below)")
    return p


def net_dims(text: str | None) -> list[int] | None:
    if text is None:
        return None
    values = parse_floats(text, "--net_input_dims")
    if len(values) != 2 or any(v <= 0 or v != int(v) for v in values):
        raise OptionError(f"--net_input_dims '{text}' needs two positive whole numbers h,w, "
                          "e.g. 416,416")
    return [int(v) for v in values]


def list_images(folder: str) -> list[str]:
    """The image files directly inside `folder`, sorted by name."""
    found = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not found:
        raise InputFileError(f"no images in {folder} (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return [os.path.join(folder, f) for f in found]


def plan_outputs(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(input images, output images), checked before any model work."""
    from tpushell.core.vision.draw import image_format
    if os.path.isdir(args.input):
        if os.path.exists(args.output) and not os.path.isdir(args.output):
            raise OptionError(f"--input is a directory, so --output must be one: {args.output} "
                              "is a file")
        images = list_images(args.input)
        return images, [os.path.join(args.output, os.path.basename(i)) for i in images]
    if not os.path.isfile(args.input):
        raise InputFileError(f"--input not found: {args.input}")
    image_format(args.output)
    return [args.input], [args.output]


def _main(argv: Sequence[str] | None) -> int:
    from tpushell.core.fileio import atomic_write
    from tpushell.core.vision.detect import detect_images, open_detector
    from tpushell.core.vision.draw import draw_detections, save_image
    from tpushell.core.vision.yolo import read_class_names
    args = build_parser().parse_args(argv)
    for flag in ("fuse_preprocess", "fuse_postprocess"):
        if getattr(args, flag):
            raise OptionError(f"--{flag} is not available in tpushell: its models take float "
                              "input and do no NMS; drop the option")
    images, outputs = plan_outputs(args)
    names = read_class_names(args.coco_names) if args.coco_names else None
    detector = open_detector(args.model, net_input_dims=net_dims(args.net_input_dims),
                             model_data=args.model_data)
    folder = os.path.isdir(args.input)
    results = detect_images(detector, images, score_thres=args.score_thres,
                            iou_thres=args.iou_thres, names=names,
                            progress=progress_bar() if folder else None)
    if folder:
        os.makedirs(args.output, exist_ok=True)
    for found, out in zip(results, outputs):
        if folder:
            print(f"{os.path.basename(found.image)}:")
        print(found)
        save_image(draw_detections(found.image, found.detections), out)
    if folder:
        summary = os.path.join(args.output, f"{detector.name}_image_dir_result")
        with atomic_write(summary) as f:
            for found in results:
                f.write(f"{os.path.basename(found.image)}: "
                        f"{', '.join(d.label for d in found.detections)}\n")
        print(f"results of {len(results)} images written to {args.output} ({summary})",
              file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of `detect_yolov3.py` / `detect_yolov3`."""
    return run_tool(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
