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
    from tpushell.core.graph.onnx_import import import_onnx
    return import_onnx(yolo_onnx, name="yolov3_tiny", input_shapes=[[1, 3, 416, 416]],
                       output_names=["transpose_output1", "transpose_output"])


@pytest.fixture(scope="session")
def golden_input(golden):
    import numpy as np
    return np.load(golden / "000000366711_input.npz")["input_1"]


def build_tiny_yolo(path: Path, seed: int = 0) -> Path:
    """A 64x64 YOLO-shaped ONNX: two Conv heads (2x2 and 4x4, 255 channels), NHWC Transposes named
    as the tutorial's, and a Reshape/Sigmoid/Concat tail to `yolo_raw` like the zoo file."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper
    rng = np.random.default_rng(seed)
    bias = rng.normal(0, 1.5, 255).astype(np.float32)
    bias[4::85] = 1.0                                   # objectness: some boxes pass 0.5
    inits, nodes = [], []
    for name, k in (("coarse", 32), ("fine", 16)):
        inits.append(numpy_helper.from_array(rng.normal(0, 0.02, (255, 3, k, k)).astype(np.float32),
                                             f"{name}_W"))
        inits.append(numpy_helper.from_array(bias, f"{name}_B"))
        nodes.append(helper.make_node("Conv", ["input_1", f"{name}_W", f"{name}_B"], [name],
                                      kernel_shape=[k, k], strides=[k, k]))
    inits.append(numpy_helper.from_array(np.array([1, -1, 85], np.int64), "tail_shape"))
    for src, out in (("coarse", "transpose_output1"), ("fine", "transpose_output")):
        nodes += [helper.make_node("Transpose", [src], [out], perm=[0, 2, 3, 1]),
                  helper.make_node("Reshape", [out, "tail_shape"], [out + "_r"]),
                  helper.make_node("Sigmoid", [out + "_r"], [out + "_s"])]
    nodes.append(helper.make_node("Concat", ["transpose_output1_s", "transpose_output_s"],
                                  ["yolo_raw"], axis=1))
    graph = helper.make_graph(nodes, "tiny_yolo",
                              [helper.make_tensor_value_info("input_1", 1, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("yolo_raw", 1, [1, 60, 85])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, path)
    return path


@pytest.fixture
def tiny_yolo(tmp_path) -> Path:
    """Path of a tiny YOLO-shaped ONNX model (see `build_tiny_yolo`)."""
    return build_tiny_yolo(tmp_path / "tiny_yolo.onnx")


@pytest.fixture
def photo(tmp_path) -> Path:
    """A 96 x 128 random RGB JPEG."""
    import numpy as np
    from PIL import Image
    path = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(path)
    return path
