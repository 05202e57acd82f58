"""Golden values for the BPTT engine from PyTorch autograd (a reference, never a dependency).

Run (from the repository root; needs torch, which rnnlab itself does not):

    /work/venv/bin/pip install torch==2.13.0      # the version the stored values were made with
    /work/venv/bin/python scripts/make_golden.py  # writes tests/data/golden.npz, golden_gru.npz
    /work/venv/bin/python scripts/make_golden.py golden_gru.npz   # only the named file(s)

``tests/test_golden.py`` loads that file (no torch needed) and checks the engine against it at
rtol 1e-10. Everything is float64: parameters, inputs and targets are drawn with NumPy from fixed
seeds, mapped onto PyTorch's own recurrent modules and differentiated by autograd.

Mapping (engine -> torch). Vanilla cell ``s_t = phi(x_t Wx + s_{t-1} Ws + b)``: ``nn.RNNCell`` /
``nn.RNN`` with weight_ih = Wx.T, weight_hh = Ws.T, bias_ih = b, bias_hh = 0. LSTM: ``nn.LSTMCell``
/ ``nn.LSTM``, gate order (i, f, g, o) in both, weight_ih = Wx.T, weight_hh = Ws.T, bias_ih = b,
bias_hh = 0. GRU: ``nn.GRUCell`` / ``nn.GRU``, gate order (r, z, n) in both, weight_ih = Wx.T,
weight_hh = Ws.T, bias_ih = b, bias_hh = (0, 0, bn): the engine's bn is PyTorch's b_hn, the one
bias inside the reset product (b_hr and b_hz add to b_ir and b_iz, so the engine has one each).
Head: logits = s_t Wy + by; softmax + mse E = (1/B) sum (d - y)^2, softmax + ce
E = -(1/B) sum d log softmax(logits), linear + mse; over the last step or every step.

How each reported quantity is obtained from autograd:

- The cell is run step by step (``torch.func.functional_call`` on the nn.RNNCell / nn.LSTMCell
  module), and each step t gets its *own* leaf copy of Wx, Ws and b (all equal values), so the
  gradient of step t's copy is the t-th term of the chain-rule sum: dWs_t = ||grad(Ws copy t)||,
  dWx_t = ||grad(Wx copy t)||; the full gradients are the sums over the copies.
- Per-step state errors: ``retain_grad()`` on each step's state (and, for the LSTM, cell) tensor;
  ds_t = ||dE/ds_t||, dc_t = ||dE/dc_t|| (Frobenius over the batch).
- Truncation (truncate=k): the loss term at step tau gets its own chain of states that starts at
  step max(1, tau-k+1) from the *detached* true state s_{tau-k} (and c_{tau-k}); so its error
  reaches steps tau-k+1..tau only. All chains alive at step t are evaluated in one cell call
  (stacked on a leading axis, x_t repeated), so the state tensor of step t holds every chain's
  copy of s_t and its gradient holds every loss term's truncated contribution; ds_t is the norm
  of their sum. Without truncation every chain starts at step 1 (same values, same sums).
- Per-step clipping (clip_step=c): a hook on each step's state tensor (``register_hook``) sees
  the total dE/ds_t (all chains) before it flows on and rescales every sequence (row) whose total
  norm exceeds c by c / norm, the same factor for every chain; ds_t is reported after clipping.
  The factors are stored too ("clip_factors", (T, B)).

Independent cross-checks run while generating (the script stops if one fails): the fused
``nn.RNN`` / ``nn.LSTM`` over the whole sequence gives the same loss and gradients when nothing is
truncated or clipped; and for truncation without clipping the literal recipe (one separate graph
and backward per loss term, state detached at the window's start, gradients and retained state
gradients summed over tau) gives the same gradients and per-step norms.

File layout (one npz per group of cells: ``tests/data/golden.npz`` holds the rnn and lstm cases,
``tests/data/golden_gru.npz`` the gru cases; each file is written only when named, or when no
file is named): ``cases`` is a JSON list of case names; for a
case NAME, ``NAME/options`` is a JSON object of bptt keyword options, ``NAME/in/<key>`` the inputs
(params Wx, Ws, Wy and optionally b, by; x; d; optionally s0, c0) and ``NAME/out/<key>`` the
torch results: loss, grad_<param>, ds, dWs, dWx (dc), states, outputs (cells, clip_factors).
For the GRU, dWs_t and dWx_t are the norms of the gradients of step t's copies of Ws and Wx as for
the other cells (the copy of bn is shared: only its total gradient is compared).
``meta`` is a JSON object with the torch and numpy versions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call

TORCH_VERSION = "2.13.0"
DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
#: Which cells go to which file (the rnn/lstm file predates the GRU and stays as it was).
FILES = {"golden.npz": ("rnn", "lstm"), "golden_gru.npz": ("gru",)}
DT = torch.float64

# Each case: name; the bptt options cell, activation, output, loss, loss_at and optionally truncate,
# clip_step; sizes T, B, I, H, O; scale of Ws (Ws ~ N(0, scale^2 / H)); the NumPy seed; optional
# flags bias=False (no b, by), s0=True (nonzero s0, and c0 for the lstm), soft=True (soft targets).
CASES = [
    dict(name="rnn_tanh_softmax_mse_last", cell="rnn", activation="tanh", output="softmax",
         loss="mse", loss_at="last", T=6, B=3, I=3, H=5, O=4, scale=1.0, seed=101),
    dict(name="rnn_tanh_softmax_mse_all", cell="rnn", activation="tanh", output="softmax",
         loss="mse", loss_at="all", T=7, B=2, I=2, H=4, O=3, scale=1.2, seed=102),
    dict(name="rnn_tanh_softmax_ce_last", cell="rnn", activation="tanh", output="softmax",
         loss="ce", loss_at="last", T=5, B=4, I=3, H=6, O=3, scale=0.9, seed=103),
    dict(name="rnn_tanh_softmax_ce_all_soft_s0", cell="rnn", activation="tanh", output="softmax",
         loss="ce", loss_at="all", T=6, B=3, I=2, H=5, O=4, scale=1.1, seed=104, soft=True,
         s0=True),
    dict(name="rnn_tanh_linear_mse_all", cell="rnn", activation="tanh", output="linear",
         loss="mse", loss_at="all", T=8, B=2, I=3, H=4, O=2, scale=1.0, seed=105),
    dict(name="rnn_tanh_linear_mse_last_nobias", cell="rnn", activation="tanh", output="linear",
         loss="mse", loss_at="last", T=6, B=3, I=2, H=5, O=3, scale=1.3, seed=106, bias=False),
    dict(name="rnn_relu_softmax_mse_all", cell="rnn", activation="relu", output="softmax",
         loss="mse", loss_at="all", T=7, B=3, I=3, H=6, O=3, scale=1.0, seed=107),
    dict(name="rnn_relu_softmax_ce_last", cell="rnn", activation="relu", output="softmax",
         loss="ce", loss_at="last", T=6, B=2, I=2, H=5, O=4, scale=1.1, seed=108),
    dict(name="rnn_relu_linear_mse_last", cell="rnn", activation="relu", output="linear",
         loss="mse", loss_at="last", T=8, B=3, I=3, H=5, O=2, scale=0.9, seed=109),
    dict(name="lstm_softmax_mse_last", cell="lstm", activation="tanh", output="softmax",
         loss="mse", loss_at="last", T=6, B=3, I=3, H=4, O=3, scale=1.0, seed=201),
    dict(name="lstm_softmax_ce_all_s0", cell="lstm", activation="tanh", output="softmax",
         loss="ce", loss_at="all", T=7, B=3, I=3, H=5, O=3, scale=1.0, seed=203, s0=True),
    dict(name="lstm_softmax_ce_last", cell="lstm", activation="tanh", output="softmax",
         loss="ce", loss_at="last", T=6, B=2, I=2, H=4, O=3, scale=1.5, seed=204),
    dict(name="lstm_linear_mse_all", cell="lstm", activation="tanh", output="linear",
         loss="mse", loss_at="all", T=6, B=3, I=3, H=4, O=2, scale=1.0, seed=205),
    dict(name="rnn_tanh_trunc3_all_ce", cell="rnn", activation="tanh", output="softmax",
         loss="ce", loss_at="all", truncate=3, T=9, B=3, I=3, H=5, O=3, scale=1.3, seed=301),
    dict(name="rnn_tanh_trunc4_last_mse", cell="rnn", activation="tanh", output="softmax",
         loss="mse", loss_at="last", truncate=4, T=9, B=2, I=2, H=4, O=3, scale=1.2, seed=302),
    dict(name="rnn_relu_trunc1_all_linear", cell="rnn", activation="relu", output="linear",
         loss="mse", loss_at="all", truncate=1, T=6, B=3, I=2, H=4, O=2, scale=1.0, seed=303),
    dict(name="lstm_trunc3_all_linear_s0", cell="lstm", activation="tanh", output="linear",
         loss="mse", loss_at="all", truncate=3, T=8, B=2, I=3, H=4, O=2, scale=1.2, seed=304,
         s0=True),
    dict(name="lstm_trunc2_last_ce", cell="lstm", activation="tanh", output="softmax",
         loss="ce", loss_at="last", truncate=2, T=7, B=3, I=2, H=3, O=4, scale=1.0, seed=305),
    dict(name="rnn_tanh_clip_all_linear", cell="rnn", activation="tanh", output="linear",
         loss="mse", loss_at="all", clip_step=2.0, T=10, B=3, I=3, H=6, O=3, scale=1.6,
         seed=401),
    dict(name="lstm_clip_all_ce", cell="lstm", activation="tanh", output="softmax",
         loss="ce", loss_at="all", clip_step=0.2, T=8, B=3, I=3, H=4, O=3, scale=1.5, seed=402),
    dict(name="rnn_relu_clip_trunc3_all_linear", cell="rnn", activation="relu", output="linear",
         loss="mse", loss_at="all", clip_step=1.5, truncate=3, T=10, B=3, I=3, H=5, O=3,
         scale=0.6, seed=403),
    dict(name="lstm_clip_trunc4_all_linear", cell="lstm", activation="tanh", output="linear",
         loss="mse", loss_at="all", clip_step=1.0, truncate=4, T=9, B=2, I=2, H=4, O=3,
         scale=1.5, seed=404),
    dict(name="rnn_tanh_T30_explode", cell="rnn", activation="tanh", output="linear",
         loss="mse", loss_at="last", T=30, B=2, I=2, H=16, O=2, scale=4.0, seed=511),
    dict(name="rnn_tanh_T30_vanish", cell="rnn", activation="tanh", output="softmax",
         loss="mse", loss_at="last", T=30, B=2, I=2, H=8, O=3, scale=0.7, seed=502),
    # the GRU (tests/data/golden_gru.npz)
    dict(name="gru_softmax_mse_last", cell="gru", activation="tanh", output="softmax",
         loss="mse", loss_at="last", T=6, B=3, I=3, H=4, O=3, scale=1.0, seed=601),
    dict(name="gru_softmax_mse_all", cell="gru", activation="tanh", output="softmax",
         loss="mse", loss_at="all", T=7, B=2, I=2, H=5, O=3, scale=1.2, seed=602),
    dict(name="gru_softmax_ce_last", cell="gru", activation="tanh", output="softmax",
         loss="ce", loss_at="last", T=5, B=4, I=3, H=6, O=3, scale=0.9, seed=603),
    dict(name="gru_softmax_ce_all_soft_s0", cell="gru", activation="tanh", output="softmax",
         loss="ce", loss_at="all", T=6, B=3, I=2, H=5, O=4, scale=1.1, seed=604, soft=True,
         s0=True),
    dict(name="gru_linear_mse_all", cell="gru", activation="tanh", output="linear",
         loss="mse", loss_at="all", T=8, B=2, I=3, H=4, O=2, scale=1.0, seed=605),
    dict(name="gru_linear_mse_last_nobias", cell="gru", activation="tanh", output="linear",
         loss="mse", loss_at="last", T=6, B=3, I=2, H=5, O=3, scale=1.3, seed=606, bias=False),
    dict(name="gru_trunc3_all_ce", cell="gru", activation="tanh", output="softmax",
         loss="ce", loss_at="all", truncate=3, T=9, B=3, I=3, H=5, O=3, scale=1.3, seed=611),
    dict(name="gru_trunc4_last_mse_s0", cell="gru", activation="tanh", output="softmax",
         loss="mse", loss_at="last", truncate=4, T=9, B=2, I=2, H=4, O=3, scale=1.2, seed=612,
         s0=True),
    dict(name="gru_trunc1_all_linear", cell="gru", activation="tanh", output="linear",
         loss="mse", loss_at="all", truncate=1, T=6, B=3, I=2, H=4, O=2, scale=1.0, seed=613),
    dict(name="gru_clip_all_linear", cell="gru", activation="tanh", output="linear",
         loss="mse", loss_at="all", clip_step=2.0, T=10, B=3, I=3, H=6, O=3, scale=1.6,
         seed=621),
    dict(name="gru_clip_trunc3_all_linear", cell="gru", activation="tanh", output="linear",
         loss="mse", loss_at="all", clip_step=1.5, truncate=3, T=10, B=3, I=3, H=5, O=3,
         scale=1.5, seed=622),
    dict(name="gru_T30_long", cell="gru", activation="tanh", output="softmax",
         loss="mse", loss_at="last", T=30, B=2, I=2, H=8, O=3, scale=2.0, seed=631),
]


# ------------------------------------------------------------------------------- case inputs

def draw_inputs(case: dict) -> tuple[dict, dict]:
    """NumPy float64 draws from the case's seed: (params, extra) with extra x, d, maybe s0, c0."""
    rng = np.random.default_rng(case["seed"])
    T, B, I, H, O = (case[k] for k in ("T", "B", "I", "H", "O"))
    G = {"lstm": 4 * H, "gru": 3 * H}.get(case["cell"], H)
    p = {"Ws": rng.standard_normal((H, G)) * case["scale"] / np.sqrt(H),
         "Wx": rng.standard_normal((I, G)) / np.sqrt(I),
         "Wy": rng.standard_normal((H, O)) / np.sqrt(H)}
    if case.get("bias", True):
        p["b"] = 0.3 * rng.standard_normal(G)
        p["by"] = 0.3 * rng.standard_normal(O)
    x = rng.standard_normal((T, B, I))
    if case["output"] == "linear":
        d = rng.standard_normal((T, B, O))
    elif case.get("soft"):
        d = rng.dirichlet(np.ones(O), size=(T, B))
    else:
        d = np.eye(O)[rng.integers(0, O, (T, B))]
    if case["cell"] == "gru" and case.get("bias", True):
        p["bn"] = 0.3 * rng.standard_normal(H)
    extra = {"x": x, "d": d}
    if case.get("s0"):
        extra["s0"] = 0.5 * rng.standard_normal((B, H))
        if case["cell"] == "lstm":
            extra["c0"] = rng.standard_normal((B, H))
    return p, extra


