"""The intervals of rnnlab.analysis.stats against published values and their definitions."""

import math

import numpy as np
import pytest

from rnnlab.analysis.stats import median_interval, median_rank, t975, t_interval, wilson


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        # Wilson (1927) 95 % intervals, as tabulated e.g. by Newcombe (1998, Table I) and in
        # the project's reference facts: 8/10, 0/10, 10/10, and two classic cases.
        (8, 10, 0.4902, 0.9433),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
    ],
)
def test_wilson_matches_known_table(k, n, lo, hi):
    got = wilson(k, n)
    assert got[0] == pytest.approx(lo, abs=5e-5) and got[1] == pytest.approx(hi, abs=5e-5)


def test_wilson_is_empty_for_no_trials_and_contains_the_estimate():
    assert all(math.isnan(v) for v in wilson(0, 0))
    for n in range(1, 30):
        for k in range(n + 1):
            lo, hi = wilson(k, n)
            assert 0 <= lo <= k / n <= hi <= 1


@pytest.mark.parametrize(("df", "q"), [(1, 12.7062), (2, 4.3027), (9, 2.2622), (30, 2.0423),
                                       (40, 2.0211), (60, 2.0003), (120, 1.9799),
                                       (10**9, 1.9600)])
def test_t_quantiles(df, q):
    assert t975(df) == pytest.approx(q, abs=2e-4)


def test_t_quantile_between_table_rows_is_close():
    assert t975(50) == pytest.approx(2.0086, abs=1e-3)   # t_{0.975, 50}
    with pytest.raises(ValueError):
        t975(0)


def test_t_interval_definition_and_clamp():
    v = [0.5, 0.7, 0.9, 0.6]
    mean, lo, hi = t_interval(v)
    half = t975(3) * np.std(v, ddof=1) / 2
    assert (mean, lo, hi) == pytest.approx((0.675, 0.675 - half, 0.675 + half))
    assert t_interval(v, bounds=(0, 0.8))[2] == 0.8
    assert math.isnan(t_interval([0.3])[1]) and t_interval([0.3])[0] == 0.3
    assert t_interval([1.0, np.inf])[0] == np.inf


def test_median_interval_is_the_sign_test_interval():
    assert median_rank(5) == 0 and median_rank(6) == 1 and median_rank(10) == 2
    assert median_rank(20) == 6            # [x_(6), x_(15)]: 95.9 % coverage


def test_median_rank_of_many_seeds_matches_the_float_sum_and_does_not_overflow():
    def by_floats(n):
        best = 0
        for j in range(1, n // 2 + 1):
            if sum(math.comb(n, i) for i in range(j, n - j + 1)) / 2.0**n >= 0.95:
                best = j
            else:
                break
        return best

    assert [median_rank(n) for n in range(1, 120)] == [by_floats(n) for n in range(1, 120)]
    n = 20000                              # 2.0**n overflows; the normal approximation holds
    j = median_rank(n)
    assert abs(j - (n / 2 - 1.96 * math.sqrt(n) / 2)) <= 2
    v = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 10.0])
    assert median_interval(v) == (5.5, 2.0, 9.0)
    med, lo, hi = median_interval([1.0, 2.0, np.nan])
    assert med == 1.5 and math.isnan(lo) and math.isnan(hi)
    assert median_interval([1.0, 2, 3, 4, 5, np.inf])[2] == np.inf


@pytest.mark.parametrize("n", [6, 10, 15, 30])
def test_median_interval_coverage_by_simulation(n):
    rng = np.random.default_rng(n)
    x = rng.lognormal(size=(4000, n))       # true median 1
    j = median_rank(n)
    s = np.sort(x, axis=1)
    covered = (s[:, j - 1] <= 1) & (s[:, n - j] >= 1)
    assert covered.mean() >= 0.94
