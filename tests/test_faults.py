"""Faults beyond interruption: messages that stay one line whatever the input holds, names and
output folders that would point at the wrong place, a full disk at every write, worker processes
that die, damaged results folders, results that cannot fit the disk.

Tests whose fault is a process's death run that process as a subprocess. docs/reliability.md maps
each guarantee to its test here.
"""

from __future__ import annotations

import errno
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import committed_runs, invoke, ok, tiny_data, tiny_exp, write_yaml
from hypothesis import example, given
from hypothesis import strategies as st
from test_reliability import SLOW, WAIT, assert_partial, assert_same, one_line_error, results

import rnnlab.results.parquet_io
from rnnlab.errors import EXIT_ENVIRONMENT, UserError, one_line
from rnnlab.experiment.load import parse_experiment
from rnnlab.results.store import ResultsStore
from rnnlab.run.sweep import default_out

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text and "Error:" not in text.replace("rnnlab: error:", ""), text


# ------------------------------------------------------------------------ one-line messages


@given(st.text())
@example("\n")
@example("\r\n")
@example("\u2028\u2029\x85")
@example("\x00\x1b[31m")
@example("x" * 5000)
def test_one_line_escapes_control_characters_and_cuts(text):
    line = one_line(text)
    assert line.splitlines() == ([line] if line else [])
    assert len(line) <= 2000
    assert str(UserError(text)) == line


KEYS = ["\n", "\r\n", "a\nb", "\u2028", "\x00", "\x1b[2J", "\t", "k" * 500]


@pytest.mark.parametrize("key", KEYS, ids=repr)
@pytest.mark.parametrize("where", ["top", "model", "sweep", "value"])
def test_error_messages_are_one_line_whatever_the_keys_and_values_hold(key, where):
    """The cases the fuzz test of tests/test_experiment.py found now and then (a top-level key
    "\\n" gave a two-line message), pinned here so CI cannot pass by luck of the draw."""
    data = tiny_data()
    if where == "top":
        data[key] = 1
    elif where == "model":
        data["model"][key] = 1
    elif where == "sweep":
        data["sweep"][key] = [1, 2]
    else:
        data["model"]["cell"] = key
    with pytest.raises(UserError) as info:
        parse_experiment(data, source="exp.yaml")
    msg = str(info.value)
    assert msg.splitlines() == [msg] and len(msg) < 2000, msg
    assert msg.startswith("exp.yaml: ")


def test_cli_error_with_a_newline_key_is_one_line(tmp_path):
    file = tmp_path / "exp.yaml"
    file.write_text('name: x\n"\\n": 1\n"\\u2028": 2\n', encoding="utf-8")
    msg = one_line_error(invoke("validate", file))
    assert "\\n" in msg


# ------------------------------------------------------------------------- names and --out


@pytest.mark.parametrize("name", [".", "..", "..."])
def test_a_name_of_dots_is_refused(name, tmp_path):
    with pytest.raises(UserError, match=r"name: got '\.+'; allowed: .*not only dots"):
        parse_experiment(tiny_data(name=name), source="exp.yaml")
    one_line_error(invoke("sweep", write_yaml(tmp_path / "e.yaml", tiny_data(name=name))))
    assert not (tmp_path / "results").exists()


def test_names_with_dots_and_a_letter_are_fine():
    assert default_out(parse_experiment(tiny_data(name="a..b"), source="e")) == Path(
        "results/a..b")
    assert default_out(parse_experiment(tiny_data(name=".x"), source="e")) == Path("results/.x")


def test_a_profile_name_that_leaves_the_results_root_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tiny_data(profiles={"q/../../../escape": {"train.steps": 1}})
    file = write_yaml(tmp_path / "e.yaml", data)
    msg = one_line_error(invoke("sweep", file, "--profile", "q/../../../escape"))
    assert "not a folder inside results/" in msg
    assert sorted(os.listdir(tmp_path)) == ["e.yaml"]


