"""Preprocessing: OpenCV-exact resize, the reference pipeline (checked against a cv2 version of
reference A.2), decoding, geometry, bad input, and the golden tutorial input."""
from __future__ import annotations

import glob

import cv2
import numpy as np
import pytest
from PIL import Image
from tpushell.core.errors import InputFileError, OptionError
from tpushell.core.graph.preprocess import (
    PreprocessConfig,
    image_size,
    letterbox_geometry,
    preprocess_image,
    preprocess_images,
    read_image,
    resize_linear,
)

TUTORIAL = dict(net_shape=(416, 416), scale=[0.0039216] * 3, pixel_format="rgb",
                keep_aspect_ratio=True, pad_value=128)


def cv2_reference(path: str, cfg: PreprocessConfig) -> np.ndarray:
    """Reference A.2 written with OpenCV, as the reference toolchain runs it (one sample)."""
    flag = {"gray": cv2.IMREAD_GRAYSCALE, "rgba": cv2.IMREAD_UNCHANGED}.get(cfg.pixel_format,
                                                                            cv2.IMREAD_COLOR)
    img = cv2.imread(path, flag)
    if cfg.pixel_format == "rgba":
        img = img[:, :, [2, 1, 0, 3]]
    img = img.reshape(img.shape[0], img.shape[1], -1)
    th, tw = cfg.resize_dims or cfg.net_shape
    ih, iw, c = img.shape
    if not cfg.keep_aspect_ratio:
        out = cv2.resize(img, (tw, th))
    elif cfg.keep_ratio_mode == "letterbox":
        s = min(float(tw) / iw, float(th) / ih)
        rw, rh = int(iw * s), int(ih * s)
        top, left = ((th - rh) // 2, (tw - rw) // 2) if cfg.pad_type == "center" else (0, 0)
        out = np.full((th, tw, c), cfg.pad_value, np.uint8)
        out[top:top + rh, left:left + rw] = cv2.resize(img, (rw, rh)).reshape(rh, rw, c)
    else:
        s = max(float(tw) / iw, float(th) / ih)
        rw = int(iw * s) if iw * s >= tw else tw
        rh = int(ih * s) if ih * s >= th else th
        out = cv2.resize(img, (rw, rh)).reshape(rh, rw, c)
        sh, sw = (rh - th) // 2, (rw - tw) // 2
        out = out[sh:sh + th, sw:sw + tw]
    x = out.reshape(th, tw, c).transpose(2, 0, 1)
    nh, nw = cfg.net_shape
    sh, sw = th // 2 - nh // 2, tw // 2 - nw // 2
    x = x[:, sh:sh + nh, sw:sw + nw].astype(np.float32)
    n = 1 if cfg.pixel_format == "gray" else c
    mean = np.array(cfg.mean[:n], np.float32)[:, None, None]
    scale = np.array(cfg.scale[:n], np.float32)[:, None, None]
    if cfg.pixel_format == "rgb":
        x = x[[2, 1, 0]]
    x = (x - mean) * scale
    return x.transpose(1, 2, 0) if cfg.channel_format == "nhwc" else x


def textured(h: int, w: int, c: int, seed: int) -> np.ndarray:
    """A smooth gradient plus noise, so both resize weights and JPEG coding matter."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (yy * 255 // max(h - 1, 1) + xx * 128 // max(w - 1, 1))[:, :, None] + np.arange(c) * 40
    return ((base + rng.integers(0, 60, (h, w, c))) % 256).astype(np.uint8)


def write_image(tmp_path, name: str, h: int, w: int, mode: str = "RGB", seed: int = 0) -> str:
    arr = textured(h, w, len(mode), seed)
    path = str(tmp_path / name)
    Image.fromarray(arr if len(mode) > 1 else arr[:, :, 0], mode).save(path, quality=90)
    return path


# ---- resize -------------------------------------------------------------------------------------
def test_resize_is_bit_exact_with_cv2_on_random_sizes():
    rng = np.random.default_rng(1684)
    worst = 0
    cases = [tuple(rng.integers(1, 90, 4)) for _ in range(150)]
    cases += [(480, 640, 312, 416), (427, 640, 416, 277), (100, 100, 50, 50), (99, 99, 33, 33),
              (7, 9, 63, 81), (1, 1, 5, 3), (5, 3, 1, 1), (416, 416, 416, 416), (1000, 999, 17, 23)]
    for i, (sh, sw, dh, dw) in enumerate(cases):
        c = (1, 3, 4)[i % 3]
        img = rng.integers(0, 256, (sh, sw, c), dtype=np.uint8)
        ours = resize_linear(img, (dh, dw))
        theirs = cv2.resize(img, (int(dw), int(dh))).reshape(dh, dw, c)
        worst = max(worst, int(np.abs(ours.astype(int) - theirs).max()))
    print(f"resize vs cv2.resize INTER_LINEAR: max abs diff {worst} over {len(cases)} cases")
    assert worst == 0


def test_resize_of_flat_image_keeps_the_value():
    img = np.full((13, 29, 3), 77, np.uint8)
    assert (resize_linear(img, (40, 7)) == 77).all()


# ---- whole pipeline against the cv2 version of the reference ------------------------------------
PIPELINES = [
    dict(net_shape=(32, 48)),
    dict(net_shape=(40, 40), pixel_format="rgb", mean=[10, 20, 30], scale=[0.5, 0.25, 2.0]),
    dict(net_shape=(40, 40), pixel_format="rgb", keep_aspect_ratio=True, pad_value=128),
    dict(net_shape=(40, 40), pixel_format="bgr", keep_aspect_ratio=True, pad_type="normal",
         pad_value=7),
    dict(net_shape=(36, 44), keep_aspect_ratio=True, keep_ratio_mode="short_side_scale"),
    dict(net_shape=(32, 32), resize_dims=(45, 50), pixel_format="rgb"),
    dict(net_shape=(32, 32), resize_dims=(45, 50), keep_aspect_ratio=True, pad_value=3),
    dict(net_shape=(24, 30), channel_format="nhwc", pixel_format="rgb", mean=[1, 2, 3]),
    dict(net_shape=(30, 30), pixel_format="gray", mean=[5, 9, 9], scale=[0.5, 1, 1]),
    dict(net_shape=(30, 30), pixel_format="gray", keep_aspect_ratio=True, pad_value=200),
]


@pytest.mark.parametrize("options", PIPELINES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("shape,ext", [((57, 83), "png"), ((90, 61), "jpg"), ((40, 40), "bmp")])
def test_pipeline_equals_cv2_reference(tmp_path, options, shape, ext):
    path = write_image(tmp_path, f"img.{ext}", *shape)
    cfg = PreprocessConfig(**options)
    ours = preprocess_image(path, cfg)
    expected = cv2_reference(path, cfg)
    assert ours.dtype == np.float32 and ours.shape == expected.shape
    assert np.array_equal(ours, expected)


def test_rgba_png_keeps_alpha_in_rgba_order(tmp_path):
    path = write_image(tmp_path, "a.png", 33, 47, "RGBA")
    cfg = PreprocessConfig(net_shape=(20, 30), pixel_format="rgba", mean=[0, 0, 0, 0],
                           scale=[1, 1, 1, 0.5])
    assert np.array_equal(preprocess_image(path, cfg), cv2_reference(path, cfg))
    letterboxed = PreprocessConfig(net_shape=(20, 30), pixel_format="rgba", keep_aspect_ratio=True)
    assert preprocess_image(path, letterboxed).shape == (4, 20, 30)


def test_batch_stacks_in_order(tmp_path):
    paths = [write_image(tmp_path, f"{i}.png", 20 + 7 * i, 31, seed=i) for i in range(3)]
    cfg = PreprocessConfig(net_shape=(16, 16), channel_format="nhwc")
    batch = preprocess_images(paths, cfg)
    assert batch.shape == (3, 16, 16, 3)
    for i, p in enumerate(paths):
        assert np.array_equal(batch[i], preprocess_image(p, cfg))


# ---- decoding -----------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["jpg", "png"])
@pytest.mark.parametrize("orientation", [2, 3, 6, 8])
def test_exif_orientation_is_applied_like_cv2_imread(tmp_path, ext, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = str(tmp_path / f"rotated.{ext}")
    Image.fromarray(textured(30, 50, 3, 1)).save(path, exif=exif, quality=95)
    assert image_size(path) == ((50, 30) if orientation in (6, 8) else (30, 50))
    assert np.array_equal(read_image(path, "bgr"), cv2.imread(path, cv2.IMREAD_COLOR))
    assert np.array_equal(read_image(path, "gray")[:, :, 0], cv2.imread(path, cv2.IMREAD_GRAYSCALE))


def test_gray_decode_matches_cv2(tmp_path):
    jpg = write_image(tmp_path, "c.jpg", 41, 37)
    png = write_image(tmp_path, "c.png", 41, 37)
    assert np.array_equal(read_image(jpg, "gray")[:, :, 0], cv2.imread(jpg, cv2.IMREAD_GRAYSCALE))
    diff = np.abs(read_image(png, "gray")[:, :, 0].astype(int) - cv2.imread(png, cv2.IMREAD_GRAYSCALE))
    print(f"gray PNG vs cv2 max diff {diff.max()}")
    assert diff.max() == 0


@pytest.mark.zoo
def test_pillow_decode_equals_cv2_imread_on_the_zoo_images(zoo):
    files = sorted(glob.glob(str(zoo / "COCO2017" / "*.jpg")))
    assert len(files) == 100
    differing = [f for f in files if not np.array_equal(read_image(f, "bgr"), cv2.imread(f))]
    print(f"Pillow vs cv2.imread: {len(files) - len(differing)}/{len(files)} images identical")
    assert differing == []


# ---- golden -------------------------------------------------------------------------------------
@pytest.mark.zoo
def test_tutorial_image_equals_the_reference_input(zoo, golden_input):
    x = preprocess_images([str(zoo / "COCO2017" / "000000366711.jpg")], PreprocessConfig(**TUTORIAL))
    print(f"tutorial input vs golden: max abs diff {np.abs(x - golden_input).max()}")
    assert x.shape == golden_input.shape and np.array_equal(x, golden_input)


@pytest.mark.zoo
def test_session_preprocess_end_to_end(zoo, yolo_onnx, golden_input):
    from tpushell.core import Session
    s = Session()
    s.load(yolo_onnx, input_shapes=[[1, 3, 416, 416]],
           output_names=["transpose_output1", "transpose_output"], scale=[0.0039216] * 3,
           pixel_format="rgb", keep_aspect_ratio=True, pad_value=128)
    x = s.preprocess(zoo / "COCO2017" / "000000366711.jpg")
    assert np.array_equal(x, golden_input)


# ---- geometry -----------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    dict(keep_aspect_ratio=True),
    dict(keep_aspect_ratio=True, pad_type="normal"),
    dict(keep_aspect_ratio=True, resize_dims=(50, 60)),
    dict(keep_aspect_ratio=True, keep_ratio_mode="short_side_scale"),
    dict(keep_aspect_ratio=False, resize_dims=(48, 48)),
])
@pytest.mark.parametrize("orig", [(30, 70), (70, 30), (40, 40)])
def test_letterbox_geometry_locates_the_image(tmp_path, options, orig):
    path = str(tmp_path / "white.png")
    Image.fromarray(np.full(orig + (3,), 255, np.uint8)).save(path)
    cfg = PreprocessConfig(net_shape=(40, 40), pad_value=0, **options)
    x = preprocess_image(path, cfg)[0]
    _, (top, left), (nh, nw) = letterbox_geometry(orig, cfg)
    expected = np.zeros_like(x)
    expected[max(top, 0):max(top + nh, 0), max(left, 0):max(left + nw, 0)] = 255
    assert np.array_equal(x, expected)


def test_letterbox_geometry_of_the_tutorial_image():
    scale, pad, new = letterbox_geometry((640, 427), PreprocessConfig(**TUTORIAL))
    assert (scale, pad, new) == (0.65, (0, 69), (416, 277))


# ---- bad input ----------------------------------------------------------------------------------
def test_corrupt_and_truncated_images_name_the_file(tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not a jpeg at all")
    good = write_image(tmp_path, "good.jpg", 200, 200)
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(open(good, "rb").read()[:600])
    cfg = PreprocessConfig(net_shape=(16, 16))
    for bad in (junk, truncated, tmp_path / "missing.jpg", tmp_path):
        with pytest.raises(InputFileError, match=str(bad)):
            preprocess_image(str(bad), cfg)


@pytest.mark.parametrize("options,message", [
    (dict(pixel_format="yuv"), "pixel_format 'yuv'.*rgb, bgr, gray, rgba"),
    (dict(channel_format="chw"), "channel_format"),
    (dict(pad_type="edge"), "pad_type 'edge'"),
    (dict(keep_ratio_mode="fit"), "keep_ratio_mode"),
    (dict(mean=[1, 2]), "--mean has 2 values.*3 channels"),
    (dict(scale=[1, 2, 3], pixel_format="rgba"), "--scale has 3 values.*4 channels"),
    (dict(pad_value=300), "--pad_value 300"),
    (dict(resize_dims=(0, 5)), "--resize_dims"),
])
def test_bad_options_are_named(options, message):
    with pytest.raises(OptionError, match=message):
        PreprocessConfig(net_shape=(8, 8), **options)


def test_resize_dims_smaller_than_the_input_is_an_error(tmp_path):
    path = write_image(tmp_path, "x.png", 10, 10)
    with pytest.raises(OptionError, match="resize_dims 8,20 is smaller than the network input 16,16"):
        preprocess_image(path, PreprocessConfig(net_shape=(16, 16), resize_dims=(8, 20)))


def test_non_image_input_is_an_error(tmp_path):
    path = write_image(tmp_path, "x.png", 10, 10)
    with pytest.raises(OptionError, match="not an image"):
        preprocess_image(path, PreprocessConfig(net_shape=(16, 16), channel_format="none"))
