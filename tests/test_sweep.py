"""The sweep pipeline as a library: ``rnnlab.run.sweep.run_sweep`` on parsed tiny experiments.

Resume, refusal of a changed experiment, bit-for-bit determinism across worker counts and batch
sizes, failure isolation, fail-fast, memory-capped batching and interrupted sweeps.
"""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import tiny_exp

import rnnlab.run.train
from rnnlab.errors import UserError
from rnnlab.results.readers import load_grad_norms, load_metrics, load_runs
from rnnlab.results.store import ResultsStore
from rnnlab.run import plan
from rnnlab.run.sweep import run_sweep

#: Run columns that legitimately differ between identical sweeps.
VOLATILE = ["wall_time"]


def results(out) -> dict[str, pd.DataFrame]:
    """Everything a folder holds, in canonical order: runs (without wall time), grad norms read
    as a dataset folder, metrics."""
    runs = load_runs(out).drop(columns=VOLATILE).reset_index(drop=True)
    grad = (pd.read_parquet(out / "grad_norms").sort_values(["run_id", "step", "t"])
            .reset_index(drop=True))
    pd.testing.assert_frame_equal(grad, load_grad_norms(out), check_exact=True)
    metrics = load_metrics(out).reset_index(drop=True)
    return {"runs": runs, "grad_norms": grad, "metrics": metrics}


def assert_same_results(a, b):
    ra, rb = results(a), results(b)
    for key in ra:
        pd.testing.assert_frame_equal(ra[key], rb[key], check_exact=True, obj=key)


# -------------------------------------------------------------------------------- resume


def test_rerun_recomputes_nothing(tmp_path, monkeypatch):
    exp = tiny_exp()
    first = run_sweep(exp, tmp_path / "out")
    assert (first.total, first.skipped, first.outcome.done) == (8, 0, 8)
    grad_files = sorted((tmp_path / "out" / "grad_norms").iterdir())
    stamps = [p.stat().st_mtime_ns for p in grad_files]
    before = results(tmp_path / "out")

    def boom(specs, progress=None):
        raise AssertionError("a finished run was trained again")
    monkeypatch.setattr(rnnlab.run.train, "train_batch", boom)
    again = run_sweep(exp, tmp_path / "out")
    assert again.skipped == again.total == 8
    assert again.outcome.done == 0 and again.outcome.failed == 0
    assert sorted((tmp_path / "out" / "grad_norms").iterdir()) == grad_files
    assert [p.stat().st_mtime_ns for p in grad_files] == stamps
    after = results(tmp_path / "out")
    for key in before:
        pd.testing.assert_frame_equal(before[key], after[key], check_exact=True)
    pd.testing.assert_frame_equal(first.summary, again.summary, check_exact=True)


def test_subset_grid_runs_equal_the_same_runs_of_the_full_grid(tmp_path):
    sub = run_sweep(tiny_exp(sweep={"task.seq_len": [3], "model.weight_scale": [0.5, 1.5]}),
                    tmp_path / "sub")
    full = run_sweep(tiny_exp(), tmp_path / "full")
    assert (sub.outcome.done, full.outcome.done) == (4, 8)
    a, b = results(tmp_path / "sub"), results(tmp_path / "full")
    ids = set(a["runs"]["run_id"])
    assert ids < set(b["runs"]["run_id"])          # run ids depend on the run, not the grid
    for key in a:
        part = b[key][b[key]["run_id"].isin(ids)].reset_index(drop=True)
        # the full grid's runs table has the swept column task.seq_len, the subset's too
        pd.testing.assert_frame_equal(a[key], part[a[key].columns], check_exact=True)


def test_changed_experiment_into_the_same_folder_is_refused_unless_fresh(tmp_path):
    out = tmp_path / "out"
    run_sweep(tiny_exp(sweep={"task.seq_len": [3], "model.weight_scale": [0.5, 1.5]}), out)
    before = results(out)
    with pytest.raises(UserError, match="fresh"):
        run_sweep(tiny_exp(), out)
    with pytest.raises(UserError, match="fresh"):
        run_sweep(tiny_exp(train={"lr": 0.02},
                           sweep={"task.seq_len": [3], "model.weight_scale": [0.5, 1.5]}), out)
    after = results(out)
    for key in before:
        pd.testing.assert_frame_equal(before[key], after[key], check_exact=True)

    report = run_sweep(tiny_exp(), out, fresh=True)
    assert report.skipped == 0 and report.outcome.done == 8
    assert_same_results(out, _reference(tmp_path))


def test_name_and_description_do_not_change_the_fingerprint(tmp_path):
    out = tmp_path / "out"
    run_sweep(tiny_exp(), out)
    report = run_sweep(tiny_exp(description="same numbers"), out)
    assert report.skipped == 8


# --------------------------------------------------------------------------- determinism


def _reference(tmp_path):
    out = tmp_path / "reference"
    if not out.exists():
        run_sweep(tiny_exp(), out, workers=1, max_batch=64)
    return out


@pytest.mark.parametrize("workers, max_batch", [(2, 64), (1, 1), (1, 3), (2, 1)])
def test_results_do_not_depend_on_workers_or_batching(tmp_path, workers, max_batch):
    out = tmp_path / "out"
    report = run_sweep(tiny_exp(), out, workers=workers, max_batch=max_batch)
    assert report.outcome.ok == 8
    assert_same_results(out, _reference(tmp_path))
    ref = pd.read_csv(_reference(tmp_path) / "summary.csv")
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv"), ref, check_exact=True)


