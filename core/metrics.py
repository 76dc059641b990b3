"""Tensor comparison metrics and the npz compare of the reference (tpu-mlir-reference.md F.3).

    m = compare_tensors(target, reference)      # TensorCompare(state, cosine, euclid, sqnr)
    report = compare_npz(target_dict, ref_dict, tolerance=(0.99, 0.99))
    report.passed, str(report)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

EQUAL, CLOSE, SIMILAR, NOT_SIMILAR, NOT_EQUAL = "EQUAL", "CLOSE", "SIMILAR", "NOT_SIMILAR", "NOT_EQUAL"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """True cosine of two flattened tensors (0 when either is all zero), computed in float64."""
    a = np.asarray(a, np.float64).reshape(-1)
    b = np.asarray(b, np.float64).reshape(-1)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def reference_cos(cos: float) -> float:
    """The reference searches' scale: 0.5 + 0.5 * cos."""
    return 0.5 + 0.5 * cos


def true_cos(ref_cos: float) -> float:
    """Inverse of `reference_cos`."""
    return 2.0 * ref_cos - 1.0


def euclidean_similarity(t: np.ndarray, r: np.ndarray) -> float:
    """1 - ||t - r|| / (||(t + r) / 2|| + 1e-7)."""
    t = np.asarray(t, np.float64).reshape(-1)
    r = np.asarray(r, np.float64).reshape(-1)
    return float(1 - np.linalg.norm(t - r) / (np.linalg.norm((t + r) / 2) + 1e-7))


def sqnr(t: np.ndarray, r: np.ndarray) -> float:
    """10 log10(signal / noise) with the target as signal; inf when either power is 0."""
    t = np.asarray(t, np.float64).reshape(-1)
    n = t - np.asarray(r, np.float64).reshape(-1)
    ps, pn = np.sum((t - t.mean()) ** 2), np.sum((n - n.mean()) ** 2)
    if ps == 0 or pn == 0:
        return math.inf
    return float(10 * math.log10(ps / pn))


@dataclass
class TensorCompare:
    """Outcome for one tensor pair: state and (for SIMILAR / NOT_SIMILAR) the three metrics."""

    name: str
    state: str
    cosine: float = 1.0
    euclid: float = 1.0
    sqnr: float = math.inf
    shape: tuple[int, ...] = ()
    dtype: str = ""
    close_order: int = 0

    @property
    def passed(self) -> bool:
        return self.state in (EQUAL, CLOSE, SIMILAR)

    def format(self, verbose: int = 1) -> str:
        """The reference's per-tensor block: name, state, verdict; with verbose the metrics."""
        lines = [f"[{self.name:<32}] {self.state:>12} [{'PASSED' if self.passed else 'FAILED':>6}]"]
        if verbose:
            lines.append(f"    {self.shape} {self.dtype} ")
            if self.state == CLOSE:
                lines.append(f"    close order            = {self.close_order}")
            if self.state in (SIMILAR, NOT_SIMILAR):
                lines.append(f"    cosine_similarity      = {self.cosine:.6f}")
                lines.append(f"    euclidean_similarity   = {self.euclid:.6f}")
                lines.append(f"    sqnr_similarity        = {self.sqnr:.6f}")
        return "\n".join(lines)


