"""The command line, driven in-process through typer's CliRunner on ``rnnlab.cli.app``.

Every test runs in a temporary working directory (so the default ``results/NAME`` folder, if
anything were to create it, lands there and can be checked for) and uses the tiny experiment of
``conftest.py``.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import invoke, ok

import rnnlab.run.train
from rnnlab.cli import app
from rnnlab.engine.gradcheck import check
from rnnlab.results.readers import load_manifest, load_runs

EXPECTED_FILES = {"manifest.json", "runs.parquet", "grad_norms", "metrics.parquet", "summary.csv",
                  "summary.md"}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def snapshot(folder):
    """Names, sizes and modification times of everything under ``folder``."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def table_rows(text: str) -> list[list[str]]:
    """The body cells of the rich table(s) in ``text`` (lines between vertical box bars)."""
    return [[c.strip() for c in line.strip().strip("│").split("│")]
            for line in text.splitlines() if line.strip().startswith("│")]


# ------------------------------------------------------------------------------------ help


def command_names():
    return [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]


def test_every_command_has_help_text_and_help_exits_0():
    names = command_names()
    assert {"sweep", "validate", "report", "run", "gradcheck"} <= set(names)
    for cmd, name in zip(app.registered_commands, names, strict=True):
        doc = cmd.help or cmd.callback.__doc__
        assert doc and doc.strip(), f"command {name} has no help text"
        res = ok(invoke(name, "--help"))
        first = doc.strip().splitlines()[0]
        # rich may wrap the help text: compare words, not lines
        assert " ".join(first.split()[:4]) in " ".join(res.stdout.split()), name
    root = ok(invoke("--help"))
    for name in names:
        assert name in root.stdout


# ------------------------------------------------------------------------------- validate


def grid_line(result) -> str:
    m = re.search(r"(\d+) grid point\(s\) x (\d+) repeat\(s\) = (\d+) run\(s\)", result.stdout)
    assert m, result.stdout
    return m.group(0)


def test_validate_prints_grid_size(tiny_experiment):
    path = tiny_experiment()
    res = ok(invoke("validate", path))
    assert grid_line(res) == "4 grid point(s) x 2 repeat(s) = 8 run(s)"
    assert "in 2 batch(es)" in res.stdout
    assert "task.seq_len (2)" in res.stdout and "model.weight_scale (2)" in res.stdout
    assert not Path("results").exists()


def test_validate_checks_every_profile(tiny_experiment):
    path = tiny_experiment(profiles={"quick": {"repeats": 1}, "slow": {"repets": 1}})
    for args in ([], ["--profile", "quick"]):
        res = invoke("validate", path, *args)
        assert res.exit_code == 2 and res.stdout == ""
        assert res.stderr.startswith(f"rnnlab: error: {path}: profiles.slow.repets: got 1; "
                                     "allowed: a key of the top level (")
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    path = tiny_experiment(profiles={"quick": {"repeats": 1}, "slow": {"repeats": 3}})
    res = ok(invoke("validate", path))
    assert grid_line(res) == "4 grid point(s) x 2 repeat(s) = 8 run(s)"
    assert f"{path}: profiles ok: quick (4 run(s)), slow (12 run(s))" in res.stdout


@pytest.mark.parametrize("args, expected", [
    ([], "4 grid point(s) x 2 repeat(s) = 8 run(s)"),
    (["--sweep", "task.seq_len=3,4,5"], "6 grid point(s) x 2 repeat(s) = 12 run(s)"),
    (["--sweep", "train.lr=0.1,0.01"], "8 grid point(s) x 2 repeat(s) = 16 run(s)"),
    (["--set", "task.seq_len=4"], "2 grid point(s) x 2 repeat(s) = 4 run(s)"),
    (["--set", "repeats=3"], "4 grid point(s) x 3 repeat(s) = 12 run(s)"),
    (["--set", "task.seq_len=4", "--set", "model.weight_scale=1.0"],
     "1 grid point(s) x 2 repeat(s) = 2 run(s)"),
])
def test_set_and_sweep_overrides_change_the_grid(tiny_experiment, args, expected):
    res = ok(invoke("validate", tiny_experiment(), *args))
    assert grid_line(res) == expected


