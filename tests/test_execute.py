"""Batch planning (``rnnlab.run.plan``) and execution (``rnnlab.run.execute``): grouping by shape
key, the caps on a batch, failure isolation, fail-fast, interruption and the worker pool."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import tiny_exp

import rnnlab.run.executors.base
import rnnlab.run.train
from rnnlab.errors import UserError
from rnnlab.run import execute, plan
from rnnlab.run.plan import plan_batches, run_bytes


def ids(batches):
    return [[s.run_id for s in b] for b in batches]


# ------------------------------------------------------------------------------- planning


def test_runs_are_grouped_by_shape_key_in_first_seen_order():
    exp = tiny_exp(sweep={"model.weight_scale": [0.5, 1.5], "task.seq_len": [3, 5],
                          "train.lr": [0.01, 0.1]})
    runs = exp.runs()                 # seq_len alternates: 3, 3, 5, 5, 3, 3, ...
    batches = plan_batches(runs)
    assert len(batches) == 2
    assert [b[0].config.task.seq_len for b in batches] == [3, 5]
    for b in batches:
        assert len({s.config.shape_key() for s in b}) == 1
        assert len(b) == 8
    # every run once, in the order of the grid within its group
    flat = [r for b in ids(batches) for r in b]
    assert sorted(flat) == sorted(r.run_id for r in runs)
    for b in batches:
        pos = [runs.index(s) for s in b]
        assert pos == sorted(pos)


def test_a_run_that_cannot_fit_in_memory_is_refused_up_front():
    runs = tiny_exp().runs()
    plan.check_memory(runs, "exp.yaml", limit=1 << 30)          # the tiny runs fit
    with pytest.raises(UserError) as err:
        plan.check_memory(runs, "exp.yaml", limit=1000)
    msg = str(err.value)
    assert msg.startswith("exp.yaml: task.seq_len=3, task.batch=")
    assert "more than this machine's" in msg and "allowed: sizes whose run fits" in msg
    assert "\n" not in msg
    assert plan.physical_memory() > 1 << 28


def test_sweep_of_a_run_larger_than_the_machine_exits_2_before_creating_its_folder(tmp_path):
    from conftest import invoke, tiny_data, write_yaml

    f = write_yaml(tmp_path / "huge.yaml", tiny_data(task={"eval_batch": 10**9}))
    res = invoke("sweep", f, "--out", tmp_path / "out")
    assert res.exit_code == 2
    assert "huge.yaml: task.seq_len=" in res.stderr and "for its held-out evaluation" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    res = invoke("validate", f)
    assert res.exit_code == 2 and "for its held-out evaluation" in res.stderr


@pytest.mark.parametrize("max_batch, sizes", [(64, [4, 4]), (3, [3, 1, 3, 1]), (1, [1] * 8)])
def test_max_batch_caps_the_batches(max_batch, sizes):
    batches = plan_batches(tiny_exp().runs(), max_batch=max_batch)
    assert [len(b) for b in batches] == sizes
    assert sorted(r for b in ids(batches) for r in b) == sorted(r.run_id for r in tiny_exp().runs())


def test_memory_budget_caps_the_batches():
    runs = tiny_exp().runs()
    short, long = run_bytes(runs[0].config), run_bytes(runs[-1].config)
    assert runs[0].config.task.seq_len == 3 and runs[-1].config.task.seq_len == 5
    assert long * 4 == short * 6                      # (T + 1) time slices of the same size
    assert [len(b) for b in plan_batches(runs, memory_budget=4 * long)] == [4, 4]
    assert [len(b) for b in plan_batches(runs, memory_budget=long)] == [1, 1, 1, 1] * 2
    assert [len(b) for b in plan_batches(runs, memory_budget=2 * short)] == [2, 2, 1, 1, 1, 1]
    # a budget below one run still makes progress: one run per batch
    assert [len(b) for b in plan_batches(runs, memory_budget=1)] == [1] * 8
    # both caps apply
    assert [len(b) for b in plan_batches(runs, max_batch=3, memory_budget=4 * long)] == [3, 1] * 2


def test_run_bytes_scales_with_the_arrays():
    base = tiny_exp(sweep={}, task={"seq_len": 9}).runs()[0].config
    f32 = tiny_exp(sweep={}, task={"seq_len": 9}, model={"dtype": "float32"}).runs()[0].config
    assert run_bytes(f32) * 2 == run_bytes(base)
    bigger = tiny_exp(sweep={}, task={"seq_len": 9, "batch": 16}).runs()[0].config
    assert run_bytes(bigger) == 2 * run_bytes(base)
    lstm = tiny_exp(sweep={}, task={"seq_len": 9}, model={"cell": "lstm"}).runs()[0].config
    assert run_bytes(lstm) > 2 * run_bytes(base)


def test_batches_for_workers_are_balanced_largest_first():
    """With workers the shape groups are cut so that no batch holds more than 1 / (2 workers)
    of the sweep's work (unless it is one run), every run is in exactly one batch, the largest
    come first; one worker plans as before."""
    runs = tiny_exp(repeats=4, sweep={"task.seq_len": [3, 6, 12],
                                      "model.weight_scale": [0.5, 1.5]}).runs()
    one = plan_batches(runs)
    assert [len(b) for b in one] == [8, 8, 8]
    two = plan_batches(runs, workers=2)
    assert sorted(r for b in ids(two) for r in b) == sorted(r.run_id for r in runs)
    work = [plan.batch_work(b) for b in two]
    share = sum(work) / 4
    assert all(w <= share * (1 + 1e-9) or len(b) == 1 for w, b in zip(work, two, strict=True))
    assert work == sorted(work, reverse=True) and len(two) > len(one)
    for b in two:                                  # a batch still holds one shape only
        assert len({s.config.shape_key() for s in b}) == 1
    # runs of 0 steps (analysis at initialisation only) are balanced too
    idle = tiny_exp(train={"steps": 0}, sweep={"task.seq_len": [3, 6]}).runs()
    assert [len(b) for b in plan_batches(idle, workers=2)] == [1, 1, 1, 1]
    # the work grows with the sequence: four times the steps, four times the work
    assert plan.batch_work(one[2]) == pytest.approx(4 * plan.batch_work(one[0]))


# ------------------------------------------------------------------------------ execution


def _batches():
    return plan_batches(tiny_exp().runs(), max_batch=2)         # 4 batches of 2


def test_serial_execution_commits_each_batch_then_reports_it():
    events = []
    outcome = execute.execute(_batches(), lambda res: events.append(("commit", len(res.runs))),
                              on_batch=lambda res: events.append(("batch", len(res.runs))))
    assert events == [("commit", 2), ("batch", 2)] * 4
    assert (outcome.done, outcome.ok, outcome.failed, outcome.interrupted) == (8, 8, 0, False)


def test_a_raising_batch_becomes_failed_rows(monkeypatch):
    real = rnnlab.run.train.train_batch

    def flaky(specs, progress=None):
        if specs[0].config.task.seq_len == 5:
            raise ValueError("bad batch")
        return real(specs, progress)
    monkeypatch.setattr(rnnlab.run.train, "train_batch", flaky)
    got = []
    outcome = execute.execute(_batches(), got.append)
    assert (outcome.done, outcome.ok, outcome.failed) == (8, 4, 4)
    failed = [r for res in got for r in res.runs if r["status"] == "failed"]
    assert len(failed) == 4
    for row in failed:
        assert row["error"].startswith("ValueError: bad batch (test_execute.py:")
        assert row["seq_len"] == 5 and row["solved"] is False
    assert [res.grad_norms is None for res in got] == [False, False, True, True]
    assert len(outcome.errors) == 4


def test_fail_fast_stops_at_the_first_failure(monkeypatch):
    def always(specs, progress=None):
        raise RuntimeError("no")
    monkeypatch.setattr(rnnlab.run.train, "train_batch", always)
    got = []
    outcome = execute.execute(_batches(), got.append, fail_fast=True)
    assert len(got) == 1 and outcome.failed == 2 and outcome.done == 2


def test_keyboard_interrupt_keeps_committed_batches(monkeypatch):
    real = rnnlab.run.train.train_batch
    calls = []

    def interrupt_third(specs, progress=None):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(specs, progress)
    monkeypatch.setattr(rnnlab.run.train, "train_batch", interrupt_third)
    got = []
    outcome = execute.execute(_batches(), got.append)
    assert outcome.interrupted and outcome.done == 4 and len(got) == 2


def test_worker_pool_gives_the_same_records_and_restores_the_environment(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    serial, pooled = [], []
    execute.execute(_batches(), serial.append, workers=1)
    pid = os.getpid()
    committed_in = []

    def commit(res):
        committed_in.append(os.getpid())
        pooled.append(res)
    outcome = execute.execute(_batches(), commit, workers=2)
    assert outcome.ok == 8 and committed_in == [pid] * 4          # only this process writes
    assert "OMP_NUM_THREADS" not in os.environ
    assert os.environ["OPENBLAS_NUM_THREADS"] == "2"

    def by_id(results):
        return {r["run_id"]: r for res in results for r in res.runs}
    a, b = by_id(serial), by_id(pooled)
    assert a.keys() == b.keys()
    for k in a:
        ra = {c: v for c, v in a[k].items() if c != "wall_time"}
        rb = {c: v for c, v in b[k].items() if c != "wall_time"}
        assert ra == rb
    ga = {res.runs[0]["run_id"]: res.grad_norms for res in serial}
    gb = {res.runs[0]["run_id"]: res.grad_norms for res in pooled}
    for k in ga:
        np.testing.assert_array_equal(ga[k]["ds"].to_numpy(), gb[k]["ds"].to_numpy())


class _FlakyExecutor:
    """An executor whose workers die on batch 2 the first ``deaths`` times it is tried (the
    others: rows of status ok, no training), and which records what was in flight."""

    window = 2

    def __init__(self, deaths: int, final: bool = False):
        self.deaths, self.final = deaths, final
        self.flight: list = []
        self.submitted: list[int] = []
        self.most = 0

    def submit(self, number, specs):
        self.submitted.append(number)
        self.flight.append((number, specs))
        self.most = max(self.most, len(self.flight))

    def done(self):
        from rnnlab.run.executors.base import Done, Lost
        from rnnlab.run.train import BatchResult

        number, specs = self.flight.pop(0)
        if number == 2 and self.deaths:
            self.deaths -= 1
            return [Done(number, specs, Lost("its worker died", "WorkerDied: it died",
                                              final=self.final))]
        rows = [{"run_id": s.run_id, "status": "ok"} for s in specs]
        return [Done(number, specs, BatchResult(rows, None, None))]


@pytest.mark.parametrize("deaths, final", [(2, False), (3, False), (1, True)])
def test_the_commit_loop_retries_a_lost_batch_first_then_records_it_failed(monkeypatch, deaths,
                                                                          final):
    """The one commit loop, whatever the backend: the window is kept, a lost batch goes back
    first in line up to WORKER_RETRIES times with one note each, then (or at once when the
    backend retried it itself) its runs are failed rows with the error and the attempts."""
    import contextlib

    fake = _FlakyExecutor(deaths, final)
    monkeypatch.setattr(execute, "open_executor",
                        lambda *args: contextlib.nullcontext(fake))
    notes, got = [], []
    outcome = execute.execute(_batches(), got.append, note=notes.append)
    assert fake.most == 2                                 # the executor's window, no more
    lost = [n for n in notes if " lost: its worker died" in n]
    assert all(n.startswith("batch 2/4 (2 run(s), first run ") for n in lost)
    if not final and deaths <= execute.WORKER_RETRIES:
        assert outcome.failed == 0 and outcome.ok == 8
        assert all(n.endswith(f"retrying it ({i} of 2)") for i, n in enumerate(lost, 1))
        assert fake.submitted == [1, 2, 3, 2, 4, 2]          # a lost batch goes next
    else:
        attempts = 1 if final else execute.WORKER_RETRIES + 1
        assert outcome.failed == 2 and outcome.ok == 6
        tail = (f"{attempts} attempts failed, " if attempts > 1 else "") + \
            "its runs are recorded as failed"
        assert lost[-1].endswith(tail), lost[-1]
        error = "WorkerDied: it died" + (f", {attempts} times" if attempts > 1 else "")
        assert [e for _, e in outcome.errors] == [error, error]


# ------------------------------------------------------------------- a pool kept open


def _environment_value(specs):
    """A pool task: what the worker's environment says when it receives the batch."""
    return os.environ.get("RNNLAB_TEST_VALUE")


