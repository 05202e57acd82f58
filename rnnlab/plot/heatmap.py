"""The heatmap: mean over seeds of ``log10 ||dE/ds_t||``, time step (or lag) by ``by`` value.

One colour scale for the whole figure; exact zeros light grey, non-finite values red, missing
cells hatched, cells annotated when large enough to read (see :mod:`rnnlab.plot`).
"""

from __future__ import annotations

import numpy as np

from rnnlab.plot.data import PlotData
from rnnlab.plot.figure import panel_figure, suptitle
from rnnlab.plot.gradients import step_text, zero_cause

_ZERO_COLOUR = "#d0d0d0"
_NONFINITE_COLOUR = "#d62728"


def plot_heatmap(res: PlotData, by_axis, by_values, facets, data, step):
    import matplotlib
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    lengths = {L for _, groups in data for c, _ in groups.values() for L in c.lengths}
    per_panel_fixed = all(
        len({L for c, _ in groups.values() for L in c.lengths}) == 1 for _, groups in data)
    use_lag = not per_panel_fixed
    finite = [c.mean[np.isfinite(c.mean)] for _, groups in data for c, _ in groups.values()]
    finite = np.concatenate(finite) if finite else np.array([])
    if finite.size == 0:
        vmin, vmax = -1.0, 0.0
    else:
        vmin, vmax = float(finite.min()), float(finite.max())
        if vmax - vmin < 1e-9:
            vmin, vmax = vmin - 0.5, vmax + 0.5
    cmap = matplotlib.colormaps["viridis"].with_extremes(
        under=_ZERO_COLOUR, over=_NONFINITE_COLOUR, bad=(1, 1, 1, 0))
    norm = Normalize(vmin=vmin, vmax=vmax)
    nrow = len(by_values)
    Lmax = max(lengths)
    panel_w = min(max(1.4 + 0.16 * Lmax, 3.4), 4.6)
    panel_h = min(max(1.4 + 0.4 * nrow, 2.6), 4.5)
    single = (7.5, min(max(2.6 + 0.5 * nrow, 3.8), 6.5))
    fig, axes, left, _, _ = panel_figure([pv for pv, _ in data], facets, (panel_w, panel_h), single,
                                 sharey=True, extra_w=1.2, extra_h=1.0)
    inner_w = (single[0] if len(data) == 1 else panel_w) - 1.4
    inner_h = (single[1] if len(data) == 1 else panel_h) - 1.2
    flags = {"zero": False, "bad": False, "missing": False}
    annotate = inner_w / Lmax >= 0.3 and inner_h / nrow >= 0.18
    image = None
    for i, (ax, (pv, groups)) in enumerate(zip(axes, data, strict=True)):
        L = max(L for c, _ in groups.values() for L in c.lengths)
        M = np.full((nrow, L), np.nan)
        zero = np.zeros((nrow, L), dtype=bool)
        bad = np.zeros((nrow, L), dtype=bool)
        present = np.zeros((nrow, L), dtype=bool)
        for r, bv in enumerate(by_values):
            if bv not in groups:
                continue
            c = groups[bv][0]
            n = len(c.mean)
            # lag order -> t order (x = t) unless rows have different lengths (x = lag)
            sl = slice(0, n)
            M[r, sl] = c.mean if use_lag else c.mean[::-1]
            zero[r, sl] = (c.zero & ~c.bad) if use_lag else (c.zero & ~c.bad)[::-1]
            bad[r, sl] = c.bad if use_lag else c.bad[::-1]
            present[r, sl] = c.present if use_lag else c.present[::-1]
        shown = np.where(zero, vmin - 1.0, np.where(bad, vmax + 1.0, M))
        shown = np.ma.masked_where(~present, shown)
        flags["zero"] |= bool(zero.any())
        flags["bad"] |= bool(bad.any())
        flags["missing"] |= bool((~present).any())
        if use_lag:
            extent = (-0.5, L - 0.5, -0.5, nrow - 0.5)
        else:
            extent = (0.5, L + 0.5, -0.5, nrow - 0.5)
        if (~present).any():
            ax.add_patch(matplotlib.patches.Rectangle(
                (extent[0], extent[2]), extent[1] - extent[0], extent[3] - extent[2],
                fill=False, hatch="///", edgecolor="0.8", linewidth=0, zorder=0))
        image = ax.imshow(shown, origin="lower", aspect="auto", cmap=cmap, norm=norm,
                          extent=extent, interpolation="nearest")
        if annotate:
            _annotate(ax, M, zero, bad, present, use_lag, cmap, norm)
        ax.set_yticks(range(nrow))
        ax.set_yticklabels([res.label(by_axis, bv, names=False) for bv in by_values])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(L, 10)))
        if use_lag:
            ax.set_xlabel("lag T − t (time steps back from the loss)")
        else:
            ax.set_xlabel(f"time step t (loss at t = T = {L})")
        if left[i]:
            ax.set_ylabel(res.axis_name(by_axis))
        if facets:
            ax.set_title(res.label(tuple(k for a in facets for k in a), pv), fontsize=10)
        ax.tick_params(length=2)
    cbar = fig.colorbar(image, ax=axes, shrink=0.95, pad=0.02, aspect=25)
    cbar.set_label(r"$\log_{10}\,\|\partial E/\partial s_t\|$  (mean over seeds)")
    handles = []
    if flags["zero"]:
        handles.append(Patch(facecolor=_ZERO_COLOUR, edgecolor="0.5",
                             label=f"ds = 0 in a seed ({zero_cause(res)}, log10 = −∞)"))
    if flags["bad"]:
        handles.append(Patch(facecolor=_NONFINITE_COLOUR, edgecolor="0.5",
                             label="ds not finite in a seed (NaN/inf: diverged)"))
    if flags["missing"]:
        handles.append(Patch(facecolor="white", edgecolor="0.6", hatch="///",
                             label="no such step / no runs"))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8,
                   frameon=False)
    n = max(c.n for _, groups in data for c, _ in groups.values())
    suptitle(fig, res, f"log10 ||dE/ds_t|| at {step_text(step)}, mean of "
                        f"{n} seed{'s' if n != 1 else ''}", res.runs)
    return fig


def _annotate(ax, M, zero, bad, present, use_lag, cmap, norm):
    nrow, L = M.shape
    for r in range(nrow):
        for j in range(L):
            if not present[r, j]:
                continue
            x = j if use_lag else j + 1
            if bad[r, j]:
                text, colour = "nan", "white"
            elif zero[r, j]:
                text, colour = "−∞", "0.2"
            else:
                rgba = cmap(norm(M[r, j]))
                lum = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
                text, colour = f"{M[r, j]:.1f}", ("black" if lum > 0.5 else "white")
            ax.text(x, r, text, ha="center", va="center", color=colour,
                    fontsize=7)

