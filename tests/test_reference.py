"""The readable reference engine (engine/reference.py) against the fast engine, finite differences
and the torch golden values: the fast engine (NumPy, and the compiled kernel when numba is
installed) agrees with the reference to 1e-12 relative (of each array's largest entry) in float64
on every gradcheck and golden case and on random shapes and options."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_golden import CASES, compare, engine_values
from test_gradcheck import CONFIGS, HEADS, VARIANTS

from rnnlab.engine import bptt, init_params, reference, using_engine
from rnnlab.engine.gradcheck import check

REL = 1e-12


def values(res) -> dict:
    out = {"loss": np.asarray(res.loss), "states": res.states}
    for key in ("cells", "outputs"):
        if getattr(res, key) is not None:
            out[key] = getattr(res, key)
    out.update({f"grad_{k}": g for k, g in res.grads.items()})
    out.update({f"norm_{k}": v for k, v in res.step_norms.items()})
    out.update({f"extra_{k}": v for k, v in res.extra.items()})
    return out


def assert_agree(want: dict, got: dict, rel: float = REL, atol: float = 0.0):
    """Same keys, shapes and dtypes; |want - got| <= rel * max|want| + atol for every array."""
    assert want.keys() == got.keys()
    for key in want:
        a, b = np.asarray(want[key]), np.asarray(got[key])
        assert a.shape == b.shape and a.dtype == b.dtype, key
        scale = max(float(np.max(np.abs(a), initial=0)), 1e-300)
        err = float(np.max(np.abs(a - b), initial=0))
        assert err <= rel * scale + atol, \
            f"{key}: difference {err:.2e} > {rel:.0e} * max|want| ({scale:.2e}) + {atol:.1e}"


def problem(seed, *, cell="rnn", R=None, T=6, B=3, I=3, H=4, O=3, scale=1.3, output="softmax"):
    """Parameters perturbed from init_params (non-zero biases), N(0, 1) inputs, one-hot targets
    (Gaussian ones for a linear head); with R a leading run axis on params and data."""
    rng = np.random.default_rng(seed)
    plist = []
    for _ in range(R or 1):
        p = init_params(rng, cell=cell, input_size=I, hidden=H, output_size=O, scale=scale)
        plist.append({k: v + 0.1 * rng.standard_normal(v.shape) for k, v in p.items()})
    lead = (R,) if R else ()
    x = rng.standard_normal(lead + (T, B, I))
    if output == "linear":
        d = rng.standard_normal(lead + (T, B, O))
    else:
        d = np.eye(O)[rng.integers(0, O, lead + (T, B))]
    P = {k: np.stack([p[k] for p in plist]) for k in plist[0]} if R else plist[0]
    return P, x, d


# ---------------------------------------------------------------- the fast engine against it

@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("loss_at", ["last", "all"])
@pytest.mark.parametrize("head", HEADS, ids=lambda h: "/".join(h))
@pytest.mark.parametrize("cell_act", CONFIGS, ids=lambda c: "-".join(c))
def test_fast_engine_agrees_with_reference_on_the_gradcheck_grid(cell_act, head, loss_at,
                                                                 variant):
    cell, activation = cell_act
    output, loss = head
    truncate, clip_step, runs = VARIANTS[variant]
    P, x, d = problem(0, cell=cell, R=runs, output=output)
    kw = dict(cell=cell, activation=activation, output=output, loss=loss, loss_at=loss_at,
              truncate=truncate, clip_step=clip_step)
    with using_engine("numpy"):
        fast = bptt(P, x, d, **kw)
    ref = reference.bptt(P, x, d, **kw)
    assert_agree(values(ref), values(fast))
    if clip_step is not None:
        assert (ref.extra["clip_factors"] < 1).any()


@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_matches_torch_and_the_fast_engine_on_golden_cases(name):
    """1e-12 relative, except on the explosion case: its gradient grows ~4e3-fold over 30
    steps and rounding (np.tanh here, tanh through exp in the fast engine) grows with it, to
    ~1e-11 (as against torch, test_golden.py); 1e-10 there."""
    case = CASES[name]
    inp, opts = case["in"], case["options"]
    params = {k: inp[k] for k in ("Wx", "Ws", "Wy", "b", "by", "bn") if k in inp}
    ref = reference.bptt(params, inp["x"], inp["d"], s0=inp.get("s0"), c0=inp.get("c0"), **opts)
    compare(name, engine_values(ref), case["out"])
    with using_engine("numpy"):
        fast = bptt(params, inp["x"], inp["d"], s0=inp.get("s0"), c0=inp.get("c0"), **opts)
    assert_agree(values(ref), values(fast), 1e-10 if name == "rnn_tanh_T30_explode" else REL)


ACTS = ("tanh", "relu", "sigmoid", "identity")
OPTIONS = [{}, {"loss_at": "all"}, {"truncate": 3}, {"loss_at": "all", "truncate": 3},
           {"clip_step": 0.05}, {"loss_at": "all", "truncate": 2, "clip_step": 0.1},
           {"loss": "ce"}, {"loss": "ce", "loss_at": "all", "clip_step": 0.02},
           {"output": "linear"}, {"output": "linear", "loss_at": "all", "truncate": 4}]


@settings(max_examples=60, deadline=None)
@given(R=st.sampled_from([None, 1, 3]), T=st.integers(1, 10), B=st.integers(1, 5),
       I=st.integers(1, 4), H=st.integers(1, 7), O=st.integers(2, 5),
       net=st.sampled_from([("rnn", a) for a in ACTS] + [("lstm", "tanh"), ("gru", "tanh")]),
       kw=st.sampled_from(OPTIONS), flags=st.sampled_from([(True, True), (False, False)]),
       init=st.booleans(), biases=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_fast_engine_agrees_with_reference_on_random_shapes(R, T, B, I, H, O, net, kw, flags,
                                                             init, biases, seed):
    """Random sizes, run axis or none, every cell and option, initial states, with and without
    biases, norms and outputs on or off. An absolute floor of the rounding of the states (about
    eps * |s| per step): with the identity activation the states can saturate the softmax, and
    a gradient of 1e-4 is then the difference of O(1) terms (tests/test_kernel.py pins such a
    case, where two engines differ by 3e-11 of max|grad| and 3e-15 absolutely)."""
    cell, activation = net
    P, x, d = problem(seed, cell=cell, R=R, T=T, B=B, I=I, H=H, O=O,
                      output=kw.get("output", "softmax"))
    if not biases:
        P = {k: v for k, v in P.items() if k in ("Wx", "Ws", "Wy")}
    extra = {}
    if init:
        rng = np.random.default_rng(seed + 1)
        extra["s0"] = 0.5 * rng.standard_normal(((R,) if R else ()) + (B, H))
        if cell == "lstm":
            extra["c0"] = rng.standard_normal((B, H))
    kw = dict(kw, cell=cell, activation=activation, norms=flags[0], outputs=flags[1], **extra)
    with using_engine("numpy"):
        fast = bptt(P, x, d, **kw)
    ref = reference.bptt(P, x, d, **kw)
    atol = 64 * T * np.finfo(np.float64).eps * max(1.0, float(np.max(np.abs(ref.states))))
    assert_agree(values(ref), values(fast), REL, atol)
    assert list(ref.grads) == list(P)


def test_results_have_the_fast_engines_form():
    """Unbatched in, unbatched out (a float loss); per-run clip thresholds; flags off."""
    P, x, d = problem(1)
    res = reference.bptt(P, x, d, clip_step=0.05)
    assert isinstance(res.loss, float) and res.states.shape == (6, 3, 4)
    assert set(res.step_norms) == {"ds", "dWs", "dWx"} and res.extra["clip_factors"].shape == (6, 3)
    bare = reference.bptt(P, x, d, norms=False, outputs=False)
    assert bare.step_norms == {} and bare.outputs is None and bare.extra == {}
    Pr, xr, dr = problem(2, cell="lstm", R=3)
    thresholds = np.array([0.01, 0.1, np.inf])
    kw = dict(cell="lstm", clip_step=thresholds, loss_at="all")
    with using_engine("numpy"):
        fast = bptt(Pr, xr, dr, **kw)
    ref = reference.bptt(Pr, xr, dr, **kw)
    assert ref.loss.shape == (3,) and "dc" in ref.step_norms
    assert (ref.extra["clip_factors"][2] == 1).all() and (ref.extra["clip_factors"][0] < 1).any()
    assert_agree(values(ref), values(fast))


def test_options_change_the_reference_numbers():
    """Truncation and clipping are not ignored (an agreement test over them would then be
    empty): each changes the gradient."""
    P, x, d = problem(3, T=8)
    exact = reference.bptt(P, x, d, loss_at="all").grads["Ws"]
    for kw in ({"truncate": 2}, {"clip_step": 0.01}):
        other = reference.bptt(P, x, d, loss_at="all", **kw).grads["Ws"]
        assert np.max(np.abs(other - exact)) > 1e-3 * np.max(np.abs(exact))


def test_agreement_check_detects_a_difference():
    """The comparison itself can fail: a gradient off by one part in 1e10 is caught."""
    P, x, d = problem(4)
    ref = values(reference.bptt(P, x, d))
    bad = dict(ref, grad_Ws=ref["grad_Ws"] * (1 + 1e-10))
    with pytest.raises(AssertionError, match="grad_Ws"):
        assert_agree(ref, bad)


@pytest.mark.parametrize("kw,match", [({"cell": "elman"}, "cell"), ({"truncate": 0}, "truncate"),
                                      ({"clip_step": -1.0}, "clip_step"),
                                      ({"c0": np.zeros((3, 4))}, "c0")])
def test_bad_arguments_raise_the_fast_engines_errors(kw, match):
    P, x, d = problem(5)
    with pytest.raises(ValueError, match=match):
        reference.bptt(P, x, d, **kw)


# ------------------------------------------------------------------- finite differences

@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("loss_at", ["last", "all"])
@pytest.mark.parametrize("cell_act", CONFIGS, ids=lambda c: "-".join(c))
def test_reference_passes_finite_differences(cell_act, loss_at, variant):
    cell, activation = cell_act
    truncate, clip_step, runs = VARIANTS[variant]
    for output, loss in HEADS:
        res = check(cell=cell, activation=activation, output=output, loss=loss, loss_at=loss_at,
                    truncate=truncate, clip_step=clip_step, runs=runs, seq_len=6, scale=1.3,
                    engine="reference")
        assert res.ok, (output, loss, res.errors)


def test_gradcheck_engine_choice_reaches_the_engine(monkeypatch):
    """check(engine="reference") runs the reference, and a wrong reference gradient fails."""
    real = reference.bptt

    def broken(*a, **k):
        res = real(*a, **k)
        res.grads["Wx"] = res.grads["Wx"] * 1.001
        return res

    monkeypatch.setattr(reference, "bptt", broken)
    assert not check(engine="reference").ok
    assert check(engine="numpy").ok
    with pytest.raises(ValueError, match="engine"):
        check(engine="torch")


def test_cli_gradcheck_engine_option():
    from typer.testing import CliRunner

    from rnnlab.cli import app

    runner = CliRunner()
    for engine in ("reference", "fast", "numpy"):
        res = runner.invoke(app, ["gradcheck", "--engine", engine, "--cell", "gru", "--loss-at",
                                  "all", "--truncate", "2", "--clip-step", "0.05"])
        assert res.exit_code == 0, res.output
        assert f"({engine} engine)" in " ".join(res.stdout.split())
    res = runner.invoke(app, ["gradcheck", "--engine", "torch"])
    assert res.exit_code == 2


# ---------------------------------------------------------------------- compiled kernel

@pytest.mark.parametrize("cell_act", [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh")],
                         ids="-".join)
@pytest.mark.parametrize("kw", [{}, {"loss_at": "all", "truncate": 3, "clip_step": 0.05},
                                {"loss": "ce", "loss_at": "all"}])
def test_compiled_engine_agrees_with_reference(cell_act, kw):
    pytest.importorskip("numba")
    cell, activation = cell_act
    P, x, d = problem(6, cell=cell, R=3)
    kw = dict(kw, cell=cell, activation=activation)
    with using_engine("compiled"):
        fast = bptt(P, x, d, **kw)
    assert_agree(values(reference.bptt(P, x, d, **kw)), values(fast))
