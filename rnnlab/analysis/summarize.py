"""Per-run gradient statistics, the grouped summary table (of a results folder: ``summary_of``)
and its text renderings.

Gradient statistics of a run come from ``ds``, the norm of dLoss/ds_t at time step ``t`` (1..T),
recorded at one training step. With ``lag = T - t`` (how far the gradient travelled back):

* ``T``, ``ds_1``, ``ds_T``: the sequence length and ``ds`` at the first and last time step;
* ``grad_ratio = log10(ds_1 / ds_T)``: negative when gradients vanish, positive when they
  explode. ``ds_1 == 0`` (underflow to zero) gives ``-inf``, reported as such: the gradient
  vanished completely. ``ds_T`` zero or not finite gives NaN (no reference to compare with);
* ``decay``: least-squares slope of ``log10 ds`` against ``lag`` (decades per time step,
  negative = vanishing), fitted on the finite, positive ``ds`` only, so zeros from underflow are
  left out instead of producing ``-inf`` in the fit; fewer than two usable points give NaN;
* ``horizon``: the largest lag at which ``ds >= 1e-3 * ds_T`` (compared in log10 with a 1e-9
  tolerance so that ``ds`` exactly at the threshold counts despite rounding); NaN when ``ds_T``
  is zero or not finite;
* ``horizon_censored``: 1 when the horizon is the longest lag the sequence has (``T - 1``): the
  error never fell below the threshold within the sequence, so the true horizon is at least that
  (a censored measurement, printed ``>= 14``), 0 otherwise.

``bound`` (per group, from the runs table) is the Pascanu, Mikolov & Bengio (2013, section 2.1)
bound on ``decay``: log10(gamma * sigma_max(Ws)) at initialisation, with gamma the largest
derivative of the activation (1 for tanh, relu and identity; 1/4 for sigmoid); blank for the
LSTM. ``decay <= bound`` wherever gamma * sigma_max < 1 (the sufficient condition for vanishing).

Means in :func:`summarize` propagate infinities (a group holding a ``-inf`` grad_ratio has mean
``-inf``), which keeps complete vanishing visible instead of silently averaging it away.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from rnnlab.analysis.stats import median_interval, t_interval, wilson
from rnnlab.errors import UserError

STAT_COLUMNS = [
    "run_id", "step", "T", "ds_1", "ds_T", "grad_ratio", "decay", "horizon", "horizon_censored",
]
SUMMARY_COLUMNS = [
    "n",
    "failed",
    "solved",
    "solved_lo",
    "solved_hi",
    "diverged",
    "exploded",
    "loss",
    "loss_lo",
    "loss_hi",
    "acc",
    "acc_lo",
    "acc_hi",
    "clip_rate",
    "grad_ratio",
    "decay",
    "decay_sd",
    "bound",
    "horizon",
    "horizon_censored",
]
#: Per-run accuracy criteria beside ``accuracy`` (``rnnlab.tasks.ACCURACY_CRITERIA``: adding's
#: published criteria) -> their summary column; each follows the fixed columns, with its t
#: interval, only when the runs table holds a value of it.
CRITERIA_COLUMNS = {"accuracy_hs": "acc_hs", "accuracy_pascanu": "acc_pascanu"}
_LOG_TOL = 1e-9


def run_gradient_stats(
    grad_norms: pd.DataFrame | None, step: int | None = None, threshold: float = 1e-3
) -> pd.DataFrame:
    """One row per run (sorted by run_id) with the statistics of the module docstring.

    ``step`` selects the training step; by default each run's first recorded step
    (initialisation). ``threshold`` is the relative level that defines ``horizon``.
    """
    if grad_norms is None or len(grad_norms) == 0:
        return _empty_stats()
    g = grad_norms[["run_id", "step", "t", "ds"]]
    if step is None:
        g = g[g["step"] == g.groupby("run_id")["step"].transform("min")]
    else:
        g = g[g["step"] == step]
    if len(g) == 0:
        return _empty_stats()
    codes, ids = pd.factorize(g["run_id"], sort=True)
    n = len(ids)
    t = g["t"].to_numpy(dtype=np.int64)
    ds = g["ds"].to_numpy(dtype=float, na_value=np.nan)
    steps = g["step"].to_numpy(dtype=np.int64)

    T = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(T, codes, t)
    t_first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(t_first, codes, t)
    run_step = np.zeros(n, dtype=np.int64)
    run_step[codes] = steps
    lag = (T[codes] - t).astype(float)

    ds_T = np.full(n, np.nan)
    at_T = t == T[codes]
    ds_T[codes[at_T]] = ds[at_T]
    ds_1 = np.full(n, np.nan)
    at_1 = t == t_first[codes]
    ds_1[codes[at_1]] = ds[at_1]
    ref_ok = np.isfinite(ds_T) & (ds_T > 0)

    with np.errstate(divide="ignore", invalid="ignore"):
        log_T = np.where(ref_ok, np.log10(np.where(ref_ok, ds_T, 1.0)), np.nan)
        log_1 = np.where(ds_1 >= 0, np.log10(np.abs(ds_1)), np.nan)
        grad_ratio = log_1 - log_T

    usable = np.isfinite(ds) & (ds > 0)
    c, x = codes[usable], lag[usable]
    y = np.log10(ds[usable])
    cnt = np.bincount(c, minlength=n).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mx = np.bincount(c, weights=x, minlength=n) / cnt
        my = np.bincount(c, weights=y, minlength=n) / cnt
        dx, dy = x - mx[c], y - my[c]
        sxx = np.bincount(c, weights=dx * dx, minlength=n)
        sxy = np.bincount(c, weights=dx * dy, minlength=n)
        decay = np.where((cnt >= 2) & (sxx > 0), sxy / sxx, np.nan)

    above = y - log_T[c] >= math.log10(threshold) - _LOG_TOL
    horizon = np.full(n, -1.0)
    np.maximum.at(horizon, c[above], x[above])
    horizon[~ref_ok | (horizon < 0)] = np.nan
    censored = np.where(np.isnan(horizon), np.nan, (horizon >= T - t_first).astype(float))

    return pd.DataFrame(
        {
            "run_id": pd.Series(np.asarray(ids), dtype="str"),
            "step": run_step,
            "T": T,
            "ds_1": ds_1,
            "ds_T": ds_T,
            "grad_ratio": grad_ratio,
            "decay": decay,
            "horizon": horizon,
            "horizon_censored": censored,
        }
    )


def _empty_stats() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": pd.Series([], dtype="str"),
            "step": pd.Series([], dtype="int64"),
            "T": pd.Series([], dtype="int64"),
            **{c: pd.Series([], dtype=float) for c in STAT_COLUMNS[3:]},
        }
    )


def _floats(values) -> np.ndarray:
    """Floats of a column that may hold bools, None, pd.NA or NaN (missing -> NaN)."""
    return np.array([np.nan if _missing(v) else float(v) for v in values], dtype=float)


def _missing(v: object) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    return isinstance(v, float | np.floating) and math.isnan(v)


def summarize(
    runs: pd.DataFrame,
    grad_norms: pd.DataFrame | None,
    by: list[str] | None = None,
    step: int | None = None,
    lyapunov: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Summary table: one row per group of runs, sorted by the group keys (missing keys first).

    ``by`` defaults to the swept columns (the run columns whose name contains a '.'), in their
    order; an empty list gives one row for all runs. Columns (see :mod:`rnnlab.analysis.stats`):

    * ``n`` runs, ``failed`` (count; failed runs count nowhere else);
    * ``solved`` fraction with its Wilson 95 % interval ``solved_lo``, ``solved_hi``;
    * ``diverged`` (non-finite loss, state or weights) and ``exploded`` (finite final loss above
      ``rnnlab.tasks.EXPLODED_FACTOR`` times the task's baseline loss): fractions;
    * ``loss``: median final loss with its order-statistic 95 % interval (a diverged run counts
      as an infinite loss); ``acc``: mean accuracy with its t interval, clamped to [0, 1];
      when the runs hold them (adding), ``acc_hs`` and ``acc_pascanu`` follow the fixed columns,
      the same mean and interval of ``accuracy_hs`` (Hochreiter & Schmidhuber: |error| < 0.04 on
      the mean, 0.08 on the sum) and ``accuracy_pascanu`` (Pascanu et al.: squared error on the
      mean <= 0.04), each with ``_lo``, ``_hi`` (see ``rnnlab.tasks.Task.criteria``);
    * ``clip_rate``, ``grad_ratio``, ``decay`` (``decay_sd``), ``bound``, ``horizon``: means;
      ``horizon_censored``: the fraction of runs whose horizon was cut off by the sequence.

    The gradient statistics and ``bound`` are taken at training step ``step`` (default: each
    run's first recorded step, its initialisation). ``bound`` exists at the first and the last
    step only (the runs record sigma_max(Ws) there) and only where the loss is at the last step.
    With a ``lyapunov`` table (``train.lyapunov``) the columns of
    ``rnnlab.analysis.lyapunov_stats.SUMMARY_COLUMNS`` follow: ``lambda1``, ``lambda_sum`` and
    ``decay_gap`` at the same step, each a group mean with its t interval (``_lo``, ``_hi``).
    """
    if by is None:
        by = [c for c in runs.columns if "." in str(c)]
    missing = [c for c in by if c not in runs.columns]
    if missing:
        available = ", ".join(str(c) for c in runs.columns)
        raise UserError(f"cannot group by {missing[0]!r}: no such run column; have: {available}")
    by = list(dict.fromkeys(by))
    runs = runs.reset_index(drop=True)
    vals, criteria, lyap = _run_values(runs, grad_norms, step, lyapunov)
    keys = by if by else ["_all"]
    frame = pd.concat([runs[by], vals], axis=1) if by else vals.assign(_all=0)
    frame = frame.sort_values(keys, na_position="first", kind="mergesort")
    rows = [(*(key if isinstance(key, tuple) else (key,)), *_group_row(g, criteria, lyap))
            for key, g in frame.groupby(keys, sort=False, dropna=False)]
    columns = summary_columns(by, criteria, lyapunov=bool(lyap))
    out = pd.DataFrame(rows, columns=([] if by else ["_all"]) + columns)
    for col in by:
        out[col] = out[col].astype(runs[col].dtype)
    if not by:
        out = out.drop(columns="_all")
    out["n"] = out["n"].astype(np.int64)
    out["failed"] = out["failed"].astype(np.int64)
    return out[columns].reset_index(drop=True)


