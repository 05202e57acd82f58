"""The Lyapunov analysis in a sweep (``train.lyapunov``): configuration and run identity, what the
trainer records, the ``lyapunov/`` dataset, the per-run statistics, the summary and the plot."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import invoke, ok, tiny_data, tiny_exp, write_yaml

from rnnlab.analysis.lyapunov_stats import LN10, run_lyapunov_stats
from rnnlab.analysis.stats import t_interval
from rnnlab.analysis.summarize import (
    SUMMARY_COLUMNS,
    run_gradient_stats,
    summarize,
    summary_of,
)
from rnnlab.engine.lyapunov import lyapunov
from rnnlab.experiment.load import parse_experiment
from rnnlab.results.layout import LYAP_DIR
from rnnlab.results.readers import load_lyapunov, load_runs
from rnnlab.results.store import ResultsStore
from rnnlab.run.sweep import run_sweep
from rnnlab.run.train import Trainer, _sample, run_streams, train_batch

ON = {"lyapunov": {"enabled": True, "window": 2}}


def exp_with(cell="rnn", **lyap):
    return tiny_exp(model={"cell": cell},
                    train={"lyapunov": {"enabled": True, **lyap}},
                    sweep={"task.seq_len": [5], "model.weight_scale": [0.5, 1.5]})


# ------------------------------------------------------------------ configuration, identity


def test_off_by_default_and_left_out_of_run_ids_and_fingerprints():
    plain = tiny_exp()
    off = tiny_exp(train={"lyapunov": {"enabled": False}})
    on = tiny_exp(train=ON)
    assert plain.runs()[0].config.train.lyapunov.enabled is False
    assert "lyapunov" not in plain.runs()[0].config.to_dict()["train"]
    assert [r.run_id for r in off.runs()] == [r.run_id for r in plain.runs()]
    assert off.fingerprint() == plain.fingerprint()
    assert "lyapunov" not in plain.to_dict()["train"]
    # switched on, it is part of the identity: a resumed folder does not pass runs without it
    assert not {r.run_id for r in on.runs()} & {r.run_id for r in plain.runs()}
    assert on.fingerprint() != plain.fingerprint()
    assert on.runs()[0].config.to_dict()["train"]["lyapunov"] == {
        "enabled": True, "exponents": None, "window": 2}


def test_dotted_keys_and_one_line_errors(tmp_path):
    exp = parse_experiment(tiny_data(sweep={"train.lyapunov.exponents": [2, 3]}))
    assert [r.config.train.lyapunov.exponents for r in exp.runs()][:2] == [2, 2]
    path = write_yaml(tmp_path / "bad.yaml", tiny_data(train={"lyapunov": {"window": 0}}))
    res = invoke("validate", path)
    assert res.exit_code == 2
    assert "train.lyapunov.window: got 0; allowed: an integer >= 1" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    path = write_yaml(tmp_path / "typo.yaml", tiny_data(train={"lyapunov": {"enable": True}}))
    res = invoke("validate", path)
    assert res.exit_code == 2 and "did you mean train.lyapunov.enabled?" in res.stderr


# ---------------------------------------------------------------------------------- training


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_trainer_records_the_analysis_of_each_logged_steps_batch(cell):
    exp = exp_with(cell, window=3)
    specs = exp.runs()
    res = train_batch(specs)
    tab = res.lyapunov
    assert set(tab["step"]) == {0, 3, 6} and set(tab["run_id"]) == {s.run_id for s in specs}
    H = 8
    first = tab[(tab["run_id"] == specs[0].run_id) & (tab["step"] == 0)]
    assert first.groupby("kind").size().to_dict() == {"lambda": 8, "log_sv": H, "window": 1}
    assert first.loc[first["kind"] == "window", "value"].item() == 3
    # the numbers are the engine's on the very batch of step 0 with the initial weights
    trainer = Trainer(specs)
    x, _ = _sample(trainer.task, [run_streams(s.seed)[1] for s in specs], 8, np.float64,
                   trainer.compiled)
    want = lyapunov(trainer.params, x, cell=cell, exponents=8, window=3)
    got = first.loc[first["kind"] == "lambda"].sort_values("index")["value"].to_numpy()
    np.testing.assert_array_equal(got, want.exponents[0])
    got = first.loc[first["kind"] == "log_sv"].sort_values("index")["value"].to_numpy()
    np.testing.assert_array_equal(got, want.log_sv[0])


def test_the_analysis_changes_no_training_number():
    on, off = exp_with(), tiny_exp(sweep={"task.seq_len": [5], "model.weight_scale": [0.5, 1.5]})
    a, b = train_batch(on.runs()), train_batch(off.runs())
    assert b.lyapunov is None
    drop = ["run_id", "wall_time"]
    ra = pd.DataFrame(a.runs).drop(columns=drop)
    rb = pd.DataFrame(b.runs).drop(columns=drop)
    pd.testing.assert_frame_equal(ra, rb)
    pd.testing.assert_frame_equal(a.metrics.drop(columns="run_id"),
                                  b.metrics.drop(columns="run_id"))
    pd.testing.assert_frame_equal(a.grad_norms.drop(columns="run_id"),
                                  b.grad_norms.drop(columns="run_id"))


def test_a_runs_analysis_does_not_depend_on_its_batch():
    specs = exp_with("gru", exponents=3).runs()
    together = train_batch(specs).lyapunov
    for s in specs:
        alone = train_batch([s]).lyapunov
        mine = together[together["run_id"] == s.run_id].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, alone.reset_index(drop=True))


def test_exponents_are_capped_at_the_state_size():
    exp = tiny_exp(model={"hidden": 3}, train={"lyapunov": {"enabled": True, "exponents": 50,
                                                             "window": 99}},
                   sweep={"task.seq_len": [4]}, repeats=1)
    tab = train_batch(exp.runs()).lyapunov
    assert (tab["kind"] == "lambda").sum() == 3 * 3          # 3 logged steps, m = D = 3
    assert set(tab.loc[tab["kind"] == "window", "value"]) == {4.0}


# ------------------------------------------------------------------- store, summary, plot


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("lyap") / "out"
    exp = tiny_exp(model={"hidden": 6}, train=ON,
                   sweep={"task.seq_len": [5], "model.weight_scale": [0.5, 1.5],
                          "model.cell": ["rnn", "gru"]})
    run_sweep(exp, out, command=["test"])
    return out


def test_sweep_stores_the_dataset_beside_grad_norms(folder):
    parts = sorted(p.name for p in (folder / LYAP_DIR).iterdir())
    assert parts and all(p.startswith("part-") and p.endswith(".parquet") for p in parts)
    direct = pd.read_parquet(folder / LYAP_DIR)
    assert list(direct.columns) == ["run_id", "step", "kind", "index", "value"]
    tab = load_lyapunov(folder)
    assert len(tab) == len(direct) and set(tab["run_id"]) == set(load_runs(folder)["run_id"])
    assert set(load_lyapunov(folder, step=6)["step"]) == {6}


def test_summary_gains_the_lyapunov_columns_only_when_there_is_data(folder, tmp_path):
    table = summary_of(folder, by=["model.cell", "model.weight_scale"])
    assert list(table.columns[-9:]) == ["lambda1", "lambda1_lo", "lambda1_hi", "lambda_sum",
                                        "lambda_sum_lo", "lambda_sum_hi", "decay_gap",
                                        "decay_gap_lo", "decay_gap_hi"]
    assert np.isfinite(table["lambda1"]).all() and (table["lambda_sum"] <= table["lambda1"]).all()
    # group mean of the per-run values
    stats = run_lyapunov_stats(load_lyapunov(folder, step=0))
    runs = load_runs(folder)
    merged = runs.merge(stats, on="run_id")
    want = merged.groupby(["model.cell", "model.weight_scale"])["lambda1"].mean().to_numpy()
    np.testing.assert_allclose(table["lambda1"].to_numpy(), want, rtol=1e-12)
    # each with the t interval of its group's per-run values
    for (cell, scale), g in merged.groupby(["model.cell", "model.weight_scale"]):
        row = table[(table["model.cell"] == cell) & (table["model.weight_scale"] == scale)]
        _, lo, hi = t_interval(g["lambda1"])
        assert row["lambda1_lo"].item() == pytest.approx(lo, rel=1e-12)
        assert row["lambda1_hi"].item() == pytest.approx(hi, rel=1e-12)
        assert lo < row["lambda1"].item() < hi
    without = summarize(runs, None, by=["model.cell"])
    assert list(without.columns) == ["model.cell", *SUMMARY_COLUMNS]


def test_run_statistics_from_a_hand_made_table():
    lyap = pd.DataFrame({
        "run_id": ["a"] * 6 + ["a"] * 2,
        "step": [0] * 6 + [5] * 2,
        "kind": ["lambda", "lambda", "log_sv", "log_sv", "log_sv", "window", "lambda", "lambda"],
        "index": [2, 1, 1, 2, 3, 0, 1, 2],
        "value": [-2 * LN10, -LN10, -LN10, -2 * LN10, -6 * LN10, 3.0, 0.0, -1.0],
    })
    grads = pd.DataFrame({"run_id": ["a"], "step": [0], "decay": [-0.75]})
    s = run_lyapunov_stats(lyap, grads)
    assert s.loc[0, "step"] == 0
    assert s.loc[0, "lambda1"] == pytest.approx(-1.0)            # index 1, in decades
    assert s.loc[0, "lambda_sum"] == pytest.approx(-3.0)
    assert s.loc[0, "sv_mean"] == pytest.approx(-3.0 / 3)        # mean log10 sv / k
    assert s.loc[0, "decay_gap"] == pytest.approx(-0.75 + 1.0)
    later = run_lyapunov_stats(lyap, grads, step=5)
    assert later.loc[0, "lambda1"] == 0 and np.isnan(later.loc[0, "decay_gap"])   # other step
    assert len(run_lyapunov_stats(None)) == 0


def test_gap_is_measured_decay_minus_lambda1_of_the_same_runs(folder):
    from rnnlab.results.readers import load_grad_norms

    g = run_gradient_stats(load_grad_norms(folder, step=0))
    s = run_lyapunov_stats(load_lyapunov(folder), g).set_index("run_id")
    d = g.set_index("run_id")["decay"].reindex(s.index)
    np.testing.assert_allclose(s["decay_gap"], d - s["lambda1"], rtol=1e-12)


def test_orphan_lyapunov_parts_are_removed_and_fresh_clears_them(folder, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    stray = copy / LYAP_DIR / "part-0000000000000000.parquet"
    stray.write_bytes((next((copy / LYAP_DIR).iterdir())).read_bytes())
    fp = json.loads((copy / "manifest.json").read_text())["fingerprint"]
    store = ResultsStore.open(copy, fingerprint=fp, manifest={}, experiment_name="tiny")
    assert not stray.exists() and any("removed 1 part" in n for n in store.cleanup_notes)
    ResultsStore.open(copy, fingerprint=fp, manifest={}, fresh=True, experiment_name="tiny")
    assert not (copy / LYAP_DIR).exists()


def test_plot_kind_lyapunov(folder, tmp_path):
    pytest.importorskip("matplotlib")
    from rnnlab.plot import plot

    notes = []
    fig = plot(folder, "lyapunov", tmp_path / "l.png", note=notes.append)
    axes = [ax for ax in fig.axes if ax.get_lines()]
    assert len(axes) == 2                                         # a panel per cell
    assert {ax.get_title() for ax in axes} == {"cell = rnn", "cell = gru"}
    means = [ln for ln in axes[0].get_lines() if ln.get_gid() == "mean"]
    assert len(means) == 2                                        # a line per weight scale
    assert list(means[0].get_xdata()) == list(range(1, 7))       # m = min(H, 8) = 6
    assert any("decay - lambda_1" in n for n in notes)
    assert (tmp_path / "l.png").read_bytes()[:4] == b"\x89PNG"
    res = ok(invoke("plot", folder, "--kind", "lyapunov", "--step", "6", "--out",
                    tmp_path / "l6.png"))
    assert res.stdout.strip().endswith("l6.png")


def test_plot_without_the_analysis_is_a_one_line_error(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "plain"
    run_sweep(tiny_exp(sweep={"task.seq_len": [3]}), out, command=["test"])
    res = invoke("plot", out, "--kind", "lyapunov")
    assert res.exit_code == 2 and "train.lyapunov.enabled: true" in res.stderr
    assert "Traceback" not in res.stderr


def test_decay_plot_draws_the_lambda1_line_for_every_cell(folder, tmp_path):
    pytest.importorskip("matplotlib")
    from rnnlab.plot import plot

    fig = plot(folder, "decay", tmp_path / "d.png")
    axes = [ax for ax in fig.axes if ax.get_lines()]
    lines = [ln for ax in axes for ln in ax.get_lines() if ln.get_gid() == "lambda1"]
    assert len(lines) == 4                                       # 2 cells x 2 scales
    bounds = [ln for ax in axes for ln in ax.get_lines() if ln.get_gid() == "bound"]
    assert len(bounds) == 2                                      # the rnn panel only
    # the line's slope is the seeds' mean lambda_1 in decades per step
    stats = run_lyapunov_stats(load_lyapunov(folder, step=0)).set_index("run_id")
    want = {round(v, 10) for v in load_runs(folder).assign(l1=lambda r: stats["lambda1"]
                                                            .reindex(r["run_id"]).to_numpy())
            .groupby(["model.cell", "model.weight_scale"])["l1"].mean()}
    got = {round(float(np.diff(np.log10(ln.get_ydata()))[0]), 10) for ln in lines}
    assert got == want


def test_the_reference_experiment_sweeps_scale_and_cell_with_ten_seeds():
    from pathlib import Path

    from rnnlab.experiment.load import load_experiment

    path = Path(__file__).resolve().parent.parent / "experiments" / "lyapunov.yaml"
    for profile, seeds in ((None, 10), ("quick", 2)):
        exp = load_experiment(path, profile=profile)
        assert exp.repeats >= seeds
        cfgs = [r.config for r in exp.runs()]
        assert {c.model.cell for c in cfgs} == {"rnn", "lstm", "gru"}
        assert len({c.model.weight_scale for c in cfgs}) >= 3
        assert all(c.train.lyapunov.enabled for c in cfgs)
        steps = cfgs[0].train.steps
        assert cfgs[0].train.log_every == steps           # analysed at init and after training


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_analysis_in_chunks_of_runs_is_the_same_bit_for_bit(cell):
    """The trainer analyses a few runs at a time under a memory budget; any chunking gives the
    numbers of one call over all runs."""
    from rnnlab.analysis.lyapunov_stats import analyse, analyse_bytes
    from rnnlab.engine import init_params

    rng = np.random.default_rng(3)
    ps = [init_params(rng, cell=cell, input_size=3, hidden=5, output_size=2, scale=s)
          for s in (0.5, 1.0, 1.5, 2.0, 2.5)]
    P = {k: np.stack([p[k] for p in ps]) for k in ps[0]}
    x = rng.standard_normal((5, 7, 4, 3))
    kw = dict(cell=cell, activation="tanh", exponents=3, window=4)
    whole = analyse(P, x, budget=1 << 40, **kw)
    one = lyapunov(P, x, **kw)
    np.testing.assert_array_equal(whole.exponents, one.exponents)
    D = 10 if cell == "lstm" else 5
    per_run = analyse_bytes(4, 5, P["Ws"].shape[-1], D, 8)
    for budget in (1, 2 * per_run, 3 * per_run):
        part = analyse(P, x, budget=budget, **kw)
        np.testing.assert_array_equal(part.exponents, whole.exponents)
        np.testing.assert_array_equal(part.log_sv, whole.log_sv)
        assert part.k == 4
