"""Matplotlib setup, layout and output shared by the figures.

The lazy matplotlib check, the panel grid (:func:`panel_figure`), the title, colours per ``by``
value, the legend or colour bar, and :func:`save` (no timestamps, atomic). matplotlib is imported
only inside the functions, never when this module is imported.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from rnnlab.errors import EnvironmentFault, UserError
from rnnlab.plot.data import MIXED, SEQ_LEN, PlotData, value_order, value_text
from rnnlab.results.parquet_io import is_disk_full

DPI = 150
MISSING_HINT = "matplotlib is not installed: pip install 'rnnlab[plot]'"

SAVE_METADATA = {
    ".png": {"Software": None},
    ".pdf": {"Creator": None, "Producer": None, "CreationDate": None},
    ".svg": {"Creator": None, "Date": None},
}


def save(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix) without timestamps, atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SAVE_METADATA:
        raise UserError(f"{path}: unknown image format {suffix or '(none)'!r}; "
                        f"allowed: {', '.join(SAVE_METADATA)}")
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(tmp, format=suffix[1:], dpi=DPI, metadata=SAVE_METADATA[suffix])
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):      # e.g. a read-only file system refuses this too
            tmp.unlink()
        if is_disk_full(e):
            raise EnvironmentFault(f"cannot write {path} ({e.strerror or e}); free some space "
                                   "or pass --out on a disk with room") from None
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def require_matplotlib():
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise UserError(MISSING_HINT) from None


def panel_figure(panels: list[tuple], facets: list[tuple[str, ...]], panel: tuple[float, float],
            single: tuple[float, float], sharey: bool = False, extra_w: float = 0.0,
            extra_h: float = 0.0):
    """A figure with one axes per panel value: a rows x columns grid when exactly two axes are
    faceted (and the columns fit), else wrapped into rows of at most three.

    Returns the figure, the axes in the order of ``panels``, for each whether it is in the
    first column (gets the y label) and the last of its column (gets the x label), and the
    top-right axes (the legend goes to its right, below the title)."""
    from matplotlib.figure import Figure

    n = len(panels)
    if len(facets) == 2:
        split = len(facets[0])
        rows = sorted({pv[:split] for pv in panels}, key=value_order)
        cols = sorted({pv[split:] for pv in panels}, key=value_order)
        place = {pv: (rows.index(pv[:split]), cols.index(pv[split:])) for pv in panels}
        nrows, ncols = len(rows), len(cols)
    if len(facets) != 2 or ncols > 4:
        nrows = math.ceil(n / 3)
        ncols = math.ceil(n / nrows)
        place = {pv: divmod(i, ncols) for i, pv in enumerate(panels)}
    size = single if n == 1 else (panel[0] * ncols + extra_w, panel[1] * nrows + extra_h)
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    grid = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    used = set(place.values())
    for r in range(nrows):
        for c in range(ncols):
            if (r, c) not in used:
                grid[r, c].remove()
    axes = [grid[place[pv]] for pv in panels]
    left = [place[pv][1] == 0 or (place[pv][0], place[pv][1] - 1) not in used for pv in panels]
    bottom = [(place[pv][0] + 1, place[pv][1]) not in used for pv in panels]
    corner = grid[0, max(c for r, c in used if r == 0)]
    return fig, axes, left, bottom, corner


def suptitle(fig, res: PlotData, what: str, rows: pd.DataFrame):
    extra = _context(res, rows)
    if res.pooled:
        extra = (extra + "; " if extra else "") + "same for " + "; ".join(res.pooled)
    fig.suptitle(f"{res.name}: {what}" + (f"\n{extra}" if extra else ""), fontsize=11)


def _context(res: PlotData, rows: pd.DataFrame) -> str:
    """The fixed settings worth naming under the title (swept ones are on the figure)."""
    def val(key):
        v = res.setting(rows, key)
        return None if v is MIXED or key in res.keys else v

    parts = []
    cell = val("model.cell")
    act = val("model.activation")
    if cell is not None:
        parts.append(f"{cell} {act}" if cell == "rnn" and act else str(cell))
    if val("model.init") is not None:
        parts.append(f"{val('model.init')} init")
    if val("model.weight_scale") is not None:
        parts.append(f"scale {value_text(val('model.weight_scale'))}")
    if val("model.hidden") is not None:
        parts.append(f"H = {val('model.hidden')}")
    if val("task.name") is not None:
        parts.append(f"task {val('task.name')}")
    if val(SEQ_LEN) is not None:
        parts.append(f"T = {val(SEQ_LEN)}")
    return ", ".join(parts)


MANY = 8   # more numeric values than this get a colour bar instead of legend entries


def value_colours(res: PlotData, by_axis, values: list[tuple]):
    """A colour per value of ``by_axis``, and a ScalarMappable for a colour bar when the values
    are many numbers (ordered values get an ordered colour map; null is grey)."""
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    numeric = (by_axis is not None and len(by_axis) == 1
               and all(v[0] is None or (isinstance(v[0], int | float)
                                        and not isinstance(v[0], bool)) for v in values))
    real = [v for v in values if v[0] is not None] if numeric else []
    if len(real) > 1:
        cmap = ListedColormap(matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, 256)))
        if len(real) > MANY:
            norm = Normalize(min(v[0] for v in real), max(v[0] for v in real))
            colours = {v: (cmap(norm(v[0])) if v[0] is not None else "0.35") for v in values}
            return colours, ScalarMappable(norm=norm, cmap=cmap)
        colours = {v: (cmap(real.index(v) / (len(real) - 1)) if v[0] is not None else "0.35")
                   for v in values}
        return colours, None
    cmap = matplotlib.colormaps["tab10" if len(values) <= 10 else "tab20"]
    return {v: cmap(i % cmap.N) for i, v in enumerate(values)}, None


def add_key(fig, res: PlotData, by_axis, mappable, axes, corner, groups: list, extra: list,
         note: str = ""):
    """Legend (``groups``: one handle per line, then ``extra``) right of the top-right panel,
    below the title; with many numeric lines a colour bar replaces the group entries."""
    title = (res.axis_name(by_axis) if by_axis else "") + (f"\n{note}" if note else "")
    if mappable is not None:
        fig.colorbar(mappable, ax=axes, pad=0.02, aspect=30, label=res.axis_name(by_axis))
        if extra:
            fig.legend(handles=extra, loc="outside lower center", ncols=min(len(extra), 3),
                       fontsize=8, frameon=False, title=note or None, title_fontsize=8)
        return
    corner.legend(handles=groups + extra, loc="upper left", bbox_to_anchor=(1.03, 1.0),
                  borderaxespad=0.0, fontsize=8, frameon=False, title=title.strip() or None,
                  title_fontsize=9, alignment="left")

