"""What every executor does, and what it gives back.

An executor trains batches somewhere (this process, worker processes, a Dask cluster) behind one
small interface, used by the one commit loop in ``rnnlab.run.execute``::

    with open_pool(...) as ex:          # each backend: a context manager yielding an executor
        ex.window                       # how many batches it takes in flight at once
        ex.submit(number, specs)        # start training batch ``number`` (1-based, for messages)
        ex.done()                       # block until submitted batches finish: a list of Done
        ex.cancel()                     # drop the batches in flight; the executor stays usable

A finished batch is a value, never an exception: its ``BatchResult`` (a batch whose training
raised is already failed rows, :func:`run_batch`), or :class:`Lost` when the process training it
died. The commit loop decides what a loss means (retry or failed rows); the executor only
reports it. Leaving the ``with`` block ends the backend's processes or connection; on an
exception (Ctrl-C) batches still in flight are abandoned. An open executor can serve several
sweeps in turn (``run_sweep(..., pool=ex)``): a sweep that stops early cancels what it left in
flight.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rnnlab.run.train import BatchResult

# The training code (NumPy, pandas, the engine) is imported where a batch is trained or its
# failure recorded, not here: a process that only starts workers (the fork server's early
# start, ``rnnlab.run.executors.pool.start_server``) does not wait for it.

#: Environment variables that limit BLAS and OpenMP to one thread in worker processes.
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass(frozen=True)
class Lost:
    """A batch whose worker died while training it.

    ``cause`` says how, in words ("its worker process (pid 12) was killed by SIGKILL");
    ``error`` is the start of the error its runs carry if they are recorded as failed; ``final``
    means the backend has retried it already (Dask's scheduler does), so it is not tried again.
    """

    cause: str
    error: str
    final: bool = False


@dataclass(frozen=True)
class Done:
    """A submitted batch that finished: its number, its runs and what came of them."""

    number: int
    specs: list
    value: BatchResult | Lost


class Executor(Protocol):
    window: int

    def submit(self, number: int, specs: list) -> None: ...

    def done(self) -> list[Done]: ...

    def cancel(self) -> None: ...


def failed_result(specs, error: str) -> BatchResult:
    """Rows for runs whose batch raised: status failed, the error kept, no norms or metrics."""
    from rnnlab.run.train import BatchResult

    rows = [{"run_id": s.run_id, **s.swept, "seed": s.seed, "status": "failed", "error": error,
             "seq_len": s.config.task.seq_len, "solved": False} for s in specs]
    return BatchResult(rows, None, None)


def run_batch(specs) -> BatchResult:
    """Train one batch; any exception becomes failed rows (so one bad batch never ends a sweep).
    This is the task every executor runs."""
    from rnnlab.run.train import train_batch

    try:
        return train_batch(specs)
    except Exception as e:  # noqa: BLE001 - recorded per run, reported at the end
        last = traceback.extract_tb(e.__traceback__)[-1]
        where = f" ({os.path.basename(last.filename)}:{last.lineno})"
        return failed_result(specs, f"{type(e).__name__}: {e}{where}")
