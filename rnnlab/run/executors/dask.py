"""Run a sweep's batches on a Dask cluster (``rnnlab sweep FILE --executor dask``).

The interface is that of every executor (``base``): batches are submitted, and ``done()`` returns
each as it finishes, to the commit loop in this process (``rnnlab.run.execute``). Workers only
train: each task is ``base.run_batch(specs)`` and returns the batch's records (a
``BatchResult``); this process stays the only writer of the results folder, so the folder layout,
resume, the progress bar and the numbers are those of a local sweep.

- **Where.** ``scheduler="tcp://host:port"`` (or ``tls://host:port`` with certificate files:
  :func:`security`) connects to a running cluster (``dask scheduler`` and
  ``dask worker``, dask-jobqueue, ...; the workers need rnnlab installed). The sweep connects
  before it opens the results folder. A malformed address (or ``tls://`` without certificates)
  is a UserError (exit 2); a well-formed one where no scheduler answers within Dask's connect
  timeout is an EnvironmentFault (exit 3), like a scheduler lost later. Without an address a
  ``LocalCluster`` of ``workers`` processes with one thread each is started on the loopback
  interface, and closed again at the end.
- **Bounded.** At most a window of ``2 x`` the cluster's threads (at least 4) batches is in flight;
  the next batch is submitted when one finishes, so memory does not grow with the sweep.
- **Retries.** Dask's scheduler retries a batch by itself and counts two kinds of failed
  attempt apart: an exception that escaped the task (``submit(retries=RETRIES)``; exceptions
  inside training never get there: ``run_batch`` records them as failed rows), and the loss of a
  worker the batch was on (``distributed.scheduler.allowed-failures``: ``RETRIES`` on rnnlab's
  own LocalCluster, :func:`local_config`; on a cluster of your own its setting, Dask's default
  3). The batch is given up at ``RETRIES + 1`` exceptions or ``allowed-failures + 1`` lost
  workers, so a batch that always fails the same way is started at most ``RETRIES + 1``
  times (lost workers: ``allowed-failures + 1``), and one that fails both ways at most
  ``RETRIES + allowed-failures + 1`` times. A lost worker counts against every batch it held,
  including one only queued behind the batch that killed it (with two batches in flight per
  worker thread, the scheduler sends a second batch to a worker already training one). A retried
  batch is one future and is committed once. A batch given up becomes failed rows carrying the
  error text (``KilledWorker``: reported as a final loss, named in one line).
- **Ctrl-C.** ``KeyboardInterrupt`` cancels the batches in flight, closes the client (and the
  LocalCluster) and propagates; the batches already handled are committed and kept.

Dask is an optional extra (``pip install 'rnnlab[dask]'``) imported only here, only when asked for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator

from rnnlab.errors import EnvironmentFault, UserError
from rnnlab.run.executors.base import THREAD_VARS, Done, Lost, failed_result
from rnnlab.run.train import BatchResult

#: Retries of a batch, counted apart by Dask's scheduler: task exceptions (``submit(retries=)``)
#: and, on the LocalCluster started here, lost workers (``allowed-failures``), before the batch
#: is recorded as failed.
RETRIES = 2
#: Seconds without a finished batch after which the executor looks at the cluster's workers; a
#: cluster found without any at two looks in a row is named in one line (the sweep waits on).
WORKERS_CHECK = 10.0
MISSING = "--executor dask needs Dask: pip install 'rnnlab[dask]'"


def require_dask():
    """The ``distributed`` module, or a UserError saying how to install the extra."""
    try:
        import distributed
    except ImportError as e:
        raise UserError(f"{MISSING} ({e})") from None
    return distributed


def window(client) -> int:
    """Batches kept in flight: two per worker thread (one running, one ready), at least 4."""
    return max(4, 2 * sum(client.nthreads().values()))


#: The certificate options of a ``tls://`` scheduler: rnnlab's name -> (CLI flag, the name of
#: ``distributed.Security``'s argument).
TLS_OPTIONS = {"ca_file": ("--tls-ca-file", "tls_ca_file"),
               "cert": ("--tls-cert", "tls_client_cert"),
               "key": ("--tls-key", "tls_client_key")}


def security(tls: dict | None):
    """A ``distributed.Security`` for the client from ``tls`` (``ca_file``: the certificate
    authority that signed the scheduler's certificate; ``cert``, ``key``: this client's
    certificate and private key, which may be one file), with encryption required; None
    without ``tls`` (then Dask's configuration, ``distributed.comm.tls.*``, applies). A missing
    or unreadable file is a UserError naming its option."""
    tls = {k: v for k, v in (tls or {}).items() if v is not None}
    if not tls:
        return None
    unknown = set(tls) - set(TLS_OPTIONS)
    if unknown:
        raise ValueError(f"tls: got {sorted(unknown)}; allowed: {', '.join(TLS_OPTIONS)}")
    for name, path in tls.items():
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            raise UserError(f"{TLS_OPTIONS[name][0]}: cannot read {path} ({e.strerror}); "
                            "allowed: a readable PEM file") from None
    if "ca_file" not in tls:
        raise UserError("--tls-cert/--tls-key need --tls-ca-file (the certificate authority "
                        "that signed the scheduler's certificate)")
    if "cert" in tls and "key" not in tls and not _has_private_key(tls["cert"]):
        raise UserError(f"--tls-cert {tls['cert']} holds no private key; pass --tls-key")
    distributed = require_dask()
    kwargs = {TLS_OPTIONS[k][1]: str(v) for k, v in tls.items()}
    return distributed.Security(require_encryption=True, **kwargs)


def _has_private_key(path) -> bool:
    with open(path, "rb") as f:
        return b"PRIVATE KEY-----" in f.read()


@contextlib.contextmanager
def connect(scheduler: str | None = None, workers: int = 1, retries: int = RETRIES,
            tls: dict | None = None) -> Iterator:
    """A ``Client`` of the cluster at ``scheduler`` (``tls://`` with the certificate files of
    ``tls``, see :func:`security`), or of a new loopback LocalCluster of ``workers``
    single-threaded processes (BLAS limited to one thread) closed on exit."""
    distributed = require_dask()
    sec = security(tls)
    with _quiet_client_logs(), _connect(distributed, sec, scheduler, workers, retries) as client:
        yield client


@contextlib.contextmanager
def _quiet_client_logs() -> Iterator[None]:
    """Dask's client logs a traceback when it loses the scheduler (and on other comm errors);
    rnnlab reports those faults in one line of its own, so the client's loggers are silenced
    below CRITICAL while a sweep is connected."""
    loggers = [logging.getLogger(n) for n in ("distributed.client", "distributed.comm",
                                               "distributed.core", "distributed.batched",
                                               "distributed.utils")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.setLevel(level)


def local_config(retries: int = RETRIES) -> dict:
    """The Dask settings under which rnnlab's own LocalCluster runs, from its start to its close
    (the scheduler and the cluster object read some of them only as workers come and go).

    - ``allowed-failures``: the batch whose workers died ``retries + 1`` times is given up.
    - ``worker-saturation`` 1.0: batches that queue on the scheduler go to a worker only as it
      has a thread free (the scheduler queues a task group only once it holds more than twice
      the cluster's threads, so with the client's window it sends the first batches directly).
    - ``lost-worker-timeout``: Dask's cluster object closes a worker's nanny for good when no
      worker of that name is registered this long (15 s by default) after *any* removal of
      one; a LocalCluster's nanny restarts its worker after a death, so a check that falls while
      it restarts (from the same death or a later one) would leave the cluster a worker short
      for the rest of the sweep (none left: the sweep waits forever), and the batch the closed
      worker had started would run again without counting as an attempt. Never checked here.
    """
    return {"distributed.scheduler.allowed-failures": retries,
            "distributed.scheduler.worker-saturation": 1.0,
            "distributed.deploy.lost-worker-timeout": "3650 days"}


@contextlib.contextmanager
def _connect(distributed, sec, scheduler, workers, retries) -> Iterator:
    import dask

    with dask.config.set(local_config(retries)) if scheduler is None \
            else contextlib.nullcontext():
        with _client_of(distributed, sec, scheduler, workers) as client:
            yield client


@contextlib.contextmanager
def _client_of(distributed, sec, scheduler, workers) -> Iterator:
    cluster = None
    if scheduler is None:
        cluster = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR,
            env={k: "1" for k in THREAD_VARS})
    aborted = False
    try:
        try:
            extra = {"security": sec} if sec is not None else {}
            client = _client_class(distributed)(
                cluster if cluster is not None else scheduler, set_as_default=False, **extra)
        except (ValueError, TypeError) as e:      # a malformed address, TLS without certificates
            raise UserError(f"cannot connect to the dask scheduler {scheduler}: {e}") from None
        except (OSError, TimeoutError) as e:      # a well-formed address nobody answers at
            raise EnvironmentFault(
                f"cannot connect to the dask scheduler {scheduler}: {e}; nothing was written: "
                "start the scheduler (or correct --scheduler) and rerun the same command"
            ) from None
        try:
            yield client
        except BaseException:
            aborted = True
            raise
        finally:
            with contextlib.suppress(Exception):
                client.close()
    finally:
        if cluster is not None:
            with contextlib.suppress(Exception):
                if aborted:                # Ctrl-C: do not wait for the batches being trained
                    cluster.sync(_kill_workers, list(cluster.workers.values()))
            with contextlib.suppress(Exception):
                cluster.close()


def _client_class(distributed):
    """``distributed.Client``, closed at once (1 s) when it fails to connect: otherwise its
    ``__del__`` later waits 60 s to close and prints a traceback."""

    class Client(distributed.Client):
        def __init__(self, *args, **kwargs):
            try:
                super().__init__(*args, **kwargs)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.close(timeout=1)
                raise

    return Client


async def _kill_workers(nannies, timeout: float = 0.5):
    """Close the LocalCluster's nannies, killing their busy worker processes after ``timeout``
    instead of the default 4 s of waiting for the running batch."""
    await asyncio.gather(*(n.close(timeout=timeout) for n in nannies), return_exceptions=True)


class DaskExecutor:
    """Batches as futures on a Dask cluster; ``done()`` waits for the next one to finish."""

    def __init__(self, client, distributed, task: Callable, retries: int, window: int,
                 scheduler: str | None, note: Callable[[str], None] | None = None):
        self.client = client
        self.finished_one = threading.Event()     # set by any batch's future as it finishes
        self.note = note or (lambda line: None)
        self.workerless = 0                        # looks in a row that found no worker
        self.task = task
        self.retries = retries
        self.window = window
        self.scheduler = scheduler
        self.killed_worker = distributed.KilledWorker
        self.finished = distributed.as_completed(loop=client.loop)
        self.pending: dict = {}                    # key -> (future, number, specs), not yet done
        self.tag = uuid.uuid4().hex[:8]
        self.count = 0

    def submit(self, number: int, specs: list) -> None:
        key = f"rnnlab-batch-{self.tag}-{self.count}"
        self.count += 1
        with self.cluster_faults():
            fut = self.client.submit(self.task, specs, key=key, retries=self.retries, pure=False)
        self.pending[key] = (fut, number, specs)
        self.finished.add(fut)
        fut.add_done_callback(lambda _: self.finished_one.set())

    def done(self) -> list[Done]:
        with self.cluster_faults():
            self.wait_for_one()
            for fut in self.finished:
                entry = self.pending.pop(fut.key, None)
                if entry is None:                  # yielded twice: already done
                    continue
                _, number, specs = entry
                value = self.outcome(fut, specs)
                fut.release()
                return [Done(number, specs, value)]
        raise RuntimeError("done() with no batch in flight")

    def wait_for_one(self) -> None:
        """Wait until a batch in flight has finished, looking at the cluster every
        ``WORKERS_CHECK`` seconds meanwhile: a cluster without workers would otherwise leave the
        sweep waiting without a word."""
        futures = [entry[0] for entry in self.pending.values()]
        while futures and not self.finished.has_ready():
            self.finished_one.clear()
            if any(f.done() for f in futures):     # after the clear: no finish goes unseen
                return
            if not self.finished_one.wait(WORKERS_CHECK):
                self.look_at_workers()

    def look_at_workers(self) -> None:
        """Say once when the cluster has had no worker at two looks in a row, and once when
        workers are back."""
        workers = self.client.scheduler_info().get("workers") or {}
        where = f" at {self.scheduler}" if self.scheduler else ""
        if workers:
            if self.workerless >= 2:
                self.note(f"the dask cluster{where} has workers again; the sweep goes on")
            self.workerless = 0
            return
        self.workerless += 1
        if self.workerless == 2:
            self.note(f"the dask cluster{where} has no workers: the sweep waits for one to "
                      "join (Ctrl-C stops it; finished runs are kept)")

    def outcome(self, future, specs) -> BatchResult | Lost:
        """The result of a finished future; a batch that failed beyond its retries becomes a
        final loss (the worker died each time: ``KilledWorker``) or failed rows (an exception
        escaped the task)."""
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise                  # lost scheduler or cancelled: not a failure of the runs
        except self.killed_worker as e:
            deaths = getattr(e, "allowed_failures", self.retries) + 1    # the scheduler's count
            return Lost(f"the dask workers training it died {deaths} times",
                        f"{type(e).__name__}: {e}", final=True)
        except Exception as e:     # noqa: BLE001 - recorded per run, reported at the end
            return failed_result(specs, f"{type(e).__name__}: {e}")

    @contextlib.contextmanager
    def cluster_faults(self) -> Iterator[None]:
        """A lost scheduler (or one that cancelled the batches) as one line."""
        try:
            yield
        except (concurrent.futures.CancelledError, OSError, TimeoutError) as e:
            why = getattr(e, "reason", None) or (str(e).splitlines() or [type(e).__name__])[0]
            where = f" at {self.scheduler}" if self.scheduler else ""
            raise EnvironmentFault(
                f"lost the dask scheduler{where} or it cancelled the sweep's batches ({why}); "
                "finished runs are kept: rerun the same command (with a scheduler running) to "
                "resume") from None

    def cancel(self) -> None:
        if self.pending:
            with contextlib.suppress(Exception):
                self.client.cancel([entry[0] for entry in self.pending.values()])
            self.pending.clear()


@contextlib.contextmanager
def open_dask(task: Callable, *, scheduler: str | None = None, workers: int = 1,
              retries: int = RETRIES, tls: dict | None = None,
              note: Callable[[str], None] | None = None) -> Iterator[DaskExecutor]:
    """An executor on the cluster at ``scheduler`` or on a new LocalCluster (:func:`connect`);
    batches still in flight on exit are cancelled. ``note`` receives one-line messages (a
    cluster left without workers)."""
    distributed = require_dask()
    with connect(scheduler, workers, retries, tls) as client:
        ex = DaskExecutor(client, distributed, task, retries, window(client), scheduler, note)
        try:
            yield ex
        finally:
            ex.cancel()
