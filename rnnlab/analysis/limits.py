"""The limit map: solved within a training budget, and the longest dependency learned.

A sweep over sequence length T (the axis ``over``, by default ``task.seq_len``) whose runs train
for S steps answers every budget B <= S at once: a run is *solved within B steps* when its
``steps_to_solve`` (the first logged step at which the task's criterion held on the training
batch and on the held-out set) is at most B, as if training had stopped at its first success.
Budgets are therefore multiples of ``log_every``; by default S, S/2, S/4, ... (six at most, none
below ``log_every``), so that the map reads on a log scale of the budget.

Two tables, both with the swept keys of the folder (except the seed) as their leading columns:

* :func:`budget_table`, one row per grid point and budget: ``n`` runs (failed runs excluded),
  ``solved`` within B with its Wilson 95 % interval ``solved_lo``, ``solved_hi``;
* :func:`limit_table`, one row per setting (the keys without ``over``) and budget: the *limit*,
  the largest T solved with probability at least 1/2, with a 95 % interval, and its ``gain``
  since the setting's previous (smaller) budget: with budgets that double, a constant gain means
  a limit growing with log(steps), a doubling one a limit growing linearly, a gain near 0
  saturation (NaN at the first budget and where either limit is censored).

The limit, for the solved fractions p_k at the grid T_1 < ... < T_K of one setting:

1. p is made non-increasing in T by pooling adjacent violators (weighted by the runs of each
   point): a longer dependency is never easier, and the pooled fractions use every seed;
2. ``limit`` is where the pooled curve, linear between grid points in log T, falls through 1/2;
3. ``limit_lo`` and ``limit_hi`` are where the Wilson lower and upper bounds of the pooled
   fractions fall through 1/2. Each bound holds pointwise with 95 % coverage; the simulation in
   ``tests/test_limits.py`` measures the coverage of the resulting interval on a known curve.

``censored`` is ``"none"`` when the crossing lies inside the grid. When the curve never falls
below 1/2 inside the grid the limit is *censored above* (``limit`` is the longest T of the grid
and ``censored`` is ``"above"``: the limit lies beyond it); when it is below 1/2 already at the
shortest T it is *censored below* (``"below"``). Bounds that leave the
grid are infinite (``limit_hi``) or 0 (``limit_lo``).

The gradient beside the limit (needs the folder's gradient norms), for the table to say whether
the error signal at the limit has measurably vanished:

* ``horizon_0``, ``horizon_B``: the mean gradient horizon (the largest lag at which
  ||dE/ds_t|| >= 1e-3 ||dE/ds_T||, :mod:`rnnlab.analysis.summarize`) of the setting's runs at its
  longest T, at initialisation and after B steps; ``horizon_0_censored``, ``horizon_B_censored``:
  the fraction of those runs whose horizon the sequence cut off (the horizon is then a lower bound);
* ``ratio_0``, ``ratio_B``: the mean log10(||dE/ds_1|| / ||dE/ds_T||) of the runs at the grid T
  nearest the limit (in log T), at initialisation and after B steps: how many decades the error
  lost over the whole limit-length sequence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rnnlab.analysis.stats import wilson
from rnnlab.errors import UserError

OVER = "task.seq_len"
#: At most this many default budgets: S, S/2, ..., S/2^(MAX_BUDGETS - 1).
MAX_BUDGETS = 6
#: The probability of success that defines the limit.
LEVEL = 0.5

BUDGET_COLUMNS = ["budget", "n", "solved", "solved_lo", "solved_hi"]
LIMIT_COLUMNS = ["budget", "limit", "limit_lo", "limit_hi", "censored", "gain", "largest_solved",
                 "horizon_0", "horizon_0_censored", "horizon_B", "horizon_B_censored",
                 "ratio_0", "ratio_B"]


def budget_columns(keys: Sequence[str]) -> list[str]:
    """The columns of a :func:`budget_table` over runs swept on ``keys``."""
    return list(keys) + BUDGET_COLUMNS


def limit_columns(keys: Sequence[str], over: str = OVER) -> list[str]:
    """The columns of a :func:`limit_table` over runs swept on ``keys`` (the setting's keys are
    those other than ``over``)."""
    return [k for k in keys if k != over] + LIMIT_COLUMNS


def default_budgets(steps: int, log_every: int) -> list[int]:
    """S, S/2, S/4, ... rounded down to multiples of ``log_every``, none below it, ascending.

    >>> default_budgets(8000, 50)
    [250, 500, 1000, 2000, 4000, 8000]
    """
    if steps < 1 or log_every < 1:
        raise ValueError(f"default_budgets: steps {steps} and log_every {log_every} must be >= 1")
    out = []
    for k in range(MAX_BUDGETS):
        b = steps if k == 0 else (steps >> k) // log_every * log_every
        if b < min(log_every, steps) or b in out:
            break
        out.append(int(b))
    return sorted(out)


def _keys(runs: pd.DataFrame, over: str) -> list[str]:
    keys = [c for c in runs.columns if "." in str(c)]
    if over not in keys:
        raise UserError(f"cannot map the limit over {over!r}: it is not a swept axis of these "
                        f"runs; swept: {', '.join(keys) or 'none'}")
    return keys


def budget_table(runs: pd.DataFrame, budgets: Sequence[int], over: str = OVER) -> pd.DataFrame:
    """Solved within each budget, per grid point: the swept keys, then :data:`BUDGET_COLUMNS`.

    ``runs``: the runs table (``readers.load_runs``); failed runs count nowhere. Rows are sorted
    by the keys, then the budget."""
    budgets = sorted({int(b) for b in budgets})
    if not budgets or budgets[0] < 0:
        raise UserError(f"budgets: got {budgets}; allowed: one or more steps >= 0")
    keys = _keys(runs, over)
    ok = runs[runs["status"].astype(str) != "failed"] if "status" in runs else runs
    first = pd.to_numeric(ok["steps_to_solve"], errors="coerce").to_numpy(dtype=float)
    rows = []
    for key, g in ok.assign(_first=first).groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        f = g["_first"].to_numpy(dtype=float)
        for b in budgets:
            k = int(np.sum(f <= b))                     # NaN (never solved) compares False
            lo, hi = wilson(k, len(f))
            rows.append((*key, b, len(f), k / len(f) if len(f) else math.nan, lo, hi))
    out = pd.DataFrame(rows, columns=budget_columns(keys))
    for c in keys:
        out[c] = out[c].astype(runs[c].dtype)
    out["n"] = out["n"].astype(np.int64)
    out["budget"] = out["budget"].astype(np.int64)
    return _in_order(out, keys + ["budget"])


def pool_adjacent_violators(p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The non-increasing sequence closest to ``p`` in weighted least squares (weights ``w``)."""
    blocks: list[list[float]] = []                       # [mean, weight, length]
    for v, wt in zip(p, w, strict=True):
        blocks.append([float(v), float(wt), 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            m2, w2, l2 = blocks.pop()
            m1, w1, l1 = blocks.pop()
            wt_sum = w1 + w2
            blocks.append([(m1 * w1 + m2 * w2) / wt_sum if wt_sum > 0 else (m1 + m2) / 2,
                           wt_sum, l1 + l2])
    return np.concatenate([np.full(int(n), m) for m, _, n in blocks])


def crossing(T: np.ndarray, p: np.ndarray, level: float = LEVEL) -> tuple[float, str]:
    """Where the non-increasing ``p`` over ascending ``T`` falls through ``level``, linear in
    log T between grid points: (T*, "none") inside the grid; (T_K, "above") when p stays >= level;
    (T_1, "below") when p < level already at T_1."""
    above = np.flatnonzero(p >= level)
    if above.size == 0:
        return float(T[0]), "below"
    k = int(above[-1])
    if k == len(T) - 1:
        return float(T[-1]), "above"
    x0, x1 = math.log(T[k]), math.log(T[k + 1])
    frac = (p[k] - level) / (p[k] - p[k + 1])
    return float(math.exp(x0 + frac * (x1 - x0))), "none"


def estimate_limit(T, solved, n, level: float = LEVEL) -> dict:
    """The limit of one setting from its grid: ``T`` ascending, ``solved`` the counts of solved
    runs and ``n`` the runs at each T. Returns limit, limit_lo, limit_hi, censored and
    largest_solved (the longest T whose own fraction is >= level; NaN when none)."""
    T = np.asarray(T, dtype=float)
    k = np.asarray(solved, dtype=float)
    n = np.asarray(n, dtype=float)
    if T.size == 0 or np.any(np.diff(T) <= 0) or np.any(n <= 0) or np.any(k > n):
        raise ValueError("estimate_limit: T must ascend strictly, n > 0 and solved <= n")
    p = pool_adjacent_violators(k / n, n)
    # Wilson bounds of the pooled fractions: a pooled block shares its runs
    lo = np.empty_like(p)
    hi = np.empty_like(p)
    start = 0
    while start < len(p):
        end = start
        while end + 1 < len(p) and p[end + 1] == p[start]:
            end += 1
        block_n = n[start:end + 1].sum()
        lo[start:end + 1], hi[start:end + 1] = wilson(p[start] * block_n, block_n)
        start = end + 1
    limit, censored = crossing(T, p, level)
    t_lo, c_lo = crossing(T, lo, level)
    t_hi, c_hi = crossing(T, hi, level)
    own = np.flatnonzero(k / n >= level)
    return {
        "limit": limit,
        "limit_lo": 0.0 if c_lo == "below" else t_lo,
        "limit_hi": math.inf if c_hi == "above" else t_hi,
        "censored": censored,
        "largest_solved": float(T[own[-1]]) if own.size else math.nan,
    }


def limit_table(budgets: pd.DataFrame, over: str = OVER, grad=None) -> pd.DataFrame:
    """One row per setting and budget: the setting's keys, then :data:`LIMIT_COLUMNS`.

    ``budgets``: a :func:`budget_table`. ``grad``: a function ``step -> per-run gradient
    statistics`` (``summarize.run_gradient_stats`` of the folder's norms at that step, indexed
    by run_id) and the runs table, as ``(stats_at, runs)``; without it the gradient columns are
    NaN."""
    keys = [c for c in budgets.columns if c not in BUDGET_COLUMNS]
    if over not in keys:
        raise UserError(f"cannot map the limit over {over!r}: not a column of the budget table")
    setting = [c for c in keys if c != over]
    rows = []
    groups = budgets.groupby(setting + ["budget"], sort=True, dropna=False) if setting else \
        budgets.groupby(["budget"], sort=True)
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        g = g.sort_values(over)
        g = g[g["n"] > 0]
        est = estimate_limit(g[over].to_numpy(dtype=float),
                             np.rint(g["solved"].to_numpy() * g["n"].to_numpy()),
                             g["n"].to_numpy())
        budget = int(key[-1])
        grads = _gradient_columns(grad, dict(zip(setting, key[:-1], strict=True)), over,
                                  g[over].to_numpy(dtype=float), est["limit"], budget)
        rows.append((*key, est["limit"], est["limit_lo"], est["limit_hi"], est["censored"],
                     math.nan, est["largest_solved"], *grads))
    out = pd.DataFrame(rows, columns=limit_columns(keys, over))
    gain = np.full(len(out), np.nan)
    for _, g in (out.groupby(setting, sort=False, dropna=False) if setting else [((), out)]):
        idx = g.sort_values("budget").index.to_numpy()
        for before, now in zip(idx[:-1], idx[1:], strict=True):
            if out.at[before, "censored"] == "none" and out.at[now, "censored"] == "none":
                gain[now] = out.at[now, "limit"] - out.at[before, "limit"]
    out["gain"] = gain
    for c in setting:
        out[c] = out[c].astype(budgets[c].dtype)
    out["budget"] = out["budget"].astype(np.int64)
    return _in_order(out, setting + ["budget"])


def _in_order(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows in the summary's order: by the keys, a null setting first."""
    return table.sort_values(keys, na_position="first", kind="mergesort").reset_index(drop=True)


def _gradient_columns(grad, setting: dict, over: str, T: np.ndarray, limit: float,
                      budget: int) -> tuple[float, ...]:
    if grad is None or T.size == 0:
        return (math.nan,) * 6
    stats_at, runs = grad
    mine = runs
    for c, v in setting.items():
        mine = mine[mine[c].isna()] if _missing(v) else mine[mine[c] == v]
    mine = mine[mine["status"].astype(str) != "failed"]
    longest = mine[mine[over] == T[-1]]["run_id"].astype(str)
    nearest_T = T[int(np.argmin(np.abs(np.log(T) - math.log(max(limit, 1e-300)))))]
    nearest = mine[mine[over] == nearest_T]["run_id"].astype(str)

    def mean(step, ids, column):
        s = stats_at(step)
        v = s[column].reindex(ids).to_numpy(dtype=float) if len(s) else np.array([])
        v = v[np.isfinite(v)]
        return float(v.mean()) if v.size else math.nan

    return (mean(0, longest, "horizon"), mean(0, longest, "horizon_censored"),
            mean(budget, longest, "horizon"), mean(budget, longest, "horizon_censored"),
            mean(0, nearest, "grad_ratio"), mean(budget, nearest, "grad_ratio"))


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


# ------------------------------------------------------------------------------- a folder


def folder_budgets(out: Path) -> list[int]:
    """The default budgets of a results folder, from its experiment's steps and log_every."""
    from rnnlab.results.readers import load_manifest

    train = (load_manifest(out).get("experiment") or {}).get("train") or {}
    steps, every = train.get("steps"), train.get("log_every")
    if not isinstance(steps, int) or not isinstance(every, int):
        raise UserError(f"{out}: the manifest does not record train.steps and train.log_every; "
                        "pass the budgets explicitly (--budgets)")
    return default_budgets(steps, every)


def limits_of(out: Path, budgets: Sequence[int] | None = None, over: str = OVER,
              gradients: bool = True,
              runs: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(budget table, limit table) of the results folder ``out``, over its runs or over
    ``runs``, a subset of them (e.g. a figure's filtered runs)."""
    from rnnlab.analysis.summarize import run_gradient_stats
    from rnnlab.results.readers import load_grad_norms, load_runs

    out = Path(out)
    runs = load_runs(out) if runs is None else runs
    if budgets is None:
        budgets = folder_budgets(out)
    if "train.steps" in runs.columns:
        raise UserError(f"{out}: train.steps is swept; the limit map reads every budget from one "
                        "run's steps_to_solve, so sweep the budget by --budgets instead")
    table = budget_table(runs, budgets, over)
    grad = None
    if gradients:
        cache: dict[int, pd.DataFrame] = {}

        def stats_at(step: int) -> pd.DataFrame:
            if step not in cache:
                cache[step] = run_gradient_stats(load_grad_norms(out, step=step),
                                                 step=step).set_index("run_id")
            return cache[step]

        runs_ok = runs.assign(run_id=runs["run_id"].astype(str))
        grad = (stats_at, runs_ok)
    return table, limit_table(table, over, grad)
