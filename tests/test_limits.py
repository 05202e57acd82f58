"""The limit map (rnnlab.analysis.limits): budgets, solved within a budget, the limit estimate on
synthetic data with a known answer, claims on its tables, the command and the figures."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import invoke, ok, tiny_exp

from rnnlab.analysis.limits import (
    BUDGET_COLUMNS,
    LIMIT_COLUMNS,
    budget_table,
    crossing,
    default_budgets,
    estimate_limit,
    limit_table,
    limits_of,
    pool_adjacent_violators,
)
from rnnlab.errors import UserError
from rnnlab.experiment.check import check_folder, claims_table
from rnnlab.experiment.schema import Claim
from rnnlab.results.readers import load_runs
from rnnlab.run.sweep import run_sweep

GRID = np.array([2, 4, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 70, 100.0])


def test_default_budgets_halve_down_to_log_every():
    assert default_budgets(8000, 50) == [250, 500, 1000, 2000, 4000, 8000]
    assert default_budgets(3200, 50) == [100, 200, 400, 800, 1600, 3200]
    assert default_budgets(150, 50) == [50, 150]            # 75 rounds down to 50, then stops
    assert default_budgets(40, 50) == [40]
    with pytest.raises(ValueError):
        default_budgets(0, 10)


def test_pool_adjacent_violators_gives_the_closest_non_increasing_sequence():
    np.testing.assert_allclose(pool_adjacent_violators(np.array([1, 0.2, 0.6, 0.0]),
                                                       np.ones(4)), [1, 0.4, 0.4, 0.0])
    np.testing.assert_allclose(pool_adjacent_violators(np.array([0.2, 0.6]), np.array([3, 1])),
                               [0.3, 0.3])                  # weighted by the runs
    p = np.array([0.9, 0.5, 0.5, 0.1])
    np.testing.assert_array_equal(pool_adjacent_violators(p, np.ones(4)), p)


def test_crossing_interpolates_in_log_T_and_says_when_it_is_censored():
    T = np.array([4.0, 16.0])
    assert crossing(T, np.array([1.0, 0.0]))[0] == pytest.approx(8.0)    # halfway in log T
    assert crossing(T, np.array([0.75, 0.25])) == (pytest.approx(8.0), "none")
    assert crossing(T, np.array([1.0, 0.5])) == (16.0, "above")
    assert crossing(T, np.array([0.4, 0.0])) == (4.0, "below")


def test_the_limit_of_a_known_curve_is_found():
    """P(solved | T) = 1 / (1 + (T / T0)^4): the limit is T0. With many runs per point the
    estimate sits on it and the interval is narrow."""
    for T0 in (7.0, 11.0, 33.0):
        p = 1 / (1 + (GRID / T0) ** 4)
        n = np.full(len(GRID), 100000)
        est = estimate_limit(GRID, np.rint(p * n), n)
        assert est["censored"] == "none"
        # linear interpolation in log T of a logistic in log T: exact at the grid, close between
        assert est["limit"] == pytest.approx(T0, rel=0.03)
        assert est["limit_lo"] <= T0 <= est["limit_hi"]
        assert est["limit_hi"] / est["limit_lo"] < 1.05


def test_the_interval_covers_the_true_limit_at_ten_seeds():
    """Coverage of [limit_lo, limit_hi] over 400 simulated maps of 10 seeds per T: at least 90 %
    for steep and shallow curves (the pointwise Wilson bands make it conservative)."""
    rng = np.random.default_rng(7)
    for T0, slope in ((11.0, 4.0), (11.0, 8.0), (25.0, 3.0)):
        p = 1 / (1 + (GRID / T0) ** slope)
        n = np.full(len(GRID), 10)
        hits = [(lambda e: e["limit_lo"] <= T0 <= e["limit_hi"])(
            estimate_limit(GRID, rng.binomial(10, p), n)) for _ in range(400)]
        assert np.mean(hits) >= 0.9, (T0, slope, np.mean(hits))


def test_censored_limits():
    n = np.full(3, 10)
    T = np.array([5.0, 10.0, 20.0])
    above = estimate_limit(T, np.array([10, 9, 8]), n)
    assert (above["limit"], above["censored"], above["limit_hi"]) == (20.0, "above", math.inf)
    below = estimate_limit(T, np.array([2, 0, 0]), n)
    assert (below["limit"], below["censored"], below["limit_lo"]) == (5.0, "below", 0.0)
    assert math.isnan(below["largest_solved"])
    with pytest.raises(ValueError):
        estimate_limit(np.array([10.0, 5.0]), np.array([1, 1]), np.array([2, 2]))


def _runs(first: dict) -> pd.DataFrame:
    """A runs table: ``first`` maps (noise, T) to the steps_to_solve of its seeds (None:
    never)."""
    rows = []
    for (noise, T), steps in first.items():
        for seed, s in enumerate(steps):
            rows.append({"run_id": f"{noise}-{T}-{seed}", "task.noise": noise, "task.seq_len": T,
                         "seed": seed, "status": "ok", "steps_to_solve": s})
    runs = pd.DataFrame(rows)
    runs["steps_to_solve"] = runs["steps_to_solve"].astype("Int64")
    return runs


def test_solved_within_a_budget_counts_steps_to_solve():
    runs = _runs({(0.5, 10): [100, 300, None, 200], (0.5, 20): [None, None, 400, None]})
    runs.loc[len(runs)] = {"run_id": "f", "task.noise": 0.5, "task.seq_len": 10, "seed": 9,
                           "status": "failed", "steps_to_solve": 50}   # failed: counts nowhere
    table = budget_table(runs, [400, 100, 200])
    assert list(table.columns) == ["task.noise", "task.seq_len", *BUDGET_COLUMNS]
    at10 = table[table["task.seq_len"] == 10]
    assert at10["budget"].tolist() == [100, 200, 400] and set(at10["n"]) == {4}
    assert at10["solved"].tolist() == [0.25, 0.5, 0.75]
    assert table[table["task.seq_len"] == 20]["solved"].tolist() == [0.0, 0.0, 0.25]
    assert (table["solved_lo"] <= table["solved"]).all()
    assert (table["solved"] <= table["solved_hi"]).all()
    with pytest.raises(UserError, match="not a swept axis"):
        budget_table(runs.drop(columns="task.seq_len"), [100])


def test_limit_table_one_row_per_setting_and_budget():
    first = {}
    for noise, reach in ((0.0, 40), (1.0, 8)):
        for T in (4, 8, 16, 32, 64):
            first[(noise, T)] = [100 if T <= reach else None] * 10
    table = limit_table(budget_table(_runs(first), [100, 200]))
    assert list(table.columns) == ["task.noise", *LIMIT_COLUMNS]
    assert len(table) == 4
    at0 = table[table["task.noise"] == 0.0].iloc[0]
    assert 32 < at0["limit"] < 64 and at0["censored"] == "none"
    assert at0["largest_solved"] == 32 and np.isnan(at0["horizon_0"])    # no gradients given
    at1 = table[table["task.noise"] == 1.0].iloc[0]
    assert 8 < at1["limit"] < 16
    assert table["gain"].tolist()[1] == 0.0 and np.isnan(table["gain"].tolist()[0])


def test_gain_is_the_change_of_the_limit_since_the_previous_budget():
    first = {(0.0, T): [100 if T <= 8 else 200 if T <= 16 else None] * 10
             for T in (4, 8, 16, 32)}
    table = limit_table(budget_table(_runs(first), [100, 200, 400]))
    lim = table["limit"].to_numpy()
    assert np.isnan(table["gain"].iloc[0])
    assert table["gain"].iloc[1] == pytest.approx(lim[1] - lim[0]) and lim[1] > lim[0]
    assert table["gain"].iloc[2] == pytest.approx(0.0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("limits") / "map"
    exp = tiny_exp(repeats=3, sweep={"task.seq_len": [2, 4, 8]},
                   model={"hidden": 12}, task={"batch": 16, "eval_batch": 100},
                   train={"steps": 80, "log_every": 10, "lr": 0.03},
                   claims=[{"says": "short sequences are learned early", "table": "budget",
                            "where": "seq_len == 2 and budget == 80", "expect": "solved > 0"},
                           {"says": "there is a limit", "table": "limit",
                            "expect": "limit >= 2 and limit_lo <= limit <= limit_hi"}])
    run_sweep(exp, out, workers=1)
    return out


def test_a_folder_gives_both_tables_with_gradients(folder):
    by_budget, by_setting = limits_of(folder)
    assert sorted(set(by_budget["budget"])) == [10, 20, 40, 80]
    runs = load_runs(folder)
    at = by_budget[by_budget["budget"] == 80].set_index("task.seq_len")["solved"]
    first = pd.to_numeric(runs["steps_to_solve"], errors="coerce").astype(float)
    for T, frac in at.items():
        assert frac == pytest.approx((first[runs["task.seq_len"] == T] <= 80).mean())
    assert list(by_setting["budget"]) == [10, 20, 40, 80]
    assert np.isfinite(by_setting["horizon_0"]).all()
    assert np.isfinite(by_setting["ratio_0"]).all()


def test_claims_read_the_limit_tables_live_and_from_committed_files(folder, tmp_path):
    results = check_folder(folder)
    assert [r.holds for r in results] == [True, True], [r.line() for r in results]
    # a committed folder keeps the tables only
    copy = tmp_path / "committed"
    copy.mkdir()
    for table in ("budget", "limit"):
        from rnnlab.analysis.summarize import render

        (copy / f"{table}.csv").write_text(render(claims_table(folder, table), "csv"))
    (copy / "manifest.json").write_text((folder / "manifest.json").read_text())
    again = check_folder(copy)
    assert [r.observed for r in again] == [r.observed for r in results]


def test_a_claim_with_a_step_on_a_limit_table_is_refused():
    with pytest.raises(ValueError, match="step only with table: summary"):
        Claim(says="x", expect="limit > 1", table="limit", step=10)


def test_cli_prints_both_tables_and_refuses_bad_budgets(folder):
    res = ok(invoke("limits", folder, "--format", "json"))
    rows = json.loads(res.stdout)
    assert {r["budget"] for r in rows} == {10, 20, 40, 80}
    res = ok(invoke("limits", folder, "--table", "budget", "--budgets", "20,80",
                    "--format", "csv"))
    assert res.stdout.splitlines()[0].split(",")[:4] == ["task.seq_len", "budget", "n", "solved"]
    bad = invoke("limits", folder, "--budgets", "20,x")
    assert bad.exit_code == 2 and "--budgets" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_both_figures_are_drawn(folder, tmp_path):
    pytest.importorskip("matplotlib")
    from rnnlab.plot import figure

    fig = figure(folder, "budget")
    (ax,) = [a for a in fig.axes if a.get_xlabel() == "sequence length T"]
    means = [ln for ln in ax.lines if ln.get_gid() == "mean"]
    assert [ln.get_label() for ln in means] == [f"{b} steps" for b in (10, 20, 40, 80)]
    fig = figure(folder, "limit")
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert len([ln for ln in ax.lines if ln.get_gid() == "mean"]) == 1
    (horizon,) = [ln for ln in ax.lines if ln.get_gid() == "horizon"]   # at initialisation
    _, table = limits_of(folder)
    assert horizon.get_ydata()[0] == pytest.approx(table["horizon_0"].iloc[0])


def test_figures_with_a_null_setting(tmp_path):
    """A swept key with a null value (``train.clip.threshold: [null, 1.0]``) is a setting of its
    own in both figures: one line or panel per value, null included."""
    pytest.importorskip("matplotlib")
    from rnnlab.plot import figure

    out = tmp_path / "null"
    exp = tiny_exp(repeats=2, sweep={"task.seq_len": [2, 4], "train.clip.threshold": [None, 1.0]},
                   model={"hidden": 8}, task={"batch": 8, "eval_batch": 50},
                   train={"steps": 20, "log_every": 10, "clip": {"mode": "norm"}})
    run_sweep(exp, out, workers=1)
    fig = figure(out, "limit")
    labels = sorted(ln.get_label() for ln in fig.axes[0].lines if ln.get_gid() == "mean")
    assert len(labels) == 2 and any("null" in lb for lb in labels)
    fig = figure(out, "budget")
    assert [a.get_title() for a in fig.axes if a.get_xlabel() == "sequence length T"] == \
        ["threshold = null", "threshold = 1"]
    for table in limits_of(out):                 # the summary's order: null first
        assert table["train.clip.threshold"].isna().iloc[0]


def test_claim_rows_of_the_limit_tables_name_their_budget(folder):
    """Each row of a budget or limit table is one setting at one budget: the check's row labels
    say the budget (else the same label repeats for every budget)."""
    from rnnlab.experiment.check import check_folder

    (_, limit) = check_folder(folder)
    assert "budget=" in limit.observed


def test_limit_figure_marks_limits_below_the_grid_and_names_hidden_lines(folder, monkeypatch):
    """A limit censored below the grid is a down triangle at the shortest T (not a gap), and a
    setting whose limits equal another's (its line hidden under the other's) is named."""
    pytest.importorskip("matplotlib")
    import rnnlab.plot.limits as pl
    from rnnlab.plot.data import load_plot_data

    real = pl._tables

    def with_a_twin_below(res, gradients):
        table, limits, setting = real(res, gradients)
        limits = limits.copy()
        limits.loc[limits.index[0], "censored"] = "below"
        twin = limits.copy()
        twin["model.weight_scale"] = 7.0
        return table, pd.concat([limits, twin], ignore_index=True), ["model.weight_scale"]

    monkeypatch.setattr(pl, "_tables", with_a_twin_below)
    notes = []
    fig = pl.plot_limit(load_plot_data(folder, [], notes.append), notes.append)
    (ax,) = fig.axes
    downs = [ln for ln in ax.lines if ln.get_marker() == "v"]
    assert downs and all(y == 2.0 for ln in downs for y in ln.get_ydata())   # shortest T: 2
    assert any("has the same limits as" in n for n in notes)
