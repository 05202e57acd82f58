"""Reliability: nothing lost under interruption, bad input or numeric faults.

* Interruption: real ``python -m rnnlab sweep`` subprocesses killed with SIGKILL, SIGINT and
  SIGTERM at chosen points (chosen by polling the number of committed runs in the runs files, with
  bounded waits), then resumed; the folder must end with exactly the numbers of an uninterrupted
  sweep (compared exactly: runs without wall_time, grad norms, metrics).
* Locking: a second sweep into a folder held by a live sweep is refused; the lock left by a
  SIGKILLed sweep does not block.
* Corrupted or truncated files: ``report``, ``plot`` (if present) and resume name the file and
  the remedy, exit 2; following the remedy gives back the original numbers.
* Bad input through the CLI (what tests/test_cli.py does not already cover): one line, exit 2,
  nothing written.
* Numeric faults: diverging runs are recorded with their step and the sweep goes on; float32
  underflow gives zero norms and a ``-inf`` grad_ratio, not NaN, warnings or errors.

The property-based test of mutated experiment files is in tests/test_fuzz.py.
docs/reliability.md maps each guarantee to its test here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import committed_runs, invoke, ok, tiny_data, write_yaml

from rnnlab.analysis.summarize import summary_of
from rnnlab.cli import app
from rnnlab.errors import UserError
from rnnlab.results.readers import load_grad_norms, load_metrics, load_runs
from rnnlab.results.store import ResultsStore

#: 12 runs (3 scales x 2 learning rates x 2 repeats); seq_len 400 makes one run take ~0.08 s,
#: so with --max-batch 1 there are 12 commit points far enough apart to aim a signal between them.
SLOW = {
    "name": "slow",
    "seed": 0,
    "repeats": 2,
    "model": {"cell": "rnn", "activation": "tanh", "hidden": 4},
    "task": {"name": "recall", "batch": 4, "eval_batch": 16, "seq_len": 400},
    "train": {"steps": 3, "log_every": 1, "optimizer": "adam", "lr": 0.01},
    "sweep": {"model.weight_scale": [0.5, 1.0, 1.5], "train.lr": [0.01, 0.02]},
}
N_SLOW = 12
SWEEP_ARGS = ["--no-progress", "--max-batch", "1", "--format", "csv"]
WAIT = 60.0          # seconds: the longest any bounded wait below lasts before failing


def one_line_error(result_or_stderr, code=2, stdout=""):
    """Assert the shape of a user error: exit 2, one line on stderr, no traceback."""
    res = result_or_stderr
    assert res.exit_code == code, (res.exit_code, res.stdout, res.stderr, res.exception)
    assert res.stderr.startswith("rnnlab: error: "), res.stderr
    assert res.stderr.endswith("\n") and res.stderr.count("\n") == 1, repr(res.stderr)
    assert "Traceback" not in res.stdout + res.stderr
    assert res.stdout == stdout
    return res.stderr


def results(out: Path, killed: bool = False) -> dict[str, pd.DataFrame]:
    """What a folder holds, canonically ordered: runs without wall time, grad norms, metrics.
    The grad norms a raw reader of ``grad_norms/`` sees are those of the committed runs, exactly;
    ``killed``: the last process writing the folder was SIGKILLed, so besides them the folder may
    hold the orphan part of the one batch it was committing (:func:`orphan_grad_parts`)."""
    runs = load_runs(out).drop(columns=["wall_time"]).reset_index(drop=True)
    raw = pd.read_parquet(out / "grad_norms")
    if killed:
        orphans = orphan_grad_parts(out, set(runs["run_id"]))
        assert len(orphans) <= 1, orphans
        raw = raw[raw["run_id"].isin(runs["run_id"])]
    grad = raw.sort_values(["run_id", "step", "t"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(grad, load_grad_norms(out), check_exact=True)
    return {"runs": runs, "grad_norms": grad, "metrics": load_metrics(out).reset_index(drop=True)}


def orphan_grad_parts(out: Path, committed_ids: set) -> list[str]:
    """The grad norms parts that hold runs of no committed batch. A process SIGKILLed inside a
    commit, after its batch's part files were moved into place and before its runs part (the
    commit) was, leaves them behind until the folder is next opened for writing
    (docs/reliability.md), and a raw reader sees them meanwhile; where the kill lands in a commit
    is timing no test controls. A part holds one batch: all of its runs committed or none."""
    import pyarrow.parquet as pq

    orphans = []
    for part in sorted((out / "grad_norms").glob("part-*.parquet")):
        ids = set(pq.read_table(part, columns=["run_id"]).column("run_id").to_pylist())
        assert ids <= committed_ids or not ids & committed_ids, part
        if not ids <= committed_ids:
            orphans.append(part.name)
    return orphans


def assert_same(out: Path, reference: dict[str, pd.DataFrame]):
    got = results(out)
    assert got["runs"]["run_id"].is_unique
    for key, want in reference.items():
        pd.testing.assert_frame_equal(got[key], want, check_exact=True, obj=key)


def assert_partial(out: Path, reference: dict[str, pd.DataFrame], killed: bool = False) -> int:
    """A killed sweep's folder reads cleanly and holds a subset of the reference, exactly
    (``killed``: by SIGKILL, see :func:`results`)."""
    if not committed_runs(out):
        return 0
    got = results(out, killed)
    ids = set(got["runs"]["run_id"])
    assert got["runs"]["run_id"].is_unique
    for key, want in reference.items():
        part = want[want["run_id"].isin(ids)].reset_index(drop=True)
        pd.testing.assert_frame_equal(got[key], part, check_exact=True, obj=key)
    return len(ids)


# ------------------------------------------------------------------------ subprocess helpers


def _default_sigint():
    # a shell running the tests in the background makes children ignore SIGINT; Python then
    # installs no KeyboardInterrupt handler: give the sweep the disposition a terminal gives it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_sweep(file: Path, out: Path, *extra) -> subprocess.Popen:
    env = dict(os.environ, NO_COLOR="1", OPENBLAS_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "rnnlab", "sweep", str(file), "--out", str(out), *SWEEP_ARGS,
         *map(str, extra)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
        preexec_fn=_default_sigint)


def committed(out: Path) -> int:
    """Runs committed (-1 while the folder has no manifest yet)."""
    if not (out / "manifest.json").is_file():
        return -1
    return committed_runs(out)


def signal_when(proc: subprocess.Popen, out: Path, at_least: int, sig: int) -> None:
    """Send ``sig`` as soon as ``out`` has ``at_least`` committed runs while the sweep holds the
    folder's lock (0: as soon as it does); if it finishes with them all first, send nothing.
    Fails if it ends short of them or nothing happens within WAIT seconds."""
    deadline = time.monotonic() + WAIT
    # at_least = 0 means "once the sweep holds the folder": wait for its lock file, not merely
    # for zero committed runs (true before the process has even started)
    while committed(out) < at_least or not (out / ".lock").exists():
        if proc.poll() is not None:
            if committed(out) >= at_least:
                return                  # it finished first: the caller sees exit status 0
            raise AssertionError(f"the sweep ended before {at_least} runs were committed: "
                                 f"exit {proc.returncode}\n{proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {at_least} committed runs after {WAIT} s")
        time.sleep(0.002)
    proc.send_signal(sig)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    try:
        stdout, stderr = proc.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, stdout, stderr


def resume(file: Path, out: Path):
    """Resume in-process (the same command a user would type again)."""
    return ok(invoke("sweep", file, "--out", out, *SWEEP_ARGS))


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    """(experiment file, reference results of an uninterrupted sweep)."""
    root = tmp_path_factory.mktemp("slow")
    file = write_yaml(root / "slow.yaml", SLOW)
    ok(invoke("sweep", file, "--out", root / "reference", *SWEEP_ARGS))
    reference = results(root / "reference")
    assert len(reference["runs"]) == N_SLOW
    return file, reference


# ----------------------------------------------------------------------------- interruption


def test_sigkill_at_any_point_then_resume_gives_the_uninterrupted_numbers(slow, tmp_path):
    """SIGKILL as soon as the folder exists (before the first commits), after some runs, after
    almost all, and after the last commit while the summary is written and the metrics compacted
    (a window of ~0.3 s: if the sweep ends first, that point is passed over); each killed folder
    reads cleanly and holds a subset of the reference; each next process resumes from it. A kill
    that lands inside a commit (after the batch's grad norms part was moved into place, before
    its runs part) leaves that orphan part to the next open, and a raw reader of grad_norms/ sees
    it meanwhile, so the raw read of a killed folder is checked with it set aside
    (``results(killed=True)``); the resumed folder's raw read must be exact."""
    file, reference = slow
    out = tmp_path / "out"
    counts = []
    for at_least in (0, 4, N_SLOW - 2, N_SLOW):
        proc = start_sweep(file, out)
        signal_when(proc, out, at_least, signal.SIGKILL)
        code, _, stderr = finish(proc)
        if at_least == N_SLOW and (code == 0 or not (out / ".lock").exists()):
            continue                    # it ended first, or the kill fell after its last write
        assert code == -signal.SIGKILL, stderr
        assert (out / ".lock").exists()           # left behind by the killed process
        counts.append(assert_partial(out, reference, killed=True))
    assert counts[0] < 4 <= counts[1] < N_SLOW - 2 <= counts[2] < N_SLOW, counts
    res = resume(file, out)
    assert f"0 run(s) now, {N_SLOW} already done" in " ".join(res.stderr.split())
    assert_same(out, reference)
    assert not (out / "metrics").exists() and not (out / ".lock").exists()
    assert not [p for p in out.rglob(".tmp-*")]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_and_sigterm_exit_130_and_resume_to_the_same_numbers(slow, tmp_path, sig):
    file, reference = slow
    out = tmp_path / "out"
    proc = start_sweep(file, out)
    signal_when(proc, out, 5, sig)
    code, _, stderr = finish(proc)
    assert code == 130, (code, stderr)
    assert "interrupted; finished runs are kept: rerun the same command" in stderr, stderr
    assert "Traceback" not in stderr
    n = assert_partial(out, reference)
    assert 5 <= n < N_SLOW
    res = resume(file, out)
    assert f"{N_SLOW - n} run(s) now, {n} already done" in " ".join(res.stderr.split())
    assert_same(out, reference)


