"""Lyapunov exponents and Jacobian-product spectra (rnnlab.engine.lyapunov): known answers,
finite differences, the explicit product, the run axis."""

import numpy as np
import pytest

from rnnlab.engine import bptt, init_params
from rnnlab.engine.init import orthogonal
from rnnlab.engine.lyapunov import LN10, lyapunov, step_jacobian


def net(rng, cell, H=5, I=3, scale=1.0, noise=0.1):
    p = init_params(rng, cell=cell, input_size=I, hidden=H, output_size=2, scale=scale)
    return {k: v + noise * rng.standard_normal(v.shape) for k, v in p.items()}


def linear_net(Ws, I=2):
    H = Ws.shape[0]
    return {"Wx": np.zeros((I, H)), "Ws": Ws}


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.7])
def test_linear_rnn_with_scaled_orthogonal_weights_has_every_exponent_log_sigma(sigma):
    """phi = identity, Ws = sigma Q: J_t = sigma Q^T, every singular value of any product of k
    steps is sigma^k, so every exponent is log sigma (whatever the inputs)."""
    rng = np.random.default_rng(1)
    H = 6
    p = linear_net(sigma * orthogonal(rng, H))
    p["Wx"] = rng.standard_normal((2, H))
    x = rng.standard_normal((25, 3, 2))
    res = lyapunov(p, x, activation="identity", exponents=H, window=7)
    np.testing.assert_allclose(res.exponents, np.log(sigma), rtol=0, atol=1e-13)
    np.testing.assert_allclose(res.decades, np.log10(sigma), rtol=0, atol=1e-13)
    np.testing.assert_allclose(res.log_sv, 7 * np.log(sigma), rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.log_sv_per_step, np.log(sigma), rtol=0, atol=1e-13)


def test_linear_rnn_with_diagonal_weights_has_the_logs_of_the_entries():
    """phi = identity, Ws diagonal: the exponents are log |Ws_ii|, sorted. With m = D their sum is
    exact at any T; each one is exact up to the O(1/T) transient of the start frame, and the top m
    are found even when the largest entries are the last ones."""
    w = np.array([0.3, -0.5, 0.8, 1.2, -2.0])
    want = np.sort(np.log(np.abs(w)))[::-1]
    p = linear_net(np.diag(w))
    x = np.zeros((4000, 2, 2))
    res = lyapunov(p, x, activation="identity", exponents=5, window=0)
    assert res.log_sv is None
    assert res.exponents.sum() == pytest.approx(np.log(np.abs(w)).sum(), abs=1e-12)
    np.testing.assert_allclose(res.exponents, want, atol=2e-3)
    top2 = lyapunov(p, x, activation="identity", exponents=2).exponents
    np.testing.assert_allclose(top2, want[:2], atol=2e-3)
    # the product over the last k steps: exactly k log |w_i|
    short = lyapunov(p, x[:10], activation="identity", exponents=2, window=10)
    np.testing.assert_allclose(short.log_sv, 10 * want, atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_jacobian_matches_finite_differences_of_the_state_map(cell):
    rng = np.random.default_rng(2)
    H, I, B = 4, 3, 2
    p = {k: v[None] for k, v in net(rng, cell, H=H, I=I, scale=1.3).items()}
    D = 2 * H if cell == "lstm" else H
    x_t = rng.standard_normal((1, B, I))
    u = 0.7 * rng.standard_normal((1, B, D))
    _, J = step_jacobian(cell, p, x_t, u)
    assert J.shape == (1, B, D, D)
    eps = 1e-6
    num = np.empty_like(J)
    for i in range(D):
        e = np.zeros(D)
        e[i] = eps
        up = step_jacobian(cell, p, x_t, u + e, jacobian=False)[0]
        um = step_jacobian(cell, p, x_t, u - e, jacobian=False)[0]
        num[..., :, i] = (up - um) / (2 * eps)
    np.testing.assert_allclose(J, num, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_structured_product_equals_the_explicit_jacobian_times_vectors(cell):
    """The algorithm never forms J_t: its J_t V (column layout (R, D, B, c)) equals the explicit
    matrix times V."""
    from rnnlab.engine.lyapunov import _apply, _explicit, _step

    rng = np.random.default_rng(12)
    runs = [net(rng, cell, scale=1.4) for _ in range(2)]
    p = {k: np.stack([r[k] for r in runs]) for k in runs[0]}
    D = 10 if cell == "lstm" else 5
    x_t, u = rng.standard_normal((2, 3, 3)), 0.5 * rng.standard_normal((2, 3, D))
    _, fac = _step(cell, p, x_t, u, "tanh")
    J = _explicit(cell, p["Ws"], fac, np.float64)
    V = rng.standard_normal((2, D, 3, 4))
    got = _apply(cell, np.ascontiguousarray(p["Ws"].swapaxes(-1, -2)),
                 {k: v.swapaxes(1, 2)[..., None] for k, v in fac.items()}, V)
    want = np.einsum("rbij,rjbc->ribc", J, V)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "identity"])
