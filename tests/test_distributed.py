"""Sweeps on a Dask cluster (``--executor dask``, ``rnnlab.run.executors.dask``) on a real
LocalCluster of two worker processes on the loopback interface: the results equal the local
executor's, a worker killed mid-batch loses and duplicates nothing, a batch beyond its retries is
recorded as failed.

Skipped without the ``dask`` extra (``pip install -e '.[test,dask]'``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
import textwrap

import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

import cloudpickle  # noqa: E402  (a dependency of distributed)
import dask  # noqa: E402
import psutil  # noqa: E402  (a dependency of distributed)
from conftest import committed_runs, tiny_data, tiny_exp, write_yaml  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import rnnlab.run.executors.base  # noqa: E402
import rnnlab.run.executors.dask  # noqa: E402
from rnnlab.cli import app  # noqa: E402
from rnnlab.results.readers import load_grad_norms, load_metrics, load_runs  # noqa: E402
from rnnlab.run.sweep import run_sweep  # noqa: E402

# The batch functions below are shipped to the workers by value: they need not import this file.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

MAX_BATCH = 2
SMALL = {"model": {"hidden": 4}, "task": {"batch": 4, "eval_batch": 16},
         "train": {"steps": 3, "log_every": 1}}


def small_exp(**overrides):
    """12 runs (seq_len [3, 5] x weight_scale [0.5, 1.5] x 3 repeats): 6 batches of 2."""
    return tiny_exp(**{**SMALL, "repeats": 3, **overrides})


def results(out) -> dict[str, pd.DataFrame]:
    """What a folder holds, in canonical order (runs without their wall time)."""
    return {"runs": load_runs(out).drop(columns=["wall_time"]).reset_index(drop=True),
            "grad_norms": load_grad_norms(out).reset_index(drop=True),
            "metrics": load_metrics(out).reset_index(drop=True)}


def assert_same_results(a, b):
    ra, rb = results(a), results(b)
    for key in ra:
        pd.testing.assert_frame_equal(ra[key], rb[key], check_exact=True, obj=key)


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster under the settings of rnnlab's own (``local_config``), held for its whole
    life: the cluster object reads ``lost-worker-timeout`` whenever a worker goes, and with
    Dask's 15 s a check falling while a killed worker restarts (in a later test) would close that
    worker's nanny for good, dropping the batch it had started without counting the attempt (one
    attempt more than ``1 + RETRIES`` in the retry test) or leaving no worker (a hang)."""
    with dask.config.set(rnnlab.run.executors.dask.local_config()):
        with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                      host="127.0.0.1", dashboard_address="127.0.0.1:0") as cl:
            yield cl


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "out"
    report = run_sweep(small_exp(), out, max_batch=MAX_BATCH)
    assert report.outcome.ok == 12
    return out


# ------------------------------------------------------------------------ same numbers


def test_dask_sweep_equals_the_local_sweep_with_bounded_submissions(tmp_path, cluster,
                                                                    reference, monkeypatch):
    events = []
    real_submit = distributed.Client.submit

    def submit(self, *args, **kwargs):
        events.append(+1)
        return real_submit(self, *args, **kwargs)
    monkeypatch.setattr(distributed.Client, "submit", submit)
    monkeypatch.setattr(rnnlab.run.executors.dask, "window", lambda client: 3)
    pid = os.getpid()
    real_write = rnnlab.results.store.ResultsStore.write_batch

    def write(self, *args):
        assert os.getpid() == pid                   # only the client writes the folder
        events.append(-1)
        return real_write(self, *args)
    monkeypatch.setattr(rnnlab.results.store.ResultsStore, "write_batch", write)

    out = tmp_path / "out"
    report = run_sweep(small_exp(), out, max_batch=MAX_BATCH, executor="dask",
                       scheduler=cluster.scheduler_address)
    o = report.outcome
    assert (o.done, o.ok, o.failed, o.interrupted) == (12, 12, 0, False)
    assert events.count(1) == events.count(-1) == 6
    in_flight = [sum(events[:i + 1]) for i in range(len(events))]
    assert max(in_flight) == 3                      # a window, not all batches at once
    assert_same_results(out, reference)
    assert (out / "summary.csv").read_text() == (reference / "summary.csv").read_text()

    again = run_sweep(small_exp(), out, executor="dask", scheduler=cluster.scheduler_address)
    assert (again.skipped, again.outcome.done) == (12, 0)     # resume as with a local sweep


