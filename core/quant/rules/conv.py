"""INT8 Conv (reference D.5): per-channel int8 weights, int32 bias, per-channel multiplier and
shift, fused Relu; and its exact integer kernel.

Convolutions run on BLAS: an int8 x int8 product summed in float32 is exact only while every
partial sum stays below 2**24, so each call bounds the accumulator (largest per-channel sum of
|Wq| times the largest |x| actually present) and uses float32 when that bound is safe and
float64 (exact below 2**53) otherwise; depthwise convs sum codes in int32 in a compiled loop.
Requantization is done in int64 (core/quant/kernels_int8.py).
"""
from __future__ import annotations

from functools import partial

import numpy as np

from ... import quantmath as qm
from ...ops.conv import ConvTranspose, _spatial_attrs, conv_nd
from ..kernels_int8 import NO_HIGH, NO_LOW, channel_shape, depthwise_sum, pad_codes, requant_channels
from . import Int8Op, NoInt8Rule, RuleContext, kernel, rule

FLOAT32_EXACT = 2**24


def integer_filter_shift(w: np.ndarray, signed: bool) -> int | None:
    """The smallest k in 0..6 for which every W * 2**k is an exact int8 (uint8 when unsigned)
    code, else None: such filters get the power-of-two scale 2**-k on every channel (K 6.1;
    YOLOv8's DFL conv, a Scale of ones turned into a depthwise conv)."""
    lo, hi = qm.qrange(signed)
    for k in range(7):
        v = w.astype(np.float64) * (1 << k)
        if np.all(v == np.round(v)) and v.min() >= lo and v.max() <= hi:
            return k
    return None


def conv_weights(w: np.ndarray, has_bias: bool) -> tuple[np.ndarray, np.ndarray, bool]:
    """(codes, per-channel float32 scales, signed) of a conv filter [oc, ...] (K 6.1)."""
    signed = bool(w.min() < 0) or has_bias
    k = integer_filter_shift(w, signed)
    if k is None:
        return qm.quantize_weights(w, has_bias=has_bias)
    scales = np.full(w.shape[0], np.float32(2.0 ** -k), np.float32)
    return (w.astype(np.float64) * (1 << k)).astype(np.int32), scales, signed


@rule("Conv")
def conv(node, ctx: RuleContext) -> Int8Op:
    """D.5 / K 6.1: per-channel weights, int32 bias, per-channel multiplier/shift, fused relu."""
    g = ctx.graph
    if len(node.inputs) < 2 or node.inputs[1] not in g.weights:
        raise NoInt8Rule("Conv filter is not a constant weight")
    if any(t in g.weights for t in node.inputs[:1]) or \
            (len(node.inputs) > 2 and node.inputs[2] and node.inputs[2] not in g.weights):
        raise NoInt8Rule("Conv input or bias is not of the supported kind")
    tin, tout = ctx.home(node.inputs[0]), ctx.home(node.outputs[0])
    w = np.asarray(g.weights[node.inputs[1]], np.float32)
    b_name = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    b = np.asarray(g.weights[b_name], np.float32) if b_name else None
    wq, ws, w_signed = conv_weights(w, has_bias=b is not None)
    s_in = tin.scale
    if s_in <= 1e-5:  # an all-zero input during calibration (D.5 guard)
        s_in = float(np.abs(b).max()) / 127 if b is not None else float(np.abs(w).max()) / 127
    bias_q = qm.quantize_bias(b, ws, s_in) if b is not None else np.zeros(w.shape[0], np.int64)
    if tin.zp:
        bias_q = bias_q - wq.reshape(wq.shape[0], -1).sum(axis=1).astype(np.int64) * tin.zp
    mult, shift = qm.scales_and_shifts(ws.astype(np.float64) * s_in / tout.scale, 32)
    params = {"weight_codes": wq.astype(np.int8 if w_signed else np.uint8), "weight_scales": ws,
              "bias_codes": bias_q, "multipliers": mult, "shifts": shift,
              "relu": bool(node.attrs.get("_relu"))}
    if node.attrs.get("_relu_limit", -1) > 0:
        params["relu_max"] = int(qm.round_half_away(node.attrs["_relu_limit"] / tout.scale))
    return Int8Op((tin,), tout, "conv", params)


