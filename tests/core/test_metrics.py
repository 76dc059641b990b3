"""F.3 metrics and the npz compare classification / summary."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tpushell.core.metrics import (CLOSE, EQUAL, NOT_EQUAL, NOT_SIMILAR, SIMILAR, compare_npz,
                                   compare_tensors, cosine, euclidean_similarity, reference_cos,
                                   sqnr, true_cos)


def test_metric_values():
    a = np.array([1.0, 2.0, 3.0])
    assert cosine(a, 2 * a) == pytest.approx(1.0)
    assert cosine(a, -a) == pytest.approx(-1.0)
    assert cosine(a, np.zeros(3)) == 0.0
    b = np.array([1.0, 2.0, 4.0])
    assert euclidean_similarity(a, b) == pytest.approx(1 - 1 / (np.linalg.norm((a + b) / 2) + 1e-7))
    n = a - b
    assert sqnr(a, b) == pytest.approx(10 * math.log10(np.sum((a - a.mean()) ** 2)
                                                       / np.sum((n - n.mean()) ** 2)))
    assert sqnr(a, a) == math.inf
    assert reference_cos(0.998) == pytest.approx(0.999) and true_cos(0.9999) == pytest.approx(0.9998)


def test_states():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1000).astype(np.float32)
    assert compare_tensors(x, x.copy()).state == EQUAL
    close = compare_tensors(x * (1 + 1e-4), x)
    assert close.state == CLOSE and close.close_order == 3
    noisy = x + 0.01 * rng.standard_normal(1000).astype(np.float32)
    r = compare_tensors(noisy, x, (0.99, 0.9))
    assert r.state == SIMILAR and r.passed and r.cosine > 0.999
    assert compare_tensors(rng.standard_normal(1000), x).state == NOT_SIMILAR
    q = np.array([1, 2, 3], np.int8)
    assert compare_tensors(q, np.array([1, 2, 4], np.int8)).state == NOT_EQUAL


def test_alignment_reshape_crop_and_bf16():
    x = np.arange(12, dtype=np.float32)
    assert compare_tensors(x, x.reshape(3, 4)).state == EQUAL
    assert compare_tensors(x.reshape(3, 4), x.reshape(3, 4)[:2]).state == EQUAL   # cropped
    bf16 = (np.array([1.5, -2.0], np.float32).view(np.uint32) >> 16).astype(np.uint16)
    assert compare_tensors(bf16, np.array([1.5, -2.0], np.float32)).state == EQUAL
    # other rank and size, or nothing left after the crop: a failed comparison, not an exception
    assert compare_tensors(x, x.reshape(2, 2, 3)[:1]).state == NOT_EQUAL
    assert not compare_tensors(x.reshape(3, 4)[:0], x.reshape(3, 4)).passed


def test_compare_npz_summary_and_excepts():
    rng = np.random.default_rng(1)
    ref = {"a": rng.standard_normal(100), "b": rng.standard_normal(100), "c": rng.standard_normal(9)}
    target = {"a": ref["a"], "b": ref["b"] + 0.05 * rng.standard_normal(100), "c": -ref["c"],
              "extra": np.zeros(3)}
    report = compare_npz(target, ref, (0.99, 0.9))
    assert [r.name for r in report.results] == ["a", "b", "c"]
    assert not report.passed
    text = report.format(verbose=1, target="t.npz", reference="r.npz")
    assert "[a                               ]        EQUAL [PASSED]" in text
    assert "cosine_similarity      = " in text
    assert "3 compared\n2 passed\n  1 equal, 0 close, 1 similar\n1 failed\n  0 not equal, 1 not similar" in text
    assert text.splitlines()[-3:] == ["Target    t.npz", "Reference r.npz", "npz compare FAILED."]
    ok = compare_npz(target, ref, (0.99, 0.9), excepts=["b", "c"])
    assert ok.passed and str(ok).endswith("npz compare PASSED.")
