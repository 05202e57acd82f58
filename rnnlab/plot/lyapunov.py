"""The lyapunov plot: the Lyapunov spectrum of the runs at one training step.

x: the exponent's index i = 1..m; y: lambda_i in decades per step (the unit of the measured decay
of ||dE/ds_t||); one line per ``by`` value (the mean over seeds, a band from the smallest to the
largest seed), one panel per combination of the other varying axes; lambda = 0 (the edge of
chaos) dotted, and, at x = 0, the group's measured decay of ||dE/ds_t|| (a hollow marker of the
line's colour) when the gradient norms of that step are stored.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from rnnlab.errors import UserError
from rnnlab.plot.data import Note, PlotData, choose_by, facet_axes, panels_of, rows_at
from rnnlab.plot.figure import add_key, panel_figure, suptitle, value_colours

LN10 = float(np.log(10.0))


def spectrum_table(lam: pd.DataFrame) -> pd.DataFrame:
    """The exponents (the rows of kind ``lambda`` of ``load_lyapunov``) in decades per step: a row
    per run, a column per index i."""
    return lam.pivot_table(index="run_id", columns="index", values="value") / LN10


def spectra(rows: pd.DataFrame, by_axis: tuple[str, ...] | None, by_values: list[tuple],
            table: pd.DataFrame) -> Iterator[tuple[tuple, list[str], pd.DataFrame]]:
    """Per ``by`` value whose runs among ``rows`` have exponents in ``table``
    (:func:`spectrum_table`): the value, the ids of those runs and their exponents (the indices
    none of them has left out)."""
    for bv in by_values:
        have = [r for r in rows_at(rows, by_axis, bv)["run_id"].astype(str) if r in table.index]
        if have:
            yield bv, have, table.loc[have].dropna(axis=1, how="all")


def plot_lyapunov(res: PlotData, by: str | None, step: int, say: Note):
    from rnnlab.analysis.lyapunov_stats import run_lyapunov_stats
    from rnnlab.analysis.summarize import run_gradient_stats
    from rnnlab.results.readers import load_grad_norms, load_lyapunov

    ids = res.runs["run_id"].astype(str).tolist()
    lyap = load_lyapunov(res.folder, run_ids=ids, step=step)
    lam = lyap[lyap["kind"] == "lambda"]
    if len(lam) == 0:
        raise UserError(f"{res.folder}: no Lyapunov exponents at step {step} (the sweep needs "
                        "train.lyapunov.enabled: true, and --step a logged step)")
    decay = run_gradient_stats(load_grad_norms(res.folder, run_ids=ids, step=step), step=step)
    stats = run_lyapunov_stats(lyap, decay, step=step).set_index("run_id")
    decay = decay.set_index("run_id")["decay"]
    by_axis = choose_by(res, "lyapunov", by)
    facets = facet_axes(res, [by_axis])
    panels, order = panels_of(res, facets)
    by_values = res.values(by_axis) if by_axis else [()]
    colours, mappable = value_colours(res, by_axis, by_values)
    table = spectrum_table(lam)
    fig, axes, left, bottom, corner = panel_figure(order, facets, (4.3, 3.3), (7.5, 4.8),
                                              sharey=True, extra_w=1.6, extra_h=0.6)
    nseeds, m_max = set(), 1
    for ax, pv in zip(axes, order, strict=True):
        for bv, have, vals in spectra(panels[pv], by_axis, by_values, table):
            idx = vals.columns.to_numpy(dtype=float)
            m_max = max(m_max, len(idx))
            v = vals.to_numpy(dtype=float)
            nseeds.add(len(have))
            label = res.label(by_axis, bv, names=False) if by_axis else "all runs"
            colour = colours[bv]
            (line,) = ax.plot(idx, np.nanmean(v, axis=0), color=colour, marker="o", ms=3.5,
                              lw=1.6, label=label)
            line.set_gid("mean")
            if len(have) > 1:
                ax.fill_between(idx, np.nanmin(v, axis=0), np.nanmax(v, axis=0), color=colour,
                                alpha=0.15, lw=0)
            d = decay.reindex(have).to_numpy(dtype=float)
            if np.isfinite(d).any():
                ax.plot([0], [np.nanmean(d)], marker="D", ms=6, mfc="none", mec=colour, mew=1.4,
                        ls="none")
        ax.axhline(0.0, color="0.5", ls=":", lw=1)
        ax.grid(True, color="0.9", lw=0.6)
        if bottom[axes.index(ax)]:
            ax.set_xlabel("exponent index i (0: measured decay of ||dE/ds_t||)")
        if facets:
            ax.set_title(res.label(tuple(k for a in facets for k in a), pv), fontsize=10)
    for ax in axes:
        ax.set_xlim(-0.5, m_max + 0.5)
        ax.set_xticks(range(0, m_max + 1))
    for ax, first in zip(axes, left, strict=True):
        if first:
            ax.set_ylabel("lambda_i (decades per step)")
    from matplotlib.lines import Line2D

    seen = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    extra = [Line2D([], [], color="0.5", ls=":", lw=1, label="lambda = 0 (edge of chaos)"),
             Line2D([], [], color="0.3", marker="D", mfc="none", ls="none",
                    label="measured decay (i = 0)")]
    n = max(nseeds) if nseeds else 0
    add_key(fig, res, by_axis, mappable, axes, corner, list(seen.values()), extra,
         note=f"mean, band min..max over {n} seed{'s' if n != 1 else ''}")
    gap = stats["decay_gap"].to_numpy(dtype=float)
    if np.isfinite(gap).any():
        say(f"decay - lambda_1 over the runs plotted: median {np.nanmedian(gap):+.3g} decades per "
            "step")
    suptitle(fig, res, f"Lyapunov spectrum at step {step}", res.runs)
    return fig
