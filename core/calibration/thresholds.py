"""Threshold math of the reference calibrator (tpu-mlir-reference.md C.2-C.5), as pure functions.

    width = bin_width(absmax, 2048)
    h = abs_histogram(x, width, 2048)              # |x| histogram, exact zeros removed
    th = min(kld_threshold(h, width), absmax)      # C.3
    ths = tune_candidates(th, absmax)              # C.4: th + k*(absmax-th)/20, k = 0..20

Everything here works on numpy arrays and floats; nothing knows about graphs or files.
"""
from __future__ import annotations

import math
from functools import partial

import numpy as np

from ..jit import compiled
from ..ops.parallel import THREADS, parallel

MIN_THRESHOLD = 1e-5      # a threshold or absmax at or below this is written as 1e-5
KLD_TARGET_BINS = 128     # int8: the KLD quantizes the histogram to 128 levels
TUNE_STEPS = 20           # v1.3: candidates th_min + k*step, k = 0..20
MIN_TUNED_DIFF = 0.01     # absmax - th_min at or below this is not worth tuning
PERCENTILE_FIRST, PERCENTILE_LAST = 99.99, 99.999999
MSE_ITERATIONS, MSE_TOLERANCE = 20, 1e-6
ACIQ_GAUSS_ALPHA = {8: 3.92403337, 4: 2.55913642}
ACIQ_LAPLACE_BETA = {8: 9.89675982, 4: 5.02864014}


# ---- histogram and KLD (C.2, C.3) ----------------------------------------------------------------
def bin_width(absmax: float, bins: int) -> np.float32:
    """Width of one histogram bin, absmax/(bins-1), as the float32 the reference divides by."""
    return np.float32(absmax / (bins - 1))


class Scratch:
    """Work buffers reused by abs_histogram across calls (fresh big arrays cost page faults)."""

    def __init__(self) -> None:
        self.values = np.empty(0, np.float32)
        self.bins = np.empty(0, np.intp)

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self.values.size < n:
            self.values, self.bins = np.empty(n, np.float32), np.empty(n, np.intp)
        return self.values[:n], self.bins[:n]


