"""Figures of a results folder: how the error signal travels back through time, and what it buys.

Three kinds, each drawn from the folder alone (manifest, runs, gradient norms):

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

Defaults for ``by``: heatmap and decay ``model.weight_scale`` if it varies, else the first swept
axis with more than one value other than ``task.seq_len``, else ``task.seq_len``; success
``model.cell``, else ``train.clip.mode``, else the first other varying axis (never
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
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rnnlab.errors import UserError
from rnnlab.store import plain_value

KINDS = ("heatmap", "decay", "success")
METRICS = ("solved", "accuracy")
MAX_PANELS = 12
DPI = 150
SEQ_LEN = "task.seq_len"
#: Largest |phi'| of each activation: the gamma of Pascanu et al.'s bound.
GAMMA = {"tanh": 1.0, "relu": 1.0, "identity": 1.0, "sigmoid": 0.25}
MISSING_HINT = "matplotlib is not installed: pip install 'rnnlab[plot]'"

_SAVE_METADATA = {
    ".png": {"Software": None},
    ".pdf": {"Creator": None, "Producer": None, "CreationDate": None},
    ".svg": {"Creator": None, "Date": None},
}
_ZERO_COLOUR = "#d0d0d0"
_NONFINITE_COLOUR = "#d62728"
_MIXED = object()

Note = Callable[[str], None]


# --------------------------------------------------------------------------------------------
# entry point


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
    if kind not in KINDS:
        raise UserError(f"unknown plot kind {kind!r}; allowed: {', '.join(KINDS)}")
    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r}; allowed: {', '.join(METRICS)}")
    if step < 0:
        raise UserError(f"--step: got {step}; allowed: an integer >= 0")
    path = output_path(folder, kind, out)
    if path.suffix.lower() not in _SAVE_METADATA:
        raise UserError(f"{path}: unknown image format {path.suffix or '(none)'!r}; "
                        f"allowed: {', '.join(_SAVE_METADATA)}")
    _matplotlib()
    say = note or (lambda message: None)
    res = _load(Path(folder), where, say)
    if kind == "success":
        if step:
            say("--step is ignored by the success plot (it shows the final evaluation)")
        fig = _success(res, by, metric, say)
    else:
        fig = _gradients(res, kind, by, step, say)
    save(fig, path)
    return fig


def save(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix) without timestamps, atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _SAVE_METADATA:
        raise UserError(f"{path}: unknown image format {suffix or '(none)'!r}; "
                        f"allowed: {', '.join(_SAVE_METADATA)}")
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(tmp, format=suffix[1:], dpi=DPI, metadata=_SAVE_METADATA[suffix])
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def _matplotlib():
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise UserError(MISSING_HINT) from None


# --------------------------------------------------------------------------------------------
# the results folder as plotting data


@dataclass
class _Results:
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
        return sorted({tuple(r) for r in rows[list(axis)].itertuples(index=False)}, key=_order)

    def label(self, axis: tuple[str, ...], value: tuple, names: bool = True) -> str:
        if not names:
            return ", ".join(_fmt(v) for v in value)
        return ", ".join(f"{self.short[k]} = {_fmt(v)}" for k, v in zip(axis, value, strict=True))

    def axis_name(self, axis: tuple[str, ...]) -> str:
        return ", ".join(self.short[k] for k in axis)

    def setting(self, rows: pd.DataFrame, key: str):
        """A configuration value of ``rows``: their swept value, else the experiment's base."""
        if key in rows.columns:
            vals = {plain_value(v) for v in rows[key]}
            return vals.pop() if len(vals) == 1 else _MIXED
        node = self.base
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node


def _order(value: tuple):
    return tuple((0, 0) if v is None else (1, v) for v in value)


