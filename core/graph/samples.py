"""One sample as model inputs: an image (with the model's preprocessing), an .npz or an .npy.

    feeds = load_sample(["COCO2017/000000366711.jpg"], graph)   # {input name: array (1, C, H, W)}

Calibration, the tools' `--test_input` and detection all read a sample this way; which samples a
dataset holds is decided in core/calibration/dataset.py.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Sequence

import numpy as np

from ..errors import InputFileError, ModelError
from ..fileio import load_npz
from .ir import Graph, TensorInfo
from .preprocess import PreprocessConfig, preprocess_image

IMAGE_EXTENSIONS = ("jpg", "jpeg", "bmp", "png", "jfif")
KINDS = {**{ext: "image" for ext in IMAGE_EXTENSIONS}, "npz": "npz", "npy": "npy"}
ACCEPTED = "|".join(KINDS)


def sample_kind(path: str) -> str | None:
    """'image', 'npz' or 'npy' from the file extension (case-insensitive), else None."""
    return KINDS.get(os.path.splitext(path)[1][1:].lower())


def input_config(graph: Graph, info: TensorInfo) -> PreprocessConfig:
    """The graph's image preprocessing, sized for this input."""
    cfg = graph.preprocess
    if cfg is None:
        raise ModelError(f"model '{graph.name}' has no image preprocessing; give the samples "
                         f"as .npz or .npy files")
    if len(info.shape) != 4:
        raise ModelError(f"input '{info.name}' of shape {list(info.shape)} is not an image "
                         f"(4-D) input; give the samples as .npz or .npy files")
    hw = info.shape[1:3] if cfg.channel_format == "nhwc" else info.shape[2:4]
    return cfg if tuple(hw) == tuple(cfg.net_shape) else replace(cfg, net_shape=tuple(hw))


def fit_batch(array: np.ndarray, info: TensorInfo, source: str) -> np.ndarray:
    """`array` as a batch for input `info`: its shape with any batch size, or one sample without
    the batch axis; else an error naming `source`, the shape found and the shape expected."""
    array = np.asarray(array)
    if array.shape == tuple(info.shape[1:]):
        array = array[None]
    elif array.ndim != len(info.shape) or array.shape[1:] != tuple(info.shape[1:]):
        expected = ["N"] + list(info.shape[1:])
        raise InputFileError(f"{source} has shape {list(array.shape)}; input '{info.name}' expects "
                             f"{expected} (any batch size N) or {list(info.shape[1:])}")
    if array.shape[0] == 0:
        raise InputFileError(f"{source} has shape {list(array.shape)}: no sample (batch size 0) "
                             f"for input '{info.name}'")
    return array.astype(info.dtype, copy=False)


def _load_npz(path: str, inputs: list[TensorInfo]) -> dict[str, np.ndarray]:
    arrays = load_npz(path)
    names = [i.name for i in inputs]
    if len(inputs) == 1 and names[0] not in arrays:
        if len(arrays) != 1:
            raise InputFileError(f"{path} holds {len(arrays)} arrays {sorted(arrays)}; for the "
                                 f"single input '{names[0]}' give exactly one array or one named "
                                 f"'{names[0]}'")
        arrays = {names[0]: next(iter(arrays.values()))}
    missing = [n for n in names if n not in arrays]
    if missing:
        raise InputFileError(f"{path} has no array for input(s) {missing}; it holds "
                             f"{sorted(arrays)}; a multi-input npz needs one key per input name")
    return {i.name: fit_batch(arrays[i.name], i, f"{path} key '{i.name}'") for i in inputs}


def _load_npy(path: str, info: TensorInfo) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as e:
        raise InputFileError(f"{path} is not a readable npy file ({type(e).__name__}: {e})") from e
    return fit_batch(array, info, path)


def load_sample(sample: Sequence[str], graph: Graph) -> dict[str, np.ndarray]:
    """One sample (files from `select_samples`) as {input name: array with a batch axis}."""
    inputs = graph.inputs
    if sample_kind(sample[0]) == "npz":
        return _load_npz(sample[0], inputs)
    if len(sample) != len(inputs):
        raise InputFileError(f"sample {','.join(sample)} has {len(sample)} file(s) but the model "
                             f"has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                             f"give one file per input, separated by commas")
    feeds = {}
    for path, info in zip(sample, inputs):
        if sample_kind(path) == "npy":
            feeds[info.name] = _load_npy(path, info)
        else:
            array = preprocess_image(path, input_config(graph, info))[None]
            feeds[info.name] = fit_batch(array, info, f"image {path} after preprocessing")
    return feeds
