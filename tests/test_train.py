"""The training loop (``rnnlab.run.train``): batch independence, reproducibility, divergence,
truncated BPTT, ``steps: 0``, clipping, and quick checks of the learning claims."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from rnnlab.engine import bptt, forward, global_norm
from rnnlab.experiment.load import parse_experiment
from rnnlab.run.train import Trainer, _sample, run_streams, train_batch


def experiment(sweep=None, repeats=1, seed=0, **sections):
    data = {"name": "t", "seed": seed, "repeats": repeats,
            "model": {"hidden": 8},
            "task": {"name": "recall", "seq_len": 5, "batch": 8, "eval_batch": 64},
            "train": {"steps": 6, "log_every": 2}}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    data["sweep"] = sweep or {}
    return parse_experiment(data)


def run_frames(res, run_id):
    """(run row without wall time, its grad norms, its metrics) from a BatchResult."""
    row = {k: v for k, v in next(r for r in res.runs if r["run_id"] == run_id).items()
           if k != "wall_time"}
    g = res.grad_norms[res.grad_norms["run_id"] == run_id].reset_index(drop=True)
    m = res.metrics[res.metrics["run_id"] == run_id].reset_index(drop=True)
    return row, g, m


def assert_same_run(a, b, tol):
    """Two runs' rows, grad norms and metrics agree (numbers to ``tol``, the rest exactly)."""
    (ra, ga, ma), (rb, gb, mb) = a, b
    assert ra.keys() == rb.keys()
    for k in ra:
        va, vb = ra[k], rb[k]
        if isinstance(va, float) and isinstance(vb, float):
            np.testing.assert_allclose(va, vb, rtol=tol, atol=tol, err_msg=k)
        else:
            assert va == vb, k
    for x, y in ((ga, gb), (ma, mb)):
        pd.testing.assert_frame_equal(x, y, check_exact=False, rtol=tol, atol=tol)


# ------------------------------------------------------------------------ batch independence


def test_a_run_trains_the_same_alone_and_in_a_batch_of_16():
    """16 runs sharing a shape (other weight scales, learning rates, clip thresholds, seeds)
    trained together; four of them trained alone must agree to 1e-10."""
    exp = experiment(sweep={"model.weight_scale": [0.5, 1.0, 2.0, 3.0], "train.lr": [0.003, 0.05],
                            "train.clip.threshold": [None, 0.5]},
                     train={"clip": {"mode": "norm"}})
    specs = exp.runs()
    assert len(specs) == 16 and len({s.config.shape_key() for s in specs}) == 1
    together = train_batch(specs)
    for spec in specs[::5]:
        alone = train_batch([spec])
        assert_same_run(run_frames(alone, spec.run_id), run_frames(together, spec.run_id), 1e-10)


def test_repeats_differ_and_the_same_seed_gives_identical_numbers():
    exp = experiment(repeats=3, sweep={"model.weight_scale": [0.5, 1.5]})
    first, second = train_batch(exp.runs()), train_batch(exp.runs())
    for spec in exp.runs():
        assert_same_run(run_frames(first, spec.run_id), run_frames(second, spec.run_id), 0.0)
    losses = first.metrics.groupby("run_id")["loss"].first()
    assert losses.nunique() == len(losses)           # different seeds, different data


# ----------------------------------------------------------------------------- divergence


DIVERGE = dict(model={"activation": "identity", "output": "linear", "hidden": 8},
               train={"optimizer": "sgd", "clip": {"mode": "none"}, "steps": 8, "log_every": 1},
               task={"seq_len": 10})


