"""The summary table for people at a terminal: the columns that matter, fitted to its width.

The summary (``rnnlab.analysis.summarize``) has some twenty columns; csv, json and markdown keep
every one. A terminal gets a *view* of it:

* an interval is one cell: ``solved`` with ``solved_lo``/``solved_hi`` prints as
  ``0.5 [0.094,0.91]`` (the value as in summary.md, the bounds to 2 significant digits, rounded
  outwards); a
  censored horizon prints as a lower bound (``>= 14``, see ``summarize.display_cells``);
* by default the swept keys come first, then, while the table stays within the width (80
  characters, or the terminal's when stdout is one), the columns of :data:`ALERT` that are not
  zero everywhere and those of :data:`PRIORITY`, in that order of preference; the view keeps the
  summary's column order and its caption names what was left out. A run count ``n`` that is
  the same on every row moves to the caption;
* ``wide`` shows every column, ``columns`` exactly the named ones (a base name such as ``solved``
  gives the interval cell, ``solved_lo`` the bound alone).

Columns are picked by name and absent names are skipped, so the view works with any summary that
has some of these columns. No rich here: the CLI renders the :class:`View`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from rnnlab.analysis.summarize import SUMMARY_COLUMNS, display_cells, format_value
from rnnlab.errors import UserError

#: Shown first whenever some row is not zero: a failure, divergence or explosion must be seen.
ALERT = ("failed", "diverged", "exploded")
#: Preference order of the other columns in the default view.
PRIORITY = ("n", "solved", "limit", "censored", "gain", "largest_solved", "decay", "horizon",
            "acc", "loss", "acc_hs", "acc_pascanu", "lambda1", "bound", "grad_ratio", "horizon_0",
            "horizon_B", "ratio_0", "ratio_B", "clip_rate", "decay_gap", "decay_sd", "loss_sd",
            "acc_sd", "lambda_sum")
#: Columns whose information the view folds into another cell.
FOLDED = {"horizon_censored": "horizon", "horizon_0_censored": "horizon_0",
          "horizon_B_censored": "horizon_B", "censored": "limit"}
#: Border and padding of one column in rich's default table (one bar, one space either side).
COLUMN_OVERHEAD = 3


@dataclass
class Column:
    """One column of a view: its header, cell texts and whether it holds numbers."""

    name: str
    cells: list[str]
    numeric: bool = True

    @property
    def width(self) -> int:
        return max([len(self.name)] + [len(c) for c in self.cells])


@dataclass
class View:
    """The columns to show and the summary columns left out (for the caption)."""

    columns: list[Column]
    hidden: list[str] = field(default_factory=list)
    note: str | None = None

    @property
    def width(self) -> int:
        return table_width(self.columns)

    def caption(self) -> str | None:
        parts = [self.note] if self.note else []
        if self.hidden:
            parts.append(f"not shown: {', '.join(self.hidden)} (--wide, or --columns NAME,...)")
        return "; ".join(parts) or None


def table_width(columns: list[Column]) -> int:
    """Characters of a rich table (default box, padding 1) holding ``columns``."""
    return 1 + sum(c.width + COLUMN_OVERHEAD for c in columns)


def short(x: object, direction: int = 0) -> str:
    """A bound of an interval to 2 significant digits (``0.094``, ``1.2e-5``, ``inf``), rounded
    down (``direction`` < 0), up (> 0) or to nearest (0): outward rounding keeps the printed
    interval around the value (0.9998 with bounds 0.9995 and 1 prints as ``[0.99,1]``)."""
    text = format_value(x)
    if text in ("-", "inf", "-inf") or not isinstance(x, int | float) or isinstance(x, bool):
        return text
    x = float(x)
    if direction and x != 0:
        q = 10.0 ** (math.floor(math.log10(abs(x))) - 1)
        v = x / q
        if abs(v - round(v)) < 1e-9 * abs(v):           # already on the grid (0.34 / 0.01)
            v = round(v)
        x = (math.floor(v) if direction < 0 else math.ceil(v)) * q
    text = format(x, ".2g")
    if "e" in text:
        mant, exp = text.split("e")
        text = f"{mant}e{int(exp)}"
    return "0" if text == "-0" else text


def intervals(columns) -> dict[str, tuple[str, str]]:
    """``{base: (base_lo, base_hi)}`` for every base column that has both bounds."""
    names = [str(c) for c in columns]
    return {c: (f"{c}_lo", f"{c}_hi") for c in names
            if f"{c}_lo" in names and f"{c}_hi" in names}


def statistic_names() -> list[str]:
    """Every statistic a summary can have (the Lyapunov group means where that module exists)."""
    try:
        from rnnlab.analysis.lyapunov_stats import SUMMARY_COLUMNS as LYAPUNOV
    except ImportError:
        LYAPUNOV = []
    from rnnlab.analysis.limits import LIMIT_COLUMNS

    limits = [c for c in LIMIT_COLUMNS if c != "budget"]
    return list(SUMMARY_COLUMNS) + [c for c in LYAPUNOV + limits if c not in SUMMARY_COLUMNS]


def key_columns(table: pd.DataFrame) -> list[str]:
    """The grouping keys of a summary: its leading columns, up to the first statistic (the
    summary is keys, then statistics; a statistic this module does not know stays one)."""
    stats = set(statistic_names()) | {b for pair in intervals(table.columns).values()
                                      for b in pair}
    keys = []
    for c in table.columns:
        if str(c) in stats:
            break
        keys.append(str(c))
    return keys


def short_names(columns) -> dict:
    """Dotted keys shown by their last part where that is unambiguous (task.seq_len -> seq_len)."""
    last = [str(c).rsplit(".", 1)[-1] for c in columns]
    return {c: (s if last.count(s) == 1 else str(c)) for c, s in zip(columns, last, strict=True)}


def cell_texts(table: pd.DataFrame) -> dict[str, list[str]]:
    """Every column's cells as people read them (``summarize.display_cells``)."""
    rows = display_cells(table)
    return {str(c): [r[i] for r in rows] for i, c in enumerate(table.columns)}


