"""Tests for rnnlab.engine.optim: hand-computed updates, Adam vs Kingma & Ba, per-run
hyper-parameters, the ``active`` mask and purity."""

import copy
import math
import warnings

import numpy as np
import pytest

from rnnlab.engine.optim import OPTIMIZERS, init_state, step


def scalar_params(value=1.0, R=1):
    """One-element parameters so that updates can be computed by hand."""
    return {"w": np.full((R, 1), value)}


def grads_of(value, R=1):
    return {"w": np.full((R, 1), value)}


def run_params(R=3, seed=0):
    g = np.random.default_rng(seed)
    shapes = {"Wx": (R, 2, 3), "Ws": (R, 3, 3), "Wy": (R, 3, 2), "b": (R, 3), "by": (R, 2)}
    return {k: g.standard_normal(s) for k, s in shapes.items()}


def w(params):
    return float(params["w"][0, 0])


# ------------------------------------------------------------------------------------------
# hand-computed steps: p = 1, g = 0.5, lr = 0.1


def test_sgd_by_hand():
    p, s = step("sgd", scalar_params(), grads_of(0.5), init_state("sgd", scalar_params()), lr=0.1)
    assert w(p) == pytest.approx(0.95, abs=1e-15)
    assert s == {}


def test_momentum_two_steps_by_hand():
    p0 = scalar_params()
    s = init_state("momentum", p0)
    p1, s = step("momentum", p0, grads_of(0.5), s, lr=0.1, momentum=0.9)
    assert float(s["v"]["w"][0, 0]) == pytest.approx(0.5)  # v = 0.9 * 0 + 0.5
    assert w(p1) == pytest.approx(0.95)  # 1 - 0.1 * 0.5
    p2, s = step("momentum", p1, grads_of(0.5), s, lr=0.1, momentum=0.9)
    assert float(s["v"]["w"][0, 0]) == pytest.approx(0.95)  # 0.9 * 0.5 + 0.5
    assert w(p2) == pytest.approx(0.855)  # 0.95 - 0.1 * 0.95


def test_nesterov_two_steps_by_hand():
    p0 = scalar_params()
    s = init_state("momentum", p0)
    p1, s = step("momentum", p0, grads_of(0.5), s, lr=0.1, momentum=0.9, nesterov=True)
    assert w(p1) == pytest.approx(0.905)  # 1 - 0.1 * (0.5 + 0.9 * 0.5)
    p2, s = step("momentum", p1, grads_of(0.5), s, lr=0.1, momentum=0.9, nesterov=True)
    assert float(s["v"]["w"][0, 0]) == pytest.approx(0.95)
    assert w(p2) == pytest.approx(0.7695)  # 0.905 - 0.1 * (0.5 + 0.9 * 0.95)


def test_adagrad_two_steps_by_hand():
    p0 = scalar_params()
    s = init_state("adagrad", p0)
    p1, s = step("adagrad", p0, grads_of(0.5), s, lr=0.1, eps=1e-8)
    assert float(s["m"]["w"][0, 0]) == pytest.approx(0.25)
    assert w(p1) == pytest.approx(1 - 0.05 / math.sqrt(0.25 + 1e-8), abs=1e-15)
    p2, s = step("adagrad", p1, grads_of(0.5), s, lr=0.1, eps=1e-8)
    assert float(s["m"]["w"][0, 0]) == pytest.approx(0.5)
    assert w(p2) == pytest.approx(w(p1) - 0.05 / math.sqrt(0.5 + 1e-8), abs=1e-15)
    # eps is the one inside the square root: a large eps visibly damps the step
    p3, _ = step("adagrad", p0, grads_of(0.5), init_state("adagrad", p0), lr=0.1, eps=0.75)
    assert w(p3) == pytest.approx(1 - 0.05 / 1.0)


def test_adam_two_steps_by_hand():
    p0 = scalar_params()
    s = init_state("adam", p0)
    assert s["t"].shape == (1,) and s["t"][0] == 0
    p1, s = step("adam", p0, grads_of(0.5), s, lr=0.1, eps=0.0)
    # first step: mhat = g, vhat = g^2, so the step is lr * sign(g)
    assert w(p1) == pytest.approx(0.9, abs=1e-15)
    assert float(s["m"]["w"][0, 0]) == pytest.approx(0.05)
    assert float(s["v"]["w"][0, 0]) == pytest.approx(0.00025)
    assert s["t"][0] == 1
    p2, s = step("adam", p1, grads_of(-0.25), s, lr=0.1, eps=0.0)
    m, v = 0.9 * 0.05 + 0.1 * -0.25, 0.999 * 0.00025 + 0.001 * 0.0625
    assert float(s["m"]["w"][0, 0]) == pytest.approx(m)  # 0.02
    assert float(s["v"]["w"][0, 0]) == pytest.approx(v)  # 0.00031225
    mhat, vhat = m / (1 - 0.9**2), v / (1 - 0.999**2)
    assert w(p2) == pytest.approx(0.9 - 0.1 * mhat / math.sqrt(vhat), abs=1e-14)
    assert w(p2) == pytest.approx(0.9 - 0.1 * 0.2663366, abs=1e-7)
    assert s["t"][0] == 2


