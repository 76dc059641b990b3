"""Element-wise ops: activations, arithmetic with broadcasting, comparisons, logic, casts; and
the reference's canonical element-wise ops (SiLU, GELU, MulConst, AddConst, SubConst, Scale)."""
from __future__ import annotations

import math
from functools import partial

import numpy as np

from . import op
from .parallel import parallel

# ONNX TensorProto data type codes -> numpy dtypes (the ones Cast can produce here).
ONNX_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32,
               7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32,
               13: np.uint64}


def _same_type(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return y.astype(x.dtype, copy=False)


# ---- activations ---------------------------------------------------------------------------------
@op("Relu")
def Relu(x, *, relu_limit=-1.0):
    """ONNX Relu; with `relu_limit` > 0 the reference's clipped Relu (Clip(x, 0, limit))."""
    y = np.maximum(x, _same_type(np.zeros((), x.dtype), x))
    return np.minimum(y, np.asarray(relu_limit, x.dtype)) if relu_limit > 0 else y


# Elements per block of two-pass element-wise ops: the block is still in cache for the second pass.
BLOCK = 1 << 16


@op("LeakyRelu")
def LeakyRelu(x, *, alpha=0.01):
    a = np.asarray(alpha, dtype=x.dtype)
    if not 0 <= alpha <= 1 or not x.flags.c_contiguous:
        return np.where(x >= 0, x, x * a)
    # max(x, a*x) is the same function for 0 <= a <= 1 and 10x faster than where().
    y = np.empty_like(x)
    xf, yf = x.reshape(-1), y.reshape(-1)
    if xf.size < 8 * BLOCK:       # fits in cache, and is quicker done than handed to a thread
        _leaky_block(xf, yf, a)
    else:
        parallel(partial(_leaky_block, xf[s:s + BLOCK], yf[s:s + BLOCK], a) for s in range(0, xf.size, BLOCK))
    return y


def _leaky_block(x, y, a):
    np.multiply(x, a, out=y)
    np.maximum(x, y, out=y)


@op("PRelu")
def PRelu(x, slope):
    return np.where(x >= 0, x, x * slope).astype(x.dtype, copy=False)


@op("Sigmoid")
def Sigmoid(x):
    return _blockwise(_sigmoid_block, x)


@op("SiLU")
def SiLU(x):
    """x * sigmoid(x): the reference's fusion of Mul(x, Sigmoid(x))."""
    return _blockwise(_silu_block, x)


def _blockwise(block, x):
    """y = block(x) computed in cache-sized blocks (in place in y), on every thread when large:
    a chain of several ufuncs then reads the tensor from memory once, not once per ufunc.
    float32 and float64 are computed in their own type; others in float32, cast back."""
    work = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float32)
    xf = np.ascontiguousarray(x, dtype=work).reshape(-1)
    y = np.empty(x.shape, work)
    yf = y.reshape(-1)
    if xf.size < 8 * BLOCK:
        block(xf, yf)
    else:
        parallel(partial(block, xf[s:s + BLOCK], yf[s:s + BLOCK]) for s in range(0, xf.size, BLOCK))
    return y.astype(x.dtype, copy=False)


def _sigmoid_block(x, y):
    """1/(1+e) for x >= 0 and e/(1+e) below, e = exp(-|x|) (split by sign so exp never
    overflows), as one division: the numerator max(e, x >= 0) is 1 for x >= 0 (e <= 1 there)
    and e below (a masked copy would be 7x slower than this max)."""
    np.abs(x, out=y)
    np.negative(y, out=y)
    np.exp(y, out=y)
    d = y + 1
    np.maximum(y, np.greater_equal(x, 0), out=y)
    np.divide(y, d, out=y)


def _silu_block(x, y):
    _sigmoid_block(x, y)
    np.multiply(x, y, out=y)


