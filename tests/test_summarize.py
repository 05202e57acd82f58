"""Tests of per-run gradient statistics, the grouped summary and its renderings."""

from __future__ import annotations

import io
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.analysis.stats import t975, wilson
from rnnlab.analysis.summarize import (
    STAT_COLUMNS,
    SUMMARY_COLUMNS,
    format_value,
    render,
    run_gradient_stats,
    summarize,
)
from rnnlab.errors import UserError
from rnnlab.results.readers import load_grad_norms, load_runs
from rnnlab.results.store import ResultsStore


def decaying(run_id: str, T: int, rate: float = 0.1, step: int = 0) -> pd.DataFrame:
    t = np.arange(1, T + 1)
    return pd.DataFrame(
        {
            "run_id": run_id,
            "step": step,
            "t": t,
            "ds": 10.0 ** (-rate * (T - t)),
            "dWs": 1.0,
            "dWx": 1.0,
            "dc": np.nan,
        }
    )


def frame(run_id: str, ds, step: int = 0) -> pd.DataFrame:
    ds = np.asarray(ds, dtype=float)
    return pd.DataFrame({"run_id": run_id, "step": step, "t": np.arange(1, len(ds) + 1), "ds": ds})


# ---------------------------------------------------------------------------------------------
# run_gradient_stats


@pytest.mark.parametrize("T", [31, 50, 200])
def test_exponential_decay_gives_exact_rate_and_horizon(T):
    stats = run_gradient_stats(decaying("r", T))
    row = stats.iloc[0]
    assert list(stats.columns) == STAT_COLUMNS
    assert row["T"] == T and row["step"] == 0
    assert row["decay"] == pytest.approx(-0.1, rel=1e-12)
    assert row["horizon"] == 30
    assert row["ds_T"] == 1.0
    assert row["grad_ratio"] == pytest.approx(-0.1 * (T - 1), rel=1e-12)


def test_short_sequence_horizon_is_censored_at_T_minus_1():
    row = run_gradient_stats(decaying("r", 20)).iloc[0]
    assert row["horizon"] == 19
    assert row["grad_ratio"] == pytest.approx(-1.9)


def test_growing_gradients_give_positive_rate():
    row = run_gradient_stats(decaying("r", 40, rate=-0.05)).iloc[0]
    assert row["decay"] == pytest.approx(0.05)
    assert row["grad_ratio"] == pytest.approx(1.95)
    assert row["horizon"] == 39


def test_default_step_is_first_recorded_per_run():
    g = pd.concat(
        [
            decaying("a", 40, 0.1, step=0),
            decaying("a", 40, 0.2, step=100),
            decaying("b", 40, 0.3, step=5),
            decaying("b", 40, 0.05, step=50),
        ]
    ).sample(frac=1.0, random_state=0)
    stats = run_gradient_stats(g)
    assert list(stats["run_id"]) == ["a", "b"]
    assert list(stats["step"]) == [0, 5]
    assert stats["decay"].tolist() == pytest.approx([-0.1, -0.3])
    at100 = run_gradient_stats(g, step=100)
    assert list(at100["run_id"]) == ["a"] and at100["decay"].iloc[0] == pytest.approx(-0.2)
    assert run_gradient_stats(g, step=7).empty


def test_underflow_zeros_are_excluded_without_warnings():
    ds = 10.0 ** (-0.1 * (49 - np.arange(50)))
    ds[:5] = 0.0  # float32 underflow at the earliest time steps
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = run_gradient_stats(frame("r", ds)).iloc[0]
    assert row["grad_ratio"] == -math.inf
    assert row["decay"] == pytest.approx(-0.1)
    assert row["horizon"] == 30