def options(case: dict) -> dict:
    """The bptt keyword options of a case."""
    return {"cell": case["cell"], "activation": case["activation"], "output": case["output"],
            "loss": case["loss"], "loss_at": case["loss_at"],
            "truncate": case.get("truncate"), "clip_step": case.get("clip_step")}


# ------------------------------------------------------------------------------- torch pieces

def _t(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a), dtype=DT)


def make_cell(cell: str, activation: str, I: int, H: int, bias: bool) -> torch.nn.Module:
    if cell == "lstm":
        return torch.nn.LSTMCell(I, H, bias=bias, dtype=DT)
    if cell == "gru":
        return torch.nn.GRUCell(I, H, bias=bias, dtype=DT)
    return torch.nn.RNNCell(I, H, bias=bias, nonlinearity=activation, dtype=DT)


def cell_params(Wx, Ws, b, bn=None) -> dict:
    """Engine layout -> the cell module's parameters: weight_ih = Wx.T, weight_hh = Ws.T,
    bias_ih = b, bias_hh = 0, except the GRU's candidate block of bias_hh, which is bn."""
    out = {"weight_ih": Wx.T, "weight_hh": Ws.T}
    if b is not None:
        out["bias_ih"] = b
        out["bias_hh"] = _bias_hh(b, bn)
    return out


