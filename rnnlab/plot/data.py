"""The results folder as plotting data: runs, swept axes, filters, the ``by`` axis and panels.

:func:`load_plot_data` reads the manifest and runs of a folder into a :class:`PlotData` (failed runs
left out, ``where`` filters applied); the rest resolves key names, chooses the ``by`` axis and the
facet axes, checks the panel count and groups runs by swept values. No matplotlib here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rnnlab.errors import UserError
from rnnlab.results.parquet_io import plain_value

MAX_PANELS = 12
SEQ_LEN = "task.seq_len"
MIXED = object()

Note = Callable[[str], None]


@dataclass
class PlotData:
    folder: Path
    name: str
    base: dict                   # the resolved experiment of the manifest
    runs: pd.DataFrame           # usable runs; swept columns hold python values (None = null)
    axes: list[tuple[str, ...]]  # swept axes (zipped keys together), in sweep order
    short: dict                  # dotted key -> the name shown on the figure
    pooled: list[str]            # descriptions of axes pooled because they changed nothing

    @property
    def keys(self) -> list[str]:
        return [k for axis in self.axes for k in axis]

    def values(self, axis: tuple[str, ...], rows: pd.DataFrame | None = None) -> list[tuple]:
        rows = self.runs if rows is None else rows
        return sorted({tuple(r) for r in rows[list(axis)].itertuples(index=False)}, key=value_order)

    def label(self, axis: tuple[str, ...], value: tuple, names: bool = True) -> str:
        if not names:
            return ", ".join(value_text(v) for v in value)
        return ", ".join(f"{self.short[k]} = {value_text(v)}"
                         for k, v in zip(axis, value, strict=True))

    def axis_name(self, axis: tuple[str, ...]) -> str:
        return ", ".join(self.short[k] for k in axis)

    def setting(self, rows: pd.DataFrame, key: str):
        """A configuration value of ``rows``: their swept value, else the experiment's base."""
        if key in rows.columns:
            vals = {plain_value(v) for v in rows[key]}
            return vals.pop() if len(vals) == 1 else MIXED
        node = self.base
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node


def value_order(value: tuple):
    return tuple((0, 0) if v is None else (1, v) for v in value)