def adam_reference(p, grads, lr, b1, b2, eps):
    """Kingma & Ba (2015), Algorithm 1, element by element in plain Python floats."""
    p = list(p)
    m = [0.0] * len(p)
    v = [0.0] * len(p)
    for t, g in enumerate(grads, start=1):
        for i in range(len(p)):
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
            mhat = m[i] / (1 - b1**t)
            vhat = v[i] / (1 - b2**t)
            p[i] = p[i] - lr * mhat / (math.sqrt(vhat) + eps)
    return p


def test_adam_matches_published_algorithm():
    g = np.random.default_rng(1)
    p0 = g.standard_normal(5)
    gs = g.standard_normal((6, 5))
    lr, b1, b2, eps = 0.01, 0.8, 0.99, 1e-3
    expected = adam_reference(p0, gs, lr, b1, b2, eps)
    params = {"w": p0[None, :].copy()}
    s = init_state("adam", params)
    for gt in gs:
        params, s = step("adam", params, {"w": gt[None, :]}, s, lr=lr, beta1=b1, beta2=b2,
                         eps=eps)
    np.testing.assert_allclose(params["w"][0], expected, rtol=1e-12, atol=1e-14)
    # the paper's efficient form (sec. 2) agrees when eps = 0:
    # alpha_t = lr sqrt(1 - b2^t) / (1 - b1^t);  p <- p - alpha_t m / sqrt(v)
    params = {"w": p0[None, :].copy()}
    s = init_state("adam", params)
    p, m, v = p0.copy(), np.zeros(5), np.zeros(5)
    for t, gt in enumerate(gs, start=1):
        params, s = step("adam", params, {"w": gt[None, :]}, s, lr=lr, beta1=b1, beta2=b2, eps=0)
        m = b1 * m + (1 - b1) * gt
        v = b2 * v + (1 - b2) * gt**2
        p = p - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / np.sqrt(v)
    np.testing.assert_allclose(params["w"][0], p, rtol=1e-12)


# ------------------------------------------------------------------------------------------
# per-run hyper-parameters


HYPERS = {  # per-run hyper-parameters exercised by each optimiser, as (R,) = 3 values
    "sgd": {"lr": [0.1, 0.01, 0.5]},
    "momentum": {"lr": [0.1, 0.01, 0.5], "momentum": [0.0, 0.5, 0.99]},
    "adagrad": {"lr": [0.1, 0.01, 0.5], "eps": [1e-8, 1e-2, 1.0]},
    "adam": {"lr": [0.1, 0.01, 0.5], "beta1": [0.0, 0.5, 0.9], "beta2": [0.9, 0.99, 0.999],
             "eps": [1e-8, 1e-4, 1e-1]},
}


@pytest.mark.parametrize("name,nesterov", [(n, False) for n in OPTIMIZERS] + [("momentum", True)])
def test_per_run_hyperparameters(name, nesterov):
    R = 3
    params = run_params(R)
    g = np.random.default_rng(2)
    grads_seq = [{k: g.standard_normal(p.shape) for k, p in params.items()} for _ in range(3)]
    hyp = {k: np.array(v) for k, v in HYPERS[name].items()}
    lr = hyp.pop("lr")
    pv, sv = params, init_state(name, params)
    for grads in grads_seq:
        pv, sv = step(name, pv, grads, sv, lr=lr, nesterov=nesterov, **hyp)
    for r in range(R):
        pr = {k: p[r:r + 1] for k, p in params.items()}
        sr = init_state(name, pr)
        for grads in grads_seq:
            gr = {k: gg[r:r + 1] for k, gg in grads.items()}
            pr, sr = step(name, pr, gr, sr, lr=float(lr[r]), nesterov=nesterov,
                          **{k: float(v[r]) for k, v in hyp.items()})
        for k in params:
            np.testing.assert_allclose(pv[k][r:r + 1], pr[k], rtol=1e-13, atol=1e-15)
    # and the runs really differ: lr matters
    assert not np.allclose(pv["Ws"][0] - params["Ws"][0], pv["Ws"][1] - params["Ws"][1])


def test_hyperparameter_shape_checked():
    params = run_params(3)
    grads = {k: np.ones_like(p) for k, p in params.items()}
    with pytest.raises(ValueError, match="lr"):
        step("sgd", params, grads, {}, lr=np.array([0.1, 0.2]))


