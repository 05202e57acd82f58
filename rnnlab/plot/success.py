"""The success plot: solved fraction or held-out accuracy against ``task.seq_len``.

One line per ``by`` value with its 95 % band over seeds (the Wilson interval of the solved
fraction; the t interval of the mean accuracy), lines nudged sideways, the task's chance level
dotted for accuracy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnnlab.errors import UserError
from rnnlab.plot.data import (
    MIXED,
    SEQ_LEN,
    Note,
    PlotData,
    choose_by,
    facet_axes,
    panels_of,
    rows_at,
    value_text,
)
from rnnlab.plot.figure import add_key, panel_figure, suptitle, value_colours
from rnnlab.results.parquet_io import plain_value


def plot_success(res: PlotData, by: str | None, metric: str, say: Note):
    from matplotlib.transforms import offset_copy

    by_axis = choose_by(res, "success", by)
    column = "solved" if metric == "solved" else "accuracy"
    if column not in res.runs.columns:
        raise UserError(f"{res.folder}: the runs have no {column!r} column")
    runs = res.runs.copy()
    x_col = "seq_len" if "seq_len" in runs.columns else SEQ_LEN
    if x_col not in runs.columns:
        runs[x_col] = res.setting(runs, SEQ_LEN)
    runs["_x"] = pd.to_numeric(runs[x_col], errors="coerce")
    if metric == "solved":
        runs["_y"] = np.array([plain_value(v) is not None and bool(v) for v in runs["solved"]],
                              dtype=float)
        diverged = int((runs.get("status", pd.Series(dtype=object)).astype(object)
                        == "diverged").sum())
        if diverged:
            say(f"{diverged} diverged run(s) count as not solved")
    else:
        runs["_y"] = pd.to_numeric(runs["accuracy"], errors="coerce").astype(float)
        if runs["_y"].isna().all():
            raise UserError(f"{res.folder}: no accuracy recorded for these runs (task "
                            f"{value_text(res.setting(runs, 'task.name'))}); use --metric solved")
    res.runs = runs
    seq_axis = next((a for a in res.axes if SEQ_LEN in a), None)
    facets = facet_axes(res, [by_axis, seq_axis])
    panels, order = panels_of(res, facets)
    by_values = res.values(by_axis) if by_axis else [()]
    colours, mappable = value_colours(res, by_axis, by_values)
    xs = sorted(runs["_x"].dropna().unique())
    if len(xs) == 1:
        say(f"task.seq_len has one value ({int(xs[0])}): points instead of lines")
    fig, axes, left, bottom, corner = panel_figure(order, facets, (4.3, 3.3), (7.5, 4.8),
                                              sharey=True, extra_w=1.6, extra_h=0.6)
    markers = "osD^vP*X"
    nseeds = set()
    for ax, pv in zip(axes, order, strict=True):
        rows_panel = panels[pv]
        k = len(by_values)
        for i, bv in enumerate(by_values):
            rows = rows_at(rows_panel, by_axis, bv)
            if len(rows) == 0:
                continue
            stats = rows.groupby("_x")["_y"].agg(["mean", "count", "std"]).sort_index()
            p = stats["mean"].to_numpy(dtype=float)
            n = stats["count"].to_numpy(dtype=float)
            nseeds.update(int(v) for v in n)
            band = np.array([_interval(g.to_numpy(dtype=float), metric)
                             for _, g in rows.groupby("_x")["_y"]])
            x = stats.index.to_numpy(dtype=float)
            dodge = offset_copy(ax.transData, fig=fig, x=(i - (k - 1) / 2) * 3.0, units="points")
            label = res.label(by_axis, bv, names=False) if by_axis else "all runs"
            ok = np.isfinite(band).all(axis=1)
            if ok.any():
                fill = ax.fill_between(x[ok], band[ok, 0], band[ok, 1], color=colours[bv],
                                       alpha=0.15, lw=0, transform=dodge)
                fill.set_gid("band")
            (line,) = ax.plot(x, p, color=colours[bv], marker=markers[i % len(markers)], ms=5,
                              lw=1.6, label=label, transform=dodge)
            line.set_gid("mean")
        if metric == "accuracy":
            chance = _chance(res, rows_panel)
            if chance is not None:
                ax.axhline(chance, color="0.5", ls=":", lw=1, label=f"chance ({chance:g})")
        ax.set_ylim(-0.04, 1.04)
        pad = 0.06 * (xs[-1] - xs[0]) if len(xs) > 1 else 1.0
        ax.set_xlim(xs[0] - pad, xs[-1] + pad)
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{int(x)}" if float(x).is_integer() else f"{x:g}" for x in xs])
        if bottom[axes.index(ax)]:
            ax.set_xlabel("sequence length T (task.seq_len)")
        ax.grid(True, color="0.9", lw=0.6)
        if facets:
            ax.set_title(res.label(tuple(k for a in facets for k in a), pv), fontsize=10)
    for ax, first in zip(axes, left, strict=True):
        if first:
            ax.set_ylabel("solved fraction" if metric == "solved" else "held-out accuracy")
    seen = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    groups = [h for label, h in seen.items() if not label.startswith("chance")]
    extra = [h for label, h in seen.items() if label.startswith("chance")]
    n = max(nseeds) if nseeds else 0
    add_key(fig, res, by_axis, mappable, axes, corner, groups, extra,
         note=f"bands: 95% {'Wilson' if metric == 'solved' else 't'} interval over {n} "
              f"seed{'s' if n != 1 else ''}")
    what = "solved fraction" if metric == "solved" else "held-out accuracy"
    suptitle(fig, res, f"{what} against sequence length", runs)
    return fig


def _interval(y: np.ndarray, metric: str) -> tuple[float, float]:
    """The 95 % interval of one point: Wilson for a solved fraction, t for a mean accuracy."""
    from rnnlab.analysis.stats import t_interval, wilson

    y = y[~np.isnan(y)]
    if metric == "solved":
        return wilson(float(y.sum()), len(y))
    return t_interval(y, bounds=(0.0, 1.0))[1:]


def _chance(res: PlotData, rows: pd.DataFrame) -> float | None:
    from rnnlab.tasks import TASK_OPTIONS, make_task

    name = res.setting(rows, "task.name")
    if name is MIXED or name not in TASK_OPTIONS:
        return None
    options = {}
    for option in TASK_OPTIONS[name]:
        value = res.setting(rows, f"task.{option}")
        if value is MIXED:
            return None
        if value is not None:
            options[option] = value
    try:
        base = make_task(name, 20, **options).baseline
    except (ValueError, TypeError):
        return None
    if base.get("metric") == "accuracy":
        return float(base["value"])
    return float(base["accuracy"]) if "accuracy" in base else None

