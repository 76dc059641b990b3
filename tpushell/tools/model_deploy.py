"""model_deploy.py: lower a model for a chip and write the deployed model (reference F.1, F.2).

    model_deploy.py --mlir yolov3_tiny.mlir --quantize INT8 --calibration_table yolov3_cali_table \
        --chip bm1684x --model yolov3_int8.bmodel [--quantize_table yolov3_qtable] \
        [--test_input ../COCO2017/000000366711.jpg [--compare_all] [--tolerance 0.9,0.8]]

The written file is tpushell's simulator model (docs/model_format.md), not a Sophgo binary;
`--model x.onnx` writes a QDQ ONNX that onnxruntime runs instead.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from tpushell.core.calibration.tables import read_calibration_table, read_qtable
from tpushell.core.calibration.calibrate import warn_unknown_rows
from tpushell.core.errors import CalibrationError
from tpushell.core.fileio import check_writable
from tpushell.core.graph.loader import load_model
from tpushell.core.quant.chips import CHIP_NAMES, MODES
from tpushell.core.quant.deploy import ValidationError, deploy
from tpushell.core.quant.lowering import Lowerer, needs_calibration

from .common import parse_names, parse_tolerance, progress_bar, run_tool

NOT_SUPPORTED = (
    "quantize modes other than F32/F16/BF16/INT8 (INT4, W8F16, W4*, F8*, QDQ and the *DYN modes)",
    "--quant_input/--quant_output and their _list/_bf16/_int8 "
    "variants", "--fuse_preprocess/--customization_format/--aligned_input", "--high_precision",
    "--q_group_size/--q_symmetric", "the chips bm1690, cv186x, cv184x, sg2262, sg2380 and the "
    "other code-generation options (layer group, address mode, cores, compression): the model "
    "is simulated, never compiled")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="model_deploy.py",
        description="Lower a .mlir (or .onnx) model to a chip and mode, optionally validate it on a "
                    "test input, and write the deployed model: a tpushell simulator model "
                    "(.bmodel/.cvimodel names accepted; it is not a Sophgo binary) or, for a name "
                    "ending in .onnx, a QDQ ONNX.",
        epilog="Not supported (the reference has them): " + "; ".join(NOT_SUPPORTED) + ".")
    p.add_argument("--mlir", required=True, help="the model: our .mlir (model_transform.py) or .onnx")
    p.add_argument("--quantize", default="F32", type=str.upper, choices=MODES,
                   help="whole-model mode (default F32); INT8 needs --calibration_table")
    p.add_argument("--calibration_table", help="calibration table (run_calibration.py)")
    p.add_argument("--quantize_table", help="qtable: per-op modes overriding --quantize")
    p.add_argument("--chip", "--processor", dest="chip", required=True, type=str.lower,
                   choices=CHIP_NAMES, help="target chip")
    p.add_argument("--asymmetric", action="store_true",
                   help="asymmetric INT8 (zero points; LeakyRelu in F16 and Add in F32, as the "
                        "reference; its numerics are not checked against the chip)")
    p.add_argument("--fp_type", default="auto",
                   help="float type of ops with no INT8 rule (auto = the chip's, F16 on bm1684x)")
    p.add_argument("--model", required=True, help="output: .bmodel/.cvimodel/.tpsm, or .onnx (QDQ)")
    v = p.add_argument_group("validation (reference F.2)")
    v.add_argument("--test_input", help="image, .npz or .npy: compare the simulated model with F32")
    v.add_argument("--test_reference", help="npz of reference results (default: run the F32 model)")
    v.add_argument("--compare_all", action="store_true", help="compare every tensor, not just outputs")
    v.add_argument("--tolerance", help="minimum cos,euclid against the reference (default by mode: "
                                       "INT8 0.90,0.80; F16/BF16 0.99,0.90; F32 0.99,0.99)")
    v.add_argument("--correctness", default="0.99,0.90",
                   help="minimum cos,euclid of the written model against the simulated one")
    v.add_argument("--excepts", default="-", help="tensors to leave out of the comparisons, a,b")
    v.add_argument("-v", "--verbose", action="count", default=1, help="print every tensor compared")
    return p


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    check_writable(args.model, "--model")   # before lowering and validation, not after
    qtable = read_qtable(args.quantize_table) if args.quantize_table else None
    if needs_calibration(args.quantize, qtable) and not args.calibration_table:
        raise CalibrationError(f"--quantize {args.quantize}"
                               f"{' with ' + args.quantize_table if qtable else ''} has INT8 ops and "
                               "needs --calibration_table (made by run_calibration.py)")
    table = read_calibration_table(args.calibration_table) if args.calibration_table else None
    graph = load_model(args.mlir)
    plan = Lowerer(graph, table, args.chip, asymmetric=args.asymmetric).plan(
        args.quantize, qtable, args.fp_type)
    if table is not None:
        warn_unknown_rows(graph, table)   # as the shell does (after the table-matches check)
    excepts = [] if args.excepts == "-" else parse_names(args.excepts)
    try:
        result = deploy(plan, args.model, test_input=args.test_input,
                        test_reference=args.test_reference,
                        tolerance=parse_tolerance(args.tolerance) if args.tolerance else None,
                        correctness=parse_tolerance(args.correctness, "--correctness"),
                        compare_all=args.compare_all, excepts=excepts, progress=progress_bar())
    except ValidationError as e:
        print(e.report.format(args.verbose), file=sys.stderr)
        raise
    if result.report is not None:
        print(result.report.format(args.verbose, target=result.tpu_file,
                                   reference=result.reference_file))
    print(result)
    print(f"total time: {time.perf_counter() - start:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry: errors print 'error: ...' and exit 1."""
    return run_tool(_run, argv)


if __name__ == "__main__":
    sys.exit(main())
