"""The tutorial's story through the Python API (`tpushell.core.Session`), without the shell.

    python examples/python_api.py [WORKDIR]

Reads the model and images from ../shared/zoo next to the repository, or from $TPUSHELL_ZOO (the
shared folder, or its zoo/ folder). Writes its outputs to WORKDIR (default: the current folder).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from tpushell.core import Session


def find_zoo() -> Path:
    """The zoo folder: $TPUSHELL_ZOO (shared/ or shared/zoo), else ../shared/zoo from the repo."""
    env = os.environ.get("TPUSHELL_ZOO")
    repo = Path(__file__).resolve().parent.parent
    for base in ([Path(env)] if env else []) + [repo.parent / "shared", repo.parent.parent / "shared"]:
        for zoo in (base / "zoo", base):
            if (zoo / "yolov3-tiny").is_dir():
                return zoo
    sys.exit("the model is not here: put it at ../shared/zoo or set TPUSHELL_ZOO")


def main(workdir: str = ".") -> None:
    zoo = find_zoo()
    image = zoo / "COCO2017" / "000000366711.jpg"

    # The tutorial's model_transform step: preprocessing options, cut at the two YOLO heads.
    s = Session(chip="bm1684x")
    graph = s.load(zoo / "yolov3-tiny" / "tiny-yolov3-11.onnx", name="yolov3_tiny",
                   input_shapes=[[1, 3, 416, 416]],
                   output_names=["transpose_output1", "transpose_output"],
                   scale=[0.0039216] * 3, pixel_format="rgb", keep_aspect_ratio=True, pad_value=128)
    print(f"{graph.name}: {len(graph.nodes)} ops, outputs {graph.outputs}")

    # The F32 model on the tutorial image: the raw heads, then the decoded detections.
    x = s.preprocess(image)
    for name, y in s.run(x).items():
        print(f"{name}: shape {y.shape}, range [{y.min():.3f}, {y.max():.3f}]")
    found = s.detect(image)
    print(f"F32 finds {len(found)} object(s):")
    print(found)

    from tpushell.core.vision.draw import draw_detections, save_image
    out = os.path.join(workdir, "yolov3_f32_api.jpg")
    save_image(draw_detections(image, found.detections), out)
    print(f"boxes drawn on {out}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
