"""Dense layers, normalisation, softmax and reductions (with the reference's MatMul with bias
and LayerNorm)."""
from __future__ import annotations

from functools import partial

import numpy as np

from . import op
from .parallel import THREADS, parallel

# Multiply-adds from which a matrix product is cut into blocks for the op threads (parallel.py
# says why not BLAS's threads); below it, handing out the blocks costs more than it saves.
PARALLEL_MACS = 1 << 22


def matmul(a, b):
    """np.matmul(a, b), large 2-d-weight products cut into row or column blocks on every thread.

    The block is cut along the side that leaves the smaller operand whole: each block's GEMM
    repacks the whole of the other operand. Every output element is the same dot product.
    """
    if THREADS == 1 or b.ndim != 2 or a.ndim < 2 or a.shape[-1] != b.shape[0]:
        return np.matmul(a, b)
    a2 = a.reshape(-1, a.shape[-1])
    (rows, k), cols = a2.shape, b.shape[1]
    if rows * k * cols < PARALLEL_MACS:
        return np.matmul(a, b)
    y = np.empty((rows, cols), np.result_type(a.dtype, b.dtype))
    parts = 2 * THREADS
    if rows < cols:
        step = -(-cols // parts)
        jobs = (partial(np.matmul, a2, b[:, c:c + step], out=y[:, c:c + step]) for c in range(0, cols, step))
    else:
        step = -(-rows // parts)
        jobs = (partial(np.matmul, a2[r:r + step], b, out=y[r:r + step]) for r in range(0, rows, step))
    parallel(jobs)
    return y.reshape(a.shape[:-1] + (cols,))


@op("MatMul")
def MatMul(a, b, bias=None, *, _relu=0):
    """ONNX MatMul; the reference's form adds a bias (Gemm, MatMul + Add of a constant)."""
    y = matmul(a, b)
    if bias is not None:
        y = np.add(y, bias, out=y) if y.shape == np.broadcast_shapes(y.shape, bias.shape) else y + bias
    return np.maximum(y, 0, out=y) if _relu else y


@op("Gemm")
def Gemm(a, b, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0, _relu=0):
    a = a.T if transA else a
    b = b.T if transB else b
    y = matmul(a, b)
    if alpha != 1.0:
        y = y * np.asarray(alpha, y.dtype)
    if c is not None:
        y = y + (c * np.asarray(beta, c.dtype) if beta != 1.0 else c)
    y = y.astype(a.dtype, copy=False)
    return np.maximum(y, 0) if _relu else y


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype, copy=False)


@op("Softmax", since=1)
def Softmax_1(x, *, axis=1):
    # Before opset 13 the input is coerced to 2-D at `axis`.
    axis %= x.ndim
    flat = x.reshape(int(np.prod(x.shape[:axis])), -1)
    return _softmax(flat, 1).reshape(x.shape)


@op("Softmax", since=13)
def Softmax(x, *, axis=-1):
    return _softmax(x, axis)


def _log_softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return (shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))).astype(x.dtype, copy=False)


@op("LogSoftmax", since=1)
def LogSoftmax_1(x, *, axis=1):
    # Before opset 13 the input is coerced to 2-D at `axis`, as for Softmax.
    axis %= x.ndim
    return _log_softmax(x.reshape(int(np.prod(x.shape[:axis])), -1), 1).reshape(x.shape)


@op("LogSoftmax", since=13)
def LogSoftmax(x, *, axis=-1):
    return _log_softmax(x, axis)


@op("LayerNormalization", since=17)
def LayerNormalization(x, scale, bias=None, *, axis=-1, epsilon=1e-5, stash_type=1, _num_outputs=1):
    """Y, and when read the Mean and InvStdDev outputs (dims kept) of exported training graphs."""
    axis %= x.ndim
    axes = tuple(range(axis, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    inv_std = 1 / np.sqrt(((x - mean) ** 2).mean(axis=axes, keepdims=True) + np.float32(epsilon))
    y = (x - mean) * inv_std * scale
    if bias is not None:
        y = y + bias
    y = y.astype(x.dtype, copy=False)
    return y if _num_outputs < 2 else (y, mean, inv_std.astype(mean.dtype, copy=False))


@op("LayerNorm")
def LayerNorm(x, scale=None, bias=None, *, axis=-1, epsilon=1e-5):
    """The reference's LayerNorm over the dims from `axis` on (its fusion of the ReduceMean /
    Sub / Pow / Sqrt / Div subgraph), as its interpreter computes it: in float32, the sums
    accumulated element after element, y = (x - mean) * rstd * scale + bias."""
    axis %= x.ndim
    lead = x.shape[:axis]
    rows = np.ascontiguousarray(x, np.float32).reshape(lead + (-1,))
    n = np.float32(rows.shape[-1])
    mean = np.cumsum(rows, axis=-1, dtype=np.float32)[..., -1:] / n
    centred = rows - mean
    var = np.cumsum(centred * centred, axis=-1, dtype=np.float32)[..., -1:] / n
    rstd = np.float32(1) / np.sqrt(var + np.float32(epsilon))
    y = (centred * rstd).reshape(x.shape)
    if scale is not None:
        y = y * scale
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype, copy=False)


@op("InstanceNormalization")
def InstanceNormalization(x, scale, bias, *, epsilon=1e-5):
    axes = tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mean) / np.sqrt(var + np.float32(epsilon)) * scale.reshape(shape) + bias.reshape(shape)
    return y.astype(x.dtype, copy=False)


# ---- reductions: axes moved from attribute to input in opset 13 (Sum) and 18 (the rest) ---------
def _reduce(fn, x, axes, keepdims, noop_with_empty_axes=0):
    if axes is None or np.size(axes) == 0:
        if noop_with_empty_axes:
            return x
        axes_t = None
    else:
        axes_t = tuple(int(a) % x.ndim for a in np.asarray(axes).reshape(-1))
    out = fn(x, axis=axes_t, keepdims=bool(keepdims))
    return np.asarray(out).astype(x.dtype, copy=False)


def _register_reduce(name, fn, input_since):
    @op(name, since=1)
    def with_attr(x, *, axes=None, keepdims=1):
        return _reduce(fn, x, axes, keepdims)

    @op(name, since=input_since)
    def with_input(x, axes=None, *, keepdims=1, noop_with_empty_axes=0):
        return _reduce(fn, x, axes, keepdims, noop_with_empty_axes)


_register_reduce("ReduceSum", np.sum, 13)
_register_reduce("ReduceMean", np.mean, 18)
_register_reduce("ReduceMax", np.max, 18)
_register_reduce("ReduceMin", np.min, 18)
_register_reduce("ReduceProd", np.prod, 18)


@op("ArgMax")
def ArgMax(x, *, axis=0, keepdims=1, select_last_index=0):
    if select_last_index:
        flipped = np.flip(x, axis=axis)
        idx = x.shape[axis] - 1 - np.argmax(flipped, axis=axis)
    else:
        idx = np.argmax(x, axis=axis)
    idx = idx.astype(np.int64)
    return np.expand_dims(idx, axis) if keepdims else idx