def test_overrides_reach_the_runs(tiny_experiment, tmp_path):
    out = tmp_path / "out"
    ok(invoke("sweep", tiny_experiment(), "--out", out, "--set", "task.seq_len=4",
              "--sweep", "model.weight_scale=0.7", "--no-progress"))
    runs = load_runs(out)
    assert len(runs) == 2
    assert set(runs["seq_len"]) == {4}
    assert set(runs["model.weight_scale"]) == {0.7}
    assert "task.seq_len" not in runs.columns          # pinned by --set: no longer swept
    assert set(runs["seed"]) == {0, 1}


# --------------------------------------------------------------------------------- sweep


def test_sweep_end_to_end_writes_the_folder_and_prints_the_table(tiny_experiment, tmp_path):
    out = tmp_path / "out"
    res = ok(invoke("sweep", tiny_experiment(), "--out", out))
    assert EXPECTED_FILES <= {p.name for p in out.iterdir()}
    assert not (out / "metrics").exists()                       # compacted by finalize
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == "tiny" and manifest["experiment"]["runs"] == 8

    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 8 and set(runs["status"]) == {"ok"}
    grad = pd.read_parquet(out / "grad_norms")                  # the dataset folder
    # steps 0, 3, 6 recorded; T time steps each: 4 runs with T=3 and 4 with T=5
    assert len(grad) == 3 * (4 * 3 + 4 * 5)
    assert set(grad["step"]) == {0, 3, 6}
    assert set(grad["run_id"]) == set(runs["run_id"])
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert len(metrics) == 8 * 3

    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns[:2]) == ["task.seq_len", "model.weight_scale"]
    assert len(summary) == 4 and (summary["n"] == 2).all()
    md = (out / "summary.md").read_text()
    assert md.count("\n") == 2 + 4

    # the table on stdout holds the numbers of summary.csv, row by row
    rows = table_rows(res.stdout)
    assert len(rows) == 4
    csv_rows = [line.split(",") for line in (out / "summary.csv").read_text().splitlines()]
    header, body = csv_rows[0], csv_rows[1:]
    for row, cells in zip(body, rows, strict=True):
        want = dict(zip(header, row, strict=True))
        assert f"{want['solved']} [" in " ".join(cells)     # the value with its interval
        for col in ("decay", "bound"):
            assert want[col] in cells, (col, want[col], cells)
        censored = want["horizon_censored"] not in ("", "0")
        assert (">= " * censored + want["horizon"]) in cells, (want, cells)
    assert max(len(line) for line in res.stdout.splitlines()) <= 80    # fits a terminal
    assert "8 run(s) now, 0 already done" in " ".join(res.stderr.split())


def test_sweep_again_resumes_and_recomputes_nothing(tiny_experiment, tmp_path, monkeypatch):
    out = tmp_path / "out"
    path = tiny_experiment()
    ok(invoke("sweep", path, "--out", out, "--no-progress"))
    before = {p: s for p, s in snapshot(out).items() if p.startswith("grad_norms")}

    def boom(specs, progress=None):
        raise AssertionError("a finished run was recomputed")
    monkeypatch.setattr(rnnlab.run.train, "train_batch", boom)
    res = ok(invoke("sweep", path, "--out", out, "--no-progress"))
    assert "0 run(s) now, 8 already done" in " ".join(res.stderr.split())
    assert {p: s for p, s in snapshot(out).items() if p.startswith("grad_norms")} == before


@pytest.mark.parametrize("fmt", ["csv", "markdown", "json"])
def test_sweep_machine_formats_parse(tiny_experiment, tmp_path, fmt):
    out = tmp_path / "out"
    res = ok(invoke("sweep", tiny_experiment(), "--out", out, "--format", fmt))
    csv_text = (out / "summary.csv").read_text()
    want = pd.read_csv(io.StringIO(csv_text))
    if fmt == "csv":
        assert res.stdout == csv_text
        pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(res.stdout)), want)
    elif fmt == "markdown":
        assert res.stdout == (out / "summary.md").read_text()
        lines = res.stdout.splitlines()
        cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
        assert cells[0] == list(want.columns)
        assert all(re.fullmatch(r"-+:?", c) for c in cells[1])
        assert len(cells) == 2 + len(want)
        for got, (_, row) in zip(cells[2:], want.iterrows(), strict=True):
            assert float(got[list(want.columns).index("loss")]) == row["loss"]
    else:
        records = json.loads(res.stdout)
        assert len(records) == len(want)
        for rec, (_, row) in zip(records, want.iterrows(), strict=True):
            assert list(rec) == list(want.columns)
            for col in want.columns:
                if pd.isna(row[col]):
                    assert rec[col] is None
                else:
                    assert rec[col] == row[col], col
    assert "━" not in res.stdout and "│" not in res.stdout       # no table, no progress bar


