"""Preprocessing and dataset loading, side by side with the reference's OpenCV pipeline.

    python benchmarks/bench_preprocess.py [--shared /work/shared] [--runs 5]

Prints, for the 100 zoo images at the tutorial settings (rgb, letterbox 416, pad 128, /255):
decode + preprocess one after another (ours vs cv2.imread + cv2.resize), the resize alone,
`load_batches` with its background threads, and how much of it an F32 forward pass hides.
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import time

import cv2
import numpy as np
from tpushell.core.calibration.dataset import load_batches, select_samples
from tpushell.core.graph.interpreter import run
from tpushell.core.graph.onnx_import import import_onnx
from tpushell.core.graph.preprocess import PreprocessConfig, preprocess_images, resize_linear
from zoo import shared_dir

TUTORIAL = PreprocessConfig(net_shape=(416, 416), scale=[0.0039216] * 3, pixel_format="rgb",
                            keep_aspect_ratio=True, pad_value=128)


def cv2_tutorial_input(path: str) -> np.ndarray:
    """The reference's steps for the tutorial settings, with OpenCV (the peer)."""
    img = cv2.imread(path)
    ih, iw = img.shape[:2]
    s = min(416.0 / iw, 416.0 / ih)
    rw, rh = int(iw * s), int(ih * s)
    canvas = np.full((416, 416, 3), 128, np.uint8)
    top, left = (416 - rh) // 2, (416 - rw) // 2
    canvas[top:top + rh, left:left + rw] = cv2.resize(img, (rw, rh))
    x = canvas.transpose(2, 0, 1)[None].astype(np.float32)[:, [2, 1, 0]]
    return x * np.float32(0.0039216)


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def row(what: str, ours: float, peer: float | None = None, unit: str = "s") -> None:
    scale = 1e3 if unit == "ms" else 1.0
    text = f"{what:<52} ours {ours * scale:8.3f} {unit}"
    if peer is not None:
        text += f"   cv2 {peer * scale:8.3f} {unit}   ratio {ours / peer:5.2f}x"
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", help="folder holding zoo/ and golden/ (default: $TPUSHELL_ZOO or ../shared)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    args.shared = str(shared_dir(args.shared))
    folder = os.path.join(args.shared, "zoo", "COCO2017")
    files = sorted(glob.glob(os.path.join(folder, "*.jpg")))
    print(f"{len(files)} images from {folder}; median of {args.runs} runs; {os.cpu_count()} cpus")

    ours = np.concatenate([preprocess_images([f], TUTORIAL) for f in files])
    peer = np.concatenate([cv2_tutorial_input(f) for f in files])
    print(f"max abs diff ours vs cv2 over all 100 inputs: {np.abs(ours - peer).max()}")

    row("decode + preprocess 100 images, one thread",
        median_time(lambda: preprocess_images(files, TUTORIAL), args.runs),
        median_time(lambda: [cv2_tutorial_input(f) for f in files], args.runs))
    img = cv2.imread(files[0])
    row(f"resize {img.shape[1]}x{img.shape[0]} -> 416x312 (one image)",
        median_time(lambda: resize_linear(img, (312, 416)), 20 * args.runs),
        median_time(lambda: cv2.resize(img, (416, 312)), 20 * args.runs), unit="ms")

    graph = import_onnx(os.path.join(args.shared, "zoo", "yolov3-tiny", "tiny-yolov3-11.onnx"),
                        name="yolov3_tiny", input_shapes=[[1, 3, 416, 416]],
                        output_names=["transpose_output1", "transpose_output"])
    graph.preprocess = TUTORIAL
    samples = select_samples(dataset=folder, input_num=100)
    row("load_batches(100 images, batch 10), 2 threads",
        median_time(lambda: list(load_batches(samples, graph, 10)), args.runs))
    preloaded = [{"input_1": ours[i:i + 10]} for i in range(0, 100, 10)]
    forward, streamed = [], []
    for _ in range(max(1, args.runs // 2)):      # interleaved, so a busy machine hits both alike
        forward.append(median_time(lambda: [run(graph, feeds) for feeds in preloaded], 1))
        streamed.append(median_time(
            lambda: [run(graph, feeds) for feeds in load_batches(samples, graph, 10)], 1))
    forward, streamed = statistics.median(forward), statistics.median(streamed)
    row("F32 forward of 100 preloaded inputs (batch 10)", forward)
    row("F32 forward while load_batches decodes", streamed)
    print(f"loading adds {streamed - forward:.2f} s to a 100-image pass "
          f"({(streamed - forward) / forward:.0%} of the forward time)")


if __name__ == "__main__":
    main()
