"""rnnlab's command line: thin commands over the library.

Each command parses its arguments, calls the library and renders the result. Library errors a user
can cause (``UserError``, ``ValueError`` from argument checks) become one line on stderr and exit
status 2 (3 for ``EnvironmentFault``: a full disk, a Dask scheduler lost or not answering);
human tables go to stdout, diagnostics to stderr; NO_COLOR is respected by rich.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from rnnlab.engine.bptt import LOSS_AT
from rnnlab.engine.cells import ACTIVATIONS, CELLS
from rnnlab.engine.gradcheck import CHECKED_ENGINES
from rnnlab.engine.heads import LOSSES, OUTPUTS
from rnnlab.engine.select import ENGINES
from rnnlab.errors import UserError, one_line
from rnnlab.run.executors import EXECUTORS

# Piped output is not cut to 80 columns: tables stay whole in files and CI logs.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)   # one message, one line


try:                                # recent Typers carry their own copy of click
    from typer._click import exceptions as click_errors
except ImportError:                 # pragma: no cover - older Typers use click itself
    from click import exceptions as click_errors


class OneLineUsageErrors(TyperGroup):
    """click's own usage errors (an unknown option, a missing argument, a value outside an
    option's range or choices) as one line on stderr with exit status 2, like every other
    mistake, instead of a framed panel; ``rnnlab`` alone still prints the help."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.UsageError as e:
            if type(e).__name__ == "NoArgsIsHelpError":     # ``rnnlab`` alone: the help
                e.show()
                sys.exit(e.exit_code)
            where = e.ctx.command_path if e.ctx is not None else "rnnlab"
            err.print(f"rnnlab: error: {where}: {one_line(e.format_message())} (see {where} "
                      "--help)", markup=False)
            code = e.exit_code
        except click_errors.ClickException as e:
            err.print(f"rnnlab: error: {one_line(e.format_message())}", markup=False)
            code = e.exit_code
        except typer.Abort:
            err.print("rnnlab: interrupted", markup=False)
            code = 130
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="rnnlab",
    help="A laboratory for the gradient dynamics of recurrent networks (BPTT in NumPy).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineUsageErrors,
)