def interval_cells(table: pd.DataFrame, base: str, texts: dict[str, list[str]]) -> list[str]:
    """``value [lo,hi]`` per row; just the value where the bounds are missing."""
    lo, hi = intervals(table.columns)[base]
    out = []
    for v, a, b in zip(texts[base], table[lo], table[hi], strict=True):
        if _missing(a) and _missing(b):
            out.append(v)
        else:
            out.append(f"{v} [{short(a, -1)},{short(b, 1)}]")
    return out


def _missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _nonzero(series: pd.Series) -> bool:
    vals = pd.to_numeric(series, errors="coerce")
    return bool((vals.fillna(0) != 0).any())


def candidates(table: pd.DataFrame) -> list[str]:
    """Statistic columns a view can show, in the summary's order (bounds and folded ones out)."""
    keys = set(key_columns(table))
    bounds = {b for pair in intervals(table.columns).values() for b in pair}
    return [str(c) for c in table.columns
            if str(c) not in keys and str(c) not in bounds and str(c) not in FOLDED]


def make_column(table: pd.DataFrame, name: str, texts: dict[str, list[str]],
                header: str | None = None) -> Column:
    """The column ``name``: an interval cell if the table has its bounds, else its texts."""
    cells = interval_cells(table, name, texts) if name in intervals(table.columns) else texts[name]
    numeric = table[name].dtype.kind in "ifb" if name in table.columns else True
    return Column(header or name, list(cells), numeric)


def summary_view(table: pd.DataFrame, width: int = 80, columns: list[str] | None = None,
                 wide: bool = False, keys: list[str] | None = None,
                 marks: dict[str, list[bool]] | None = None) -> View:
    """The terminal view of a summary table (module docstring).

    ``width``: characters the default view may fill; ``columns``: names to show after the keys
    (an unknown name is a UserError listing the names there are); ``wide``: show every column.
    ``keys`` defaults to :func:`key_columns`. ``marks``: per column, the rows whose cell gets a
    ``*`` (the others a space, so that numbers stay aligned); a column with a mark is preferred
    to any of :data:`PRIORITY`.
    """
    keys = key_columns(table) if keys is None else keys
    texts = cell_texts(table)
    names = short_names(keys)
    key_cols = [Column(names[k], texts[k], table[k].dtype.kind in "ifb") for k in keys]
    shown = candidates(table)
    if marks:
        texts = dict(texts)
        for c, flags in marks.items():
            if c in intervals(table.columns):
                texts[c] = interval_cells(table, c, texts)
            texts[c] = [f"{t} *" if f else f"{t}  " for t, f in zip(texts[c], flags, strict=True)]
        table = table.drop(columns=[b for c in marks for b in intervals(table.columns).get(c, ())])
    if columns is not None:
        allowed = [str(c) for c in table.columns if str(c) not in keys]
        unknown = [c for c in columns if c not in allowed]
        if unknown:
            raise UserError(f"--columns: no column {unknown[0]!r} in the summary; allowed: "
                            f"{', '.join(allowed)}")
        picked = list(dict.fromkeys(columns))
        return View(key_cols + [make_column(table, c, texts) for c in picked],
                    [c for c in shown if c not in picked])
    made = {c: make_column(table, c, texts) for c in shown}
    if wide:
        return View(key_cols + [made[c] for c in shown])
    note = None
    if "n" in made and len(table) and table["n"].nunique() == 1:
        note = f"{format_value(table['n'].iloc[0])} run(s) per row"
        del made["n"]
        shown.remove("n")
    order = [c for c in ALERT if c in made and _nonzero(table[c])]
    order += [c for c in made if marks and any(marks.get(c, ())) and c not in order]
    order += [c for c in PRIORITY if c in made and c not in order and c not in ALERT]
    chosen: list[str] = []
    for c in order:
        trial = key_cols + [made[x] for x in chosen + [c]]
        if table_width(trial) <= width:
            chosen.append(c)
    quiet = {c for c in ALERT if c in made and not _nonzero(table[c])}
    hidden = [c for c in shown if c not in chosen and c not in quiet]
    return View(key_cols + [made[c] for c in shown if c in chosen], hidden, note)
