"""The results page: one self-contained HTML file of a results folder (``rnnlab report --html``).

Everything is inline (styles, data, plotly.js), so the file opens from disk, offline, years later,
and can be mailed or attached to a supplement. Sections, top to bottom:

* the experiment: name, description, the resolved YAML, the command, when, how long (the sum of
  the runs' training time), and every machine and software fact of the manifest;
* claims: each claim of the experiment, whether it holds on this folder (``rnnlab check``) and
  the values it rests on, where the experiment states claims (:func:`claims_html`);
* the summary table (``rnnlab.analysis.summarize.summary_of``), every column, an interval as one
  cell; sortable by a click on a header, filterable per column (``>0.5``, ``<=3``, ``=1`` or
  text); a click on a row shows its first run below;
* figures drawn with plotly (hover shows the runs and the value, drag zooms): the heatmap of the
  mean over seeds of ``log10 ||dE/ds_t||`` over lag and the ``by`` axis, the decay of
  ``||dE/ds_t||`` with the lag and the Pascanu et al. bound where it applies, both at a training
  step chosen on the page, and the solved fraction against ``task.seq_len`` with its Wilson band
  where the summary has one; where the runs stored the Lyapunov analysis, their spectrum at
  the chosen step beside the measured decay. Panels per other swept key as in ``rnnlab plot``
  (same grouping and pooling, :mod:`rnnlab.plot.gradients`); a figure that cannot be drawn says
  why;
* one run: loss and accuracy per logged step, the gradient norm before and after clipping (and
  the clip rate), and ``ds``, ``dWs``, ``dWx`` over ``t`` at each logged step.

For display only, long series are thinned (the stored data never is): at most
:data:`MAX_STEPS` logged training steps per figure and :data:`MAX_RUN_STEPS` per run,
:data:`MAX_POINTS` points per curve of a figure and :data:`MAX_RUN_POINTS` per curve of a run
(fewer, down to :data:`MIN_RUN_POINTS`, when all runs' norms together would exceed
:data:`RUN_BUDGET` values), numbers to 4 significant digits (a run's norm curves to 3).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import shlex
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from rnnlab.errors import UserError

PAGE_NAME = "report.html"
TEMPLATE = "plotly_white"
MAX_STEPS = 6            # training steps offered for the heatmap and decay figures
MAX_RUN_STEPS = 6        # logged steps drawn in a run's norm curves
MAX_POINTS = 400         # points of one curve of a figure (lags of the heatmap and decay)
MAX_RUN_POINTS = 120     # points of one curve of a run (t of its norms, steps of its metrics)
RUN_BUDGET = 100_000     # norm values of all runs together: fewer points per curve in big folders
MIN_RUN_POINTS = 24
MISSING_HINT = "the results page needs plotly: pip install 'rnnlab[html]'"
MACHINE_SKIP = {"experiment", "command", "name", "fingerprint", "format_version", "created"}

Note = Callable[[str], None]


def page_path(folder: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Where :func:`write_page` writes: ``out``, or ``FOLDER/report.html``."""
    return Path(out) if out is not None else Path(folder) / PAGE_NAME


def require_plotly():
    try:
        import plotly  # noqa: F401
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise UserError(MISSING_HINT) from None
    return get_plotlyjs


def write_page(folder: str | os.PathLike, out: str | os.PathLike | None = None,
               note: Note | None = None) -> Path:
    """Write the page of ``folder`` to ``out`` (default ``FOLDER/report.html``), atomically."""
    from rnnlab.results.parquet_io import write_text_atomic

    path = page_path(folder, out)
    if path.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"{path}: the page is HTML; give a file name ending in .html")
    text = build_page(folder, note)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    return path


# ------------------------------------------------------------------------------- numbers
def _num(x, digits: int = 4) -> float | None:
    """A JSON number at ``digits`` significant digits; None for missing or non-finite values."""
    if x is None or x is pd.NA:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


def _pow10(x) -> float | None:
    """``10 ** x`` as a JSON number; None where it is not finite or beyond float range."""
    if x is None or not math.isfinite(x) or x > 308:
        return None
    return _num(10.0 ** x)


