"""The terminal view of the summary: columns that fit 80 characters, intervals as one cell,
``--wide`` and ``--columns``, every column kept in csv and json."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from conftest import invoke, ok
from rich.console import Console

from rnnlab.cli import view_table
from rnnlab.report.tables import short, summary_view

NEW = ["n", "failed", "solved", "solved_lo", "solved_hi", "diverged", "exploded", "loss",
       "loss_lo", "loss_hi", "acc", "acc_lo", "acc_hi", "clip_rate", "grad_ratio", "decay",
       "decay_sd", "bound", "horizon", "horizon_censored"]
OLD = ["n", "solved", "diverged", "failed", "loss", "loss_sd", "acc", "acc_sd", "clip_rate",
       "grad_ratio", "decay", "decay_sd", "bound", "horizon"]


def summary(columns, rows=6, seed=0):
    """A summary table with three swept keys and long, awkward numbers in every column."""
    rng = np.random.default_rng(seed)
    data = {"task.seq_len": [5, 10, 20, 50, 100, 200][:rows],
            "model.weight_scale": np.linspace(0.5, 2.0, rows),
            "train.clip.threshold": [None, 1.0] * (rows // 2)}
    for c in columns:
        if c in ("n", "failed"):
            data[c] = np.full(rows, 5 if c == "n" else 0, dtype=np.int64)
        elif c in ("diverged", "exploded", "horizon_censored"):
            data[c] = np.zeros(rows)
        else:
            data[c] = rng.random(rows) - (0.5 if c in ("decay", "bound", "grad_ratio") else 0)
    return pd.DataFrame(data)


def render(view, width=80) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(view_table(view, "title"), crop=False, width=max(view.width, width))
    return console.file.getvalue()


@pytest.mark.parametrize("columns", [NEW, OLD], ids=["intervals", "sd"])
def test_default_view_fits_80_columns_and_cuts_no_cell(columns):
    table = summary(columns)
    view = summary_view(table, width=80)
    text = render(view)
    assert view.width <= 80
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    names = [c.name for c in view.columns]
    assert names[:3] == ["seq_len", "weight_scale", "threshold"]
    assert "solved" in names and "decay" in names
    assert set(view.hidden) and not set(view.hidden) & set(names)
    assert "5 run(s) per row" in view.caption()           # a constant n goes to the caption


def test_interval_is_one_cell_and_censored_horizon_a_lower_bound():
    table = summary(NEW, rows=2)
    table["solved"], table["solved_lo"], table["solved_hi"] = [0.8, 0.0], [0.4901, 0.0], [
        0.9434, 0.6576]
    table["horizon"], table["horizon_censored"] = [4.0, 9.0], [1.0, 0.0]
    view = summary_view(table, wide=True)
    cols = {c.name: c.cells for c in view.columns}
    assert cols["solved"] == ["0.8 [0.49,0.95]", "0 [0,0.66]"]          # bounds rounded outwards
    assert cols["horizon"] == [">= 4", "9"]
    assert "solved_lo" not in cols and "horizon_censored" not in cols
    assert short(1.234e-5) == "1.2e-5" and short(float("nan")) == "-" and short(-np.inf) == "-inf"
    assert (short(0.9995, -1), short(1.0, 1)) == ("0.99", "1")          # outward, still [lo, hi]
    assert (short(0.34, -1), short(0.34, 1), short(0.341, 1)) == ("0.34", "0.34", "0.35")
    assert (short(-0.0123, -1), short(-0.0123, 1), short(0.0, -1)) == ("-0.013", "-0.012", "0")


def test_a_nonzero_failure_column_is_shown_first():
    table = summary(NEW)
    table.loc[2, "diverged"] = 0.2
    names = [c.name for c in summary_view(table).columns]
    assert "diverged" in names and "exploded" not in names
    assert summary_view(table).width <= 80


def test_wide_shows_every_column_and_columns_exactly_the_named_ones():
    table = summary(NEW)
    wide = [c.name for c in summary_view(table, wide=True).columns]
    expected = ["n", "failed", "solved", "diverged", "exploded", "loss", "acc", "clip_rate",
                "grad_ratio", "decay", "decay_sd", "bound", "horizon"]
    assert wide[3:] == expected
    picked = summary_view(table, columns=["loss", "acc_lo"])
    assert [c.name for c in picked.columns][3:] == ["loss", "acc_lo"]
    assert picked.columns[3].cells[0].count("[") == 1 and "[" not in picked.columns[4].cells[0]


def test_cli_report_views_and_machine_formats(tiny_experiment, tmp_path):
    out = tmp_path / "out"
    ok(invoke("sweep", tiny_experiment(), "--out", out, "--no-progress"))
    narrow = ok(invoke("report", out)).stdout
    assert max(len(line) for line in narrow.splitlines()) <= 80 and "…" not in narrow
    assert "not shown:" in narrow
    wide = ok(invoke("report", out, "--wide")).stdout
    for name in ("loss", "acc", "clip_rate", "grad_ratio", "decay_sd", "bound", "horizon"):
        assert f" {name} " in wide, name
    assert "not shown" not in wide and "…" not in wide
    some = ok(invoke("report", out, "--columns", "loss,acc")).stdout
    assert " loss " in some and " acc " in some and " decay " not in some
    csv = pd.read_csv(io.StringIO(ok(invoke("report", out, "--format", "csv")).stdout))
    records = json.loads(ok(invoke("report", out, "--format", "json")).stdout)
    for columns in (list(csv.columns), list(records[0])):
        assert {"loss_lo", "acc_hi", "solved_lo", "decay_sd", "horizon_censored"} <= set(columns)


def test_unknown_column_is_one_line_exit_2(tiny_experiment, tmp_path):
    out = tmp_path / "out"
    ok(invoke("sweep", tiny_experiment(), "--out", out, "--no-progress"))
    res = invoke("report", out, "--columns", "loss,nope")
    assert res.exit_code == 2
    assert "'nope'" in res.stderr and "allowed:" in res.stderr and "Traceback" not in res.stderr
    res = invoke("sweep", tiny_experiment(), "--out", tmp_path / "new", "--columns", "nope")
    assert res.exit_code == 2 and "'nope'" in res.stderr
    assert not (tmp_path / "new").exists()                # refused before anything is written
    # a statistic of other experiments (Lyapunov's) is not one of this summary's, and its list
    # names this summary's columns only
    res = invoke("sweep", tiny_experiment(), "--out", tmp_path / "new", "--columns", "lambda1")
    assert res.exit_code == 2 and "'lambda1'" in res.stderr and "lambda_sum" not in res.stderr
    assert "solved_lo" in res.stderr and not (tmp_path / "new").exists()


def test_statistics_after_the_known_ones_are_not_taken_for_keys():
    table = summary(NEW)
    table["lambda1"] = [-0.2] * len(table)
    table["some_new_stat"] = [1.0] * len(table)
    view = summary_view(table, wide=True)
    names = [c.name for c in view.columns]
    assert names[:4] == ["seq_len", "weight_scale", "threshold", "n"]
    assert names[-2:] == ["lambda1", "some_new_stat"]
