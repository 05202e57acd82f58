"""Back-propagation through time as the lecture writes it: the readable reference engine.

``reference.bptt`` takes the same arguments and returns the same ``BPTTResult`` as the fast
engine ``rnnlab.engine.bptt``, computed the slow and obvious way: one network at a time (a plain
loop over runs), a forward loop over t, a backward loop over t, every step's term of the
chain-rule sum formed in plain sight and added up. It is what the fast engine is tested against
(``tests/test_reference.py``) and what ``rnnlab gradcheck --engine reference`` checks.

The lecture's network (t = 1..T; B sequences, I inputs, H hidden units, O outputs):

    s_t = tanh(x_t Wx + s_{t-1} Ws + b)          x_t: (B, I)  s_t: (B, H)  Wx: (I, H)  Ws: (H, H)
    y_t = softmax(s_t Wy + by)                    y_t, d_t: (B, O)  Wy: (H, O)
    E_t = (d_t - y_t)^2   (summed over outputs, averaged over the B sequences)
    E   = E_T (loss_at="last")  or  sum_t E_t (loss_at="all")

Its gradient is a sum over time steps (the lecture's dE_N/dWs = sum_i dE_N/dy_N dy_N/ds_i
ds_i/dWs). Backward, the error delta_t = dE/ds_t flows from the loss steps back to t = 1:

    delta_t  = dE_t/ds_t + dz_{t+1} Ws^T          (B, H); dE_t/ds_t = dE_t/dl_t Wy^T
    dz_t     = delta_t * phi'(z_t)                (B, H), phi'(z_t) = 1 - s_t^2 for tanh
    dWs      = sum_t s_{t-1}^T dz_t               each term (H, H): step t's share of the gradient
    dWx      = sum_t x_t^T dz_t,   db = sum_t sum_b dz_t

Truncation (BPTT(k), ``truncate=k``): the error of the loss term E_tau reaches back to step
tau-k+1 and no further, so each loss term's error is kept apart while it travels ("in flight")
and dropped when its window ends. Per-step clipping (``clip_step=c``): before it flows on,
delta_t of each sequence is rescaled to norm c where its norm exceeds c.

Per-step norms (``step_norms``, (T,) each): "ds" ||delta_t||, "dWs" ||s_{t-1}^T dz_t|| (step t's
term of the sum), "dWx" ||x_t^T dz_t|| and, for the LSTM, "dc" ||dE/dc_t||; with clipping,
``extra["clip_factors"]`` (T, B) is the factor each sequence's delta_t was scaled by.

The LSTM and the GRU differ only in the step (``lstm_step``, ``gru_step`` and their backward
steps, equations in their docstrings); the loops are the same. The LSTM carries a second error
in flight, dE/dc_t.
"""

from __future__ import annotations

import numpy as np

from .bptt import BPTTResult, check_arguments

# ------------------------------------------------------------------------- nonlinearities

def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def phi(activation: str, z):
    """The vanilla cell's nonlinearity s = phi(z)."""
    if activation == "tanh":
        return np.tanh(z)
    if activation == "relu":
        return np.maximum(z, 0)
    if activation == "sigmoid":
        return sigmoid(z)
    return z                                             # identity


def phi_prime(activation: str, s):
    """phi'(z), written through s = phi(z)."""
    if activation == "tanh":
        return 1 - s * s
    if activation == "relu":
        return (s > 0).astype(s.dtype)
    if activation == "sigmoid":
        return s * (1 - s)
    return np.ones_like(s)                               # identity


def softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# -------------------------------------------------------------------------------- cells
# A step forward returns (s_t, c_t, memory): the state, the LSTM's cell (None for the others)
# and what the step backward needs. A step backward takes the errors arriving at step t,
# delta = dE/ds_t (B, H) and, for the LSTM, dc = the error reaching c_t from c_{t+1}, and returns
# (dz_rec, dz_in, delta_prev, dc_prev, dc_t): the pre-activation gradients that the recurrent
# weights (s_{t-1}^T dz_rec) and the input weights (x_t^T dz_in) see, the errors flowing on to
# s_{t-1} and c_{t-1}, and the LSTM's total dE/dc_t (None for the others).