def test_cli_dask_executor_starts_a_local_cluster(tmp_path, reference, monkeypatch):
    monkeypatch.chdir(tmp_path)
    file = write_yaml(tmp_path / "small.yaml", tiny_data(**SMALL, repeats=3))
    res = CliRunner().invoke(app, ["sweep", str(file), "--executor", "dask", "--workers", "2",
                                   "--max-batch", str(MAX_BATCH), "--out", "out",
                                   "--format", "csv", "--no-progress"])
    assert res.exit_code == 0, (res.stdout, res.stderr, res.exception)
    assert "12 run(s) now" in res.stderr
    assert_same_results(tmp_path / "out", reference)


# --------------------------------------------------------------------------- failures


def _die_once(marker, real, specs):
    """The first attempt of any batch kills its worker process; all others train normally."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return real(specs)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os._exit(1)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs: a process that died but whose parent (the nanny) has not reaped it
    yet is a zombie, dead all the same."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(tmp_path, cluster, reference,
                                                                monkeypatch):
    marker = tmp_path / "died"
    monkeypatch.setattr(rnnlab.run.executors.base, "run_batch",
                        functools.partial(_die_once, str(marker),
                                          rnnlab.run.executors.base.run_batch))
    out = tmp_path / "out"
    report = run_sweep(small_exp(), out, max_batch=MAX_BATCH, executor="dask",
                       scheduler=cluster.scheduler_address)
    dead = int(marker.read_text())
    assert dead != os.getpid() and not _alive(dead)                 # a worker really died
    assert (report.outcome.ok, report.outcome.failed) == (12, 0)
    runs = load_runs(out)
    assert runs["run_id"].is_unique
    assert set(runs["run_id"]) == {r.run_id for r in small_exp().runs()}
    assert_same_results(out, reference)


def test_the_local_cluster_keeps_its_workers_through_deaths_and_restarts(tmp_path, reference,
                                                                          monkeypatch):
    """rnnlab's own LocalCluster (no --scheduler): Dask's cluster object closes a worker's
    nanny for good when, ``lost-worker-timeout`` after a worker is removed, no worker of that
    name is registered, as while it restarts after a death. With the timeout at 0 every death
    falls in that window: unless rnnlab's own setting holds for the cluster's life, the nanny of
    the one worker is closed and the sweep is left without workers (Dask's no-workers timeout,
    set here, then fails its batches instead of waiting forever)."""
    marker = tmp_path / "died"
    monkeypatch.setattr(rnnlab.run.executors.base, "run_batch",
                        functools.partial(_die_once, str(marker),
                                          rnnlab.run.executors.base.run_batch))
    out = tmp_path / "out"
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "0s",
                          "distributed.scheduler.no-workers-timeout": "30s"}):
        report = run_sweep(small_exp(), out, max_batch=MAX_BATCH, executor="dask", workers=1)
    assert marker.exists()                          # the worker died once
    o = report.outcome
    assert (o.done, o.ok, o.failed) == (12, 12, 0), o.errors
    assert_same_results(out, reference)


def _always(log_dir, how, real, specs):
    """Batches of seq_len 5 fail on every attempt (a worker death, or an exception escaping the
    task); each attempt leaves a file in ``log_dir``."""
    if specs[0].config.task.seq_len != 5:
        return real(specs)
    fd, _ = tempfile.mkstemp(dir=log_dir)
    os.close(fd)
    if how == "die":
        os._exit(1)
    raise RuntimeError("cluster trouble")


@pytest.mark.parametrize("how, error", [("die", "KilledWorker: "),
                                        ("raise", "RuntimeError: cluster trouble")])
def test_a_batch_failing_on_every_retry_is_recorded_as_failed(tmp_path, cluster, reference,
                                                              monkeypatch, how, error):
    log = tmp_path / "attempts"
    log.mkdir()
    monkeypatch.setattr(rnnlab.run.executors.base, "run_batch",
                        functools.partial(_always, str(log), how,
                                          rnnlab.run.executors.base.run_batch))
    exp = small_exp(repeats=1)                      # 4 runs: one batch per seq_len
    out = tmp_path / "out"
    notes = []
    report = run_sweep(exp, out, max_batch=MAX_BATCH, executor="dask",
                       scheduler=cluster.scheduler_address, note=notes.append)
    assert len(list(log.iterdir())) == 1 + rnnlab.run.executors.dask.RETRIES
    if how == "die":                                # one line naming the lost batch
        note, = notes
        assert note.startswith("batch 2/2 (2 run(s), first run ") and "lost: the dask workers " \
            f"training it died {1 + rnnlab.run.executors.dask.RETRIES} times" in note, note
    else:
        assert notes == []
    o = report.outcome
    assert (o.done, o.ok, o.failed, o.interrupted) == (4, 2, 2, False)
    runs = load_runs(out)
    assert runs["run_id"].is_unique and len(runs) == 4
    failed = runs[runs["seq_len"] == 5]
    assert (failed["status"] == "failed").all()
    assert failed["error"].str.startswith(error).all(), failed["error"].tolist()
    good = runs[runs["seq_len"] == 3]
    assert (good["status"] == "ok").all()
    ref = results(reference)
    got = results(out)
    ids = set(good["run_id"])
    pd.testing.assert_frame_equal(
        got["grad_norms"], ref["grad_norms"][ref["grad_norms"]["run_id"].isin(ids)]
        .reset_index(drop=True), check_exact=True)


def test_a_batch_given_up_names_the_deaths_the_scheduler_allowed():
    """How many workers died before Dask gave a batch up is the scheduler's own count
    (``allowed-failures + 1``, carried by ``KilledWorker``): 3 on rnnlab's LocalCluster, 4 on a
    cluster of your own with Dask's default, whatever rnnlab's RETRIES says."""
    from types import SimpleNamespace

    from rnnlab.run.executors.dask import DaskExecutor

    class Killed:
        def result(self):
            raise distributed.KilledWorker("rnnlab-batch-x-0",
                                           SimpleNamespace(address="tcp://10.0.0.9:1234"), 3)

    ex = SimpleNamespace(killed_worker=distributed.KilledWorker,
                         retries=rnnlab.run.executors.dask.RETRIES)
    lost = DaskExecutor.outcome(ex, Killed(), [])
    assert lost.final and lost.cause == "the dask workers training it died 4 times", lost
    assert lost.error.startswith("KilledWorker: Attempted to run task 'rnnlab-batch-x-0' on 4 ")


def test_a_cluster_without_workers_is_named_once_and_the_sweep_goes_on_when_one_joins(
        tmp_path, reference, monkeypatch):
    """A scheduler with no worker: the sweep says so in one line (after two looks at the
    cluster without a finished batch), waits, says once more when a worker joins, and ends
    with the local sweep's numbers."""
    import threading
    import time

    monkeypatch.setattr(rnnlab.run.executors.dask, "WORKERS_CHECK", 0.2)
    notes, reports = [], []
    with dask.config.set(rnnlab.run.executors.dask.local_config()):
        with distributed.LocalCluster(n_workers=0, processes=True, threads_per_worker=1,
                                      host="127.0.0.1", dashboard_address="127.0.0.1:0") as cl:
            sweep = threading.Thread(target=lambda: reports.append(run_sweep(
                small_exp(), tmp_path / "out", max_batch=MAX_BATCH, executor="dask",
                scheduler=cl.scheduler_address, note=notes.append)))
            sweep.start()
            deadline = time.monotonic() + 60
            while not notes and time.monotonic() < deadline:
                time.sleep(0.05)
            assert notes == [f"the dask cluster at {cl.scheduler_address} has no workers: the "
                             "sweep waits for one to join (Ctrl-C stops it; finished runs are "
                             "kept)"]
            assert not committed_runs(tmp_path / "out")
            cl.scale(1)
            sweep.join(timeout=120)
            assert not sweep.is_alive()
    assert notes[1:] == [f"the dask cluster at {cl.scheduler_address} has workers again; the "
                         "sweep goes on"]
    report, = reports
    assert (report.outcome.ok, report.outcome.failed) == (12, 0)
    assert_same_results(tmp_path / "out", reference)


