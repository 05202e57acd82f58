"""Finite-difference checks of the BPTT engine (library behind ``rnnlab gradcheck`` and the tests).

The engine's analytic gradient is compared with central differences,

    dE/dtheta_j ~ (E(theta + eps e_j) - E(theta - eps e_j)) / (2 eps),

of an objective evaluated by a *separate*, deliberately plain forward pass (``reference_loss``:
one loop over t, no run axis, no buffers). The objective is the one the gradient belongs to:

- exact BPTT: the loss E itself;
- ``truncate=k``: sum over loss steps tau of E_tau computed from the window tau-k+1..tau, with the
  state entering the window held fixed (its derivative is BPTT(k) by definition);
- ``clip_step=c``: E (or the windowed sum above) with every state replaced by
  s~_t = a_t s_t + (1 - a_t) [s_t]_fixed, where a_t are the per-sequence factors the engine
  applied: the surrogate whose forward values are E's and whose exact gradient is the clipped
  back-propagation (its derivative scales delta_t by a_t).

The reported error for a parameter is max_j |analytic_j - numeric_j| / max_j |numeric_j|.

``engine`` chooses whose analytic gradient is checked: ``reference`` (``engine/reference.py``),
``numpy`` or ``compiled`` (the fast engine on that backend), or None (the fast engine as chosen
by ``set_engine`` / RNNLAB_ENGINE).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from rnnlab.engine import bptt, init_params, reference, using_engine
from rnnlab.engine.cells import phi, sigmoid
from rnnlab.engine.heads import softmax


def reference_loss(params, x, d, *, cell="rnn", activation="tanh", output="softmax", loss="mse",
                   loss_at="last", s0=None, c0=None, alpha=None, s_fixed=None) -> float:
    """Plain forward pass and loss for one network (no run axis).

    x: (T, B, I); d: (T, B, O); s0, c0: (B, H); alpha: (T, B) clip factors and s_fixed: (T, B, H)
    the unperturbed states, for the clipping surrogate.
    """
    Wx, Ws, Wy = params["Wx"], params["Ws"], params["Wy"]
    b = params.get("b", 0.0)
    by = params.get("by", 0.0)
    T, B, _ = x.shape
    H = Ws.shape[0]
    bn = params.get("bn", 0.0)
    b_in = b[2 * H:3 * H] if cell == "gru" and "b" in params else 0.0
    s = np.zeros((B, H)) if s0 is None else s0
    c = np.zeros((B, H)) if c0 is None else c0
    E = 0.0
    for t in range(T):
        a = x[t] @ Wx + s @ Ws + b
        if cell == "lstm":
            i, f, g, o = (sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]),
                          sigmoid(a[:, 3 * H:]))
            c = f * c + i * g
            s = o * np.tanh(c)
        elif cell == "gru":                        # PyTorch's GRUCell: b_hn inside the reset
            h = s @ Ws
            r = sigmoid(a[:, :H])
            z = sigmoid(a[:, H:2 * H])
            n = np.tanh(x[t] @ Wx[:, 2 * H:] + b_in + r * (h[:, 2 * H:] + bn))
            s = (1 - z) * n + z * s
        else:
            s = phi(activation, a, out=np.empty_like(a))
        if alpha is not None:
            s = alpha[t][:, None] * s + (1 - alpha[t][:, None]) * s_fixed[t]
        if loss_at == "all" or t == T - 1:
            logits = s @ Wy + by
            y = softmax(logits) if output == "softmax" else logits
            if loss == "mse":
                E += np.sum((d[t] - y) ** 2) / B
            else:
                z = logits - logits.max(axis=1, keepdims=True)
                E -= np.sum(d[t] * (z - np.log(np.exp(z).sum(axis=1, keepdims=True)))) / B
    return float(E)


def numerical_grads(f, params: dict, eps: float = 1e-6) -> dict:
    """Central differences of the scalar f(params) for every entry of every parameter."""
    out = {}
    for name, v in params.items():
        g = np.zeros_like(v)
        for j in np.ndindex(v.shape):
            keep = v[j]
            v[j] = keep + eps
            ep = f(params)
            v[j] = keep - eps
            em = f(params)
            v[j] = keep
            g[j] = (ep - em) / (2 * eps)
        out[name] = g
    return out


def objective(params, x, d, kw: dict, res, truncate=None, clip=False):
    """The function of the parameters whose exact gradient the engine's result ``res`` claims."""
    T = x.shape[0]
    k = truncate if truncate is not None and truncate < T else None
    states = [np.zeros_like(res.states[0])] + list(res.states)       # s_0 .. s_T, unperturbed
    cells = [np.zeros_like(res.states[0])] + list(res.cells) if res.cells is not None else None
    alpha = s_fixed = None
    if clip:
        alpha, s_fixed = res.extra["clip_factors"], np.array(states[1:])
    if k is None:
        return lambda p: reference_loss(p, x, d, **kw, alpha=alpha, s_fixed=s_fixed)
    taus = range(T) if kw["loss_at"] == "all" else [T - 1]
    wkw = dict(kw, loss_at="last")

    def windows(p):
        total = 0.0
        for tau in taus:
            a = max(0, tau - k + 1)
            c0 = cells[a] if cells is not None else None
            w = slice(a, tau + 1)
            total += reference_loss(p, x[w], d[w], **wkw, s0=states[a], c0=c0,
                                    alpha=None if alpha is None else alpha[w],
                                    s_fixed=None if s_fixed is None else s_fixed[w])
        return total
    return windows


