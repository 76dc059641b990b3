"""npz_tool.py: compare two npz files tensor by tensor (reference F.3), or list one's tensors.

    npz_tool.py compare yolov3_tiny_bm1684x_int8_sym_tpu_outputs.npz yolov3_tiny_top_outputs.npz \
        --tolerance 0.9,0.8 --except input_1 -v
    npz_tool.py dump yolov3_tiny_top_outputs.npz

`compare` exits with status 1 when any tensor fails, as the reference's does (it exits -1).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np

from tpushell.core.errors import OptionError
from tpushell.core.fileio import load_npz
from tpushell.core.metrics import compare_npz

from .common import parse_names, parse_tolerance, run_tool

NOT_SUPPORTED = ("the subcommands other than compare and dump (visualize_diff, extract, rename, "
                 "to_dat, ...)", "compare --op_info, --order, --discard, --dtype, --save, --post_op, "
                 "--per_axis_compare, --fuzzy_match", "sampling of every n-th tensor beyond 200: "
                 "all tensors are always compared (--forall is accepted)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="npz_tool.py", description="Work with npz tensor files.",
                                epilog="Not supported (the reference has them): "
                                       + "; ".join(NOT_SUPPORTED) + ".")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="compare the tensors two npz files have in common",
                       description="Compare every tensor of REFERENCE that TARGET also has: EQUAL, "
                                   "CLOSE (allclose at rtol <= 1e-3), or SIMILAR when cosine and "
                                   "euclidean similarity exceed --tolerance (true cosine).")
    c.add_argument("target", help="npz to check (e.g. the quantized model's tensors)")
    c.add_argument("reference", help="npz to check against (e.g. the F32 model's tensors)")
    c.add_argument("--tolerance", default="0.99,0.99", help="minimum cos,euclid (default 0.99,0.99)")
    c.add_argument("--except", "--excepts", dest="excepts", default="-",
                   help="tensors to leave out, a,b (default -: none)")
    c.add_argument("--tensor", help="compare only these tensors, a,b")
    c.add_argument("--forall", action="store_true", help="accepted: every tensor is always compared")
    c.add_argument("-v", "--verbose", action="count", default=0,
                   help="print every tensor's result and metrics (int8 statistics too)")
    d = sub.add_parser("dump", help="list every tensor: shape, dtype, min, max, mean")
    d.add_argument("file", help="npz file")
    return p


def _compare(args: argparse.Namespace) -> int:
    target, reference = load_npz(args.target), load_npz(args.reference)
    wanted = parse_names(args.tensor)
    if wanted:
        missing = [t for t in wanted if t not in reference or t not in target]
        if missing:
            raise OptionError(f"--tensor: {', '.join(missing)} not in both files")
        reference = {t: reference[t] for t in wanted}
    excepts = [] if args.excepts == "-" else parse_names(args.excepts)
    report = compare_npz(target, reference, parse_tolerance(args.tolerance), excepts)
    if not report.results:
        raise OptionError(f"{args.target} and {args.reference} have no tensor in common "
                          f"(e.g. {', '.join(list(target)[:3])} / {', '.join(list(reference)[:3])})")
    if not args.verbose:
        print(report.format(0, target=args.target, reference=args.reference))
    else:
        for r in report.results:
            stats = _int8_stats(target[r.name]) if target[r.name].dtype == np.int8 else ""
            print(r.format(args.verbose) + (f"\n    {stats}" if stats else ""))
        print(report.summary(args.target, args.reference))
    return 0 if report.passed else 1


def _int8_stats(q: np.ndarray) -> str:
    q = q.astype(np.int16)
    return (f"int8: {np.mean(q == 127):.2%} at 127, {np.mean(q == -128):.2%} at -128, "
            f"{np.mean(q == 0):.2%} zero, {np.mean(np.abs(q) <= 8):.2%} |x| <= 8")


def _dump(args: argparse.Namespace) -> int:
    for name, a in load_npz(args.file).items():
        if a.size and np.issubdtype(a.dtype, np.number):
            print(f"{name:<48} {str(list(a.shape)):<20} {str(a.dtype):<8} min {a.min():.6g} "
                  f"max {a.max():.6g} mean {a.astype(np.float64).mean():.6g}")
        else:
            print(f"{name:<48} {str(list(a.shape)):<20} {a.dtype}")
    return 0


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    return {"compare": _compare, "dump": _dump}[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry: errors print 'error: ...' and exit 1."""
    return run_tool(_run, argv)


if __name__ == "__main__":
    sys.exit(main())