def test_degenerate_runs_give_nan_not_errors():
    g = pd.concat(
        [
            frame("all_zero", [0.0, 0.0, 0.0]),
            frame("one_point", [0.0, 0.0, 2.0]),
            frame("zero_at_T", [1.0, 0.5, 0.0]),
            frame("nan_run", [np.nan, np.nan, np.nan]),
            frame("inf_start", [np.inf, 1.0, 1.0]),
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = run_gradient_stats(g).set_index("run_id")
    assert np.isnan(stats.loc["all_zero", ["grad_ratio", "decay", "horizon"]].astype(float)).all()
    assert stats.loc["one_point", "grad_ratio"] == -math.inf
    assert np.isnan(stats.loc["one_point", "decay"])
    assert stats.loc["one_point", "horizon"] == 0
    assert np.isnan(stats.loc["zero_at_T", "grad_ratio"])
    assert np.isnan(stats.loc["zero_at_T", "horizon"])
    assert stats.loc["zero_at_T", "decay"] == pytest.approx(math.log10(2.0))
    assert np.isnan(stats.loc["nan_run", "decay"])
    assert stats.loc["inf_start", "grad_ratio"] == math.inf
    assert stats.loc["inf_start", "decay"] == 0.0


def test_horizon_is_largest_lag_above_threshold():
    # lag:        4     3     2     1    0
    ds = [2e-3, 1e-4, 1e-4, 0.5, 1.0]
    assert run_gradient_stats(frame("r", ds)).iloc[0]["horizon"] == 4
    assert run_gradient_stats(frame("r", ds), threshold=0.1).iloc[0]["horizon"] == 1


def test_empty_input():
    for g in (None, pd.DataFrame(columns=["run_id", "step", "t", "ds"])):
        stats = run_gradient_stats(g)
        assert stats.empty and list(stats.columns) == STAT_COLUMNS


def reference_stats(ds: np.ndarray) -> tuple[float, float]:
    """Straightforward per-run computation of decay and horizon."""
    T = len(ds)
    lag = T - np.arange(1, T + 1)
    ok = np.isfinite(ds) & (ds > 0)
    decay = np.polyfit(lag[ok], np.log10(ds[ok]), 1)[0] if ok.sum() >= 2 else np.nan
    horizon = lag[ok & (ds >= 1e-3 * ds[-1])].max() if ds[-1] > 0 else np.nan
    return decay, horizon


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.one_of(st.just(0.0), st.floats(1e-30, 1e30)), min_size=2, max_size=40),
        min_size=1,
        max_size=5,
    )
)
def test_vectorised_stats_match_per_run_reference(runs):
    g = pd.concat([frame(f"r{i}", ds) for i, ds in enumerate(runs)])
    stats = run_gradient_stats(g).set_index("run_id")
    for i, ds in enumerate(runs):
        decay, horizon = reference_stats(np.asarray(ds))
        got = stats.loc[f"r{i}"]
        if np.isnan(decay):
            assert np.isnan(got["decay"])
        else:
            assert got["decay"] == pytest.approx(decay, rel=1e-6, abs=1e-9)
        if np.isnan(horizon):
            assert np.isnan(got["horizon"])
        else:
            assert got["horizon"] == horizon


# ---------------------------------------------------------------------------------------------
# summarize


def sample_runs() -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = pd.DataFrame(
        {
            "run_id": ["a", "b", "c", "d", "e", "f"],
            "task.seq_len": [20, 20, 20, 10, 10, 20],
            "train.clip.threshold": [1.0, 1.0, None, 1.0, 1.0, None],
            "seed": [0, 1, 0, 0, 1, 1],
            "status": ["ok", "diverged", "ok", "ok", "failed", "ok"],
            "solved": [True, False, True, False, False, False],
            "final_loss": [0.1, 5.0, 0.2, 0.4, np.nan, 0.4],
            "accuracy": [1.0, 0.2, 0.9, 0.5, np.nan, 0.7],
            "clip_rate": [0.1, 0.9, 0.0, 0.3, 0.0, 0.0],
        }
    )
    grad = pd.concat(
        [
            decaying("a", 20, 0.1),
            decaying("b", 20, 0.3),
            decaying("c", 20, 0.2),
            decaying("d", 10, 0.1),
            decaying("f", 20, 0.4),
        ]
    )
    return runs, grad