def test_report_reprints_the_summary(tiny_experiment, tmp_path):
    out = tmp_path / "out"
    sweep = ok(invoke("sweep", tiny_experiment(), "--out", out, "--no-progress"))
    res = ok(invoke("report", out, "--format", "csv"))
    assert res.stdout == (out / "summary.csv").read_text()
    table = ok(invoke("report", out))
    assert table_rows(table.stdout) == table_rows(sweep.stdout)
    grouped = ok(invoke("report", out, "--by", "task.seq_len", "--format", "csv"))
    g = pd.read_csv(io.StringIO(grouped.stdout))
    assert list(g["task.seq_len"]) == [3, 5] and list(g["n"]) == [4, 4]


def test_dry_run_lists_runs_with_done_flags_and_writes_nothing(tiny_experiment, tmp_path):
    out = tmp_path / "out"
    path = tiny_experiment()
    res = ok(invoke("sweep", path, "--out", out, "--dry-run", "--format", "csv"))
    assert not out.exists()
    listed = pd.read_csv(io.StringIO(res.stdout))
    assert list(listed.columns) == ["run_id", "task.seq_len", "model.weight_scale", "seed", "done"]
    assert len(listed) == 8 and not listed["done"].any()

    ok(invoke("sweep", path, "--out", out, "--no-progress"))
    before = snapshot(out)
    res = ok(invoke("sweep", path, "--out", out, "--dry-run", "--format", "csv",
                    "--sweep", "task.seq_len=3,4"))
    listed = pd.read_csv(io.StringIO(res.stdout))
    assert len(listed) == 8
    assert listed["done"].tolist() == (listed["task.seq_len"] == 3).tolist()
    table = ok(invoke("sweep", path, "--out", out, "--dry-run"))
    assert [r[-1] for r in table_rows(table.stdout)] == ["true"] * 8
    assert snapshot(out) == before
    assert not (tmp_path / "results").exists()


# ---------------------------------------------------------------------------- bad input


def _unknown_key(tmp_path, make):
    return ["sweep", make(model={"hiden": 8}), "--out", tmp_path / "out"]


def _unknown_set_key(tmp_path, make):
    return ["sweep", make(), "--out", tmp_path / "out", "--set", "model.hiden=4"]


def _wrong_type(tmp_path, make):
    return ["sweep", make(train={"lr": "fast"}), "--out", tmp_path / "out"]


def _wrong_type_set(tmp_path, make):
    return ["sweep", make(), "--out", tmp_path / "out", "--set", "model.hidden=abc"]


def _bad_sweep_value(tmp_path, make):
    return ["sweep", make(), "--out", tmp_path / "out", "--sweep", "task.seq_len=3,x"]


def _malformed_yaml(tmp_path, make):
    path = tmp_path / "bad.yaml"
    path.write_text("name: tiny\n  model: [\n")
    return ["sweep", path, "--out", tmp_path / "out"]


def _missing_file(tmp_path, make):
    return ["sweep", tmp_path / "missing.yaml", "--out", tmp_path / "out"]


def _missing_file_validate(tmp_path, make):
    return ["validate", tmp_path / "missing.yaml"]


def _output_is_a_file(tmp_path, make):
    (tmp_path / "out").write_text("not a folder\n")
    return ["sweep", make(), "--out", tmp_path / "out"]


def _folder_of_another_experiment(tmp_path, make):
    ok(invoke("sweep", make("first.yaml"), "--out", tmp_path / "out", "--no-progress"))
    return ["sweep", make("second.yaml", name="other", model={"hidden": 4}), "--out",
            tmp_path / "out"]


def _changed_experiment(tmp_path, make):
    ok(invoke("sweep", make(), "--out", tmp_path / "out", "--no-progress"))
    return ["sweep", make(), "--out", tmp_path / "out", "--set", "train.steps=5"]


def _report_missing_folder(tmp_path, make):
    return ["report", tmp_path / "out"]


def _report_bad_group(tmp_path, make):
    ok(invoke("sweep", make(), "--out", tmp_path / "out", "--no-progress"))
    return ["report", tmp_path / "out", "--by", "model.nope"]


