"""The decay plot: ``||dE/ds_t||`` against the lag, with the bound of Pascanu et al. (2013).

One line per ``by`` value (geometric mean over seeds, band min to max), the dashed bound
``(gamma sigma)^k ||dE/ds_T||`` where it applies, and why not where it does not. When the runs
stored the Lyapunov analysis at the step (``train.lyapunov``), a dotted line of the same colour
shows ``10^(lambda_1 k) ||dE/ds_T||``, lambda_1 the seeds' mean top exponent in decades per step,
for every cell.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rnnlab.plot.data import MIXED, Note, PlotData, value_text
from rnnlab.plot.figure import add_key, panel_figure, suptitle, value_colours
from rnnlab.plot.gradients import step_text, zero_cause

#: Largest |phi'| of each activation: the gamma of Pascanu et al.'s bound.
GAMMA = {"tanh": 1.0, "relu": 1.0, "identity": 1.0, "sigmoid": 0.25}


def _default_loss_at(task: str | None) -> str | None:
    from rnnlab.tasks import MIN_SEQ_LEN, make_task

    try:
        return make_task(task, MIN_SEQ_LEN.get(task, 1) + 10).loss_at
    except (ValueError, TypeError, KeyError):
        return None


def decay_bound_factor(res: PlotData, rows: pd.DataFrame, step: int) -> tuple[float | None, str]:
    """gamma * sigma_max for the bound and ``"gamma = ..."``, or None and why not."""
    cell = res.setting(rows, "model.cell")
    if cell != "rnn":
        return None, f"no bound for cell {value_text(cell) if cell is not MIXED else 'mixed'}"
    act = res.setting(rows, "model.activation")
    gamma = GAMMA.get(act) if act is not MIXED else None
    if gamma is None:
        return None, f"no bound for activation {act}"
    loss_at = res.setting(rows, "train.loss_at")
    if loss_at is None:
        task = res.setting(rows, "task.name")
        loss_at = _default_loss_at(task) if task is not MIXED else None
    if loss_at != "last":
        return None, "no bound: the loss is not at the last step only"
    steps = res.setting(rows, "train.steps")
    if step == 0:
        column = "sigma_start"
    elif steps is not MIXED and steps is not None and step == steps:
        column = "sigma_end"
    else:
        return None, f"no bound at step {step}: the runs record sigma_max(Ws) only at the " \
                     "first and last step"
    if column not in rows.columns:
        return None, f"no bound: the runs lack {column}"
    sigma = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(sigma).all() or not (sigma > 0).all():
        return None, "no bound: sigma_max(Ws) not finite"
    return gamma * float(sigma.max()), f"gamma = {gamma:g}"


def plot_decay(res, by_axis, by_values, facets, data, step, say: Note):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    colours, mappable = value_colours(res, by_axis, by_values)
    lambda1 = _lambda1(res, step)
    any_lyap = False
    Lmax = max(L for _, groups in data for c, _ in groups.values() for L in c.lengths)
    fig, axes, left, bottom, corner = panel_figure([pv for pv, _ in data], facets, (4.3, 3.3),
                                              (7.5, 4.8), sharey=True, extra_w=1.8, extra_h=0.6)
    any_bound = any_zero = any_bad = False
    reasons = set()
    gammas = set()
    nseeds = set()
    lows, highs = [], []
    for i, (ax, (pv, groups)) in enumerate(zip(axes, data, strict=True)):
        for bv in by_values:
            if bv not in groups:
                continue
            c, rows = groups[bv]
            nseeds.add(c.n)
            colour = colours[bv]
            lag = np.arange(len(c.mean))
            y = np.where(np.isfinite(c.mean), 10.0 ** np.where(np.isfinite(c.mean), c.mean, 0),
                         np.nan)
            label = res.label(by_axis, bv, names=False) if by_axis else "all runs"
            (line,) = ax.plot(lag, y, color=colour, lw=1.8, label=label,
                              marker="o" if len(lag) <= 25 else None, ms=3.2)
            line.set_gid("mean")
            if c.n > 1:
                ax.fill_between(lag, c.lo, c.hi, color=colour, alpha=0.18, lw=0)
            lows.append(np.nanmin(c.lo) if np.isfinite(c.lo).any() else np.nan)
            highs.append(np.nanmax(c.hi) if np.isfinite(c.hi).any() else np.nan)
            if (c.zero & ~c.bad).any():
                any_zero = True
                z = lag[c.zero & ~c.bad]
                ax.plot(z, np.zeros_like(z, dtype=float), "v", color=colour, ms=6, clip_on=False,
                        transform=ax.get_xaxis_transform(), gid="zero")
            if c.bad.any():
                any_bad = True
                b = lag[c.bad]
                ax.plot(b, np.ones_like(b, dtype=float), "x", color=colour, ms=6, clip_on=False,
                        transform=ax.get_xaxis_transform(), gid="nonfinite")
            factor, why = decay_bound_factor(res, rows, step)
            anchor = c.mean[0] if len(c.mean) else np.nan
            if factor is not None and np.isfinite(anchor):
                (b,) = ax.plot(lag, 10.0 ** (anchor + lag * math.log10(factor)), "--",
                               color=colour, lw=1.1, alpha=0.9)
                b.set_gid("bound")
                any_bound = True
                gammas.add(why)
            elif why and factor is None:
                reasons.add(why)
            lam = lambda1.reindex(rows["run_id"].astype(str)).to_numpy(dtype=float)
            if np.isfinite(lam).any() and np.isfinite(anchor):
                (ly,) = ax.plot(lag, 10.0 ** (anchor + lag * float(np.nanmean(lam))), ":",
                                color=colour, lw=1.4)
                ly.set_gid("lambda1")
                any_lyap = True
        ax.set_yscale("log")
        if bottom[i]:
            ax.set_xlabel("lag T − t (time steps back from the loss at t = T)")
        ax.set_xlim(-0.5, max(Lmax - 0.5, 0.5))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=10))
        ax.grid(True, which="major", color="0.9", lw=0.6)
        if facets:
            ax.set_title(res.label(tuple(k for a in facets for k in a), pv), fontsize=10)
    for ax, first in zip(axes, left, strict=True):
        if first:
            ax.set_ylabel(r"$\|\partial E/\partial s_t\|$  (log scale)")
    lo = np.nanmin(lows) if np.isfinite(lows).any() else None
    hi = np.nanmax(highs) if np.isfinite(highs).any() else None
    if lo is not None and hi is not None:
        for ax in axes:
            ax.set_ylim(lo / 3.0, hi * 3.0)
    for why in sorted(reasons):
        say(why)
    groups = [Line2D([], [], color=colours[bv], lw=1.8,
                     label=res.label(by_axis, bv, names=False) if by_axis else "all runs")
              for bv in by_values]
    n = max(nseeds)
    handles = []
    handles.append(Patch(facecolor="0.5", alpha=0.3,
                         label=f"mean of log over {n} seed{'s' if n != 1 else ''}; band min–max"))
    if any_bound:
        sigma_at = "at init" if step == 0 else f"at step {step}"
        gamma = gammas.pop().replace("gamma", "γ") if len(gammas) == 1 else "γ = max|φ′|"
        handles.append(Line2D([], [], color="0.2", ls="--", lw=1.1,
                              label="bound $(\\gamma\\sigma)^{lag}\\,\\|\\partial E/\\partial "
                                    f"s_T\\|$\nPascanu et al. 2013, §2.1\n"
                                    f"σ = σ_max(W_s) {sigma_at}, {gamma}"))
    if any_lyap:
        handles.append(Line2D([], [], color="0.2", ls=":", lw=1.4,
                              label="$10^{\\lambda_1 lag}\\,\\|\\partial E/\\partial s_T\\|$, "
                                    "λ₁ the top\nLyapunov exponent (mean over seeds)"))
    if any_zero:
        handles.append(Line2D([], [], color="0.3", ls="none", marker="v",
                              label=f"ds = 0 in a seed ({zero_cause(res)})"))
    if any_bad:
        handles.append(Line2D([], [], color="0.3", ls="none", marker="x",
                              label="ds not finite in a seed"))
    add_key(fig, res, by_axis, mappable, axes, corner, groups, handles)
    suptitle(fig, res, f"decay of ||dE/ds_t|| with lag at {step_text(step)}", res.runs)
    return fig



def _lambda1(res: PlotData, step: int) -> pd.Series:
    """Each run's top Lyapunov exponent at ``step`` in decades per step (empty without the
    analysis), indexed by run_id."""
    from rnnlab.analysis.lyapunov_stats import run_lyapunov_stats
    from rnnlab.results.readers import load_lyapunov

    ids = res.runs["run_id"].astype(str).tolist()
    stats = run_lyapunov_stats(load_lyapunov(res.folder, run_ids=ids, step=step), step=step)
    return stats.set_index("run_id")["lambda1"]