def test_rnn_jacobian_is_ws_with_columns_scaled_by_phi_prime(activation):
    rng = np.random.default_rng(3)
    p = {k: v[None] for k, v in net(rng, "rnn").items()}
    x_t, u = rng.standard_normal((1, 2, 3)), rng.standard_normal((1, 2, 5))
    s, J = step_jacobian("rnn", p, x_t, u, activation)
    z = x_t @ p["Wx"] + p["b"][:, None] + u @ p["Ws"]
    dphi = {"tanh": 1 - np.tanh(z) ** 2, "relu": (z > 0) * 1.0,
            "sigmoid": (1 / (1 + np.exp(-z))) * (1 - 1 / (1 + np.exp(-z))),
            "identity": np.ones_like(z)}[activation]
    for b in range(2):   # row convention Ws diag(phi'): its transpose is our J
        np.testing.assert_allclose(J[0, b], (p["Ws"][0] * dphi[0, b][None, :]).T, rtol=1e-12,
                                   atol=1e-15)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_trajectory_is_the_engines_forward_pass(cell):
    rng = np.random.default_rng(4)
    p = net(rng, cell)
    x = rng.standard_normal((9, 3, 3))
    s0 = 0.5 * rng.standard_normal((3, 5))
    c0 = rng.standard_normal((3, 5)) if cell == "lstm" else None
    d = np.eye(2)[rng.integers(0, 2, (9, 3))]
    res = lyapunov(p, x, cell=cell, s0=s0, c0=c0)
    eng = bptt(p, x, d, cell=cell, s0=s0, c0=c0)
    np.testing.assert_allclose(res.states[..., :5], eng.states, rtol=0, atol=1e-14)
    if cell == "lstm":
        np.testing.assert_allclose(res.states[..., 5:], eng.cells, rtol=0, atol=1e-14)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_product_spectrum_is_the_svd_of_the_explicit_product(cell, k):
    """Short products: log sigma_i of the rows of s of J_T ... J_{T-k+1} (the error enters at
    the loss step through s only: for the lstm the H x 2H block, else all of it), multiplied out
    and decomposed directly, per sequence, then averaged over the sequences. And the exact
    identity between the two algorithms where the product is square (D = H): with m = D and
    k = T, T * sum(exponents) = sum_i log sigma_i (= log |det P|)."""
    rng = np.random.default_rng(5)
    p = net(rng, cell, scale=1.2)
    T, B = 6, 3
    x = rng.standard_normal((T, B, 3))
    res = lyapunov(p, x, cell=cell, window=k, exponents=2)
    pr = {key: v[None] for key, v in p.items()}
    D = 10 if cell == "lstm" else 5
    u = np.zeros((1, B, D))
    Js = []
    for t in range(T):
        u, J = step_jacobian(cell, pr, x[None, t], u)
        Js.append(J[0])
    P = np.broadcast_to(np.eye(D), (B, D, D))
    for J in Js[T - k:]:
        P = J @ P
    want = np.log(np.linalg.svd(P[:, :5], compute_uv=False)).mean(axis=0)
    assert res.log_sv.shape == (5,)
    # an SVD resolves sigma_i to ~eps sigma_1 absolutely, so log sigma_i to ~eps sigma_1/sigma_i
    # (the lstm's contracting cell directions reach 1e-8 of the largest here)
    tol = 1e-12 * np.exp(want[0] - want)
    assert np.all(np.abs(res.log_sv - want) <= tol), (res.log_sv - want, tol)
    if cell == "lstm":
        return
    full = lyapunov(p, x, cell=cell, window=T, exponents=D)
    np.testing.assert_allclose(T * full.exponents.sum(), full.log_sv.sum(), rtol=0,
                               atol=1e-12 * np.exp(full.log_sv[0] - full.log_sv).sum())


