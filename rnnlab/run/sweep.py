"""A sweep from start to finish: experiment -> results folder -> batches -> store -> summary.

This is the library behind ``rnnlab sweep``; the CLI only parses arguments and renders. Data
flows one way: the Experiment expands into RunSpecs, the runs already in the results folder are
skipped (resume), the rest are planned into batches and executed, every finished batch is
committed by the store, and the summary is recomputed from what the folder holds.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rnnlab.analysis.summarize import render, summary_of
from rnnlab.errors import UserError
from rnnlab.experiment.load import Experiment
from rnnlab.results.store import ResultsStore
from rnnlab.results.sysinfo import OTHER_STACKS, other_stacks, stack_differences, system_info
from rnnlab.run import execute, plan
from rnnlab.timing import section, timed


def default_out(exp: Experiment) -> Path:
    """Where results go unless ``--out`` says otherwise: results/<name>/ (profile appended)."""
    name = exp.name if not exp.profile else f"{exp.name}-{exp.profile}"
    out = os.path.normpath(os.path.join("results", name))
    if os.path.dirname(out) != "results":       # ".", "..", a profile name with a "/"
        raise UserError(f"{exp.source}: name: results/{name} is not a folder inside results/; "
                        "rename the experiment (or its profile), or pass --out")
    return Path(out)


@dataclass
class SweepReport:
    """What a sweep did and the summary it left in the folder."""

    out: Path
    total: int
    skipped: int
    outcome: execute.Outcome
    summary: pd.DataFrame | None
    notes: list


def manifest_for(exp: Experiment, command: list[str] | None) -> dict:
    info = system_info()
    info["experiment"] = exp.to_dict()
    info["command"] = command if command is not None else sys.argv
    return info


@timed("sweep")
def run_sweep(exp: Experiment, out: Path | None = None, *, workers: int = 1,
              max_batch: int = plan.MAX_BATCH, memory_budget: int = plan.MEMORY_BUDGET,
              fresh: bool = False, fail_fast: bool = False, progress=None,
              command: list[str] | None = None, executor: str = "local",
              scheduler: str | None = None, retry_failed: bool = False,
              note=None, tls: dict | None = None, pool=None,
              mixed_stacks: bool = False) -> SweepReport:
    """Run every run of ``exp`` not yet in ``out``, commit each batch, then summarise.

    ``progress``, if given, is an object with ``start(total, skipped)`` and ``advance(result)``.
    ``executor="dask"`` trains the batches on the Dask cluster at ``scheduler`` (or a LocalCluster
    of ``workers`` processes); the folder is written here either way (see
    ``rnnlab.run.executors.dask``). Runs recorded as failed by an earlier sweep count as done,
    unless ``retry_failed``: then they are forgotten and trained again. ``note``, if given, receives
    one-line messages while the sweep runs (a batch lost with its worker process and retried).
    ``tls`` (``ca_file``, ``cert``, ``key``: file paths) secures the connection to a ``tls://``
    scheduler. ``pool``: an executor already open (``rnnlab.run.execute.open_executor``) that
    trains the batches instead of one opened for this sweep; it stays open, so several sweeps
    share its worker processes (and what they loaded).

    Resuming a folder whose recorded floating-point stack (manifest ``fp_stack``) differs from
    this process's is refused (UserError) when runs are left to train, unless ``mixed_stacks``:
    then the runs trained here are recorded under the manifest's ``other_fp_stacks`` with this
    stack (docs/reproducibility.md). The stack is this process's: local workers and rnnlab's own
    LocalCluster inherit its machine and environment.
    """
    tls = {k: v for k, v in (tls or {}).items() if v is not None} or None
    execute.check_executor(executor, scheduler, tls)
    if executor == "dask":
        from rnnlab.run.executors.dask import require_dask, security

        require_dask()                      # before the folder is created
        security(tls)                       # certificate files checked before it too
    out = Path(out) if out is not None else default_out(exp)
    if pool is None:
        execute.prepare_executor(executor, workers)
    runs = exp.runs()
    if executor == "local":                 # a Dask worker's memory is its own business
        plan.check_memory(runs, exp.source)
    stored = set() if fresh else _committed(out)
    plan.check_disk([r for r in runs if r.run_id not in stored], out, exp.source,
                       max_batch=max_batch)
    width = pool.window if pool is not None else workers if scheduler is None else 1
    with contextlib.ExitStack() as connection:
        if pool is None and executor == "dask" and scheduler is not None:
            # connect before the folder is created or changed: a scheduler that cannot be
            # reached leaves no folder behind (or the folder as it was)
            pool = connection.enter_context(
                execute.open_executor(executor, workers, scheduler, tls, note))
        return _sweep_into(exp, out, runs, pool=pool, width=width, workers=workers,
                           max_batch=max_batch,
                           memory_budget=memory_budget, fresh=fresh, fail_fast=fail_fast,
                           progress=progress, command=command, executor=executor,
                           scheduler=scheduler, retry_failed=retry_failed, note=note, tls=tls,
                           mixed_stacks=mixed_stacks)


def _sweep_into(exp: Experiment, out: Path, runs, *, pool, width, workers, max_batch,
                memory_budget, fresh, fail_fast, progress, command, executor, scheduler,
                retry_failed, note, tls, mixed_stacks) -> SweepReport:
    """``run_sweep`` from opening the folder on (its arguments checked, ``pool`` connected);
    ``width``: the batches the executor trains at once, for planning."""
    with section("open"):
        manifest = manifest_for(exp, command)
        store = ResultsStore.open(out, fingerprint=exp.fingerprint(), manifest=manifest,
                                  fresh=fresh, experiment_name=exp.name)
    notes = []
    with store.lock():
        kept_failed = store.failed_run_ids() & {r.run_id for r in runs}
        kept = store.done_run_ids() - (kept_failed if retry_failed else set())
        mixed = _stack_before(store, manifest, [r.run_id for r in runs if r.run_id not in kept],
                              mixed_stacks)
        if mixed:
            (note or notes.append)(mixed)
        if retry_failed:
            store.drop_runs(kept_failed)
            kept_failed = set()
        done = store.done_run_ids()
        todo = [r for r in runs if r.run_id not in done]
        if progress:
            progress.start(len(runs), len(runs) - len(todo))
        batches = plan.plan_batches(todo, max_batch=max_batch, memory_budget=memory_budget,
                                    workers=width)
        outcome = execute.execute(batches, lambda res: store.write_batch(res.runs, res.grad_norms,
                                                                          res.metrics,
                                                                          **_extra_tables(res)),
                                  workers=workers, fail_fast=fail_fast,
                                  on_batch=progress.advance if progress else None,
                                  executor=executor, scheduler=scheduler, note=note,
                                  tls=tls, pool=pool)
        _stack_after(store)
        table = None
        if store.done_run_ids():
            with section("summary"):
                table = summary_of(out, by=exp.swept_keys)
                store.write_summary(render(table, "csv"), render(table, "markdown"))
        if not outcome.interrupted:
            store.finalize()
    notes = list(getattr(store, "cleanup_notes", [])) + notes
    if kept_failed:
        notes.append(f"{len(kept_failed)} run(s) that failed in an earlier sweep were not rerun; "
                     "--retry-failed trains them again")
    return SweepReport(out, len(runs), len(runs) - len(todo), outcome, table, notes)


def _stack_before(store: ResultsStore, manifest: dict, todo: list[str],
                  allowed: bool) -> str | None:
    """Before ``todo`` trains: refuse (UserError) to add runs of this floating-point stack
    (``manifest``: this sweep's) to a folder whose recorded stack differs, unless ``allowed``;
    then record this stack and the runs
    it is to train under ``OTHER_STACKS`` and return a one-line note. The runs of ``todo`` are
    not in the folder, so no recorded stack keeps them (a sweep killed after recording them).
    A sweep that trains nothing, or on the recorded stack, is silent."""
    if not todo:
        return None
    current = manifest["fp_stack"]
    pending = set(todo)
    before = store.manifest.get(OTHER_STACKS)
    entries = [{**e, "runs": [r for r in e["runs"] if r not in pending]}
               for e in other_stacks(store.manifest)]
    entries = [e for e in entries if e["runs"]]
    diffs = stack_differences(store.manifest.get("fp_stack"), current)
    if not diffs:
        if entries != (before or []):
            store.update_manifest(**{OTHER_STACKS: entries or None})
        return None
    what = ("does not record the floating-point stack its runs were trained on"
            if diffs == ["not recorded"] else
            f"was made on another floating-point stack ({'; '.join(diffs)})")
    if not allowed:
        raise UserError(
            f"{store.path} {what}: training its {len(todo)} missing run(s) here would mix "
            "stacks in one folder; pass a new --out, resume on the recorded stack, or add "
            f"--mixed-stacks to train them here and record the mix in its manifest.json")
    for e in entries:
        if not stack_differences(e.get("fp_stack"), current):
            e["runs"] = sorted(set(e["runs"]) | pending)
            break
    else:
        entries.append({"fp_stack": current, "runs": sorted(pending),
                        "created": manifest.get("created"), "command": manifest.get("command")})
    store.update_manifest(**{OTHER_STACKS: entries})
    return (f"{store.path} {what}: --mixed-stacks: its {len(todo)} missing run(s) train on this "
            f"stack, recorded in manifest.json {OTHER_STACKS}")


def _stack_after(store: ResultsStore) -> None:
    """After training: the runs ``OTHER_STACKS`` names are only those committed (an interrupted
    sweep trained fewer than it recorded before it started)."""
    before = store.manifest.get(OTHER_STACKS)
    if not before:
        return
    done = store.done_run_ids()
    entries = [{**e, "runs": [r for r in e["runs"] if r in done]}
               for e in other_stacks(store.manifest)]
    entries = [e for e in entries if e["runs"]]
    if entries != before:
        store.update_manifest(**{OTHER_STACKS: entries or None})


def _extra_tables(res) -> dict:
    """The optional tables of a batch result, as keywords of ``ResultsStore.write_batch`` (none
    when the analysis was off, so the call is the plain three-table one)."""
    lyap = getattr(res, "lyapunov", None)
    return {} if lyap is None else {"lyapunov": lyap}


def _committed(out: Path) -> set[str]:
    """Ids of the runs already in ``out`` (empty if it holds none or cannot say)."""
    from rnnlab.results.readers import read_runs

    try:
        table = read_runs(out)
    except (UserError, OSError, KeyError):
        return set()
    return set() if table is None else set(table.column("run_id").to_pylist())
