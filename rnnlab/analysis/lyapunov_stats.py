"""The Lyapunov analysis of a sweep (``train.lyapunov``): its stored table and per-run statistics.

Stored table (results folder ``lyapunov/``, one part file per batch, long format), one row per

    run_id, step, kind, index, value

with the kinds

* ``lambda``: the Lyapunov exponent lambda_index (index 1..m, descending) of the trajectory of
  that training step's batch, in nats per step (mean over the batch's sequences; see
  :mod:`rnnlab.engine.lyapunov`); divide by ln 10 for decades per step;
* ``log_sv``: mean over the sequences of log sigma_index, the singular values (index 1..H,
  descending) of the Jacobian product over the last k steps before the loss step (its rows of s,
  through which the loss reaches the state), in nats;
* ``window``: k itself (index 0), so that ``log_sv / k`` is a rate per step.

Per-run statistics (:func:`run_lyapunov_stats`), all in decades per step like the measured
``decay`` of ``rnnlab.analysis.summarize`` and Pascanu's bound, at one training step (by default
each run's first recorded step, initialisation):

* ``lambda1``: the largest exponent;
* ``lambda_sum``: the sum of the m exponents (the growth rate of m-dimensional volumes);
* ``sv_mean``: the mean over i of log10 sigma_i(P_k) / k (how far the product's spectrum is from
  isometry: 0 for an orthogonal product);
* ``decay_gap``: ``decay - lambda1``, the measured decay of ||dE/ds_t|| minus lambda1: how much of
  the decay the top exponent does not explain (negative: the error decays faster than the
  fastest-growing direction allows, as when it is not aligned with it).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from rnnlab.engine.lyapunov import lyapunov

KINDS = ("lambda", "log_sv", "window")
STAT_COLUMNS = ["lambda1", "lambda_sum", "sv_mean", "decay_gap"]
#: The per-run statistics the summary table reports when a folder holds the analysis.
SUMMARIZED = ["lambda1", "lambda_sum", "decay_gap"]
#: The summary's columns for them: each group mean with its 95 % t interval.
SUMMARY_COLUMNS = [c + suffix for c in SUMMARIZED for suffix in ("", "_lo", "_hi")]
LN10 = float(np.log(10.0))


def analyse_bytes(B: int, H: int, G: int, D: int, itemsize: int) -> int:
    """Bytes one run's analysis holds at the peak: the product's D columns carried through a
    step (P, the gate products A V with G rows, and the new P) for each of B sequences."""
    return itemsize * B * D * (2 * D + G + H)


def analyse(params: dict, x: np.ndarray, *, cell: str, activation: str, exponents: int,
            window: int, budget: int):
    """``engine.lyapunov`` over a run axis, a few runs at a time so that the arrays of one call
    stay under ``budget`` bytes (the product over the window holds D x D per sequence: 270 MB for
    64 lstm runs of 32 sequences at H = 64 at once). Each run's numbers are those it has alone,
    so the chunking changes none. Returns exponents (R, m), log_sv (R, H) or None, and k."""
    R, _, B, _ = x.shape
    H, G = params["Ws"].shape[-2:]
    D = 2 * H if cell == "lstm" else H
    per_run = analyse_bytes(B, H, G, D if window else exponents, x.dtype.itemsize)
    chunk = int(max(1, min(R, budget // max(per_run, 1))))
    lam, sv = [], []
    for a in range(0, R, chunk):
        r = slice(a, min(a + chunk, R))
        res = lyapunov({key: v[r] for key, v in params.items() if key in ("Wx", "Ws", "b", "bn")},
                       x[r], cell=cell, activation=activation, exponents=exponents, window=window)
        lam.append(res.exponents)
        sv.append(res.log_sv)
    return SimpleNamespace(exponents=np.concatenate(lam),
                           log_sv=None if sv[0] is None else np.concatenate(sv), k=window)


def lyapunov_table(run_ids, step: int, mask: np.ndarray, res) -> pd.DataFrame:
    """The stored rows of one training step: ``res`` an ``engine.lyapunov.LyapunovResult`` with a
    run axis, ``mask`` (R,) the runs to record, ``run_ids`` (R,)."""
    ids = np.asarray(run_ids, dtype=object)[mask]
    n = len(ids)
    parts = []
    lam = np.asarray(res.exponents)[mask]
    m = lam.shape[1]
    parts.append(("lambda", np.repeat(ids, m), np.tile(np.arange(1, m + 1), n), lam.ravel()))
    if res.log_sv is not None:
        sv = np.asarray(res.log_sv)[mask]
        D = sv.shape[1]
        parts.append(("log_sv", np.repeat(ids, D), np.tile(np.arange(1, D + 1), n), sv.ravel()))
    parts.append(("window", ids, np.zeros(n, dtype=np.int64), np.full(n, float(res.k))))
    return pd.DataFrame({
        "run_id": np.concatenate([p[1] for p in parts]),
        "step": np.full(sum(len(p[1]) for p in parts), step, dtype=np.int64),
        "kind": np.concatenate([np.full(len(p[1]), p[0], dtype=object) for p in parts]),
        "index": np.concatenate([p[2] for p in parts]).astype(np.int64),
        "value": np.concatenate([p[3] for p in parts]).astype(np.float64),
    })


def run_lyapunov_stats(lyap: pd.DataFrame | None, grad_stats: pd.DataFrame | None = None,
                       step: int | None = None) -> pd.DataFrame:
    """One row per run (sorted by run_id) with ``run_id``, ``step`` and :data:`STAT_COLUMNS`.

    ``lyap``: the stored table (``readers.load_lyapunov``); ``grad_stats``: the runs' gradient
    statistics (``summarize.run_gradient_stats``, for ``decay``; NaN gaps without it). ``step``
    selects the training step, by default each run's first recorded one. The gap is taken only
    where both come from the same training step.
    """
    cols = ["run_id", "step", *STAT_COLUMNS]
    if lyap is None or len(lyap) == 0:
        return pd.DataFrame({c: pd.Series([], dtype="str" if c == "run_id" else
                                          ("int64" if c == "step" else float)) for c in cols})
    g = lyap
    if step is None:
        g = g[g["step"] == g.groupby("run_id")["step"].transform("min")]
    else:
        g = g[g["step"] == step]
    rows = []
    for run_id, sub in g.groupby("run_id", sort=True):
        lam = sub.loc[sub["kind"] == "lambda"].sort_values("index")["value"].to_numpy()
        sv = sub.loc[sub["kind"] == "log_sv", "value"].to_numpy()
        k = sub.loc[sub["kind"] == "window", "value"].to_numpy()
        rows.append({
            "run_id": str(run_id), "step": int(sub["step"].iloc[0]),
            "lambda1": lam[0] / LN10 if len(lam) else np.nan,
            "lambda_sum": lam.sum() / LN10 if len(lam) else np.nan,
            "sv_mean": sv.mean() / LN10 / k[0] if len(sv) and len(k) and k[0] > 0 else np.nan,
        })
    out = pd.DataFrame(rows, columns=cols[:-1])
    gap = np.full(len(out), np.nan)
    if grad_stats is not None and len(grad_stats) and len(out):
        gs = grad_stats.set_index("run_id")
        decay = gs["decay"].reindex(out["run_id"]).to_numpy(dtype=float)
        same = gs["step"].reindex(out["run_id"]).to_numpy(dtype=float) == out["step"].to_numpy()
        gap = np.where(same, decay - out["lambda1"].to_numpy(dtype=float), np.nan)
    out["decay_gap"] = gap
    out["run_id"] = out["run_id"].astype("str")
    out["step"] = out["step"].astype(np.int64)
    return out[cols].reset_index(drop=True)


def summary_values(lyap: pd.DataFrame | None, grad_stats: pd.DataFrame | None, ids: pd.Series,
                   failed: np.ndarray, step: int | None = None) -> dict[str, np.ndarray]:
    """Per-run values of :data:`SUMMARIZED` aligned with ``ids`` (NaN for failed runs and
    runs without the analysis); empty when the folder holds no analysis at all, so that the
    summary of a folder without it keeps its columns."""
    if lyap is None or len(lyap) == 0:
        return {}
    stats = run_lyapunov_stats(lyap, grad_stats, step=step).set_index("run_id")
    out = {}
    for c in SUMMARIZED:
        v = stats[c].reindex(ids.astype(str)).to_numpy(dtype=float, copy=True)
        v[failed] = np.nan
        out[c] = v
    return out
