"""Threshold math on synthetic data with known answers (reference C.2-C.5)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from tpushell.core.calibration import thresholds as th

BINS = 2048


def spikes(bins: int = BINS, **counts: int) -> np.ndarray:
    """A histogram with counts at the given bins: spikes(b300=1000) puts 1000 in bin 300."""
    h = np.zeros(bins, dtype=np.int64)
    for key, n in counts.items():
        h[int(key[1:])] = n
    return h


# ---- histogram ----------------------------------------------------------------------------------
def test_abs_histogram_rounds_to_nearest_bin_and_drops_exact_zeros():
    width = th.bin_width(2.0, 5)                     # 0.5
    x = np.array([0.0, 0.0, -0.0, 1e-9, 0.24, 0.26, -0.74, 0.76, -2.0, 2.0], np.float32)
    assert th.abs_histogram(x, width, 5).tolist() == [2, 2, 1, 0, 2]


def test_abs_histogram_matches_the_reference_formula_on_random_data():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 8, 31, 17)) * 3).astype(np.float32)
    x[x < -2] = 0
    absmax = float(np.abs(x).max())
    width = th.bin_width(absmax, BINS)
    t = np.abs(x.ravel())
    t = t[t != 0]
    expected, _ = np.histogram(np.floor(t / width + np.float32(0.5)), bins=BINS, range=(0, BINS - 1))
    scratch = th.Scratch()
    assert np.array_equal(th.abs_histogram(x, width, BINS, scratch), expected)
    assert np.array_equal(th.abs_histogram(x[:1], width, BINS, scratch),
                          th.abs_histogram(x[:1], width, BINS))
    assert th.abs_histogram(x, width, BINS).sum() == np.count_nonzero(x)


def test_the_compiled_histogram_counts_what_the_numpy_one_counts():
    """Blocks on several threads, values past the last bin, -0.0, tiny and huge ranges, a
    non-contiguous view: the fused kernel (numba) and the five numpy passes agree count for count."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(11)
    for trial in range(12):
        n = int(rng.integers(1, 3 * th.HISTOGRAM_BLOCK))
        x = (rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 4)).astype(np.float32)
        x[rng.random(n) < 0.3] = 0
        x[::11] = -0.0
        bins = int(rng.choice([BINS, 2049, 130]))
        width = th.bin_width(float(np.abs(x).max()) * rng.choice([1.0, 0.5]) or 1.0, bins)
        view = x[::2] if trial % 2 else x
        assert np.array_equal(th.abs_histogram(view, width, bins), th._abs_histogram_numpy(view, width, bins))


def test_abs_histogram_of_zeros_is_empty():
    assert th.abs_histogram(np.zeros((3, 4), np.float32), th.bin_width(1e-5, BINS), BINS).sum() == 0


# ---- KLD ----------------------------------------------------------------------------------------
def test_kld_of_an_empty_histogram_is_zero():
    assert th.kld_threshold(np.zeros(BINS, np.int64), 0.1) == 0.0


@pytest.mark.parametrize("spike, kept", [(0, 128), (126, 128), (127, 128), (128, 256), (300, 384),
                                         (2047, 2048)])
def test_kld_of_a_single_spike_keeps_the_first_cut_that_contains_it(spike, kept):
    # Cuts below the spike fold all mass into P's last bin where Q is 0 (a huge divergence);
    # every cut that contains the spike reproduces it exactly (divergence 0): the first one wins.
    width = 0.01
    assert th.kld_threshold(spikes(**{f"b{spike}": 1000}), width) == pytest.approx(width * kept)


def test_kld_of_two_spikes_keeps_the_outlier_spike():
    sizes, kl = th.kl_divergences(spikes(b100=10**6, b1000=1))
    assert np.all(kl[sizes <= 1000] > 1e-6)          # the outlier sits in P's folded last bin
    assert np.all(kl[sizes > 1000] == pytest.approx(0, abs=1e-12))
    assert th.kld_threshold(spikes(b100=10**6, b1000=1), 0.5) == pytest.approx(0.5 * 1024)


