"""Data movement and shape ops: reshape-likes, concat/split/slice/gather, pad, resize."""
from __future__ import annotations

import numpy as np

from . import op


def _ints(v) -> list[int]:
    return [int(i) for i in np.asarray(v).reshape(-1)]


# ---- reshape-likes -------------------------------------------------------------------------------
@op("Reshape")
def Reshape(x, shape, *, allowzero=0):
    target = _ints(shape)
    if not allowzero:
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return x.reshape(target)


@op("Flatten")
def Flatten(x, *, axis=1):
    axis = axis + x.ndim if axis < 0 else axis
    lead = int(np.prod(x.shape[:axis]))
    return x.reshape(lead, -1)


@op("Transpose")
def Transpose(x, *, perm=None):
    perm = list(perm) if perm is not None else list(range(x.ndim))[::-1]
    return np.ascontiguousarray(x.transpose(perm))


@op("Squeeze", since=1)
def Squeeze_1(x, *, axes=None):
    return Squeeze(x, axes)


@op("Squeeze", since=13)
def Squeeze(x, axes=None):
    if axes is None:
        return x.reshape([d for d in x.shape if d != 1])
    return np.squeeze(x, axis=tuple(i % x.ndim for i in _ints(axes)))


@op("Unsqueeze", since=1)
def Unsqueeze_1(x, *, axes):
    return Unsqueeze(x, axes)


@op("Unsqueeze", since=13)
def Unsqueeze(x, axes):
    axes = _ints(axes)
    rank = x.ndim + len(axes)
    shape = list(x.shape)
    for a in sorted(i % rank for i in axes):
        shape.insert(a, 1)
    return x.reshape(shape)


@op("Shape")
def Shape(x, *, start=0, end=None):
    return np.array(x.shape[start:end], dtype=np.int64)


@op("Size")
def Size(x):
    return np.array(x.size, dtype=np.int64)


@op("Expand")
def Expand(x, shape):
    target = _ints(shape)
    out_shape = np.broadcast_shapes(x.shape, tuple(target))
    return np.ascontiguousarray(np.broadcast_to(x, out_shape))


@op("Tile")
def Tile(x, repeats):
    return np.tile(x, _ints(repeats))


@op("ConstantOfShape")
def ConstantOfShape(shape, *, value=None):
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return np.full(_ints(shape), fill[0], dtype=fill.dtype)


@op("Range")
def Range(start, limit, delta):
    return np.arange(start, limit, delta).astype(np.result_type(start))


# ---- concat / split / slice / gather -------------------------------------------------------------
@op("Concat")
def Concat(*xs, axis):
    return np.concatenate(xs, axis=axis)


def _split(x, sizes, axis, count):
    axis %= x.ndim
    if sizes is None:
        size = -(-x.shape[axis] // count)
        sizes = [size] * (count - 1) + [x.shape[axis] - size * (count - 1)]
    bounds = np.cumsum(sizes)[:-1]
    return tuple(np.ascontiguousarray(p) for p in np.split(x, bounds, axis=axis))


@op("Split", since=2)
def Split_2(x, *, axis=0, split=None, _num_outputs=None):
    return _split(x, None if split is None else _ints(split), axis, _num_outputs or len(split))


@op("Split", since=13)
def Split(x, split=None, *, axis=0, num_outputs=None, _num_outputs=None):
    count = num_outputs or _num_outputs
    return _split(x, None if split is None else _ints(split), axis,
                  count if split is None else len(_ints(split)))


@op("Slice", since=1)
def Slice_1(x, *, starts, ends, axes=None):
    return Slice(x, starts, ends, axes)


@op("Slice", since=10)
def Slice(x, starts, ends, axes=None, steps=None):
    starts, ends = _ints(starts), _ints(ends)
    axes = _ints(axes) if axes is not None else list(range(len(starts)))
    steps = _ints(steps) if steps is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[a % x.ndim] = slice(*slice(s, e, st).indices(x.shape[a % x.ndim]))
    return np.ascontiguousarray(x[tuple(index)])


@op("Gather")
def Gather(x, indices, *, axis=0):
    axis %= x.ndim
    idx = np.where(indices < 0, indices + x.shape[axis], indices)
    return np.take(x, idx, axis=axis)


@op("GatherND")
def GatherND(x, indices, *, batch_dims=0):
    indices = np.asarray(indices, dtype=np.int64)
    batch_shape = x.shape[:batch_dims]
    nb = int(np.prod(batch_shape)) if batch_dims else 1
    xb = x.reshape((nb,) + x.shape[batch_dims:])
    ib = indices.reshape((nb,) + indices.shape[batch_dims:])
    k = ib.shape[-1]
    outs = []
    for b in range(nb):
        idx = ib[b].reshape(-1, k)
        dims = xb[b].shape[:k]
        idx = np.where(idx < 0, idx + np.array(dims), idx)
        outs.append(xb[b][tuple(idx.T)])
    out = np.stack(outs)
    return out.reshape(batch_shape + indices.shape[batch_dims:-1] + x.shape[batch_dims + k:])


# ---- pad -----------------------------------------------------------------------------------------
def _pad(x, pads, value, mode, axes=None):
    nd = x.ndim
    axes = list(range(nd)) if axes is None else [a % nd for a in axes]
    n = len(axes)
    widths = [(0, 0)] * nd
    for i, a in enumerate(axes):
        widths[a] = (pads[i], pads[i + n])
    # Negative pads crop.
    crop = tuple(slice(-b if b < 0 else 0, x.shape[i] + e if e < 0 else None)
                 for i, (b, e) in enumerate(widths))
    x = x[crop]
    widths = [(max(b, 0), max(e, 0)) for b, e in widths]
    if mode == "constant":
        return np.pad(x, widths, constant_values=value)
    return np.pad(x, widths, mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])