# ------------------------------------------------------------------------------ options


def test_missing_extra_and_misused_scheduler_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    file = write_yaml(tmp_path / "small.yaml", tiny_data(**SMALL))
    runner = CliRunner()
    res = runner.invoke(app, ["sweep", str(file), "--scheduler", "tcp://127.0.0.1:1"])
    assert res.exit_code == 2 and "--scheduler needs --executor dask" in res.stderr
    monkeypatch.setitem(sys.modules, "distributed", None)      # as if not installed
    res = runner.invoke(app, ["sweep", str(file), "--executor", "dask", "--out", "out"])
    assert res.exit_code == 2, res.stderr
    line, = res.stderr.strip().splitlines()
    assert "pip install 'rnnlab[dask]'" in line and line.startswith("rnnlab: error: ")
    assert not (tmp_path / "out").exists()


def test_an_unreachable_scheduler_leaves_nothing_behind_and_exits_3(tmp_path):
    """No scheduler at a well-formed address: one line, exit 3 (the environment, as a scheduler
    lost later), and no folder created; an existing folder, even with --fresh, stays as it was.
    A malformed address is a user mistake: exit 2."""
    file = write_yaml(tmp_path / "small.yaml", tiny_data(**SMALL))
    runner = CliRunner()
    args = ["sweep", str(file), "--executor", "dask", "--no-progress"]
    address = "tcp://127.0.0.1:1"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        res = runner.invoke(app, [*args, "--scheduler", address, "--out", str(tmp_path / "new")])
        assert res.exit_code == 3, (res.stderr, res.exception)
        line, = res.stderr.strip().splitlines()
        assert line.startswith(f"rnnlab: error: cannot connect to the dask scheduler {address}")
        assert "rerun the same command" in line
        assert not (tmp_path / "new").exists()

        old = tmp_path / "old"
        assert runner.invoke(app, [*args[:2], "--out", str(old), "--no-progress"]).exit_code == 0
        before = {p.relative_to(old): p.read_bytes() for p in old.rglob("*") if p.is_file()}
        res = runner.invoke(app, [*args, "--scheduler", address, "--out", str(old), "--fresh"])
        assert res.exit_code == 3, (res.stderr, res.exception)
        assert {p.relative_to(old): p.read_bytes() for p in old.rglob("*") if p.is_file()} \
            == before

        res = runner.invoke(app, [*args, "--scheduler", "foo://127.0.0.1:1", "--out",
                                  str(tmp_path / "bad")])
        assert res.exit_code == 2, (res.stderr, res.exception)
        assert "unknown address scheme" in res.stderr
        assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------- TLS, a lost scheduler