def _clean(obj):
    """``obj`` with numpy values as Python ones and non-finite floats as None (valid JSON)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _nums(values, digits: int = 4) -> list:
    return [_num(v, digits) for v in values]


def thin(n: int, most: int) -> np.ndarray:
    """Indices of at most ``most`` of ``n`` points, evenly spread, first and last kept."""
    if n <= most:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, most)).astype(int))


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


# ------------------------------------------------------------------------------- the page
def build_page(folder: str | os.PathLike, note: Note | None = None) -> str:
    """The HTML text of the page of ``folder`` (module docstring)."""
    get_plotlyjs = require_plotly()
    from rnnlab.notebook import Results

    say = note or (lambda message: None)
    r = Results(folder)
    runs = r.runs
    summary = r.summary()
    steps = _logged_steps(r)
    figures, problems = [], []
    shown_steps = [steps[i] for i in thin(len(steps), MAX_STEPS)] if steps else []
    for kind in ("heatmap", "decay"):
        per_step = {}
        for step in shown_steps:
            try:
                per_step[str(step)] = _gradient_figure_any(r.path, kind, step)
            except UserError as e:
                per_step[str(step)] = None
                problems.append(f"{kind} at step {step}: {e}")
        if any(v is not None for v in per_step.values()):
            figures.append({"id": kind, "steps": per_step})
    if _has_lyapunov(r.path):
        per_step = {}
        for step in shown_steps:
            try:
                per_step[str(step)] = _lyapunov_figure(r.path, step)
            except UserError as e:
                per_step[str(step)] = None
                problems.append(f"lyapunov at step {step}: {e}")
        if any(v is not None for v in per_step.values()):
            figures.append({"id": "lyapunov", "steps": per_step})
    try:
        success = _success_figure(r.path, summary)
    except UserError as e:
        success = None
        problems.append(f"success: {e}")
    if success is not None:
        figures.append({"id": "success", "steps": {"all": success}})
    for p in problems:
        say(f"page: {p}")
    import plotly.io as pio

    template = pio.templates[TEMPLATE].to_plotly_json()
    for f in figures:                 # one copy of the plotly template, not one per figure
        for fig in f["steps"].values():
            if fig is not None:
                fig["layout"].pop("template", None)
    data = {
        "template": template,
        "figures": figures,
        "steps": [str(s) for s in shown_steps],
        "runs": _run_data(r, runs),
        "problems": problems,
    }
    body = "\n".join([
        _header_html(r, runs),
        f"<section id=\"claims\">{claims_html(r.path, r.manifest)}</section>",
        _summary_html(summary, runs),
        _figures_html(figures, shown_steps, problems),
        _run_view_html(runs),
    ])
    payload = json.dumps(_clean(data), separators=(",", ":"), allow_nan=False)
    payload = payload.replace("</", "<\\/")          # no "</script>" inside the data
    return _TEMPLATE.format(
        title=_esc(f"rnnlab: {r.name}"), style=_STYLE, plotly=get_plotlyjs(), body=body,
        data=payload, script=_SCRIPT)


def _logged_steps(r) -> list[int]:
    """Training steps with gradient norms (read from the step column only)."""
    table = r.scanner(columns=[]).to_table()
    return sorted({int(s) for s in table.column("step").to_pylist()})


def _header_html(r, runs: pd.DataFrame) -> str:
    import yaml

    m = r.manifest
    exp = m.get("experiment") or {}
    desc = exp.get("description") or ""
    command = m.get("command")
    command = shlex.join(str(c) for c in command) if isinstance(command, list) else command
    wall = pd.to_numeric(runs.get("wall_time"), errors="coerce").sum() if len(runs) else 0.0
    counts = runs["status"].astype(str).value_counts().to_dict() if "status" in runs else {}
    status = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    facts = [(k, v) for k, v in m.items() if k not in MACHINE_SKIP]
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(_fact(v))}</td></tr>" for k, v in facts)
    resolved = yaml.safe_dump(exp, sort_keys=False, default_flow_style=None, width=96)
    return f"""<header>
<h1>{_esc(r.name)}</h1>
<p class="desc">{_esc(desc)}</p>
<table class="facts">
<tr><th>folder</th><td>{_esc(r.path)}</td></tr>
<tr><th>when</th><td>{_esc(m.get("created", "-"))}</td></tr>
<tr><th>training time</th><td>{_esc(_duration(wall))} (sum over the runs)</td></tr>
<tr><th>runs</th><td>{len(runs)} ({_esc(status)})</td></tr>
<tr><th>command</th><td><code>{_esc(command or "-")}</code></td></tr>
{rows}
</table>
<details><summary>resolved experiment (YAML)</summary><pre id="yaml">{_esc(resolved)}</pre>
</details>
</header>"""


def _fact(v, key: str = "") -> str:
    if key == "engine" and v == {}:             # fp_stack.engine: no kernel ran
        return "the NumPy engine"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fact(x, k)}" for k, x in v.items()) or "none"
    if isinstance(v, list):
        return ", ".join(_fact(x) for x in v) or "none"
    return "-" if v is None else str(v)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    return str(_dt.timedelta(seconds=round(seconds))) if seconds >= 60 else f"{seconds:.1f} s"


def claims_html(folder: Path, manifest: dict) -> str:
    """The claims section: each claim of the experiment recorded in the manifest, whether it
    holds on this folder's summary (``rnnlab check``) and the values it rests on; empty when
    the experiment states none."""
    from rnnlab.experiment.check import check_folder

    if not (manifest.get("experiment") or {}).get("claims"):
        return ""
    try:
        results = check_folder(Path(folder))
    except UserError as e:
        return f'<h2>Claims</h2><p class="problems">cannot check the claims: {_esc(e)}</p>'
    held = sum(r.holds for r in results)
    rows = []
    for r in results:
        verdict = "PASS" if r.holds else "FAIL"
        quant = {"all": "", "any": " (on some row)", "none": " (on no row)"}.get(r.holds_on, "")
        where = f" where {r.where}" if r.where else ""
        rows.append(f'<tr class="{verdict.lower()}"><td>{verdict}</td><td>{_esc(r.says)}</td>'
                    f"<td><code>{_esc(r.expect + quant + where)}</code></td>"
                    f"<td>{_esc(r.observed)}</td></tr>")
    return (f"<h2>Claims</h2><p>{held} of {len(results)} claim(s) hold on this folder "
            "(<code>rnnlab check</code>).</p><table id=\"claims-table\"><thead><tr><th>verdict"
            "</th><th>claim</th><th>predicate</th><th>observed</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


# ------------------------------------------------------------------------------- table
def _group_runs(summary: pd.DataFrame, runs: pd.DataFrame, keys: list[str]) -> list[list[str]]:
    from rnnlab.results.parquet_io import plain_value

    def key_of(values) -> tuple:
        return tuple(plain_value(v) for v in values)

    groups: dict[tuple, list[str]] = {}
    for rid, *vals in runs[["run_id", *keys]].itertuples(index=False, name=None):
        groups.setdefault(key_of(vals), []).append(str(rid))
    return [groups.get(key_of(vals), [])
            for vals in summary[keys].itertuples(index=False, name=None)]


def _summary_html(summary: pd.DataFrame, runs: pd.DataFrame) -> str:
    from rnnlab.report.tables import (
        candidates,
        cell_texts,
        interval_cells,
        intervals,
        key_columns,
        short_names,
    )

    keys = key_columns(summary)
    texts = cell_texts(summary)
    pairs = intervals(summary.columns)
    cols = keys + candidates(summary)
    names = short_names(keys)
    head = "".join(
        f'<th title="{_esc(c)}"><button class="sort" data-col="{i}">{_esc(names.get(c, c))}'
        f'</button></th>' for i, c in enumerate(cols))
    filters = "".join(f'<th><input class="filter" data-col="{i}" placeholder="filter" '
                      f'aria-label="filter {_esc(c)}"></th>' for i, c in enumerate(cols))
    members = _group_runs(summary, runs, keys)
    cells = {c: (interval_cells(summary, c, texts) if c in pairs else texts[c]) for c in cols}
    body = []
    for i in range(len(summary)):
        tds = []
        for c in cols:
            v = summary[c].iloc[i]
            sort = _num(v) if summary[c].dtype.kind in "ifb" else None
            attr = f' data-v="{sort}"' if sort is not None else ""
            tds.append(f"<td{attr}>{_esc(cells[c][i])}</td>")
        first = members[i][0] if members[i] else ""
        body.append(f'<tr data-run="{_esc(first)}" title="runs: {_esc(" ".join(members[i]))}">'
                    + "".join(tds) + "</tr>")
    return f"""<section id="summary">