def fail(message: str, code: int = 2):
    """One line on stderr, then exit: the boundary where library errors become CLI errors."""
    err.print(f"rnnlab: error: {one_line(message)}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def int_list(option: str, text: str) -> list[int]:
    """A comma-separated list of integers >= 0 given to ``option``; one-line error otherwise."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 0:
        fail(f"{option}: got {text!r}; allowed: comma-separated integers >= 0")
    return values


#: Set (to anything) to let an internal error show its traceback instead of one line.
TRACEBACK_VAR = "RNNLAB_TRACEBACK"


def user_errors(fn):
    """Turn UserError into a clean one-line error with exit status 2 (no traceback), and a
    Ctrl-C that no command handles itself (a sweep does, once it trains) into one line and exit
    status 130. Anything else that escapes is a bug in rnnlab: one line too (the exception and
    where it was raised), exit status 1, and the traceback only with RNNLAB_TRACEBACK set."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            err.print("rnnlab: interrupted", markup=False)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, typer.TyperException):   # typer's own ways out
            raise
        except Exception as e:  # noqa: BLE001 - the boundary: a bug becomes one line
            if os.environ.get(TRACEBACK_VAR):
                raise
            frame = traceback.extract_tb(e.__traceback__)[-1]
            fail(f"internal error: {type(e).__name__}: {e} ({Path(frame.filename).name}:"
                 f"{frame.lineno}); this is a bug in rnnlab, please report it with the command "
                 f"({TRACEBACK_VAR}=1 shows the traceback)", 1)
    return wrapper


@app.callback()
def main():
    """rnnlab: run BPTT experiments and see how gradients flow through time."""


@app.command()
@user_errors
def gradcheck(
    cell: Annotated[Literal[CELLS], typer.Option(help="Recurrent cell.")] = "rnn",
    activation: Annotated[Literal[ACTIVATIONS], typer.Option(help="phi of the rnn cell.")] = "tanh",
    output: Annotated[Literal[OUTPUTS], typer.Option(help="Output head.")] = "softmax",
    loss: Annotated[Literal[LOSSES], typer.Option(help="Loss.")] = "mse",
    loss_at: Annotated[Literal[LOSS_AT], typer.Option(help="Loss steps.")] = "last",
    seq_len: Annotated[int, typer.Option(min=1, max=200, help="Time steps T.")] = 6,
    hidden: Annotated[int, typer.Option(min=1, max=64, help="Hidden units H.")] = 4,
    batch: Annotated[int, typer.Option(min=1, max=64, help="Sequences per batch B.")] = 3,
    truncate: Annotated[int | None, typer.Option(min=1, help="BPTT(k) window.")] = None,
    clip_step: Annotated[float | None, typer.Option(min=0.0, help="Per-step error clip.")] = None,
    runs: Annotated[int | None, typer.Option(min=1, max=16, help="Check R runs at once.")] = None,
    scale: Annotated[float, typer.Option(min=0.0, help="Recurrent weight scale.")] = 1.0,
    seed: Annotated[int, typer.Option(min=0, help="Random seed.")] = 0,
    tolerance: Annotated[float, typer.Option(min=0.0, help="Largest relative error.")] = 1e-6,
    engine: Annotated[Literal[("fast", *CHECKED_ENGINES)], typer.Option(
        help="Engine checked: fast (bptt on the engine chosen by $RNNLAB_ENGINE, else numpy), "
        "reference (the readable engine/reference.py), numpy or compiled.")] = "fast",
):
    """Check the engine's gradients against central finite differences (float64).

    Prints the worst relative error per parameter; exit status 1 if any exceeds the tolerance.
    """
    from rnnlab.engine.gradcheck import check

    try:
        res = check(cell=cell, activation=activation, output=output, loss=loss, loss_at=loss_at,
                    truncate=truncate, clip_step=clip_step, seq_len=seq_len, batch=batch,
                    hidden=hidden, runs=runs, scale=scale, seed=seed, tolerance=tolerance,
                    engine=None if engine == "fast" else engine)
    except ValueError as e:
        fail(str(e))
    table = Table(title=f"gradient check ({engine} engine): {cell} "
                        f"{activation if cell == 'rnn' else ''} "
                        f"{output}/{loss} loss_at={loss_at} T={seq_len}")
    table.add_column("param")
    table.add_column("max rel. error", justify="right")
    table.add_column("max |grad|", justify="right")
    table.add_column("ok", justify="center")
    for name, e in res.errors.items():
        scale = res.scales.get(name, 1.0)
        table.add_row(name, f"{e:.2e}", f"{scale:.2e}",
                      "NO" if e >= tolerance else "yes" if scale > 0 else "zero")
    out.print(table)
    if res.vacuous:
        err.print("rnnlab: gradient check tested nothing: every finite-difference gradient is "
                  "0 here (a saturated configuration?); try a smaller --scale or --seq-len")
        raise typer.Exit(1)
    if not res.ok:
        err.print(f"rnnlab: gradient check failed (tolerance {tolerance:g})")
        raise typer.Exit(1)



# ------------------------------------------------------------------------- shared options
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", help="Override a base setting, e.g. model.hidden=128.")]
SweepOpt = Annotated[list[str] | None, typer.Option(
    "--sweep", metavar="KEY=V1,V2", help="Add or replace a sweep axis, e.g. task.seq_len=10,20.")]
ProfileOpt = Annotated[str | None, typer.Option(
    help="Apply a profile of the file (e.g. quick).")]
MaxRunsOpt = Annotated[int | None, typer.Option(
    min=1, metavar="N", help="Size limit: refuse a sweep of more than N runs unless --yes "
    "(default 10000).")]
Format = Literal["table", "csv", "markdown", "json"]
WideOpt = Annotated[bool, typer.Option(
    "--wide", help="Terminal table: every column of the summary (not cut to the terminal).")]
HtmlOpt = Annotated[bool, typer.Option(
    "--html", help="Write the results page, one self-contained HTML file (needs "
    "pip install 'rnnlab\\[html]').")]
StepOpt = Annotated[int | None, typer.Option(
    min=0, help="Training step of the gradient statistics (default: initialisation).")]
ColumnsOpt = Annotated[str | None, typer.Option(
    "--columns", metavar="A,B,C", help="Terminal table: these summary columns after the keys, "
    "e.g. solved,loss,decay (solved gives the value with its interval).")]

EngineOpt = Annotated[Literal[ENGINES] | None, typer.Option(
    help="Engine: numpy, compiled (Numba kernel; needs pip install 'rnnlab\\[fast]') or auto "
    "(compiled when numba is installed). Default: $RNNLAB_ENGINE, else numpy.")]


def use_engine(engine: str | None) -> None:
    """Apply --engine (also to worker processes); check $RNNLAB_ENGINE when it is not given."""
    from rnnlab.engine.select import get_engine, set_engine
    try:
        set_engine(engine) if engine else get_engine()
    except ValueError as e:
        raise UserError(str(e)) from None


def short_names(columns) -> dict:
    """Dotted keys shown by their last part where that is unambiguous (task.seq_len -> seq_len)."""
    last = [str(c).rsplit(".", 1)[-1] for c in columns]
    return {c: (s if last.count(s) == 1 else str(c)) for c, s in zip(columns, last, strict=True)}


def df_table(df, title: str | None = None, hide=()) -> Table:
    """A rich table of a DataFrame, numbers formatted as in summary.md, without ``hide``."""
    from rnnlab.analysis.summarize import display_cells

    table = Table(title=title)
    keep = [i for i, c in enumerate(df.columns) if c not in hide]
    names = short_names([df.columns[i] for i in keep])
    for i in keep:
        col = df.columns[i]
        numeric = df[col].dtype.kind in "ifb"
        table.add_column(names[col], justify="right" if numeric else "left")
    for row in display_cells(df):
        table.add_row(*(row[i] for i in keep))
    return table


def terminal_width() -> int:
    """Characters a summary table may fill: the terminal's, or 80 when stdout is not one."""
    import shutil

    return shutil.get_terminal_size((80, 24)).columns if sys.stdout.isatty() else 80


def view_table(view, title: str | None = None) -> Table:
    """A rich table of a ``rnnlab.report.tables.View``."""
    table = Table(title=title, caption=view.caption())
    for col in view.columns:
        table.add_column(col.name, justify="right" if col.numeric else "left")
    for row in zip(*(c.cells for c in view.columns), strict=True):
        table.add_row(*row)
    return table


def show_summary(df, fmt: str, title: str | None = None, wide: bool = False,
                 columns: str | None = None):
    """A summary table: the terminal view of ``rnnlab.report.tables`` (fitted to the width unless
    ``wide`` or ``columns``), or every column in a machine format."""
    if fmt != "table":
        return show_table(df, fmt, title)
    from rnnlab.report.tables import summary_view

    names = None if columns is None else [c.strip() for c in columns.split(",") if c.strip()]
    view = summary_view(df, width=terminal_width(), columns=names, wide=wide)
    out.print(view_table(view, title), width=max(view.width, out.width), crop=False)


def check_columns(columns: str | None, exp):
    """Refuse ``--columns`` names the experiment's summary will not have, before a sweep trains
    anything (the columns depend on the task and the analyses: ``claims.table_columns``)."""
    if not columns:
        return
    from rnnlab.experiment.claims import table_columns

    allowed = table_columns("summary", exp.swept_keys, exp.shape_configs())
    for name in (c.strip() for c in (columns or "").split(",")):
        if name and name not in allowed:
            fail(f"--columns: no column {name!r} in the summary; allowed: {', '.join(allowed)}")


def show_table(df, fmt: str, title: str | None = None):
    """Human table on stdout, or a machine format (csv, markdown, json) as plain text."""
    if fmt == "table":
        out.print(df_table(df, title))
    else:
        from rnnlab.analysis.summarize import render

        sys.stdout.write(render(df, fmt))           # render ends every format with a newline


def load(file, sets, sweeps, profile, yes=False, max_runs=None):
    from rnnlab.experiment.load import load_experiment

    limit = {} if max_runs is None else {"max_runs": max_runs}   # None: the library's default
    exp = load_experiment(file, sets=sets or [], sweeps=sweeps or [], profile=profile, yes=yes,
                          **limit)
    if exp.set_aside:
        where = ", ".join(at for at, _ in exp.set_aside)
        why = "; ".join(dict.fromkeys(w for _, w in exp.set_aside))
        err.print(f"rnnlab: note: --set/--sweep leave {len(exp.set_aside)} claim(s) without a "
                  f"column they read ({why}): {where} not checked on this folder", markup=False)
    return exp


class RichProgress:
    """The sweep's progress bar on stderr: runs done, skipped, failed, diverged, elapsed, ETA.
    Only on a terminal: redirected, rich would print it once, cut to 80 columns, and the
    sweep's closing line already says what it would."""

    def __init__(self, enabled: bool = True):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.counts = {"skipped": 0, "failed": 0, "diverged": 0, "exploded": 0}
        self.progress = Progress(
            TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), TextColumn("eta"),
            TimeRemainingColumn(), console=err, disable=not (enabled and err.is_terminal),
            transient=False)
        self.task = None

    def _counts(self) -> str:
        return " ".join(f"{k} {v}" for k, v in self.counts.items())

    def start(self, total: int, skipped: int):
        self.counts["skipped"] = skipped
        self.progress.start()
        self.task = self.progress.add_task("sweep", total=total, completed=skipped,
                                           counts=self._counts())

    def advance(self, res):
        for row in res.runs:
            if row["status"] in self.counts:
                self.counts[row["status"]] += 1
        self.progress.update(self.task, advance=len(res.runs), counts=self._counts())

    def stop(self):
        if self.task is not None:           # never started (the sweep failed first): print nothing
            self.progress.stop()


