"""run_qtable.py: search the layers to keep in float (the tutorial's mixed-precision step, E.1).

    run_qtable.py yolov3_tiny.mlir --dataset ../COCO2017 --calibration_table yolov3_cali_table \\
        --min_layer_cos 0.999 --expected_cos 0.9999 --chip bm1684x -o yolov3_qtable
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Sequence

from tpushell.tools.common import progress_bar, run_tool

DESCRIPTION = "Search a mixed-precision quantize table: the layers to run in float so that the " \
              "model's outputs reach a target cosine to F32."
EPILOG = """\
cosine scale: --expected_cos, --min_layer_cos and the printed outputs_cos / Cos values use the
  reference's scale 0.5 + 0.5*cos (what the tutorial types): --expected_cos 0.9999 asks for a true
  cosine of 0.9998. The true cosines are printed too.
searches:
  reference  the reference's run_qtable walk (v1.3): each INT8 layer whose accumulated cosine is
             below --min_layer_cos goes to float with its consumers; the outputs are re-checked
             after each change (kept, or reverted when worse than all-INT8) until they beat
             --expected_cos or more than a quarter of the layers are float.
  greedy     ranks layers (and layer+consumer pairs) by what floating them alone gains, adds the
             best greedily with re-evaluation, then drops layers the target does not need: the
             target with fewer float layers. --time_budget keeps the best table found in time.
             When it stalls short of the target it bisects over its ranking, so a target the
             all-float plan reaches is reached.
  sensitivity  reaches any target the all-float plan reaches: layers ranked by their own
             INT8 error, grown greedily (re-measured in the current plan, gain per unit of
             cost), a bisection over the ranked list when growth stalls, then the float
             layers the target does not need are pruned (costliest first). --start pattern
             starts from the known-head pattern (the reference's shape_pattern_qtable: ops
             after the last activation, e.g. the YOLO decode tail) and shows how much of it
             the target needs. The trial list says why each layer was kept or reverted.
differences from the reference (deliberate): the outputs are compared with the F32 model, not
  an F16-lowered one; the printed "mix model outputs_cos" is that of the final mixed model; the
  loss table lists every candidate layer (those the walk did not test are named in its header);
  a trial worse than all-INT8 is reverted before the float-layer limit is checked; when INT8
  already meets the target an empty qtable and the loss table are still written.
not available: --debug_cmd (run_bias_correction, visual_tensor, ...) and the hidden
  -b/--base_quantize_table of the reference.