def test_kld_of_a_uniform_histogram_keeps_everything():
    h = np.full(BINS, 7, dtype=np.int64)
    sizes, kl = th.kl_divergences(h)
    # Closed form for a cut at i < N: P = 1/N below i-1 and (N-i+1)/N at i-1; Q = 1/i on [0, i).
    n = BINS
    for i, value in zip(sizes[:-1], kl[:-1]):
        expected = (i - 1) / n * math.log10(i / n) + (n - i + 1) / n * math.log10((n - i + 1) * i / n)
        assert value == pytest.approx(expected, rel=1e-9)
    assert kl[-1] == pytest.approx(0, abs=1e-12)
    absmax = 3.0
    assert min(th.kld_threshold(h, th.bin_width(absmax, BINS)), absmax) == absmax


def test_kld_groups_spread_mass_over_nonzero_bins_only():
    # One cut (i = 256, groups of 2 bins): bins 0,1 -> group mass 30 spread over its 2 non-zero bins;
    # bins 2,3 -> 10 all on bin 2. P = [10, 20, 10, 0] / 40, Q = [15, 15, 10, 0] / 40.
    h = spikes(256, b0=10, b1=20, b2=10)
    sizes, kl = th.kl_divergences(h)
    p = np.array([10, 20, 10]) / 40
    q = np.array([15, 15, 10]) / 40
    assert sizes.tolist() == [128, 256]
    assert kl[1] == pytest.approx(float(np.sum(p * np.log10(p / q))))
    assert kl[0] == pytest.approx(0, abs=1e-12)      # groups of one bin reproduce P exactly


def test_kld_pads_a_histogram_that_is_not_a_multiple_of_128():
    sizes, _ = th.kl_divergences(np.ones(300, np.int64))
    assert sizes.tolist() == [128, 256, 384]


def test_kld_reproduces_the_reference_regression_input_row():
    # Reference C.4: input_1 of the regression table, KLD at 1920 bins of absmax 1.000008.
    width = th.bin_width(1.000008, BINS)
    assert float(width) * 1920 == pytest.approx(0.93797, abs=5e-6)


# ---- tuning -------------------------------------------------------------------------------------
def test_tune_candidates_run_from_kld_to_absmax_in_20_steps():
    c = th.tune_candidates(2.0, 4.0)
    assert len(c) == 21 and c[0] == 2.0 and c[-1] == pytest.approx(4.0)
    assert np.allclose(np.diff(c), 0.1)


@pytest.mark.parametrize("th_min, absmax", [(1.0, 1.005), (1.0, 1.0), (2.0, 1.5)])
def test_tune_candidates_skip_small_or_negative_ranges(th_min, absmax):
    assert th.tune_candidates(th_min, absmax) is None


def test_fake_quant_is_signed_int8_with_half_even_rounding():
    x = np.array([0.5, 1.5, 2.5, -2.5, 200.0, -200.0, 3.0], np.float32)
    # threshold 127: scale 1, so values are simply rounded half-even and clipped to [-128, 127]
    assert th.fake_quant_int8(x, 127.0).tolist() == [0, 2, 2, -2, 127, -128, 3]
    assert th.fake_quant_int8(np.array([3.0], np.float32), 127 / 2).tolist() == [3.0]   # 6/2


def _numpy_fake_quant(x, threshold):
    scale = np.float32(127.0 / threshold)
    with np.errstate(over="ignore"):
        q = np.rint(np.clip(np.multiply(x, scale, dtype=np.float32), -128, 127))
    return q / scale