<h2>Summary</h2>
<p class="hint">One row per grid point; an interval is a 95 % interval over seeds. Click a
header to sort, type in a filter (<code>&gt;0.5</code>, <code>&lt;=3</code>, <code>=1</code> or
text), click a row to see its first run below. <span id="shown"></span></p>
<div class="scroll"><table id="summary-table">
<thead><tr>{head}</tr><tr class="filters">{filters}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody></table></div>
</section>"""


# ------------------------------------------------------------------------------- figures
def _grid(n: int) -> tuple[int, int]:
    cols = min(3, n)
    return math.ceil(n / cols), cols


def _palette(n: int) -> list[str]:
    import plotly.colors as pc

    if n <= 10:
        return pc.qualitative.Plotly[:n] if n else []
    return pc.sample_colorscale("Viridis", [i / max(n - 1, 1) for i in range(n)])


def _gradient_figure_any(folder: Path, kind: str, step: int) -> dict:
    """:func:`_gradient_figure` with ``rnnlab plot``'s default ``by``; when that gives too many
    panels, with each varying axis as ``by`` in turn, the one of most values first."""
    from rnnlab.plot.data import load_plot_data, varying_axes

    try:
        return _gradient_figure(folder, kind, step)
    except UserError as first:
        if "too many" not in str(first):
            raise
        res = load_plot_data(folder, (), lambda m: None)
        for axis in sorted(varying_axes(res), key=lambda a: -len(res.values(a))):
            try:
                return _gradient_figure(folder, kind, step, by=axis[0])
            except UserError:
                continue
        raise


def _gradient_figure(folder: Path, kind: str, step: int, by: str | None = None) -> dict:
    """The heatmap or decay figure at ``step`` as plotly JSON (a dict)."""
    from plotly.subplots import make_subplots

    from rnnlab.plot.data import load_plot_data
    from rnnlab.plot.decay import decay_bound_factor
    from rnnlab.plot.gradients import gradient_panels

    res = load_plot_data(folder, (), lambda m: None)
    by_axis, by_values, facets, data = gradient_panels(res, kind, by, step, lambda m: None)
    facet_keys = tuple(k for a in facets for k in a)
    titles = [res.label(facet_keys, pv) if facets else "" for pv, _ in data]
    nrow, ncol = _grid(len(data))
    fig = make_subplots(rows=nrow, cols=ncol, subplot_titles=titles, shared_yaxes=True,
                        horizontal_spacing=0.06, vertical_spacing=0.12)
    colours = dict(zip(by_values, _palette(len(by_values)), strict=True))
    by_name = res.axis_name(by_axis) if by_axis else "all runs"
    for i, (_, groups) in enumerate(data):
        row, col = i // ncol + 1, i % ncol + 1
        if kind == "heatmap":
            _heatmap_trace(fig, res, by_axis, by_values, groups, row, col)
        else:
            _decay_traces(fig, res, by_axis, by_values, groups, row, col, colours, step,
                          decay_bound_factor, first=i == 0)
    what = "mean over seeds of log10 ||dE/ds_t||" if kind == "heatmap" else "||dE/ds_t||"
    at = "initialisation (step 0)" if step == 0 else f"training step {step}"
    fig.update_layout(
        title=f"{res.name}: {what} at {at}", height=max(320, 300 * nrow),
        margin={"l": 60, "r": 20, "t": 70, "b": 50}, template=TEMPLATE,
        hovermode="closest", legend={"title": {"text": by_name}})
    fig.update_xaxes(title_text="lag T - t (steps back from the loss)", row=nrow)
    if kind == "heatmap":
        fig.update_layout(coloraxis={"colorscale": "Viridis",
                                     "colorbar": {"title": {"text": "log10 ds"}}})
        fig.update_yaxes(title_text=by_name, col=1, type="category")
    else:
        fig.update_yaxes(type="log", exponentformat="power")
        fig.update_yaxes(title_text="||dE/ds_t||", col=1)
    return fig.to_plotly_json()


def _lag_index(n: int) -> np.ndarray:
    return thin(n, MAX_POINTS)


def _heatmap_trace(fig, res, by_axis, by_values, groups, row, col):
    import plotly.graph_objects as go

    present = [bv for bv in by_values if bv in groups]
    L = max(len(groups[bv][0].mean) for bv in present)
    idx = _lag_index(L)
    z, text = [], []
    for bv in present:
        c, _ = groups[bv]
        mean = np.full(L, np.nan)
        mean[: len(c.mean)] = c.mean
        bad = np.zeros(L, dtype=bool)
        bad[: len(c.bad)] = c.bad
        z.append([_num(mean[k]) for k in idx])
        seeds = f"{c.n} seed{'s' if c.n != 1 else ''}"
        text.append([f"{seeds}; a seed is 0 (log10 = -inf)" if mean[k] == -np.inf else
                     f"{seeds}; a seed is not finite" if bad[k] else
                     f"{seeds}; no step at this lag" if k >= len(c.mean) else seeds
                     for k in idx])
    labels = [res.label(by_axis, bv, names=False) if by_axis else "all runs" for bv in present]
    fig.add_trace(go.Heatmap(z=z, x=[int(k) for k in idx], y=labels, text=text,
                             hovertemplate="%{y}<br>lag %{x}<br>log10 ds = %{z:.3g}<br>%{text}"
                                           "<extra></extra>",
                             coloraxis="coloraxis"), row=row, col=col)


def _decay_traces(fig, res, by_axis, by_values, groups, row, col, colours, step, bound_factor,
                  first):
    import plotly.graph_objects as go

    for bv in by_values:
        if bv not in groups:
            continue
        c, rows = groups[bv]
        idx = _lag_index(len(c.mean))
        lag = [int(k) for k in idx]
        mean = c.mean[idx]
        y = [_pow10(m) for m in mean]
        label = res.label(by_axis, bv, names=False) if by_axis else "all runs"
        colour = colours[bv]
        ids = ", ".join(rows["run_id"].astype(str))
        group = f"g{label}"
        if c.n > 1:
            fig.add_trace(go.Scatter(x=lag, y=_nums(c.hi[idx]), mode="lines", line={"width": 0},
                                     hoverinfo="skip", showlegend=False, legendgroup=group),
                          row=row, col=col)
            fig.add_trace(go.Scatter(x=lag, y=_nums(c.lo[idx]), mode="lines", line={"width": 0},
                                     fill="tonexty", fillcolor=_alpha(colour, 0.18),
                                     hoverinfo="skip", showlegend=False, legendgroup=group),
                          row=row, col=col)
        fig.add_trace(go.Scatter(
            x=lag, y=y, mode="lines+markers" if len(lag) <= 25 else "lines", name=label,
            line={"color": colour, "width": 2}, legendgroup=group, showlegend=first,
            hovertemplate=f"{_esc(label)}<br>lag %{{x}}<br>ds = %{{y:.3g}}<br>runs: {ids}"
                          "<extra></extra>"), row=row, col=col)
        factor, _ = bound_factor(res, rows, step)
        anchor = c.mean[0] if len(c.mean) else np.nan
        if factor is not None and np.isfinite(anchor):
            bound = [_pow10(anchor + k * math.log10(factor)) for k in lag]
            fig.add_trace(go.Scatter(
                x=lag, y=bound, mode="lines", name=f"bound {label}",
                line={"color": colour, "dash": "dash", "width": 1}, legendgroup=group,
                showlegend=False,
                hovertemplate=f"Pascanu et al. bound (gamma sigma)^lag ds_T, {_esc(label)}"
                              "<br>lag %{x}: %{y:.3g}<extra></extra>"), row=row, col=col)


def _alpha(colour: str, a: float) -> str:
    import plotly.colors as pc

    if colour.startswith("#"):
        r, g, b = pc.hex_to_rgb(colour)
    else:
        r, g, b = (float(x) for x in colour[colour.index("(") + 1:-1].split(",")[:3])
    return f"rgba({r:.0f},{g:.0f},{b:.0f},{a})"


def _has_lyapunov(folder: Path) -> bool:
    from rnnlab.results.layout import LYAP_DIR

    d = Path(folder) / LYAP_DIR
    return d.is_dir() and any(d.iterdir())


def _lyapunov_figure(folder: Path, step: int) -> dict:
    """The Lyapunov spectrum at ``step`` (``rnnlab plot --kind lyapunov``): lambda_i in decades
    per step against i, mean over seeds with a min..max band per ``by`` value, lambda = 0
    dotted and the measured decay of ||dE/ds_t|| at i = 0; a UserError where none is stored."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from rnnlab.analysis.summarize import run_gradient_stats
    from rnnlab.plot.data import choose_by, facet_axes, load_plot_data, panels_of
    from rnnlab.plot.lyapunov import spectra, spectrum_table
    from rnnlab.results.readers import load_grad_norms, load_lyapunov

    res = load_plot_data(folder, (), lambda m: None)
    ids = res.runs["run_id"].astype(str).tolist()
    lyap = load_lyapunov(folder, run_ids=ids, step=step)
    lam = lyap[lyap["kind"] == "lambda"]
    if len(lam) == 0:
        raise UserError(f"no Lyapunov exponents stored at step {step}")
    decay = run_gradient_stats(load_grad_norms(folder, run_ids=ids, step=step), step=step)
    decay = decay.set_index("run_id")["decay"]
    table = spectrum_table(lam)
    by_axis = choose_by(res, "lyapunov", None)
    facets = facet_axes(res, [by_axis])
    facet_keys = tuple(k for a in facets for k in a)
    panels, order = panels_of(res, facets)
    by_values = res.values(by_axis) if by_axis else [()]
    colours = dict(zip(by_values, _palette(len(by_values)), strict=True))
    nrow, ncol = _grid(len(order))
    fig = make_subplots(rows=nrow, cols=ncol, shared_yaxes=True, horizontal_spacing=0.06,
                        vertical_spacing=0.12,
                        subplot_titles=[res.label(facet_keys, pv) if facets else ""
                                        for pv in order])
    for i, pv in enumerate(order):
        row, col = i // ncol + 1, i % ncol + 1
        for bv, have, vals in spectra(panels[pv], by_axis, by_values, table):
            x = [int(c) for c in vals.columns]
            v = vals.to_numpy(dtype=float)
            label = res.label(by_axis, bv, names=False) if by_axis else "all runs"
            colour, group = colours[bv], f"g{label}"
            with np.errstate(all="ignore"):
                mean, lo, hi = np.nanmean(v, axis=0), np.nanmin(v, axis=0), np.nanmax(v, axis=0)
            if len(have) > 1:
                fig.add_trace(go.Scatter(x=x, y=_nums(hi), mode="lines", line={"width": 0},
                                         hoverinfo="skip", showlegend=False, legendgroup=group),
                              row=row, col=col)
                fig.add_trace(go.Scatter(x=x, y=_nums(lo), mode="lines", line={"width": 0},
                                         fill="tonexty", fillcolor=_alpha(colour, 0.15),
                                         hoverinfo="skip", showlegend=False, legendgroup=group),
                              row=row, col=col)
            fig.add_trace(go.Scatter(
                x=x, y=_nums(mean), mode="lines+markers", name=label, legendgroup=group,
                showlegend=i == 0, line={"color": colour, "width": 2},
                hovertemplate=f"{_esc(label)}<br>lambda_%{{x}} = %{{y:.3g}} decades/step<br>"
                              f"{len(have)} runs<extra></extra>"), row=row, col=col)
            d = decay.reindex(have).to_numpy(dtype=float)
            if np.isfinite(d).any():
                fig.add_trace(go.Scatter(
                    x=[0], y=[_num(np.nanmean(d))], mode="markers", legendgroup=group,
                    showlegend=False, marker={"symbol": "diamond-open", "size": 10,
                                              "color": colour},
                    hovertemplate=f"{_esc(label)}<br>measured decay of ||dE/ds_t||: %{{y:.3g}}"
                                  "<extra></extra>"), row=row, col=col)
        fig.add_hline(y=0, line={"dash": "dot", "color": "#888", "width": 1}, row=row, col=col)
    fig.update_xaxes(title_text="exponent index i (0: measured decay of ||dE/ds_t||)", row=nrow,
                     dtick=1)
    fig.update_yaxes(title_text="lambda_i (decades per step)", col=1)
    at = "initialisation (step 0)" if step == 0 else f"training step {step}"
    fig.update_layout(title=f"{res.name}: Lyapunov spectrum at {at}", template=TEMPLATE,
                      height=max(320, 300 * nrow), margin={"l": 60, "r": 20, "t": 70, "b": 50},
                      legend={"title": {"text": res.axis_name(by_axis) if by_axis else ""}})
    return fig.to_plotly_json()