def test_top_exponent_approaches_the_top_singular_value_rate_of_long_products():
    """lambda_1 and log sigma_1(P_T) / T agree up to O(1/T) on a long trajectory."""
    rng = np.random.default_rng(6)
    p = net(rng, "rnn", H=8, scale=1.5)
    x = rng.standard_normal((400, 2, 3))
    res = lyapunov(p, x, exponents=3)
    assert abs(res.exponents[0] - res.log_sv_per_step[0]) < 0.02
    assert np.all(np.diff(res.exponents) <= 0)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_run_axis_equals_one_run_at_a_time_bit_for_bit(cell):
    rng = np.random.default_rng(7)
    runs = [net(rng, cell, scale=s) for s in (0.5, 1.0, 2.0, 3.0)]
    x = [rng.standard_normal((12, 4, 3)) for _ in runs]
    P = {k: np.stack([r[k] for r in runs]) for k in runs[0]}
    batch = lyapunov(P, np.stack(x), cell=cell, window=4, exponents=3)
    assert batch.exponents.shape == (4, 3) and batch.log_sv.shape[0] == 4
    for r, (p, xr) in enumerate(zip(runs, x, strict=True)):
        one = lyapunov(p, xr, cell=cell, window=4, exponents=3)
        np.testing.assert_array_equal(batch.exponents[r], one.exponents)
        np.testing.assert_array_equal(batch.log_sv[r], one.log_sv)
        np.testing.assert_array_equal(batch.states[r], one.states)


def test_shared_inputs_broadcast_over_runs_and_float32_stays_float32():
    rng = np.random.default_rng(8)
    p1, p2 = net(rng, "gru"), net(rng, "gru")
    x = rng.standard_normal((5, 2, 3))
    both = lyapunov({k: np.stack([p1[k], p2[k]]) for k in p1}, x, cell="gru")
    np.testing.assert_array_equal(both.exponents[1], lyapunov(p2, x, cell="gru").exponents)
    p32 = {k: v.astype(np.float32) for k, v in p1.items()}
    r32 = lyapunov(p32, x.astype(np.float32), cell="gru")
    assert r32.exponents.dtype == np.float32 and r32.log_sv.dtype == np.float32
    np.testing.assert_allclose(r32.exponents, lyapunov(p1, x, cell="gru").exponents, atol=1e-4)


def test_vanishing_and_exploding_regimes_have_the_expected_sign():
    """tanh RNN: small weights contract (lambda_1 < 0), large ones on zero input expand near the
    origin and saturate; LN10 converts nats to decades."""
    rng = np.random.default_rng(9)
    H = 16
    small = {"Wx": np.zeros((1, H)), "Ws": 0.5 * orthogonal(rng, H)}
    x = np.zeros((50, 2, 1))
    res = lyapunov(small, x, s0=0.1 * rng.standard_normal((2, H)))
    np.testing.assert_allclose(res.exponents, np.log(0.5), atol=0.01)   # tanh' ~ 1 near 0
    assert res.decades[0] == pytest.approx(res.exponents[0] / LN10)


@pytest.mark.parametrize("kw,match", [
    ({"cell": "esn"}, "cell"), ({"exponents": 0}, "exponents"), ({"exponents": 6}, "exponents"),
    ({"window": 7}, "window"), ({"activation": "elu"}, "activation"),
    ({"c0": np.zeros((2, 5))}, "c0"),
])
def test_bad_arguments_name_the_argument(kw, match):
    rng = np.random.default_rng(10)
    p = net(rng, "rnn")
    with pytest.raises(ValueError, match=match):
        lyapunov(p, rng.standard_normal((6, 2, 3)), **kw)


def test_an_overflowing_run_gets_nan_and_leaves_the_others_alone():
    """A run whose tangent vectors overflow has NaN exponents and spectrum (no exception, so a
    sweep's batch goes on), and the other runs' numbers are those they have alone."""
    rng = np.random.default_rng(13)
    p = net(rng, "rnn", H=6)
    x = rng.standard_normal((30, 2, 3))
    P = {k: np.stack([v, v]) for k, v in p.items()}
    P["Ws"][1, 0, 0] = 1e308
    res = lyapunov(P, x, activation="relu", window=5)
    assert np.isnan(res.exponents[1]).all() and np.isnan(res.log_sv[1]).all()
    alone = lyapunov(p, x, activation="relu", window=5)
    np.testing.assert_array_equal(res.exponents[0], alone.exponents)
    np.testing.assert_array_equal(res.log_sv[0], alone.log_sv)
