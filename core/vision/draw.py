"""Boxes with `class:score%` labels drawn on the original image (Pillow), saved atomically.

    img = draw_detections("img.jpg", detections)
    save_image(img, "out.jpg")              # JPEG, PNG or BMP by extension; never half-written
"""
from __future__ import annotations

import colorsys
import os
from typing import Sequence

import numpy as np

from ..errors import OptionError
from ..fileio import atomic_write
from .yolo import Detection

IMAGE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP"}
LINE_WIDTH = 2


def class_color(class_id: int) -> tuple[int, int, int]:
    """A fixed, well-spread RGB colour per class (golden-ratio hue steps), the same everywhere."""
    hue = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _font(image_height: int):
    from PIL import ImageFont
    return ImageFont.load_default(size=max(11, image_height // 40))


def draw_detections(image: str | os.PathLike | np.ndarray, detections: Sequence[Detection]):
    """A PIL image: the original image (path or H x W x 3 RGB uint8) with boxes and labels."""
    from PIL import Image, ImageDraw

    from ..graph.preprocess import read_image
    rgb = image if isinstance(image, np.ndarray) else read_image(image, "rgb")
    img = Image.fromarray(np.ascontiguousarray(rgb))
    draw = ImageDraw.Draw(img)
    font = _font(img.height)
    for det in detections:
        color = class_color(det.class_id)
        x0, y0, x1, y1 = det.box
        draw.rectangle([x0, y0, x1, y1], outline=color, width=LINE_WIDTH)
        left, top, right, bottom = draw.textbbox((0, 0), det.label, font=font)
        tw, th = right - left + 4, bottom - top + 4
        # above the box (inside it at the top edge), shifted left to stay in the image
        ty = y0 - th if y0 - th >= 0 else y0
        tx = max(0, min(x0, img.width - tw))
        dark = tuple(int(c * 0.6) for c in color)
        draw.rectangle([tx, ty, tx + tw, ty + th], fill=dark)
        draw.text((tx + 2 - left, ty + 2 - top), det.label, fill=(255, 255, 255), font=font)
    return img


def image_format(path: str) -> str:
    """Pillow format name for an output path's extension; OptionError for others."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in IMAGE_FORMATS:
        raise OptionError(f"cannot write image '{path}': unknown extension '{ext}'; use one of "
                          f"{', '.join(IMAGE_FORMATS)}")
    return IMAGE_FORMATS[ext]


def save_image(img, path: str | os.PathLike) -> None:
    """Save a PIL image by extension, atomically (an interrupted save leaves the old file)."""
    path = os.fspath(path)
    fmt = image_format(path)
    with atomic_write(path, "wb") as f:
        img.save(f, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