def _success_figure(folder: Path, summary: pd.DataFrame) -> dict | None:
    """Solved fraction against task.seq_len, a band from solved_lo to solved_hi where the
    summary has them; None when seq_len takes fewer than two values."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from rnnlab.analysis.summarize import format_value
    from rnnlab.plot.data import (
        SEQ_LEN,
        check_panels,
        choose_by,
        facet_axes,
        load_plot_data,
        value_order,
    )
    from rnnlab.results.parquet_io import plain_value

    res = load_plot_data(folder, (), lambda m: None)
    if SEQ_LEN not in res.keys or len(res.values((SEQ_LEN,)) if (SEQ_LEN,) in res.axes
                                        else res.runs[SEQ_LEN].unique()) < 2:
        return None
    by_axis = choose_by(res, "success", None)
    seq_axis = next(a for a in res.axes if SEQ_LEN in a)
    facets = facet_axes(res, [by_axis, seq_axis])
    facet_keys = [k for a in facets for k in a]
    s = summary.copy()
    for k in res.keys:
        if k in s.columns:
            s[k] = pd.Series([plain_value(v) for v in s[k]], index=s.index, dtype=object)
    panels = sorted({tuple(r) for r in s[facet_keys].itertuples(index=False)}, key=value_order) \
        if facet_keys else [()]
    check_panels(res, facets, len(panels))
    by_keys = list(by_axis or ())
    by_values = res.values(by_axis) if by_axis else [()]
    colours = dict(zip(by_values, _palette(len(by_values)), strict=True))
    nrow, ncol = _grid(len(panels))
    titles = [res.label(tuple(facet_keys), pv) if facet_keys else "" for pv in panels]
    fig = make_subplots(rows=nrow, cols=ncol, subplot_titles=titles, shared_yaxes=True,
                        horizontal_spacing=0.06, vertical_spacing=0.12)
    band = "solved_lo" in s.columns and "solved_hi" in s.columns
    for i, pv in enumerate(panels):
        row, col = i // ncol + 1, i % ncol + 1
        part = s[[tuple(r) == pv for r in s[facet_keys].itertuples(index=False)]] \
            if facet_keys else s
        for bv in by_values:
            sub = part[[tuple(r) == bv for r in part[by_keys].itertuples(index=False)]] \
                if by_keys else part
            if not len(sub):
                continue
            sub = sub.sort_values(SEQ_LEN)
            x = [plain_value(v) for v in sub[SEQ_LEN]]
            label = res.label(by_axis, bv, names=False) if by_axis else "all runs"
            colour = colours[bv]
            group = f"g{label}"
            if band:
                fig.add_trace(go.Scatter(x=x, y=_nums(sub["solved_hi"]), mode="lines",
                                         line={"width": 0}, hoverinfo="skip", showlegend=False,
                                         legendgroup=group), row=row, col=col)
                fig.add_trace(go.Scatter(x=x, y=_nums(sub["solved_lo"]), mode="lines",
                                         line={"width": 0}, fill="tonexty",
                                         fillcolor=_alpha(colour, 0.18), hoverinfo="skip",
                                         showlegend=False, legendgroup=group), row=row, col=col)
            lo = sub["solved_lo"] if band else [None] * len(sub)
            hi = sub["solved_hi"] if band else [None] * len(sub)
            hover = [f"{_esc(label)}<br>T = {t}<br>solved {format_value(v)} "
                     f"[{format_value(a)}, {format_value(b)}] of {n} runs"
                     for t, v, a, b, n in zip(x, sub["solved"], lo, hi, sub["n"], strict=True)]
            fig.add_trace(go.Scatter(x=x, y=_nums(sub["solved"]), mode="lines+markers",
                                     name=label, line={"color": colour, "width": 2},
                                     text=hover, hovertemplate="%{text}<extra></extra>",
                                     legendgroup=group, showlegend=i == 0), row=row, col=col)
    fig.update_yaxes(range=[-0.04, 1.04], col=1, title_text="solved fraction")
    fig.update_xaxes(title_text="sequence length T", row=nrow)
    kind = "Wilson 95 % band" if band else "no interval in this summary"
    fig.update_layout(title=f"{res.name}: solved fraction against T ({kind})",
                      height=max(320, 300 * nrow), template=TEMPLATE,
                      margin={"l": 60, "r": 20, "t": 70, "b": 50},
                      legend={"title": {"text": res.axis_name(by_axis) if by_axis else ""}})
    return fig.to_plotly_json()


def _figures_html(figures, steps, problems) -> str:
    step_opts = "".join(f'<option value="{_esc(s)}">{"initialisation (0)" if s == 0 else s}'
                        f"</option>" for s in steps)
    divs = "\n".join(f'<div class="figure" id="fig-{f["id"]}"></div>' for f in figures)
    notes = "".join(f"<li>{_esc(p)}</li>" for p in problems)
    notes = f'<ul class="problems">{notes}</ul>' if notes else ""
    return f"""<section id="figures">