def rnn_step(p, x_t, s_prev, c_prev, activation):
    """z_t = x_t Wx + s_{t-1} Ws + b;  s_t = phi(z_t).   Wx: (I, H), Ws: (H, H), b: (H,)."""
    z = x_t @ p["Wx"] + s_prev @ p["Ws"] + p["b"]
    s = phi(activation, z)
    return s, None, {"s": s}


def rnn_step_back(p, m, delta, dc, activation):
    """dz_t = delta_t * phi'(z_t);  delta_{t-1} = dz_t Ws^T."""
    dz = delta * phi_prime(activation, m["s"])
    return dz, dz, dz @ p["Ws"].T, None, None


def lstm_step(p, x_t, s_prev, c_prev, activation):
    """PyTorch's LSTMCell, gate order i, f, g, o (Wx: (I, 4H), Ws: (H, 4H), b: (4H,)):

        a_t = x_t Wx + s_{t-1} Ws + b = [a_i, a_f, a_g, a_o]
        i, f, o = sigmoid(a_i, a_f, a_o);   g = tanh(a_g)
        c_t = f c_{t-1} + i g;              s_t = o tanh(c_t)
    """
    H = s_prev.shape[1]
    a = x_t @ p["Wx"] + s_prev @ p["Ws"] + p["b"]
    i, f = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H])
    g, o = np.tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
    c = f * c_prev + i * g
    s = o * np.tanh(c)
    return s, c, {"i": i, "f": f, "g": g, "o": o, "c_prev": c_prev, "tanh_c": np.tanh(c)}


def lstm_step_back(p, m, delta, dc, activation):
    """dc_t  = dc_{t+1} f_{t+1} + delta_t o (1 - tanh^2 c_t)     (dc arrives as dc_{t+1} f_{t+1})
    da_i = dc_t g i (1 - i);   da_f = dc_t c_{t-1} f (1 - f)
    da_g = dc_t i (1 - g^2);   da_o = delta_t tanh(c_t) o (1 - o)
    delta_{t-1} = da_t Ws^T;   the error reaching c_{t-1}: dc_t f_t
    """
    i, f, g, o, tanh_c = m["i"], m["f"], m["g"], m["o"], m["tanh_c"]
    dc = dc + delta * o * (1 - tanh_c ** 2)
    da = np.concatenate([dc * g * i * (1 - i), dc * m["c_prev"] * f * (1 - f),
                         dc * i * (1 - g ** 2), delta * tanh_c * o * (1 - o)], axis=1)
    return da, da, da @ p["Ws"].T, dc * f, dc


def gru_step(p, x_t, s_prev, c_prev, activation):
    """PyTorch's GRUCell, gate order r, z, n (Wx: (I, 3H), Ws: (H, 3H), b: (3H,), bn: (H,)):

        a_t = x_t Wx + b = [a_r, a_z, a_n];    h_t = s_{t-1} Ws = [h_r, h_z, h_n]
        r = sigmoid(a_r + h_r);  z = sigmoid(a_z + h_z);  q_t = h_n + bn
        n = tanh(a_n + r q_t);   s_t = (1 - z) n + z s_{t-1}
    """
    H = s_prev.shape[1]
    a, h = x_t @ p["Wx"] + p["b"], s_prev @ p["Ws"]
    r = sigmoid(a[:, :H] + h[:, :H])
    z = sigmoid(a[:, H:2 * H] + h[:, H:2 * H])
    q = h[:, 2 * H:] + p["bn"]
    n = np.tanh(a[:, 2 * H:] + r * q)
    s = (1 - z) * n + z * s_prev
    return s, None, {"r": r, "z": z, "n": n, "q": q, "s_prev": s_prev}