# ---- the integer kernel --------------------------------------------------------------------------
def accumulator_dtype(w_abs_sum: int, x: np.ndarray) -> type:
    """float32 if sum|Wq| * max|x| keeps every partial sum exact in float32, else float64."""
    if x.size == 0:
        return np.float32
    peak = max(abs(int(x.min())), abs(int(x.max())))
    return np.float32 if w_abs_sum * peak < FLOAT32_EXACT else np.float64


def conv_sum(x: np.ndarray, wq: np.ndarray, w_abs_sum: int, attrs: dict,
             pad_code: int = 0) -> np.ndarray:
    """Exact integer convolution sum(Wq * x) (no bias), padding with `pad_code`: int32 from the
    compiled loop of a depthwise conv, else BLAS in the float type that keeps it exact (see
    `accumulator_dtype`)."""
    kernel_shape, strides, dilations, begin, end = _spatial_attrs(
        x, wq.shape[2:], attrs.get("kernel_shape"), attrs.get("strides"), attrs.get("dilations"),
        attrs.get("pads"), attrs.get("auto_pad", "NOTSET"))
    group = int(attrs.get("group", 1))
    if group > 1 and group == x.shape[1] == wq.shape[0] and wq.shape[1] == 1:
        acc = depthwise_sum(x, wq, pad_code, kernel_shape, strides, dilations, begin, end)
        if acc is not None:
            return acc
    ft = accumulator_dtype(w_abs_sum, x)
    # the codes are padded before they become floats: one pass instead of a cast and a pad
    xp = pad_codes(x, begin, end, pad_code, ft)
    zeros = [0] * len(begin)
    return conv_nd(xp, wq.astype(ft, copy=False), None, kernel_shape, strides, dilations, zeros,
                   zeros, group)


def conv_accumulate(x: np.ndarray, wq: np.ndarray, w_abs_sum: int, attrs: dict,
                    pad_code: int = 0) -> np.ndarray:
    """`conv_sum` as an int64 array."""
    return conv_sum(x, wq, w_abs_sum, attrs, pad_code).astype(np.int64, copy=False)


def conv_int8(x: np.ndarray, *, wq: np.ndarray, w_abs_sum: int, bias_q: np.ndarray,
              multiplier: np.ndarray, shift: np.ndarray, attrs: dict, zp_in: int, zp_out: int,
              out_signed: bool, relu: bool, relu_max: int | None = None) -> np.ndarray:
    """INT8 Conv (D.5): per channel sat(RightShiftRound((acc + bias) * M, shift) + zp_out),
    the fused Relu (and its limit) applied before saturation."""
    acc = conv_sum(x, wq, w_abs_sum, attrs, zp_in)
    return requant_channels(acc, bias_q, multiplier, shift, zp=zp_out,
                            lo=zp_out if relu else NO_LOW,
                            hi=NO_HIGH if relu_max is None else relu_max + zp_out,
                            out_dtype=qm.code_dtype(out_signed))


@kernel("conv")
def conv_kernel(*, in_types, out_types, attrs, params, **_):
    wq = np.asarray(params["weight_codes"])
    w_abs_sum = int(np.abs(wq.reshape(wq.shape[0], -1).astype(np.int64)).sum(axis=1).max())
    tin, tout = in_types[0], out_types[0]
    return partial(conv_int8, wq=wq.astype(np.float32), w_abs_sum=w_abs_sum,
                   bias_q=np.asarray(params["bias_codes"], np.int64),
                   multiplier=np.asarray(params["multipliers"], np.int64),
                   shift=np.asarray(params["shifts"], np.int64), attrs=attrs, zp_in=tin.zp,
                   zp_out=tout.zp, out_signed=tout.signed, relu=bool(params.get("relu")),
                   relu_max=params.get("relu_max"))