<h2>Figures</h2>
<p class="hint">Hover for the runs and values, drag to zoom, double-click to reset.
Gradient norms at training step <select id="step">{step_opts}</select></p>
{notes}
{divs}
</section>"""


# ------------------------------------------------------------------------------- one run
def run_points(n_runs: int) -> int:
    """Points per norm curve of a run: :data:`MAX_RUN_POINTS`, fewer when the folder is big."""
    fit = RUN_BUDGET // max(1, n_runs * MAX_RUN_STEPS * 3)
    return int(max(MIN_RUN_POINTS, min(MAX_RUN_POINTS, fit)))


def _run_data(r, runs: pd.DataFrame) -> dict:
    """Per run: metrics and the norms at a few logged steps, thinned for display."""
    metrics = r.metrics
    norms = r.norms(columns=["ds", "dWs", "dWx"])
    keys = r.swept_keys
    out = {}
    per_curve = run_points(len(runs))
    by_run_m = dict(tuple(metrics.groupby("run_id", sort=False))) if len(metrics) else {}
    by_run_n = dict(tuple(norms.groupby("run_id", sort=False))) if len(norms) else {}
    for row in runs.to_dict(orient="records"):
        rid = str(row["run_id"])
        m = by_run_m.get(rid)
        entry = {"status": str(row.get("status")), "seed": row.get("seed"),
                 "clip_rate": _num(row.get("clip_rate")),
                 "label": ", ".join(f"{k.rsplit('.', 1)[-1]}={_label(row.get(k))}"
                                    for k in keys)}
        if m is not None and len(m):
            i = thin(len(m), MAX_RUN_POINTS)
            m = m.iloc[i]
            entry["m"] = {c: (_nums(m[c]) if c != "clipped" else
                              [bool(v) if v is not None and v is not pd.NA else None
                               for v in m[c]])
                          for c in ("step", "loss", "accuracy", "grad_norm", "grad_norm_clipped",
                                    "clipped")}
        g = by_run_n.get(rid)
        if g is not None and len(g):
            steps = sorted(g["step"].unique())
            curves = []
            for s in [steps[k] for k in thin(len(steps), MAX_RUN_STEPS)]:
                part = g[g["step"] == s]
                part = part.iloc[thin(len(part), per_curve)]
                curves.append({"step": int(s), "t": [int(t) for t in part["t"]],
                               **{c: _nums(part[c], 3) for c in ("ds", "dWs", "dWx")}})
            entry["n"] = curves
        out[rid] = entry
    return out


def _label(v) -> str:
    from rnnlab.plot.data import value_text
    from rnnlab.results.parquet_io import plain_value

    return value_text(plain_value(v))


def _run_view_html(runs: pd.DataFrame) -> str:
    return f"""<section id="run">
