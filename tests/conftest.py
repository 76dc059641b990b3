"""Shared fixtures: the real zoo (../shared), tiny models built in code, quiet matplotlib."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parent.parent


def shared_dir() -> Path | None:
    """../shared next to the repository (or $TPUSHELL_ZOO pointing at shared/ or shared/zoo)."""
    env = os.environ.get("TPUSHELL_ZOO")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared", REPO.parent.parent / "shared"]
    for c in candidates:
        if (c / "zoo").is_dir():
            return c
        if c.name == "zoo" and c.is_dir():
            return c.parent
    return None


def _need_shared() -> Path:
    found = shared_dir()
    if found is None:
        msg = ("the real model and images are not available: expected ../shared/zoo next to the "
               "repository or TPUSHELL_ZOO=<path to shared>")
        if os.environ.get("TPUSHELL_REQUIRE_ZOO") == "1":
            pytest.fail(msg + " (TPUSHELL_REQUIRE_ZOO=1)")
        pytest.skip(msg)
    return found


@pytest.fixture(scope="session")
def shared() -> Path:
    """Path of ../shared (zoo/ and golden/); skips, or fails under TPUSHELL_REQUIRE_ZOO=1."""
    return _need_shared()


@pytest.fixture(scope="session")
def zoo(shared) -> Path:
    return shared / "zoo"


@pytest.fixture(scope="session")
def golden(shared) -> Path:
    return shared / "golden" / "yolov3_tiny"


@pytest.fixture(scope="session")
def yolo_onnx(zoo) -> Path:
    return zoo / "yolov3-tiny" / "tiny-yolov3-11.onnx"


@pytest.fixture(scope="session")
def yolo_graph(yolo_onnx):
    """The tutorial's graph: tiny-yolov3 cut at the two transposed heads (read-only: copy to edit)."""
    from tpushell.core.onnx_import import import_onnx
    return import_onnx(yolo_onnx, name="yolov3_tiny", input_shapes=[[1, 3, 416, 416]],
                       output_names=["transpose_output1", "transpose_output"])


@pytest.fixture(scope="session")
def golden_input(golden):
    import numpy as np
    return np.load(golden / "000000366711_input.npz")["input_1"]