def gru_step_back(p, m, delta, dc, activation):
    """da_n = delta_t (1 - z)(1 - n^2);  dq = da_n r;  da_r = da_n q r (1 - r)
    da_z = delta_t (s_{t-1} - n) z (1 - z)
    the recurrent weights see [da_r, da_z, dq], the input weights [da_r, da_z, da_n]
    delta_{t-1} = [da_r, da_z, dq] Ws^T + delta_t z
    """
    r, z, n, q = m["r"], m["z"], m["n"], m["q"]
    da_n = delta * (1 - z) * (1 - n ** 2)
    da_r = da_n * q * r * (1 - r)
    da_z = delta * (m["s_prev"] - n) * z * (1 - z)
    dq = da_n * r
    dz_rec = np.concatenate([da_r, da_z, dq], axis=1)
    dz_in = np.concatenate([da_r, da_z, da_n], axis=1)
    return dz_rec, dz_in, dz_rec @ p["Ws"].T + delta * z, None, None


STEPS = {"rnn": (rnn_step, rnn_step_back), "lstm": (lstm_step, lstm_step_back),
         "gru": (gru_step, gru_step_back)}


# --------------------------------------------------------------------------- head and loss

def head_and_loss(p, s_t, d_t, output, loss):
    """l_t = s_t Wy + by;  y_t = softmax(l_t) or l_t;  E_t and dE_t/dl_t (B, O):

        mse:         E_t = (1/B) sum (d_t - y_t)^2;   dE_t/dy_t = 2 (y_t - d_t) / B
                     softmax: dE_t/dl_t = y_t * (dE_t/dy_t - <dE_t/dy_t, y_t>)
        ce+softmax:  E_t = -(1/B) sum d_t log y_t;    dE_t/dl_t = (y_t sum_k d_tk - d_t) / B
    """
    B = s_t.shape[0]
    logits = s_t @ p["Wy"] + p["by"]
    y = softmax(logits) if output == "softmax" else logits
    if loss == "mse":
        E = np.sum((d_t - y) ** 2) / B
        dE_dy = 2 * (y - d_t) / B
        if output == "softmax":
            dE_dl = y * (dE_dy - np.sum(dE_dy * y, axis=1, keepdims=True))
        else:
            dE_dl = dE_dy
    else:
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_y = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        E = -np.sum(d_t * log_y) / B
        dE_dl = (y * d_t.sum(axis=1, keepdims=True) - d_t) / B
    return y, E, dE_dl


# ------------------------------------------------------------------------------ one run

def total_error(in_flight: dict, zeros):
    """delta_t = dE/ds_t: the sum of the errors in flight at step t, (B, H)."""
    return sum((delta_tau for delta_tau, _ in in_flight.values()), zeros)


def clip_factor(delta, c):
    """Per sequence b: c / ||delta_b|| where ||delta_b|| > c, else 1.  delta: (B, H) -> (B,)."""
    norm = np.linalg.norm(delta, axis=1)
    return np.where(norm > c, c / np.where(norm > c, norm, 1), 1.0)