def value_text(v) -> str:
    """A setting as a figure labels it: spelt as in the experiment file (``null``, ``true``), a
    float to 6 significant digits. Not :func:`rnnlab.analysis.summarize.format_value`, which
    rounds measured numbers to 4 digits so that tables read the same on every machine: settings
    are not measured, and two swept values alike to 4 digits (0.12345, 0.12346) would share a
    label."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def load_plot_data(folder: Path, where: Iterable[str], say: Note) -> PlotData:
    from rnnlab.results.readers import load_manifest, load_runs

    runs = load_runs(folder)
    try:
        manifest = load_manifest(folder)
    except UserError:
        manifest = {}          # damaged: the CLI warned; the swept columns of the runs suffice
    exp = manifest.get("experiment") if isinstance(manifest.get("experiment"), dict) else {}
    name = str(manifest.get("name") or exp.get("name") or folder.name)
    swept = [c for c in runs.columns if "." in str(c)]
    axes: list[tuple[str, ...]] = []
    for axis in exp.get("axes") or []:
        keys = tuple(k for k in (axis.get("keys") or []) if k in swept)
        if keys:
            axes.append(keys)
    covered = {k for axis in axes for k in axis}
    axes += [(k,) for k in swept if k not in covered]
    runs = runs.copy()
    for k in swept:
        runs[k] = pd.Series([plain_value(v) for v in runs[k]], index=runs.index, dtype=object)
    if "status" in runs.columns:
        failed = runs["status"].astype(object) == "failed"
        if failed.any():
            say(f"left out {int(failed.sum())} failed run(s)")
            runs = runs[~failed]
    if len(runs) == 0:
        raise UserError(f"{folder} has no successful runs to plot")
    last = [str(k).rsplit(".", 1)[-1] for k in swept]
    short = {k: (s if last.count(s) == 1 else k) for k, s in zip(swept, last, strict=True)}
    res = PlotData(folder, name, exp, runs.reset_index(drop=True), axes, short, [])
    for item in where or ():
        res.runs = _filter(res, item)
    return res


def _resolve(res: PlotData, name: str, option: str) -> str:
    keys = res.keys
    if name in keys:
        return name
    hits = [k for k in keys if k.rsplit(".", 1)[-1] == name or k.endswith("." + name)]
    if len(hits) == 1:
        return hits[0]
    have = ", ".join(keys) if keys else "none (nothing was swept)"
    if len(hits) > 1:
        raise UserError(f"{option} {name!r} is ambiguous: {', '.join(hits)}")
    return _not_swept(res, name, option, have)


def _not_swept(res: PlotData, name: str, option: str, have: str):
    key = name
    if "." not in name:
        sections = [s for s in ("model", "task", "train") if name in (res.base.get(s) or {})]
        key = f"{sections[0]}.{name}" if len(sections) == 1 else name
    value = res.setting(res.runs, key) if "." in key else None
    if value is not None and value is not MIXED:
        raise UserError(f"{option} {name!r}: {key} is not swept in {res.folder} (every run has "
                        f"{value_text(value)}); swept keys: {have}")
    raise UserError(f"{option} {name!r}: no such swept key in {res.folder}; swept keys: {have}")


def _filter(res: PlotData, item: str) -> pd.DataFrame:
    if "=" not in item:
        raise UserError(f"--where {item!r}: expected KEY=VALUE, e.g. model.weight_scale=1")
    name, text = (s.strip() for s in item.split("=", 1))
    key = _resolve(res, name, "--where")
    mask = np.array([_matches(v, text) for v in res.runs[key]], dtype=bool)
    if not mask.any():
        have = ", ".join(value_text(v[0]) for v in res.values((key,)))
        raise UserError(f"--where {item!r} matches no run; {key} has: {have}")
    return res.runs[mask].reset_index(drop=True)


def _matches(value, text: str) -> bool:
    if value is None:
        return text.lower() in ("null", "none", "~", "")
    if isinstance(value, bool):
        return text.lower() == ("true" if value else "false")
    if isinstance(value, int | float):
        try:
            return math.isclose(float(text), float(value), rel_tol=1e-9, abs_tol=1e-12)
        except ValueError:
            return False
    return str(value) == text


def _axis_of(res: PlotData, key: str) -> tuple[str, ...]:
    return next(axis for axis in res.axes if key in axis)


def varying_axes(res: PlotData) -> list[tuple[str, ...]]:
    return [axis for axis in res.axes if len(res.values(axis)) > 1]


def _default_by(res: PlotData, kind: str) -> tuple[str, ...] | None:
    varying = varying_axes(res)
    keys_of = {k: axis for axis in varying for k in axis}
    preferred = {"heatmap": ["model.weight_scale"], "decay": ["model.weight_scale"],
                 "lyapunov": ["model.weight_scale"],
                 "success": ["model.cell", "train.clip.mode"]}[kind]
    for key in preferred:
        if key in keys_of and (kind != "success" or SEQ_LEN not in keys_of[key]):
            return keys_of[key]
    others = [axis for axis in varying if SEQ_LEN not in axis]
    if others:
        return others[0]
    if kind != "success" and SEQ_LEN in keys_of:
        return keys_of[SEQ_LEN]
    return None


def choose_by(res: PlotData, kind: str, by: str | None) -> tuple[str, ...] | None:
    if by is None:
        axis = _default_by(res, kind)
        if axis is None and kind == "heatmap":
            raise UserError(f"{res.folder}: the heatmap needs a swept key with more than one "
                            "value for its rows, and nothing with more than one value was swept "
                            "in the runs plotted; try --kind decay")
        return axis
    key = _resolve(res, by, "--by")
    axis = _axis_of(res, key)
    n = len(res.values(axis))
    if kind == "heatmap" and n < 2:
        raise UserError(f"--by {key}: the heatmap needs an axis with more than one value; "
                        f"{key} has one ({value_text(res.runs[key].iloc[0])}) in the runs plotted")
    if kind == "success" and SEQ_LEN in axis:
        raise UserError(f"--by {key}: the success plot has {SEQ_LEN} on its x axis; choose "
                        "another --by")
    return axis


def facet_axes(res: PlotData, exclude: Iterable[tuple[str, ...] | None]) -> list[tuple[str, ...]]:
    skip = {a for a in exclude if a is not None}
    return [axis for axis in varying_axes(res) if axis not in skip]


def check_panels(res: PlotData, facets: list[tuple[str, ...]], n: int):
    if n > MAX_PANELS:
        names = ", ".join(res.axis_name(a) for a in facets)
        raise UserError(f"{n} panels (one per combination of {names}) are too many to read "
                        f"(at most {MAX_PANELS}); narrow the runs with --where KEY=VALUE or "
                        "choose another --by")


def groups_by(res: PlotData, keys: list[str]) -> dict[tuple, pd.DataFrame]:
    return groups_of_rows(res.runs, keys) if keys else {(): res.runs}


def groups_of_rows(rows: pd.DataFrame, keys: list[str]) -> dict[tuple, pd.DataFrame]:
    out = {}
    for value, sub in rows.groupby(keys, sort=False, dropna=False):
        value = value if isinstance(value, tuple) else (value,)
        out[tuple(plain_value(v) for v in value)] = sub
    return out


def panels_of(res: PlotData,
              facets: list[tuple[str, ...]]) -> tuple[dict[tuple, pd.DataFrame], list[tuple]]:
    """The runs of each panel (one per combination of the facet axes' values) and the panels'
    values in order; a UserError when they are too many (:func:`check_panels`)."""
    panels = groups_by(res, [k for a in facets for k in a])
    order = sorted(panels, key=value_order)
    check_panels(res, facets, len(order))
    return panels, order


def rows_at(rows: pd.DataFrame, axis: tuple[str, ...] | None, value: tuple) -> pd.DataFrame:
    """The rows whose values of ``axis`` are ``value`` (all of them when there is no axis)."""
    if not axis:
        return rows
    return rows[[tuple(plain_value(v) for v in r) == value
                 for r in rows[list(axis)].itertuples(index=False)]]
