"""Image preprocessing exactly as the reference toolchain does it (reference A.1-A.2).

    cfg = PreprocessConfig(net_shape=(416, 416), scale=[0.0039216] * 3, pixel_format="rgb",
                           keep_aspect_ratio=True, pad_value=128)
    x = preprocess_images(["img.jpg"], cfg)       # float32 N x 3 x 416 x 416

The reference decodes with OpenCV and resizes with `cv2.resize` (INTER_LINEAR on uint8). We decode
with Pillow (the same libjpeg-turbo output, EXIF orientation applied as `cv2.imread` does) and
reproduce OpenCV's fixed-point bilinear resize bit for bit in numpy, so the result is identical
without OpenCV at run time.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

import numpy as np

from ..errors import InputFileError, OptionError

PIXEL_FORMATS = ("rgb", "bgr", "gray", "rgba")
CHANNEL_FORMATS = ("nchw", "nhwc", "none")
KEEP_RATIO_MODES = ("letterbox", "short_side_scale")
PAD_TYPES = ("center", "normal")
CHANNELS = {"rgb": 3, "bgr": 3, "gray": 1, "rgba": 4}

# OpenCV's INTER_LINEAR on uint8: 11-bit weights (INTER_RESIZE_COEF_BITS) in both directions.
COEF_BITS = 11
COEF_ONE = 1 << COEF_BITS
# R, G, B weights, shift and rounding of the gray conversion cv2.imread uses: libpng's
# rgb_to_gray(0.299, 0.587) truncates; OpenCV's own (BMP and others) rounds. JPEGs are decoded
# to gray by libjpeg itself (its luma channel).
LUMA = {"PNG": ((9797, 19234, 3737), 15, 0), None: ((4899, 9617, 1868), 14, 1 << 13)}
# EXIF orientations that swap width and height (transpose, rotate 90/270, transverse).
SWAPPING_ORIENTATIONS = (5, 6, 7, 8)


@dataclass
class PreprocessConfig:
    """How an image becomes the model input; stored with the model (the mlir's top.Input)."""

    net_shape: tuple[int, int] = (0, 0)          # H, W of the network input
    resize_dims: tuple[int, int] | None = None   # H, W to resize to before a center crop
    keep_aspect_ratio: bool = False
    keep_ratio_mode: str = "letterbox"
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    scale: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    pixel_format: str = "bgr"
    channel_format: str = "nchw"
    pad_value: int = 0
    pad_type: str = "center"

    def __post_init__(self) -> None:
        for name, value, valid in (("pixel_format", self.pixel_format, PIXEL_FORMATS),
                                   ("channel_format", self.channel_format, CHANNEL_FORMATS),
                                   ("keep_ratio_mode", self.keep_ratio_mode, KEEP_RATIO_MODES),
                                   ("pad_type", self.pad_type, PAD_TYPES)):
            if value not in valid:
                raise OptionError(f"--{name} '{value}' is not valid; choose one of "
                                  f"{', '.join(valid)}")
        self.net_shape = tuple(int(v) for v in self.net_shape)
        if self.resize_dims is not None:
            self.resize_dims = tuple(int(v) for v in self.resize_dims)
            if len(self.resize_dims) != 2 or min(self.resize_dims) < 1:
                raise OptionError(f"--resize_dims {','.join(map(str, self.resize_dims))} is not "
                                  f"valid; give two positive sizes h,w")
        self.mean = [float(v) for v in self.mean]
        self.scale = [float(v) for v in self.scale]
        for name in ("mean", "scale"):
            per_channel(getattr(self, name), name, self.pixel_format)
        if not 0 <= int(self.pad_value) <= 255:
            raise OptionError(f"--pad_value {self.pad_value} is not valid; it is a pixel value "
                              f"0..255 (applied before mean and scale)")
        self.pad_value = int(self.pad_value)

    @property
    def channels(self) -> int:
        """Channels of the model input: 1 for gray, 4 for rgba, else 3."""
        return CHANNELS[self.pixel_format]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["net_shape"] = list(self.net_shape)
        d["resize_dims"] = list(self.resize_dims) if self.resize_dims else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def per_channel(values: Sequence[float], name: str, pixel_format: str) -> np.ndarray:
    """--mean/--scale as a float32 vector of the format's channel count.

    gray takes the first value (as the reference does); one value, or all values equal, apply to
    every channel; otherwise there must be exactly one value per channel.
    """
    n = CHANNELS[pixel_format]
    v = np.asarray(values, dtype=np.float32).reshape(-1)
    if v.size == 0:
        raise OptionError(f"--{name} is empty; give {n} comma-separated values")
    if pixel_format == "gray" or (v == v[0]).all():
        return np.full(n, v[0], dtype=np.float32)
    if v.size != n:
        raise OptionError(f"--{name} has {v.size} values ({','.join(f'{x:g}' for x in v)}) but "
                          f"pixel_format {pixel_format} has {n} channels; give {n} values")
    return v


# ---- reading ------------------------------------------------------------------------------------
def _open(path: str):
    from PIL import Image
    if not os.path.isfile(path):
        hint = " (it is a folder)" if os.path.isdir(path) else ""
        raise InputFileError(f"image not found: {path}{hint}")
    try:
        return Image.open(path)
    except Exception as e:
        raise InputFileError(f"cannot read image {path}: not an image Pillow can decode "
                             f"({type(e).__name__}: {e})") from e


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(h, w) of an image as it is read for preprocessing (EXIF rotation applied), header only."""
    path = os.fspath(path)
    with _open(path) as im:
        w, h = im.size
        orientation = im.getexif().get(0x0112, 1)
    return (w, h) if orientation in SWAPPING_ORIENTATIONS else (h, w)


def read_image(path: str | os.PathLike, pixel_format: str = "bgr") -> np.ndarray:
    """Decode an image to uint8 H x W x C in the channel order of `pixel_format`, as cv2 reads it.

    Like `cv2.imread`: EXIF orientation is applied (except for rgba, read "unchanged"), 16-bit
    images keep their high byte, gray JPEGs are libjpeg's luma channel.
    """
    from PIL import Image, ImageOps
    path = os.fspath(path)
    try:
        with _open(path) as im:
            kind = im.format                  # lost by the transpose below
            if pixel_format == "gray" and kind == "JPEG":
                im.draft("L", im.size)        # libjpeg's own grayscale output, as cv2 asks for
            if pixel_format != "rgba":
                im = ImageOps.exif_transpose(im)
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
                im = Image.fromarray((np.asarray(im) >> 8).astype(np.uint8))
            if pixel_format == "gray":
                arr = _luma(im, kind)[:, :, None]
            else:
                arr = np.asarray(im.convert("RGBA" if pixel_format == "rgba" else "RGB"))
    except InputFileError:
        raise
    except Exception as e:  # truncated / corrupt data surfaces only when decoding
        raise InputFileError(f"cannot read image {path}: {type(e).__name__}: {e}") from e
    return arr[:, :, ::-1] if pixel_format == "bgr" else arr


def _luma(im, kind: str | None) -> np.ndarray:
    """Gray uint8 of a colour image as cv2.imread(IMREAD_GRAYSCALE) computes it per format."""
    if im.mode == "L":
        return np.asarray(im)
    weights, shift, rounding = LUMA.get(kind, LUMA[None])
    rgb = np.asarray(im.convert("RGB")).astype(np.int32)
    return ((rgb @ np.array(weights, np.int32) + rounding) >> shift).astype(np.uint8)


# ---- OpenCV INTER_LINEAR, bit exact -------------------------------------------------------------
def _linear_taps(n_src: int, n_dst: int, clamp_weights: bool):
    """Source indices and 11-bit weights of OpenCV's half-pixel bilinear along one axis.

    Positions are computed in double and rounded to float32 as OpenCV does. Columns outside the
    image take the edge pixel with full weight (`clamp_weights`); rows keep their fractional
    weight and read the clipped edge row, which is what cv::resize does in each direction.
    """
    scale = 1.0 / (n_dst / n_src)           # OpenCV stores dst/src and inverts it
    f = ((np.arange(n_dst) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f -= s.astype(np.float32)
    if clamp_weights:
        out = (s < 0) | (s >= n_src - 1)
        f[out] = 0
        s = np.clip(s, 0, n_src - 1)
    w0 = np.rint((np.float32(1) - f) * np.float32(COEF_ONE)).astype(np.int32)
    w1 = np.rint(f * np.float32(COEF_ONE)).astype(np.int32)
    return np.clip(s, 0, n_src - 1), np.clip(s + 1, 0, n_src - 1), w0, w1


def resize_linear(img: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """uint8 H x W x C image resized to `size_hw` exactly as `cv2.resize(img, (w, h))` does.

    Half-pixel centres, no antialiasing when shrinking, 11-bit fixed-point weights; the vertical
    pass rounds like OpenCV's `VResizeLinear` for uint8 (each term pre-shifted, then +2 >> 2).
    """
    h, w = (int(v) for v in size_hw)
    if (h, w) == img.shape[:2]:
        return img.copy()
    n_ch = img.shape[2]
    x0, x1, a0, a1 = _linear_taps(img.shape[1], w, clamp_weights=True)
    y0, y1, b0, b1 = _linear_taps(img.shape[0], h, clamp_weights=False)
    rows, inv = np.unique(np.concatenate([y0, y1]), return_inverse=True)
    # rows flattened to W*C columns: one 2-D take per tap is much faster than 3-D fancy indexing
    src = img[rows].reshape(len(rows), -1)
    chan = np.arange(n_ch)
    horiz = np.take(src, (x0[:, None] * n_ch + chan).ravel(), axis=1).astype(np.int32)
    horiz *= np.repeat(a0, n_ch)
    tap1 = np.take(src, (x1[:, None] * n_ch + chan).ravel(), axis=1).astype(np.int32)
    tap1 *= np.repeat(a1, n_ch)
    horiz += tap1
    horiz >>= 4
    top = np.take(horiz, inv[:h], axis=0)
    top *= b0[:, None]
    top >>= 16
    bottom = np.take(horiz, inv[h:], axis=0)
    bottom *= b1[:, None]
    bottom >>= 16
    top += bottom
    top += 2
    top >>= 2
    return np.clip(top, 0, 255).astype(np.uint8).reshape(h, w, n_ch)


# ---- geometry -----------------------------------------------------------------------------------
def resize_target(cfg: PreprocessConfig) -> tuple[int, int]:
    """(h, w) the image is resized to: resize_dims, or the net input size."""
    if min(cfg.net_shape) < 1:
        raise OptionError(f"the network input size is unknown (net_shape {cfg.net_shape}); "
                          f"load a model with a 4-D image input first")
    target = cfg.resize_dims or cfg.net_shape
    if target[0] < cfg.net_shape[0] or target[1] < cfg.net_shape[1]:
        raise OptionError(f"--resize_dims {target[0]},{target[1]} is smaller than the network input "
                          f"{cfg.net_shape[0]},{cfg.net_shape[1]}; it must be at least as large "
                          f"(the image is center-cropped to the input)")
    return target


def _resized_size(orig_hw: tuple[int, int], cfg: PreprocessConfig):
    """(scale, (rh, rw), (paste_top, paste_left)) of the resize inside the resize_dims canvas."""
    (th, tw), (ih, iw) = resize_target(cfg), orig_hw
    if not cfg.keep_aspect_ratio:
        return min(cfg.net_shape[0] / ih, cfg.net_shape[1] / iw), (th, tw), (0, 0)
    if cfg.keep_ratio_mode == "letterbox":
        s = min(float(tw) / iw, float(th) / ih)
        # max(1, ...): the reference crashes on a 0-pixel side of an extreme aspect ratio
        rh, rw = max(1, int(ih * s)), max(1, int(iw * s))
        if cfg.pad_type == "normal":
            return s, (rh, rw), (0, 0)
        return s, (rh, rw), ((th - rh) // 2, (tw - rw) // 2)
    s = max(float(tw) / iw, float(th) / ih)
    rh = int(ih * s) if ih * s >= th else th
    rw = int(iw * s) if iw * s >= tw else tw
    return s, (rh, rw), (-((rh - th) // 2), -((rw - tw) // 2))


def _crop_start(size: tuple[int, int], crop: tuple[int, int]) -> tuple[int, int]:
    """Top-left of the reference's center crop (h//2 - crop_h//2)."""
    return size[0] // 2 - crop[0] // 2, size[1] // 2 - crop[1] // 2


def letterbox_geometry(orig_hw: tuple[int, int], cfg: PreprocessConfig):
    """(scale, (pad_top, pad_left), (new_h, new_w)) placing an image in the network input.

    The image, resized to new_h x new_w, has its top-left at (pad_top, pad_left) of the network
    input (negative when it was cropped). Map a network-input point back to the original image
    with `x0 = (x - pad_left) * orig_w / new_w`, `y0 = (y - pad_top) * orig_h / new_h`.
    `scale` is the factor the reference used (min ratio for letterbox and stretch, max for
    short_side_scale).
    """
    s, (rh, rw), (top, left) = _resized_size(tuple(orig_hw), cfg)
    ct, cl = _crop_start(resize_target(cfg), cfg.net_shape)
    return s, (top - ct, left - cl), (rh, rw)


def fit_image(img: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """uint8 H x W x C image resized (stretch / letterbox / short side), padded and cropped to the
    network input size, still uint8 (padding is in the pixel domain, as the reference does)."""
    _, (rh, rw), (top, left) = _resized_size(img.shape[:2], cfg)
    resized = resize_linear(img, (rh, rw))
    th, tw = resize_target(cfg)
    if cfg.keep_aspect_ratio and cfg.keep_ratio_mode == "short_side_scale":
        canvas = resized[-top:-top + th, -left:-left + tw]
    elif (rh, rw) == (th, tw):
        canvas = resized
    else:
        canvas = np.full((th, tw, img.shape[2]), cfg.pad_value, dtype=np.uint8)
        canvas[top:top + rh, left:left + rw] = resized
    ct, cl = _crop_start((th, tw), cfg.net_shape)
    return canvas[ct:ct + cfg.net_shape[0], cl:cl + cfg.net_shape[1]]


# ---- the pipeline -------------------------------------------------------------------------------
def _normalize_into(out: np.ndarray, img: np.ndarray, cfg: PreprocessConfig) -> None:
    """out (C,H,W or H,W,C float32) = (img - mean) * scale, per channel, in float32."""
    mean = per_channel(cfg.mean, "mean", cfg.pixel_format)
    scale = per_channel(cfg.scale, "scale", cfg.pixel_format)
    if cfg.channel_format == "nhwc":
        out[...] = img
    else:
        out[...] = img.transpose(2, 0, 1)
        mean, scale = mean[:, None, None], scale[:, None, None]
    out -= mean
    out *= scale


def sample_shape(cfg: PreprocessConfig) -> tuple[int, int, int]:
    """Shape of one preprocessed sample: (C, H, W) for nchw, (H, W, C) for nhwc."""
    if cfg.channel_format == "none":
        raise OptionError("the model input is not an image (channel_format none); "
                          "give the data as .npz or .npy files")
    resize_target(cfg)
    h, w = cfg.net_shape
    return (h, w, cfg.channels) if cfg.channel_format == "nhwc" else (cfg.channels, h, w)


def preprocess_into(out: np.ndarray, path: str | os.PathLike, cfg: PreprocessConfig) -> None:
    """Read, fit and normalize one image into the preallocated float32 `out` (one sample)."""
    img = fit_image(read_image(path, cfg.pixel_format), cfg)
    _normalize_into(out, img, cfg)


def preprocess_image(path: str | os.PathLike, cfg: PreprocessConfig) -> np.ndarray:
    """One image -> float32 sample without the batch axis (C,H,W for nchw, H,W,C for nhwc)."""
    out = np.empty(sample_shape(cfg), dtype=np.float32)
    preprocess_into(out, path, cfg)
    return out


def preprocess_images(paths: Sequence[str | os.PathLike], cfg: PreprocessConfig) -> np.ndarray:
    """Images -> float32 batch (N,C,H,W for nchw, N,H,W,C for nhwc), reference preprocessing."""
    if not paths:
        raise OptionError("no image given to preprocess")
    out = np.empty((len(paths),) + sample_shape(cfg), dtype=np.float32)
    for i, path in enumerate(paths):
        preprocess_into(out[i], path, cfg)
    return out
