"""Execution: group runs into batches, train them serially or in a process pool, store each.

Runs whose ``RunConfig.shape_key()`` agree share every array shape and code path, so they are
stacked on the engine's run axis and trained in one call (``train.train_batch``). A batch is capped
by ``max_batch`` and by a memory budget (an estimate of the arrays one training step keeps for the
backward pass), so memory does not grow with the size of the sweep; the held-out evaluation is
chunked by runs inside the batch (``train.EVAL_BUDGET``). A configuration of which a single run
cannot fit in the machine's memory is refused before anything runs (``check_memory``).

Batches run in this process (``workers=1``) or in a pool of worker processes (``workers=N``; each
worker is limited to one BLAS thread, so N workers do not oversubscribe the cores; a batch whose
worker process dies is retried ``WORKER_RETRIES`` times, then recorded as failed), or on a Dask
cluster (``executor="dask"``, see ``distributed.py``). Only this process writes to the results
folder: workers return records and the store commits each batch as it arrives (see ``store.py``),
so an interrupted sweep keeps every finished batch.

A batch that raises is recorded run by run as ``failed`` with the error; the sweep goes on, unless
``fail_fast``. Ctrl-C (or SIGTERM) stops submitting work and returns what was finished.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import signal
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait as mp_wait

from rnnlab.errors import UserError
from rnnlab.run.train import BatchResult, build_task, eval_run_bytes, train_batch

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


#: Bytes on disk per row of grad norms, of metrics and per run row, as written (zstd parquet;
#: measured: 28-41 and 35-83 bytes per row), and per batch for the two part files' footers.
GRAD_ROW_BYTES, METRICS_ROW_BYTES, RUN_ROW_BYTES, PART_BYTES = 36, 64, 512, 8192


def logged_steps(cfg) -> int:
    """How many steps a run logs: every ``train.log_every`` from 0, and the last one."""
    steps, every = cfg.train.steps, cfg.train.log_every
    return steps // every + 1 + (1 if steps % every else 0)


def disk_bytes(cfg) -> int:
    """Estimated bytes one run adds to its results folder: its grad norms (a row per logged step
    and time step), metrics (a row per logged step) and its row of ``runs.parquet``."""
    k = logged_steps(cfg)
    return k * build_task(cfg).length * GRAD_ROW_BYTES + k * METRICS_ROW_BYTES + RUN_ROW_BYTES


def free_disk(path) -> int | None:
    """Free bytes on the filesystem that holds ``path`` (or would: its nearest existing parent)."""
    import shutil
    from pathlib import Path

    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def check_disk(specs, out, source: str, max_batch: int = MAX_BATCH,
               free: int | None = None) -> None:
    """Refuse, before anything is written, runs whose results would not fit the free space of
    the disk of ``out`` (``free``, default measured). The estimate (``disk_bytes`` per run, the
    part files' footers per batch, and room for one more copy of ``runs.parquet`` and of the
    compacted metrics) is in the message."""
    specs = list(specs)
    if not specs:
        return
    free = free_disk(out) if free is None else free
    if free is None:
        return
    per_run = sum(disk_bytes(s.config) for s in specs)
    batches = -(-len(specs) // max_batch) + len({s.config.shape_key() for s in specs})
    need = per_run + batches * PART_BYTES + len(specs) * (RUN_ROW_BYTES + METRICS_ROW_BYTES)
    need += 1 << 20                                      # manifest, summaries, slack
    if need > free:
        mib = 1 << 20
        raise UserError(
            f"{source}: the results of {len(specs)} run(s) need about {need / mib:.1f} MiB on "
            f"disk, more than the {free / mib:.1f} MiB free where {out} is; allowed: results "
            "that fit (raise train.log_every, lower task.seq_len or the number of runs, or pass "
            "--out on a disk with room)")


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
            executor: str = "local", scheduler: str | None = None,
            note: Callable[[str], None] | None = None, tls: dict | None = None) -> Outcome:
    """Train ``batches`` and hand each result to ``commit`` (the store) as soon as it is ready.

    ``executor="local"`` trains in this process (``workers=1``) or a process pool;
    ``executor="dask"`` sends the batches to the Dask cluster at ``scheduler`` or, without an
    address, to a LocalCluster of ``workers`` processes (see ``rnnlab.run.distributed``). Either way
    ``commit`` runs here. ``on_batch`` is called after each commit (progress display).
    KeyboardInterrupt stops the sweep cleanly: finished batches are kept, the outcome says
    ``interrupted``. ``note`` receives one-line messages while the sweep runs (a batch lost
    with its worker process, and retried). ``tls`` holds the certificate files of a ``tls://``
    scheduler (``rnnlab.run.distributed.security``).
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
            from rnnlab.run.distributed import execute_dask

            execute_dask(batches, handle, scheduler=scheduler, workers=workers, tls=tls,
                         note=note)
        elif workers <= 1:
            for b in batches:
                if handle(_run_batch(b)):
                    break
        else:
            _execute_pool(batches, handle, workers, note=note)
    except KeyboardInterrupt:
        outcome.interrupted = True
    return outcome