def test_diverging_runs_are_marked_and_do_not_disturb_the_others():
    """Identity activation, linear head, weight scale 3, sgd lr 1 and no clipping blows up at
    once; weight scale 0.5 with lr 0.01 trains normally. Both kinds share one batch."""
    exp = experiment(sweep={"model.weight_scale": [0.5, 3.0], "train.lr": [0.01, 1.0]},
                     repeats=2, **DIVERGE)
    specs = exp.runs()
    trainer = Trainer(specs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                # no floating-point warning escapes either
        res = trainer.run()
    rows = {r["run_id"]: r for r in res.runs}
    bad = [s for s in specs if s.config.model.weight_scale == 3.0 and s.config.train.lr == 1.0]
    good = [s for s in specs if s.config.model.weight_scale == 0.5 and s.config.train.lr == 0.01]
    assert bad and good
    for s in bad:
        row = rows[s.run_id]
        assert row["status"] == "diverged" and row["diverged_step"] is not None
        assert 0 <= row["diverged_step"] < 8 and not row["solved"]
        assert np.isfinite(row["rho_end"]) and np.isfinite(row["sigma_end"])
        m = res.metrics[res.metrics["run_id"] == s.run_id]
        assert m["step"].max() == row["diverged_step"]       # logged up to the divergence
    for k, v in trainer.params.items():
        assert np.isfinite(v).all(), k                          # weights of every run finite
    for s in good:
        assert rows[s.run_id]["status"] == "ok"
        alone = train_batch([s])
        assert_same_run(run_frames(alone, s.run_id), run_frames(res, s.run_id), 1e-10)


def test_a_batch_where_every_run_diverges_ends_early():
    exp = experiment(sweep={"model.weight_scale": [3.0]}, repeats=2,
                     **{**DIVERGE, "train": {**DIVERGE["train"], "lr": 1.0, "steps": 50}})
    res = train_batch(exp.runs())
    assert [r["status"] for r in res.runs] == ["diverged"] * 2
    assert res.metrics["step"].max() < 50


def test_state_overflow_under_tbptt_marks_only_that_run_diverged():
    """A run whose hidden state overflows inside a truncation window (identity cell, weight
    scale 1e9, 80 steps in windows of 10) is diverged; the other run of the batch is untouched."""
    exp = experiment(sweep={"model.weight_scale": [0.5, 1e9]},
                     model={"activation": "identity", "output": "linear", "hidden": 4},
                     task={"seq_len": 80, "batch": 4, "eval_batch": 16},
                     train={"optimizer": "sgd", "lr": 0.01, "clip": {"mode": "none"},
                            "steps": 3, "log_every": 1, "tbptt": 10})
    small, huge = exp.runs()
    res = train_batch([small, huge])
    rows = {r["run_id"]: r for r in res.runs}
    assert rows[huge.run_id]["status"] == "diverged"
    assert rows[huge.run_id]["diverged_step"] == 0
    assert rows[small.run_id]["status"] == "ok"
    assert_same_run(run_frames(train_batch([small]), small.run_id),
                    run_frames(res, small.run_id), 1e-10)


# ---------------------------------------------------------------------------------- tbptt


def _first_step_against_engine(spec, k):
    """The trainer's first step (no update) and the engine's BPTT(k) on the same batch."""
    trainer = Trainer([spec])
    params = {key: v.copy() for key, v in trainer.params.items()}
    rec = trainer.step(update=False)
    x, d = _sample(trainer.task, [run_streams(spec.seed)[1]], spec.config.task.batch,
                   trainer.dtype, trainer.compiled)
    ref = bptt(params, x, d, truncate=k, **trainer.kw)
    return rec, ref


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("T, N", [(6, 2), (7, 3), (8, 8), (8, 20)])
def test_tbptt_with_the_loss_at_the_last_step_only_reaches_the_last_window(cell, T, N):
    """Windows are [0, N), [N, 2N), ... from the start; the loss is at step T, so the error
    reaches back over the last window only: ds, dWs, dWx (and dc) are zero before it, and the
    gradient equals the engine's BPTT(k) with k the last window's length."""
    exp = experiment(model={"cell": cell}, task={"seq_len": T},
                     train={"tbptt": N, "steps": 3, "log_every": 1})
    spec = exp.runs()[0]
    last_start = ((T - 1) // N) * N                  # 0-based first step of the last window
    k = T - last_start
    rec, ref = _first_step_against_engine(spec, k)
    for key, norms in rec["norms"].items():
        assert norms.shape == (1, T)
        assert (norms[0, :last_start] == 0).all(), (key, norms)
        assert (norms[0, last_start:] > 0).all() or key == "dWs", (key, norms)
        np.testing.assert_allclose(norms[0], ref.step_norms[key][0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(rec["loss"], ref.loss, rtol=1e-12)
    np.testing.assert_allclose(rec["grad_norm"], global_norm(ref.grads, batched=True),
                               rtol=1e-12)
    # and the recorded table says the same
    res = train_batch([spec])
    assert res.runs[0]["status"] == "ok"
    g = res.grad_norms
    assert (g.loc[g["t"] <= last_start, "ds"] == 0).all()
    assert (g.loc[g["t"] > last_start, "ds"] > 0).all()
    if cell == "lstm":
        assert np.isfinite(g["dc"]).all()
    else:
        assert g["dc"].isna().all()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_tbptt_with_the_loss_everywhere_updates_once_per_window(cell):
    """Copy (loss at every step), T = 1 + 2 * 2 = 5 steps, windows of 2: three updates per step;
    norms are non-zero everywhere since every window holds loss terms."""
    exp = experiment(model={"cell": cell}, task={"name": "copy", "seq_len": 1, "copy_len": 2,
                                                  "symbols": 3},
                     train={"tbptt": 2, "steps": 4, "log_every": 1, "clip": {"mode": "norm",
                                                                             "threshold": 1e-6}})
    trainer = Trainer(exp.runs())
    res = trainer.run()
    assert res.runs[0]["status"] == "ok"
    assert trainer.update_count[0] == 4 * 3
    assert res.runs[0]["clip_rate"] == 1.0
    assert (res.grad_norms["ds"] > 0).all()


# ------------------------------------------------------------------------------- steps: 0


def test_zero_steps_records_the_gradient_at_initialisation_only():
    exp = experiment(sweep={"model.weight_scale": [0.5, 2.0]}, train={"steps": 0, "log_every": 5})
    trainer = Trainer(exp.runs())
    init = {k: v.copy() for k, v in trainer.params.items()}
    res = trainer.run()
    assert len(res.metrics) == 2 and set(res.metrics["step"]) == {0}
    assert set(res.grad_norms["step"]) == {0} and len(res.grad_norms) == 2 * 5
    for k in init:
        np.testing.assert_array_equal(trainer.params[k], init[k])
    for row in res.runs:
        assert row["status"] == "ok"
        assert row["rho_start"] == row["rho_end"] and row["sigma_start"] == row["sigma_end"]
        assert row["clip_rate"] == 0.0
    # the norms at step 0 are those of a longer run's first record
    longer = train_batch(experiment(sweep={"model.weight_scale": [0.5, 2.0]},
                                    train={"steps": 3, "log_every": 5}).runs())
    first = longer.grad_norms[longer.grad_norms["step"] == 0].reset_index(drop=True)
    pd.testing.assert_frame_equal(res.grad_norms.drop(columns="run_id"),  # ids hash "steps"
                                  first.drop(columns="run_id"), check_exact=True)


# ------------------------------------------------------------------------------- clipping


@pytest.mark.parametrize("mode", ["norm", "value", "step"])
def test_a_tiny_threshold_clips_every_update(mode):
    c = 1e-3
    exp = experiment(sweep={"train.clip.threshold": [None, c]}, train={"clip": {"mode": mode}})
    free, clipped = exp.runs()
    res = train_batch([free, clipped])
    rows = {r["run_id"]: r for r in res.runs}
    assert rows[clipped.run_id]["clip_rate"] == 1.0
    assert rows[free.run_id]["clip_rate"] == 0.0
    m = res.metrics.set_index("run_id")
    assert m.loc[clipped.run_id, "clipped"].all() and not m.loc[free.run_id, "clipped"].any()
    after = m.loc[clipped.run_id, "grad_norm_clipped"]
    before = m.loc[clipped.run_id, "grad_norm"]
    if mode == "norm":
        assert (after <= c * (1 + 1e-9)).all()
        assert (before > c).all()
    elif mode == "value":
        assert (after < before).all()
    else:                       # per-step error clipping: every sequence's delta_t has norm <= c
        g = res.grad_norms[res.grad_norms["run_id"] == clipped.run_id]
        assert (g["ds"] <= c * np.sqrt(8) * (1 + 1e-9)).all()
    # the unclipped run of the batch trains exactly like a run with clipping switched off
    plain = train_batch(experiment(train={"clip": {"mode": "none"}}).runs())
    _, g0, m0 = run_frames(plain, plain.runs[0]["run_id"])
    _, g1, m1 = run_frames(res, free.run_id)
    for x, y in ((g0, g1), (m0, m1)):
        pd.testing.assert_frame_equal(x.drop(columns="run_id"), y.drop(columns="run_id"),
                                      check_exact=False, rtol=1e-10, atol=1e-10)


def test_mode_none_ignores_the_threshold():
    exp = experiment(train={"clip": {"mode": "none", "threshold": 1e-3}})
    res = train_batch(exp.runs())
    assert res.runs[0]["clip_rate"] == 0.0 and not res.metrics["clipped"].any()
    pd.testing.assert_series_equal(res.metrics["grad_norm"], res.metrics["grad_norm_clipped"],
                                   check_names=False)


# ---------------------------------------------------------------------------- learning claims


@pytest.mark.rounding
def test_tanh_rnn_learns_recall_at_T5_but_not_at_T100():
    """Vanilla tanh RNN, hidden 16, batch 16, adam lr 0.02, norm clipping at 1, 100 steps, five
    seeds, accuracy on 500 held-out sequences (chance 0.25). Measured: T = 5 reaches 0.98-0.99
    on every seed (solved within 50-80 steps); with the same budget T = 100 stays at 0.20-0.26.
    About 3-5 s on 2 cores, nearly all of it the T = 100 half."""
    def run(T):
        exp = experiment(repeats=5, model={"hidden": 16, "activation": "tanh"},
                         task={"seq_len": T, "batch": 16, "eval_batch": 500},
                         train={"steps": 100, "log_every": 10, "optimizer": "adam", "lr": 0.02,
                                "clip": {"mode": "norm", "threshold": 1.0}})
        return np.array([r["accuracy"] for r in train_batch(exp.runs()).runs])

    short = run(5)
    assert (short >= 0.95).sum() >= 4, short
    long = run(100)
    assert long.max() < 0.5, long


@pytest.mark.rounding
def test_clipping_keeps_a_weight_scale_3_run_finite_where_the_unclipped_one_diverges():
    """ReLU RNN with a linear head on recall, T = 10, weight scale 3, sgd lr 0.1, 50 steps, three
    seeds: without clipping every run diverges within two steps; the same runs with the global
    norm clipped at 1 stay finite to the end (measured final losses 1.3-28, rho about 3)."""
    exp = experiment(repeats=3, sweep={"train.clip.threshold": [None, 1.0]},
                     model={"hidden": 16, "activation": "relu", "output": "linear",
                            "weight_scale": 3.0},
                     task={"seq_len": 10, "batch": 16, "eval_batch": 200},
                     train={"steps": 50, "log_every": 10, "optimizer": "sgd", "lr": 0.1,
                            "clip": {"mode": "norm"}})
    trainer = Trainer(exp.runs())
    res = trainer.run()
    for spec, row in zip(exp.runs(), res.runs, strict=True):
        if spec.config.train.clip.threshold is None:
            assert row["status"] == "diverged" and row["diverged_step"] <= 5, row
        else:
            assert row["status"] == "ok", row
            assert np.isfinite(row["final_loss"]) and np.isfinite(row["rho_end"])
            assert row["clip_rate"] > 0.5
    for v in trainer.params.values():
        assert np.isfinite(v).all()


@pytest.mark.rounding
def test_lstm_with_forget_bias_3_learns_recall_where_tanh_rnn_and_bias_0_lstm_fail():
    """Recall at T = 30 with Gaussian distractor noise of std 1, hidden 24, batch 32, adam lr 0.02,
    400 steps, 500 held-out sequences (chance 0.25), six seeds. Outcomes of training depend on
    rounding, so the test asserts medians with margins measured over 12 seeds under four
    floating-point stacks (scripts/fpstacks.py: default, sandybridge, prescott, avx2):

    - LSTM, forget bias 3: median of seeds 0-5 0.85-0.99 across stacks (single seeds 0.25-1.0);
    - LSTM, forget bias 0: at chance on every seed and stack (0.21-0.26);
    - tanh RNN: median 0.32-0.40, but single seeds reach 0.68-0.99 on some stacks (seed 7 solved
      the task under one of them), so nothing is asserted about any one seed.
    """
    common = dict(task={"seq_len": 30, "batch": 32, "eval_batch": 500, "noise": 1.0},
                  train={"steps": 400, "log_every": 50, "optimizer": "adam", "lr": 0.02})
    lstm = experiment(model={"hidden": 24, "cell": "lstm"}, repeats=6,
                      sweep={"model.forget_bias": [0.0, 3.0]}, **common)
    acc: dict = {0.0: [], 3.0: []}
    for r in train_batch(lstm.runs()).runs:
        acc[r["model.forget_bias"]].append(r["accuracy"])
    assert np.median(acc[3.0]) >= 0.75, acc
    assert max(acc[0.0]) < 0.35, acc
    rnn = experiment(model={"hidden": 24, "cell": "rnn"}, repeats=6, **common)
    rnn_acc = [r["accuracy"] for r in train_batch(rnn.runs()).runs]
    assert np.median(rnn_acc) < 0.6 and np.median(rnn_acc) < np.median(acc[3.0]) - 0.25, \
        (rnn_acc, acc)


def test_evaluation_in_chunks_of_runs_gives_the_same_numbers_bit_for_bit(monkeypatch):
    """The held-out batch is evaluated a few runs at a time under EVAL_BUDGET bytes; a budget
    that forces one run per chunk changes nothing in the results."""
    import rnnlab.run.train as train
    exp = experiment(repeats=3, sweep={"model.weight_scale": [0.5, 1.5]},
                     task={"seq_len": 6, "batch": 8, "eval_batch": 50})
    whole = train_batch(exp.runs()).runs
    monkeypatch.setattr(train, "EVAL_BUDGET", 1)
    calls = []
    real_forward = train.forward

    def spy(params, *a, **kw):
        calls.append(params["Ws"].shape[0])
        return real_forward(params, *a, **kw)
    monkeypatch.setattr(train, "forward", spy)
    chunked = train_batch(exp.runs()).runs
    assert calls[-6:] == [1] * 6                   # the final evaluation: one run per call
    for a, b in zip(whole, chunked, strict=True):
        assert (a["final_loss"], a["accuracy"]) == (b["final_loss"], b["accuracy"])


def test_steps_to_solve_is_the_first_logged_step_solved_on_held_out_data(monkeypatch):
    exp = experiment(repeats=4, sweep={"task.seq_len": [3, 12]},
                     model={"hidden": 16}, task={"batch": 16, "eval_batch": 200},
                     train={"steps": 60, "log_every": 5, "lr": 0.03})
    rows = train_batch(exp.runs()).runs
    assert any(r["solved"] for r in rows), rows
    for r in rows:
        if r["steps_to_solve"] is not None:
            assert 0 <= r["steps_to_solve"] <= 60 and r["steps_to_solve"] % 5 == 0
        if r["solved"]:
            assert r["steps_to_solve"] is not None
    # a run that met the criterion and lost it by the end keeps the step it first met it
    trainer = Trainer(exp.runs())
    real = trainer.evaluate

    def lost_at_the_end(runs=None, **kw):
        loss, acc, *rest = real(runs, **kw)
        if runs is None:
            acc = np.zeros_like(acc)
        return (loss, acc, *rest)

    monkeypatch.setattr(trainer, "evaluate", lost_at_the_end)
    lost = trainer.run().runs
    assert not any(r["solved"] for r in lost)
    assert [r["steps_to_solve"] for r in lost] == [r["steps_to_solve"] for r in rows]


def test_held_out_checks_during_training_change_no_number(monkeypatch):
    """The held-out set is drawn from the run's eval seed at every call: checking it at logged
    steps changes neither the trajectory nor the final evaluation."""
    exp = experiment(repeats=2, model={"hidden": 16}, task={"batch": 16, "eval_batch": 100},
                     train={"steps": 40, "log_every": 5, "lr": 0.03})
    checked = train_batch(exp.runs()).runs
    monkeypatch.setattr(Trainer, "_first_solved", lambda self, rec, step, solved_at: None)
    plain = train_batch(exp.runs()).runs
    for a, b in zip(checked, plain, strict=True):
        assert a["final_loss"] == b["final_loss"] and a["accuracy"] == b["accuracy"]
    trainer = Trainer(exp.runs())
    first, again = trainer.evaluate(), trainer.evaluate()
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(trainer.evaluate([1])[0], first[0][1:])


def test_a_finite_loss_far_above_the_baseline_counts_as_exploded(monkeypatch):
    exp = experiment(repeats=2, train={"steps": 2, "log_every": 1})
    trainer = Trainer(exp.runs())
    real = trainer.evaluate

    def huge(runs=None, **kw):
        out = real(runs, **kw)
        if runs is None:
            out[0][0] = 1e6 * trainer.task.baseline["loss"] * 1.01
        return out

    monkeypatch.setattr(trainer, "evaluate", huge)
    rows = trainer.run().runs
    assert rows[0]["status"] == "exploded" and rows[0]["final_loss"] > 7e5
    assert not rows[0]["solved"] and rows[0]["steps_to_solve"] is None
    assert rows[1]["status"] == "ok"


def test_the_bound_exists_only_where_the_loss_is_at_the_last_step():
    last = train_batch(experiment(train={"steps": 2, "log_every": 1}).runs()).runs[0]
    assert last["decay_bound"] is not None and last["decay_bound_end"] is not None
    assert last["last_step"] == 2
    every = train_batch(experiment(train={"steps": 2, "log_every": 1, "loss_at": "all"})
                        .runs()).runs[0]
    assert every["decay_bound"] is None and every["decay_bound_end"] is None


def test_adding_runs_record_the_published_criteria_on_the_held_out_set():
    from rnnlab.analysis.summarize import summarize
    from rnnlab.run.train import build_task, eval_seed

    exp = experiment(repeats=3, task={"name": "adding", "seq_len": 6})
    trainer = Trainer(exp.runs())
    res = trainer.run()
    task = build_task(exp.runs()[0].config)
    # the same held-out outputs as accuracy: recompute them for run 0
    x, d = task.sample(np.random.default_rng(eval_seed(exp.runs()[0].seed)), 64)
    out = forward({k: v[0] for k, v in trainer.params.items()}, x, d, **trainer.kw).outputs
    row = res.runs[0]
    assert row["accuracy"] == pytest.approx(task.accuracy(out, d))
    crit = task.criteria(out, d)
    assert row["accuracy_hs"] == pytest.approx(crit["accuracy_hs"])
    assert row["accuracy_pascanu"] == pytest.approx(crit["accuracy_pascanu"])
    assert row["accuracy"] <= row["accuracy_hs"] <= row["accuracy_pascanu"]
    table = summarize(pd.DataFrame(res.runs), res.grad_norms, by=[])
    assert [c for c in table.columns if c.startswith("acc_")] == [
        "acc_lo", "acc_hi", "acc_hs", "acc_hs_lo", "acc_hs_hi",
        "acc_pascanu", "acc_pascanu_lo", "acc_pascanu_hi"]
    assert table["acc_hs"][0] == pytest.approx(np.mean([r["accuracy_hs"] for r in res.runs]))
    # recall: the columns exist in the rows but are null, and the summary keeps its columns
    rec = Trainer(experiment().runs()).run()
    assert rec.runs[0]["accuracy_hs"] is None and rec.runs[0]["accuracy_pascanu"] is None
    assert "acc_hs" not in summarize(pd.DataFrame(rec.runs), rec.grad_norms, by=[]).columns


def test_copy_scored_as_arjovsky_is_the_summed_loss_over_the_steps():
    """scoring: arjovsky trains on the ce averaged over the T + 2 copy_len steps: the same
    weights as the summed loss with lr / n under SGD, and every loss and norm divided by n."""
    T, L = 4, 2
    n = T + 2 * L
    common = dict(task={"name": "copy", "seq_len": T, "copy_len": L, "symbols": 3},
                  train={"optimizer": "sgd", "lr": 0.5, "steps": 4, "log_every": 1,
                         "clip": {"mode": "none"}})
    ours = Trainer(experiment(**common).runs()).run()
    common["task"]["scoring"] = "arjovsky"
    common["train"]["lr"] = 0.5 * n
    theirs = Trainer(experiment(**common).runs()).run()
    a, b = ours.metrics, theirs.metrics
    np.testing.assert_allclose(b["loss"], a["loss"] / n, rtol=1e-10)
    np.testing.assert_allclose(b["grad_norm"], a["grad_norm"] / n, rtol=1e-10)
    np.testing.assert_allclose(theirs.grad_norms["ds"], ours.grad_norms["ds"] / n, rtol=1e-10)
    assert theirs.runs[0]["final_loss"] == pytest.approx(ours.runs[0]["final_loss"] / n,
                                                         rel=1e-10)
    # accuracy over all steps is at least the blank-dominated share, above the copied symbols'
    assert theirs.runs[0]["accuracy"] >= ours.runs[0]["accuracy"]


def test_length_jitter_trains_on_each_steps_length_and_batching_changes_no_bit():
    exp = experiment(repeats=3, task={"name": "adding", "seq_len": 30, "batch": 8,
                                      "eval_batch": 50, "jitter": 0.1, "placement": "pascanu",
                                      "target": "mean"},
                     model={"hidden": 8}, train={"steps": 12, "log_every": 1})
    specs = exp.runs()
    together = train_batch(specs)
    task = Trainer(specs).task
    lengths = {step: task.training_length(step) for step in range(13)}
    assert set(lengths.values()) == {30, 31, 32}
    g = together.grad_norms
    got = g.groupby(["run_id", "step"])["t"].max()
    for (_, step), T in got.items():
        assert T == lengths[step]                          # each logged step at its own length
    for spec in specs:                                      # alone: the same numbers, bit for bit
        alone = train_batch([spec])
        row = next(r for r in together.runs if r["run_id"] == spec.run_id)
        assert alone.runs[0]["final_loss"] == row["final_loss"]
        mine = g[g["run_id"] == spec.run_id].reset_index(drop=True)
        pd.testing.assert_frame_equal(alone.grad_norms.reset_index(drop=True), mine)
    plain = experiment(task={"name": "adding", "seq_len": 30})
    assert plain.runs()[0].run_id != experiment(
        task={"name": "adding", "seq_len": 30, "jitter": 0.1}).runs()[0].run_id