@pytest.mark.parametrize("where", ["open", "summary", "finalize"])
def test_ctrl_c_outside_training_also_exits_130_and_resumes(tmp_path, monkeypatch, where):
    """Ctrl-C (or SIGTERM, which the sweep turns into the same KeyboardInterrupt) while the
    folder is opened, the summary written or the metrics compacted: these phases are short, so
    they are hit deterministically here by raising KeyboardInterrupt in them."""
    import rnnlab.run.sweep

    monkeypatch.chdir(tmp_path)
    file = write_yaml(tmp_path / "tiny.yaml", tiny_data())
    ok(invoke("sweep", file, "--out", tmp_path / "ref", "--no-progress"))

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt
    target = {"open": (ResultsStore, "_cleanup"), "summary": (rnnlab.run.sweep, "summary_of"),
              "finalize": (ResultsStore, "finalize")}[where]
    monkeypatch.setattr(*target, ctrl_c)
    out = tmp_path / "out"
    res = invoke("sweep", file, "--out", out, "--no-progress")
    assert res.exit_code == 130, (res.exit_code, res.stderr, res.exception)
    assert "interrupted; finished runs are kept: rerun the same command" in res.stderr
    assert "Traceback" not in res.stderr and "Aborted" not in res.stderr
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    ok(invoke("sweep", file, "--out", out, "--no-progress"))
    assert_same(out, results(tmp_path / "ref"))