def _align(t: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reshape t to r's shape, or crop both when only the sizes differ; common dtype (F.3)."""
    t, r = _from_bf16(t), _from_bf16(r)
    if t.size == r.size:
        t = t.reshape(r.shape)
    elif t.ndim == r.ndim:
        crop = tuple(slice(0, min(a, b)) for a, b in zip(t.shape, r.shape))
        t, r = t[crop], r[crop]
    else:
        raise ValueError(f"shapes {list(t.shape)} and {list(r.shape)} cannot be compared")
    if np.int8 in (t.dtype, r.dtype):
        dtype = np.int8
    elif np.int32 in (t.dtype, r.dtype):
        dtype = np.int32
    else:
        dtype = np.float32
    return t.astype(dtype, copy=False), r.astype(dtype, copy=False)


def _from_bf16(x: np.ndarray) -> np.ndarray:
    """uint16 arrays hold bfloat16 bits in the reference's dumps."""
    if x.dtype != np.uint16:
        return x
    return (x.astype(np.uint32) << 16).view(np.float32)


def comparable(t: np.ndarray, r: np.ndarray) -> bool:
    """Whether `_align` can pair the two: same size, or same rank with data left after cropping."""
    if t.size == r.size:
        return True
    return t.ndim == r.ndim and all(min(a, b) > 0 for a, b in zip(t.shape, r.shape))


def compare_tensors(t: np.ndarray, r: np.ndarray, tolerance: tuple[float, float] = (0.99, 0.99),
                    name: str = "") -> TensorCompare:
    """Classify a pair as EQUAL, CLOSE (allclose at rtol <= 1e-3), SIMILAR or NOT_SIMILAR."""
    t, r = np.asarray(t), np.asarray(r)
    if not comparable(t, r):   # an empty tensor never matches a full one; ranks must agree
        return TensorCompare(name, NOT_EQUAL, 0.0, 0.0, -math.inf, shape=tuple(r.shape),
                             dtype=str(r.dtype))
    t, r = _align(t, r)
    shape, dtype = tuple(r.shape), str(r.dtype)
    if np.array_equal(t, r):
        return TensorCompare(name, EQUAL, shape=shape, dtype=dtype)
    if t.dtype == np.int8:
        return TensorCompare(name, NOT_EQUAL, 0.0, 0.0, -math.inf, shape=shape, dtype=dtype)
    t = np.asarray(t, np.float32)
    r = np.asarray(r, np.float32)
    for k in (5, 4, 3, 2):
        if np.allclose(t, r, rtol=10.0 ** -k, atol=1e-8, equal_nan=True):
            if k >= 3:
                return TensorCompare(name, CLOSE, shape=shape, dtype=dtype, close_order=k)
            break
    t = np.nan_to_num(t, nan=0.0, posinf=10000.0, neginf=-10000.0)
    r = np.nan_to_num(r, nan=0.0, posinf=10000.0, neginf=-10000.0)
    c, e, s = cosine(t, r), euclidean_similarity(t, r), sqnr(t, r)
    state = SIMILAR if (c > tolerance[0] and e > tolerance[1]) else NOT_SIMILAR
    return TensorCompare(name, state, c, e, s, shape=shape, dtype=dtype)


@dataclass
class CompareReport:
    """All tensor comparisons of two npz files plus the summary the reference prints."""

    results: list[TensorCompare] = field(default_factory=list)
    tolerance: tuple[float, float] = (0.99, 0.99)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def count(self, *states: str) -> int:
        return sum(1 for r in self.results if r.state in states)

    def format(self, verbose: int = 0, target: str | None = None,
               reference: str | None = None) -> str:
        """The reference's output (F.3): one block per tensor with `verbose` (failed ones are
        always listed), then the summary."""
        lines = [r.format(verbose) for r in self.results if verbose or not r.passed]
        return "\n".join(lines + [self.summary(target, reference)])

    def summary(self, target: str | None = None, reference: str | None = None) -> str:
        """Counts, the lowest similarities, the file names (when given) and the verdict."""
        n = len(self.results)
        passed = self.count(EQUAL, CLOSE, SIMILAR)
        lines = [f"{n} compared", f"{passed} passed",
                 f"  {self.count(EQUAL)} equal, {self.count(CLOSE)} close, "
                 f"{self.count(SIMILAR)} similar",
                 f"{n - passed} failed",
                 f"  {self.count(NOT_EQUAL)} not equal, {self.count(NOT_SIMILAR)} not similar"]
        sims = [r for r in self.results if r.state in (SIMILAR, NOT_SIMILAR)]
        if sims:
            lines.append(f"min_similarity = ({min(r.cosine for r in sims)}, "
                         f"{min(r.euclid for r in sims)}, {min(r.sqnr for r in sims)})")
        if target:
            lines.append(f"Target    {target}")
        if reference:
            lines.append(f"Reference {reference}")
        lines.append("npz compare PASSED." if self.passed else "npz compare FAILED.")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def compare_npz(target: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                tolerance: tuple[float, float] = (0.99, 0.99),
                excepts: Iterable[str] = ()) -> CompareReport:
    """Compare every tensor named in both (reference order), minus `excepts`."""
    skip = set(excepts)
    report = CompareReport(tolerance=tolerance)
    for name in reference:
        if name in target and name not in skip:
            report.results.append(compare_tensors(target[name], reference[name], tolerance, name))
    return report