def _bias_hh(b, bn):
    """bias_hh: zeros, or (0, 0, bn) for the GRU (bn given)."""
    if bn is None:
        return torch.zeros_like(b)
    return torch.cat([torch.zeros(b.shape[0] - bn.shape[0], dtype=DT), bn])


def head_loss(h, Wy, by, dt, output: str, loss: str, B: int):
    """One loss term E_t for states h (B, H) and targets dt (B, O); returns (E_t, y_t)."""
    logits = h @ Wy
    if by is not None:
        logits = logits + by
    if loss == "ce":
        return -(dt * torch.log_softmax(logits, dim=-1)).sum() / B, torch.softmax(logits, -1)
    y = torch.softmax(logits, dim=-1) if output == "softmax" else logits
    return ((dt - y) ** 2).sum() / B, y


def _setup(p: dict, inp: dict, opts: dict):
    x, d = _t(inp["x"]), _t(inp["d"])
    T, B, I = x.shape
    H = p["Ws"].shape[0]
    lstm = opts["cell"] == "lstm"
    bias = "b" in p
    cell = make_cell(opts["cell"], opts["activation"], I, H, bias)
    s0 = _t(inp["s0"]) if "s0" in inp else torch.zeros(B, H, dtype=DT)
    c0 = (_t(inp["c0"]) if "c0" in inp else torch.zeros(B, H, dtype=DT)) if lstm else None
    loss_steps = [T] if opts["loss_at"] == "last" else list(range(1, T + 1))
    k = opts["truncate"]
    return x, d, T, B, H, lstm, bias, cell, s0, c0, loss_steps, k


