"""Resize and Upsample: nearest, linear and cubic, one axis at a time (all three are separable).

Source coordinates are computed in float32 with onnxruntime's formulas: computed in float64, an
exact tie such as 3 / 0.6 = 4.9999999 picks another pixel in nearest mode.
"""
from __future__ import annotations

import numpy as np

from . import op

F32 = np.float32


def _ints(v) -> list[int]:
    return [int(i) for i in np.asarray(v).reshape(-1)]


def source_coords(out_len: int, in_len: int, scale: float, mode: str,
                  roi_start: float = 0.0, roi_end: float = 1.0) -> np.ndarray:
    """Continuous input coordinate (float32) of every output index along one axis."""
    i = np.arange(out_len, dtype=F32)
    s = F32(scale)
    if mode == "half_pixel":
        return (i + F32(0.5)) / s - F32(0.5)
    if mode == "pytorch_half_pixel":
        return (i + F32(0.5)) / s - F32(0.5) if out_len > 1 else np.zeros(out_len, F32)
    if mode == "align_corners":
        return i * F32(in_len - 1) / F32(out_len - 1) if out_len > 1 else np.zeros(out_len, F32)
    if mode == "asymmetric":
        return i / s
    if mode == "tf_half_pixel_for_nn":
        return (i + F32(0.5)) / s
    if mode == "half_pixel_symmetric":
        adjustment = F32(out_len) / (s * F32(in_len))
        offset = F32(in_len) / F32(2) * (F32(1) - adjustment)
        return offset + ((i + F32(0.5)) / s - F32(0.5))
    if mode == "tf_crop_and_resize":
        r0, r1, span = F32(roi_start), F32(roi_end), F32(in_len - 1)
        if out_len > 1:
            return r0 * span + i * (r1 - r0) * span / F32(out_len - 1)
        return np.full(out_len, F32(0.5) * (r0 + r1) * span, F32)
    raise TypeError(f"Resize coordinate_transformation_mode '{mode}' is not supported "
                    "(half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners, "
                    "asymmetric, tf_half_pixel_for_nn, tf_crop_and_resize are)")


def nearest_index(coords: np.ndarray, in_len: int, nearest_mode: str, downsample: bool) -> np.ndarray:
    """Input index picked for each coordinate; `simple` is opset 10's (ceil down, floor up)."""
    if nearest_mode == "round_prefer_floor":
        idx = np.where(coords - np.floor(coords) == 0.5, np.floor(coords), np.round(coords))
    elif nearest_mode == "round_prefer_ceil":
        # Half away from zero, as C round(); only the sign of negative halves differs from floor(x+0.5)
        # and those are clamped to 0 anyway.
        idx = np.floor(coords + F32(0.5))
    elif nearest_mode == "floor":
        idx = np.floor(coords)
    elif nearest_mode == "ceil":
        idx = np.ceil(coords)
    elif nearest_mode == "simple":
        idx = np.ceil(coords) if downsample else np.trunc(coords)
    else:
        raise TypeError(f"Resize nearest_mode '{nearest_mode}' is not supported "
                        "(round_prefer_floor, round_prefer_ceil, floor, ceil are)")
    return np.clip(idx, 0, in_len - 1).astype(np.int64)


