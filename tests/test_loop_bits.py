"""The training loop's fast paths (branch loop) give the same bits as the code they replaced.

- Samplers: ``Task.sample`` and ``Task.sample_runs`` against a frozen copy of the samplers as
  they were (tests/frozen_samplers.py: each built and returned new arrays), for every task and
  task option, several lengths (T = 1 included where allowed), batch sizes and both dtypes, and
  the Generators' states after the draws (the same draws, in the same order); the compiled
  draws (``sample_runs(..., compiled=True)``, tests/test_draws.py) against the same.
- Optimiser: ``optim.step`` against a frozen copy of the old one (tests/frozen_optim.py) and
  against the update equations written per run with scalars, for every optimiser (nesterov
  included), per-run hyper-parameters and the ``active`` mask (with inf/NaN in frozen runs).
"""

from __future__ import annotations

import frozen_optim
import frozen_samplers
import numpy as np
import pytest

from rnnlab.tasks import make_task

TASK_CASES = [
    ("recall", 1, {}), ("recall", 7, {}), ("recall", 20, {"symbols": 6, "noise": 0.5}),
    ("recall", 5, {"noise": 0.0}),
    ("adding", 2, {}), ("adding", 11, {"placement": "anywhere", "target": "mean"}),
    ("adding", 30, {"placement": "pascanu"}), ("adding", 30, {"placement": "pascanu",
                                                              "jitter": 0.1}),
    ("copy", 1, {}), ("copy", 9, {"copy_len": 3, "symbols": 5, "scoring": "arjovsky"}),
    ("temporal_order", 10, {}), ("temporal_order", 23, {"windows": "ceil", "distractors": 2}),
    ("random", 1, {}), ("random", 12, {"input_size": 3, "symbols": 7}),
]


def _bits(a: np.ndarray) -> bytes:
    return a.dtype.str.encode() + str(a.shape).encode() + a.tobytes()


def _old_sample(task, rng, B, dtype):
    x, d = frozen_samplers.SAMPLERS[task.name](task, rng, B)
    return x.astype(dtype, copy=False), d.astype(dtype, copy=False)