def _sleep_then_answer(specs):
    import time

    if specs == "slow":
        time.sleep(60)
    return specs


def _wait_one(pool):
    (done,) = pool.done()
    return done.value


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_workers_take_the_parents_environment_with_each_batch(monkeypatch, method):
    """Workers fork from a server started earlier (or are spawned where there is none), so each
    batch carries this process's environment: a change between two batches reaches the same
    worker."""
    from rnnlab.run.executors import pool as pool_module

    monkeypatch.setattr(pool_module, "start_method", lambda: method)
    with pool_module.open_pool(1, _environment_value, retries=0) as pool:
        assert pool.ctx.get_start_method() == method
        monkeypatch.setenv("RNNLAB_TEST_VALUE", "first")
        pool.submit(1, [])
        assert _wait_one(pool) == "first"
        pid = pool.workers[0].proc.pid
        monkeypatch.setenv("RNNLAB_TEST_VALUE", "second")
        pool.submit(2, [])
        assert _wait_one(pool) == "second" and pool.workers[0].proc.pid == pid


def test_cancel_drops_the_batch_in_flight_and_the_pool_goes_on():
    from rnnlab.run.executors.pool import open_pool

    with open_pool(2, _sleep_then_answer, retries=0) as pool:
        pool.submit(1, "slow")
        pool.submit(2, "quick")
        assert _wait_one(pool) == "quick"
        idle = pool.workers[1].proc.pid
        pool.cancel()
        assert [w.proc.pid for w in pool.workers] == [idle]      # the busy one was killed
        pool.submit(3, "again")
        assert _wait_one(pool) == "again"


