"""The process-pool executor: batches trained in worker processes, one at a time each.

Workers are forked from a fork server (``multiprocessing``'s "forkserver" start method) that
imports rnnlab once, so a worker starts in milliseconds instead of the second a spawned
interpreter takes to import NumPy, pandas and rnnlab; where there is no fork server (Windows) they
are spawned. A worker starts from the server's state, not this process's: each batch carries this
process's environment (the engine choice, cache folders), which the worker takes on before
training it.

Each worker has its own pipe, so this process knows which batch a worker that dies was training
and reports it as :class:`~rnnlab.run.executors.base.Lost` (the commit loop retries it). Pipes
only (no queues, locks or shared memory): a killed worker leaves nothing behind for
multiprocessing's resource tracker to complain of. Workers are limited to one BLAS thread, so N
workers do not oversubscribe the cores.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import signal
from collections.abc import Callable, Iterator
from multiprocessing.connection import wait as mp_wait

from rnnlab.errors import UserError
from rnnlab.run.executors.base import THREAD_VARS, Done, Lost

#: Modules the fork server imports once for every worker it forks: the main module (a script
#: or the ``rnnlab`` command, which a worker would otherwise import again) and the training code.
PRELOAD = ["__main__", "rnnlab.run.executors.base", "rnnlab.run.train"]


def preload() -> list[str]:
    """``PRELOAD``, and the compiled kernel's module (numba's import) when that engine runs."""
    from rnnlab.engine.select import active_engine

    return PRELOAD + (["rnnlab.engine.kernel"] if active_engine() == "compiled" else [])


def start_method() -> str:
    """"forkserver" where the platform has it, else "spawn"."""
    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


def worker_main(conn, task) -> None:
    """A pool worker: train the batches received on ``conn`` one at a time (each with the
    parent's environment at submission), send each result back; stop at ``None`` or when the
    parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)       # the parent handles Ctrl-C
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})   # a pending one is dropped
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        env, specs = job
        if env != os.environ:
            os.environ.clear()
            os.environ.update(env)
        result = task(specs)
        try:
            conn.send(result)
        except OSError:                                # the parent is gone (killed): stop
            return


def death_cause(exitcode: int | None) -> str:
    """How a worker process ended, in words."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        why = " (out of memory, or killed from outside)" if name == "SIGKILL" else ""
        return f"was killed by {name}{why}"
    return f"exited with status {exitcode}"


class Worker:
    """One worker process of the pool, the parent's end of its pipe, and the batch it trains."""

    def __init__(self, ctx, task):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child, task), daemon=True)
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

    def give(self, job: tuple[int, list]) -> bool:
        """Send ``job`` (number, specs) with this process's environment; False if the process
        is gone."""
        try:
            self.conn.send((dict(os.environ), job[1]))
        except OSError:
            return False
        self.job = job
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


def _context():
    """The start method's context; a fork server's is told what to preload."""
    ctx = mp.get_context(start_method())
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(preload())
    return ctx


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """THREAD_VARS set to 1 inside the block (what workers, and the fork server, inherit),
    restored after it."""
    saved = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update({k: "1" for k in THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_server() -> None:
    """Start the fork server now (a no-op where there is none, or when it runs), so that its
    imports overlap what this process does before the first batch is submitted. Started with
    SIGINT blocked and the thread variables set, as a worker would start it."""
    if _context().get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    with _one_thread():
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            forkserver.ensure_running()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Pool:
    """``workers`` processes, started as batches are submitted, one batch each. The pool can
    serve several sweeps: its idle workers keep what they loaded (the compiled kernel)."""

    def __init__(self, workers: int, task: Callable, retries: int):
        self.window = workers
        self.task = task
        self.retries = retries
        self.ctx = _context()
        self.workers: list[Worker] = []
        self.stillborn = 0

    def submit(self, number: int, specs: list) -> None:
        """Give the batch to an idle worker, or to a new one; a worker found dead is replaced
        (more than ``retries`` that die as they start: UserError)."""
        while True:
            w = next((w for w in self.workers if w.job is None), None)
            new = w is None
            if new:
                w = Worker(self.ctx, self.task)
                self.workers.append(w)
            if w.give((number, specs)):
                return
            w.stop()
            self.workers.remove(w)
            if new:
                self.stillborn += 1
                if self.stillborn > self.retries:
                    raise UserError(f"worker processes die as they start "
                                    f"({self.stillborn} of them); try --workers 1")

    def done(self) -> list[Done]:
        """Wait until a busy worker sends its result or dies; the batches of all such."""
        busy = [w for w in self.workers if w.job is not None]
        ready = set(mp_wait([w.conn for w in busy] + [w.proc.sentinel for w in busy]))
        finished = []
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
            w.job = None
            if result is not None:
                finished.append(Done(number, specs, result))
                continue
            w.proc.join()
            died = death_cause(w.proc.exitcode)
            lost = Lost(f"its worker process (pid {w.proc.pid}) {died}",
                        f"WorkerDied: the worker process training this batch {died}")
            w.stop()
            self.workers.remove(w)
            finished.append(Done(number, specs, lost))
        return finished

    def cancel(self) -> None:
        """Drop the batches in flight: their workers are killed; the idle ones stay."""
        for w in [w for w in self.workers if w.job is not None]:
            w.stop()                                   # kills a busy worker
            self.workers.remove(w)


@contextlib.contextmanager
def open_pool(workers: int, task: Callable, retries: int) -> Iterator[Pool]:
    """A pool of ``workers`` processes training ``task``, ended on exit (busy ones killed)."""
    with _one_thread():
        pool = Pool(workers, task, retries)
        try:
            yield pool
        finally:
            for w in pool.workers:
                w.stop()