def abs_histogram(x: np.ndarray, width: float, bins: int, scratch: Scratch | None = None) -> np.ndarray:
    """Counts of floor(|x|/width + 0.5) over `bins` bins with exact zeros left out (int64).

    Values past the last bin (absmax itself, by a float rounding) count in the last bin.
    Example: abs_histogram(np.array([0, .5, -1, 1]), 0.5, 3) -> [0, 1, 2].
    With numba, one fused pass per block of x on every thread (4x faster than the five numpy
    passes on one, the largest cost of a one-pass calibration); the counts are the same: the
    same float32 operations per value, and integer counts add up in any order.
    """
    kernel = compiled(_histogram_block)
    if kernel is None:
        return _abs_histogram_numpy(x, width, bins, scratch)
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    w = np.float32(width)
    step = max(HISTOGRAM_BLOCK, -(-flat.size // THREADS))
    parts = np.zeros((-(-flat.size // step) or 1, bins), np.int64)
    parallel(partial(kernel, flat[i * step:(i + 1) * step], w, parts[i]) for i in range(len(parts)))
    return parts.sum(axis=0) if len(parts) > 1 else parts[0]


# Values per thread's block of a histogram: below this, handing a block to a thread costs more.
HISTOGRAM_BLOCK = 1 << 18


# Values whose bins are worked out in one go by _histogram_block (fits in L1 beside x's block).
INDEX_BLOCK = 4096
# Counters per bin: consecutive values mostly fall in the same few bins (near zero), and one
# counter's load-add-store chain would make each value wait for the previous one's store.
LANES = 8


def _histogram_block(x, width, out):
    """out[floor(|v|/width + 0.5)] += 1 for every nonzero v of x (last bin for larger values),
    in float32 like the numpy version: |v|, / width, + 0.5, truncation.

    First the bins of a block of values (a loop the compiler vectorizes; clamping before the
    truncation gives the same bin as after, the last bin being a whole number), then the counts,
    value j of a block in lane j % LANES of its bin's counters: integer counts, so any split adds
    up to the same histogram.
    """
    last = out.size - 1
    lastf = np.float32(last)
    half = np.float32(0.5)
    lanes = np.uint64(LANES)
    counts = np.zeros((last + 2) * LANES, np.int64)      # bin last + 1: the exact zeros
    index = np.empty(INDEX_BLOCK, np.uint32)
    for b0 in range(0, x.size, INDEX_BLOCK):
        m = min(INDEX_BLOCK, x.size - b0)
        for i in range(m):
            v = x[b0 + i]
            k = min(abs(v) / width + half, lastf)
            index[i] = np.uint32(k) if v != 0 else np.uint32(last + 1)
        for i in range(m):
            counts[np.uint64(index[i]) * lanes + np.uint64(i % LANES)] += 1
    for k in range(last + 1):
        total = out[k]
        for lane in range(LANES):
            total += counts[k * LANES + lane]
        out[k] = total


def _abs_histogram_numpy(x: np.ndarray, width: float, bins: int, scratch: Scratch | None = None) -> np.ndarray:
    """abs_histogram without numba: five passes over x."""
    x = np.asarray(x, dtype=np.float32)
    values, index = (scratch or Scratch()).take(x.size)
    a = values.reshape(x.shape)
    np.abs(x, out=a)
    np.divide(a, np.float32(width), out=a)
    a += np.float32(0.5)
    np.copyto(index, values, casting="unsafe")      # truncation = floor for these non-negatives
    hist = np.bincount(index, minlength=bins)
    if len(hist) > bins:
        hist[bins - 1] += hist[bins:].sum()
        hist = hist[:bins]
    hist[0] -= np.count_nonzero(x == 0)
    return hist


def kl_divergences(hist: np.ndarray, target_bins: int = KLD_TARGET_BINS) -> tuple[np.ndarray, np.ndarray]:
    """KL(P||Q) of every candidate cut i = 128, 256, ... (log10, no smoothing, C.3).

    The histogram is zero-padded to a multiple of `target_bins`. P keeps bins < i-1 and folds all
    outliers into bin i-1; Q spreads each of the `target_bins` groups' mass evenly over the group's
    non-zero bins. Returns (cut sizes, divergences).
    """
    h = np.asarray(hist, dtype=np.float64)
    h = np.concatenate([h, np.zeros(-len(h) % target_bins)])
    total = h.sum()
    sizes = np.arange(target_bins, len(h) + 1, target_bins)
    kl = np.empty(len(sizes))
    suffix = np.cumsum(h[::-1])[::-1]         # suffix[j] = sum(h[j:])
    for m, i in enumerate(sizes):
        p = h[:i].copy()
        p[i - 1] = suffix[i - 1]
        p /= total
        inside = h[:i].sum()
        groups = h[:i].reshape(target_bins, -1)
        nonzero = groups != 0
        counts = np.maximum(nonzero.sum(axis=1, keepdims=True), 1)
        q = np.zeros_like(groups)
        if inside > 0:
            q = np.where(nonzero, groups.sum(axis=1, keepdims=True) / (counts * inside), 0.0)
        q = q.ravel()
        kl[m] = np.sum(p * (np.log10(p + 1e-30) - np.log10(q + 1e-30)))
    return sizes, kl


def kld_threshold(hist: np.ndarray, width: float, target_bins: int = KLD_TARGET_BINS) -> float:
    """width * (bins kept at the first minimum of the KL divergence); 0 for an empty histogram.

    The caller clamps it to absmax (the last candidate is absmax * 2048/2047).
    """
    if np.sum(hist) == 0:
        return 0.0
    sizes, kl = kl_divergences(hist, target_bins)
    return float(width) * int(sizes[int(np.argmin(kl))])


# ---- tuning (C.4) -------------------------------------------------------------------------------
def tune_candidates(th_min: float, absmax: float, steps: int = TUNE_STEPS) -> np.ndarray | None:
    """th_min + k*(absmax-th_min)/steps for k = 0..steps, or None when not worth tuning."""
    if absmax - th_min <= MIN_TUNED_DIFF or steps <= 0:
        return None
    step = (absmax - th_min) / steps
    return th_min + step * np.arange(steps + 1)


def fake_quant_int8(x: np.ndarray, threshold: float, out: np.ndarray | None = None) -> np.ndarray:
    """The tuner's fake quantization: clip(round_half_even(x*127/th), -128, 127) / (127/th).

    Always signed int8, even for non-negative tensors (reference J.4, J.7). `out` may be given.
    With numba one pass instead of four numpy ones over the tuner's largest arrays; the same
    float32 operations per value, so the same bits (NaN stays NaN, as np.clip keeps it).
    """
    scale = np.float32(127.0 / threshold)
    kernel = compiled(_fake_quant_block)
    if kernel is not None and x.dtype == np.float32 and (out is None or out.flags.c_contiguous):
        q = np.empty(x.shape, np.float32) if out is None else out
        kernel(np.ascontiguousarray(x).reshape(-1), scale, q.reshape(-1), False)
        return q
    q = np.multiply(x, scale, out=out, dtype=np.float32)
    np.clip(q, -128, 127, out=q)          # clip before rounding: same result, bounds are integers
    np.rint(q, out=q)
    q /= scale
    return q


def fake_quant_errors(x: np.ndarray, threshold: float, out: np.ndarray) -> np.ndarray:
    """out = fake_quant_int8(x, threshold) - x (float32, the same bits as the two steps), for
    an op whose output is its quantized input's values: the distance needs only this."""
    kernel = compiled(_fake_quant_block)
    if kernel is not None and x.dtype == np.float32 and out.flags.c_contiguous:
        kernel(np.ascontiguousarray(x).reshape(-1), np.float32(127.0 / threshold), out.reshape(-1), True)
        return out
    fake_quant_int8(x, threshold, out=out)
    out -= x
    return out


def _fake_quant_block(x, scale, out, errors):
    """out = fake_quant_int8(x), minus x when `errors`, for flat float32 x and out."""
    low, high = np.float32(-128), np.float32(127)
    for i in range(x.size):
        v = x[i]
        q = v * scale
        if q < low:           # comparisons, not min/max: a NaN passes through as in np.clip
            q = low
        elif q > high:
            q = high
        q = np.rint(q) / scale
        out[i] = q - v if errors else q


def l1_norms(ref: np.ndarray, samples: int) -> np.ndarray:
    """||ref||_1 of each of `samples` equal slices of axis 0."""
    return np.abs(ref.reshape(samples, -1)).sum(axis=1, dtype=np.float64)


def l2_distances(ref: np.ndarray, outs: np.ndarray) -> np.ndarray:
    """||ref - out||_2 of each sample (slices of ref's axis 0 as `outs` has them on its axis 1) of
    each candidate output (axis 0 of `outs`): a (candidates, samples) array. `outs` is overwritten.
    """
    samples = outs.shape[1]
    diff = outs.reshape(len(outs), samples, -1)
    diff -= ref.reshape(1, samples, -1)
    return l2_norms(diff)


def l2_norms(diff: np.ndarray) -> np.ndarray:
    """||d||_2 of each row d of a (candidates, samples, values) array of differences."""
    return np.sqrt([[np.dot(d, d) for d in rows] for rows in diff])   # float32 dot, as the reference


def mean_relative_distances(l2: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """Per candidate, the mean over samples of ||ref - out||_2 / ||ref||_1 (`l2` from l2_distances,
    `norms` from l1_norms); inf where ref is 0 but out is not.

    Example: l2 [[1, 0]], norms [2, 2] -> [(1/2 + 0)/2].
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(norms > 0, l2 / norms, np.where(l2 > 0, np.inf, 0.0))
    return d.mean(axis=1)


def best_candidate(distances: np.ndarray) -> int:
    """Index of the first strict minimum (a candidate must beat every earlier one); NaN never wins."""
    d = np.where(np.isnan(distances), np.inf, distances)
    return int(np.argmin(d))


# ---- other methods (C.5) ------------------------------------------------------------------------
def mse_threshold(x: np.ndarray, bits: int = 8) -> float:
    """Per-sample MSE-optimal clipping threshold by fixed-point iteration on |x| (C.5 'mse')."""
    a = np.abs(np.asarray(x, dtype=np.float32).ravel())
    nonzero = np.count_nonzero(a)
    if nonzero == 0:
        return 0.0
    unsigned = 4.0 if abs(float(x.min())) < 1e-6 else 1.0
    noise = 1.0 / (4.0 ** bits) / 3.0 / unsigned
    s = float(a.sum()) / nonzero
    for _ in range(MSE_ITERATIONS):
        above = a > s
        n_above = np.count_nonzero(above)
        if n_above == 0:
            break
        s_next = float(np.sum(a, where=above)) / (noise * (a.size - n_above) + n_above)
        if abs(s_next - s) < MSE_TOLERANCE:
            break
        s = s_next
    return s


def aciq_gauss_threshold(lo: float, hi: float, size: int, bits: int = 8) -> float:
    """ACIQ for a Gaussian: alpha * std, std estimated from the range of `size` values."""
    const = 0.5 * 0.35 * (1 + math.sqrt(math.pi * math.log(4)))
    std = (hi - lo) * const / math.sqrt(2 * math.log(size)) if size > 1 else 0.0
    return ACIQ_GAUSS_ALPHA[bits] * std


def aciq_laplace_threshold(x: np.ndarray, bits: int = 8) -> float:
    """ACIQ for a Laplace distribution: beta * mean(|x - mean(x)|)."""
    x = np.asarray(x, dtype=np.float32)
    return ACIQ_LAPLACE_BETA[bits] * float(np.mean(np.abs(x - x.mean())))


def percentile_of(index: int, count: int) -> float:
    """The percentile of the index-th of `count` tensors: 99.99 rising to 99.999999 (C.5)."""
    return PERCENTILE_FIRST + index * (PERCENTILE_LAST - PERCENTILE_FIRST) / count


def percentile_tail_length(total: int, percentile: float) -> int:
    """How many extreme values per side the percentile needs: int(total*(1-p/100)) + 1."""
    return int(total * (1 - percentile / 100)) + 1


def percentile_from_tails(top: np.ndarray, bottom: np.ndarray, total: int,
                          percentile: float) -> tuple[float, float]:
    """(low, high) percentile values of `total` values from their k smallest and k largest.

    `top` holds the k largest values sorted descending, `bottom` the k smallest ascending; the value
    is interpolated between the k-th and (k-1)-th most extreme ones, as the reference does.
    """
    pos = percentile / 100 * (total - 1)
    ratio = pos - int(pos)
    k = len(top)

    def at(tail: np.ndarray) -> float:
        return float(tail[k - 1]) if k == 1 else float(tail[k - 1] + ratio * (tail[k - 2] - tail[k - 1]))
    return at(bottom), at(top)


def table_threshold(th: float) -> float:
    """A threshold as written to a table: at least 1e-5, and 1e-5 for NaN."""
    return th if th > MIN_THRESHOLD else MIN_THRESHOLD