@app.command()
@user_errors
def sweep(
    file: Annotated[str, typer.Argument(help="Experiment YAML file.")],
    out_dir: Annotated[str | None, typer.Option("--out", help="Results folder "
                                                "(default results/NAME).")] = None,
    sets: SetOpt = None,
    sweeps: SweepOpt = None,
    profile: ProfileOpt = None,
    workers: Annotated[int, typer.Option(min=1, max=256, help="Worker processes.")] = 1,
    max_batch: Annotated[int, typer.Option(min=1, help="Most runs stacked in one batch.")] = 64,
    fresh: Annotated[bool, typer.Option(help="Discard earlier results in the folder.")] = False,
    fail_fast: Annotated[bool, typer.Option(help="Stop at the first failed run.")] = False,
    retry_failed: Annotated[bool, typer.Option(help="Train again the runs that failed in an "
                                               "earlier sweep into this folder.")] = False,
    dry_run: Annotated[bool, typer.Option(help="List the runs and whether each is done.")] = False,
    yes: Annotated[bool, typer.Option(help="Allow a grid above the size limit.")] = False,
    max_runs: MaxRunsOpt = None,
    fmt: Annotated[Format, typer.Option("--format", help="Summary output format.")] = "table",
    wide: WideOpt = False,
    columns: ColumnsOpt = None,
    html: HtmlOpt = False,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
    executor: Annotated[Literal[EXECUTORS], typer.Option(
        help="Where batches train: local (serial or --workers processes) or dask (a Dask "
             "cluster; needs pip install 'rnnlab\\[dask]').")] = "local",
    scheduler: Annotated[str | None, typer.Option(
        metavar="tcp://HOST:PORT", help="Dask scheduler address for --executor dask (default: "
        "start a local cluster of --workers processes); tls://HOST:PORT with --tls-*.")] = None,
    tls_ca_file: Annotated[str | None, typer.Option(
        metavar="PEM", help="For a tls:// scheduler: the certificate authority that signed its "
        "certificate.")] = None,
    tls_cert: Annotated[str | None, typer.Option(
        metavar="PEM", help="For a tls:// scheduler: this client's certificate (may hold the "
        "key too).")] = None,
    tls_key: Annotated[str | None, typer.Option(
        metavar="PEM", help="For a tls:// scheduler: this client's private key.")] = None,
    engine: EngineOpt = None,
    mixed_stacks: Annotated[bool, typer.Option(
        help="Resume a folder made on another floating-point stack: train its missing runs "
        "on this one and record which in its manifest (refused without).")] = False,
    timings: Annotated[bool, typer.Option(help="Print where the time went, by stage "
                                          "(this process's stages).")] = False,
):
    """Run every run of an experiment (resuming a folder), store norms, print the summary."""
    use_engine(engine)
    if not dry_run:
        # the workers' fork server (if any) imports the training code while this process
        # imports its own and reads the experiment (the sweep would start it a moment later)
        from rnnlab.run.execute import prepare_executor

        prepare_executor(executor, workers)
    import contextlib
    import signal
    import time

    from rnnlab import timing
    from rnnlab.run.sweep import default_out, run_sweep

    recording = contextlib.ExitStack()
    clock = recording.enter_context(timing.record()) if timings else None
    t0 = time.perf_counter()
    exp = load(file, sets, sweeps, profile, yes, max_runs)
    check_columns(columns, exp)
    if html:
        from rnnlab.report.page import require_plotly

        require_plotly()                           # refuse before training, not after
    out_path = Path(out_dir) if out_dir else default_out(exp)
    if dry_run:
        return _dry_run(exp, out_path, fmt)
    bar = RichProgress(enabled=progress and fmt == "table")

    def on_term(signum, frame):
        raise KeyboardInterrupt
    old = signal.signal(signal.SIGTERM, on_term)
    try:
        report = run_sweep(exp, out_path, workers=workers, max_batch=max_batch, fresh=fresh,
                           fail_fast=fail_fast, progress=bar, command=["rnnlab", *sys.argv[1:]],
                           executor=executor, scheduler=scheduler, retry_failed=retry_failed,
                           note=lambda m: err.print(f"rnnlab: {one_line(m)}", markup=False),
                           tls={"ca_file": tls_ca_file, "cert": tls_cert, "key": tls_key},
                           mixed_stacks=mixed_stacks)
    except KeyboardInterrupt:       # outside training (opening, summary, finalize): same advice
        bar.stop()
        err.print("rnnlab: interrupted; finished runs are kept: rerun the same command to "
                  "resume", markup=False)
        raise typer.Exit(130) from None
    finally:
        bar.stop()
        signal.signal(signal.SIGTERM, old)
        recording.close()
    wall = time.perf_counter() - t0
    for note in report.notes:
        err.print(f"rnnlab: {one_line(note)}", markup=False)
    o = report.outcome
    if report.summary is not None:
        show_summary(report.summary, fmt, title=f"{exp.name}: {report.out}", wide=wide,
                     columns=columns)
    err.print(f"rnnlab: {o.done} run(s) now, {report.skipped} already done, {o.diverged} "
              f"diverged, {o.exploded} exploded, {o.failed} failed; results in {report.out}",
              markup=False)
    for run_id, error in o.errors[:5]:
        err.print(f"rnnlab: run {run_id} failed: {one_line(error, 300)}", markup=False)
    if clock is not None:
        show_timings(clock, wall, workers=workers if executor == "local" else None)
    if html and report.summary is not None and not o.interrupted:
        from rnnlab.report.page import write_page

        page = write_page(report.out, note=lambda m: err.print(f"rnnlab: {m}", markup=False))
        err.print(f"rnnlab: results page {page}", markup=False)
    if o.interrupted:
        err.print("rnnlab: interrupted; finished runs are kept: rerun the same command to "
                  "resume", markup=False)
        raise typer.Exit(130)
    if o.failed:
        raise typer.Exit(1)