# ------------------------------------------------------------------------------------------
# active mask, purity, dtypes, errors


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_active_mask_freezes_runs(name):
    R = 3
    params = run_params(R)
    g = np.random.default_rng(3)
    grads = {k: g.standard_normal(p.shape) for k, p in params.items()}
    state = init_state(name, params)
    params, state = step(name, params, grads, state, lr=0.1)  # non-trivial state first
    active = np.array([True, False, True])
    bad = {k: gg.copy() for k, gg in grads.items()}
    for gg in bad.values():
        gg[1] = np.nan  # a diverged run: NaN gradients must not leak or warn
    full_p, full_s = step(name, params, grads, state, lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new_p, new_s = step(name, params, bad, state, lr=0.1, active=active)
    for k in params:
        np.testing.assert_array_equal(new_p[k][1], params[k][1])
        np.testing.assert_array_equal(new_p[k][[0, 2]], full_p[k][[0, 2]])
        for slot in new_s:
            if slot == "t":
                continue
            np.testing.assert_array_equal(new_s[slot][k][1], state[slot][k][1])
            np.testing.assert_array_equal(new_s[slot][k][[0, 2]], full_s[slot][k][[0, 2]])
    if name == "adam":
        np.testing.assert_array_equal(new_s["t"], [2, 1, 2])


def test_active_mask_with_nonfinite_frozen_params():
    params = {"w": np.array([[1.0], [np.inf]])}
    state = init_state("adam", params)
    state["m"]["w"][1] = np.inf
    state["v"]["w"][1] = np.inf  # inf / inf in the frozen run would warn "invalid value"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new_p, new_s = step("adam", params, {"w": np.array([[0.5], [1.0]])}, state, lr=0.1,
                            active=np.array([True, False]))
    assert new_p["w"][0, 0] == pytest.approx(0.9) and new_p["w"][1, 0] == np.inf
    np.testing.assert_array_equal(new_s["t"], [1, 0])


def test_active_mask_checked():
    params = run_params(3)
    grads = {k: np.ones_like(p) for k, p in params.items()}
    with pytest.raises(ValueError, match="active"):
        step("sgd", params, grads, {}, lr=0.1, active=np.array([1, 0, 1]))
    with pytest.raises(ValueError, match="active"):
        step("sgd", params, grads, {}, lr=0.1, active=np.array([True, False]))


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("masked", [False, True])
def test_inputs_not_mutated(name, masked):
    params = run_params(3)
    g = np.random.default_rng(4)
    grads = {k: g.standard_normal(p.shape) for k, p in params.items()}
    state = init_state(name, params)
    params, state = step(name, params, grads, state, lr=0.1)
    before = copy.deepcopy((params, grads, state))
    active = np.array([True, False, True]) if masked else None
    new_p, new_s = step(name, params, grads, state, lr=0.1, nesterov=True, active=active)
    for a, b in zip((params, grads), before[:2], strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    for slot in state:
        if slot == "t":
            np.testing.assert_array_equal(state["t"], before[2]["t"])
            assert not np.shares_memory(new_s["t"], state["t"])
            continue
        for k in state[slot]:
            np.testing.assert_array_equal(state[slot][k], before[2][slot][k])
            assert not np.shares_memory(new_s[slot][k], state[slot][k])
    for k in params:
        assert not np.shares_memory(new_p[k], params[k])
        assert not np.array_equal(new_p[k][0], params[k][0])


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_dtype_preserved(name):
    params = {k: p.astype(np.float32) for k, p in run_params(2).items()}
    grads = {k: np.ones_like(p) for k, p in params.items()}
    state = init_state(name, params)
    new_p, new_s = step(name, params, grads, state, lr=np.array([0.1, 0.2]))
    assert all(p.dtype == np.float32 for p in new_p.values())
    for slot, val in new_s.items():
        if slot != "t":
            assert all(a.dtype == np.float32 for a in val.values())


def test_init_state_layout():
    params = run_params(4)
    assert init_state("sgd", params) == {}
    s = init_state("adam", params)
    assert set(s) == {"m", "v", "t"} and s["t"].shape == (4,) and s["t"].dtype == np.int64
    for slot in ("m", "v"):
        assert all(s[slot][k].shape == params[k].shape and not s[slot][k].any() for k in params)
    assert set(init_state("momentum", params)) == {"v"}
    assert set(init_state("adagrad", params)) == {"m"}


def test_unknown_optimizer():
    params = run_params(2)
    with pytest.raises(ValueError, match=r"'rmsprop'.*sgd, momentum, adagrad, adam"):
        init_state("rmsprop", params)
    with pytest.raises(ValueError, match=r"'rmsprop'.*sgd, momentum, adagrad, adam"):
        step("rmsprop", params, params, {}, lr=0.1)


def test_mismatched_grads_rejected():
    params = run_params(2)
    with pytest.raises(ValueError, match="grads"):
        step("sgd", params, {"Wx": params["Wx"]}, {}, lr=0.1)
    bad = dict(params, b=params["b"][:, :2])
    with pytest.raises(ValueError, match="grads"):
        step("sgd", params, bad, {}, lr=0.1)
