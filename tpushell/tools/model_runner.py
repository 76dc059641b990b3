"""model_runner.py: run a model on one input and save its outputs (or every tensor) to npz.

    model_runner.py --input yolov3_tiny_in_f32.npz --model yolov3_tiny.mlir --output out.npz
    model_runner.py --input ../COCO2017/000000366711.jpg --model yolov3_tiny.mlir \
        --output all.npz --dump_all_tensors
    model_runner.py --input yolov3_tiny_in_f32.npz --model yolov3_int8.bmodel --output int8.npz
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from tpushell.core.fileio import check_writable, save_npz
from tpushell.core.graph.interpreter import run
from tpushell.core.graph.loader import load_model
from tpushell.core.graph.transform import test_feeds
from tpushell.core.quant.deploy import DEPLOYED_SUFFIXES, is_deployed_model, load_deployed

from .common import run_tool


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="model_runner.py",
                                description="Run a .mlir or .onnx model (F32), or a model written "
                                            "by model_deploy.py (as the chip computes it), on one "
                                            "input and save the results as npz.")
    p.add_argument("--input", required=True, help="input .npz / .npy, or an image (the model's "
                                                  "preprocessing is applied)")
    p.add_argument("--model", required=True, help=".mlir or .onnx model, or a deployed model "
                                                  "(.bmodel/.cvimodel/.tpsm from model_deploy.py)")
    p.add_argument("--output", required=True, help="output .npz")
    p.add_argument("--dump_all_tensors", action="store_true", help="save every tensor, not just outputs")
    return p


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    check_writable(args.output, "--output")   # before the model runs
    if is_deployed_model(args.model) or args.model.lower().endswith(DEPLOYED_SUFFIXES):
        model = load_deployed(args.model)
        feeds = test_feeds(model.graph, args.input)
        result = model.run(feeds, keep_all=args.dump_all_tensors)
    else:
        graph = load_model(args.model)
        feeds = test_feeds(graph, args.input)
        result = run(graph, feeds, keep_all=args.dump_all_tensors)
    if args.dump_all_tensors:
        result = {**feeds, **result}
    save_npz(args.output, result)
    print(f"saved {len(result)} tensor(s) to {args.output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry: errors print 'error: ...' and exit 1."""
    return run_tool(_run, argv)


if __name__ == "__main__":
    sys.exit(main())