def _run_unknown_key(tmp_path, make):
    return ["run", "--set", "model.hiden=4"]


def _run_missing_file(tmp_path, make):
    return ["run", "--file", tmp_path / "missing.yaml"]


def _run_malformed_file(tmp_path, make):
    path = tmp_path / "bad.yaml"
    path.write_text("name: tiny\n  model: [\n")
    return ["run", "--file", path]


def _run_bad_lags(tmp_path, make):
    return ["run", "--lags", "1.5", "--set", "train.steps=100000"]   # refused before training


def _run_negative_lag(tmp_path, make):
    return ["run", "--lags", "0,-1"]


def _run_no_lags(tmp_path, make):
    return ["run", "--lags", " , "]


def _report_unlogged_step(tmp_path, make):
    ok(invoke("sweep", make(), "--out", tmp_path / "out", "--no-progress"))
    return ["report", tmp_path / "out", "--step", "99999"]


def _compare_unlogged_step(tmp_path, make):
    ok(invoke("sweep", make(), "--out", tmp_path / "out", "--no-progress"))
    return ["compare", tmp_path / "out", tmp_path / "out", "--step", "99999"]


def _limits_bad_budgets(tmp_path, make):
    ok(invoke("sweep", make(), "--out", tmp_path / "out", "--no-progress"))
    return ["limits", tmp_path / "out", "--budgets", "10,ten"]


BAD_INPUTS = [_unknown_key, _unknown_set_key, _wrong_type, _wrong_type_set, _bad_sweep_value,
              _malformed_yaml, _missing_file, _missing_file_validate, _output_is_a_file,
              _folder_of_another_experiment, _changed_experiment, _report_missing_folder,
              _report_bad_group, _run_unknown_key, _run_missing_file, _run_malformed_file,
              _run_bad_lags, _run_negative_lag, _run_no_lags, _limits_bad_budgets,
              _report_unlogged_step, _compare_unlogged_step]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[f.__name__.strip("_") for f in BAD_INPUTS])
def test_bad_input_is_one_line_on_stderr_and_exit_2(case, tiny_experiment, tmp_path):
    args = case(tmp_path, tiny_experiment)
    out = tmp_path / "out"
    before = snapshot(out) if out.is_dir() else (out.read_bytes() if out.exists() else None)
    res = invoke(*args)
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr, res.exception)
    assert res.stderr.endswith("\n") and res.stderr.count("\n") == 1, repr(res.stderr)
    assert res.stderr.startswith("rnnlab: error: ")
    assert "Traceback" not in res.stdout + res.stderr
    assert res.stdout == ""
    # nothing created or changed
    after = snapshot(out) if out.is_dir() else (out.read_bytes() if out.exists() else None)
    assert after == before
    assert not (tmp_path / "results").exists()


def test_folder_of_another_experiment_is_overwritten_with_fresh(tiny_experiment, tmp_path):
    out = tmp_path / "out"
    ok(invoke("sweep", tiny_experiment("first.yaml"), "--out", out, "--no-progress"))
    other = tiny_experiment("second.yaml", name="other", sweep={"task.seq_len": [4]})
    ok(invoke("sweep", other, "--out", out, "--fresh", "--no-progress"))
    runs = load_runs(out)
    assert len(runs) == 2 and set(runs["seq_len"]) == {4}
    assert json.loads((out / "manifest.json").read_text())["name"] == "other"


def test_failed_runs_exit_1_and_are_reported(tiny_experiment, tmp_path, monkeypatch):
    real = rnnlab.run.train.train_batch

    def flaky(specs, progress=None):
        if specs[0].config.task.seq_len == 5:
            raise RuntimeError("boom")
        return real(specs, progress)
    monkeypatch.setattr(rnnlab.run.train, "train_batch", flaky)
    out = tmp_path / "out"
    res = invoke("sweep", tiny_experiment(), "--out", out, "--no-progress", "--format", "csv")
    assert res.exit_code == 1
    assert "4 failed" in res.stderr and "RuntimeError: boom" in res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    summary = pd.read_csv(io.StringIO(res.stdout))
    assert summary.set_index("task.seq_len")["failed"].groupby(level=0).sum().to_dict() == {
        3: 0, 5: 4}