@pytest.mark.parametrize("name,T,opts", TASK_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_samplers_same_bits_as_before(name, T, opts, dtype):
    task = make_task(name, T, **opts)
    for B in (1, 5, 32):
        seeds = [11, 12, 13]
        old = [np.random.default_rng(s) for s in seeds]
        new = [np.random.default_rng(s) for s in seeds]
        runs = [np.random.default_rng(s) for s in seeds]
        fast = [np.random.default_rng(s) for s in seeds]
        for _ in range(3):                       # consecutive batches from the same streams
            ref = [_old_sample(task, g, B, dtype) for g in old]
            got = [task.sample(g, B, dtype=dtype) for g in new]
            x, d = task.sample_runs(runs, B, dtype=dtype)
            xc, dc = task.sample_runs(fast, B, dtype=dtype, compiled=True)
            for r, (xo, do) in enumerate(ref):
                assert _bits(got[r][0]) == _bits(xo) and _bits(got[r][1]) == _bits(do)
                assert _bits(x[r]) == _bits(xo) and _bits(d[r]) == _bits(do)
                assert _bits(xc[r]) == _bits(xo) and _bits(dc[r]) == _bits(do)
        for a, b, c, f in zip(old, new, runs, fast, strict=True):    # the same draws were taken
            assert a.bit_generator.state == b.bit_generator.state == c.bit_generator.state \
                == f.bit_generator.state


def test_sample_runs_checks_every_generator():
    task = make_task("recall", 5)
    with pytest.raises(TypeError, match="rng: got int"):
        task.sample_runs([np.random.default_rng(0), 3], 4)


# ------------------------------------------------------------------------------------------
# optimiser

OPT_CASES = [("sgd", False), ("momentum", False), ("momentum", True), ("adagrad", False),
             ("adam", False)]


def _problem(R, dtype, shared, seed=0):
    """Parameters and per-run hyper-parameters, different for every run or (``shared``) one
    value for all runs (optim broadcasts those as 0-d arrays)."""
    g = np.random.default_rng(seed)
    shapes = {"Wx": (R, 3, 5), "Ws": (R, 5, 5), "Wy": (R, 5, 2), "b": (R, 5), "by": (R, 2)}
    params = {k: g.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    n = 1 if shared else R
    hyper = dict(lr=g.uniform(0.001, 0.5, n), momentum=g.uniform(0, 0.99, n),
                 beta1=g.uniform(0.5, 0.99, n), beta2=g.uniform(0.9, 0.9999, n),
                 eps=g.uniform(1e-9, 1e-3, n))
    return g, params, {k: np.resize(v, R) for k, v in hyper.items()}


def _update_by_equations(name, nesterov, p, g, slot, bc1, bc2, lr, mu, b1, b2, eps):
    """One run's update of one parameter, the module docstring's equations with scalar
    hyper-parameters and Adam's bias corrections bc1 = 1 - b1^k, bc2 = 1 - b2^k given; returns
    (new p, new slots)."""
    if name == "sgd":
        return p - lr * g, {}
    if name == "momentum":
        v = mu * slot["v"] + g
        return (p - lr * (g + mu * v) if nesterov else p - lr * v), {"v": v}
    if name == "adagrad":
        m = slot["m"] + g * g
        return p - lr * g / np.sqrt(m + eps), {"m": m}
    m = b1 * slot["m"] + (1.0 - b1) * g
    v = b2 * slot["v"] + (1.0 - b2) * (g * g)
    mhat = m / bc1
    vhat = v / bc2
    return p - lr * mhat / (np.sqrt(vhat) + eps), {"m": m, "v": v}


@pytest.mark.parametrize("name,nesterov", OPT_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shared", [False, True])
def test_optimiser_same_bits_as_before_and_as_the_equations(name, nesterov, dtype, shared):
    from rnnlab.engine import optim

    R = 4
    g, params, hyper = _problem(R, dtype, shared)
    old_p, new_p = dict(params), dict(params)
    old_s, new_s = optim.init_state(name, params), optim.init_state(name, params)
    eq_p = {k: [v[r].copy() for r in range(R)] for k, v in params.items()}
    eq_s = {k: [{s: np.zeros(v.shape[1:], dtype) for s in optim._SLOTS[name]} for r in range(R)]
            for k, v in params.items()}
    steps = np.zeros(R, dtype=np.int64)
    actives = [None, np.ones(R, bool), np.array([True, False, True, True]),
               np.array([False, False, True, False]), np.ones(R, bool), None]
    for i, active in enumerate(actives):
        grads = {k: (g.standard_normal(v.shape) * 10 ** i).astype(dtype)
                 for k, v in params.items()}
        if active is not None and not active[1]:
            grads["Ws"][1, 0, 0] = np.inf                    # a frozen run's NaN/inf is ignored
            grads["b"][1, 0] = np.nan
        kw = dict(nesterov=nesterov, active=active, **hyper)
        old_p, old_s = frozen_optim.step(name, old_p, grads, old_s, **kw)
        new_p, new_s = optim.step(name, new_p, grads, new_s, **kw)
        for k in params:
            assert _bits(new_p[k]) == _bits(old_p[k])
            for s in optim._SLOTS[name]:
                assert _bits(new_s[s][k]) == _bits(old_s[s][k])
        if name == "adam":
            assert _bits(new_s["t"]) == _bits(old_s["t"])
        on = np.ones(R, bool) if active is None else active
        steps += on
        # b^k over the run axis as optim does: np.power on an array may take a SIMD pow (SVML
        # on AVX-512) whose last bit can differ from the scalar pow of one run's b1 ** k
        k = np.maximum(steps, 1).astype(np.float64)
        bc1, bc2 = 1.0 - hyper["beta1"] ** k, 1.0 - hyper["beta2"] ** k
        for r in np.flatnonzero(on):
            for k in params:
                p, slots = _update_by_equations(
                    name, nesterov, eq_p[k][r], grads[k][r], eq_s[k][r], bc1[r], bc2[r],
                    hyper["lr"][r], hyper["momentum"][r], hyper["beta1"][r], hyper["beta2"][r],
                    hyper["eps"][r])
                eq_p[k][r] = p.astype(dtype)                  # stored in the params' dtype
                eq_s[k][r] = {s: v.astype(dtype) for s, v in slots.items()}
        for k in params:
            for r in range(R):
                assert _bits(new_p[k][r]) == _bits(eq_p[k][r])
                for s in optim._SLOTS[name]:
                    assert _bits(new_s[s][k][r]) == _bits(eq_s[k][r][s])


# ------------------------------------------------------------------------------------------
# held-out data kept between evaluations


@pytest.mark.parametrize("task", [{"name": "recall", "seq_len": 5},
                                  {"name": "adding", "seq_len": 12},
                                  {"name": "copy", "seq_len": 4, "copy_len": 3}])
def test_evaluate_same_bits_with_and_without_the_kept_held_out_data(monkeypatch, task):
    import rnnlab.run.train as train
    from rnnlab.experiment.load import parse_experiment

    exp = parse_experiment({"name": "t", "seed": 4, "repeats": 5, "model": {"hidden": 8},
                            "task": {**task, "batch": 8, "eval_batch": 50},
                            "train": {"steps": 3, "log_every": 1}})
    results = []
    for budget in (0, train.HELD_OUT_BUDGET):          # 0: drawn again at every evaluation
        monkeypatch.setattr(train, "HELD_OUT_BUDGET", budget)
        t = train.Trainer(exp.runs())
        assert (t.held_out() is None) == (budget == 0)
        got = [t.evaluate(criteria=True), t.evaluate([3, 1]), t.evaluate([4])]
        t.step(update=True)                               # new weights, the same held-out data
        got += [t.evaluate(), t.evaluate([2, 0, 4], criteria=True)]
        results.append(got)
    for a, b in zip(*results, strict=True):
        for u, v in zip(a, b, strict=True):
            if isinstance(u, dict):
                assert u.keys() == v.keys()
                assert all(_bits(u[k]) == _bits(v[k]) for k in u)
            else:
                assert _bits(np.asarray(u)) == _bits(np.asarray(v))