def _true_forward(cell, p, x, s0, c0, lstm):
    """The plain forward (no grad): states s_0..s_T and (lstm) cells c_0..c_T."""
    with torch.no_grad():
        prm = cell_params(_t(p["Wx"]), _t(p["Ws"]), _t(p["b"]) if "b" in p else None,
                          _t(p["bn"]) if "bn" in p else None)
        S, C = [s0], [c0]
        for t in range(x.shape[0]):
            if lstm:
                h, c = functional_call(cell, prm, (x[t], (S[-1], C[-1])))
                C.append(c)
            else:
                h = functional_call(cell, prm, (x[t], S[-1]))
            S.append(h)
    return S, C


def torch_reference(p: dict, inp: dict, opts: dict) -> dict:
    """Loss, gradients (engine layout) and per-step norms from autograd, see the module doc."""
    x, d, T, B, H, lstm, bias, cell, s0, c0, loss_steps, k = _setup(p, inp, opts)
    clip = opts["clip_step"]
    S_true, C_true = _true_forward(cell, p, x, s0, c0, lstm)

    def start(tau):                                   # first step of loss term tau's window
        return 1 if k is None else max(1, tau - k + 1)

    # leaves: one copy of Wx, Ws, b per step; Wy, by shared
    Wx_c = [_t(p["Wx"]).requires_grad_() for _ in range(T)]
    Ws_c = [_t(p["Ws"]).requires_grad_() for _ in range(T)]
    b_c = [_t(p["b"]).requires_grad_() for _ in range(T)] if bias else [None] * T
    Wy = _t(p["Wy"]).requires_grad_()
    by = _t(p["by"]).requires_grad_() if "by" in p else None
    bn = _t(p["bn"]).requires_grad_() if "bn" in p else None      # the GRU's b_hn, shared

    factors = np.ones((T, B))
    states, cells = {}, {}                             # t -> (n_t, B, H) stacked over chains
    prev = {}                                          # tau -> (h, c) of its chain, last step

    def make_hook(t):
        def hook(g):
            tot = g.sum(dim=0)                         # total dE/ds_t over all chains: (B, H)
            nrm = tot.norm(dim=-1)
            f = torch.where(nrm > clip, clip / torch.where(nrm > clip, nrm, 1.0), 1.0)
            factors[t - 1] = f.detach().numpy()
            return g * f[None, :, None]
        return hook

    terms = []
    for t in range(1, T + 1):
        alive = [tau for tau in loss_steps if start(tau) <= t <= tau]
        if not alive:
            continue
        hs, cs = [], []
        for tau in alive:
            if t == start(tau):                        # window starts: detached true state
                hs.append(S_true[t - 1].detach())
                cs.append(C_true[t - 1].detach() if lstm else None)
            else:
                hs.append(prev[tau][0])
                cs.append(prev[tau][1])
        n = len(alive)
        hx = torch.stack(hs).reshape(n * B, H)
        xin = x[t - 1].repeat(n, 1)
        prm = cell_params(Wx_c[t - 1], Ws_c[t - 1], b_c[t - 1], bn)
        if lstm:
            cx = torch.stack(cs).reshape(n * B, H)
            h, c = functional_call(cell, prm, (xin, (hx, cx)))
            c.retain_grad()                            # c itself: h_t reads c, not a view
            cells[t] = c
            Ct = c.reshape(n, B, H)
        else:
            h = functional_call(cell, prm, (xin, hx))
        St = h.reshape(n, B, H)
        if clip is not None:
            St.register_hook(make_hook(t))
        St.retain_grad()
        states[t] = St
        for j, tau in enumerate(alive):
            prev[tau] = (St[j], Ct[j] if lstm else None)
            if tau == t:
                terms.append(head_loss(St[j], Wy, by, d[t - 1], opts["output"], opts["loss"],
                                       B)[0])
    E = torch.stack(terms).sum()
    E.backward()
    E_total = float(E.detach())

    def grad_or_zero(leaf):
        return np.zeros(tuple(leaf.shape)) if leaf.grad is None else leaf.grad.numpy().copy()

    gWx = [grad_or_zero(w) for w in Wx_c]
    gWs = [grad_or_zero(w) for w in Ws_c]
    out = {"loss": np.float64(E_total),
           "grad_Wx": np.sum(gWx, axis=0), "grad_Ws": np.sum(gWs, axis=0),
           "grad_Wy": Wy.grad.numpy().copy(),
           "dWx": np.array([np.linalg.norm(g) for g in gWx]),
           "dWs": np.array([np.linalg.norm(g) for g in gWs])}
    if bias:
        out["grad_b"] = np.sum([grad_or_zero(w) for w in b_c], axis=0)
    if by is not None:
        out["grad_by"] = by.grad.numpy().copy()
    if bn is not None:
        out["grad_bn"] = grad_or_zero(bn)

    def step_norm(store, t):
        if t not in store or store[t].grad is None:
            return 0.0
        return float(np.linalg.norm(store[t].grad.reshape(-1, B, H).sum(dim=0).numpy()))

    out["ds"] = np.array([step_norm(states, t) for t in range(1, T + 1)])
    out["states"] = torch.stack(S_true[1:]).numpy()
    with torch.no_grad():                              # y_t at every step, loss step or not
        out["outputs"] = torch.stack([head_loss(S_true[t], Wy, by, d[t - 1], opts["output"],
                                                opts["loss"], B)[1]
                                      for t in range(1, T + 1)]).numpy()
    if lstm:
        out["dc"] = np.array([step_norm(cells, t) for t in range(1, T + 1)])
        out["cells"] = torch.stack(C_true[1:]).numpy()
    if clip is not None:
        out["clip_factors"] = factors
    return out