def test_interrupted_sweep_exits_130_and_keeps_the_finished_batch(tiny_experiment, tmp_path,
                                                                   monkeypatch):
    real = rnnlab.run.train.train_batch
    calls = []

    def interrupt_second(specs, progress=None):
        calls.append(len(specs))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(specs, progress)
    monkeypatch.setattr(rnnlab.run.train, "train_batch", interrupt_second)
    out = tmp_path / "out"
    path = tiny_experiment()
    res = invoke("sweep", path, "--out", out, "--no-progress")
    assert res.exit_code == 130
    assert "interrupted" in res.stderr and "Traceback" not in res.stderr
    assert len(load_runs(out)) == 4
    monkeypatch.setattr(rnnlab.run.train, "train_batch", real)
    res = ok(invoke("sweep", path, "--out", out, "--no-progress"))
    assert "4 run(s) now, 4 already done" in " ".join(res.stderr.split())


def test_ctrl_c_before_a_sweep_trains_is_one_line_and_exit_130(tiny_experiment, tmp_path,
                                                               monkeypatch):
    """A Ctrl-C while the experiment is read (before anything is written) ends the command with
    one line and exit status 130, as one during training does."""
    import rnnlab.cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(rnnlab.cli, "load", interrupted)
    res = invoke("sweep", tiny_experiment(), "--out", tmp_path / "out", "--workers", "2")
    assert res.exit_code == 130 and res.stderr == "rnnlab: interrupted\n", res.stderr
    assert res.stdout == "" and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------ gradcheck, run


def test_gradcheck_default_passes_and_lists_every_param():
    res = ok(invoke("gradcheck"))
    rows = table_rows(res.stdout)
    expected = set(check(seq_len=6, hidden=4, batch=3).errors)
    assert expected == {"Wx", "Ws", "Wy", "b", "by"}
    assert {r[0] for r in rows} == expected
    assert all(r[-1] == "yes" for r in rows)


def test_gradcheck_lstm_passes():
    res = ok(invoke("gradcheck", "--cell", "lstm", "--seq-len", "4", "--loss-at", "all"))
    assert {r[0] for r in table_rows(res.stdout)} == {"Wx", "Ws", "Wy", "b", "by"}


def test_gradcheck_gru_passes_and_checks_the_reset_bias():
    res = ok(invoke("gradcheck", "--cell", "gru", "--seq-len", "4", "--loss-at", "all",
                    "--truncate", "2", "--clip-step", "0.05"))
    rows = table_rows(res.stdout)
    assert {r[0] for r in rows} == {"Wx", "Ws", "Wy", "b", "by", "bn"}
    assert all(r[-1] == "yes" for r in rows)


def test_run_prints_metrics():
    res = ok(invoke("run", "--set", "task.seq_len=3", "--set", "train.steps=4",
                    "--set", "model.hidden=4"))
    text = res.stdout
    for word in ("status", "final_loss", "accuracy", "rho_start", "rho_end", "clip_rate",
                 "lag 0", "lag 2"):
        assert word in text, word
    rows = table_rows(text)
    assert rows[0][0] == "ok"
    assert [r[0] for r in rows[1:]] == ["0", "4"]        # first and last record of ds by lag
    assert not list(Path(".").iterdir())   # writes nothing


def test_run_says_which_lags_it_left_out():
    res = ok(invoke("run", "--set", "task.seq_len=3", "--set", "train.steps=2",
                    "--set", "model.hidden=4", "--lags", "0,2,7,9"))
    assert "lag 0" in res.stdout and "lag 2" in res.stdout and "lag 7" not in res.stdout
    assert "rnnlab: --lags: left out 7, 9: beyond the longest lag T - 1 = 2" in res.stderr


def test_run_from_file_uses_its_base(tiny_experiment):
    path = tiny_experiment(train={"lr": "1e-3"})          # YAML text, as a user would write it
    path.write_text(path.read_text().replace("'1e-3'", "1e-3"))
    res = ok(invoke("run", "--file", path, "--set", "task.seq_len=3", "--set", "train.steps=2"))
    assert table_rows(res.stdout)[0][0] == "ok"


def test_run_from_file_leaves_its_claims_with_its_sweep(tiny_experiment):
    """The claims read the sweep's table (here its swept seq_len), which one run does not have."""
    path = tiny_experiment(claims=[{"says": "s", "where": "seq_len <= 3", "expect": "n > 0"}])
    res = ok(invoke("run", "--file", path, "--set", "train.steps=2"))
    assert table_rows(res.stdout)[0][0] == "ok"