def test_second_sweep_is_refused_and_a_sigkilled_lock_does_not_block(slow, tmp_path):
    """The holder is stopped once it committed a run, possibly inside its next commit, then
    SIGKILLed: its folder may hold that batch's orphan part (see the SIGKILL test above)."""
    file, reference = slow
    out = tmp_path / "out"
    holder = start_sweep(file, out)
    try:
        signal_when(holder, out, 1, signal.SIGSTOP)     # frozen while it holds the lock
        proc = start_sweep(file, out)
        code, stdout, stderr = finish(proc)
        assert code == 2, (code, stderr)
        assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
        assert stderr.startswith(f"rnnlab: error: another rnnlab sweep (pid {holder.pid}) is "
                                 f"writing to {out}; wait for it to finish or pass --out"), stderr
        assert stdout == ""
    finally:
        holder.kill()                                    # SIGKILL works on a stopped process
        finish(holder)
    assert (out / ".lock").read_text().split()[0] == str(holder.pid)   # stale lock left behind
    n = assert_partial(out, reference, killed=True)
    res = resume(file, out)
    assert f"{N_SLOW - n} run(s) now, {n} already done" in " ".join(res.stderr.split())
    assert_same(out, reference)


def test_the_check_of_a_killed_folder_sets_aside_one_orphan_batch_and_nothing_else(tmp_path):
    """``results(out, killed=True)`` allows what a SIGKILL inside a commit leaves (one grad norms
    part of runs no batch committed) and nothing more: not a second orphan part, not a part that
    mixes committed and uncommitted runs, not a changed number."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = write_yaml(tmp_path / "tiny.yaml", tiny_data())
    out = tmp_path / "out"
    ok(invoke("sweep", file, "--out", out, "--no-progress", "--max-batch", "2"))
    want = results(out)
    parts = sorted((out / "grad_norms").glob("part-*.parquet"))

    def copy_as(src, name, ids):
        table = pq.read_table(src)
        run_id = [ids(i) for i in table.column("run_id").to_pylist()]
        table = table.set_column(table.schema.get_field_index("run_id"), "run_id",
                                 pa.array(run_id, table.schema.field("run_id").type))
        pq.write_table(table, out / "grad_norms" / name)

    copy_as(parts[0], "part-orphan1.parquet", lambda i: "zz" + i)     # a batch never committed
    with pytest.raises(AssertionError):
        results(out)
    assert assert_partial(out, want, killed=True) == 8
    copy_as(parts[1], "part-orphan2.parquet", lambda i: "yy" + i)
    with pytest.raises(AssertionError):                             # two batches in flight
        results(out, killed=True)
    (out / "grad_norms" / "part-orphan2.parquet").unlink()
    first = [True]

    def mixed(i):
        keep, first[0] = first[0], False
        return i if keep else "xx" + i
    copy_as(parts[1], "part-orphan2.parquet", mixed)
    with pytest.raises(AssertionError):                             # not one batch
        results(out, killed=True)
    (out / "grad_norms" / "part-orphan2.parquet").unlink()
    table = pq.read_table(parts[0])
    ds = table.column("ds").to_numpy().copy()
    ds[0] += 1.0
    pq.write_table(table.set_column(table.schema.get_field_index("ds"), "ds",
                                    pa.array(ds, table.schema.field("ds").type)), parts[0])
    with pytest.raises(AssertionError):                             # a committed number changed
        assert_partial(out, want, killed=True)


# ------------------------------------------------------------------------ corrupted files


@pytest.fixture
def finished(tmp_path, monkeypatch):
    """A finished tiny sweep: (experiment file, folder, its results)."""
    monkeypatch.chdir(tmp_path)
    file = write_yaml(tmp_path / "tiny.yaml", tiny_data())
    out = tmp_path / "out"
    ok(invoke("sweep", file, "--out", out, "--no-progress", "--format", "csv"))
    return file, out, results(out)


def _first_part(out: Path) -> Path:
    return sorted((out / "grad_norms").glob("part-*.parquet"))[0]


TARGETS = {
    "grad-part": _first_part,
    "runs": lambda out: out / "runs.parquet",
    "metrics": lambda out: out / "metrics.parquet",
}
DAMAGE = {
    "truncated": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "garbage": lambda data: bytes(np.random.default_rng(0).integers(0, 256, len(data),
                                                                    dtype=np.uint8)),
    "flipped-footer": lambda data: data[:-12] + bytes(b ^ 0xFF for b in data[-12:]),
}


def plot_args(out: Path) -> list | None:
    """``rnnlab plot`` arguments for a folder, or None when the command does not exist yet."""
    names = [c.name or c.callback.__name__ for c in app.registered_commands]
    return ["plot", out] if "plot" in names else None


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("target", list(TARGETS))
def test_corrupted_file_is_named_with_the_remedy_and_the_remedy_recovers(finished, target,
                                                                          damage):
    file, out, before = finished
    path = TARGETS[target](out)
    path.write_bytes(DAMAGE[damage](path.read_bytes()))
    commands = [["report", out], ["sweep", file, "--out", out, "--no-progress"]]
    if target != "metrics":      # the summary does not read metrics: report never sees them
        commands += [c for c in [plot_args(out)] if c]
    else:
        commands = commands[1:]
    for args in commands:
        msg = one_line_error(invoke(*args))
        assert str(path) in msg and "cannot read" in msg, (args, msg)
        assert "delete it and rerun `rnnlab sweep`" in msg, (args, msg)
    path.unlink()                                       # the advice, followed
    res = ok(invoke("sweep", file, "--out", out, "--no-progress", "--format", "csv"))
    assert "run(s) now" in res.stderr
    assert_same(out, before)
    ok(invoke("report", out))


READERS = {
    "grad-part": lambda out: [load_grad_norms(out), summary_of(out)],
    "runs": lambda out: [load_runs(out).astype(str), summary_of(out)],
    "metrics": lambda out: [load_metrics(out)],
}


@pytest.mark.parametrize("target", list(TARGETS))
def test_any_flipped_byte_is_harmless_or_named(finished, target):
    """Flip single bytes of a file (60 spread over it, and 150 in its footer, where schema, row
    counts and statistics live): reading the folder either gives exactly the original numbers
    (the byte was padding, statistics or unused metadata) or a UserError naming the file.
    Without the page checksums, the per-batch filtering and the row-count and column checks of
    store._read_parquet, most such flips gave other numbers silently, a damaged footer could drop
    rows, and a damaged column name or type crashed with a traceback."""
    _, out, _ = finished
    path, read = TARGETS[target](out), READERS[target]
    want = read(out)
    data = path.read_bytes()
    footer = int.from_bytes(data[-8:-4], "little") + 8
    positions = set(np.linspace(0, len(data) - 1, 60).astype(int))
    positions |= set(range(len(data) - footer, len(data) - 4, max(3, footer // 150)))
    outcomes = {"same": 0, "named": 0}
    for pos in sorted(positions):
        path.write_bytes(data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1:])
        try:
            got = read(out)
        except UserError as e:
            assert str(path) in str(e) and "\n" not in str(e), (pos, str(e))
            outcomes["named"] += 1
            continue
        for a, b in zip(got, want, strict=True):
            pd.testing.assert_frame_equal(a, b, check_exact=True, obj=f"flip at byte {pos}")
        outcomes["same"] += 1
    assert outcomes["named"] > outcomes["same"] > 0, outcomes


def test_corrupted_manifest_is_named_and_fresh_recovers(finished):
    file, out, before = finished
    (out / "manifest.json").write_text('{"name": "tiny", "finger')
    msg = one_line_error(invoke("sweep", file, "--out", out, "--no-progress"))
    assert str(out / "manifest.json") in msg and "--fresh" in msg
    ok(invoke("sweep", file, "--out", out, "--no-progress", "--fresh"))
    assert_same(out, before)


def test_corrupted_pending_metrics_part_is_named_on_resume(tmp_path, monkeypatch):
    """A metrics part of an interrupted sweep (not yet compacted) that is damaged: the resume
    that compacts it names it instead of dropping those runs' metrics silently; deleting it
    recomputes its runs."""
    monkeypatch.chdir(tmp_path)
    file = write_yaml(tmp_path / "tiny.yaml", tiny_data())
    ok(invoke("sweep", file, "--out", tmp_path / "ref", "--no-progress"))
    real_write = ResultsStore.write_batch

    def interrupt_after_first(self, runs, grad_norms, metrics):
        real_write(self, runs, grad_norms, metrics)
        raise KeyboardInterrupt
    monkeypatch.setattr(ResultsStore, "write_batch", interrupt_after_first)
    out = tmp_path / "out"
    assert invoke("sweep", file, "--out", out, "--no-progress").exit_code == 130
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    (part,) = (out / "metrics").glob("part-*.parquet")
    part.write_bytes(part.read_bytes()[:100])
    msg = one_line_error(invoke("sweep", file, "--out", out, "--no-progress"))
    assert str(part) in msg and "delete it and rerun `rnnlab sweep`" in msg
    part.unlink()
    ok(invoke("sweep", file, "--out", out, "--no-progress"))
    assert_same(out, results(tmp_path / "ref"))


# ------------------------------------------------------------------------------ bad input


def _yaml(tmp_path, **overrides) -> Path:
    return write_yaml(tmp_path / "exp.yaml", tiny_data(**overrides))


# (id, args builder, pieces the one-line message must contain)
BAD_INPUT = [
    ("zero hidden", lambda p: ["sweep", _yaml(p, model={"hidden": 0}), "--out", p / "out"],
     ["exp.yaml: model.hidden: got 0; allowed: an integer >= 1"]),
    ("negative batch", lambda p: ["sweep", _yaml(p, task={"batch": -4}), "--out", p / "out"],
     ["exp.yaml: task.batch: got -4; allowed: an integer >= 1"]),
    ("zero eval_batch --set", lambda p: ["sweep", _yaml(p), "--out", p / "out",
                                         "--set", "task.eval_batch=0"],
     ["--set: task.eval_batch: got 0; allowed: an integer >= 1"]),
    ("negative steps", lambda p: ["validate", _yaml(p, train={"steps": -1})],
     ["exp.yaml: train.steps: got -1; allowed: an integer >= 0"]),
    ("zero seq_len in axis", lambda p: ["sweep", _yaml(p, sweep={"task.seq_len": [3, 0]}),
                                        "--out", p / "out"],
     ["exp.yaml: sweep.task.seq_len: got 0; allowed: an integer >= 1"]),
    ("empty axis", lambda p: ["sweep", _yaml(p, sweep={"task.seq_len": []}), "--out", p / "out"],
     ["exp.yaml: sweep.task.seq_len: got []; allowed: a non-empty list", "this axis is empty"]),
    ("empty --sweep axis", lambda p: ["sweep", _yaml(p), "--out", p / "out",
                                      "--sweep", "train.lr="],
     ["--sweep: train.lr: got []; allowed: a non-empty list"]),
    ("grid above --max-runs", lambda p: ["sweep", _yaml(p), "--out", p / "out",
                                         "--max-runs", "5"],
     ["exp.yaml: sweep: got 8 runs (4 grid points x 2 repeats); allowed: at most 5 runs",
      "pass --yes"]),
    ("validate above --max-runs", lambda p: ["validate", _yaml(p), "--max-runs", "7"],
     ["exp.yaml: sweep: got 8 runs", "at most 7 runs", "--yes"]),
    ("unknown task", lambda p: ["sweep", _yaml(p, task={"name": "sort"}), "--out", p / "out"],
     ["exp.yaml: task.name: got 'sort'; allowed: one of recall, adding"]),
    ("unknown cell", lambda p: ["sweep", _yaml(p, model={"cell": "esn"}), "--out", p / "out"],
     ["exp.yaml: model.cell: got 'esn'; allowed: one of rnn, lstm, gru"]),
    ("unknown optimiser", lambda p: ["sweep", _yaml(p), "--out", p / "out",
                                     "--set", "train.optimizer=rmsprop"],
     ["--set: train.optimizer: got 'rmsprop'; allowed: one of sgd, momentum, adagrad, adam"]),
    ("threshold 0", lambda p: ["sweep", _yaml(p, train={"clip": {"threshold": 0}}),
                               "--out", p / "out"],
     ["exp.yaml: train.clip.threshold: got 0; allowed: a number > 0, or null"]),
    ("threshold 0 in axis", lambda p: ["sweep", _yaml(p), "--out", p / "out",
                                       "--sweep", "train.clip.threshold=1.0,0"],
     ["--sweep: train.clip.threshold: got 0; allowed: a number > 0, or null"]),
    ("wrong type in section", lambda p: ["validate", _yaml(p, task="recall")],
     ["exp.yaml: task: got 'recall'; allowed: a mapping with keys name"]),
    ("unknown top-level key", lambda p: ["validate", _yaml(p, sweeps={"train.lr": [1]})],
     ["exp.yaml: sweeps: got", "did you mean sweep?"]),
    ("binary file", lambda p: ["validate", _bytes(p, b"\xff\xfe\x00name: x")],
     ["exp.yaml: cannot read"]),
    ("output under a file", lambda p: ["sweep", _yaml(p), "--out", _file(p) / "sub"],
     ["cannot create results folder", "plain.txt/sub", "pass a writable --out"]),
    ("report on an empty folder", lambda p: ["report", _dir(p, "empty")],
     ["empty is empty; run `rnnlab sweep` to fill it"]),
    ("report on a foreign folder", lambda p: ["report", _dir(p, "photos", "a.jpg")],
     ["photos is not an rnnlab results folder (no manifest.json)"]),
    ("report on a file", lambda p: ["report", _file(p)],
     ["plain.txt is not a folder; pass a results folder made by `rnnlab sweep`"]),
    ("report on a folder without runs", lambda p: ["report", _manifest_only(p)],
     ["has no finished runs yet (no runs.parquet); run `rnnlab sweep` first"]),
    ("sweep into a foreign folder", lambda p: ["sweep", _yaml(p), "--out",
                                               _dir(p, "photos", "a.jpg")],
     ["photos is not empty and is not an rnnlab results folder", "'a.jpg'", "another --out"]),
]


def _bytes(p: Path, data: bytes) -> Path:
    (p / "exp.yaml").write_bytes(data)
    return p / "exp.yaml"


def _file(p: Path) -> Path:
    (p / "plain.txt").write_text("not a folder\n")
    return p / "plain.txt"


def _dir(p: Path, name: str, *files: str) -> Path:
    (p / name).mkdir()
    for f in files:
        (p / name / f).write_bytes(b"\x00")
    return p / name


def _manifest_only(p: Path) -> Path:
    (p / "res").mkdir()
    (p / "res" / "manifest.json").write_text(json.dumps({"name": "tiny"}))
    return p / "res"


def snapshot(folder: Path) -> dict:
    return {str(q.relative_to(folder)): (q.stat().st_size, q.stat().st_mtime_ns)
            for q in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("build, pieces", [c[1:] for c in BAD_INPUT],
                         ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, build, pieces):
    monkeypatch.chdir(tmp_path)
    args = build(tmp_path)
    before = snapshot(tmp_path)
    msg = one_line_error(invoke(*args))
    for piece in pieces:
        assert piece in msg, (piece, msg)
    assert snapshot(tmp_path) == before
    if args[0] == "report" and plot_args(tmp_path):      # plot reads folders the same way
        msg = one_line_error(invoke("plot", *args[1:]))
        assert str(args[1]) in msg and pieces[0] in msg, msg
        assert snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        msg = one_line_error(invoke("sweep", _yaml(tmp_path), "--out", locked / "out"))
        assert str(locked / "out") in msg and "writable --out" in msg
        msg = one_line_error(invoke("sweep", _yaml(tmp_path), "--out", locked))
        assert "not writable" in msg
    finally:
        locked.chmod(0o700)


def test_max_runs_and_yes(tmp_path):
    path = _yaml(tmp_path)
    res = ok(invoke("validate", path, "--max-runs", "7", "--yes"))
    assert "= 8 run(s)" in res.stdout
    ok(invoke("validate", path, "--max-runs", "8"))
    one_line_error(invoke("validate", path, "--max-runs", "7"))
    res = ok(invoke("sweep", path, "--out", tmp_path / "out", "--max-runs", "7", "--yes",
                    "--no-progress"))
    assert len(load_runs(tmp_path / "out")) == 8


# -------------------------------------------------------------------------- numeric faults


def test_diverging_runs_are_recorded_with_their_step_and_the_sweep_goes_on(tmp_path):
    """Identity activation, plain SGD, no clipping: a huge learning rate overflows the weights
    after the first update; a huge recurrent scale overflows the states at once."""
    path = write_yaml(tmp_path / "div.yaml", tiny_data(
        name="div", repeats=1,
        model={"activation": "identity", "hidden": 4},
        task={"name": "adding", "batch": 4, "eval_batch": 16, "seq_len": 10},
        train={"steps": 6, "log_every": 1, "optimizer": "sgd", "clip": {"mode": "none"}},
        sweep={"train.lr": [0.01, 1e30], "model.weight_scale": [1.0, 1e40]}))
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = ok(invoke("sweep", path, "--out", out, "--no-progress", "--format", "csv"))
    assert "3 diverged, 0 exploded, 0 failed" in " ".join(res.stderr.split())
    runs = load_runs(out).set_index(["train.lr", "model.weight_scale"])
    assert len(runs) == 4
    assert runs.loc[(0.01, 1.0), "status"] == "ok"
    assert pd.isna(runs.loc[(0.01, 1.0), "diverged_step"])
    expected_step = {(1e30, 1.0): 1, (0.01, 1e40): 0, (1e30, 1e40): 0}
    for key, step in expected_step.items():
        row = runs.loc[key]
        assert row["status"] == "diverged" and row["diverged_step"] == step, (key, row)
        assert pd.isna(row["final_loss"]) and not row["solved"]
    grad, metrics = load_grad_norms(out), load_metrics(out)
    for key, row in runs.iterrows():
        last = row["diverged_step"] if row["status"] == "diverged" else 6
        g = grad[grad["run_id"] == row["run_id"]]
        m = metrics[metrics["run_id"] == row["run_id"]]
        # norms and metrics kept for every step up to and including the one that diverged
        assert sorted(set(g["step"])) == list(range(last + 1)), key
        assert sorted(m["step"]) == list(range(last + 1)), key
        before = g[g["step"] < last]
        assert np.isfinite(before[["ds", "dWs", "dWx"]].to_numpy()).all(), key
        if row["status"] == "diverged":
            at = g[g["step"] == last]
            assert not np.isfinite(at["ds"].to_numpy()).all(), key
    summary = pd.read_csv(out / "summary.csv").set_index(["train.lr", "model.weight_scale"])
    assert (summary["diverged"] * summary["n"]).sum() == 3
    assert summary.loc[(0.01, 1.0), "diverged"] == 0
    ok(invoke("report", out))


def test_float32_underflow_gives_zero_norms_and_minus_inf_ratio(tmp_path):
    path = write_yaml(tmp_path / "uf.yaml", tiny_data(
        name="uf", model={"hidden": 4, "dtype": "float32"},
        task={"batch": 4, "eval_batch": 16, "seq_len": 100},
        train={"steps": 3, "log_every": 1},
        sweep={"model.weight_scale": [0.1, 1.0]}))
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok(invoke("sweep", path, "--out", out, "--no-progress", "--format", "csv"))
        report = ok(invoke("report", out, "--format", "json"))
        table = ok(invoke("report", out, "--columns", "grad_ratio"))
    runs = load_runs(out)
    assert set(runs["status"]) == {"ok"} and runs["diverged_step"].isna().all()
    grad = load_grad_norms(out).merge(runs[["run_id", "model.weight_scale"]], on="run_id")
    norms = grad[["ds", "dWs", "dWx"]].to_numpy()
    assert np.isfinite(norms).all() and (norms >= 0).all()          # no NaN, no inf
    small = grad[grad["model.weight_scale"] == 0.1]
    assert (small["ds"] == 0).sum() > len(small) // 2                # underflowed to exact 0
    summary = pd.read_csv(out / "summary.csv").set_index("model.weight_scale")
    assert summary.loc[0.1, "grad_ratio"] == -np.inf                 # log10(0 / ds_T)
    assert np.isfinite(summary.loc[1.0, "grad_ratio"])
    for col in ("loss", "decay", "horizon"):
        assert np.isfinite(summary[col]).all(), col
    records = json.loads(report.stdout)
    assert records[0]["grad_ratio"] == "-inf"
    assert "-inf" in table.stdout
