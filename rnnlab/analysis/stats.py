"""Intervals over seeds: the statistics every summary row reports.

Outcomes of training (solved, loss, accuracy) are random variables of the seed and, across
machines, of the floating-point rounding; a table reports them with 95 % intervals over the runs
of a group, never as one number alone.

* :func:`wilson`: Wilson score interval of a proportion k/n (Wilson 1927), for the solved
  fraction. ``z = 1.96``; centre ``(k + z^2/2) / (n + z^2)``, half-width
  ``z / (n + z^2) * sqrt(k (n - k) / n + z^2 / 4)``. For k = 8, n = 10: [0.490, 0.943].
* :func:`t_interval`: mean +- t_{0.975, n-1} * sd / sqrt(n), for accuracy and other roughly
  symmetric outcomes (clamped to ``bounds`` when given, e.g. [0, 1] for an accuracy).
* :func:`median_interval`: the distribution-free interval of the median from order statistics
  (the sign-test interval): [x_(j), x_(n+1-j)] with the largest j such that
  P(j <= Bin(n, 1/2) <= n - j) >= 0.95. Used for losses, whose spread over seeds covers orders of
  magnitude (a mean of 0.3 and 1e11 says nothing). Needs n >= 6; smaller groups get NaN bounds.

Every function is deterministic (no resampling), so a table prints the same text on every rerun
of the same numbers.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

Z95 = 1.959963984540054
"""The 0.975 quantile of the standard normal distribution."""

# t_{0.975, df} for df = 1..30; beyond 30 the table below is interpolated in 1/df.
_T975 = (
    12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836, 2.446911851, 2.364624252,
    2.306004135, 2.262157163, 2.228138852, 2.200985160, 2.178812830, 2.160368656, 2.144786688,
    2.131449546, 2.119905299, 2.109815578, 2.100922040, 2.093024054, 2.085963447, 2.079613845,
    2.073873068, 2.068657610, 2.063898562, 2.059538553, 2.055529439, 2.051830516, 2.048407142,
    2.045229642, 2.042272456,
)
_T975_FAR = ((40, 2.021075390), (60, 2.000297822), (120, 1.979930405), (math.inf, Z95))


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError(f"t975: df must be >= 1, got {df}")
    if df <= 30:
        return _T975[df - 1]
    lo_df, lo = 30, _T975[-1]
    for hi_df, hi in _T975_FAR:
        if df <= hi_df:
            w = (1 / lo_df - 1 / df) / (1 / lo_df - (0 if math.isinf(hi_df) else 1 / hi_df))
            return lo + w * (hi - lo)
        lo_df, lo = hi_df, hi
    return Z95


def wilson(k: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (lo, hi) of the proportion k/n; (nan, nan) when n = 0."""
    if not n > 0:
        return math.nan, math.nan
    centre = (k + z * z / 2) / (n + z * z)
    half = z / (n + z * z) * math.sqrt(max(k * (n - k) / n, 0.0) + z * z / 4)
    lo = 0.0 if k <= 0 else max(0.0, centre - half)        # exact ends: no rounding residue
    hi = 1.0 if k >= n else min(1.0, centre + half)
    return lo, hi


def t_interval(values, bounds: tuple[float, float] | None = None) -> tuple[float, float, float]:
    """(mean, lo, hi) of the finite values: mean +- t * sd / sqrt(n); NaN bounds when n < 2.

    A group holding an infinite value has that infinity as its mean and NaN bounds."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    if not np.isfinite(v).all():
        return float(v.mean()), math.nan, math.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, math.nan, math.nan
    half = t975(v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
    lo, hi = mean - half, mean + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return mean, lo, hi


def median_rank(n: int, level: float = 0.95) -> int:
    """The 1-based rank j of the sign-test interval [x_(j), x_(n+1-j)]; 0 when n is too small."""
    # P(j <= K <= n - j) for K ~ Bin(n, 1/2) is 1 - 2 P(K < j); in exact integers (scaled by
    # 2^n, which overflows a float from n = 1024 on), the lower tail summed as j grows
    target = Fraction(str(level))
    total = 1 << n
    best, below, term = 0, 0, 1                  # term = comb(n, j - 1)
    for j in range(1, n // 2 + 1):
        below += term
        term = term * (n - j + 1) // j
        if (total - 2 * below) * target.denominator >= target.numerator * total:
            best = j
        else:
            break
    return best


def median_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """(median, lo, hi) of the non-missing values (infinities allowed); NaN bounds when n < 6."""
    v = np.asarray(values, dtype=float)
    v = np.sort(v[~np.isnan(v)])
    if v.size == 0:
        return math.nan, math.nan, math.nan
    median = float(np.median(v))
    j = median_rank(v.size, level)
    if j == 0:
        return median, math.nan, math.nan
    return median, float(v[j - 1]), float(v[v.size - j])