def _self_signed(folder) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files), made with openssl."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def test_tls_scheduler_with_a_self_signed_certificate(tmp_path, reference):
    """A LocalCluster that speaks only TLS (encryption required, every party authenticated by
    the one self-signed certificate): the sweep with --tls-* equals the local one; without the
    certificate options the connection is refused in one line before the folder is created."""
    cert, key = _self_signed(tmp_path)
    sec = distributed.Security(
        tls_ca_file=cert, tls_scheduler_cert=cert, tls_scheduler_key=key,
        tls_worker_cert=cert, tls_worker_key=key, tls_client_cert=cert, tls_client_key=key,
        require_encryption=True)
    file = write_yaml(tmp_path / "small.yaml", tiny_data(**SMALL, repeats=3))
    runner = CliRunner()
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  protocol="tls://", host="127.0.0.1", security=sec,
                                  dashboard_address="127.0.0.1:0") as cl:
        address = cl.scheduler_address
        assert address.startswith("tls://")
        args = ["sweep", str(file), "--executor", "dask", "--scheduler", address,
                "--max-batch", str(MAX_BATCH), "--format", "csv", "--no-progress"]
        res = runner.invoke(app, [*args, "--out", str(tmp_path / "plain")],
                            env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s"})
        assert res.exit_code == 2, (res.stderr, res.exception)
        line, = res.stderr.strip().splitlines()
        assert line.startswith(f"rnnlab: error: cannot connect to the dask scheduler {address}")
        assert not (tmp_path / "plain").exists()
        res = runner.invoke(app, [*args, "--out", str(tmp_path / "tls"), "--tls-ca-file", cert,
                                  "--tls-cert", cert, "--tls-key", key])
        assert res.exit_code == 0, (res.stderr, res.exception)
    assert_same_results(tmp_path / "tls", reference)


def test_tls_options_are_checked_before_anything_is_written(tmp_path):
    cert, key = _self_signed(tmp_path)
    file = write_yaml(tmp_path / "small.yaml", tiny_data(**SMALL))
    runner = CliRunner()
    base = ["sweep", str(file), "--executor", "dask", "--out", str(tmp_path / "out")]
    cases = [
        ([*base, "--tls-ca-file", cert], "need --scheduler tls://HOST:PORT"),
        ([*base, "--scheduler", "tls://127.0.0.1:1", "--tls-ca-file", str(tmp_path / "nope")],
         "--tls-ca-file: cannot read"),
        ([*base, "--scheduler", "tls://127.0.0.1:1", "--tls-cert", cert, "--tls-key", key],
         "need --tls-ca-file"),
        ([*base, "--scheduler", "tls://127.0.0.1:1", "--tls-ca-file", cert, "--tls-cert", cert],
         "holds no private key; pass --tls-key"),
    ]
    for args, expected in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.stderr)
        line, = res.stderr.strip().splitlines()
        assert expected in line, line
    assert not (tmp_path / "out").exists()