<h2>One run</h2>
<p class="hint">Pick a run (or click a row of the summary).
<select id="run-select"></select> <span id="run-facts"></span><br>
Shown: at most {MAX_RUN_STEPS} logged steps and {run_points(len(runs))} points per norm curve,
{MAX_RUN_POINTS} per metric curve (the results folder holds every value).</p>
<div class="figure" id="run-curves"></div>
<div class="figure" id="run-clip"></div>
<div class="figure" id="run-norms"></div>
</section>"""


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="rnnlab">
<title>{title}</title>
<style>{style}</style>
<script>{plotly}</script>
</head>
<body>
{body}
<script id="rnnlab-data" type="application/json">{data}</script>
<script>{script}</script>
</body>
</html>
"""

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1200px;padding:1em 1.5em;color:#222}
h1{margin:.2em 0}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.desc{color:#444;font-size:1.1em}.hint{color:#555}
table.facts{border-collapse:collapse}table.facts th{text-align:left;padding:1px 1em 1px 0;
vertical-align:top;color:#555;font-weight:normal}table.facts td{padding:1px 0}
pre{background:#f6f6f6;padding:.6em;overflow:auto;max-height:30em}
.scroll{overflow:auto;max-height:36em}
#summary-table{border-collapse:collapse;font-variant-numeric:tabular-nums;white-space:nowrap}
#summary-table th,#summary-table td{border:1px solid #ddd;padding:2px 6px;text-align:right}
#summary-table thead th{background:#f3f3f3;position:sticky;top:0}
#summary-table tr.filters th{top:1.9em}
#summary-table tbody tr{cursor:pointer}#summary-table tbody tr:hover{background:#eef5ff}
#summary-table tbody tr.picked{background:#dbe9ff}
button.sort{border:0;background:none;font:inherit;font-weight:bold;cursor:pointer;padding:0}
button.sort[data-dir="1"]::after{content:" \\25B2"}
button.sort[data-dir="-1"]::after{content:" \\25BC"}
input.filter{width:5.5em;font:inherit;font-size:.9em}
.figure{min-height:320px;margin:1em 0}.problems{color:#8a4b00}
#claims-table{border-collapse:collapse}#claims-table td,#claims-table th{border:1px solid #ddd;
padding:2px 6px;text-align:left;vertical-align:top}
#claims-table tr.pass td:first-child{color:#1a7f37;font-weight:bold}
#claims-table tr.fail td:first-child{color:#b42318;font-weight:bold}
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("rnnlab-data").textContent);
  var table = document.getElementById("summary-table");
  var tbody = table.tBodies[0];
  var CONFIG = {responsive: true, displaylogo: false};
  var COLORS = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692",
                "#b6e880", "#ff97ff", "#fecb52"];

  function cellValue(row, col) {
    var td = row.cells[col];
    var v = td.getAttribute("data-v");
    return v === null ? null : parseFloat(v);
  }
  // sorting: numbers by value (missing last), text alphabetically
  Array.prototype.forEach.call(table.querySelectorAll("button.sort"), function (btn) {
    btn.addEventListener("click", function () {
      var col = +btn.getAttribute("data-col");
      var dir = btn.getAttribute("data-dir") === "1" ? -1 : 1;
      Array.prototype.forEach.call(table.querySelectorAll("button.sort"), function (b) {
        b.removeAttribute("data-dir");
      });
      btn.setAttribute("data-dir", String(dir));
      var rows = Array.prototype.slice.call(tbody.rows);
      rows.sort(function (a, b) {
        var x = cellValue(a, col), y = cellValue(b, col);
        if (x === null && y === null) {
          x = a.cells[col].textContent; y = b.cells[col].textContent;
          return dir * x.localeCompare(y);
        }
        if (x === null) return 1;
        if (y === null) return -1;
        return dir * (x - y);
      });
      rows.forEach(function (r) { tbody.appendChild(r); });
    });
  });
  // filtering: >x, >=x, <x, <=x, =x on numbers, else a substring of the cell
  function matches(row, col, expr) {
    var m = /^(>=|<=|>|<|=)\s*(-?[0-9.eE+-]+|inf|-inf)$/.exec(expr);
    if (!m) return row.cells[col].textContent.toLowerCase().indexOf(expr.toLowerCase()) >= 0;
    var v = cellValue(row, col);
    if (v === null) return false;
    var x = parseFloat(m[2].replace("inf", "Infinity"));
    switch (m[1]) {
      case ">": return v > x; case ">=": return v >= x; case "<": return v < x;
      case "<=": return v <= x; default: return v === x;
    }
  }
  var filters = table.querySelectorAll("input.filter");
  function applyFilters() {
    var shown = 0;
    Array.prototype.forEach.call(tbody.rows, function (row) {
      var ok = true;
      Array.prototype.forEach.call(filters, function (f) {
        var expr = f.value.trim();
        if (ok && expr) ok = matches(row, +f.getAttribute("data-col"), expr);
      });
      row.style.display = ok ? "" : "none";
      if (ok) shown++;
    });
    document.getElementById("shown").textContent =
      shown + " of " + tbody.rows.length + " rows shown.";
  }
  Array.prototype.forEach.call(filters, function (f) {
    f.addEventListener("input", applyFilters);
  });
  applyFilters();

  // figures: gradient figures follow the step selector
  var stepSelect = document.getElementById("step");
  function drawFigures() {
    DATA.figures.forEach(function (f) {
      var div = document.getElementById("fig-" + f.id);
      var fig = f.steps.all || f.steps[stepSelect.value];
      if (!fig) {
        Plotly.purge(div);
        div.textContent = "Not available at this step.";
        div.setAttribute("data-empty", "1");
        return;
      }
      if (div.hasAttribute("data-empty")) {     // the message goes; plotly owns the div again
        div.textContent = "";
        div.removeAttribute("data-empty");
      }
      fig.layout.template = DATA.template;
      Plotly.react(div, fig.data, fig.layout, CONFIG);
    });
  }
  stepSelect.addEventListener("change", drawFigures);

  // one run
  var runSelect = document.getElementById("run-select");
  Object.keys(DATA.runs).forEach(function (id) {
    var r = DATA.runs[id];
    var o = document.createElement("option");
    o.value = id;
    o.textContent = id + "  " + r.label + ", seed " + r.seed + " (" + r.status + ")";
    runSelect.appendChild(o);
  });
  function showRun(id) {
    var r = DATA.runs[id];
    if (!r) return;
    runSelect.value = id;
    document.getElementById("run-facts").textContent =
      "status " + r.status + ", clip rate " + (r.clip_rate === null ? "-" : r.clip_rate);
    var m = r.m || {step: [], loss: [], accuracy: [], grad_norm: [], grad_norm_clipped: []};
    Plotly.react("run-curves", [
      {x: m.step, y: m.loss, name: "loss", mode: "lines+markers"},
      {x: m.step, y: m.accuracy, name: "accuracy", mode: "lines+markers", yaxis: "y2"}
    ], {title: {text: "run " + id + ": loss and accuracy per logged step"}, height: 340,
        template: DATA.template, xaxis: {title: {text: "training step"}},
        yaxis: {title: {text: "loss"}, type: "log", exponentformat: "power"},
        yaxis2: {title: {text: "accuracy"}, overlaying: "y", side: "right", range: [0, 1.02],
                 showgrid: false, tickformat: ".1f", dtick: 0.2},
        margin: {t: 50, r: 60, b: 90}, legend: {orientation: "h", y: -0.3}}, CONFIG);
    Plotly.react("run-clip", [
      {x: m.step, y: m.grad_norm, name: "before clipping", mode: "lines+markers"},
      {x: m.step, y: m.grad_norm_clipped, name: "after clipping", mode: "lines+markers"}
    ], {title: {text: "gradient norm per logged step (clip rate " +
          (r.clip_rate === null ? "-" : r.clip_rate) + ")"}, height: 320,
        template: DATA.template, xaxis: {title: {text: "training step"}},
        yaxis: {type: "log", exponentformat: "power"}, margin: {t: 50, b: 90},
        legend: {orientation: "h", y: -0.3}}, CONFIG);
    var traces = [];
    var kinds = ["ds", "dWs", "dWx"];
    (r.n || []).forEach(function (c, i) {
      kinds.forEach(function (k, j) {
        // an exact 0 (dWs at t = 1, where s_0 = 0) has no place on a log axis: a gap
        var y = c[k].map(function (v) { return v > 0 ? v : null; });
        traces.push({x: c.t, y: y, name: String(c.step), legendgroup: "s" + c.step,
                     showlegend: j === 0, mode: c.t.length <= 25 ? "lines+markers" : "lines",
                     xaxis: "x" + (j ? j + 1 : ""),
                     yaxis: "y" + (j ? j + 1 : ""), line: {color: COLORS[i % COLORS.length]},
                     hovertemplate: k + " at t = %{x}: %{y:.3g} (step " + c.step + ")" +
                                    "<extra></extra>"});
      });
    });
    var layout = {title: {text: "per-step norms ||dE/ds_t||, ||dE/dWs_t||, ||dE/dWx_t|| at " +
                  "each logged step (a line per step; exact zeros left out)"}, height: 360,
                  template: DATA.template,
                  grid: {rows: 1, columns: 3, pattern: "independent"}, margin: {t: 70},
                  legend: {title: {text: "training step"}}};
    kinds.forEach(function (k, j) {
      var s = j ? j + 1 : "";
      layout["xaxis" + s] = {title: {text: "t (" + k + ")"}};
      layout["yaxis" + s] = {type: "log", exponentformat: "power"};
    });
    Plotly.react("run-norms", traces, layout, CONFIG);
    Array.prototype.forEach.call(tbody.rows, function (row) {
      row.classList.toggle("picked", row.getAttribute("data-run") === id);
    });
  }
  runSelect.addEventListener("change", function () { showRun(runSelect.value); });
  Array.prototype.forEach.call(tbody.rows, function (row) {
    row.addEventListener("click", function () {
      var id = row.getAttribute("data-run");
      if (id) {
        showRun(id);
        document.getElementById("run").scrollIntoView({behavior: "smooth"});
      }
    });
  });
  drawFigures();
  var first = Object.keys(DATA.runs)[0];
  if (first) showRun(first);
})();
"""