def check_executor(executor: str, scheduler: str | None, tls: dict | None = None):
    """Reject an unknown executor, a scheduler address without the dask executor, and
    certificate options without a scheduler address."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor: got {executor!r}; allowed: {', '.join(EXECUTORS)}")
    if scheduler is not None and executor != "dask":
        raise UserError("--scheduler needs --executor dask")
    if tls and scheduler is None:
        raise UserError("--tls-ca-file, --tls-cert and --tls-key need --scheduler tls://HOST:PORT")


#: Attempts after the first of a batch whose worker process dies (killed by a signal, as the
#: out-of-memory killer does, or exiting) before its runs are recorded as failed.
WORKER_RETRIES = 2


def _worker_main(conn, fn) -> None:
    """A pool worker: train the batches received on ``conn`` one at a time, send each result
    back; stop at ``None`` or when the parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)       # the parent handles Ctrl-C
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})   # a pending one is dropped
    while True:
        try:
            specs = conn.recv()
        except (EOFError, OSError):
            return
        if specs is None:
            return
        result = fn(specs)
        try:
            conn.send(result)
        except OSError:                                # the parent is gone (killed): stop
            return


def _death_cause(exitcode: int | None) -> str:
    """How a worker process ended, in words."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        why = " (out of memory, or killed from outside)" if name == "SIGKILL" else ""
        return f"was killed by {name}{why}"
    return f"exited with status {exitcode}"


def _describe(number: int, total: int, specs) -> str:
    first = specs[0].run_id if specs else "-"
    return f"batch {number}/{total} ({len(specs)} run(s), first run {first})"


class _Worker:
    """One worker process of the pool, the parent's end of its pipe, and the batch it trains."""

    def __init__(self, ctx, fn):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, fn), daemon=True)
        # started with SIGINT blocked (the mask is kept across fork and exec): a Ctrl-C sent to
        # the whole process group while the worker is still importing stays pending there and is
        # dropped when the worker ignores SIGINT, so it cannot print a traceback; in this process
        # it is only deferred (not ignored, which would lose the user's Ctrl-C) until the start
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self.proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        child.close()
        self.job: tuple[int, list] | None = None

    def give(self, queue: deque) -> bool:
        """Send the next batch of ``queue``; False (the batch put back) if the process is gone."""
        self.job = queue.popleft()
        try:
            self.conn.send(self.job[1])
        except OSError:
            queue.appendleft(self.job)
            self.job = None
            return False
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """End the process: ask an idle one to stop, kill a busy one (its batch is dropped)."""
        if self.proc.is_alive():
            if self.job is None:
                with contextlib.suppress(OSError, ValueError):
                    self.conn.send(None)
                self.proc.join(timeout)
            if self.proc.is_alive():
                self.proc.kill()
        self.proc.join()
        self.conn.close()
        with contextlib.suppress(AttributeError, ValueError):
            self.proc.close()


def _execute_pool(batches, handle, workers, note=None, retries: int = WORKER_RETRIES):
    """Train ``batches`` in ``workers`` spawned processes, one batch per process at a time.

    Each worker has its own pipe, so the parent knows which batch a worker that dies was
    training: that batch is retried (first in line, its numbers are deterministic) up to
    ``retries`` times, each loss announced through ``note`` in one line, and then recorded as
    failed runs; the other batches go on. Pipes only (no queues, locks or shared memory): a
    killed worker leaves nothing behind for multiprocessing's resource tracker to complain of.
    """
    fn = _run_batch                                   # looked up now: tests may replace it
    total = len(batches)
    queue = deque(enumerate(batches, 1))
    deaths: dict[int, int] = {}
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})      # inherited by the spawned workers
    ctx = mp.get_context("spawn")
    pool: list[_Worker] = []
    stillborn = 0
    try:
        while True:
            for w in list(pool):                       # idle workers take the next batches
                if w.job is None and queue and not w.give(queue):
                    w.stop()                           # died while idle: replaced below
                    pool.remove(w)
            while queue and len(pool) < workers:
                w = _Worker(ctx, fn)
                pool.append(w)
                if not w.give(queue):
                    w.stop()
                    pool.remove(w)
                    stillborn += 1
                    if stillborn > retries:
                        raise UserError(f"worker processes die as they start "
                                        f"({stillborn} of them); try --workers 1")
            busy = [w for w in pool if w.job is not None]
            if not busy:
                break
            ready = set(mp_wait([w.conn for w in busy] + [w.proc.sentinel for w in busy]))
            stop = False
            for w in busy:
                if w.conn not in ready and w.proc.sentinel not in ready:
                    continue
                result = None
                if w.conn in ready:
                    try:
                        result = w.conn.recv()
                    except (EOFError, OSError, pickle.UnpicklingError):
                        result = None
                number, specs = w.job
                if result is not None:
                    w.job = None
                    if handle(result):
                        stop = True
                        break
                    continue
                w.proc.join()
                died = _death_cause(w.proc.exitcode)
                cause = f"its worker process (pid {w.proc.pid}) {died}"
                w.job = None
                w.stop()
                pool.remove(w)
                deaths[number] = deaths.get(number, 0) + 1
                what = _describe(number, total, specs)
                if deaths[number] <= retries:
                    if note:
                        note(f"{what} lost: {cause}; retrying it "
                             f"({deaths[number]} of {retries})")
                    queue.appendleft((number, specs))
                else:
                    if note:
                        note(f"{what} lost: {cause}; {retries + 1} attempts failed, its runs "
                             "are recorded as failed")
                    error = (f"WorkerDied: the worker process training this batch {died}, "
                             f"{retries + 1} times")
                    if handle(failed_result(specs, error)):
                        stop = True
                        break
            if stop:
                break
    finally:
        for w in pool:
            w.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