def _weighted_taps(y: np.ndarray, axis: int, taps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_k weights[:, k] * y[taps[:, k]] along `axis`; taps and weights are (out_len, k)."""
    shape = [1] * y.ndim
    shape[axis] = taps.shape[0]
    out = None
    for k in range(taps.shape[1]):
        part = np.take(y, taps[:, k], axis=axis) * weights[:, k].reshape(shape)
        out = part if out is None else np.add(out, part, out=out)
    return out


def _keys_cubic(d: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel at distances d >= 0."""
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def filter_taps(coords: np.ndarray, in_len: int, mode: str, scale: float, antialias: int = 0,
                cubic_coeff_a: float = -0.75, exclude_outside: int = 0):
    """(taps, weights), each (out_len, k): the input samples each output mixes, and how much.

    Linear is the triangle kernel and cubic Keys' kernel; with antialias a downscale by s widens
    the kernel by 1/s, so every input sample contributes (spec of opset 18).
    """
    support = 1 if mode == "linear" else 2
    s = min(scale, 1.0) if antialias else 1.0
    first = int(np.floor(-support / s)) + 1
    c = coords.astype(np.float64)
    taps = np.floor(c).astype(np.int64)[:, None] + np.arange(first, 2 - first)
    d = np.abs(taps - c[:, None]) * s
    weights = np.clip(1 - d, 0, None) if mode == "linear" else _keys_cubic(d, cubic_coeff_a)
    if exclude_outside:
        weights = np.where((taps < 0) | (taps >= in_len), 0.0, weights)
    weights /= weights.sum(1, keepdims=True)
    return np.clip(taps, 0, in_len - 1), weights.astype(F32)


def resize(x: np.ndarray, out_shape, scales, mode: str = "nearest", coord_mode: str = "half_pixel",
           nearest_mode: str = "round_prefer_floor", roi=None, cubic_coeff_a: float = -0.75,
           exclude_outside: int = 0, extrapolation_value: float = 0.0,
           antialias: int = 0) -> np.ndarray:
    """Resize every axis whose size or scale changes, one axis at a time."""
    y = x
    for axis in range(x.ndim):
        in_len, out_len = x.shape[axis], out_shape[axis]
        if in_len == out_len and scales[axis] == 1.0 and coord_mode != "tf_crop_and_resize":
            continue
        r0, r1 = (roi[axis], roi[axis + x.ndim]) if roi is not None else (0.0, 1.0)
        coords = source_coords(out_len, in_len, scales[axis], coord_mode, r0, r1)
        if mode == "nearest":
            y = np.take(y, nearest_index(coords, in_len, nearest_mode, scales[axis] < 1), axis=axis)
        elif mode in ("linear", "cubic"):
            y = _weighted_taps(y, axis, *filter_taps(coords, in_len, mode, scales[axis], antialias,
                                                     cubic_coeff_a, exclude_outside))
        else:
            raise TypeError(f"Resize mode '{mode}' is not supported (nearest, linear, cubic are)")
        if coord_mode == "tf_crop_and_resize":
            outside = (coords < 0) | (coords > in_len - 1)
            index = [slice(None)] * x.ndim
            index[axis] = outside
            y[tuple(index)] = extrapolation_value
    return np.ascontiguousarray(y, dtype=x.dtype)


def output_geometry(shape, scales=None, sizes=None, axes=None, policy="stretch"):
    """(output shape, per-axis scales) from Resize's scales or sizes, axes and aspect policy."""
    nd = len(shape)
    axes = list(range(nd)) if axes is None else [a % nd for a in axes]
    out, sc = list(shape), [1.0] * nd
    if sizes is not None and np.size(sizes) > 0:
        target = _ints(sizes)
        if policy == "stretch":
            for a, t in zip(axes, target):
                out[a], sc[a] = t, float(F32(t) / F32(shape[a]))
            return out, sc
        ratios = [F32(t) / F32(shape[a]) for a, t in zip(axes, target)]
        if policy not in ("not_larger", "not_smaller"):
            raise TypeError(f"Resize keep_aspect_ratio_policy '{policy}' is not supported "
                            "(stretch, not_larger, not_smaller are)")
        r = min(ratios) if policy == "not_larger" else max(ratios)
        for a in axes:
            out[a], sc[a] = int(np.round(r * F32(shape[a]))), float(r)
        return out, sc
    given = [float(s) for s in np.asarray(scales, dtype=F32).reshape(-1)]
    if len(given) != len(axes):
        raise ValueError(f"Resize has {len(given)} scales for {len(axes)} axes")
    for a, s in zip(axes, given):
        out[a], sc[a] = int(F32(shape[a]) * F32(s)), s
    return out, sc


def _full_roi(roi, axes, nd):
    """ROI as [starts..., ends...] over every axis (identity for the axes not listed)."""
    if roi is None or np.size(roi) == 0:
        return None
    r = [float(v) for v in np.asarray(roi).reshape(-1)]
    if axes is None:
        return r
    full = [0.0] * nd + [1.0] * nd
    for k, a in enumerate(axes):
        full[a % nd], full[a % nd + nd] = r[k], r[k + len(axes)]
    return full


@op("Resize", since=10)
def Resize_10(x, scales, *, mode="nearest"):
    out, sc = output_geometry(x.shape, scales)
    return resize(x, out, sc, mode, "asymmetric", "simple")


@op("Resize", since=11)
def Resize(x, roi=None, scales=None, sizes=None, *, antialias=0, axes=None,
           coordinate_transformation_mode="half_pixel", cubic_coeff_a=-0.75, exclude_outside=0,
           extrapolation_value=0.0, keep_aspect_ratio_policy="stretch", mode="nearest",
           nearest_mode="round_prefer_floor"):
    out, sc = output_geometry(x.shape, scales, sizes, axes, keep_aspect_ratio_policy)
    roi_full = _full_roi(roi, axes, x.ndim) if coordinate_transformation_mode == "tf_crop_and_resize" \
        else None
    return resize(x, out, sc, mode, coordinate_transformation_mode, nearest_mode, roi_full,
                  cubic_coeff_a, exclude_outside, extrapolation_value, antialias)


def upsample_nearest(x, scale_h: int, scale_w: int):
    """The reference's Upsample: every pixel repeated scale_h x scale_w times."""
    return np.repeat(np.repeat(x, int(scale_h), axis=-2), int(scale_w), axis=-1)


# ONNX's Upsample, or the reference's canonical form (integer `scale_h`, `scale_w`, nearest):
# both spellings share the op name, so each version reads either.
@op("Upsample", since=7)
def Upsample_7(x, *, mode="nearest", scales=None, scale_h=None, scale_w=None):
    if scale_h is not None:
        return upsample_nearest(x, scale_h, scale_w)
    out, sc = output_geometry(x.shape, scales)
    return resize(x, out, sc, mode, "asymmetric", "simple")


@op("Upsample", since=9)
def Upsample(x, scales=None, *, mode="nearest", scale_h=None, scale_w=None):
    return Upsample_7(x, mode=mode, scales=scales, scale_h=scale_h, scale_w=scale_w)
