"""The BPTT engine: the lecture's example, run axis, dtypes, per-step norms, bad input."""

import numpy as np
import pytest

from rnnlab.engine import bptt, init_params, term_norms


def small(rng, cell="rnn", I=2, H=3, O=2, T=3, B=2, scale=1.0):
    p = init_params(rng, cell=cell, input_size=I, hidden=H, output_size=O, scale=scale)
    p = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in p.items()}
    x = rng.standard_normal((T, B, I))
    d = np.eye(O)[rng.integers(0, O, (T, B))]
    return p, x, d


def test_lecture_n3_example_written_out():
    """dE_3/dWs = sum_{i=1..3} dE_3/dy_3 . dy_3/ds_i . ds_i/dWs, term by term, by hand."""
    rng = np.random.default_rng(3)
    p, x, d = small(rng, T=3, B=1)
    Wx, Ws, Wy, b, by = p["Wx"], p["Ws"], p["Wy"], p["b"], p["by"]
    s0 = np.zeros((1, 3))
    s1 = np.tanh(x[0] @ Wx + s0 @ Ws + b)
    s2 = np.tanh(x[1] @ Wx + s1 @ Ws + b)
    s3 = np.tanh(x[2] @ Wx + s2 @ Ws + b)
    y3 = np.exp(s3 @ Wy + by)
    y3 /= y3.sum()
    E3 = np.sum((d[2] - y3) ** 2)
    dE_dy = -2 * (d[2] - y3)                                 # dE_3/dy_3
    dy_dl = np.diag(y3[0]) - np.outer(y3[0], y3[0])         # softmax Jacobian
    delta3 = (dE_dy @ dy_dl) @ Wy.T                          # dE_3/ds_3
    dz3 = delta3 * (1 - s3 ** 2)
    delta2 = dz3 @ Ws.T                                      # ... . ds_3/ds_2
    dz2 = delta2 * (1 - s2 ** 2)
    delta1 = dz2 @ Ws.T                                      # ... . ds_2/ds_1
    dz1 = delta1 * (1 - s1 ** 2)
    terms = [s0.T @ dz1, s1.T @ dz2, s2.T @ dz3]             # ds_i/dWs for i = 1, 2, 3
    res = bptt(p, x, d)
    assert res.loss == pytest.approx(E3, rel=1e-14)
    np.testing.assert_allclose(res.grads["Ws"], sum(terms), rtol=1e-12)
    np.testing.assert_allclose(res.step_norms["dWs"], [np.linalg.norm(m) for m in terms],
                               rtol=1e-12)
    np.testing.assert_allclose(res.step_norms["ds"],
                               [np.linalg.norm(v) for v in (delta1, delta2, delta3)], rtol=1e-12)
    assert res.step_norms["dWs"][0] == 0                     # s_0 = 0: the first term vanishes