def test_an_internal_error_is_one_line_with_status_1(monkeypatch, tiny_experiment, tmp_path):
    """A bug that escapes a command (here a ZeroDivisionError raised by the sweep) ends as one
    line naming the exception and where it was raised, exit status 1, no traceback; with
    RNNLAB_TRACEBACK set it propagates with its traceback."""
    import rnnlab.run.sweep

    def broken(*args, **kwargs):
        return 1 / 0
    monkeypatch.setattr(rnnlab.run.sweep, "run_sweep", broken)
    monkeypatch.delenv("RNNLAB_TRACEBACK", raising=False)
    file = tiny_experiment()
    res = invoke("sweep", file, "--out", tmp_path / "out")
    assert res.exit_code == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert lines[0].startswith("rnnlab: error: internal error: ZeroDivisionError: division by ")
    assert "test_cli.py:" in lines[0] and "RNNLAB_TRACEBACK=1" in lines[0]
    monkeypatch.setenv("RNNLAB_TRACEBACK", "1")
    res = invoke("sweep", file, "--out", tmp_path / "again")
    assert isinstance(res.exception, ZeroDivisionError)


def test_help_keeps_the_extras_names():
    """Square brackets are rich markup in help texts: the extras' names must survive it."""
    for command, extras in (("sweep", ("[fast]", "[dask]")), ("run", ("[fast]",))):
        res = ok(invoke(command, "--help"))
        for extra in extras:
            assert extra in res.stdout, (command, extra)


@pytest.mark.parametrize("args", [
    ["sweep"], ["sweep", "x.yaml", "--bogus"], ["sweep", "x.yaml", "--workers", "0"],
    ["report", "x", "--format", "xml"], ["nosuchcommand"], ["plot", "x", "--kind", "nope"],
])
def test_usage_errors_are_one_line_and_exit_2(args):
    """click's own usage errors (missing argument, unknown option or command, a value outside
    an option's range or choices) read like every other mistake: one line, exit status 2."""
    res = invoke(*args)
    assert res.exit_code == 2, (res.stdout, res.stderr)
    assert res.stderr.startswith("rnnlab: error: rnnlab") and res.stderr.count("\n") == 1
    assert "--help" in res.stderr and res.stdout == "" and "Traceback" not in res.stderr


def test_rnnlab_alone_prints_the_help():
    res = invoke()
    assert "Usage" in res.stdout + res.stderr and "sweep" in res.stdout + res.stderr


def test_no_progress_bar_when_stderr_is_not_a_terminal(tiny_experiment, tmp_path):
    """Redirected, stderr holds the closing line only: no bar cut to 80 columns, no blank line."""
    res = ok(invoke("sweep", tiny_experiment(), "--out", tmp_path / "out"))
    assert "━" not in res.stderr and res.stderr.startswith("rnnlab: ")
    res = ok(invoke("run", "--set", "task.seq_len=3", "--set", "train.steps=2",
                    "--set", "model.hidden=4"))
    assert res.stderr == ""


def test_a_set_that_pins_a_claims_column_is_one_note_not_an_error(tmp_path):
    from conftest import tiny_data, write_yaml
    path = write_yaml(tmp_path / "c.yaml", tiny_data(
        claims=[{"says": "s", "where": "seq_len <= 3", "expect": "solved >= 0"}]))
    out = tmp_path / "out"
    res = ok(invoke("sweep", path, "--out", out, "--set", "task.seq_len=4", "--no-progress"))
    notes = [ln for ln in res.stderr.splitlines() if "note: --set/--sweep" in ln]
    assert len(notes) == 1 and "claims[0] not checked" in notes[0]
    assert load_manifest(out)["experiment"]["claims"] == []


def test_report_by_fewer_keys_says_what_it_pools(tiny_experiment, tmp_path):
    """Grouping by some swept keys pools the runs of the others: one note names them; grouping
    by all of them (or by nothing) says nothing."""
    out = tmp_path / "out"
    ok(invoke("sweep", tiny_experiment(), "--out", out, "--no-progress"))
    res = ok(invoke("report", out, "--by", "task.seq_len"))
    assert res.stderr.count("\n") == 1 and "--by pools the runs of every model.weight_scale" \
        in res.stderr
    assert "note" not in ok(invoke("report", out)).stderr
    both = ok(invoke("report", out, "--by", "seq_len,model.weight_scale"))
    assert "note" not in both.stderr