@op("GELU")
def GELU(x, *, approx_mode="normal"):
    """0.5 x (1 + erf(x / sqrt 2)) ("normal"), or the tanh approximation ("tanh")."""
    if approx_mode == "tanh":
        inner = np.float32(math.sqrt(2 / math.pi)) * (x + np.float32(0.044715) * x * x * x)
        return (np.float32(0.5) * x * (1 + np.tanh(inner))).astype(x.dtype, copy=False)
    return (np.float32(0.5) * x * (1 + Erf(x * np.float32(1 / math.sqrt(2))))).astype(x.dtype, copy=False)


@op("HardSigmoid")
def HardSigmoid(x, *, alpha=0.2, beta=0.5):
    return np.clip(x * np.float32(alpha) + np.float32(beta), 0, 1).astype(x.dtype, copy=False)


@op("HardSwish")
def HardSwish(x):
    return _blockwise(_hard_swish_block, x)


def _hard_swish_block(x, y):
    """x * clip(x/6 + 1/2, 0, 1), as max then min in place (the same values as np.clip)."""
    np.multiply(x, np.float32(1 / 6), out=y)
    y += np.float32(0.5)
    np.maximum(y, 0, out=y)
    np.minimum(y, 1, out=y)
    np.multiply(x, y, out=y)


@op("Tanh")
def Tanh(x):
    return np.tanh(x)


# Taylor series of erf below 0.5, where 1 - erfc would cancel; coefficient n is
# 2/sqrt(pi) * (-1)^n / (n! (2n+1)), 10 terms leave an error below 1e-13.
_ERF_TAYLOR = np.array([2 / math.sqrt(math.pi) * (-1) ** n / (math.factorial(n) * (2 * n + 1))
                        for n in range(10)])
# Chebyshev fit of erfc (Numerical Recipes, fractional error < 1.2e-7) in t = 1 / (1 + |x|/2).
_ERFC_CHEB = np.array([-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806,
                       0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277])


@op("Erf")
def Erf(x):
    """erf(x), vectorised (math.erf per element is 100x slower on GELU-sized tensors)."""
    z = x.astype(np.float64)
    a = np.abs(z)
    z2 = z * z
    small = z * np.polyval(_ERF_TAYLOR[::-1], z2)
    t = 1 / (1 + 0.5 * a)
    erfc = t * np.exp(-z2 + np.polyval(_ERFC_CHEB[::-1], t))
    return np.where(a < 0.5, small, np.copysign(1 - erfc, z)).astype(x.dtype)


@op("Exp")
def Exp(x):
    return np.exp(x)


@op("Log")
def Log(x):
    return np.log(x)


@op("Sqrt")
def Sqrt(x):
    return np.sqrt(x)


@op("Abs")
def Abs(x):
    return np.abs(x)


@op("Neg")
def Neg(x):
    return np.negative(x)


@op("Reciprocal")
def Reciprocal(x):
    return (1 / x).astype(x.dtype, copy=False)


@op("Floor")
def Floor(x):
    return np.floor(x)


@op("Ceil")
def Ceil(x):
    return np.ceil(x)


@op("Softplus")
def Softplus(x):
    return np.logaddexp(0, x).astype(x.dtype, copy=False)


@op("Clip", since=1)
def Clip_1(x, *, min=-3.4028234663852886e38, max=3.4028234663852886e38):
    return np.clip(x, min, max).astype(x.dtype, copy=False)


@op("Clip", since=11)
def Clip(x, min=None, max=None):
    lo = -np.inf if min is None else min
    hi = np.inf if max is None else max
    return np.clip(x, lo, hi).astype(x.dtype, copy=False)


# ---- binary arithmetic ---------------------------------------------------------------------------
@op("Add")
def Add(a, b, *, _relu=0):
    y = np.add(a, b).astype(np.result_type(a), copy=False)
    return np.maximum(y, 0) if _relu else y


@op("Sub")
def Sub(a, b):
    return np.subtract(a, b).astype(np.result_type(a), copy=False)


@op("Mul")
def Mul(a, b):
    return np.multiply(a, b).astype(np.result_type(a), copy=False)