def bptt_one_run(p, x, d, s0, c0, *, cell, activation, output, loss, loss_at, truncate, clip):
    """BPTT for one network, one step at a time.

    Parameters
    ----------
    p : dict of name -> array
        Wx (I, G), Ws (H, G), Wy (H, O), b (G,), by (O,) and, for the gru, bn (H,); every bias
        present (zeros where the caller has none). G = H (rnn), 4H (lstm), 3H (gru).
    x : (T, B, I) inputs x_1..x_T.    d : (T, B, O) targets d_1..d_T.
    s0, c0 : (B, H) initial state and (lstm) initial cell.
    truncate : the window k of BPTT(k), or None for exact BPTT.
    clip : the per-step threshold c on ||delta_t|| of each sequence, or None.

    Returns
    -------
    BPTTResult without a run axis: loss E; grads like p; states (T, B, H) s_1..s_T; outputs
    (T, B, O) y_1..y_T; cells (T, B, H) c_1..c_T (lstm) or None; step_norms "ds", "dWs", "dWx"
    (and "dc"), (T,) each; extra["clip_factors"] (T, B).
    """
    T, B, _ = x.shape
    step, step_back = STEPS[cell]

    # ---- forward: s_t for t = 1..T (s[0] = s0), y_t and E_t at the loss steps
    s, c, memory = [s0], [c0], []
    for t in range(T):
        s_t, c_t, m = step(p, x[t], s[t], c[t], activation)
        s.append(s_t)
        c.append(c_t)
        memory.append(m)
    E, y, dE_ds = 0.0, [], {}
    grads = {name: np.zeros_like(v) for name, v in p.items()}
    for t in range(T):
        y_t, E_t, dE_dl = head_and_loss(p, s[t + 1], d[t], output, loss)
        y.append(y_t)
        if loss_at == "all" or t == T - 1:               # a loss step
            E += E_t
            dE_ds[t] = dE_dl @ p["Wy"].T                 # dE_t/ds_t: where delta starts
            grads["Wy"] += s[t + 1].T @ dE_dl
            grads["by"] += dE_dl.sum(axis=0)

    # ---- backward: t = T..1. ``in_flight`` maps a loss step tau to the error of E_tau arriving
    # at step t: (dE_tau/ds_t, and for the LSTM the part of dE_tau/dc_t coming from c_{t+1}).
    # Without truncation no error ever expires, so they all travel as one sum under one key.
    in_flight = {}
    H = s0.shape[1]
    zeros = np.zeros_like(s0)
    ds, dWs, dWx, dc_norm = (np.zeros(T, s0.dtype) for _ in range(4))
    clip_factors = np.ones((T, B), s0.dtype)
    for t in reversed(range(T)):
        if t in dE_ds:                                   # the loss term E_t starts its error
            key = t if truncate else "all"
            delta_key, dc_key = in_flight.get(key, (zeros, zeros))
            in_flight[key] = (delta_key + dE_ds[t], dc_key)
        if truncate:                                     # truncation: E_tau reaches back k steps
            in_flight = {tau: e for tau, e in in_flight.items() if tau - t < truncate}
        if clip is not None:                             # per-step clipping: ||delta_t|| <= c
            clip_factors[t] = factor = clip_factor(total_error(in_flight, zeros), clip)
            in_flight = {tau: (dl * factor[:, None], dc) for tau, (dl, dc) in in_flight.items()}
        delta = total_error(in_flight, zeros)            # delta_t = dE/ds_t: (B, H)
        ds[t] = np.linalg.norm(delta)
        if not in_flight:                                # no error reaches step t
            continue
        dz_rec, dz_in, dc_t = 0, 0, zeros
        for tau, (delta_tau, dc_tau) in in_flight.items():   # each error one step back
            rec, inp, delta_prev, dc_prev, dc_total = step_back(p, memory[t], delta_tau, dc_tau,
                                                                activation)
            dz_rec, dz_in = dz_rec + rec, dz_in + inp
            if dc_total is not None:
                dc_t = dc_t + dc_total
            in_flight[tau] = (delta_prev, dc_prev)
        term_Ws, term_Wx = s[t].T @ dz_rec, x[t].T @ dz_in      # step t's terms of the sums
        grads["Ws"] += term_Ws
        grads["Wx"] += term_Wx
        grads["b"] += dz_in.sum(axis=0)
        if cell == "gru":
            grads["bn"] += dz_rec[:, 2 * H:].sum(axis=0)       # dq: the b_hn block
        dWs[t], dWx[t] = np.linalg.norm(term_Ws), np.linalg.norm(term_Wx)
        dc_norm[t] = np.linalg.norm(dc_t)

    step_norms = {"ds": ds, "dWs": dWs, "dWx": dWx}
    if cell == "lstm":
        step_norms["dc"] = dc_norm
    return BPTTResult(loss=E, grads=grads, states=np.array(s[1:]), outputs=np.array(y),
                      step_norms=step_norms, cells=np.array(c[1:]) if cell == "lstm" else None,
                      extra={"clip_factors": clip_factors})


# ---------------------------------------------------------------------------- the engine