#: The engines ``check`` can check by name (None: the fast engine as chosen).
CHECKED_ENGINES = ("reference", "numpy", "compiled")


@dataclass
class CheckResult:
    errors: dict          # parameter -> worst relative error
    tolerance: float
    #: parameter -> largest |finite-difference gradient| over the runs (0: nothing measured)
    scales: dict = field(default_factory=dict)

    @property
    def vacuous(self) -> bool:
        """Every finite-difference gradient is exactly 0 (a saturated configuration): the
        errors compare zeros with zeros and test nothing."""
        return bool(self.scales) and not any(self.scales.values())

    @property
    def ok(self) -> bool:
        return not self.vacuous and all(e < self.tolerance for e in self.errors.values())


def check(*, cell="rnn", activation="tanh", output="softmax", loss="mse", loss_at="last",
          truncate=None, clip_step=None, seq_len=6, batch=3, inputs=3, hidden=4, outputs=3,
          runs=None, scale=1.0, seed=0, eps=1e-6, tolerance=1e-6, engine=None) -> CheckResult:
    """Finite-difference check of one configuration, float64.

    Random parameters (perturbed from ``init_params`` so biases are non-zero), inputs N(0, 1),
    one-hot targets (Gaussian ones for a linear head). With ``runs=R`` the engine is called once
    on a run axis and every run is checked against its own objective. ``engine``: ``reference``,
    ``numpy``, ``compiled`` or None (the fast engine as chosen), see the module docstring.
    """
    if engine is not None and engine not in CHECKED_ENGINES:
        raise ValueError(f"engine: got {engine!r}; allowed: one of {', '.join(CHECKED_ENGINES)}")
    rng = np.random.default_rng(seed)
    R = runs or 1

    def draw():
        p = init_params(rng, cell=cell, input_size=inputs, hidden=hidden, output_size=outputs,
                        scale=scale)
        return {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in p.items()}
    plist = [draw() for _ in range(R)]
    x = rng.standard_normal((seq_len, batch, inputs))
    if output == "linear":
        d = rng.standard_normal((seq_len, batch, outputs))
    else:
        d = np.eye(outputs)[rng.integers(0, outputs, (seq_len, batch))]
    kw = dict(cell=cell, activation=activation, output=output, loss=loss, loss_at=loss_at)
    params = {k: np.stack([p[k] for p in plist]) for k in plist[0]} if runs else plist[0]
    if engine == "reference":
        res = reference.bptt(params, x, d, **kw, truncate=truncate, clip_step=clip_step)
    else:
        with using_engine(engine) if engine else contextlib.nullcontext():
            res = bptt(params, x, d, **kw, truncate=truncate, clip_step=clip_step)
    errors = {k: 0.0 for k in plist[0]}
    scales = {k: 0.0 for k in plist[0]}
    for r in range(R):
        one = _index(res, r) if runs else res
        f = objective(plist[r], x, d, kw, one, truncate=truncate, clip=clip_step is not None)
        num = numerical_grads(f, plist[r], eps)
        for k, g in num.items():
            err = np.max(np.abs(one.grads[k] - g)) / max(np.max(np.abs(g)), 1e-300)
            errors[k] = max(errors[k], float(err))
            scales[k] = max(scales[k], float(np.max(np.abs(g))))
    return CheckResult(errors=errors, tolerance=tolerance, scales=scales)


def _index(res, r):
    """Run r of a batched result, as an unbatched one (for the objective builders)."""
    from rnnlab.engine import BPTTResult
    return BPTTResult(loss=res.loss[r], grads={k: v[r] for k, v in res.grads.items()},
                      states=res.states[r], outputs=res.outputs[r],
                      step_norms={k: v[r] for k, v in res.step_norms.items()},
                      cells=None if res.cells is None else res.cells[r],
                      extra={k: v[r] for k, v in res.extra.items()})