def test_the_compiled_fake_quant_gives_the_bits_of_the_numpy_steps():
    """Halves that round to even, values past the int8 range, -0.0, tiny values, NaN and inf, a
    non-contiguous view: the one-pass kernel (numba) and the four numpy passes agree bit for bit,
    and so do the quantization errors against q - x."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(5)
    for trial in range(10):
        threshold = float(10.0 ** rng.uniform(-4, 3))
        scale = np.float32(127.0 / threshold)
        x = (rng.standard_normal(5001) * threshold * rng.choice([0.3, 1.0, 3.0])).astype(np.float32)
        x[:300] = ((np.arange(300) - 150.5) / scale).astype(np.float32)      # near the halves
        x[300:310] = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-38, -1e-45, 3e38, -3e38, 0.5]
        view = x[::3] if trial % 2 else x
        expected = _numpy_fake_quant(view, threshold)
        got = th.fake_quant_int8(view, threshold)
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))
        out = np.empty(view.shape, np.float32)
        with np.errstate(invalid="ignore"):
            errors = (expected - view).view(np.uint32)
        assert np.array_equal(th.fake_quant_errors(view, threshold, out).view(np.uint32), errors)


def test_relative_l2_distance_is_averaged_per_sample_for_each_candidate():
    ref = np.array([[1.0, 1.0], [2.0, 0.0]], np.float32)
    outs = np.array([[[1.0, 0.0], [2.0, 0.0]], [[1.0, 1.0], [2.0, 0.0]], [[4.0, 5.0], [2.0, 0.0]]],
                    np.float32)
    norms = th.l1_norms(ref, 2)
    assert norms.tolist() == [2.0, 2.0]
    l2 = th.l2_distances(ref, outs)
    assert np.allclose(l2, [[1, 0], [0, 0], [5, 0]])
    assert th.mean_relative_distances(l2, norms).tolist() == pytest.approx([1 / 4, 0.0, 5 / 4])
    zero = np.zeros(2)
    assert th.mean_relative_distances(np.array([[0.0, 1.0]]), zero).tolist() == [math.inf]
    assert th.mean_relative_distances(np.array([[0.0, 0.0]]), zero).tolist() == [0.0]


def test_best_candidate_needs_a_strict_improvement_and_ignores_nan():
    assert th.best_candidate(np.array([1.0, 1.0, 0.5, 0.5])) == 2
    assert th.best_candidate(np.array([np.nan, 2.0, 1.0])) == 2
    assert th.best_candidate(np.array([1.0, np.nan])) == 0


# ---- other methods ------------------------------------------------------------------------------
def test_mse_threshold_reaches_the_fixed_point():
    rng = np.random.default_rng(0)
    x = rng.laplace(0, 1, 20000).astype(np.float32)
    s = th.mse_threshold(x)
    a = np.abs(x)
    above = a > s
    noise = 1 / 4**8 / 3
    fixed = a[above].sum() / (noise * np.count_nonzero(~above) + np.count_nonzero(above))
    assert s == pytest.approx(fixed, rel=1e-5)
    assert 0 < s < a.max()


def test_mse_threshold_of_zeros_and_of_a_constant():
    assert th.mse_threshold(np.zeros(10, np.float32)) == 0.0
    assert th.mse_threshold(np.full(10, 3.0, np.float32)) == pytest.approx(3.0)


def test_aciq_thresholds_follow_their_formulas():
    n = 1000
    std = 4.0 * 0.175 * (1 + math.sqrt(math.pi * math.log(4))) / math.sqrt(2 * math.log(n))
    assert th.aciq_gauss_threshold(-1.0, 3.0, n) == pytest.approx(3.92403337 * std)
    x = np.array([1, 2, 3, 6], np.float32)                 # mean 3, mean |x - 3| = 1.5
    assert th.aciq_laplace_threshold(x) == pytest.approx(9.89675982 * 1.5)


def test_percentile_from_tails_interpolates_like_the_reference():
    values = np.arange(1, 10001, dtype=np.float64)         # 1..10000
    p = th.percentile_of(0, 10)                             # 99.99
    k = th.percentile_tail_length(values.size, p)           # int(10000 * 1e-4) + 1 = 2
    assert k == 2
    top, bottom = values[::-1][:k], values[:k]
    lo, hi = th.percentile_from_tails(top, bottom, values.size, p)
    pos = p / 100 * (values.size - 1)
    ratio = pos - int(pos)
    assert hi == pytest.approx(9999 + ratio * (10000 - 9999))
    assert lo == pytest.approx(2 + ratio * (1 - 2))
    assert th.percentile_of(5, 10) == pytest.approx(99.99 + 5 * (99.999999 - 99.99) / 10)


def test_table_threshold_floors_at_1e5_and_replaces_nan():
    assert th.table_threshold(0.0) == 1e-5
    assert th.table_threshold(float("nan")) == 1e-5
    assert th.table_threshold(2.5) == 2.5