def summary_columns(by: list[str], criteria=(), lyapunov: bool = False) -> list[str]:
    """The columns of a summary table (:func:`summarize` builds its table with these): the group
    keys ``by``, :data:`SUMMARY_COLUMNS`, then each accuracy criterion the runs hold (a name of
    :data:`CRITERIA_COLUMNS`) and, with the Lyapunov analysis, its columns, each with its
    interval. Claims are checked against it before a sweep trains."""
    from rnnlab.analysis.lyapunov_stats import SUMMARIZED

    extra = [CRITERIA_COLUMNS[name] + suffix for name in CRITERIA_COLUMNS if name in criteria
             for suffix in ("", "_lo", "_hi")]
    if lyapunov:
        extra += [name + suffix for name in SUMMARIZED for suffix in ("", "_lo", "_hi")]
    return list(by) + SUMMARY_COLUMNS + extra


def _run_values(runs: pd.DataFrame, grad_norms, step, lyapunov):
    """One row per run of the values the groups aggregate (failed runs NaN everywhere but
    ``_failed``), the accuracy criteria the runs hold and the Lyapunov columns' names."""
    stats = run_gradient_stats(grad_norms, step=step).set_index("run_id")
    ids = runs["run_id"].astype(str)

    status = runs["status"].astype(object) if "status" in runs else pd.Series([None] * len(runs))
    failed = (status == "failed").to_numpy()

    def column(name: str) -> np.ndarray:
        vals = _floats(runs[name]) if name in runs.columns else np.full(len(runs), np.nan)
        vals[failed] = np.nan
        return vals

    def stat(name: str) -> np.ndarray:
        vals = stats[name].reindex(ids).to_numpy(dtype=float, copy=True)
        vals[failed] = np.nan
        return vals

    def fraction_of(flag: np.ndarray) -> np.ndarray:
        out = flag.astype(float)
        out[failed] = np.nan
        return out

    diverged = (status == "diverged").to_numpy()
    loss = column("final_loss")
    loss[diverged & np.isnan(loss)] = np.inf
    vals = pd.DataFrame(
        {
            "_failed": failed.astype(np.int64),
            "_solved": column("solved"),
            "_diverged": fraction_of(diverged),
            "_exploded": fraction_of((status == "exploded").to_numpy()),
            "_loss": loss,
            "_acc": column("accuracy"),
            "_clip": column("clip_rate"),
            "_ratio": stat("grad_ratio"),
            "_decay": stat("decay"),
            "_bound": _bounds_at(runs, stats, ids, step, failed),
            "_horizon": stat("horizon"),
            "_censored": stat("horizon_censored"),
        }
    )
    # the published accuracy criteria, when the runs hold them (adding)
    criteria = [name for name in CRITERIA_COLUMNS
                if name in runs.columns and not np.isnan(column(name)).all()]
    for name in criteria:
        vals["_crit_" + name] = column(name)
    # the Lyapunov analysis, when the folder has it (rnnlab.analysis.lyapunov_stats)
    from rnnlab.analysis.lyapunov_stats import summary_values

    lyap = summary_values(lyapunov, run_gradient_stats(grad_norms, step=step), ids, failed, step)
    for name, v in lyap.items():
        vals["_lyap_" + name] = v
    return vals, criteria, list(lyap)