def show_timings(clock, wall: float, workers: int | None) -> None:
    """The stages' seconds, share of the command's time and calls, on stderr."""
    from rnnlab.timing import SECTIONS

    err.print(f"rnnlab: where the time went ({wall:.2f} s from loading the experiment to the "
              "end of the sweep; stages overlap, e.g. engine lies inside training):",
              markup=False)
    for name, what in SECTIONS.items():
        if name in clock.seconds:
            sec = clock.seconds[name]
            err.print(f"  {name:<9} {sec:9.3f} s {100 * sec / max(wall, 1e-12):6.1f} %  "
                      f"{clock.calls[name]:>6} call(s)  {what}", markup=False)
    if workers != 1:
        err.print("  (batches trained in other processes show inside sweep, not as training, "
                  "engine or data)", markup=False)


def _dry_run(exp, out_path: Path, fmt: str):
    import pandas as pd

    from rnnlab.results.readers import is_results_dir, load_runs

    done = set()
    if is_results_dir(out_path):
        try:
            done = set(load_runs(out_path)["run_id"])
        except UserError:
            done = set()
    rows = [{"run_id": r.run_id, **r.swept, "seed": r.seed, "done": r.run_id in done}
            for r in exp.runs()]
    show_table(pd.DataFrame(rows), fmt, title=f"{exp.name}: {len(rows)} runs -> {out_path}")


