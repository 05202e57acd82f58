"""Execution: group runs into batches, train them serially or in a process pool, store each.

Runs whose ``RunConfig.shape_key()`` agree share every array shape and code path, so they are
stacked on the engine's run axis and trained in one call (``train.train_batch``). A batch is capped
by ``max_batch`` and by a memory budget (an estimate of the arrays one training step keeps for the
backward pass), so memory does not grow with the size of the sweep; the held-out evaluation is
chunked by runs inside the batch (``train.EVAL_BUDGET``). A configuration of which a single run
cannot fit in the machine's memory is refused before anything runs (``check_memory``).

Batches run in this process (``workers=1``) or in a pool of worker processes (``workers=N``; each
worker is limited to one BLAS thread, so N workers do not oversubscribe the cores), or on a Dask
cluster (``executor="dask"``, see ``distributed.py``). Only this process writes to the results
folder: workers return records and the store commits each batch as it arrives (see ``store.py``),
so an interrupted sweep keeps every finished batch.

A batch that raises is recorded run by run as ``failed`` with the error; the sweep goes on, unless
``fail_fast``. Ctrl-C (or SIGTERM) stops submitting work and returns what was finished.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

from .errors import UserError
from .train import BatchResult, build_task, eval_run_bytes, train_batch

#: Default cap on runs per batch, and memory budget (bytes) for one batch's training arrays.
MAX_BATCH = 64
MEMORY_BUDGET = 1 << 30
#: Where batches run: here or in a local process pool, or on a Dask cluster (``distributed.py``).
EXECUTORS = ("local", "dask")
_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def run_bytes(cfg) -> int:
    """Estimated bytes one run holds in a training step: states, pre-activations and their
    gradients (T+1, B, G each) plus outputs and targets (T, B, O), at the run's dtype."""
    task = build_task(cfg)
    gates = {"lstm": 4, "gru": 3}.get(cfg.model.cell, 1)
    item = 4 if cfg.model.dtype == "float32" else 8
    T, B, H = task.length, cfg.task.batch, cfg.model.hidden
    per_step = B * (3 * gates * H + 2 * H) + 3 * B * task.output_size + B * task.input_size
    return item * (T + 1) * per_step


def eval_bytes(cfg) -> int:
    """Estimated bytes one run's held-out evaluation holds (``train.eval_run_bytes``)."""
    task = build_task(cfg)
    G = {"lstm": 4, "gru": 3}.get(cfg.model.cell, 1) * cfg.model.hidden
    return eval_run_bytes(task.length, cfg.task.eval_batch, G, cfg.model.hidden,
                          task.output_size, task.input_size,
                          4 if cfg.model.dtype == "float32" else 8)


