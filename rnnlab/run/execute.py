"""Execution: the one commit loop that trains batches on an executor and commits each result.

Batches run in this process (``workers=1``), in a pool of worker processes (``workers=N``) or on
a Dask cluster (``executor="dask"``); the backends are in ``rnnlab.run.executors``, behind one
interface (``executors/base.py``). This loop is the same for all of them: it keeps each
executor's window of batches in flight, commits each finished batch as it arrives (only this
process writes to the results folder; see ``rnnlab.results.store``), so an interrupted sweep
keeps every finished batch, and keeps the books:

- A batch whose training raised arrives as failed rows with the error; the sweep goes on,
  unless ``fail_fast``.
- A batch whose worker died (:class:`~rnnlab.run.executors.base.Lost`) is tried again first in
  line (its numbers are deterministic) up to ``WORKER_RETRIES`` times, each loss announced in one
  line through ``note``; then its runs are recorded as failed. Dask's scheduler retries by
  itself, so its losses arrive final.
- Ctrl-C (or SIGTERM) stops submitting work and returns what was finished.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rnnlab.errors import UserError
from rnnlab.run.executors import EXECUTORS, base
from rnnlab.run.executors.base import Executor, Lost, failed_result

if TYPE_CHECKING:
    from rnnlab.run.train import BatchResult

#: Attempts after the first of a batch whose worker process dies (killed by a signal, as the
#: out-of-memory killer does, or exiting) before its runs are recorded as failed.
WORKER_RETRIES = 2


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


def check_executor(executor: str, scheduler: str | None, tls: dict | None = None):
    """Reject an unknown executor, a scheduler address without the dask executor, and
    certificate options without a scheduler address."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor: got {executor!r}; allowed: {', '.join(EXECUTORS)}")
    if scheduler is not None and executor != "dask":
        raise UserError("--scheduler needs --executor dask")
    if tls and scheduler is None:
        raise UserError("--tls-ca-file, --tls-cert and --tls-key need --scheduler tls://HOST:PORT")


def open_executor(executor: str, workers: int, scheduler: str | None, tls: dict | None,
                  note: Callable[[str], None] | None = None) -> AbstractContextManager[Executor]:
    """The backend for ``executor`` and ``workers``, as a context manager yielding it. The task
    is ``base.run_batch``, looked up now (tests replace it). ``note`` receives the backend's
    one-line messages (a Dask cluster left without workers)."""
    task = base.run_batch
    if executor == "dask":
        from rnnlab.run.executors.dask import open_dask

        return open_dask(task, scheduler=scheduler, workers=workers, tls=tls, note=note)
    if workers <= 1:
        from rnnlab.run.executors.serial import open_serial

        return open_serial(task)
    from rnnlab.run.executors.pool import open_pool

    return open_pool(workers, task, WORKER_RETRIES)


def prepare_executor(executor: str, workers: int) -> None:
    """Start ahead what the backend needs before its first batch (the worker pool's fork
    server), so that it overlaps the sweep's own preparations."""
    if executor == "local" and workers > 1:
        from rnnlab.run.executors.pool import start_server

        start_server()


def describe(number: int, total: int, specs) -> str:
    """A batch in a message: its number, size and first run."""
    first = specs[0].run_id if specs else "-"
    return f"batch {number}/{total} ({len(specs)} run(s), first run {first})"


def execute(batches, commit: Callable[[BatchResult], None], *, workers: int = 1,
            fail_fast: bool = False, on_batch: Callable[[BatchResult], None] | None = None,
            executor: str = "local", scheduler: str | None = None,
            note: Callable[[str], None] | None = None, tls: dict | None = None,
            retries: int = WORKER_RETRIES, pool: Executor | None = None) -> Outcome:
    """Train ``batches`` and hand each result to ``commit`` (the store) as soon as it is ready.

    ``executor="local"`` trains in this process (``workers=1``) or a process pool;
    ``executor="dask"`` sends the batches to the Dask cluster at ``scheduler`` or, without an
    address, to a LocalCluster of ``workers`` processes (see ``rnnlab.run.executors.dask``).
    Either way ``commit`` runs here. ``on_batch`` is called after each commit (progress display).
    KeyboardInterrupt stops the sweep cleanly: finished batches are kept, the outcome says
    ``interrupted``. ``note`` receives one-line messages while the sweep runs (a batch lost
    with its worker process, and retried; a Dask cluster without workers). ``tls`` holds the
    certificate files of a ``tls://`` scheduler (``rnnlab.run.executors.dask.security``).
    ``pool``: an executor already open (``open_executor``) to train on instead, left open
    (``executor``, ``workers``, ``scheduler`` and ``tls`` are then unused); what a stop leaves
    in flight on it is cancelled.
    """
    check_executor(executor, scheduler)
    outcome = Outcome()
    say = note or (lambda line: None)
    queue = deque(enumerate(batches, 1))
    total = len(queue)
    losses: dict[int, int] = {}

    def settle(number: int, specs, value: BatchResult | Lost) -> BatchResult | None:
        """The result to commit; None when a lost batch goes back into the queue."""
        if not isinstance(value, Lost):
            return value
        n = losses[number] = losses.get(number, 0) + 1
        what = f"{describe(number, total, specs)} lost: {value.cause}"
        if not value.final and n <= retries:
            say(f"{what}; retrying it ({n} of {retries})")
            queue.appendleft((number, specs))
            return None
        tries = f"{n} attempts failed, " if n > 1 else ""
        say(f"{what}; {tries}its runs are recorded as failed")
        return failed_result(specs, value.error + (f", {n} times" if n > 1 else ""))

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
        if not queue:
            return outcome
        opened = (contextlib.nullcontext(pool) if pool is not None
                  else open_executor(executor, workers, scheduler, tls, note))
        with opened as ex:
            try:
                _loop(ex, queue, settle, handle)
            finally:
                if pool is not None:
                    pool.cancel()
    except KeyboardInterrupt:
        outcome.interrupted = True
    return outcome


def _loop(ex: Executor, queue: deque, settle: Callable, handle: Callable) -> None:
    """Keep ``ex``'s window full from ``queue`` and hand each finished batch on, until the
    queue is empty and nothing is in flight, or ``handle`` says stop."""
    in_flight = 0
    while queue or in_flight:
        while queue and in_flight < ex.window:
            ex.submit(*queue.popleft())
            in_flight += 1
        for done in ex.done():
            in_flight -= 1
            res = settle(done.number, done.specs, done.value)
            if res is not None and handle(res):
                return
