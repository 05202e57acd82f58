"""Tests of the results folder: round trips, crash safety, refusals, locking, corruption."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pytest

from rnnlab.analysis.summarize import render
from rnnlab.errors import UserError
from rnnlab.results import lock, parquet_io
from rnnlab.results.layout import part_name
from rnnlab.results.readers import (
    is_results_dir,
    load_grad_norms,
    load_manifest,
    load_metrics,
    load_runs,
)
from rnnlab.results.store import ResultsStore
from rnnlab.results.sysinfo import system_info

FP = "f" * 40


def make_run(run_id: str, seed: int = 0, **over) -> dict:
    run = {
        "run_id": run_id,
        "task.seq_len": 5,
        "model.weight_scale": 1.0,
        "train.clip.threshold": None,
        "model.cell": "rnn",
        "seed": seed,
        "status": "ok",
        "error": None,
        "diverged_step": None,
        "final_loss": 0.25,
        "accuracy": None,
        "solved": True,
        "steps_to_solve": 40,
        "rho_start": 1.1,
        "sigma_start": 1.5,
        "rho_end": 0.9,
        "sigma_end": 1.2,
        "clip_rate": 0.0,
        "wall_time": 0.5,
        "seq_len": 5,
    }
    run.update(over)
    return run


def make_batch(ids: list[str], T: int = 5, steps=(0, 10), **over):
    runs = [make_run(i, seed=k, seq_len=T, **over) for k, i in enumerate(ids)]
    grad = pd.DataFrame(
        [
            (i, s, t, 10.0 ** (-(T - t) / 10), 2.0 * t, 3.0, np.nan)
            for i in reversed(ids)
            for s in reversed(steps)
            for t in range(T, 0, -1)
        ],
        columns=["run_id", "step", "t", "ds", "dWs", "dWx", "dc"],
    )
    metrics = pd.DataFrame(
        [(i, s, 1.0 / (s + 1), np.nan, 1.0, 1.0, s % 2 == 0) for i in ids for s in range(3)],
        columns=["run_id", "step", "loss", "accuracy", "grad_norm", "grad_norm_clipped", "clipped"],
    )
    return runs, grad, metrics


def open_store(path, fingerprint=FP, fresh=False, name="exp") -> ResultsStore:
    return ResultsStore.open(
        path,
        fingerprint=fingerprint,
        manifest={"command": "rnnlab sweep x.yaml"},
        fresh=fresh,
        experiment_name=name,
    )


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------------------------------------
# round trips


def test_round_trip_sorted_and_typed(tmp_path):
    out = tmp_path / "results" / "exp"
    store = open_store(out)
    with store.lock():
        store.write_batch(*make_batch(["r3", "r1"]))
        store.write_batch(*make_batch(["r2"], **{"train.clip.threshold": 1.0}))
    assert store.done_run_ids() == {"r1", "r2", "r3"}
    assert is_results_dir(out)

    runs = load_runs(out)
    assert list(runs["run_id"]) == ["r1", "r2", "r3"]
    assert "part" not in runs.columns
    assert list(runs.columns[:5]) == [
        "run_id",
        "task.seq_len",
        "model.weight_scale",
        "train.clip.threshold",
        "model.cell",
    ]
    assert runs["accuracy"].dtype == np.float64 and runs["accuracy"].isna().all()
    assert runs["train.clip.threshold"].dtype == np.float64
    assert runs["train.clip.threshold"].isna().tolist() == [True, False, True]
    assert pd.api.types.is_string_dtype(runs["error"]) and runs["error"].isna().all()
    assert pd.api.types.is_string_dtype(runs["model.cell"])
    assert runs["task.seq_len"].dtype == np.int64
    assert runs["seed"].dtype == np.int64
    assert runs["solved"].dtype == bool
    assert str(runs["diverged_step"].dtype) == "Int64"
    assert str(runs["steps_to_solve"].dtype) == "Int64"
    assert runs["steps_to_solve"].tolist() == [40, 40, 40]

    grad = load_grad_norms(out)
    assert len(grad) == 3 * 2 * 5
    assert list(grad.index) == list(range(len(grad)))
    key = grad[["run_id", "step", "t"]].apply(tuple, axis=1).tolist()
    assert key == sorted(key)
    assert grad["dc"].isna().all() and grad["dc"].dtype == np.float64
    assert grad["t"].dtype == np.int64 and grad["step"].dtype == np.int64
    assert grad.loc[grad["t"] == 5, "ds"].eq(1.0).all()

    one = load_grad_norms(out, run_ids=["r2"], step=10)
    assert set(one["run_id"]) == {"r2"} and set(one["step"]) == {10} and len(one) == 5
    with pytest.raises(UserError, match="nope"):
        load_grad_norms(out, run_ids=["nope"])

    metrics = load_metrics(out)
    assert len(metrics) == 9
    assert list(metrics["run_id"]) == sorted(metrics["run_id"])
    assert metrics["clipped"].dtype == bool
    assert metrics["accuracy"].dtype == np.float64


def test_nullable_ints_and_all_none_columns_have_stable_types(tmp_path):
    store = open_store(tmp_path / "o")
    runs, grad, metrics = make_batch(["a"])
    runs[0].update(
        steps_to_solve=None,
        diverged_step=np.int64(7),
        status="diverged",
        accuracy=float("nan"),
        error="overflow",
        final_loss=np.float32(3.5),
        solved=np.bool_(False),
    )
    store.write_batch(runs, grad, metrics)
    df = load_runs(tmp_path / "o")
    assert str(df["steps_to_solve"].dtype) == "Int64" and df["steps_to_solve"].isna().all()
    assert df["diverged_step"].tolist() == [7]
    assert df["error"].tolist() == ["overflow"]
    assert df["final_loss"].tolist() == [3.5]
    assert df["solved"].tolist() == [False]


def test_swept_types_are_unified_across_batches(tmp_path):
    store = open_store(tmp_path / "o")
    store.write_batch(*make_batch(["a"], **{"model.weight_scale": 1}))
    assert load_runs(tmp_path / "o")["model.weight_scale"].dtype == np.int64
    store.write_batch(*make_batch(["b"], **{"model.weight_scale": 1.5}))
    col = load_runs(tmp_path / "o")["model.weight_scale"]
    assert col.dtype == np.float64 and col.tolist() == [1.0, 1.5]


def test_missing_fixed_columns_are_present_as_nulls(tmp_path):
    store = open_store(tmp_path / "o")
    run = {"run_id": "x", "status": "failed", "error": "boom", "seq_len": 3, "seed": 1}
    store.write_batch([run], None, None)
    df = load_runs(tmp_path / "o")
    for col in parquet_io.RUN_FIELDS:
        assert col in df.columns
    assert df["solved"].tolist() == [False]
    assert np.isnan(df["rho_end"].iloc[0])
    assert load_grad_norms(tmp_path / "o").empty
    assert list(load_grad_norms(tmp_path / "o").columns) == parquet_io.GRAD_SCHEMA.names


def test_external_readers_see_grad_norms_dataset(tmp_path):
    out = tmp_path / "o"
    store = open_store(out)
    store.write_batch(*make_batch(["a", "b"]))
    store.write_batch(*make_batch(["c"]))
    (out / "grad_norms" / ".tmp-part-x.parquet-123").write_bytes(b"half written")
    df = pd.read_parquet(out / "grad_norms")
    assert len(df) == 3 * 2 * 5
    assert pads.dataset(out / "grad_norms", format="parquet").count_rows() == 30


def test_write_batch_validates(tmp_path):
    store = open_store(tmp_path / "o")
    store.write_batch(*make_batch(["a"]))
    with pytest.raises(ValueError, match="already stored"):
        store.write_batch(*make_batch(["a"]))
    runs, grad, metrics = make_batch(["b"])
    grad.loc[0, "run_id"] = "zzz"
    with pytest.raises(ValueError, match="not in the batch"):
        store.write_batch(runs, grad, metrics)
    with pytest.raises(ValueError, match="duplicate"):
        store.write_batch(*make_batch(["c", "c"]))
    store.write_batch([], None, None)
    assert store.done_run_ids() == {"a"}


def test_part_name_is_deterministic():
    assert part_name(["b", "a"]) == part_name(["a", "b"])
    assert part_name(["a"]) != part_name(["b"])
    assert part_name(["a"]).startswith("part-") and part_name(["a"]).endswith(".parquet")


# ---------------------------------------------------------------------------------------------
# crash safety


def test_crash_before_the_runs_part_leaves_orphans_that_reopen_removes(tmp_path, monkeypatch):
    out = tmp_path / "o"
    store = open_store(out)
    store.write_batch(*make_batch(["a"]))
    real_replace = os.replace

    class Crash(BaseException):
        """The process dying here (an OSError would make write_batch remove its parts)."""

    def failing_replace(src, dst):
        if Path(dst).parent.name == "runs":            # the batch's commit record
            raise Crash("simulated crash")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(Crash, match="simulated"):
        store.write_batch(*make_batch(["b"]))
    monkeypatch.setattr(os, "replace", real_replace)
    orphan = part_name(["b"])
    assert (out / "grad_norms" / orphan).exists() and (out / "metrics" / orphan).exists()
    assert store.done_run_ids() == {"a"}
    assert set(load_grad_norms(out)["run_id"]) == {"a"}  # readers ignore the orphan
    (out / ".tmp-runs.parquet-999999").write_bytes(b"left by SIGKILL")

    again = open_store(out)
    assert again.done_run_ids() == {"a"}
    assert not (out / "grad_norms" / orphan).exists()
    assert not (out / "metrics" / orphan).exists()
    assert not (out / ".tmp-runs.parquet-999999").exists()
    assert any("removed 2 part file" in n for n in again.cleanup_notes)
    again.write_batch(*make_batch(["b"]))
    assert set(load_runs(out)["run_id"]) == {"a", "b"}


def test_deleted_part_file_drops_its_runs_for_recompute(tmp_path):
    out = tmp_path / "o"
    store = open_store(out)
    store.write_batch(*make_batch(["a", "b"]))
    store.write_batch(*make_batch(["c"]))
    (out / "grad_norms" / part_name(["a", "b"])).unlink()
    again = open_store(out)
    assert again.done_run_ids() == {"c"}
    assert not (out / "metrics" / part_name(["a", "b"])).exists()
    assert any("dropped 2 run" in n for n in again.cleanup_notes)
    assert list(load_runs(out)["run_id"]) == ["c"]


# ---------------------------------------------------------------------------------------------
# opening: fresh, fingerprints, refusals


def test_manifest_written_once_and_fingerprint_checked(tmp_path):
    out = tmp_path / "o"
    open_store(out)
    manifest = load_manifest(out)
    assert manifest["fingerprint"] == FP and manifest["name"] == "exp"
    assert manifest["command"] == "rnnlab sweep x.yaml"
    open_store(out)  # same fingerprint: resume
    with pytest.raises(UserError) as err:
        open_store(out, fingerprint="0" * 40, name="other")
    msg = str(err.value)
    assert str(out) in msg and "--fresh" in msg and "--out" in msg and "'exp'" in msg
    assert "made by experiment 'exp', not 'other'" in msg and "\n" not in msg
    with pytest.raises(UserError, match="experiment 'exp' changed since it was made"):
        open_store(out, fingerprint="0" * 40)
    (out / "manifest.json").write_text("{}")
    with pytest.raises(UserError, match="manifest.json records no experiment"):
        open_store(out)


def _finished(out):
    """A folder holding one finished, compacted run and its summary."""
    store = open_store(out)
    store.write_batch(*make_batch(["a"]))
    store.finalize()
    store.write_summary("x\n1.0\n", "| x |\n")
    return out


def test_fresh_removes_only_rnnlab_files(tmp_path):
    out = _finished(tmp_path / "o")
    (out / "notes.txt").write_text("mine")
    new = open_store(out, fingerprint="1" * 40, fresh=True)
    assert new.done_run_ids() == set()
    assert sorted(os.listdir(out)) == ["manifest.json", "notes.txt"]
    assert load_manifest(out)["fingerprint"] == "1" * 40
    with pytest.raises(UserError, match="no finished runs"):
        load_runs(out)


def test_path_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        open_store(f)
    with pytest.raises(UserError, match="not a folder"):
        load_runs(f)


def test_foreign_folder_is_refused_even_with_fresh(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "thesis.tex").write_text("x")
    for fresh in (False, True):
        with pytest.raises(UserError, match="not an rnnlab results folder"):
            open_store(out, fresh=fresh)
    assert (out / "thesis.tex").exists()


def test_own_files_without_manifest_need_fresh(tmp_path):
    out = tmp_path / "o"
    open_store(out).write_batch(*make_batch(["a"]))
    (out / "manifest.json").unlink()
    with pytest.raises(UserError, match="--fresh"):
        open_store(out)
    assert open_store(out, fresh=True).done_run_ids() == set()


def test_empty_existing_folder_is_accepted(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    open_store(out)
    assert is_results_dir(out)


def test_corrupt_manifest_is_named(tmp_path):
    out = tmp_path / "o"
    open_store(out)
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="manifest.json"):
        open_store(out)
    with pytest.raises(UserError, match="manifest.json"):
        load_manifest(out)
    open_store(out, fresh=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder_is_refused(tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        with pytest.raises(UserError, match="not writable"):
            open_store(out)
    finally:
        out.chmod(0o700)


def test_uncreatable_folder_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="cannot create"):
        open_store(tmp_path / "f" / "sub")


# ---------------------------------------------------------------------------------------------
# locking


def test_second_lock_is_refused_and_released_after(tmp_path):
    out = tmp_path / "o"
    a, b = open_store(out), open_store(out)
    with a.lock():
        assert (out / ".lock").read_text().split()[0] == str(os.getpid())
        with a.lock():  # re-entrant
            pass
        with pytest.raises(UserError) as err:
            with b.lock():
                pass
        assert f"another rnnlab sweep (pid {os.getpid()}) is writing to {out}" in str(err.value)
        with pytest.raises(UserError, match="another rnnlab sweep"):
            open_store(out)
    assert not (out / ".lock").exists()
    with b.lock():
        pass


def test_stale_lock_file_is_taken_over(tmp_path):
    out = tmp_path / "o"
    store = open_store(out)
    (out / ".lock").write_text(f"{dead_pid()} {os.uname().nodename}\n")
    with store.lock():
        assert (out / ".lock").read_text().split()[0] == str(os.getpid())


def test_lock_without_flock_uses_pid_liveness(tmp_path, monkeypatch):
    out = tmp_path / "o"
    store = open_store(out)

    def no_flock(fd, op):
        raise OSError(37, "No locks available")  # ENOLCK, as on some network filesystems

    monkeypatch.setattr(fcntl, "flock", no_flock)
    host = lock._host()
    (out / ".lock").write_text(f"{dead_pid()} {host}\n")
    with store.lock():
        pass
    (out / ".lock").write_text(f"{os.getppid()} {host}\n")
    with pytest.raises(UserError, match=f"pid {os.getppid()}"):
        with store.lock():
            pass


def test_lock_of_sigkilled_process_is_free(tmp_path):
    out = tmp_path / "o"
    open_store(out)
    code = textwrap.dedent(
        f"""
        import sys, time
        from rnnlab.results.store import ResultsStore
        s = ResultsStore.open({str(out)!r}, fingerprint={FP!r}, manifest={{}},
                              experiment_name="exp")
        with s.lock():
            print("locked", flush=True)
            time.sleep(60)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline().strip() == b"locked"
        with pytest.raises(UserError, match=f"pid {proc.pid}"):
            open_store(out)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    time.sleep(0.05)
    store = open_store(out)
    with store.lock():
        pass


