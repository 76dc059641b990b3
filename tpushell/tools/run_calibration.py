"""run_calibration.py: a calibration table for every tensor of a model, from a dataset (reference C).

    run_calibration.py yolov3_tiny.mlir --dataset ../COCO2017 --input_num 100 -o yolov3_cali_table
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Sequence

from tpushell.core.calibration.calibrate import DEFAULT_HISTOGRAM, DEFAULT_TUNE_STEPS, HISTOGRAMS, METHODS
from tpushell.core.errors import InputFileError, OptionError
from tpushell.core.fileio import check_writable
from tpushell.tools.common import progress_bar, run_tool

DESCRIPTION = ("Calibrate a model: run it in F32 over a dataset and write each tensor's INT8 "
               "threshold, min and max as a calibration table (TPU-MLIR v1.3 format).")
EPILOG = """\
methods (--cali_method): kl (default) = KL-divergence threshold from the 2048-bin histogram of |x|,
  then raised by the auto-tuner on the first --tune_num samples (21 steps from the KLD threshold to
  absmax; graph outputs are not tuned), as TPU-MLIR 1.30.2 computes it, so its tables come out
  equal; max = absmax; percentile9999 = the 99.99% to 99.999999% value (later
  tensors higher), min/max become the percentile values; mse, aciq_gauss, aciq_laplace = the
  per-sample optimum averaged over samples, clamped to absmax (graph inputs keep absmax).
  Only kl is tuned. The legacy names use_max, use_percentile9999, ... are accepted.
--histogram: one_pass (default, TPU-MLIR 1.30.2: the first sample fixes the bin width and bins are
  added as the range grows, so the result depends on sample order) or two_pass (TPU-MLIR v1.3: a
  first pass finds every tensor's range, a second histograms it; order-independent; use with
  --debug_cmd tune_steps=20 for v1.3's tables).
--debug_cmd: "tune_steps=N" (default 21, as 1.30.2; v1.3 used 20); "one_pass_histogram" (the
  default anyway); the legacy method names (use_max, ...). Anything else is an error.
mlir_file: an .mlir from model_transform.py carries its preprocessing; for an .onnx or darknet
  .cfg give the preprocessing with the model options below (as for model_transform.py).
not available (the reference has them): --search {search_threshold, search_qtable, fast_search,
  mix_search} and its options (--inference_num, --bc_inference_num, --expected_cos,
  --min_layer_cos, --max_float_layers, --chip, --fp_type, --post_process, --global_compare_layers,
  --quantize_method_list, --benchmark_method, --quantize_table; use run_qtable.py),
  --kurtosis_analysis, --part_quantize, --custom_operator, --part_asymmetric (#asym_op),
  --mix_mode, --q_group_size, --pre_qtable, --cluster, --we, --bc, --sq, --smc, --debug_log,
  int4 and fp8 tables (#int4_th), the torch observers, and the mse/aciq "last five tensors"
  percentile override, 1.30.2's halving of one-pass histograms longer than 64x2048 bins.
"""
LEGACY = {f"use_{m}": m for m in METHODS}


def build_parser() -> argparse.ArgumentParser:
    from tpushell.core.commands import COMMANDS
    p = argparse.ArgumentParser(prog="run_calibration.py", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    data = p.add_argument_group("calibration")
    data.add_argument("--dataset", help="folder of images / .npz / .npy (searched recursively, "
                      "sorted, shuffled with seed 1684)")
    data.add_argument("--data_list", help="file with one sample a line (inputs comma-separated)")
    data.add_argument("--input_num", type=int, default=0, help="samples to use (default 0 = all)")
    data.add_argument("--tune_list", help="file listing the samples for tuning (default: the "
                      "calibration samples)")
    data.add_argument("--tune_num", type=int, default=5, help="samples used by the auto-tuner "
                      "(default 5; 0 = no tuning)")
    data.add_argument("--histogram_bin_num", type=int, default=2048,
                      help="histogram bins for the KLD (default 2048)")
    data.add_argument("--cali_method", default="kl", choices=list(METHODS) + list(LEGACY),
                      metavar="{" + ",".join(METHODS) + "}", help="threshold method (default kl)")
    data.add_argument("-o", "--calibration_table", required=True, help="output table file")
    data.add_argument("--histogram", choices=HISTOGRAMS, default=None,
                      help="one_pass (default, TPU-MLIR 1.30.2) or two_pass (v1.3, order-independent)")
    data.add_argument("--debug_cmd", default="", help="tune_steps=N, or a legacy method name")
    model = p.add_argument_group("model (for .onnx / .cfg; an .mlir carries these)")
    COMMANDS["load"].add_arguments(model)
    positional = next(a for a in p._actions if a.dest == "model")
    positional.metavar = "mlir_file"
    positional.help = ".mlir from model_transform.py (also .onnx or darknet .cfg)"
    return p


def parse_debug_cmd(text: str, method: str) -> dict:
    """Calibration keywords from --debug_cmd 'tune_steps=21;one_pass_histogram'-style text."""
    found = {"method": method, "tune_steps": DEFAULT_TUNE_STEPS, "histogram": DEFAULT_HISTOGRAM}
    for item in filter(None, (t.strip() for t in text.replace(",", ";").split(";"))):
        key, _, value = item.partition("=")
        if key in LEGACY:
            found["method"] = LEGACY[key]
        elif key == "tune_steps" and value.isdigit() and int(value) > 0:
            found["tune_steps"] = int(value)
        elif key == "one_pass_histogram" and not value:
            found["histogram"] = "one_pass"
        else:
            raise OptionError(f"--debug_cmd '{item}' is not supported; supported: tune_steps=N "
                              f"(N >= 1), one_pass_histogram, {', '.join(LEGACY)}")
    return found


def _run(argv: Sequence[str] | None) -> int:
    from tpushell.core.commands import COMMANDS
    from tpushell.core.session import Session
    args = build_parser().parse_args(argv)
    options = parse_debug_cmd(args.debug_cmd, LEGACY.get(args.cali_method, args.cali_method))
    if args.histogram is not None:
        options["histogram"] = args.histogram
    folder = os.path.dirname(os.path.abspath(args.calibration_table))
    if not os.path.isdir(folder):
        raise InputFileError(f"-o {args.calibration_table}: folder {folder} does not exist")
    check_writable(args.calibration_table, "-o")   # before the calibration, not after it
    start = time.perf_counter()
    session = Session(progress=progress_bar())
    COMMANDS["load"].run(session, args)
    table = session.calibrate(args.dataset, data_list=args.data_list, input_num=args.input_num,
                              tune_num=args.tune_num, tune_list=args.tune_list,
                              histogram_bin_num=args.histogram_bin_num, **options)
    session.save_calibration(args.calibration_table)
    header = table.header
    tuned = f", tuned on {header['tune number']} samples" if "tune number" in header else ""
    print(f"{len(table)} tensors calibrated ({options['method']}{tuned}) on {header['sample number']} "
          f"samples in {time.perf_counter() - start:.1f} s; table written to {args.calibration_table}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry: errors print 'error: ...' and exit 1; Ctrl-C leaves any old table as it was."""
    return run_tool(_run, argv)
