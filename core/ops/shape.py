"""Data movement and shape ops: reshape-likes, concat/split/slice/gather, pad."""
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


@op("Permute")
def Permute(x, *, order):
    """The reference's name for Transpose (`order` = ONNX's `perm`)."""
    return np.ascontiguousarray(x.transpose(list(order)))


@op("Depth2Space")
def Depth2Space(x, *, block_h, block_w, is_inversed=0, is_CRD=0):
    """Depth-to-space (DCR, or CRD with `is_CRD`), or with `is_inversed` space-to-depth, the
    reference's op for the Focus slices: out[n, (bh*block_w + bw)*C + c, i, j] =
    in[n, c, i*block_h + bh, j*block_w + bw]."""
    n, c, h, w = x.shape
    if is_inversed:
        y = x.reshape(n, c, h // block_h, block_h, w // block_w, block_w)
        return np.ascontiguousarray(y.transpose(0, 3, 5, 1, 2, 4)).reshape(
            n, c * block_h * block_w, h // block_h, w // block_w)
    oc = c // (block_h * block_w)
    if is_CRD:
        y = x.reshape(n, oc, block_h, block_w, h, w).transpose(0, 1, 4, 2, 5, 3)
    else:
        y = x.reshape(n, block_h, block_w, oc, h, w).transpose(0, 3, 4, 1, 5, 2)
    return np.ascontiguousarray(y).reshape(n, oc, h * block_h, w * block_w)


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
    # The count as onnxruntime computes it: the difference in the input type, the division in
    # double. For 0.3f/0.1f that is 3.0000001 -> 4 values (float32 division gives exactly 3).
    start, limit, delta = (np.asarray(v) for v in (start, limit, delta))
    count = max(int(np.ceil(float(limit - start) / float(delta))), 0)
    return (start + np.arange(count, dtype=start.dtype) * delta).astype(start.dtype)


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
        start, stop, step = slice(s, e, st).indices(x.shape[a % x.ndim])
        # indices() says "before the first element" with stop = -1, which a slice reads as "last".
        index[a % x.ndim] = slice(start, None if stop < 0 else stop, step)
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
