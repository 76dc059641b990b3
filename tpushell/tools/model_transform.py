"""model_transform.py: import ONNX / darknet / .mlir into our .mlir, with the reference's options.

    model_transform.py --model_name yolov3_tiny --model_def ../tiny-yolov3-11.onnx \
        --input_shapes [[1,3,416,416]] --scale 0.0039216,0.0039216,0.0039216 --pixel_format rgb \
        --keep_aspect_ratio --pad_value 128 --output_names=transpose_output1,transpose_output \
        --mlir yolov3_tiny.mlir [--test_input ../COCO2017/000000366711.jpg]
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Sequence

from tpushell.core.errors import OptionError
from tpushell.core.graph.preprocess import CHANNEL_FORMATS, KEEP_RATIO_MODES, PAD_TYPES, PIXEL_FORMATS
from tpushell.core.graph.transform import transform

from .common import parse_floats, parse_names, parse_shapes, parse_tolerance, run_tool

NOT_SUPPORTED = ("--add_postprocess (the YOLO/SSD decode is done by detect_yolov3 instead)",
                 "--input_types other than float32", "--preprocess_list", "--yuv_type",
                 "--dynamic and the other dynamic-shape options", "--model_extern", ".prototxt/.tflite/.pt "
                 "model_def (ONNX, darknet .cfg and our .mlir are supported)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="model_transform.py",
        description="Import a model (ONNX, darknet .cfg + --model_data .weights, or .mlir) into a "
                    "tpushell .mlir + weight npz, with the model's image preprocessing stored in it.",
        epilog="Not supported (the reference has them): " + "; ".join(NOT_SUPPORTED) + ".")
    p.add_argument("--model_name", required=True, help="name of the model (prefix of output files)")
    p.add_argument("--model_def", required=True, help=".onnx, darknet .cfg or .mlir")
    p.add_argument("--model_data", help="darknet .weights for a .cfg model_def")
    p.add_argument("--input_shapes", help="e.g. [[1,3,416,416]]; needed when the model's are dynamic")
    p.add_argument("--input_types", default="float32", help="only float32 is supported")
    p.add_argument("--output_names", help="cut the graph at these tensors, e.g. a,b")
    p.add_argument("--test_input", help="image, .npz or .npy: self-check our F32 vs onnxruntime")
    p.add_argument("--test_result", help="where to save our F32 tensors (default <name>_top_outputs.npz)")
    p.add_argument("--tolerance", default="0.99,0.99", help="minimum cos,euclid of the self-check")
    p.add_argument("--excepts", default="-", help="tensors to leave out of the self-check, a,b")
    p.add_argument("--onnx_sim", default="", choices=["", "skip_fuse_bn"],
                   help="skip_fuse_bn keeps BatchNormalization unfolded")
    p.add_argument("--debug", action="store_true", help="accepted for compatibility (we keep every file)")
    p.add_argument("--add_postprocess", help=argparse.SUPPRESS)
    p.add_argument("--mlir", required=True, help="output .mlir file")
    g = p.add_argument_group("preprocessing (stored in the mlir, used by calibration and detection)")
    g.add_argument("--resize_dims", help="h,w to resize to before a center crop (default: net size)")
    g.add_argument("--keep_aspect_ratio", action="store_true", help="resize keeping the aspect ratio")
    g.add_argument("--keep_ratio_mode", default="letterbox", choices=KEEP_RATIO_MODES)
    g.add_argument("--mean", help="per-channel mean, e.g. 0,0,0 (after the pixel_format swap)")
    g.add_argument("--scale", help="per-channel scale, e.g. 0.0039216,0.0039216,0.0039216")
    g.add_argument("--pixel_format", default="bgr", choices=PIXEL_FORMATS)
    g.add_argument("--channel_format", default="nchw", choices=CHANNEL_FORMATS)
    g.add_argument("--pad_value", type=int, default=0, help="letterbox fill, uint8 pixel value")
    g.add_argument("--pad_type", default="center", choices=PAD_TYPES)
    return p


def _negative_mean(unknown: list[str], args: argparse.Namespace) -> None:
    """Accept `--mean -1,-2,-3` (argparse sees the value as an option), as the reference does."""
    numbers = [u for u in unknown if re.fullmatch(r"-?[\d.]+(,-?[\d.]+)*", u)]
    rest = [u for u in unknown if u not in numbers]
    if rest:
        raise OptionError(f"unrecognized arguments: {' '.join(rest)}")
    if numbers:
        if args.mean is not None or len(numbers) != 1:
            raise OptionError(f"unrecognized arguments: {' '.join(numbers)}")
        args.mean = numbers[0]


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    _negative_mean(unknown, args)
    if args.add_postprocess:
        raise OptionError("--add_postprocess is not supported: run detect_yolov3.py on the cut "
                          "model instead (it decodes the heads)")
    if args.input_types not in ("float32", "f32"):
        raise OptionError(f"--input_types {args.input_types}: only float32 inputs are supported")
    preprocess = {
        "resize_dims": [int(v) for v in parse_floats(args.resize_dims, "--resize_dims")]
        if args.resize_dims else None,
        "keep_aspect_ratio": args.keep_aspect_ratio, "keep_ratio_mode": args.keep_ratio_mode,
        "mean": parse_floats(args.mean, "--mean") if args.mean else None,
        "scale": parse_floats(args.scale, "--scale") if args.scale else None,
        "pixel_format": args.pixel_format, "channel_format": args.channel_format,
        "pad_value": args.pad_value, "pad_type": args.pad_type}
    start = time.perf_counter()
    result = transform(
        args.model_def, args.mlir, model_name=args.model_name, model_data=args.model_data,
        input_shapes=parse_shapes(args.input_shapes) if args.input_shapes else None,
        output_names=parse_names(args.output_names) or None, test_input=args.test_input,
        test_result=args.test_result, tolerance=parse_tolerance(args.tolerance),
        excepts=[e for e in parse_names(args.excepts) if e != "-"], preprocess=preprocess,
        fold_bn=args.onnx_sim != "skip_fuse_bn")
    counts = ", ".join(f"{n} {t}" for t, n in result.graph.summary().items())
    print(f"{args.model_name}: {len(result.graph.nodes)} ops ({counts}) + "
          f"{len(result.graph.inputs)} input(s); outputs {', '.join(result.graph.outputs)}")
    for f in result.files:
        print(f"saved {f}")
    if result.note:
        print(result.note)
    if result.report is not None:
        print(result.report.format(verbose=1))
        if not result.report.passed:
            failed = [r.name for r in result.report.results if not r.passed]
            print(f"error: self-check failed on {len(failed)} tensor(s): {', '.join(failed[:10])}; "
                  f"no .mlir was written", file=sys.stderr)
            return 1
    print(f"mlir written to {result.mlir} (weights {result.weights}) in "
          f"{time.perf_counter() - start:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry: errors print 'error: ...' and exit 1."""
    return run_tool(_run, argv)


if __name__ == "__main__":
    sys.exit(main())