# ------------------------------------------------------------------------ independent checks

def fused_reference(p: dict, inp: dict, opts: dict) -> dict:
    """Whole sequence through fused nn.RNN / nn.LSTM (no truncation, no clipping): loss, grads."""
    x, d, T, B, H, lstm, bias, _, s0, c0, loss_steps, _ = _setup(p, inp, opts)
    I = x.shape[-1]
    if lstm:
        net = torch.nn.LSTM(I, H, bias=bias, dtype=DT)
    elif opts["cell"] == "gru":
        net = torch.nn.GRU(I, H, bias=bias, dtype=DT)
    else:
        net = torch.nn.RNN(I, H, nonlinearity=opts["activation"], bias=bias, dtype=DT)
    with torch.no_grad():
        net.weight_ih_l0.copy_(_t(p["Wx"]).T)
        net.weight_hh_l0.copy_(_t(p["Ws"]).T)
        if bias:
            net.bias_ih_l0.copy_(_t(p["b"]))
            net.bias_hh_l0.copy_(_bias_hh(_t(p["b"]), _t(p["bn"]) if "bn" in p else None))
    Wy = _t(p["Wy"]).requires_grad_()
    by = _t(p["by"]).requires_grad_() if "by" in p else None
    hx = (s0[None], c0[None]) if lstm else s0[None]
    seq, _ = net(x, hx)
    E = sum(head_loss(seq[t - 1], Wy, by, d[t - 1], opts["output"], opts["loss"], B)[0]
            for t in loss_steps)
    E.backward()
    out = {"loss": float(E.detach()), "grad_Wx": net.weight_ih_l0.grad.T.numpy(),
           "grad_Ws": net.weight_hh_l0.grad.T.numpy(), "grad_Wy": Wy.grad.numpy()}
    if bias:
        out["grad_b"] = net.bias_ih_l0.grad.numpy()
        # bias_hh enters exactly like bias_ih (the GRU: except its candidate block, b_hn):
        # its gradient must be the same
        same = 2 * H if "bn" in p else None
        gap = np.abs(net.bias_hh_l0.grad.numpy()[:same] - out["grad_b"][:same]).max()
        assert gap <= 1e-13 * np.abs(out["grad_b"]).max()
        if "bn" in p:
            out["grad_bn"] = net.bias_hh_l0.grad.numpy()[2 * H:]
    if by is not None:
        out["grad_by"] = by.grad.numpy()
    return out