def _fmt(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _load(folder: Path, where: Iterable[str], say: Note) -> _Results:
    from rnnlab.store import load_manifest, load_runs

    manifest = load_manifest(folder)
    runs = load_runs(folder)
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
    res = _Results(folder, name, exp, runs.reset_index(drop=True), axes, short, [])
    for item in where or ():
        res.runs = _filter(res, item)
    return res


def _resolve(res: _Results, name: str, option: str) -> str:
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


def _not_swept(res: _Results, name: str, option: str, have: str):
    key = name
    if "." not in name:
        sections = [s for s in ("model", "task", "train") if name in (res.base.get(s) or {})]
        key = f"{sections[0]}.{name}" if len(sections) == 1 else name
    value = res.setting(res.runs, key) if "." in key else None
    if value is not None and value is not _MIXED:
        raise UserError(f"{option} {name!r}: {key} is not swept in {res.folder} (every run has "
                        f"{_fmt(value)}); swept keys: {have}")
    raise UserError(f"{option} {name!r}: no such swept key in {res.folder}; swept keys: {have}")


def _filter(res: _Results, item: str) -> pd.DataFrame:
    if "=" not in item:
        raise UserError(f"--where {item!r}: expected KEY=VALUE, e.g. model.weight_scale=1")
    name, text = (s.strip() for s in item.split("=", 1))
    key = _resolve(res, name, "--where")
    mask = np.array([_matches(v, text) for v in res.runs[key]], dtype=bool)
    if not mask.any():
        have = ", ".join(_fmt(v[0]) for v in res.values((key,)))
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


def _axis_of(res: _Results, key: str) -> tuple[str, ...]:
    return next(axis for axis in res.axes if key in axis)


def _varying(res: _Results) -> list[tuple[str, ...]]:
    return [axis for axis in res.axes if len(res.values(axis)) > 1]


def _default_by(res: _Results, kind: str) -> tuple[str, ...] | None:
    varying = _varying(res)
    keys_of = {k: axis for axis in varying for k in axis}
    preferred = {"heatmap": ["model.weight_scale"], "decay": ["model.weight_scale"],
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


def _choose_by(res: _Results, kind: str, by: str | None) -> tuple[str, ...] | None:
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
                        f"{key} has one ({_fmt(res.runs[key].iloc[0])}) in the runs plotted")
    if kind == "success" and SEQ_LEN in axis:
        raise UserError(f"--by {key}: the success plot has {SEQ_LEN} on its x axis; choose "
                        "another --by")
    return axis


def _facets(res: _Results, exclude: Iterable[tuple[str, ...] | None]) -> list[tuple[str, ...]]:
    skip = {a for a in exclude if a is not None}
    return [axis for axis in _varying(res) if axis not in skip]


def _check_panels(res: _Results, facets: list[tuple[str, ...]], n: int):
    if n > MAX_PANELS:
        names = ", ".join(res.axis_name(a) for a in facets)
        raise UserError(f"{n} panels (one per combination of {names}) are too many to read "
                        f"(at most {MAX_PANELS}); narrow the runs with --where KEY=VALUE or "
                        "choose another --by")


def _context(res: _Results, rows: pd.DataFrame) -> str:
    """The fixed settings worth naming under the title (swept ones are on the figure)."""
    def val(key):
        v = res.setting(rows, key)
        return None if v is _MIXED or key in res.keys else v

    parts = []
    cell = val("model.cell")
    act = val("model.activation")
    if cell is not None:
        parts.append(f"{cell} {act}" if cell == "rnn" and act else str(cell))
    if val("model.init") is not None:
        parts.append(f"{val('model.init')} init")
    if val("model.weight_scale") is not None:
        parts.append(f"scale {_fmt(val('model.weight_scale'))}")
    if val("model.hidden") is not None:
        parts.append(f"H = {val('model.hidden')}")
    if val("task.name") is not None:
        parts.append(f"task {val('task.name')}")
    if val(SEQ_LEN) is not None:
        parts.append(f"T = {val(SEQ_LEN)}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# gradient norms per group


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


def _norms(res: _Results, step: int, say: Note) -> dict[str, np.ndarray]:
    """ds of every run at ``step``, in lag order; runs without a record there are left out."""
    from rnnlab.store import load_grad_norms

    ids = res.runs["run_id"].astype(str).tolist()
    g = load_grad_norms(res.folder, run_ids=ids, step=step)
    if len(g) == 0:
        steps = sorted(int(s) for s in load_grad_norms(res.folder, run_ids=ids)["step"].unique())
        if not steps:
            raise UserError(f"{res.folder} holds no gradient norms for the runs plotted; "
                            "rerun `rnnlab sweep`")
        shown = ", ".join(map(str, steps[:12])) + (", ..." if len(steps) > 12 else "")
        raise UserError(f"{res.folder}: no gradient norms at training step {step}; "
                        f"recorded steps: {shown}")
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


def _groups(res: _Results, keys: list[str]) -> dict[tuple, pd.DataFrame]:
    if not keys:
        return {(): res.runs}
    groups = {}
    for value, rows in res.runs.groupby(keys, sort=False, dropna=False):
        value = value if isinstance(value, tuple) else (value,)
        groups[tuple(plain_value(v) for v in value)] = rows
    return groups


def _pool_identical(res: _Results, by_axis, facets, curves_of, what: str, say: Note):
    """Drop facet axes whose values give identical curves everywhere (and say so)."""
    kept = list(facets)
    for axis in list(facets):
        others = [k for a in kept if a != axis for k in a] + list(by_axis or ())
        compared = False
        same = True
        for _, rows in _groups(res, others).items():
            sub = _groups_rows(rows, list(axis))
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
            first = np.array([tuple(plain_value(v) for v in r) == values[0]
                              for r in res.runs[list(axis)].itertuples(index=False)], dtype=bool)
            res.runs = res.runs[first].reset_index(drop=True)
    return kept


def _groups_rows(rows: pd.DataFrame, keys: list[str]) -> dict[tuple, pd.DataFrame]:
    out = {}
    for value, sub in rows.groupby(keys, sort=False, dropna=False):
        value = value if isinstance(value, tuple) else (value,)
        out[tuple(plain_value(v) for v in value)] = sub
    return out


def _zero_cause(res: _Results) -> str:
    """Why a norm can be exactly 0: float underflow, or truncated BPTT not reaching that far."""
    tbptt = res.setting(res.runs, "train.tbptt")
    return "float underflow" if tbptt is None else "truncated BPTT or float underflow"


def _step_text(step: int) -> str:
    return "initialisation (step 0)" if step == 0 else f"training step {step}"


def _gradients(res: _Results, kind: str, by: str | None, step: int, say: Note):
    by_axis = _choose_by(res, kind, by)
    norms = _norms(res, step, say)

    def curve_of(rows: pd.DataFrame) -> _Curve:
        return _curve([norms[str(r)] for r in rows["run_id"]])

    facets = _facets(res, [by_axis])
    what = f"||dE/ds_t|| at step {step}"
    facets = _pool_identical(res, by_axis, facets, curve_of, what, say)
    facet_keys = [k for a in facets for k in a]
    panels = _groups(res, facet_keys)
    order = sorted(panels, key=_order)
    _check_panels(res, facets, len(order))
    by_keys = list(by_axis or ())
    by_values = res.values(by_axis) if by_axis else [()]
    data = []
    for pv in order:
        groups = _groups_rows(panels[pv], by_keys) if by_keys else {(): panels[pv]}
        data.append((pv, {bv: (curve_of(rows), rows) for bv, rows in groups.items()}))
    if kind == "heatmap":
        return _heatmap(res, by_axis, by_values, facets, data, step)
    return _decay(res, by_axis, by_values, facets, data, step, say)


# --------------------------------------------------------------------------------------------
# layout helpers


def _figure(panels: list[tuple], facets: list[tuple[str, ...]], panel: tuple[float, float],
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
        rows = sorted({pv[:split] for pv in panels}, key=_order)
        cols = sorted({pv[split:] for pv in panels}, key=_order)
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


def _suptitle(fig, res: _Results, what: str, rows: pd.DataFrame):
    extra = _context(res, rows)
    if res.pooled:
        extra = (extra + "; " if extra else "") + "same for " + "; ".join(res.pooled)
    fig.suptitle(f"{res.name}: {what}" + (f"\n{extra}" if extra else ""), fontsize=11)


MANY = 8   # more numeric values than this get a colour bar instead of legend entries


def _colours(res: _Results, by_axis, values: list[tuple]):
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


def _key(fig, res: _Results, by_axis, mappable, axes, corner, groups: list, extra: list,
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


# --------------------------------------------------------------------------------------------
# heatmap


def _heatmap(res: _Results, by_axis, by_values, facets, data, step):
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
    fig, axes, left, _, _ = _figure([pv for pv, _ in data], facets, (panel_w, panel_h), single,
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
                             label=f"ds = 0 in a seed ({_zero_cause(res)}, log10 = −∞)"))
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
    _suptitle(fig, res, f"log10 ||dE/ds_t|| at {_step_text(step)}, mean of "
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


# --------------------------------------------------------------------------------------------
# decay against lag, with the Pascanu bound


def _default_loss_at(task: str | None) -> str | None:
    from rnnlab.tasks import MIN_SEQ_LEN, make_task

    try:
        return make_task(task, MIN_SEQ_LEN.get(task, 1) + 10).loss_at
    except (ValueError, TypeError, KeyError):
        return None


def _bound_factor(res: _Results, rows: pd.DataFrame, step: int) -> tuple[float | None, str]:
    """gamma * sigma_max for the bound and ``"gamma = ..."``, or None and why not."""
    cell = res.setting(rows, "model.cell")
    if cell != "rnn":
        return None, f"no bound for cell {_fmt(cell) if cell is not _MIXED else 'mixed'}"
    act = res.setting(rows, "model.activation")
    gamma = GAMMA.get(act) if act is not _MIXED else None
    if gamma is None:
        return None, f"no bound for activation {act}"
    loss_at = res.setting(rows, "train.loss_at")
    if loss_at is None:
        task = res.setting(rows, "task.name")
        loss_at = _default_loss_at(task) if task is not _MIXED else None
    if loss_at != "last":
        return None, "no bound: the loss is not at the last step only"
    steps = res.setting(rows, "train.steps")
    if step == 0:
        column = "sigma_start"
    elif steps is not _MIXED and steps is not None and step == steps:
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


def _decay(res, by_axis, by_values, facets, data, step, say: Note):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    colours, mappable = _colours(res, by_axis, by_values)
    Lmax = max(L for _, groups in data for c, _ in groups.values() for L in c.lengths)
    fig, axes, left, bottom, corner = _figure([pv for pv, _ in data], facets, (4.3, 3.3),
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
            factor, why = _bound_factor(res, rows, step)
            anchor = c.mean[0] if len(c.mean) else np.nan
            if factor is not None and np.isfinite(anchor):
                (b,) = ax.plot(lag, 10.0 ** (anchor + lag * math.log10(factor)), "--",
                               color=colour, lw=1.1, alpha=0.9)
                b.set_gid("bound")
                any_bound = True
                gammas.add(why)
            elif why and factor is None:
                reasons.add(why)
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
    if any_zero:
        handles.append(Line2D([], [], color="0.3", ls="none", marker="v",
                              label=f"ds = 0 in a seed ({_zero_cause(res)})"))
    if any_bad:
        handles.append(Line2D([], [], color="0.3", ls="none", marker="x",
                              label="ds not finite in a seed"))
    _key(fig, res, by_axis, mappable, axes, corner, groups, handles)
    _suptitle(fig, res, f"decay of ||dE/ds_t|| with lag at {_step_text(step)}", res.runs)
    return fig


# --------------------------------------------------------------------------------------------
# success against sequence length


def _success(res: _Results, by: str | None, metric: str, say: Note):
    from matplotlib.transforms import offset_copy

    by_axis = _choose_by(res, "success", by)
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
                            f"{_fmt(res.setting(runs, 'task.name'))}); use --metric solved")
    res.runs = runs
    seq_axis = next((a for a in res.axes if SEQ_LEN in a), None)
    facets = _facets(res, [by_axis, seq_axis])
    panels = _groups(res, [k for a in facets for k in a])
    order = sorted(panels, key=_order)
    _check_panels(res, facets, len(order))
    by_values = res.values(by_axis) if by_axis else [()]
    colours, mappable = _colours(res, by_axis, by_values)
    xs = sorted(runs["_x"].dropna().unique())
    if len(xs) == 1:
        say(f"task.seq_len has one value ({int(xs[0])}): points instead of lines")
    fig, axes, left, bottom, corner = _figure(order, facets, (4.3, 3.3), (7.5, 4.8),
                                              sharey=True, extra_w=1.6, extra_h=0.6)
    markers = "osD^vP*X"
    nseeds = set()
    for ax, pv in zip(axes, order, strict=True):
        rows_panel = panels[pv]
        k = len(by_values)
        for i, bv in enumerate(by_values):
            rows = (rows_panel if not by_axis else
                    rows_panel[[tuple(plain_value(v) for v in r) == bv
                                for r in rows_panel[list(by_axis)].itertuples(index=False)]])
            if len(rows) == 0:
                continue
            stats = rows.groupby("_x")["_y"].agg(["mean", "count", "std"]).sort_index()
            p = stats["mean"].to_numpy(dtype=float)
            n = stats["count"].to_numpy(dtype=float)
            nseeds.update(int(v) for v in n)
            if metric == "solved":
                se = np.sqrt(np.clip(p * (1 - p), 0, None) / np.maximum(n, 1))
            else:
                se = np.where(n > 1, stats["std"].to_numpy(dtype=float) / np.sqrt(n), 0.0)
            dodge = offset_copy(ax.transData, fig=fig, x=(i - (k - 1) / 2) * 3.0, units="points")
            label = res.label(by_axis, bv, names=False) if by_axis else "all runs"
            cont = ax.errorbar(stats.index.to_numpy(dtype=float), p, yerr=se, color=colours[bv],
                               marker=markers[i % len(markers)], ms=5, lw=1.6, capsize=3,
                               elinewidth=1, label=label, transform=dodge)
            cont.lines[0].set_gid("mean")
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
    _key(fig, res, by_axis, mappable, axes, corner, groups, extra,
         note=f"±1 s.e. over {n} seed{'s' if n != 1 else ''}")
    what = "solved fraction" if metric == "solved" else "held-out accuracy"
    _suptitle(fig, res, f"{what} against sequence length", runs)
    return fig


def _chance(res: _Results, rows: pd.DataFrame) -> float | None:
    from rnnlab.tasks import TASK_OPTIONS, make_task

    name = res.setting(rows, "task.name")
    if name is _MIXED or name not in TASK_OPTIONS:
        return None
    options = {}
    for option in TASK_OPTIONS[name]:
        value = res.setting(rows, f"task.{option}")
        if value is _MIXED:
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