def test_summary_groups_fractions_and_order():
    runs, grad = sample_runs()
    table = summarize(runs, grad)
    assert list(table.columns) == ["task.seq_len", "train.clip.threshold", *SUMMARY_COLUMNS]
    keys = list(zip(table["task.seq_len"], table["train.clip.threshold"], strict=True))
    assert keys[0] == (10, 1.0)
    assert keys[1][0] == 20 and np.isnan(keys[1][1])  # threshold none sorts first
    assert keys[2] == (20, 1.0)

    ten = table.iloc[0]  # d ok, e failed
    assert ten["n"] == 2 and ten["failed"] == 1
    assert ten["solved"] == 0.0 and ten["diverged"] == 0.0
    assert ten["loss"] == pytest.approx(0.4) and np.isnan(ten["loss_lo"])  # n < 6: no interval
    assert ten["decay"] == pytest.approx(-0.1) and ten["horizon"] == 9
    assert ten["horizon_censored"] == 1.0  # 9 = T - 1: never fell below the threshold
    assert ten["solved_lo"] == 0.0 and ten["solved_hi"] == pytest.approx(wilson(0, 1)[1])

    none = table.iloc[1]  # c, f
    assert none["n"] == 2 and none["solved"] == 0.5 and none["failed"] == 0
    assert none["acc"] == pytest.approx(0.8)
    half = t975(1) * np.std([0.9, 0.7], ddof=1) / np.sqrt(2)
    assert none["acc_lo"] == max(0.0, 0.8 - half) and none["acc_hi"] == min(1.0, 0.8 + half)
    assert none["horizon_censored"] == 0.0
    assert none["decay"] == pytest.approx(-0.3)
    assert none["decay_sd"] == pytest.approx(np.std([-0.2, -0.4], ddof=1))
    assert none["horizon"] == pytest.approx((15 + 7) / 2)

    clip = table.iloc[2]  # a, b
    assert clip["diverged"] == 0.5 and clip["solved"] == 0.5
    assert clip["loss"] == pytest.approx(2.55) and clip["clip_rate"] == pytest.approx(0.5)
    assert clip["grad_ratio"] == pytest.approx(-(1.9 + 5.7) / 2)
    assert table["n"].dtype == np.int64 and table["failed"].dtype == np.int64


def test_summary_custom_by_and_all_runs():
    runs, grad = sample_runs()
    by_seed = summarize(runs, grad, by=["seed"])
    assert list(by_seed["seed"]) == [0, 1] and list(by_seed["n"]) == [3, 3]
    total = summarize(runs, grad, by=[])
    assert list(total.columns) == SUMMARY_COLUMNS and total["n"].tolist() == [6]
    assert total["failed"].tolist() == [1] and total["solved"].iloc[0] == pytest.approx(0.4)
    with pytest.raises(UserError, match="model.hidden"):
        summarize(runs, grad, by=["model.hidden"])


def test_summary_all_failed_group_and_no_grad_norms():
    runs = pd.DataFrame(
        {
            "run_id": ["x", "y"],
            "task.seq_len": [5, 6],
            "status": ["failed", "ok"],
            "solved": [False, True],
            "final_loss": [np.nan, 0.1],
        }
    )
    table = summarize(runs, None)
    assert table["n"].tolist() == [1, 1] and table["failed"].tolist() == [1, 0]
    assert np.isnan(table.loc[0, "solved"]) and table.loc[1, "solved"] == 1.0
    assert table[["acc", "clip_rate", "decay", "horizon"]].isna().all().all()


def test_summary_is_independent_of_row_order():
    runs, grad = sample_runs()
    shuffled = runs.sample(frac=1.0, random_state=3)
    a = render(summarize(runs, grad), "csv")
    b = render(summarize(shuffled, grad.sample(frac=1.0, random_state=4)), "csv")
    assert a == b


# ---------------------------------------------------------------------------------------------
# rendering


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.123456, "0.1235"),
        (30.0, "30"),
        (12345.6, "1.235e+04"),
        (1e-5, "1e-05"),
        (-0.0, "0"),
        (np.float32(0.5), "0.5"),
        (7, "7"),
        (np.int64(123456), "123456"),
        (True, "true"),
        (np.bool_(False), "false"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
        (None, "-"),
        (math.nan, "-"),
        (pd.NA, "-"),
        ("rnn", "rnn"),
    ],
)
def test_format_value(value, text):
    assert format_value(value) == text


@given(st.floats(min_value=-1e300, max_value=1e300))
def test_format_value_keeps_four_significant_digits(x):
    assert float(format_value(x)) == pytest.approx(x, rel=5e-4, abs=1e-300)


def test_render_markdown_shape():
    runs, grad = sample_runs()
    table = summarize(runs, grad)
    text = render(table, "markdown")
    lines = text.splitlines()
    assert len(lines) == 2 + len(table)
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines)
    assert {line.count("|") for line in lines} == {len(table.columns) + 1}
    assert len({len(line) for line in lines}) == 1  # padded columns
    assert set(lines[1].replace("|", "").replace(" ", "")) <= {"-", ":"}
    assert lines[1].split("|")[1].strip().endswith(":")  # numeric keys right-aligned
    assert " - |" in lines[2]  # NaN loss_lo of a small group
    assert text.endswith("\n")


def test_render_markdown_escapes_pipes_and_left_aligns_text():
    text = render(pd.DataFrame({"model.cell": ["a|b"], "x": [1.5]}), "markdown")
    assert text == ("| model.cell |   x |\n| ---------- | --: |\n| a\\|b       | 1.5 |\n")