def _group_row(g: pd.DataFrame, criteria: list[str], lyap: list[str]) -> tuple:
    """The summary columns of one group of runs, in ``SUMMARY_COLUMNS`` order, then each
    criterion's and each Lyapunov column's mean and interval."""
    solved = g["_solved"].dropna()
    lo, hi = wilson(float(solved.sum()), len(solved))
    loss_mid, loss_lo, loss_hi = median_interval(g["_loss"])
    acc, acc_lo, acc_hi = t_interval(g["_acc"], bounds=(0.0, 1.0))
    return (len(g), int(g["_failed"].sum()),
            _mean(solved), lo, hi, _mean(g["_diverged"]), _mean(g["_exploded"]),
            loss_mid, loss_lo, loss_hi, acc, acc_lo, acc_hi,
            _mean(g["_clip"]), _mean(g["_ratio"]), _mean(g["_decay"]),
            g["_decay"].std(), _mean(g["_bound"]), _mean(g["_horizon"]),
            _mean(g["_censored"]),
            *(x for name in criteria for x in t_interval(g["_crit_" + name], bounds=(0.0, 1.0))),
            *(x for name in lyap for x in t_interval(g["_lyap_" + name])))


def _mean(values) -> float:
    """Mean of the non-missing values (infinities propagate); NaN when there are none."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else math.nan


def _bounds_at(runs, stats, ids, step, failed) -> np.ndarray:
    """Each run's Pascanu bound at the training step its gradient statistics come from:
    ``decay_bound`` (sigma_max at initialisation) at step 0, ``decay_bound_end`` at the run's
    last recorded step, NaN at any other step."""
    start = _floats(runs["decay_bound"]) if "decay_bound" in runs else np.full(len(runs), np.nan)
    end = (_floats(runs["decay_bound_end"]) if "decay_bound_end" in runs
           else np.full(len(runs), np.nan))
    at = stats["step"].reindex(ids).to_numpy(dtype=float)
    last = (_floats(runs["last_step"]) if "last_step" in runs else np.full(len(runs), np.nan))
    if step is None:
        out = np.where(at == 0, start, np.nan)
    else:
        out = np.where(at == 0, start, np.where((at == last) & (at > 0), end, np.nan))
    out[failed] = np.nan
    return out


def summary_of(out: Path, by: list[str] | None = None, step: int | None = None) -> pd.DataFrame:
    """The summary table of a results folder (gradient statistics at the first logged step,
    i.e. at initialisation, unless ``step`` says otherwise; a step no run logged is a
    UserError naming the recorded ones)."""
    from rnnlab.results.readers import check_step, load_grad_norms, load_lyapunov, load_runs

    runs = load_runs(out)
    ok = runs[runs["status"] != "failed"]["run_id"].tolist()
    norms = load_grad_norms(out, step=0 if step is None else step) if ok else None
    if step is not None and ok and len(norms) == 0:
        check_step(out, step)
    lyap = load_lyapunov(out, step=0 if step is None else step) if ok else None
    return summarize(runs, norms, by=by, step=step, lyapunov=lyap)


def format_value(x: object, missing: str = "-") -> str:
    """Text of one table cell: floats to 4 significant digits, ints exact, missing -> ``missing``.

    Deterministic across machines: ``0.1235``, ``30``, ``1.235e+04``, ``inf``, ``-inf``;
    bools are ``true``/``false``; -0 prints as 0.
    """
    if _missing(x):
        return missing
    if isinstance(x, bool | np.bool_):
        return "true" if x else "false"
    if isinstance(x, int | np.integer):
        return str(int(x))
    if isinstance(x, float | np.floating):
        x = float(x)
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        text = format(x, ".4g")
        return "0" if text == "-0" else text
    return str(x)


def json_value(x: object) -> object:
    if _missing(x):
        return None
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, int | np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        x = float(x)
        rounded = float(format_value(x))
        if math.isinf(rounded):  # infinite, or rounded past the largest float
            return "inf" if x > 0 else "-inf"
        return rounded
    return str(x)


def render(table: pd.DataFrame, fmt: str) -> str:
    """Text of ``table`` as ``"csv"``, ``"markdown"`` (GitHub pipe table) or ``"json"``.

    Numbers have 4 significant digits so reruns on other machines print identical text. Missing
    values are empty in CSV, ``-`` in markdown and ``null`` in JSON; JSON writes infinities as
    the strings ``"inf"``/``"-inf"`` (JSON has no infinity).
    """
    columns = [str(c) for c in table.columns]
    rows = list(table.itertuples(index=False, name=None))
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([format_value(v, missing="") for v in row])
        return buf.getvalue()
    if fmt == "json":
        records = [dict(zip(columns, map(json_value, row), strict=True)) for row in rows]
        return json.dumps(records, indent=2) + "\n"
    if fmt == "markdown":
        return _markdown(table, columns, rows)
    raise UserError(f"unknown format {fmt!r}; allowed: csv, markdown, json")


def display_cells(table: pd.DataFrame) -> list[list[str]]:
    """Cell texts for people (markdown, terminal): :func:`format_value`, except that a horizon
    any of whose runs was censored prints as a lower bound, ``>= 14``, and a censored limit of
    the limit map as ``> 100`` or ``< 2``."""
    cells = [[format_value(v) for v in row] for row in table.itertuples(index=False, name=None)]
    columns = [str(c) for c in table.columns]
    for horizon in ("horizon", "horizon_0", "horizon_B"):
        if horizon in columns and f"{horizon}_censored" in columns:
            h = columns.index(horizon)
            for row, censored in zip(cells, table[f"{horizon}_censored"], strict=True):
                if not _missing(censored) and censored > 0 and row[h] != "-":
                    row[h] = ">= " + row[h]
    if "limit" in columns and "censored" in columns:       # the limit map (analysis.limits)
        k = columns.index("limit")
        for row, censored in zip(cells, table["censored"], strict=True):
            if censored in ("above", "below") and row[k] != "-":
                row[k] = ("> " if censored == "above" else "< ") + row[k]
    return cells


def _markdown(table: pd.DataFrame, columns: list[str], rows: list[tuple]) -> str:
    cells = [[v.replace("|", "\\|") for v in row] for row in display_cells(table)]
    header = [c.replace("|", "\\|") for c in columns]
    right = [
        pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])
        for c in table.columns
    ]
    widths = [max([3, len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]

    def line(values: list[str]) -> str:
        padded = [
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    sep = ["-" * (w - 1) + ":" if r else "-" * w for w, r in zip(widths, right, strict=True)]
    return "\n".join([line(header), line(sep), *(line(r) for r in cells)]) + "\n"
