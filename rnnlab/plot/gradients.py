"""Gradient norms per group of runs: the data of the heatmap and decay figures.

:func:`gradient_panels` loads ``||dE/ds_t||`` at one training step, pools facet axes that change
nothing, and returns per panel and per ``by`` value the seed statistics (:class:`_Curve`, in lag
order) with their runs. No matplotlib here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rnnlab.errors import UserError
from rnnlab.plot.data import (
    Note,
    PlotData,
    choose_by,
    facet_axes,
    groups_by,
    groups_of_rows,
    panels_of,
    rows_at,
)


@dataclass
class _Curve:
    """Seed statistics of one group of runs, indexed by lag = T - t (0 = the loss step)."""

    n: int
    mean: np.ndarray       # mean over seeds of log10 ds; -inf if a seed is 0; NaN if not finite
    lo: np.ndarray         # smallest finite positive ds over seeds (NaN if none)
    hi: np.ndarray         # largest finite positive ds over seeds
    zero: np.ndarray       # some seed underflowed to exactly 0
    bad: np.ndarray        # some seed is NaN or inf
    present: np.ndarray    # some seed has this step
    lengths: set

    def same(self, other: _Curve) -> bool:
        return (self.mean.shape == other.mean.shape
                and np.array_equal(self.present, other.present)
                and np.allclose(self.mean, other.mean, rtol=1e-9, atol=1e-12, equal_nan=True))


def _curve(arrays: list[np.ndarray]) -> _Curve:
    """``arrays``: ds of each seed in lag order (index 0 = t = T)."""
    L = max(len(a) for a in arrays)
    D = np.full((len(arrays), L), np.nan)
    P = np.zeros((len(arrays), L), dtype=bool)
    for i, a in enumerate(arrays):
        D[i, : len(a)] = a
        P[i, : len(a)] = True
    with np.errstate(divide="ignore", invalid="ignore"):
        bad = (P & ~np.isfinite(D)).any(axis=0)
        zero = (P & (D == 0)).any(axis=0)
        logs = np.where(P, np.log10(np.where(P, D, 1.0)), np.nan)
        cnt = P.sum(axis=0)
        mean = np.where(P, logs, 0.0).sum(axis=0) / np.maximum(cnt, 1)
        ok = P & np.isfinite(D) & (D > 0)
        lo = np.where(ok, D, np.inf).min(axis=0)
        hi = np.where(ok, D, -np.inf).max(axis=0)
    mean = np.where(bad | (cnt == 0), np.nan, np.where(zero, -np.inf, mean))
    lo = np.where(np.isfinite(lo), lo, np.nan)
    hi = np.where(np.isfinite(hi), hi, np.nan)
    return _Curve(len(arrays), mean, lo, hi, zero, bad, cnt > 0, {len(a) for a in arrays})


def _norms(res: PlotData, step: int, say: Note) -> dict[str, np.ndarray]:
    """ds of every run at ``step``, in lag order; runs without a record there are left out."""
    from rnnlab.results.readers import check_step, load_grad_norms

    ids = res.runs["run_id"].astype(str).tolist()
    g = load_grad_norms(res.folder, run_ids=ids, step=step)
    if len(g) == 0:
        check_step(res.folder, step, ids)
        raise UserError(f"{res.folder} holds no gradient norms for the runs plotted; "
                        "rerun `rnnlab sweep`")
    out = {}
    for run_id, part in g.groupby("run_id", sort=True):
        t = part["t"].to_numpy(dtype=np.int64)
        ds = np.full(int(t.max()), np.nan)
        ds[t - 1] = part["ds"].to_numpy(dtype=float, na_value=np.nan)
        out[str(run_id)] = ds[::-1]
    missing = len(set(ids) - set(out))
    if missing:
        say(f"left out {missing} run(s) with no gradient norms at step {step} "
            "(they diverged before it)")
        res.runs = res.runs[res.runs["run_id"].astype(str).isin(out)].reset_index(drop=True)
    return out


def _pool_identical(res: PlotData, by_axis, facets, curves_of, what: str, say: Note):
    """Drop facet axes whose values give identical curves everywhere (and say so)."""
    kept = list(facets)
    for axis in list(facets):
        others = [k for a in kept if a != axis for k in a] + list(by_axis or ())
        compared = False
        same = True
        for _, rows in groups_by(res, others).items():
            sub = groups_of_rows(rows, list(axis))
            if len(sub) < 2:
                continue
            compared = True
            curves = [curves_of(r) for r in sub.values()]
            if not all(c.same(curves[0]) for c in curves[1:]):
                same = False
                break
        if compared and same:
            kept.remove(axis)
            values = res.values(axis)
            shown = " / ".join(res.label(axis, v, names=False) for v in values)
            text = f"{res.axis_name(axis)} = {shown}"
            res.pooled.append(text)
            say(f"{text} does not change {what}: one panel shows all its values (the runs of "
                f"{res.label(axis, values[0])})")
            res.runs = rows_at(res.runs, axis, values[0]).reset_index(drop=True)
    return kept


def zero_cause(res: PlotData) -> str:
    """Why a norm can be exactly 0: float underflow, or truncated BPTT not reaching that far."""
    tbptt = res.setting(res.runs, "train.tbptt")
    return "float underflow" if tbptt is None else "truncated BPTT or float underflow"


def step_text(step: int) -> str:
    return "initialisation (step 0)" if step == 0 else f"training step {step}"


def gradient_panels(res: PlotData, kind: str, by: str | None, step: int, say: Note):
    """The ``by`` axis, its values, the facet axes and, per panel value in order, the
    curve and runs of each ``by`` value: what :func:`plot_heatmap` and :func:`plot_decay` draw."""
    by_axis = choose_by(res, kind, by)
    norms = _norms(res, step, say)

    def curve_of(rows: pd.DataFrame) -> _Curve:
        return _curve([norms[str(r)] for r in rows["run_id"]])

    facets = facet_axes(res, [by_axis])
    what = f"||dE/ds_t|| at step {step}"
    facets = _pool_identical(res, by_axis, facets, curve_of, what, say)
    panels, order = panels_of(res, facets)
    by_keys = list(by_axis or ())
    by_values = res.values(by_axis) if by_axis else [()]
    data = []
    for pv in order:
        groups = groups_of_rows(panels[pv], by_keys) if by_keys else {(): panels[pv]}
        data.append((pv, {bv: (curve_of(rows), rows) for bv, rows in groups.items()}))
    return by_axis, by_values, facets, data