def test_render_csv_and_json_parse_back():
    runs, grad = sample_runs()
    table = summarize(runs, grad)
    back = pd.read_csv(io.StringIO(render(table, "csv")))
    assert list(back.columns) == list(table.columns)
    assert back["n"].tolist() == table["n"].tolist()
    np.testing.assert_allclose(back["decay"], table["decay"], rtol=5e-4)
    assert back["loss_lo"].isna().tolist() == table["loss_lo"].isna().tolist()

    records = json.loads(render(table, "json"))
    assert len(records) == len(table) and list(records[0]) == list(table.columns)
    assert records[0]["n"] == 2 and isinstance(records[0]["n"], int)
    assert records[0]["loss_lo"] is None
    assert records[1]["train.clip.threshold"] is None
    assert records[2]["loss"] == 2.55


def test_render_json_infinity_and_text_is_deterministic():
    table = pd.DataFrame({"k": ["a"], "grad_ratio": [-math.inf], "decay": [1 / 3]})
    assert json.loads(render(table, "json")) == [{"k": "a", "grad_ratio": "-inf", "decay": 0.3333}]
    for fmt in ("csv", "markdown", "json"):
        assert render(table, fmt) == render(table.copy(), fmt)
    assert render(table, "csv") == "k,grad_ratio,decay\na,-inf,0.3333\n"
    assert render(table, "markdown") == (
        "| k   | grad_ratio |  decay |\n"
        "| --- | ---------: | -----: |\n"
        "| a   |       -inf | 0.3333 |\n"
    )


def test_render_unknown_format():
    with pytest.raises(UserError, match="markdown"):
        render(pd.DataFrame({"a": [1]}), "html")


def test_summary_of_a_stored_results_folder(tmp_path):
    runs, grad = sample_runs()
    store = ResultsStore.open(tmp_path, fingerprint="x", manifest={}, experiment_name="e")
    records = runs.astype(object).where(runs.notna(), None).to_dict("records")
    store.write_batch(records[:3], grad[grad["run_id"].isin(["a", "b", "c"])], None)
    store.write_batch(records[3:], grad[grad["run_id"].isin(["d", "e", "f"])], None)
    stored = summarize(load_runs(tmp_path), load_grad_norms(tmp_path))
    assert render(stored, "markdown") == render(summarize(runs, grad), "markdown")


def test_summary_bound_follows_the_step_of_the_gradient_statistics():
    runs = pd.DataFrame({"run_id": ["a", "b"], "task.seq_len": [10, 10], "status": ["ok", "ok"],
                         "decay_bound": [-0.3, -0.3], "decay_bound_end": [0.1, 0.2],
                         "last_step": [50, 50]})
    grad = pd.concat([decaying(r, 10, 0.1).assign(step=s) for r in "ab" for s in (0, 20, 50)])
    assert summarize(runs, grad)["bound"].iloc[0] == pytest.approx(-0.3)
    assert summarize(runs, grad, step=0)["bound"].iloc[0] == pytest.approx(-0.3)
    assert summarize(runs, grad, step=50)["bound"].iloc[0] == pytest.approx(0.15)
    assert np.isnan(summarize(runs, grad, step=20)["bound"].iloc[0])


def test_summary_counts_exploded_runs_and_a_diverged_loss_as_infinite():
    runs = pd.DataFrame({"run_id": list("abcdefg"), "k.x": [1] * 7,
                         "status": ["ok", "ok", "exploded", "diverged", "ok", "ok", "ok"],
                         "final_loss": [0.1, 0.2, 1e12, None, 0.3, 0.4, 0.5],
                         "solved": [True] * 2 + [False] * 5})
    row = summarize(runs, None).iloc[0]
    assert row["exploded"] == pytest.approx(1 / 7) and row["diverged"] == pytest.approx(1 / 7)
    assert row["loss"] == 0.4                      # median of 0.1..0.5, 1e12 and inf
    assert row["loss_lo"] == 0.1 and row["loss_hi"] == np.inf   # ranks 1 and 7 of 7
    assert (row["solved_lo"], row["solved_hi"]) == pytest.approx(wilson(2, 7))


def test_markdown_shows_a_censored_horizon_as_a_lower_bound():
    table = pd.DataFrame({"k": [1, 2, 3], "horizon": [14.0, 15.4, 3.0],
                          "horizon_censored": [1.0, 0.6, 0.0]})
    text = render(table, "markdown")
    assert "|   >= 14 |" in text and "| >= 15.4 |" in text and "|       3 |" in text
    assert render(table, "csv").splitlines()[1] == "1,14,1"