"""


def build_parser() -> argparse.ArgumentParser:
    from tpushell.core.quant.chips import CHIP_NAMES
    from tpushell.core.search import SEARCH_METHODS
    p = argparse.ArgumentParser(prog="run_qtable.py", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mlir_file", help="the model: .mlir from model_transform (or .onnx)")
    p.add_argument("--dataset", help="folder of samples (images, npz or npy), searched recursively")
    p.add_argument("--data_list", help="file with one sample per line (instead of --dataset)")
    p.add_argument("--input_num", type=int, default=10,
                   help="number of samples: the first of the shuffled list (default 10)")
    p.add_argument("--expected_cos", type=float, default=0.99,
                   help="target output cosine, 0.5+0.5*cos scale (default 0.99)")
    p.add_argument("--min_layer_cos", type=float, default=0.99,
                   help="layer cosine under which the reference search tries float, "
                        "0.5+0.5*cos scale (default 0.99)")
    p.add_argument("--calibration_table", required=True, help="calibration table of the model")
    p.add_argument("--chip", required=True, choices=CHIP_NAMES, type=str.lower,
                   help="target chip")
    p.add_argument("--fp_type", default="auto", choices=("auto", "F16", "F32", "BF16"),
                   help="float type for float layers (auto: the chip's; default auto)")
    p.add_argument("--loss_table", default="full_loss_table.txt",
                   help="where to write the per-layer loss table (default full_loss_table.txt)")
    p.add_argument("--global_compare_layers", default="",
                   help="compare these layers instead of the outputs: 'a,b' or 'a:0.3,b:0.7'")
    p.add_argument("-o", "--quantize_table", required=True, help="output qtable")
    p.add_argument("--search", default="reference", choices=SEARCH_METHODS,
                   help="search algorithm (default reference)")
    p.add_argument("--time_budget", type=float,
                   help="greedy, sensitivity: stop after this many seconds with the best table "
                        "found so far")
    p.add_argument("--start", choices=("int8", "pattern"), default=None,
                   help="sensitivity search: start from all-INT8 (default) or from the "
                        "known-head pattern")
    p.add_argument("--max_float_layers", type=int,
                   help="reference search: stop once more than this many layers are float "
                        "(default a quarter of the ops; the last trial may pass it, as in the "
                        "reference); greedy: never more than this many (default no cap)")
    return p


def reference_scale_cos(value: float, option: str) -> float:
    """The true cosine of `value` given on the reference's 0.5+0.5*cos scale, which only
    reaches (0.5, 1]; an OptionError naming `option` outside it."""
    from tpushell.core.errors import OptionError
    from tpushell.core.search.space import check_cos, to_true_cos
    if check_cos(value, option) <= 0.5:
        raise OptionError(f"{option} {value} is below the reference scale 0.5+0.5*cos, which "
                          "runs over (0.5, 1] (0.5 is a true cosine of 0); give e.g. 0.99")
    return to_true_cos(value, "reference")


def _main(argv: Sequence[str] | None) -> int:
    from tpushell.core import Session
    from tpushell.core.calibration.tables import loss_rows, write_loss_table, write_qtable
    from tpushell.core.errors import OptionError
    from tpushell.core.fileio import FileGroup, check_writable
    from tpushell.core.metrics import reference_cos
    start = time.perf_counter()
    args = build_parser().parse_args(argv)
    expected = reference_scale_cos(args.expected_cos, "--expected_cos")
    min_layer = reference_scale_cos(args.min_layer_cos, "--min_layer_cos")
    if args.input_num < 1:
        raise OptionError(f"--input_num {args.input_num} is not valid; give 1 or more samples")
    if args.time_budget is not None and not args.time_budget > 0:   # NaN too
        raise OptionError(f"--time_budget {args.time_budget} must be a positive number of seconds")
    if args.max_float_layers is not None and args.max_float_layers < 0:
        raise OptionError(f"--max_float_layers {args.max_float_layers} must be 0 or more")
    check_writable(args.loss_table, "--loss_table")   # before the search, not after it
    check_writable(args.quantize_table, "-o")
    if os.path.abspath(args.loss_table) == os.path.abspath(args.quantize_table):
        raise OptionError(f"--loss_table and -o both name {args.quantize_table}; give two files")
    s = Session(args.chip, progress=progress_bar())
    s.settings.set("fp_type", args.fp_type)
    s.load(args.mlir_file)
    s.load_calibration(args.calibration_table)   # a table for another model fails here
    s.use_data(args.dataset, data_list=args.data_list)
    result = s.search_qtable(expected, min_layer, method=args.search, samples=args.input_num,
                             compare_layers=args.global_compare_layers or None,
                             time_budget=args.time_budget, low_memory=True,
                             max_float=args.max_float_layers, start=args.start)
    table = result.loss_table
    print("\n".join(loss_rows(table)))
    print(f"int8 outputs_cos:{reference_cos(result.int8_cos):.6f} old")
    if result.int8_cos > result.expected_cos:
        print(f"INT8 already meets --expected_cos {args.expected_cos}: no layer needs float; "
              f"writing an empty qtable")
    print(f"mix model outputs_cos:{reference_cos(result.mix_cos):.6f}")
    print(f"true cosine: int8 {result.int8_cos:.6f}, mix {result.mix_cos:.6f}, target "
          f"{expected:.6f}; {len(result.qtable)} {result.float_mode} layer(s); "
          f"{result.samples} sample(s); {args.search} search: {result.reason}")
    if result.trials:
        decisions = [t.decision.split(":")[0] for t in result.trials]
        counts = ", ".join(f"{decisions.count(d)} {d}" for d in dict.fromkeys(decisions))
        print(f"{len(result.trials)} trial(s): {counts}")
    with FileGroup() as files:   # the two tables are replaced together, or neither
        write_loss_table(args.loss_table, table, group=files)
        write_qtable(args.quantize_table, result.qtable, chip=args.chip,
                     mix_mode=result.float_mode, sample_number=result.samples, group=files)
    print(f"Output mix quantization table to {args.quantize_table}")
    if args.search != "reference":
        print("curve (float layers: output cos, 0.5+0.5*cos): " + ", ".join(
            f"{p.floats}: {reference_cos(p.cos):.6f}" for p in result.curve))
    if result.pattern:
        kept = [op for op in result.pattern if op in result.qtable]
        print(f"head pattern: started from its {len(result.pattern)} layer(s); the target "
              f"needs {len(kept)} of them")
    if result.next_step:
        print(result.next_step)
    print(f"total time:{time.perf_counter() - start:.0f} second")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of `run_qtable.py` / `run_qtable`."""
    return run_tool(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