def test_gru_follows_pytorch_grucell_equations_written_out():
    """r, z from the summed input and recurrent terms; the reset gate scales the recurrent
    candidate term *with* its bias b_hn; s_t = (1 - z) n + z s_{t-1} (z = 1 keeps the state)."""
    rng = np.random.default_rng(11)
    p, x, d = small(rng, cell="gru", T=3, B=2, H=3)
    assert set(p) == {"Wx", "Ws", "Wy", "b", "by", "bn"} and p["Ws"].shape == (3, 9)
    H = 3
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    s = np.zeros((2, H))
    want = []
    for t in range(3):
        gx, gh = x[t] @ p["Wx"] + p["b"], s @ p["Ws"]
        r, z = sig(gx[:, :H] + gh[:, :H]), sig(gx[:, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(gx[:, 2 * H:] + r * (gh[:, 2 * H:] + p["bn"]))
        s = (1 - z) * n + z * s
        want.append(s)
    res = bptt(p, x, d, cell="gru")
    np.testing.assert_allclose(res.states, np.array(want), rtol=1e-14, atol=1e-15)
    assert res.cells is None and set(res.step_norms) == {"ds", "dWs", "dWx"}
    nobias = {k: v for k, v in p.items() if k not in ("b", "by", "bn")}
    assert set(bptt(nobias, x, d, cell="gru").grads) == {"Wx", "Ws", "Wy"}
    with pytest.raises(ValueError, match="unknown keys"):
        bptt(p, x, d, cell="rnn")          # bn belongs to the gru only


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("kw", [{}, {"loss_at": "all", "truncate": 3, "clip_step": 0.1},
                                {"loss": "ce", "clip_step": 0.05}, {"loss_at": "all"}])
@pytest.mark.parametrize("shape", [dict(R=5, T=7, B=4, H=3), dict(R=6, T=12, B=32, H=24)])
def test_batched_equals_one_at_a_time_bit_for_bit(cell, kw, shape):
    """A run's numbers do not depend on the batch it is in: bit for bit, not just to rounding.
    The large shape has R*B*H above any size threshold a code path could switch on (a tanh that
    chose its algorithm by array size broke this once) and several weight-gradient chunks."""
    rng = np.random.default_rng(1)
    R, T, B, H = shape["R"], shape["T"], shape["B"], shape["H"]
    runs = [small(rng, cell=cell, T=T, B=B, H=H, scale=s) for s in np.linspace(0.5, 2.5, R)]
    P = {k: np.stack([r[0][k] for r in runs]) for k in runs[0][0]}
    X, D = np.stack([r[1] for r in runs]), np.stack([r[2] for r in runs])
    thresholds = np.linspace(0.05, 1.0, R) if "clip_step" in kw else None
    if thresholds is not None:
        kw = dict(kw, clip_step=thresholds)
    batch = bptt(P, X, D, cell=cell, **kw)
    for r, (p, x, d) in enumerate(runs):
        one_kw = dict(kw, clip_step=thresholds[r]) if thresholds is not None else kw
        one = bptt(p, x, d, cell=cell, **one_kw)
        assert batch.loss[r] == one.loss
        for k in p:
            np.testing.assert_array_equal(batch.grads[k][r], one.grads[k])
        for k in one.step_norms:
            np.testing.assert_array_equal(batch.step_norms[k][r], one.step_norms[k])
        np.testing.assert_array_equal(batch.states[r], one.states)
        np.testing.assert_array_equal(batch.outputs[r], one.outputs)


def test_shared_data_broadcasts_over_runs():
    rng = np.random.default_rng(2)
    p1, x, d = small(rng, T=5)
    p2, _, _ = small(rng, T=5)
    P = {k: np.stack([p1[k], p2[k]]) for k in p1}
    res = bptt(P, x, d)
    assert res.loss.shape == (2,) and res.step_norms["ds"].shape == (2, 5)
    assert res.loss[1] == pytest.approx(bptt(p2, x, d).loss, rel=1e-12)
    # shared params with per-run data: results carry the run axis too
    res2 = bptt(p1, np.stack([x, 2 * x]), d)
    assert res2.grads["Ws"].shape == (2, 3, 3)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_float32_stays_float32(cell):
    rng = np.random.default_rng(0)
    p, x, d = small(rng, cell=cell, T=4)
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    res = bptt(p32, x.astype(np.float32), d.astype(np.float32), cell=cell)
    assert all(g.dtype == np.float32 for g in res.grads.values())
    assert all(v.dtype == np.float32 for v in res.step_norms.values())
    assert res.states.dtype == np.float32
    res64 = bptt(p, x, d, cell=cell)
    np.testing.assert_allclose(res.grads["Ws"], res64.grads["Ws"], rtol=1e-3, atol=1e-5)


def test_truncation_zeroes_errors_outside_the_window():
    rng = np.random.default_rng(4)
    p, x, d = small(rng, T=10)
    res = bptt(p, x, d, truncate=3)
    assert np.all(res.step_norms["ds"][:7] == 0) and np.all(res.step_norms["ds"][7:] > 0)
    full = bptt(p, x, d)
    np.testing.assert_allclose(res.step_norms["ds"][7:], full.step_norms["ds"][7:], rtol=1e-12)
    assert bptt(p, x, d, truncate=10).grads["Ws"] == pytest.approx(full.grads["Ws"])


def test_clip_step_bounds_every_sequence_error():
    rng = np.random.default_rng(5)
    p, x, d = small(rng, T=12, B=4, H=6, scale=3.0)
    c = 1e-3
    res = bptt(p, x, d, clip_step=c, loss_at="all")
    assert np.all(res.step_norms["ds"] <= c * np.sqrt(4) * (1 + 1e-12))
    assert (res.extra["clip_factors"] < 1).any()
    free = bptt(p, x, d, clip_step=np.inf, loss_at="all")
    np.testing.assert_allclose(free.grads["Ws"], bptt(p, x, d, loss_at="all").grads["Ws"])


def test_lstm_reports_cell_error_norms():
    rng = np.random.default_rng(6)
    p, x, d = small(rng, cell="lstm", T=6)
    res = bptt(p, x, d, cell="lstm")
    assert set(res.step_norms) == {"ds", "dWs", "dWx", "dc"}
    assert np.all(res.step_norms["dc"] > 0)
    assert res.cells.shape == (6, 2, 3)


@pytest.mark.parametrize("B,H", [(2, 16), (16, 2), (5, 5)])
def test_term_norms_gram_and_direct_paths(B, H):
    rng = np.random.default_rng(7)
    a, z = rng.standard_normal((3, 4, B, H)), rng.standard_normal((3, 4, B, H + 1))
    want = np.linalg.norm(np.einsum("rtbp,rtbq->rtpq", a, z), axis=(-2, -1))
    np.testing.assert_allclose(term_norms(a, z), want, rtol=1e-12)
    np.testing.assert_allclose(term_norms(a, z, budget=1), want, rtol=1e-12)   # chunked
    np.testing.assert_allclose(term_norms(a, z, budget=100), want, rtol=1e-12)
    shared = term_norms(a[:1], z)                          # a shared (1, ...) ``a`` broadcasts
    np.testing.assert_allclose(shared, np.linalg.norm(
        np.einsum("tbp,rtbq->rtpq", a[0], z), axis=(-2, -1)), rtol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("kw", [{}, {"loss_at": "all"}, {"loss_at": "all", "truncate": 2},
                                {"clip_step": 0.1}])
def test_skipping_norms_and_outputs_changes_no_other_number(cell, kw):
    """norms=False / outputs=False (what a training step that logs nothing asks for) leave the
    loss, the gradients and the states bit for bit as they are; the outputs' loss step is the
    very y the loss used."""
    rng = np.random.default_rng(9)
    runs = [small(rng, cell=cell, T=6, B=5, H=4) for _ in range(3)]
    P = {k: np.stack([r[0][k] for r in runs]) for k in runs[0][0]}
    X, D = np.stack([r[1] for r in runs]), np.stack([r[2] for r in runs])
    full = bptt(P, X, D, cell=cell, **kw)
    bare = bptt(P, X, D, cell=cell, norms=False, outputs=False, **kw)
    assert bare.step_norms == {} and bare.outputs is None
    np.testing.assert_array_equal(bare.loss, full.loss)
    for k in P:
        np.testing.assert_array_equal(bare.grads[k], full.grads[k])
    np.testing.assert_array_equal(bare.states, full.states)
    assert set(full.step_norms) == {"ds", "dWs", "dWx"} | ({"dc"} if cell == "lstm" else set())
    assert full.outputs.shape == D.shape and np.isfinite(full.outputs).all()


@pytest.mark.parametrize("mutate,match", [
    (lambda p, x, d: ({**p, "Ws": p["Ws"][:2]}, x, d), "Ws: got shape"),
    (lambda p, x, d: (p, x[..., :1], d), "x: got shape"),
    (lambda p, x, d: (p, x, d[:2]), "d: got shape"),
    (lambda p, x, d: ({**p, "Wq": p["Ws"]}, x, d), "unknown keys"),
    (lambda p, x, d: (p, np.where(x > 0, np.nan, x), d), "x: got non-finite"),
    (lambda p, x, d: ({**p, "Ws": p["Ws"] * np.inf}, x, d), "Ws: got non-finite"),
])
def test_bad_input_names_the_argument(mutate, match):
    p, x, d = small(np.random.default_rng(8))
    with pytest.raises(ValueError, match=match):
        bptt(*mutate(p, x, d))


@pytest.mark.parametrize("kw,match", [
    ({"cell": "esn"}, "cell: got 'esn'"), ({"activation": "elu"}, "activation"),
    ({"loss": "hinge"}, "loss"), ({"output": "linear", "loss": "ce"}, "'ce' only with"),
    ({"truncate": 0}, "truncate"), ({"clip_step": 0.0}, "clip_step"),
    ({"loss_at": "first"}, "loss_at"),
])
def test_bad_options(kw, match):
    p, x, d = small(np.random.default_rng(9))
    with pytest.raises(ValueError, match=match):
        bptt(p, x, d, **kw)


def test_mismatched_run_axes():
    rng = np.random.default_rng(10)
    p, x, d = small(rng)
    P = {k: np.stack([v, v, v]) for k, v in p.items()}
    with pytest.raises(ValueError, match="run axis"):
        bptt(P, np.stack([x, x]), d)


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "identity"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_one_unit_one_sequence_runs_agree_with_the_reference(cell, activation):
    """B = H = 1 with several runs: strided per-step views with trailing axes of length 1, where
    NumPy 2.4's np.negative wrote wrong values (the sigmoid's second run was wrong)."""
    from rnnlab.engine import reference

    if cell != "rnn" and activation != "tanh":
        return
    rng = np.random.default_rng(3)
    P = {k: np.stack([v, v * 0.7]) for k, v in
         init_params(rng, cell=cell, input_size=1, hidden=1, output_size=1).items()}
    x = rng.standard_normal((2, 8, 1, 1))
    d = rng.standard_normal((2, 8, 1, 1))
    kw = dict(cell=cell, activation=activation, output="linear", loss="mse")
    fast, ref = bptt(P, x, d, **kw), reference.bptt(P, x, d, **kw)
    np.testing.assert_allclose(fast.states, ref.states, rtol=1e-12, atol=1e-14)
    for k in fast.grads:
        np.testing.assert_allclose(fast.grads[k], ref.grads[k], rtol=1e-10, atol=1e-13)