def test_a_lost_scheduler_stops_the_client_in_one_line_and_the_folder_resumes(tmp_path,
                                                                               reference):
    """A real scheduler and worker (``dask scheduler``, ``dask worker`` processes) and the sweep
    in a subprocess; the scheduler is SIGKILLed after the first commits. The client ends with
    one line and exit status 3, no traceback; the folder holds an exact part of the reference
    and a local rerun completes it exactly."""
    import json
    import signal
    import subprocess
    import time


    env = dict(os.environ, NO_COLOR="1", DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="3s")
    info = tmp_path / "scheduler.json"
    bindir = os.path.dirname(sys.executable)
    procs = []

    def start(*args, **kw):
        p = subprocess.Popen(list(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, env=env, **kw)
        procs.append(p)
        return p

    # the reference's runs; each batch is slowed down (slow.py) to leave time to kill
    file = write_yaml(tmp_path / "small.yaml", tiny_data(**SMALL, repeats=3))
    try:
        sched = start(os.path.join(bindir, "dask"), "scheduler", "--host", "127.0.0.1",
                      "--port", "0", "--dashboard-address", "127.0.0.1:0", "--scheduler-file",
                      str(info))
        deadline = time.monotonic() + 60
        while not info.exists():
            assert time.monotonic() < deadline and sched.poll() is None
            time.sleep(0.05)
        time.sleep(0.2)
        address = json.loads(info.read_text())["address"]
        start(os.path.join(bindir, "dask"), "worker", address, "--nthreads", "1",
              "--nworkers", "1", "--no-dashboard")
        slow = tmp_path / "slow.py"
        slow.write_text(textwrap.dedent('''
            import sys, time
            from rnnlab.run.executors import base
            from rnnlab.cli import app
            real = base.run_batch
            def run_batch(specs):
                time.sleep(0.5)
                return real(specs)
            base.run_batch = run_batch
            sys.argv = ["rnnlab", *sys.argv[1:]]
            app()
        '''))
        out = tmp_path / "out"
        sweep = subprocess.Popen(
            [sys.executable, str(slow), "sweep", str(file), "--out", str(out), "--executor",
             "dask", "--scheduler", address, "--max-batch", str(MAX_BATCH), "--no-progress",
             "--format", "csv"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env)
        procs.append(sweep)
        deadline = time.monotonic() + 120
        while True:
            if committed_runs(out) >= 2:
                break
            assert sweep.poll() is None, sweep.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.killpg(sched.pid, signal.SIGKILL)
        stdout, stderr = sweep.communicate(timeout=120)
        assert sweep.returncode == 3, stderr
        line, = stderr.strip().splitlines()
        assert line.startswith(f"rnnlab: error: lost the dask scheduler at {address}"), line
        assert "rerun the same command" in line and "Traceback" not in stdout + stderr
        assert not (out / ".lock").exists()
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL) if p is not sweep else p.kill()
            p.wait()
    got = results(out)
    ids = set(got["runs"]["run_id"])
    assert 2 <= len(ids) < 12
    ref = results(reference)
    for key in ref:
        want = ref[key][ref[key]["run_id"].isin(ids)].reset_index(drop=True)
        pd.testing.assert_frame_equal(got[key], want, check_exact=True, obj=key)
    report = run_sweep(small_exp(), out, max_batch=MAX_BATCH)
    assert report.skipped == len(ids)
    assert_same_results(out, reference)