def test_memory_budget_splits_batches_without_changing_numbers(tmp_path, monkeypatch):
    sizes = []
    real = rnnlab.run.train.train_batch

    def spy(specs, progress=None):
        sizes.append(len(specs))
        return real(specs, progress)
    monkeypatch.setattr(rnnlab.run.train, "train_batch", spy)
    runs = tiny_exp().runs()
    short, long = (plan.run_bytes(runs[i].config) for i in (0, -1))     # T=3 and T=5
    budget = 2 * long
    caps = [budget // short, budget // long]
    assert caps == [3, 2]                   # 4 runs of each group: batches of 3 + 1 and 2 + 2
    run_sweep(tiny_exp(), tmp_path / "out", memory_budget=budget)
    assert sizes == [3, 1, 2, 2]
    assert_same_results(tmp_path / "out", _reference(tmp_path))


# ------------------------------------------------------------------------------ failures


def _fail_seq_len(monkeypatch, seq_len, exc=RuntimeError("boom")):
    real = rnnlab.run.train.train_batch
    calls = []

    def flaky(specs, progress=None):
        calls.append([s.run_id for s in specs])
        if specs[0].config.task.seq_len == seq_len:
            raise exc
        return real(specs, progress)
    monkeypatch.setattr(rnnlab.run.train, "train_batch", flaky)
    return calls


def test_failed_runs_are_kept_on_resume_and_retried_on_request(tmp_path, monkeypatch):
    """A transient failure: resuming keeps the failed rows (and says so); --retry-failed forgets
    them and trains them again, ending with exactly the folder of a sweep that never failed."""
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        _fail_seq_len(m, 5)
        run_sweep(tiny_exp(), out)
    again = run_sweep(tiny_exp(), out)
    assert again.outcome.done == 0 and again.skipped == 8
    assert any("--retry-failed" in n for n in again.notes)
    assert (load_runs(out)["status"] == "failed").sum() == 4
    retried = run_sweep(tiny_exp(), out, retry_failed=True)
    assert (retried.outcome.done, retried.outcome.ok, retried.skipped) == (4, 4, 4)
    assert not any("--retry-failed" in n for n in retried.notes)
    assert_same_results(out, _reference(tmp_path))


def test_failing_batch_is_recorded_and_the_others_succeed(tmp_path, monkeypatch):
    _fail_seq_len(monkeypatch, 5)
    out = tmp_path / "out"
    report = run_sweep(tiny_exp(), out)
    o = report.outcome
    assert (o.done, o.ok, o.failed, o.interrupted) == (8, 4, 4, False)
    runs = load_runs(out)
    failed = runs[runs["seq_len"] == 5]
    assert (failed["status"] == "failed").all()
    assert failed["error"].str.startswith("RuntimeError: boom").all()
    assert failed["final_loss"].isna().all() and not failed["solved"].any()
    assert {r for r, _ in o.errors} == set(failed["run_id"])
    good = runs[runs["seq_len"] == 3]
    assert (good["status"] == "ok").all() and good["error"].isna().all()
    # the failed runs have no gradient norms or metrics; the good ones are as in a clean sweep
    assert set(load_grad_norms(out)["run_id"]) == set(good["run_id"])
    assert set(load_metrics(out)["run_id"]) == set(good["run_id"])
    ref = results(_reference(tmp_path))
    got = results(out)
    ids = set(good["run_id"])
    for key in ("grad_norms", "metrics"):
        pd.testing.assert_frame_equal(
            got[key], ref[key][ref[key]["run_id"].isin(ids)].reset_index(drop=True),
            check_exact=True)
    summary = report.summary.set_index("task.seq_len")
    assert summary.loc[5, "failed"].tolist() == [2, 2]
    assert summary.loc[3, "failed"].tolist() == [0, 0]
    assert summary.loc[5, "loss"].isna().all()


def test_fail_fast_stops_after_the_first_failed_batch(tmp_path, monkeypatch):
    calls = _fail_seq_len(monkeypatch, 3)           # the first batch planned
    out = tmp_path / "out"
    report = run_sweep(tiny_exp(), out, fail_fast=True, max_batch=2)
    assert len(calls) == 1
    assert (report.outcome.done, report.outcome.failed) == (2, 2)
    assert len(load_runs(out)) == 2

    calls = _fail_seq_len(monkeypatch, 3)
    report = run_sweep(tiny_exp(), tmp_path / "slow", fail_fast=False, max_batch=2)
    assert len(calls) == 4
    assert (report.outcome.done, report.outcome.failed) == (8, 4)


# --------------------------------------------------------------------------- interruption


@pytest.mark.parametrize("where", ["train", "commit"])
def test_interrupted_sweep_keeps_finished_batches_and_resumes_to_the_same_numbers(
        tmp_path, monkeypatch, where):
    out = tmp_path / "out"
    if where == "train":
        real = rnnlab.run.train.train_batch
        calls = []

        def interrupt(specs, progress=None):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return real(specs, progress)
        monkeypatch.setattr(rnnlab.run.train, "train_batch", interrupt)
    else:
        real_write = ResultsStore.write_batch
        commits = []

        def interrupt(self, runs, grad_norms, metrics):
            real_write(self, runs, grad_norms, metrics)
            commits.append(1)
            if len(commits) == 1:
                raise KeyboardInterrupt         # after the first batch is safely committed
        monkeypatch.setattr(ResultsStore, "write_batch", interrupt)

    report = run_sweep(tiny_exp(), out)
    assert report.outcome.interrupted
    runs = load_runs(out)
    assert len(runs) == 4 and set(runs["seq_len"]) == {3}
    assert (out / "summary.csv").is_file()
    monkeypatch.undo()

    report = run_sweep(tiny_exp(), out)
    assert not report.outcome.interrupted
    assert (report.skipped, report.outcome.done) == (4, 4)
    assert not (out / "metrics").exists()            # compacted once the sweep completed
    assert_same_results(out, _reference(tmp_path))