@app.command()
@user_errors
def validate(
    file: Annotated[str, typer.Argument(help="Experiment YAML file.")],
    sets: SetOpt = None,
    sweeps: SweepOpt = None,
    profile: ProfileOpt = None,
    yes: Annotated[bool, typer.Option(help="Allow a grid above the size limit.")] = False,
    max_runs: MaxRunsOpt = None,
    show: Annotated[int, typer.Option(min=0, help="How many runs to list.")] = 10,
):
    """Check an experiment file and each of its profiles (as if selected, with the same --set
    and --sweep), and print the grid size and first runs."""
    import pandas as pd

    from rnnlab.experiment.load import load_profiles
    from rnnlab.run.plan import check_memory, plan_batches

    exp = load(file, sets, sweeps, profile, yes, max_runs)
    runs = exp.runs()
    check_memory(runs, file)
    limit = {} if max_runs is None else {"max_runs": max_runs}
    profiles = load_profiles(file, sets=sets or [], sweeps=sweeps or [], yes=yes, **limit)
    for name, other in profiles.items():
        check_memory(other.runs(), f"{file} (profile {name})")
    axes = ", ".join(f"{'+'.join(a.keys)} ({len(a.values)})" for a in exp.axes) or "none"
    out.print(f"{file}: ok: experiment {exp.name!r}, {exp.grid_size} grid point(s) x "
              f"{exp.repeats} repeat(s) = {len(runs)} run(s) in "
              f"{len(plan_batches(runs))} batch(es); axes: {axes}", markup=False)
    if profiles:
        each = ", ".join(f"{name} ({len(p.runs())} run(s))" for name, p in profiles.items())
        out.print(f"{file}: profiles ok: {each}", markup=False)
    if show and runs:
        rows = [{"run_id": r.run_id, **r.swept, "seed": r.seed} for r in runs[:show]]
        out.print(df_table(pd.DataFrame(rows), title=f"first {min(show, len(runs))} runs"))


def warn_folder(folder: str) -> None:
    """One line on stderr per thing wrong with a results folder that can still be read."""
    from rnnlab.results.readers import folder_notes

    for note in folder_notes(folder):
        err.print(f"rnnlab: warning: {one_line(note)}", markup=False)