def per_term_reference(p: dict, inp: dict, opts: dict) -> dict:
    """Truncation by the literal recipe (no clipping): for each loss term tau a separate graph
    from the detached state s_{tau-k}, its own backward; gradients and retained per-step state
    gradients summed over tau."""
    x, d, T, B, H, lstm, bias, cell, s0, c0, loss_steps, k = _setup(p, inp, opts)
    S_true, C_true = _true_forward(cell, p, x, s0, c0, lstm)
    acc = {"Wx": 0.0, "Ws": 0.0, "b": 0.0, "Wy": 0.0, "by": 0.0, "bn": 0.0}
    step = {key: np.zeros((T,) + shape) for key, shape in
            (("ds", (B, H)), ("dc", (B, H)), ("Wx", p["Wx"].shape), ("Ws", p["Ws"].shape))}
    E_total = 0.0
    for tau in loss_steps:
        s = 1 if k is None else max(1, tau - k + 1)
        h, c = S_true[s - 1].detach(), (C_true[s - 1].detach() if lstm else None)
        Wy = _t(p["Wy"]).requires_grad_()
        by = _t(p["by"]).requires_grad_() if "by" in p else None
        bn = _t(p["bn"]).requires_grad_() if "bn" in p else None
        leaves, hs, cs = [], [], []
        for t in range(s, tau + 1):
            wx, ws = _t(p["Wx"]).requires_grad_(), _t(p["Ws"]).requires_grad_()
            b = _t(p["b"]).requires_grad_() if bias else None
            leaves.append((t, wx, ws, b))
            prm = cell_params(wx, ws, b, bn)
            if lstm:
                h, c = functional_call(cell, prm, (x[t - 1], (h, c)))
                c.retain_grad()
                cs.append((t, c))
            else:
                h = functional_call(cell, prm, (x[t - 1], h))
            h.retain_grad()
            hs.append((t, h))
        E, _ = head_loss(h, Wy, by, d[tau - 1], opts["output"], opts["loss"], B)
        E.backward()
        E_total += float(E.detach())
        acc["Wy"] = acc["Wy"] + Wy.grad.numpy()
        if by is not None:
            acc["by"] = acc["by"] + by.grad.numpy()
        if bn is not None:
            acc["bn"] = acc["bn"] + bn.grad.numpy()
        for t, wx, ws, b in leaves:
            step["Wx"][t - 1] += wx.grad.numpy()
            step["Ws"][t - 1] += ws.grad.numpy()
            if bias:
                acc["b"] = acc["b"] + b.grad.numpy()
        for t, hh in hs:
            step["ds"][t - 1] += hh.grad.numpy()
        for t, cc in cs:
            step["dc"][t - 1] += cc.grad.numpy()
    norm = lambda a: np.sqrt((a.reshape(T, -1) ** 2).sum(axis=1))  # noqa: E731
    out = {"loss": E_total, "grad_Wx": step["Wx"].sum(0), "grad_Ws": step["Ws"].sum(0),
           "grad_Wy": acc["Wy"], "ds": norm(step["ds"]), "dWx": norm(step["Wx"]),
           "dWs": norm(step["Ws"])}
    if bias:
        out["grad_b"] = acc["b"]
    if "by" in p:
        out["grad_by"] = acc["by"]
    if "bn" in p:
        out["grad_bn"] = acc["bn"]
    if lstm:
        out["dc"] = norm(step["dc"])
    return out


