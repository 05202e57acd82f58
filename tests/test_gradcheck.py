"""Finite-difference checks of every engine configuration (float64, max relative error < 1e-6)."""

import itertools

import pytest

from rnnlab.engine.gradcheck import check

HEADS = [("softmax", "mse"), ("softmax", "ce"), ("linear", "mse")]
CONFIGS = [("rnn", a) for a in ("tanh", "relu", "sigmoid", "identity")] + [("lstm", "tanh"),
                                                                          ("gru", "tanh")]
VARIANTS = {  # name: (truncate, clip_step, runs)
    "exact": (None, None, None),
    "truncate": (3, None, None),
    "clip_step": (None, 0.05, None),
    "truncate+clip": (2, 0.05, None),
    "runs": (None, None, 3),
    "runs+truncate+clip": (3, 0.05, 2),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("loss_at", ["last", "all"])
@pytest.mark.parametrize("head", HEADS, ids=lambda h: "/".join(h))
@pytest.mark.parametrize("cell_act", CONFIGS, ids=lambda c: "-".join(c))
def test_finite_differences(cell_act, head, loss_at, variant):
    cell, activation = cell_act
    output, loss = head
    truncate, clip_step, runs = VARIANTS[variant]
    res = check(cell=cell, activation=activation, output=output, loss=loss, loss_at=loss_at,
                truncate=truncate, clip_step=clip_step, runs=runs, seq_len=6, scale=1.3)
    assert res.ok, res.errors


def test_clipping_is_active_in_the_clip_variants():
    """The clip_step checks above must actually clip, or they would test nothing new."""
    import numpy as np

    from rnnlab.engine import bptt, init_params

    rng = np.random.default_rng(0)
    p = init_params(rng, input_size=3, hidden=4, output_size=3, scale=1.3)
    x = rng.standard_normal((6, 3, 3))
    d = np.eye(3)[rng.integers(0, 3, (6, 3))]
    res = bptt(p, x, d, clip_step=0.05, loss_at="all")
    assert (res.extra["clip_factors"] < 1).any()


def test_check_detects_a_wrong_gradient(monkeypatch):
    """The checker itself can fail: corrupt the engine's Ws gradient and it must say so."""
    import rnnlab.engine.gradcheck as gc

    real = gc.bptt

    def broken(*a, **k):
        res = real(*a, **k)
        res.grads["Ws"] = res.grads["Ws"] * 1.001
        return res

    monkeypatch.setattr(gc, "bptt", broken)
    res = check()
    assert not res.ok and res.errors["Ws"] > 1e-4


@pytest.mark.parametrize("cell,truncate",
                         list(itertools.product(["rnn", "lstm", "gru"], [1, 5, 100])))
def test_truncation_extremes(cell, truncate):
    res = check(cell=cell, loss_at="all", truncate=truncate, seq_len=5)
    assert res.ok, res.errors


@pytest.mark.parametrize("batch,hidden", [(1, 8), (2, 12), (9, 3)])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_shapes_on_both_sides_of_the_term_norm_threshold_pass_finite_differences(cell, batch,
                                                                                hidden):
    """Few sequences and many units (Gram matrices for the term norms), many sequences and few
    units (the terms themselves), one sequence: the gradients pass either way."""
    res = check(cell=cell, batch=batch, hidden=hidden, seq_len=5)
    assert res.ok, res.errors


@pytest.mark.parametrize("block", ["reset", "update", "candidate", "bn"])
def test_gru_gradient_of_every_gate_is_checked(monkeypatch, block):
    """Each GRU gate's gradient block is checked on its own: corrupting one H-column block of
    Ws (or the reset bias b_hn) must fail the check."""
    import rnnlab.engine.gradcheck as gc

    real = gc.bptt
    H = 4

    def broken(*a, **k):
        res = real(*a, **k)
        if block == "bn":
            res.grads["bn"] = res.grads["bn"] * 1.001
        else:
            j = ["reset", "update", "candidate"].index(block)
            res.grads["Ws"][..., j * H:(j + 1) * H] *= 1.001
        return res

    monkeypatch.setattr(gc, "bptt", broken)
    res = check(cell="gru", hidden=H, scale=1.3)
    key = "bn" if block == "bn" else "Ws"
    assert not res.ok and res.errors[key] > 1e-4


def test_a_check_of_zeros_tests_nothing_and_fails():
    """A saturated configuration (identity activation, scale 2, T = 40: softmax at 0 or 1) has
    only zero gradients: the relative errors are 0 against 0, which must not read as a pass."""
    from rnnlab.engine.gradcheck import check

    res = check(activation="identity", scale=2.0, seq_len=40)
    assert res.vacuous and not res.ok and not any(res.scales.values())
    fine = check()
    assert fine.ok and not fine.vacuous and all(v > 0 for v in fine.scales.values())
    from conftest import invoke
    run = invoke("gradcheck", "--activation", "identity", "--scale", "2", "--seq-len", "40")
    assert run.exit_code == 1 and "tested nothing" in run.stderr