def bptt(params: dict, x, d, *, cell: str = "rnn", activation: str = "tanh",
         output: str = "softmax", loss: str = "mse", loss_at: str = "last",
         truncate: int | None = None, clip_step=None, s0=None, c0=None, norms: bool = True,
         outputs: bool = True) -> BPTTResult:
    """Forward pass, loss and exact (or truncated) BPTT gradients, with per-step norms.

    The same arguments, checks and result as ``rnnlab.engine.bptt``; each run is computed alone,
    one after the other (``bptt_one_run``).

    Parameters
    ----------
    params : dict of name -> array
        Wx (I, G), Ws (H, G), Wy (H, O) and optional b (G,), by (O,), bn (H,) (gru only), with
        G = H (rnn), 4H (lstm, gate order i, f, g, o) or 3H (gru, gate order r, z, n).
    x : (T, B, I) inputs.    d : (T, B, O) targets.
    cell : "rnn", "lstm" or "gru";  activation : phi of the rnn cell (tanh, relu, sigmoid,
        identity);  output : "softmax" or "linear";  loss : "mse" or "ce";  loss_at : "last"
        (E = E_T) or "all" (E = sum_t E_t).
    truncate : k, each loss term's error reaches back k steps at most; None: exact.
    clip_step : c (scalar or (R,)), the per-step threshold on each sequence's ||delta_t||.
    s0, c0 : (B, H) initial state and (lstm) cell; zeros when None.
    norms, outputs : False leaves out the step norms ({}) and the outputs (None).
    Any array may carry a leading run axis R (params (R, ...), x (R, T, B, I), ...).

    Returns
    -------
    BPTTResult: loss, scalar or (R,); grads, like params; states (T, B, H); outputs (T, B, O);
    cells (T, B, H) (lstm); step_norms "ds", "dWs", "dWx" (and "dc") (T,); extra["clip_factors"]
    (T, B) with clip_step. With a run axis in the inputs every entry carries R in front.
    """
    a = check_arguments(params, x, d, cell=cell, activation=activation, output=output, loss=loss,
                        loss_at=loss_at, truncate=truncate, clip_step=clip_step, s0=s0, c0=c0)
    T, B = a.x.shape[1:3]
    H, G = a.params["Ws"].shape[-2:]
    O = a.params["Wy"].shape[-1]
    absent = {"b": (G,), "by": (O,), "bn": (H,)}
    runs = []
    for r in range(a.R):
        def run(v, r=r):                                 # run r's slice of a run-axis array
            return v[r] if v.shape[0] == a.R else v[0]
        p = {name: run(v) for name, v in a.params.items()}
        p.update({name: np.zeros(shape, a.dtype) for name, shape in absent.items()
                  if name not in p and (name != "bn" or cell == "gru")})   # absent biases: 0
        s0_r = np.zeros((B, H), a.dtype) if a.s0 is None else run(a.s0)
        c0_r = np.zeros((B, H), a.dtype) if a.c0 is None else (
            a.c0[r] if a.c0.ndim == 3 else a.c0)
        runs.append(bptt_one_run(p, run(a.x), run(a.d), s0_r, c0_r, cell=cell,
                                 activation=activation, output=output, loss=loss, loss_at=loss_at,
                                 truncate=a.window,
                                 clip=None if a.clip_at is None else a.clip_at[r, 0]))

    def stack(values):                                   # runs -> (R, ...), or run 0 alone
        return np.array(values) if a.batched else values[0]
    return BPTTResult(
        loss=stack([one.loss for one in runs]) if a.batched else float(runs[0].loss),
        grads={name: stack([one.grads[name] for one in runs]) for name in params},
        states=stack([one.states for one in runs]),
        outputs=stack([one.outputs for one in runs]) if outputs else None,
        step_norms={key: stack([one.step_norms[key] for one in runs])
                    for key in runs[0].step_norms} if norms else {},
        cells=stack([one.cells for one in runs]) if cell == "lstm" else None,
        extra={"clip_factors": stack([one.extra["clip_factors"] for one in runs])}
        if clip_step is not None else {})
