"""The limit map's two figures (:mod:`rnnlab.analysis.limits`).

* ``budget``: the fraction solved within B steps against the sequence length T (log axis), one
  line per budget B (darker for more steps) with its Wilson 95 % band, one panel per setting
  (the swept keys other than ``task.seq_len``, e.g. the noise level);
* ``limit``: the limit (the largest T solved with probability >= 1/2) against the budget, both
  on log axes, one line per setting with its 95 % interval as a band; a limit censored above
  (beyond the longest T of the grid) is drawn as an upward triangle at that T.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rnnlab.analysis.limits import LIMIT_COLUMNS, OVER, default_budgets, limits_of
from rnnlab.plot.data import PlotData, groups_of_rows, value_order, value_text
from rnnlab.plot.figure import panel_figure, suptitle


def _tables(res: PlotData, gradients: bool) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The figure's runs as the limit map's (budget table, limit table, setting keys)."""
    train = res.base.get("train") or {}
    budgets = default_budgets(int(train["steps"]), int(train["log_every"]))
    runs = res.runs.copy()
    for key in res.keys:                 # plot data holds python values; the tables want dtypes
        runs[key] = pd.Series([v for v in runs[key]], dtype=object).infer_objects()
    table, limits = limits_of(res.folder, budgets, OVER, gradients=gradients, runs=runs)
    setting = [c for c in limits.columns if c not in LIMIT_COLUMNS]
    return table, limits, setting


def _settings(table: pd.DataFrame, setting: list[str]) -> dict[tuple, pd.DataFrame]:
    """The rows of each setting (the values of the swept keys but the sequence length), in the
    figures' order; a null setting (NaN in the table, e.g. ``train.clip.threshold: null``) is
    one setting like any other (``rows[c] == v`` would never match it)."""
    if not setting:
        return {(): table}
    groups = groups_of_rows(table, setting)
    return {k: groups[k] for k in sorted(groups, key=value_order)}


def _label(res: PlotData, setting: list[str], key: tuple) -> str:
    if not setting:
        return "all runs"
    return ", ".join(f"{res.short.get(k, k)} = {value_text(v)}" for k, v in zip(setting, key,
                                                                          strict=True))


def plot_budget(res: PlotData, say) -> object:
    import matplotlib as mpl

    table, _, setting = _tables(res, gradients=False)
    groups = _settings(table, setting)
    keys = list(groups)
    fig, axes, left, bottom, corner = panel_figure(keys, [tuple(setting)] if setting else [],
                                              (4.3, 3.3), (7.5, 4.8), sharey=True,
                                              extra_w=1.6, extra_h=0.6)
    budgets = sorted(table["budget"].unique())
    cmap = mpl.colormaps["viridis_r"]
    colour = {b: cmap(0.15 + 0.8 * i / max(len(budgets) - 1, 1)) for i, b in enumerate(budgets)}
    xs = sorted(table[OVER].unique())
    for ax, key in zip(axes, keys, strict=True):
        rows = groups[key]
        for b in budgets:
            r = rows[rows["budget"] == b].sort_values(OVER)
            x = r[OVER].to_numpy(dtype=float)
            fill = ax.fill_between(x, r["solved_lo"], r["solved_hi"], color=colour[b],
                                   alpha=0.07, lw=0)
            fill.set_gid("band")
            (line,) = ax.plot(x, r["solved"], color=colour[b], marker="o", ms=3.5, lw=1.5,
                              label=f"{b} steps")
            line.set_gid("mean")
        ax.axhline(0.5, color="0.5", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{int(x)}" for x in xs], fontsize=7)
        ax.minorticks_off()
        ax.set_ylim(-0.04, 1.04)
        ax.grid(True, color="0.9", lw=0.6)
        if setting:
            ax.set_title(_label(res, setting, key), fontsize=10)
        if bottom[axes.index(ax)]:
            ax.set_xlabel("sequence length T")
    for ax, first in zip(axes, left, strict=True):
        if first:
            ax.set_ylabel("solved within the budget")
    n = int(table["n"].max()) if len(table) else 0
    handles, labels = axes[0].get_legend_handles_labels()
    corner.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.03, 1.0), fontsize=8,
                  title="budget", title_fontsize=8, frameon=False)
    corner.text(1.05, 0.28, f"bands: 95% Wilson\ninterval over\n{n} seeds\n\ndotted: 1/2\n"
                "(the limit)", transform=corner.transAxes, fontsize=7, color="0.35", va="top")
    suptitle(fig, res, "solved within a training budget against sequence length", res.runs)
    return fig