def physical_memory() -> int | None:
    """This machine's RAM in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(specs, source: str, limit: int | None = None) -> None:
    """Refuse, before anything runs, a configuration of which a single run cannot fit in memory
    (``limit``, default this machine's RAM): in a training step (``run_bytes``) or in its held-out
    evaluation (evaluated one run at a time at the least). Batches are smaller than the memory
    budget anyway; this catches the run that would fail alone. Raises UserError naming the file
    and the keys that set the size."""
    limit = physical_memory() if limit is None else limit
    if limit is None:
        return
    seen = set()
    for s in specs:
        key = s.config.shape_key()
        if key in seen:
            continue
        seen.add(key)
        cfg = s.config
        need = {"a training step": run_bytes(cfg), "its held-out evaluation": eval_bytes(cfg)}
        what, most = max(need.items(), key=lambda kv: kv[1])
        if most > limit:
            sizes = (f"task.seq_len={cfg.task.seq_len}, task.batch={cfg.task.batch}, "
                     f"task.eval_batch={cfg.task.eval_batch}, model.hidden={cfg.model.hidden}")
            raise UserError(
                f"{source}: {sizes}: one run needs {most / 2**30:.1f} GiB for {what}, more than "
                f"this machine's {limit / 2**30:.1f} GiB of memory; allowed: sizes whose run "
                f"fits (lower task.seq_len, task.batch, task.eval_batch or model.hidden)")


def plan_batches(specs, max_batch: int = MAX_BATCH, memory_budget: int = MEMORY_BUDGET):
    """Group runs by shape key (first-seen order) and cut each group into capped batches."""
    order: dict = {}
    for s in specs:
        order.setdefault(s.config.shape_key(), []).append(s)
    batches = []
    for group in order.values():
        cap = max(1, min(max_batch, memory_budget // max(run_bytes(group[0].config), 1)))
        batches += [group[i:i + cap] for i in range(0, len(group), cap)]
    return batches


def failed_result(specs, error: str) -> BatchResult:
    """Rows for runs whose batch raised: status failed, the error kept, no norms or metrics."""
    rows = [{"run_id": s.run_id, **s.swept, "seed": s.seed, "status": "failed", "error": error,
             "seq_len": s.config.task.seq_len, "solved": False} for s in specs]
    return BatchResult(rows, None, None)


def _run_batch(specs) -> BatchResult:
    """Train one batch; any exception becomes failed rows (so one bad batch never ends a sweep)."""
    try:
        return train_batch(specs)
    except Exception as e:  # noqa: BLE001 - recorded per run, reported at the end
        last = traceback.extract_tb(e.__traceback__)[-1]
        where = f" ({os.path.basename(last.filename)}:{last.lineno})"
        return failed_result(specs, f"{type(e).__name__}: {e}{where}")


def _worker_init():
    signal.signal(signal.SIGINT, signal.SIG_IGN)       # the parent handles Ctrl-C


@dataclass
class Outcome:
    """What an execution did: counts by status, and whether it was interrupted."""

    done: int = 0
    ok: int = 0
    diverged: int = 0
    exploded: int = 0
    failed: int = 0
    interrupted: bool = False
    errors: list = field(default_factory=list)


def execute(batches, commit: Callable[[BatchResult], None], *, workers: int = 1,
            fail_fast: bool = False, on_batch: Callable[[BatchResult], None] | None = None,
            executor: str = "local", scheduler: str | None = None) -> Outcome:
    """Train ``batches`` and hand each result to ``commit`` (the store) as soon as it is ready.

    ``executor="local"`` trains in this process (``workers=1``) or a process pool;
    ``executor="dask"`` sends the batches to the Dask cluster at ``scheduler`` or, without an
    address, to a LocalCluster of ``workers`` processes (see ``rnnlab.distributed``). Either way
    ``commit`` runs here. ``on_batch`` is called after each commit (progress display).
    KeyboardInterrupt stops the sweep cleanly: finished batches are kept, the outcome says
    ``interrupted``.
    """
    check_executor(executor, scheduler)
    outcome = Outcome()

    def handle(res: BatchResult) -> bool:
        commit(res)
        for row in res.runs:
            outcome.done += 1
            status = row["status"]
            setattr(outcome, status, getattr(outcome, status) + 1)
            if status == "failed":
                outcome.errors.append((row["run_id"], row["error"]))
        if on_batch:
            on_batch(res)
        return fail_fast and outcome.failed > 0

    try:
        if executor == "dask":
            from .distributed import execute_dask

            execute_dask(batches, handle, scheduler=scheduler, workers=workers)
        elif workers <= 1:
            for b in batches:
                if handle(_run_batch(b)):
                    break
        else:
            _execute_pool(batches, handle, workers)
    except KeyboardInterrupt:
        outcome.interrupted = True
    return outcome


def check_executor(executor: str, scheduler: str | None):
    """Reject an unknown executor, or a scheduler address without the dask executor."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor: got {executor!r}; allowed: {', '.join(EXECUTORS)}")
    if scheduler is not None and executor != "dask":
        raise UserError("--scheduler needs --executor dask")


def _execute_pool(batches, handle, workers):
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})      # inherited by the spawned workers
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                               initializer=_worker_init)
    try:
        pending = set()
        queue = list(batches)
        while queue or pending:
            while queue and len(pending) < 2 * workers:   # keep the workers busy, not the memory
                pending.add(pool.submit(_run_batch, queue.pop(0)))
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in sorted(finished, key=id):
                if handle(f.result()):
                    queue.clear()
                    for p in pending:
                        p.cancel()
                    pending = set()
                    break
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