@op("MulConst")
def MulConst(x, *, const_val):
    """x times a scalar (the reference's Mul/Div by a one-element constant)."""
    return (x * np.asarray(const_val, x.dtype)).astype(x.dtype, copy=False)


@op("AddConst")
def AddConst(x, *, const_val, _relu=0):
    """x plus a scalar (the reference's Add of a one-element constant, Sub of one as -c)."""
    y = (x + np.asarray(const_val, x.dtype)).astype(x.dtype, copy=False)
    return np.maximum(y, 0) if _relu else y


@op("SubConst")
def SubConst(x, *, const_val, is_reverse=1):
    """c - x (`is_reverse`), as the reference converts Sub(scalar, x); x - c otherwise."""
    c = np.asarray(const_val, x.dtype)
    return ((c - x) if is_reverse else (x - c)).astype(x.dtype, copy=False)


@op("Scale")
def Scale(x, scale, bias=None, *, _relu=0):
    """Per-channel affine x * scale[c] + bias[c] along axis 1 (BatchNorm, per-channel Mul/Add)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = x * scale.reshape(shape).astype(x.dtype, copy=False)
    if bias is not None:
        y = y + bias.reshape(shape).astype(x.dtype, copy=False)
    y = y.astype(x.dtype, copy=False)
    return np.maximum(y, 0) if _relu else y


@op("Div")
def Div(a, b):
    if np.issubdtype(np.result_type(a), np.integer):
        # ONNX integer division truncates toward zero (C semantics); a - fmod(a, b) is an exact
        # multiple of b, so the floor division is exact even past 2**53.
        return ((a - np.fmod(a, b)) // b).astype(np.result_type(a))
    return np.divide(a, b).astype(np.result_type(a), copy=False)


@op("Pow")
def Pow(a, b):
    return np.power(a, b).astype(np.result_type(a), copy=False)


@op("Max")
def Max(*xs):
    out = xs[0]
    for x in xs[1:]:
        out = np.maximum(out, x)
    return out


@op("Min")
def Min(*xs):
    out = xs[0]
    for x in xs[1:]:
        out = np.minimum(out, x)
    return out


@op("Sum")
def Sum(*xs):
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out


@op("Mean")
def Mean(*xs):
    return (Sum(*xs) / len(xs)).astype(xs[0].dtype, copy=False)


# ---- comparison and logic ------------------------------------------------------------------------
@op("Equal")
def Equal(a, b):
    return np.equal(a, b)


@op("Greater")
def Greater(a, b):
    return np.greater(a, b)


@op("GreaterOrEqual")
def GreaterOrEqual(a, b):
    return np.greater_equal(a, b)


@op("Less")
def Less(a, b):
    return np.less(a, b)


@op("LessOrEqual")
def LessOrEqual(a, b):
    return np.less_equal(a, b)


@op("Not")
def Not(x):
    return np.logical_not(x)


@op("And")
def And(a, b):
    return np.logical_and(a, b)


@op("Or")
def Or(a, b):
    return np.logical_or(a, b)


@op("IsNaN")
def IsNaN(x):
    return np.isnan(x)


@op("Where")
def Where(cond, a, b):
    return np.where(cond, a, b)


# ---- casts ---------------------------------------------------------------------------------------
@op("Cast")
def Cast(x, *, to, saturate=1):
    dtype = ONNX_DTYPES.get(to)
    if dtype is None:
        raise TypeError(f"Cast to ONNX type {to} is not supported")
    return x.astype(dtype)


@op("CastLike")
def CastLike(x, like, *, saturate=1):
    return x.astype(like.dtype)


@op("Identity")
def Identity(x):
    return x


@op("Dropout")
def Dropout(x, ratio=None, training_mode=None, *, seed=0, _num_outputs=1):
    """Inference: the identity, and an all-true mask when the mask output is read."""
    if training_mode is not None and bool(np.asarray(training_mode)):
        raise TypeError("Dropout with training_mode=True is not supported (inference only)")
    return x if _num_outputs < 2 else (x, np.ones(x.shape, dtype=bool))