@op("Pad", since=2)
def Pad_2(x, *, mode="constant", pads, value=0.0):
    return _pad(x, list(pads), value, mode)


@op("Pad", since=11)
def Pad(x, pads, constant_value=None, axes=None, *, mode="constant"):
    value = 0 if constant_value is None or np.size(constant_value) == 0 else \
        np.asarray(constant_value).reshape(-1)[0]
    return _pad(x, _ints(pads), value, mode, None if axes is None else _ints(axes))


# ---- resize --------------------------------------------------------------------------------------
def _source_coords(out_len, in_len, scale, mode, roi_start=0.0, roi_end=1.0):
    """Continuous source coordinate of every output index along one axis."""
    i = np.arange(out_len, dtype=np.float64)
    if mode == "half_pixel":
        return (i + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (i + 0.5) / scale - 0.5 if out_len > 1 else np.zeros(out_len)
    if mode == "align_corners":
        return i * (in_len - 1) / (out_len - 1) if out_len > 1 else np.zeros(out_len)
    if mode == "asymmetric":
        return i / scale
    if mode == "tf_half_pixel_for_nn":
        return (i + 0.5) / scale
    if mode == "half_pixel_symmetric":
        adj = out_len / (scale * in_len)
        center = in_len / 2
        offset = center * (1 - adj)
        return offset + (i + 0.5) / scale - 0.5
    if mode == "tf_crop_and_resize":
        if out_len > 1:
            return roi_start * (in_len - 1) + i * (roi_end - roi_start) * (in_len - 1) / (out_len - 1)
        return np.full(out_len, 0.5 * (roi_start + roi_end) * (in_len - 1))
    raise TypeError(f"Resize coordinate_transformation_mode '{mode}' is not supported")


def _nearest(coords, in_len, nearest_mode):
    if nearest_mode == "round_prefer_floor":
        idx = np.where(coords - np.floor(coords) == 0.5, np.floor(coords), np.round(coords))
    elif nearest_mode == "round_prefer_ceil":
        idx = np.floor(coords + 0.5)
    elif nearest_mode == "floor":
        idx = np.floor(coords)
    elif nearest_mode == "ceil":
        idx = np.ceil(coords)
    else:
        raise TypeError(f"Resize nearest_mode '{nearest_mode}' is not supported")
    return np.clip(idx, 0, in_len - 1).astype(np.int64)


def resize(x, out_shape, scales, mode="nearest", coord_mode="half_pixel",
           nearest_mode="round_prefer_floor", roi=None):
    """Separable nearest / (multi)linear resize of every axis whose size changes."""
    y = x
    for axis in range(x.ndim):
        in_len, out_len = x.shape[axis], out_shape[axis]
        if in_len == out_len and scales[axis] == 1.0:
            continue
        r0, r1 = (roi[axis], roi[axis + x.ndim]) if roi is not None else (0.0, 1.0)
        coords = _source_coords(out_len, in_len, scales[axis], coord_mode, r0, r1)
        if mode == "nearest":
            y = np.take(y, _nearest(coords, in_len, nearest_mode), axis=axis)
        elif mode == "linear":
            c = np.clip(coords, 0, in_len - 1)
            lo = np.floor(c).astype(np.int64)
            hi = np.minimum(lo + 1, in_len - 1)
            w = (c - lo).astype(np.float32)
            shape = [1] * x.ndim
            shape[axis] = out_len
            w = w.reshape(shape)
            a, b = np.take(y, lo, axis=axis), np.take(y, hi, axis=axis)
            y = (a + (b - a) * w).astype(x.dtype, copy=False)
        else:
            raise TypeError(f"Resize mode '{mode}' is not supported (nearest, linear are)")
    return np.ascontiguousarray(y)


def _resize_sizes(x, scales, sizes):
    if sizes is not None and np.size(sizes) > 0:
        out = _ints(sizes)
        return out, [o / i for o, i in zip(out, x.shape)]
    sc = [float(s) for s in np.asarray(scales).reshape(-1)]
    return [int(np.floor(d * s)) for d, s in zip(x.shape, sc)], sc


@op("Resize", since=10)
def Resize_10(x, scales, *, mode="nearest"):
    out, sc = _resize_sizes(x, scales, None)
    return resize(x, out, sc, mode, "asymmetric", "floor")


@op("Resize", since=11)
def Resize(x, roi=None, scales=None, sizes=None, *, antialias=0, axes=None,
           coordinate_transformation_mode="half_pixel", cubic_coeff_a=-0.75, exclude_outside=0,
           extrapolation_value=0.0, keep_aspect_ratio_policy="stretch", mode="nearest",
           nearest_mode="round_prefer_floor"):
    if antialias:
        raise TypeError("Resize with antialias=1 is not supported")
    if axes is not None:
        raise TypeError("Resize with the axes attribute is not supported")
    out, sc = _resize_sizes(x, scales, sizes)
    roi_v = None if roi is None or np.size(roi) == 0 else [float(r) for r in np.asarray(roi)]
    return resize(x, out, sc, mode, coordinate_transformation_mode, nearest_mode, roi_v)


@op("Upsample", since=7)
def Upsample_7(x, *, mode="nearest", scales):
    out, sc = _resize_sizes(x, scales, None)
    return resize(x, out, sc, mode, "asymmetric", "floor")


@op("Upsample", since=9)
def Upsample(x, scales, *, mode="nearest"):
    return Upsample_7(x, mode=mode, scales=scales)
