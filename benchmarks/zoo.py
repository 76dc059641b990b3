"""Where the benchmarks find the real model and data: ../shared next to the repository."""
from __future__ import annotations

import os
from pathlib import Path


def shared_dir(arg: str | None) -> Path:
    """`arg`, $TPUSHELL_ZOO or ../shared (the folder holding zoo/ and golden/)."""
    repo = Path(__file__).resolve().parents[1]
    for c in [arg, os.environ.get("TPUSHELL_ZOO"), repo.parent / "shared", repo.parent.parent / "shared"]:
        if c and (Path(c) / "zoo").is_dir():
            return Path(c)
    raise SystemExit("cannot find ../shared (give --zoo PATH or set TPUSHELL_ZOO)")