def _agree(name: str, what: str, ref: dict, other: dict, rtol: float = 1e-10) -> None:
    """Normwise per array: these checks guard the mapping (a wrong one is off by O(1)); two
    correct torch paths differ elementwise by rounding amplified by the dynamics."""
    for key, v in other.items():
        a, b = np.asarray(ref[key], dtype=np.float64), np.asarray(v, dtype=np.float64)
        err = np.linalg.norm(a - b)
        if not err <= rtol * np.linalg.norm(a):
            raise SystemExit(f"{name}: {what} disagrees on {key}: |diff| {err:.3e}, "
                             f"|ref| {np.linalg.norm(a):.3e}")


# ------------------------------------------------------------------------------------ driver

def generate(case: dict) -> tuple[dict, dict, dict]:
    """(params, inputs, outputs) of one case, with the cross-checks applied."""
    p, inp = draw_inputs(case)
    opts = options(case)
    ref = torch_reference(p, inp, opts)
    if opts["clip_step"] is None:
        if opts["truncate"] is None:
            _agree(case["name"], "fused nn.RNN/nn.LSTM", ref, fused_reference(p, inp, opts))
        _agree(case["name"], "per-term graphs", ref, per_term_reference(p, inp, opts))
    return p, inp, ref


def main(argv: list[str]) -> int:
    if not torch.__version__.startswith(TORCH_VERSION):
        print(f"warning: torch {torch.__version__}, the stored values used {TORCH_VERSION}",
              file=sys.stderr)
    unknown = [a for a in argv if a not in FILES]
    if unknown:
        print(f"make_golden.py: got {unknown}; allowed: file names {', '.join(FILES)}",
              file=sys.stderr)
        return 2
    torch.use_deterministic_algorithms(True)
    for fname in argv or list(FILES):
        write(DATA / fname, [c for c in CASES if c["cell"] in FILES[fname]])
    return 0


def write(path: Path, cases: list[dict]) -> None:
    """Generate ``cases`` and store them in one npz (layout in the module docstring)."""
    arrays = {}
    names = []
    for case in cases:
        p, inp, ref = generate(case)
        name = case["name"]
        names.append(name)
        arrays[f"{name}/options"] = np.array(json.dumps(options(case)))
        for key, v in p.items():
            arrays[f"{name}/in/{key}"] = v
        for key, v in inp.items():
            arrays[f"{name}/in/{key}"] = v
        for key, v in ref.items():
            arrays[f"{name}/out/{key}"] = np.asarray(v, dtype=np.float64)
        cf = ref.get("clip_factors")
        clipped = "" if cf is None else f"  clipped {int((cf < 1).sum())}/{cf.size}"
        print(f"{name:36s} loss {ref['loss']:.6g}  ds {ref['ds'].min():.2e}..{ref['ds'].max():.2e}"
              f"{clipped}")
    arrays["cases"] = np.array(json.dumps(names))
    arrays["meta"] = np.array(json.dumps({"torch": torch.__version__, "numpy": np.__version__}))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    print(f"wrote {path} ({path.stat().st_size} bytes, {len(names)} cases)")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