@app.command()
@user_errors
def report(
    folder: Annotated[str, typer.Argument(help="A results folder made by rnnlab sweep.")],
    by: Annotated[str | None, typer.Option(help="Comma-separated columns to group by "
                                           "(default: the swept keys).")] = None,
    step: StepOpt = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = "table",
    wide: WideOpt = False,
    columns: ColumnsOpt = None,
    html: HtmlOpt = False,
    out_file: Annotated[str | None, typer.Option(
        "--out", help="With --html: the page's file (default FOLDER/report.html).")] = None,
):
    """Reprint the summary table of a results folder (the terminal table fits 80 columns; csv,
    markdown and json hold every column), or write its results page (--html)."""
    from rnnlab.analysis.summarize import summary_of

    if out_file is not None and not html:
        fail("--out: only with --html (the table goes to stdout)")
    if html and (by is not None or step is not None or fmt != "table" or wide or columns):
        fail("--html writes the whole page; --by, --step, --format, --wide and --columns are "
             "options of the table")
    if html:
        from rnnlab.report.page import write_page

        path = write_page(folder, out_file, note=lambda m: err.print(f"rnnlab: {m}",
                                                                     markup=False))
        sys.stdout.write(f"{path}\n")
        return
    keys = [k.strip() for k in by.split(",") if k.strip()] if by is not None else None
    warn_folder(folder)
    table = summary_of(Path(folder), by=keys, step=step)
    warn_stack(folder)
    if keys is not None:
        from rnnlab.results.readers import load_runs

        runs = load_runs(Path(folder))
        grouped = {str(c) for c in table.columns}
        pooled = [str(c) for c in runs.columns if "." in str(c) and str(c) not in grouped
                  and str(c).rsplit(".", 1)[-1] not in grouped      # seq_len: the run's T
                  and runs[c].nunique(dropna=False) > 1]
        if pooled:
            err.print(f"rnnlab: note: --by pools the runs of every {', '.join(pooled)}: each "
                      "row's statistics mix those settings", markup=False)
    show_summary(table, fmt, title=folder, wide=wide, columns=columns)


@app.command()
@user_errors
def limits(
    folder: Annotated[str, typer.Argument(help="A results folder made by rnnlab sweep.")],
    budgets: Annotated[str | None, typer.Option(
        help="Comma-separated training budgets in steps (default: the run length S, S/2, "
             "S/4, ... down to log_every).")] = None,
    over: Annotated[str, typer.Option(help="The swept axis of the dependency length.")] =
        "task.seq_len",
    table: Annotated[Literal["limit", "budget"], typer.Option(
        help="limit: the longest T solved with p >= 1/2 per setting and budget; budget: the "
             "fraction solved within each budget per grid point.")] = "limit",
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = "table",
    wide: WideOpt = False,
    columns: ColumnsOpt = None,
):
    """The limit map of a results folder: solved within each training budget, and the longest
    dependency solved with probability >= 1/2, with 95 % intervals (rnnlab.analysis.limits)."""
    from rnnlab.analysis.limits import limits_of

    steps = None if budgets is None else int_list("--budgets", budgets)
    warn_folder(folder)
    by_budget, by_setting = limits_of(Path(folder), steps, over,
                                      gradients=table == "limit")
    warn_stack(folder)
    show_summary(by_setting if table == "limit" else by_budget, fmt, title=folder, wide=wide,
                 columns=columns)


def warn_stack(folder) -> None:
    """One line when the folder was made on another floating-point stack (nothing when its
    manifest cannot be read: warn_folder has said so)."""
    from rnnlab.results.readers import load_manifest
    from rnnlab.results.sysinfo import stack_note

    try:
        note = stack_note(load_manifest(Path(folder)))
    except UserError:
        return
    if note:
        err.print(f"rnnlab: {note}", markup=False)