# ---------------------------------------------------------------------------------------------
# corruption and wrong folders


def test_truncated_part_is_named(tmp_path):
    out = tmp_path / "o"
    store = open_store(out)
    store.write_batch(*make_batch(["a"]))
    part = out / "grad_norms" / part_name(["a"])
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as err:
        load_grad_norms(out)
    msg = str(err.value)
    assert str(part) in msg and "delete it" in msg and "rnnlab sweep" in msg
    assert "\n" not in msg
    part.unlink()  # following the advice recovers
    assert open_store(out).done_run_ids() == set()


@pytest.mark.parametrize("compacted", [False, True])
def test_truncated_runs_file_is_named(tmp_path, compacted):
    """A damaged runs part (a batch committed since the last finalize) or runs.parquet (the runs
    compacted by finalize) is named by every reader and by the next open."""
    out = tmp_path / "o"
    store = open_store(out)
    store.write_batch(*make_batch(["a"]))
    if compacted:
        store.finalize()
    runs = out / "runs.parquet" if compacted else out / "runs" / part_name(["a"])
    assert runs.is_file()
    runs.write_bytes(runs.read_bytes()[:20])
    for action in (lambda: load_runs(out), lambda: load_metrics(out), lambda: open_store(out)):
        with pytest.raises(UserError, match=str(runs)):
            action()
    assert open_store(out, fresh=True).done_run_ids() == set()


