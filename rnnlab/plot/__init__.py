"""Figures of a results folder: how the error signal travels back through time, and what it buys.

Six kinds, each drawn from the folder alone (manifest, runs, gradient norms, Lyapunov tables):

``heatmap``
    ``log10 ||dE/ds_t||`` (column ``ds`` of the gradient norms at one training step, default 0 =
    initialisation), the mean over seeds of the log, as an image: time step ``t = 1..T`` on x (the
    loss sits at ``t = T``: the error signal travels right to left), the values of one swept axis
    (``by``) on y. When the rows have different lengths (``by`` is ``task.seq_len``) x is the lag
    ``T - t`` instead, rows padded (hatched). One colour scale for the whole figure. A cell where a
    seed's norm is exactly 0 (float underflow, or beyond a truncated-BPTT window: log10 = -inf) is
    light grey, one where a seed's norm is NaN/inf (a diverged run) red, and a legend under the
    panels says so. Cells are annotated with their value when they are large enough to read.
``decay``
    ``||dE/ds_t||`` on a log axis against the lag ``T - t``: one line per value of ``by`` (the
    geometric mean over seeds, i.e. the mean of log10), a band from the smallest to the largest
    seed. Where it applies, the bound of Pascanu, Mikolov & Bengio (2013, section 2.1),
    ``||dE/ds_{T-k}|| <= (gamma sigma)^k ||dE/ds_T||``, is a dashed line of the same colour anchored
    at the group's ``ds_T``: ``sigma`` is the largest singular value of the recurrent matrix as
    the runs recorded it (the largest over the group's seeds; for orthogonal and identity init it
    equals ``model.weight_scale``) and ``gamma`` the largest derivative of the activation (1 for
    tanh, relu and identity, 1/4 for sigmoid). It is drawn only for the vanilla RNN with the loss
    at the last step (a loss at every step injects error on the way back) and only at step 0
    (``sigma_start``) or the last training step (``sigma_end``), the only weights the runs record;
    elsewhere a note says why not. Zero norms are marked by triangles on the x axis, non-finite
    ones by crosses at the top.
``success``
    Solved fraction (or held-out accuracy, ``metric="accuracy"``, with the task's chance level
    dotted) against ``task.seq_len``, one line per value of ``by``, error bars +-1 standard error
    over seeds (binomial for the solved fraction), y in [0, 1], lines nudged sideways by a few
    points so equal values stay visible. Diverged runs count as not solved.
``lyapunov``
    The Lyapunov spectrum lambda_i (decades per step) against the index i at one training step
    (needs ``train.lyapunov.enabled``): one line per value of ``by`` (mean over seeds, band from
    the smallest to the largest seed), lambda = 0 dotted, the measured decay of ``||dE/ds_t||``
    as a hollow diamond at i = 0 (see :mod:`rnnlab.plot.lyapunov`).
``budget`` and ``limit``
    The limit map (:mod:`rnnlab.analysis.limits`, needs ``task.seq_len`` swept): the fraction solved
    within each training budget against T, one line per budget and one panel per setting; and the
    limit (the largest T solved with probability >= 1/2) against the budget, one line per setting
    (see :mod:`rnnlab.plot.limits`).

Defaults for ``by``: heatmap, decay and lyapunov ``model.weight_scale`` if it varies, else the
first swept axis with more than one value other than ``task.seq_len``, else ``task.seq_len``;
success ``model.cell``, else ``train.clip.mode``, else the first other varying axis (never
``task.seq_len``, which is its x axis). A numeric ``by`` gets an ordered colour map (viridis;
null is grey) and, with more than ``MANY`` values, a colour bar instead of legend entries.

Small multiples. Swept axes other than ``by`` (and the x axis) that take more than one value make
one panel per combination (a rows x columns grid for two axes, else wrapped into three columns),
at most ``MAX_PANELS``; ``where`` (``KEY=VALUE``) filters the runs first. For the two gradient
kinds, an axis whose values give identical curves (e.g. the clipping threshold at initialisation,
before any update) is not split into panels: its first value's runs stand for all (same seeds, same
numbers), and the subtitle and a note say so. Zipped axes count as one axis, labelled with all
their keys. Failed runs are left out, with a note.

Figures are built on ``matplotlib.figure.Figure`` (the Agg canvas; no pyplot, no global state),
with sizes fixed by the layout and a fixed dpi, and saved without timestamps, so the same folder
gives the same bytes. matplotlib is imported only when a figure is made; without it a
``UserError`` says how to install it.

Modules: ``data`` (the folder as plotting data: runs, swept axes, filters, ``by``, panels),
``gradients`` (gradient norms per group, for heatmap and decay), ``heatmap``, ``decay`` and
``success`` (one kind each), ``figure`` (matplotlib check, layout, title, colours, legend,
:func:`save`). Names with a leading underscore are private to the package.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from rnnlab.errors import UserError
from rnnlab.plot.data import MAX_PANELS, Note, load_plot_data
from rnnlab.plot.decay import GAMMA, plot_decay
from rnnlab.plot.figure import DPI, MISSING_HINT, SAVE_METADATA, require_matplotlib, save
from rnnlab.plot.gradients import gradient_panels
from rnnlab.plot.heatmap import plot_heatmap
from rnnlab.plot.limits import plot_budget, plot_limit
from rnnlab.plot.lyapunov import plot_lyapunov
from rnnlab.plot.success import plot_success

__all__ = ["DPI", "GAMMA", "KINDS", "MAX_PANELS", "METRICS", "MISSING_HINT", "figure",
           "output_path", "plot", "save"]

KINDS = ("heatmap", "decay", "success", "lyapunov", "budget", "limit")
METRICS = ("solved", "accuracy")


def output_path(folder: str | os.PathLike, kind: str, out: str | os.PathLike | None = None) -> Path:
    """Where :func:`plot` writes: ``out``, or ``FOLDER/<kind>.png``."""
    return Path(out) if out is not None else Path(folder) / f"{kind}.png"


def plot(
    folder: str | os.PathLike,
    kind: str = "heatmap",
    out: str | os.PathLike | None = None,
    *,
    by: str | None = None,
    step: int = 0,
    where: Sequence[str] = (),
    metric: str = "solved",
    note: Note | None = None,
):
    """Draw one figure of a results folder, write it to ``out`` and return the Figure.

    ``kind``: heatmap, decay or success (module docstring). ``by``: the swept key whose values are
    the rows (heatmap), lines (decay, success); a unique last part is enough (``weight_scale``).
    ``step``: training step of the gradient norms (heatmap, decay). ``where``: ``KEY=VALUE``
    filters on swept keys (``null`` matches a null value). ``metric``: solved or accuracy
    (success). ``out``: .png (default ``FOLDER/<kind>.png``), .pdf or .svg. ``note`` receives
    diagnostics (pooled axes, left-out runs, why a bound is not drawn).
    """
    path = output_path(folder, kind, out)
    if path.suffix.lower() not in SAVE_METADATA:
        _check(kind, metric, step)
        raise UserError(f"{path}: unknown image format {path.suffix or '(none)'!r}; "
                        f"allowed: {', '.join(SAVE_METADATA)}")
    fig = figure(folder, kind, by=by, step=step, where=where, metric=metric, note=note)
    save(fig, path)
    return fig


def _check(kind: str, metric: str, step: int):
    if kind not in KINDS:
        raise UserError(f"unknown plot kind {kind!r}; allowed: {', '.join(KINDS)}")
    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r}; allowed: {', '.join(METRICS)}")
    if step < 0:
        raise UserError(f"--step: got {step}; allowed: an integer >= 0")


def figure(
    folder: str | os.PathLike,
    kind: str = "heatmap",
    *,
    by: str | None = None,
    step: int = 0,
    where: Sequence[str] = (),
    metric: str = "solved",
    note: Note | None = None,
):
    """The Figure that :func:`plot` writes, without writing it (same arguments but ``out``;
    ``where`` may be one ``KEY=VALUE`` text, ``by`` a list of one key)."""
    where = [where] if isinstance(where, str) else list(where)
    if isinstance(by, list | tuple):
        if len(by) != 1:
            raise UserError(f"by: got {by!r}; allowed: one swept key, e.g. 'weight_scale'")
        by = by[0]
    _check(kind, metric, step)
    require_matplotlib()
    say = note or (lambda message: None)
    res = load_plot_data(Path(folder), where, say)
    if kind == "success":
        if step:
            say("--step is ignored by the success plot (it shows the final evaluation)")
        fig = plot_success(res, by, metric, say)
    elif kind == "lyapunov":
        fig = plot_lyapunov(res, by, step, say)
    elif kind in ("budget", "limit"):
        if step or by:
            say(f"--step and --by are ignored by the {kind} plot (it reads steps_to_solve)")
        fig = (plot_budget if kind == "budget" else plot_limit)(res, say)
    else:
        by_axis, by_values, facets, data = gradient_panels(res, kind, by, step, say)
        if kind == "heatmap":
            fig = plot_heatmap(res, by_axis, by_values, facets, data, step)
        else:
            fig = plot_decay(res, by_axis, by_values, facets, data, step, say)
    return fig