@app.command()
@user_errors
def compare(
    a: Annotated[str, typer.Argument(help="A results folder (the reference).")],
    b: Annotated[str, typer.Argument(help="Another results folder (e.g. a reproduction).")],
    by: Annotated[str | None, typer.Option(help="Comma-separated columns to join on "
                                           "(default: the keys swept in both).")] = None,
    step: StepOpt = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = "table",
    wide: WideOpt = False,
    columns: ColumnsOpt = None,
):
    """Compare two results folders: both summaries side by side, a * where the intervals do not
    overlap (or, without an interval, the values differ), and how the manifests differ."""
    from rnnlab.analysis.summarize import render
    from rnnlab.report.compare import compare as compare_folders
    from rnnlab.report.compare import stacked
    from rnnlab.report.tables import summary_view

    keys = [k.strip() for k in by.split(",") if k.strip()] if by is not None else None
    cmp = compare_folders(a, b, by=keys, step=step)
    if fmt == "json":
        sys.stdout.write(cmp.to_json())
        return
    manifest = pd_frame(cmp.manifest, ["key", "a", "b"])
    if fmt in ("csv", "markdown"):
        from rnnlab.report.compare import markdown_table

        sys.stdout.write(render(cmp.table if fmt == "csv" else markdown_table(cmp), fmt))
        if fmt == "markdown" and cmp.claims:
            sys.stdout.write("\n" + render(pd_frame(cmp.claims, ["says", "a", "b"]), fmt))
        if fmt == "markdown" and len(manifest):
            sys.stdout.write("\n" + render(manifest, fmt))
    else:
        frame, marks = stacked(cmp)
        names = None if columns is None else [c.strip() for c in columns.split(",") if c.strip()]
        view = summary_view(frame, width=terminal_width(), columns=names, wide=wide,
                            keys=[*cmp.keys, "side"], marks=marks)
        for col in view.columns[:len(cmp.keys)]:          # keys once per pair of rows
            col.cells = [c if i % 2 == 0 else "" for i, c in enumerate(col.cells)]
        table = view_table(view, f"A = {a}, B = {b}: {cmp.marks} mark(s)")
        out.print(table, width=max(view.width, out.width), crop=False)
        if cmp.claims:
            ct = Table(title="claims")
            for name in ("claim", "A", "B"):
                ct.add_column(name, overflow="fold")
            for row in cmp.claims:
                ct.add_row(row["says"], *(format_manifest(row[s]) for s in ("a", "b")))
            out.print(ct)
        if len(manifest):
            mt = Table(title="manifest differences")
            for name in ("key", "A", "B"):
                mt.add_column(name, overflow="fold")
            for row in cmp.manifest:
                mt.add_row(row["key"], *(format_manifest(row[s]) for s in ("a", "b")))
            out.print(mt)
        else:
            out.print("manifests: same versions, machine and experiment", markup=False)
    for note in cmp.notes:
        err.print(f"rnnlab: {note}", markup=False)


def pd_frame(records: list[dict], columns: list[str]):
    import pandas as pd

    return pd.DataFrame([{c: format_manifest(r[c]) for c in columns} for r in records],
                        columns=columns)


def format_manifest(value) -> str:
    return "-" if value is None else str(value)


@app.command()
@user_errors
def check(
    folder: Annotated[str, typer.Argument(help="A results folder made by rnnlab sweep.")],
    file: Annotated[str | None, typer.Option(
        "--file", help="Take the claims from this experiment file (default: the ones recorded "
        "in the folder's manifest).")] = None,
    profile: Annotated[str | None, typer.Option(help="Profile of --file (only with --file: "
                                                "the manifest records no profiles).")] = None,
):
    """Check the experiment's claims on a results folder: one line per claim, exit 1 if any
    does not hold."""
    from rnnlab.experiment.check import check_folder

    warn_folder(folder)
    results = check_folder(Path(folder), file=file, profile=profile)
    warn_stack(folder)
    for r in results:
        out.print(r.line(), markup=False, soft_wrap=True)
    failed = sum(not r.holds for r in results)
    if not results:
        err.print(f"rnnlab: {folder}: the experiment states no claims", markup=False)
    else:
        err.print(f"rnnlab: {len(results) - failed} of {len(results)} claim(s) hold",
                  markup=False)
    if failed:
        raise typer.Exit(1)