@pytest.mark.parametrize("target", ["root", "home", "home_empty", "file", "foreign"])
def test_out_that_is_not_a_results_folder_is_refused(target, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    if target == "home":
        (home / ".bashrc").write_text("x")
    monkeypatch.setenv("HOME", str(home))
    out = {"root": Path("/"), "home": home, "home_empty": home, "file": tmp_path / "f",
           "foreign": tmp_path / "foreign"}[target]
    if target == "file":
        out.write_text("data")
    if target == "foreign":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    before = sorted(p.name for p in out.iterdir()) if out.is_dir() and target != "root" else None
    file = write_yaml(tmp_path / "e.yaml", tiny_data())
    msg = one_line_error(invoke("sweep", file, "--out", out, "--no-progress"))
    assert str(out) in msg
    if before is not None:
        assert sorted(p.name for p in out.iterdir()) == before
    with pytest.raises(UserError):
        ResultsStore.open(out, fingerprint="f", manifest={}, experiment_name="x")


# ------------------------------------------------------------------------------ disk full


@pytest.fixture(scope="module")
def tiny_reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    file = write_yaml(root / "tiny.yaml", tiny_data())
    ok(invoke("sweep", file, "--out", root / "ref", "--no-progress", "--max-batch", "2"))
    return file, results(root / "ref")


#: (file whose write fails, how many writes of it succeed first): every write site of a sweep.
WRITE_SITES = [
    ("manifest.json", 0), (".lock", 0), ("grad_norms/", 0), ("grad_norms", 0), ("metrics", 0),
    ("grad_norms", 2), ("metrics", 2), ("runs", 0), ("runs", 2), ("runs.parquet", 0),
    ("summary.csv", 0), ("summary.md", 0), ("metrics.parquet", 0),
]


def inject_enospc(monkeypatch, target: str, after: int, error: OSError = ENOSPC) -> list:
    """Make the write of ``target`` fail with ``error`` once ``after`` of its writes succeeded;
    a parquet write leaves half a file behind first, as a real full disk does."""
    seen = []

    def hit(name: str) -> bool:
        if name != target:
            return False
        seen.append(name)
        return len(seen) > after

    real_write_table, real_write_text = pq.write_table, pathlib.Path.write_text
    real_mkdir, real_ftruncate = pathlib.Path.mkdir, os.ftruncate

    def tmp_target(tmp) -> str:
        p = Path(tmp)
        name = p.name.removeprefix(".tmp-").rsplit("-", 1)[0]
        return f"{p.parent.name}" if p.parent.name in ("grad_norms", "metrics", "runs") else name

    def write_table(table, where, *args, **kwargs):
        if hit(tmp_target(where)):
            Path(where).write_bytes(b"PAR1 half a file")
            raise OSError(error.errno, f"Error writing bytes to file. Detail: [errno "
                          f"{error.errno}] {error.strerror}")
        return real_write_table(table, where, *args, **kwargs)

    def write_text(self, text, *args, **kwargs):
        if hit(tmp_target(self)):
            real_write_text(self, text[: len(text) // 2], *args, **kwargs)
            raise error
        return real_write_text(self, text, *args, **kwargs)

    def mkdir(self, *args, **kwargs):
        if self.name == "grad_norms" and hit("grad_norms/"):
            raise error
        return real_mkdir(self, *args, **kwargs)

    def ftruncate(fd, length):
        if hit(".lock"):
            raise error
        return real_ftruncate(fd, length)

    monkeypatch.setattr(rnnlab.results.parquet_io.pq, "write_table", write_table)
    monkeypatch.setattr(pathlib.Path, "write_text", write_text)
    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    monkeypatch.setattr(os, "ftruncate", ftruncate)
    return seen


@pytest.mark.parametrize("quota", [False, True], ids=["ENOSPC", "EDQUOT"])
@pytest.mark.parametrize("target, after", WRITE_SITES, ids=[f"{t}@{a}" for t, a in WRITE_SITES])
def test_disk_full_at_any_write_is_one_line_and_the_rerun_is_exact(tiny_reference, tmp_path,
                                                                   monkeypatch, target, after,
                                                                   quota):
    file, reference = tiny_reference
    out = tmp_path / "out"
    error = OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)) if quota else ENOSPC
    with monkeypatch.context() as m:
        seen = inject_enospc(m, target, after, error)
        res = invoke("sweep", file, "--out", out, "--no-progress", "--max-batch", "2")
    assert len(seen) > after, f"{target} was written only {len(seen)} times"
    msg = one_line_error(res, code=EXIT_ENVIRONMENT, stdout=res.stdout)
    assert f"cannot write to {out}" in msg and os.strerror(error.errno) in msg, msg
    assert "rerun the same command" in msg
    no_traceback(res.stdout, res.stderr)
    assert not list(out.rglob(".tmp-*")) and not (out / ".lock").exists()
    if (out / "manifest.json").exists():
        assert_partial(out, reference)             # what is there reads as exact data
    ok(invoke("sweep", file, "--out", out, "--no-progress", "--max-batch", "2"))
    assert_same(out, reference)


def test_disk_full_while_plotting_is_one_line(tiny_reference, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    file, _ = tiny_reference
    out = tmp_path / "out"
    ok(invoke("sweep", file, "--out", out, "--no-progress"))
    import matplotlib.figure

    def savefig(self, *args, **kwargs):
        raise ENOSPC
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    msg = one_line_error(invoke("plot", out), code=EXIT_ENVIRONMENT)
    assert "No space left on device" in msg and "heatmap.png" in msg


def _mount_tmpfs(where: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")


def test_real_full_disk_on_a_tmpfs_then_rerun_after_freeing_space(tmp_path):
    """A real full disk: a sweep into a 4 MiB tmpfs that another file fills up after its first
    commits; exit 3 with one line, the folder reads cleanly; once the filler is deleted the
    same command completes with exactly the numbers of an uninterrupted sweep."""
    ref_file = write_yaml(tmp_path / "slow.yaml", SLOW)
    ok(invoke("sweep", ref_file, "--out", tmp_path / "ref", "--no-progress", "--max-batch", "1"))
    reference = results(tmp_path / "ref")
    mnt = tmp_path / "mnt"
    _mount_tmpfs(mnt, "4m")
    try:
        out = mnt / "out"
        env = dict(os.environ, NO_COLOR="1", OPENBLAS_NUM_THREADS="1")
        proc = subprocess.Popen(
            [sys.executable, "-m", "rnnlab", "sweep", str(ref_file), "--out", str(out),
             "--no-progress", "--max-batch", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        deadline = time.monotonic() + WAIT
        while not committed_runs(out):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.002)
        filler = mnt / "filler"
        with open(filler, "wb") as f, pytest.raises(OSError) as info:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        assert info.value.errno == errno.ENOSPC
        stdout, stderr = proc.communicate(timeout=WAIT)
        assert proc.returncode == EXIT_ENVIRONMENT, stderr
        assert stderr.count("\n") == 1 and stderr.startswith("rnnlab: error: cannot write to "
                                                             f"{out}"), stderr
        assert "No space left on device" in stderr
        no_traceback(stdout, stderr)
        assert 1 <= assert_partial(out, reference) < len(reference["runs"])
        filler.unlink()
        ok(invoke("sweep", ref_file, "--out", out, "--no-progress", "--max-batch", "1"))
        assert_same(out, reference)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# ------------------------------------------------------------------------ worker processes

KILLER = '''
import os
import signal
from pathlib import Path

from rnnlab.run.executors import base
def run_batch(specs):
    """Kill this worker process (SIGKILL, as the OOM killer does) while it trains the batch
    holding run KILL_RUN, the first KILL_TIMES times; otherwise train it."""
    if any(s.run_id == os.environ["KILL_RUN"] for s in specs):
        mark = Path(os.environ["KILL_MARK"])
        deaths = int(mark.read_text()) if mark.exists() else 0
        if deaths < int(os.environ["KILL_TIMES"]):
            mark.write_text(str(deaths + 1))
            os.kill(os.getpid(), signal.SIGKILL)
    return base.run_batch(specs)
'''

DRIVER = '''
import sys
import killer
from rnnlab.run.executors import base
from rnnlab.cli import app
base.run_batch = killer.run_batch
sys.argv = ["rnnlab", *sys.argv[1:]]
app()
'''


def sweep_with_a_killer(tmp_path: Path, file: Path, out: Path, run_id: str, times: int,
                        *extra) -> subprocess.CompletedProcess:
    """``rnnlab sweep FILE --workers 2`` in a subprocess whose workers die on ``run_id``'s batch
    the first ``times`` times they train it."""
    (tmp_path / "killer.py").write_text(KILLER)
    env = dict(os.environ, NO_COLOR="1", OPENBLAS_NUM_THREADS="1", KILL_RUN=run_id,
               KILL_TIMES=str(times), KILL_MARK=str(tmp_path / "deaths"),
               PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    (tmp_path / "deaths").unlink(missing_ok=True)
    return subprocess.run(
        [sys.executable, "-c", DRIVER, "sweep", str(file), "--out", str(out), "--no-progress",
         "--workers", "2", "--max-batch", "2", "--format", "csv", *extra],
        capture_output=True, text=True, env=env, timeout=WAIT * 3)


@pytest.mark.parametrize("times", [1, 2])
def test_a_killed_worker_loses_its_batch_once_and_the_retry_is_exact(tiny_reference, tmp_path,
                                                                     times):
    file, reference = tiny_reference
    runs = tiny_exp().runs()
    target = runs[5].run_id
    out = tmp_path / "out"
    proc = sweep_with_a_killer(tmp_path, file, out, target, times)
    assert proc.returncode == 0, proc.stderr
    no_traceback(proc.stdout, proc.stderr)
    lost = [line for line in proc.stderr.splitlines() if " lost: " in line]
    assert len(lost) == times, proc.stderr
    for i, line in enumerate(lost, 1):
        assert line.startswith("rnnlab: batch ") and "2 run(s)" in line, line
        assert "was killed by SIGKILL" in line and f"retrying it ({i} of 2)" in line, line
    assert_same(out, reference)
    assert not (out / ".lock").exists()


def test_a_batch_that_always_kills_its_worker_is_failed_after_bounded_retries(tiny_reference,
                                                                               tmp_path):
    file, reference = tiny_reference
    target = tiny_exp().runs()[2].run_id
    out = tmp_path / "out"
    proc = sweep_with_a_killer(tmp_path, file, out, target, 99)
    assert proc.returncode == 1, proc.stderr
    no_traceback(proc.stdout, proc.stderr.replace("WorkerDied:", "WorkerDied"))
    lost = [line for line in proc.stderr.splitlines() if " lost: " in line]
    assert len(lost) == 3 and "3 attempts failed" in lost[-1], proc.stderr
    assert (tmp_path / "deaths").read_text() == "3"          # 1 + 2 retries, no more
    assert "8 run(s) now" in proc.stderr and "2 failed; results in" in proc.stderr
    got = results(out)
    runs = got["runs"]
    failed = runs[runs["status"] == "failed"]
    assert len(failed) == 2 and target in set(failed["run_id"])
    assert failed["error"].str.contains("killed by SIGKILL", regex=False).all()
    assert failed["error"].str.endswith(", 3 times").all()
    good = set(runs["run_id"]) - set(failed["run_id"])
    assert len(good) == 6
    for key in ("grad_norms", "metrics"):          # the other batches: exactly the reference
        want = reference[key][reference[key]["run_id"].isin(good)].reset_index(drop=True)
        pd.testing.assert_frame_equal(got[key], want, check_exact=True, obj=key)
    # --retry-failed (the worker healthy again) completes the folder with the exact numbers
    proc = sweep_with_a_killer(tmp_path, file, out, target, 0, "--retry-failed")
    assert proc.returncode == 0, proc.stderr
    assert_same(out, reference)


def test_killed_worker_of_pool_leaves_no_resource_tracker_noise(tiny_reference, tmp_path):
    """A worker killed from outside (by the parent process of the test's script, right after the
    worker was handed its first batch): the same one line, and no other line on stderr (no
    traceback or warning from multiprocessing or its resource tracker)."""
    file, reference = tiny_reference
    out = tmp_path / "out"
    script = textwrap.dedent('''
        import os, signal, sys, time
        from rnnlab.run.executors import pool
        from rnnlab.cli import app
        real = pool.Worker.give
        def give(self, job):
            sent = real(self, job)
            if sent and not os.environ.get("KILLED"):
                os.environ["KILLED"] = "1"
                os.kill(self.proc.pid, signal.SIGKILL)
            return sent
        pool.Worker.give = give
        sys.argv = ["rnnlab", *sys.argv[1:]]
        app()
    ''')
    env = dict(os.environ, NO_COLOR="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", script, "sweep", str(file), "--out", str(out), "--no-progress",
         "--workers", "2", "--max-batch", "2", "--format", "csv"],
        capture_output=True, text=True, env=env, timeout=WAIT * 3)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert sum(" lost: " in line for line in lines) == 1, proc.stderr
    assert all(line.startswith("rnnlab: ") for line in lines), proc.stderr
    assert_same(out, reference)


# ------------------------------------------------------------------- damaged results folders


@pytest.fixture
def finished_tiny(tiny_reference, tmp_path):
    file, reference = tiny_reference
    out = tmp_path / "out"
    ok(invoke("sweep", file, "--out", out, "--no-progress", "--max-batch", "2"))
    return file, out, reference


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def reading_commands(out: Path) -> list[list]:
    commands = [["report", out], ["report", out, "--format", "csv"]]
    try:
        import matplotlib  # noqa: F401
        commands.append(["plot", out, "--out", out.parent / "fig.png"])
    except ImportError:
        pass
    return commands


@pytest.mark.parametrize("damage", ["truncated", "empty", "not_json", "a_list", "binary"])
def test_damaged_manifest_is_a_one_line_warning_for_readers(finished_tiny, damage):
    file, out, _ = finished_tiny
    manifest = out / "manifest.json"
    text = manifest.read_text()
    manifest.write_bytes({"truncated": text[: len(text) // 2].encode(), "empty": b"",
                          "not_json": b"{name: x", "a_list": b"[1, 2]",
                          "binary": b"\xff\xfe\x00\n\x01"}[damage])
    expected = ok(invoke("report", out, "--format", "csv")).stdout
    for args in reading_commands(out):
        before = snapshot(out)
        res = invoke(*args)
        assert res.exit_code == 0, res.stderr
        lines = res.stderr.splitlines()
        warn = [line for line in lines if line.startswith("rnnlab: warning: ")]
        assert len(warn) == 1, res.stderr
        assert f"{manifest}: cannot read" in warn[0] and "--fresh" in warn[0], warn[0]
        assert "Traceback" not in res.stderr
        assert snapshot(out) == before                        # nothing changed or deleted
    assert expected.count("\n") > 1
    # sweeping into the folder is refused, naming the file and the ways out
    msg = one_line_error(invoke("sweep", file, "--out", out, "--no-progress"))
    assert str(manifest) in msg and "--fresh" in msg


def test_missing_runs_table_with_norms_present_is_refused_with_the_way_out(finished_tiny):
    file, out, reference = finished_tiny
    (out / "runs.parquet").unlink()
    for args in reading_commands(out):
        before = snapshot(out)
        msg = one_line_error(invoke(*args))
        assert f"{out / 'runs.parquet'} is missing" in msg and "rerun `rnnlab sweep`" in msg
        assert snapshot(out) == before
    ok(invoke("sweep", file, "--out", out, "--no-progress", "--max-batch", "2"))
    assert_same(out, reference)


def test_report_during_a_live_sweep_warns_and_a_stale_lock_is_ignored(finished_tiny):
    import fcntl

    _, out, _ = finished_tiny
    (out / ".lock").write_text("999999 elsewhere\n")           # stale: nobody holds it
    res = ok(invoke("report", out))
    assert "warning" not in res.stderr
    fd = os.open(out / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)          # a live sweep holds it
        res = ok(invoke("report", out))
        assert res.stderr.count("\n") == 1 and "still writing" in res.stderr, res.stderr
        assert "pid 999999" in res.stderr
    finally:
        os.close(fd)


def test_lock_of_another_host_says_how_to_clear_it(finished_tiny, monkeypatch):
    """Without flock (some network filesystems) a lock written on another host cannot be
    checked from here: the refusal names the lock file to delete if that sweep is gone."""
    import fcntl

    file, out, _ = finished_tiny

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    (out / ".lock").write_text("4242 deadhost\n")
    msg = one_line_error(invoke("sweep", file, "--out", out, "--no-progress"))
    assert "pid 4242 on deadhost" in msg and f"delete {out / '.lock'}" in msg
    (out / ".lock").unlink()
    ok(invoke("sweep", file, "--out", out, "--no-progress"))


# ------------------------------------------------------------------------ disk space up front


def test_estimate_of_disk_use_is_close_to_what_a_sweep_writes(tmp_path):
    from rnnlab.run import plan
    exp = tiny_exp(train={"steps": 20, "log_every": 2}, sweep={"task.seq_len": [30, 60]})
    out = tmp_path / "out"
    from rnnlab.run.sweep import run_sweep
    run_sweep(exp, out)
    written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    estimate = sum(plan.disk_bytes(s.config) for s in exp.runs())
    assert 0.8 * written < estimate < 2 * written, (estimate, written)
    plan.check_disk(exp.runs(), out, "e.yaml", free=2 * written + (1 << 20))
    with pytest.raises(UserError, match=r"e\.yaml: the results of 4 run\(s\) need about "
                                        r"[0-9.]+ MiB on disk, more than the 0\.1 MiB free"):
        plan.check_disk(exp.runs(), out, "e.yaml", free=100_000)


def test_results_that_cannot_fit_the_disk_are_refused_up_front(tmp_path, monkeypatch):
    from rnnlab.run import plan
    file = write_yaml(tmp_path / "e.yaml", tiny_data())
    out = tmp_path / "out"
    monkeypatch.setattr(plan, "free_disk", lambda path: 300_000)
    msg = one_line_error(invoke("sweep", file, "--out", out, "--no-progress"))
    assert "need about 1.0 MiB on disk, more than the 0.3 MiB free" in msg, msg
    assert "--out on a disk with room" in msg
    assert not out.exists()
    monkeypatch.undo()
    ok(invoke("sweep", file, "--out", out, "--no-progress"))
    # a finished folder needs no more room: its rerun is not refused
    monkeypatch.setattr(plan, "free_disk", lambda path: 0)
    ok(invoke("sweep", file, "--out", out, "--no-progress"))


def test_a_tmpfs_too_small_for_the_results_is_refused_with_the_numbers(tmp_path):
    mnt = tmp_path / "mnt"
    _mount_tmpfs(mnt, "512k")
    try:
        file = write_yaml(tmp_path / "e.yaml", tiny_data())
        msg = one_line_error(invoke("sweep", file, "--out", mnt / "out", "--no-progress"))
        assert "MiB free where" in msg and "0.5 MiB free" in msg, msg
        assert os.listdir(mnt) == []
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# ------------------------------------------------------------------------------------ load


def _rows(ids, axis_values, failed=False):
    rows = []
    for i, v in zip(ids, axis_values, strict=True):
        row = {"run_id": i, "model.weight_scale": v, "seed": 1, "seq_len": 3, "part": "p"}
        if failed:
            row.update(status="failed", error="MemoryError: x\ny", solved=False)
        else:
            row.update(status="ok", final_loss=0.5, accuracy=1.0, solved=True,
                       steps_to_solve=3, wall_time=0.1)
        rows.append(row)
    return rows


@pytest.mark.parametrize("second", ["same types", "failed rows", "float after int",
                                    "new column", "null then value"])
def test_combining_runs_parts_gives_the_table_a_rebuild_gives(second):
    """The runs parts of two batches read as one table (and compacted into runs.parquet) are
    concatenated when they can be instead of rebuilt from Python rows; the table is the same."""
    from rnnlab.results.parquet_io import combine_runs, runs_table

    first = _rows(["b3", "a1", "z9"], [0.5, 1.5, 2.5])
    if second == "float after int":
        first = _rows(["b3", "a1", "z9"], [1, 2, 3])
    if second == "null then value":
        first = _rows(["b3", "a1", "z9"], [None, None, None])
    more = {"same types": _rows(["c4", "0a"], [0.25, 4.0]),
            "failed rows": _rows(["c4", "0a"], [0.25, 4.0], failed=True),
            "float after int": _rows(["c4", "0a"], [0.25, 4.0]),
            "new column": [{**r, "train.lr": 0.1} for r in _rows(["c4", "0a"], [0.25, 4.0])],
            "null then value": _rows(["c4", "0a"], [0.25, 4.0])}[second]
    old = runs_table(first)
    got = combine_runs([old, runs_table(more)])
    want = runs_table(old.to_pylist() + more)      # the rows of both, rebuilt
    assert got.equals(want, check_metadata=True), (got.schema, want.schema)
    assert got.column("run_id").to_pylist() == sorted(r["run_id"] for r in first + more)


def _terminal_sigint():
    """In the child: SIGINT as a terminal's shell leaves it (default action, not blocked), whatever
    the test process's own signal state is."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_and_sigkill_of_a_pool_sweep(tmp_path):
    """--workers 2: SIGINT to the whole process group (as Ctrl-C in a terminal) exits 130 with
    the one line and nothing else; the workers of a SIGKILLed sweep end by themselves (their
    pipe is closed); the resume gives the uninterrupted numbers.

    Three times SLOW's repeats: on a loaded machine this test's process can sleep longer than
    the sweep takes to finish a dozen runs, and a Ctrl-C that arrives after the end is no test."""
    import psutil

    file = write_yaml(tmp_path / "slow.yaml", {**SLOW, "repeats": 3 * SLOW["repeats"]})
    ok(invoke("sweep", file, "--out", tmp_path / "ref", "--no-progress", "--max-batch", "1"))
    reference = results(tmp_path / "ref")
    out = tmp_path / "out"
    env = dict(os.environ, NO_COLOR="1", OPENBLAS_NUM_THREADS="1")
    args = [sys.executable, "-m", "rnnlab", "sweep", str(file), "--out", str(out),
            "--no-progress", "--max-batch", "1", "--workers", "2", "--format", "csv"]

    def start_and_wait(at_least):
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, start_new_session=True, preexec_fn=_terminal_sigint)
        deadline = time.monotonic() + WAIT
        while True:
            if committed_runs(out) >= at_least:
                return proc
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.005)

    proc = start_and_wait(2)
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert len(workers) >= 2
    proc.kill()                                    # the sweep only: its workers must follow
    proc.communicate(timeout=WAIT)
    psutil.wait_procs(workers, timeout=WAIT)
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]

    proc = start_and_wait(4)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130, stderr
    assert stderr.splitlines()[-1] == ("rnnlab: interrupted; finished runs are kept: rerun the "
                                       "same command to resume"), stderr
    assert all(line.startswith("rnnlab: ") for line in stderr.splitlines()), stderr
    no_traceback(stdout, stderr)
    assert_partial(out, reference)
    ok(invoke("sweep", file, "--out", out, "--no-progress", "--max-batch", "1", "--workers", "2"))
    assert_same(out, reference)