def test_one_pool_serves_sweeps_in_turn_with_the_same_numbers(tmp_path):
    """``run_sweep(..., pool=ex)``: two sweeps on one open pool use the same worker processes
    and give the numbers of a sweep in this process."""
    import pandas as pd

    from rnnlab.run.sweep import run_sweep

    exp = tiny_exp()
    run_sweep(exp, tmp_path / "here")
    with execute.open_executor("local", 2, None, None) as pool:
        run_sweep(exp, tmp_path / "a", pool=pool)
        pids = sorted(w.proc.pid for w in pool.workers)
        run_sweep(tiny_exp(seed=1), tmp_path / "b", pool=pool)
        assert sorted(w.proc.pid for w in pool.workers) == pids and len(pids) == 2
        assert all(w.proc.is_alive() for w in pool.workers)

    def numbers(folder):
        t = pd.read_parquet(tmp_path / folder / "runs.parquet").sort_values("run_id")
        return t[[c for c in t.columns if t[c].dtype.kind == "f" and c != "wall_time"]]
    pd.testing.assert_frame_equal(numbers("here").reset_index(drop=True),
                                  numbers("a").reset_index(drop=True), check_exact=True)
    assert len(numbers("b")) == 8


def test_the_fork_server_can_start_before_the_training_code_is_imported():
    """``rnnlab sweep --workers N`` starts the workers' fork server first thing: importing the
    pool imports neither the training code nor pandas (a fresh interpreter shows it), and the
    server itself preloads the training code, so that no worker imports it again."""
    import subprocess
    import sys

    from rnnlab.run.executors import pool

    code = ("import sys, rnnlab.run.executors.pool; "
            "print(sorted(m for m in ('pandas', 'rnnlab.run.train', 'rnnlab.engine') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert {"__main__", "rnnlab.run.train"} <= set(pool.preload())