# ---- Deconv (K 6.17) -----------------------------------------------------------------------------
def top_filter(w: np.ndarray) -> np.ndarray:
    """ONNX ConvTranspose filter [ic, oc, kh, kw] as the reference's Top filter [oc, ic, kh, kw]
    (group 1), whose rows are the output channels its per-channel scales follow."""
    return np.ascontiguousarray(np.swapaxes(w, 0, 1))


@rule("Deconv")
def deconv(node, ctx: RuleContext) -> Int8Op:
    """K 6.17: per-output-channel int8 filter, int32 accumulators plus bias, then the per-channel
    RequantIntAxis (multiplier, shift, half away from zero)."""
    g = ctx.graph
    if len(node.inputs) < 2 or node.inputs[1] not in g.weights or node.inputs[0] in g.weights:
        raise NoInt8Rule("Deconv filter is not a constant weight")
    if int(node.attrs.get("group", 1)) != 1:
        raise NoInt8Rule("grouped Deconv")
    tin, tout = ctx.home(node.inputs[0]), ctx.home(node.outputs[0])
    if tin.zp or tout.zp:
        raise NoInt8Rule("asymmetric Deconv")
    b_name = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    if b_name and b_name not in g.weights:
        raise NoInt8Rule("Deconv bias is not a constant weight")
    w = top_filter(np.asarray(g.weights[node.inputs[1]], np.float32))
    b = np.asarray(g.weights[b_name], np.float32) if b_name else None
    wq, ws, w_signed = qm.quantize_weights(w, has_bias=b is not None)
    bias_q = qm.quantize_bias(b, ws, tin.scale) if b is not None else np.zeros(w.shape[0], np.int64)
    mult, shift = qm.scales_and_shifts(ws.astype(np.float64) * tin.scale / tout.scale, 32)
    params = {"weight_codes": top_filter(wq).astype(np.int8 if w_signed else np.uint8),
              "weight_scales": ws, "bias_codes": bias_q, "multipliers": mult, "shifts": shift,
              "relu": bool(node.attrs.get("_relu"))}
    return Int8Op((tin,), tout, "deconv", params)


def deconv_int8(x: np.ndarray, *, wq: np.ndarray, bias_q: np.ndarray, multiplier: np.ndarray,
                shift: np.ndarray, attrs: dict, out_signed: bool, relu: bool) -> np.ndarray:
    """INT8 Deconv: the exact int32 ConvTranspose sum plus bias (float64 holds it exactly),
    then per channel sat(RightShiftRound_away(acc * m, r))."""
    public = {k: v for k, v in attrs.items() if not k.startswith("_")}
    acc = ConvTranspose(x.astype(np.float64), wq, **public).astype(np.int64)
    acc += channel_shape(bias_q, acc.ndim)
    mult, shifts = (np.asarray(v, np.int64) for v in (multiplier, shift))
    out = np.empty(acc.shape, np.int64)
    for c in range(acc.shape[1]):
        out[:, c] = qm.right_shift_round_away(acc[:, c] * mult[c], int(shifts[c]))
    if relu:
        np.maximum(out, 0, out=out)
    return qm.to_codes(out, out_signed)


@kernel("deconv")
def deconv_kernel(*, out_types, attrs, params, **_):
    return partial(deconv_int8, wq=np.asarray(params["weight_codes"], np.float64),
                   bias_q=np.asarray(params["bias_codes"], np.int64),
                   multiplier=np.asarray(params["multipliers"], np.int64),
                   shift=np.asarray(params["shifts"], np.int64), attrs=attrs,
                   out_signed=out_types[0].signed, relu=bool(params.get("relu")))