@app.command()
@user_errors
def run(
    sets: SetOpt = None,
    file: Annotated[str | None, typer.Option(help="Start from this experiment's base "
                                             "(its sweep is ignored).")] = None,
    lags: Annotated[str | None, typer.Option(
        help="Lags T - t at which to show ds (default 0,1,2,5,10,20,50, those below T).")] = None,
    engine: EngineOpt = None,
):
    """Train one configuration (defaults plus --set overrides) and print its metrics."""
    use_engine(engine)
    lag_list = [0, 1, 2, 5, 10, 20, 50] if lags is None else int_list("--lags", lags)
    import numpy as np

    from rnnlab.experiment.load import parse_experiment
    from rnnlab.experiment.yaml_io import parse_yaml
    from rnnlab.run.train import Trainer

    data = {"name": "run"}
    source = "<run>"
    if file:
        # the experiment files' own YAML reader (1e-3 is a float, errors are one line)
        try:
            text = Path(file).read_text(encoding="utf-8")
        except FileNotFoundError:
            fail(f"{file}: no such experiment file")
        except (OSError, UnicodeDecodeError) as e:
            fail(f"{file}: cannot read: {e}")
        loaded = parse_yaml(text, file)
        # the claims go with the sweep: they read its table's columns, which one run has not
        data = ({k: v for k, v in loaded.items() if k not in ("sweep", "profiles", "claims")}
                if isinstance(loaded, dict) else loaded)
        source = file
    exp = parse_experiment(data, source=source, sets=sets or [])
    spec = exp.runs()[0]
    trainer = Trainer([spec])
    from rich.progress import Progress

    with Progress(console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("training", total=spec.config.train.steps + 1)
        result = trainer.run(progress=lambda step: bar.update(task, completed=step + 1))
    row = result.runs[0]
    keys = ["status", "final_loss", "accuracy", "solved", "steps_to_solve", "diverged_step",
            "rho_start", "rho_end", "sigma_start", "sigma_end", "clip_rate"]
    # adding's published criteria, where the task has them
    keys[3:3] = [k for k in ("accuracy_hs", "accuracy_pascanu") if row.get(k) is not None]
    import pandas as pd

    show_table(pd.DataFrame([{k: row[k] for k in keys}]), "table",
               title=f"run {spec.run_id}: {spec.config.model.cell} "
                     f"{spec.config.task.name} T={spec.config.task.seq_len}")
    g = result.grad_norms
    T = int(g["t"].max())
    want = sorted(set(lag_list) & set(range(T)))
    beyond = ", ".join(str(k) for k in sorted(set(lag_list) - set(want)))
    if beyond and lags is not None:
        err.print(f"rnnlab: --lags: left out {beyond}: beyond the longest lag T - 1 = {T - 1}",
                  markup=False)
    table = []
    for step, part in g.groupby("step"):
        ds = part.set_index("t")["ds"]
        table.append({"step": step, **{f"lag {k}": ds.get(T - k, np.nan) for k in want}})
    show_table(pd.DataFrame(table).iloc[[0, -1]].drop_duplicates(), "table",
               title="||dE/ds_t|| at lag T - t (first and last record)")


@app.command()
@user_errors
def warmup():
    """Compile the engine kernel and the task draws ahead (e.g. once per machine of a cluster)
    into their cache."""
    from rnnlab.compiling import cache_dir
    from rnnlab.engine.compiled import warmup as compile_all
    from rnnlab.engine.select import numba_available
    from rnnlab.tasks.compiled import ready as draws_ready
    if not numba_available():
        fail("warmup: numba is not installed (pip install 'rnnlab[fast]'); the NumPy engine "
             "needs no warmup")
    for (cell, dtype), took in compile_all().items():      # a compile announces itself
        if took is None:
            err.print(f"rnnlab: kernel {cell} {dtype}: loaded from the cache", markup=False)
    if draws_ready():                   # a compile, or a difference from NumPy, says so itself
        from rnnlab.tasks.compiled import COVERED
        err.print(f"rnnlab: task draws ({', '.join(COVERED)}): ready, NumPy's bits",
                  markup=False)
    err.print(f"rnnlab: kernel cache: {cache_dir()}", markup=False)


@app.command(name="plot")
@user_errors
def plot_command(
    folder: Annotated[str, typer.Argument(help="A results folder made by rnnlab sweep.")],
    kind: Annotated[Literal["heatmap", "decay", "success", "lyapunov", "budget", "limit"],
                    typer.Option(
        help="heatmap: log10 ||dE/ds_t|| over t and a swept key; decay: ||dE/ds_t|| against "
             "lag T - t with the Pascanu et al. bound; success: solved fraction against "
             "seq_len; lyapunov: the Lyapunov spectrum (train.lyapunov.enabled); budget: "
             "solved within each training budget against seq_len; limit: the longest T solved "
             "with p >= 1/2 against the budget."),
    ] = "heatmap",
    out_file: Annotated[str | None, typer.Option("--out", help="Image file, .png, .pdf or .svg "
                                                 "(default FOLDER/KIND.png).")] = None,
    by: Annotated[str | None, typer.Option(help="Swept key of the rows or lines, e.g. "
                                           "weight_scale (default: chosen by kind).")] = None,
    step: Annotated[int, typer.Option(min=0, help="Training step of the gradient norms "
                                      "(default 0: initialisation).")] = 0,
    where: Annotated[list[str] | None, typer.Option(
        "--where", metavar="KEY=VALUE", help="Keep only runs with this swept value "
        "(repeatable), e.g. task.seq_len=20.")] = None,
    metric: Annotated[Literal["solved", "accuracy"], typer.Option(
        help="What the success plot shows.")] = "solved",
):
    """Draw a figure of a results folder; other swept keys become panels. Prints the file."""
    from rnnlab.plot import output_path
    from rnnlab.plot import plot as make_plot

    warn_folder(folder)
    make_plot(folder, kind, out_file, by=by, step=step, where=where or [], metric=metric,
              note=lambda message: err.print(f"rnnlab: {message}", markup=False, soft_wrap=True))
    sys.stdout.write(f"{output_path(folder, kind, out_file)}\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