def plot_limit(res: PlotData, say) -> object:
    from matplotlib.figure import Figure

    _, limits, setting = _tables(res, gradients=True)
    groups = _settings(limits, setting)
    keys = list(groups)
    fig = Figure(figsize=(8.4, 4.6), layout="constrained")
    ax = fig.add_subplot()
    import matplotlib as mpl

    cmap = mpl.colormaps["tab10"]
    lengths = res.runs[OVER].astype(float)
    bottom, top = float(lengths.min()), float(lengths.max())
    seen: dict[bytes, tuple] = {}
    for i, key in enumerate(keys):
        rows = groups[key].sort_values("budget")
        same = rows[["budget", "limit", "limit_lo", "limit_hi", "censored"]].to_numpy(str)
        twin = seen.setdefault(same.tobytes(), key)
        if twin != key:               # drawn under the other's line: say so
            say(f"{_label(res, setting, key)} has the same limits as "
                f"{_label(res, setting, twin)}: its line lies under the other's")
        b = rows["budget"].to_numpy(dtype=float)
        lim = rows["limit"].to_numpy(dtype=float)
        lo = np.maximum(rows["limit_lo"].to_numpy(dtype=float), 1.0)
        hi = np.minimum(rows["limit_hi"].to_numpy(dtype=float), top * 1.25)
        below = (rows["censored"] == "below").to_numpy()
        above = (rows["censored"] == "above").to_numpy()
        c = cmap(i % 10)
        fill = ax.fill_between(b, lo, hi, color=c, alpha=0.15, lw=0)
        fill.set_gid("band")
        shown = np.where(below, np.nan, lim)
        (line,) = ax.plot(b, shown, color=c, marker="o", ms=4, lw=1.6,
                          label=_label(res, setting, key))
        line.set_gid("mean")
        h = (float(rows["horizon_0"].iloc[0]), float(rows["horizon_0_censored"].iloc[0]))
        if np.isfinite(h[0]):
            (hline,) = ax.plot([b[0], b[-1]], [h[0], h[0]], color=c, ls=":", lw=1.2)
            hline.set_gid("horizon")
            if h[1] > 0:
                say(f"the horizon of {_label(res, setting, key)} is a lower bound (cut off by T)")
        if above.any():
            ax.plot(b[above], lim[above], ls="none", marker="^", ms=8, color=c,
                    markerfacecolor="white")
        if below.any():               # not even the shortest T solved: a mark at the grid's foot
            ax.plot(b[below], np.full(int(below.sum()), bottom), ls="none", marker="v", ms=8,
                    color=c, markerfacecolor="white")
    ax.axhline(top, color="0.6", ls="--", lw=0.8)
    ax.text(float(limits["budget"].max()), top * 0.93, f"longest T of the grid ({int(top)})",
            fontsize=7, color="0.4", ha="right", va="top")
    ax.axhspan(8, 10, color="0.85", alpha=0.6, lw=0)
    ax.text(float(limits["budget"].max()), 9, "the lecture's 8-10 steps", fontsize=7,
            color="0.35", ha="right", va="center")
    ax.set_xscale("log")
    ax.set_yscale("log")
    budgets = sorted(limits["budget"].unique())
    ax.set_xticks(budgets)
    ax.set_xticklabels([str(int(b)) for b in budgets])
    ax.minorticks_off()
    ticks = [t for t in (2, 5, 10, 20, 50, 100, 200, 500) if t <= top * 1.3]
    ax.set_yticks(ticks)
    ax.set_yticklabels([str(t) for t in ticks])
    ax.set_xlabel("training budget (steps)")
    ax.set_ylabel("limit: largest T solved with p >= 1/2")
    ax.grid(True, color="0.9", lw=0.6)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              title="band: 95% interval\ntriangle up: above the grid\ntriangle down: "
                    "below it\ndotted: gradient horizon\nat initialisation", title_fontsize=7)
    suptitle(fig, res, "the limit of learning against the training budget", res.runs)
    if math.isfinite(top):
        ax.set_ylim(min(1.5, bottom * 0.8), top * 1.3)
    return fig
