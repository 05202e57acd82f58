"""Initialisers (weight_scale means the recurrent matrix's scale) and weight-gradient clipping."""

import numpy as np
import pytest

from rnnlab.engine import clip_grads, init_params, spectral_stats


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_orthogonal_has_every_singular_value_equal_to_scale(scale):
    p = init_params(np.random.default_rng(0), input_size=3, hidden=16, output_size=2,
                    init="orthogonal", scale=scale)
    np.testing.assert_allclose(np.linalg.svd(p["Ws"], compute_uv=False), scale, rtol=1e-12)


def test_identity_and_gaussian():
    rng = np.random.default_rng(1)
    p = init_params(rng, input_size=3, hidden=8, output_size=2, init="identity", scale=0.7)
    np.testing.assert_array_equal(p["Ws"], 0.7 * np.eye(8))
    p = init_params(rng, input_size=3, hidden=400, output_size=2, init="gaussian", scale=1.5)
    rho, _ = spectral_stats(p["Ws"])
    assert abs(rho - 1.5) < 0.1                     # circular law


def test_lstm_blocks_and_forget_bias():
    p = init_params(np.random.default_rng(2), cell="lstm", input_size=3, hidden=5, output_size=2,
                    scale=2.0, forget_bias=1.0)
    assert p["Ws"].shape == (5, 20) and p["Wx"].shape == (3, 20)
    for g in range(4):
        block = p["Ws"][:, 5 * g:5 * g + 5]
        np.testing.assert_allclose(np.linalg.svd(block, compute_uv=False), 2.0)
    np.testing.assert_array_equal(p["b"], np.r_[np.zeros(5), np.ones(5), np.zeros(10)])


def test_same_generator_state_same_weights_and_no_bias_option():
    a = init_params(np.random.default_rng(3), input_size=2, hidden=4, output_size=2)
    b = init_params(np.random.default_rng(3), input_size=2, hidden=4, output_size=2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    c = init_params(np.random.default_rng(3), input_size=2, hidden=4, output_size=2, bias=False)
    assert set(c) == {"Wx", "Ws", "Wy"}


def test_norm_clipping_is_algorithm_1():
    g = {"Ws": np.full((2, 2), 3.0), "Wy": np.full((2, 1), 4.0)}   # ||g|| = sqrt(36 + 32)
    n = np.sqrt(68)
    out, norm, clipped = clip_grads(g, "norm", 2.0)
    assert norm == pytest.approx(n) and clipped
    total = np.sqrt(sum(np.sum(v ** 2) for v in out.values()))
    assert total == pytest.approx(2.0)
    np.testing.assert_allclose(out["Ws"], g["Ws"] * 2.0 / n)
    out, _, clipped = clip_grads(g, "norm", 100.0)
    assert not clipped and np.array_equal(out["Ws"], g["Ws"])


def test_value_clipping_and_per_run_thresholds():
    g = {"Ws": np.array([[[1.0, -7.0]], [[0.5, 0.2]]])}            # R=2 runs, (1, 2) each
    out, norm, clipped = clip_grads(g, "value", np.array([5.0, 0.3]))
    np.testing.assert_array_equal(out["Ws"], [[[1.0, -5.0]], [[0.3, 0.2]]])
    np.testing.assert_array_equal(clipped, [True, True])
    np.testing.assert_allclose(norm, [np.sqrt(50), np.sqrt(0.29)])
    out, norm, clipped = clip_grads(g, "norm", np.array([np.inf, 0.1]))
    np.testing.assert_array_equal(clipped, [False, True])
    assert np.linalg.norm(out["Ws"][1]) == pytest.approx(0.1)
    assert np.array_equal(out["Ws"][0], g["Ws"][0])


def test_clip_errors():
    with pytest.raises(ValueError, match="clip mode"):
        clip_grads({"Ws": np.ones((2, 2))}, "max", 1.0)
    with pytest.raises(ValueError, match="threshold"):
        clip_grads({"Ws": np.ones((2, 2))}, "norm", 0.0)