def test_not_a_results_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=f"{empty} is empty"):
        load_runs(empty)
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.csv").write_text("1")
    with pytest.raises(UserError, match=f"{other} is not an rnnlab results folder"):
        load_grad_norms(other)
    with pytest.raises(UserError, match="does not exist"):
        load_metrics(tmp_path / "missing")
    assert not is_results_dir(other) and not is_results_dir(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------
# finalize, summary, manifest helpers


def test_finalize_compacts_metrics(tmp_path):
    out = tmp_path / "o"
    store = open_store(out)
    store.write_batch(*make_batch(["b", "a"]))
    store.write_batch(*make_batch(["c"]))
    before = load_metrics(out)
    store.finalize()
    assert (out / "metrics.parquet").is_file() and not (out / "metrics").exists()
    pd.testing.assert_frame_equal(load_metrics(out), before)
    assert len(pd.read_parquet(out / "metrics.parquet")) == 9

    store.write_batch(*make_batch(["d"]))  # resumed sweep after a finalize
    assert set(load_metrics(out)["run_id"]) == {"a", "b", "c", "d"}
    store.finalize()
    store.finalize()  # idempotent
    after = load_metrics(out)
    assert len(after) == 12 and list(after["run_id"]) == sorted(after["run_id"])


def test_finalize_killed_before_deleting_parts(tmp_path):
    out = tmp_path / "o"
    store = open_store(out)
    store.write_batch(*make_batch(["a"]))
    part = out / "metrics" / part_name(["a"])
    saved = part.read_bytes()
    store.finalize()
    part.parent.mkdir()
    part.write_bytes(saved)  # as if killed after metrics.parquet was replaced
    assert len(load_metrics(out)) == 3  # no double counting
    open_store(out)
    assert not part.exists()


def test_write_summary(tmp_path):
    out = tmp_path / "o"
    store = open_store(out)
    table = pd.DataFrame({"task.seq_len": [10, 20], "loss": [0.123456, float("nan")]})
    store.write_summary(render(table, "csv"), "| a |\n|---|")
    assert (out / "summary.csv").read_text() == "task.seq_len,loss\n10,0.1235\n20,\n"
    assert (out / "summary.md").read_text() == "| a |\n|---|\n"
    assert not [e for e in os.listdir(out) if e.startswith(".tmp-")]


def test_system_info_is_json_ready():
    info = system_info()
    for key in ("rnnlab", "numpy", "pandas", "pyarrow", "python", "platform", "blas", "created"):
        assert key in info
    assert info["created"].endswith("+00:00")
    json.dumps(info)


@pytest.mark.parametrize("after", [False, True])
def test_ctrl_c_during_a_commit_leaves_only_committed_parts(tmp_path, monkeypatch, after):
    """A KeyboardInterrupt before the batch's runs part is moved into place removes the batch's
    parts at once (a raw reader of grad_norms/ never sees them); one after it leaves the
    committed batch whole."""
    out = tmp_path / "o"
    store = open_store(out)
    store.write_batch(*make_batch(["a"]))
    real_replace = os.replace

    def interrupted_replace(src, dst):
        if Path(dst).parent.name == "runs":
            if after:
                real_replace(src, dst)
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        store.write_batch(*make_batch(["b"]))
    monkeypatch.setattr(os, "replace", real_replace)
    raw = set(pd.read_parquet(out / "grad_norms")["run_id"])
    assert raw == set(load_grad_norms(out)["run_id"]) == ({"a", "b"} if after else {"a"})
    assert (out / "metrics" / part_name(["b"])).exists() == after


def test_ctrl_c_after_a_part_is_moved_but_before_its_folder_is_synced_removes_it(
        tmp_path, monkeypatch):
    """The interrupt lands while the grad part's folder is fsynced, after the part was moved
    into place: the part is still the uncommitted batch's and goes."""
    from rnnlab.results import parquet_io

    out = tmp_path / "o"
    store = open_store(out)
    store.write_batch(*make_batch(["a"]))
    real_sync = parquet_io._fsync_dir

    def interrupted_sync(folder):
        if Path(folder).name == "grad_norms":
            raise KeyboardInterrupt
        return real_sync(folder)

    monkeypatch.setattr(parquet_io, "_fsync_dir", interrupted_sync)
    with pytest.raises(KeyboardInterrupt):
        store.write_batch(*make_batch(["b"]))
    assert set(pd.read_parquet(out / "grad_norms")["run_id"]) == {"a"}
    assert not (out / "grad_norms" / part_name(["b"])).exists()


# ---------------------------------------------------------------------------------------------
# runs parts


def test_a_commit_writes_new_files_only_and_finalize_compacts_the_runs(tmp_path):
    """Each batch adds its own runs part (nothing written before is rewritten); readers see the
    runs parts and runs.parquet as one table; finalize compacts them into runs.parquet."""
    out = tmp_path / "o"
    store = open_store(out)
    store.write_batch(*make_batch(["a"]))
    stamp = (out / "runs" / part_name(["a"])).stat().st_mtime_ns
    store.write_batch(*make_batch(["b", "c"]))
    assert (out / "runs" / part_name(["a"])).stat().st_mtime_ns == stamp
    assert not (out / "runs.parquet").exists()
    before = load_runs(out)
    assert list(before["run_id"]) == ["a", "b", "c"]
    store.finalize()
    assert not (out / "runs").exists() and (out / "runs.parquet").is_file()
    pd.testing.assert_frame_equal(load_runs(out), before)
    store.write_batch(*make_batch(["d"]))                # after a finalize: part + runs.parquet
    assert list(load_runs(out)["run_id"]) == ["a", "b", "c", "d"]
    assert open_store(out).done_run_ids() == {"a", "b", "c", "d"}


def test_a_folder_with_one_runs_file_is_read_and_resumed(tmp_path):
    """A folder whose runs are all in runs.parquet, with metrics parts not yet compacted (as a
    sweep interrupted before runs parts existed leaves it), reads and resumes."""
    from rnnlab.results.readers import read_runs

    out = tmp_path / "o"
    store = open_store(out)
    store.write_batch(*make_batch(["a"]))
    store.write_batch(*make_batch(["b"]))
    import pyarrow.parquet as pq

    pq.write_table(read_runs(out), out / "runs.parquet")
    for part in (out / "runs").iterdir():
        part.unlink()
    (out / "runs").rmdir()
    metrics = load_metrics(out)
    again = open_store(out)
    assert again.done_run_ids() == {"a", "b"} and again.cleanup_notes == []
    again.write_batch(*make_batch(["c"]))
    again.finalize()
    assert list(load_runs(out)["run_id"]) == ["a", "b", "c"]
    pd.testing.assert_frame_equal(load_metrics(out)[lambda m: m.run_id != "c"]
                                  .reset_index(drop=True), metrics)


def test_finalize_killed_after_runs_parquet_leaves_parts_readers_ignore(tmp_path, monkeypatch):
    """runs.parquet replaced but the runs parts it holds not yet deleted: no run is read twice,
    and the next open deletes the leftovers."""
    out = tmp_path / "o"
    store = open_store(out)
    store.write_batch(*make_batch(["a"]))
    store.write_batch(*make_batch(["b"]))
    monkeypatch.setattr("rnnlab.results.store._remove_parts", lambda folder, parts: None)
    store.finalize()
    monkeypatch.undo()
    assert (out / "runs.parquet").is_file() and len(list((out / "runs").iterdir())) == 2
    assert list(load_runs(out)["run_id"]) == ["a", "b"]
    again = open_store(out)
    assert again.done_run_ids() == {"a", "b"}
    assert not list((out / "runs").glob("part-*"))


def test_a_folder_with_only_its_summary_says_so(tmp_path):
    """A reference folder as git checks it out: manifest and summary, no runs."""
    out = _finished(tmp_path / "vanishing")
    for name in os.listdir(out):
        if name not in ("manifest.json", "summary.csv", "summary.md"):
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.raises(UserError, match=r"holds a summary .* but not the runs .*reproduce\.py "
                                        r"--only NAME"):
        load_runs(out)
