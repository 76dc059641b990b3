"""A tiny real project (ONNX, .mlir, table, qtable, samples, deployed model) for the hostile-input
tests, built once in code with the tools themselves, plus helpers to run a tool in-process and to
prove that a failed run changed no file and left none behind."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import onnx
from tiny_quant import max_table, samples, yolo_like_proto
from tpushell.core.calibration.tables import QTable, write_calibration_table, write_qtable
from tpushell.core.graph.onnx_import import import_onnx


def make_project(root: Path) -> Path:
    """root/: tiny.onnx, tiny.mlir (+ weights), cali_table, qtable, data/ (4 npy), input.npz,
    m.bmodel (INT8), loss.txt and out_qtable (old outputs), written by the real tools."""
    from tpushell.tools import model_deploy, model_transform
    onnx.save(yolo_like_proto(), root / "tiny.onnx")
    graph = import_onnx(root / "tiny.onnx", name="tiny")
    x = samples(6)
    write_calibration_table(root / "cali_table", max_table(graph, x))
    write_qtable(root / "qtable", QTable({"c3_Conv": "F16"}), chip="bm1684x")
    (root / "data").mkdir()
    for i in range(4):
        np.save(root / "data" / f"{i}.npy", x[i:i + 1])
    np.savez(root / "input.npz", input_1=x[:1])
    assert model_transform.main(["--model_name", "tiny", "--model_def", str(root / "tiny.onnx"),
                                 "--mlir", str(root / "tiny.mlir")]) == 0
    assert model_deploy.main(["--mlir", str(root / "tiny.mlir"), "--quantize", "INT8",
                              "--calibration_table", str(root / "cali_table"), "--chip",
                              "bm1684x", "--model", str(root / "m.bmodel")]) == 0
    (root / "loss.txt").write_text("old loss table\n")
    (root / "out_qtable").write_text("old qtable\n")
    return root


def snapshot(folder: Path) -> dict[str, str]:
    """{relative path: sha256 (or '->target' for links)} of everything under `folder`."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, folder)
            if os.path.islink(p):
                found[rel] = "->" + os.readlink(p)
            else:
                found[rel] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
        for d in dirnames:
            found.setdefault(os.path.relpath(os.path.join(dirpath, d), folder) + "/", "dir")
    return found


def run_main(main, argv, capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of a tool's main(argv), run in-process; argparse's own
    SystemExit (usage errors) gives its code."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


PROGRESS = re.compile(r"^[\w .-]+:\s+\d+%\|")   # tqdm's progress bar lines (not errors)


def assert_one_line_error(rc: int, err: str, what: str = "") -> None:
    """Non-zero exit, exactly one non-empty stderr line (warnings aside), no traceback."""
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning: ")
             and not PROGRESS.match(line)]
    assert rc != 0, f"{what}: exit 0 (stderr {err!r})"
    assert "Traceback" not in err, f"{what}: traceback\n{err}"
    assert len(lines) == 1, f"{what}: {len(lines)} stderr lines: {err!r}"
    assert lines[0].startswith(("error: ", "usage: ")) or ": error: " in lines[0], \
        f"{what}: {lines[0]!r}"
