"""Back-propagation through time, with every term of the chain-rule sum exposed step by step.

The lecture's network and its gradient (time steps t = 1..T, loss steps L):

    s_t = phi(x_t Wx + s_{t-1} Ws + b)           y_t = softmax(s_t Wy + by)
    E   = sum_{t in L} E_t                       E_t = (d_t - y_t)^2
    dE_N/dWs = sum_{i=1..N} dE_N/dy_N . dy_N/ds_i . ds_i/dWs       one term per step i

Backward, the error delta_t = dE/ds_t flows from the loss steps to t = 1:

    delta_t = dE_t/ds_t + dz_{t+1} Ws^T,   dz_t = delta_t * phi'(z_t)
    dWs = sum_t s_{t-1}^T dz_t,   dWx = sum_t x_t^T dz_t,   db = sum_t sum_b dz_t

``step_norms`` reports, for every t: ||delta_t|| ("ds"), ||s_{t-1}^T dz_t|| ("dWs", the t-th term
of the lecture's sum), ||x_t^T dz_t|| ("dWx") and, for the LSTM, ||dE/dc_t|| ("dc"). For the GRU
dz_t is [da_r, da_z, dq] for "dWs" and [da_r, da_z, da_n] for "dWx" (see ``cells``).

Speed (docs/ARCHITECTURE.md): every array carries a leading run axis R, so R independent
networks cost one Python loop; the input projection x_t Wx + b is one matmul for all t before the
recurrence; weight gradients are one matmul over all steps after it; per-step term norms come
from B x B Gram matrices when that is cheaper than forming the H x H terms. Only the recurrence is
a Python loop.

Truncation (BPTT(h), Williams & Peng 1990): with ``truncate=k`` the error of the loss term at
step tau reaches back to step tau-k+1 and no further. With a loss at every step each loss term
has its own window, so up to k errors are in flight at once: they travel together on a leading
axis of size ``in_flight`` = k (a ring buffer indexed by tau mod k), and the oldest is dropped as
a new one enters. Without truncation, or with one loss step, ``in_flight`` = 1.

``bptt`` reads top to bottom as: ``check_arguments``, ``recurrent_weights`` (gate order, the
tanh RNN's -2 scaling), ``forward_pass``, ``head_and_loss``, ``backward_pass`` (which runs
``backward_one_error`` or ``backward_errors_in_flight``), ``weight_gradients`` (with the per-step
term norms). The same computation written the way the lecture writes it, one run, one step at a
time: ``reference.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rnnlab.timing import timed

from .cells import (
    ACTIVATIONS,
    CELLS,
    GATES,
    dphi,
    gru_backward,
    gru_forward,
    lstm_backward,
    lstm_forward,
    mm,
    rnn_backward,
    rnn_forward,
    rnn_forward_tanh,
)
from .clip import clip_rows
from .heads import LOSSES, OUTPUTS, head_forward, loss_backward
from .select import active_engine

LOSS_AT = ("last", "all")


@dataclass
class BPTTResult:
    """What ``bptt`` returns. With a run axis every entry carries a leading R.

    loss: scalar or (R,);  grads: same keys and shapes as params;
    states: (T, B, H) s_1..s_T;  outputs: (T, B, O) y_1..y_T (None with outputs=False);
    cells: (T, B, H) c_1..c_T (lstm);  step_norms: "ds", "dWs", "dWx" (and "dc") -> (T,) or
    (R, T), index t-1 holds step t (empty with norms=False).
    extra: "clip_factors" (T, B) with clip_step: the factor each sequence's delta_t was scaled by.
    """

    loss: float | np.ndarray
    grads: dict
    states: np.ndarray
    outputs: np.ndarray
    step_norms: dict
    cells: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


def _fail(arg: str, seen, allowed: str):
    raise ValueError(f"bptt: {arg}: got {seen}; allowed: {allowed}")


def _check_choice(arg, value, allowed):
    if value not in allowed:
        _fail(arg, repr(value), "one of " + ", ".join(allowed))


def _prepare(params, x, d, s0, cell):
    """Validate shapes; return run-axis views: params (R|1, ...), x, d, s0 and R, batched."""
    for k in ("Wx", "Ws", "Wy"):
        if k not in params:
            _fail("params", f"keys {sorted(params)}", "a dict with Wx, Ws, Wy and optional b, by")
    known = {"Wx", "Ws", "Wy", "b", "by"} | ({"bn"} if cell == "gru" else set())
    unknown = set(params) - known
    if unknown:
        _fail("params", f"unknown keys {sorted(unknown)}",
              "Wx, Ws, Wy, b, by" + (", bn" if cell == "gru" else ""))
    p = {k: np.asarray(v) for k, v in params.items()}
    x, d = np.asarray(x), np.asarray(d)
    Ws = p["Ws"]
    if Ws.ndim not in (2, 3):
        _fail("Ws", f"shape {Ws.shape}", "(H, G) or (R, H, G)")
    pbatched = Ws.ndim == 3
    H = Ws.shape[-2]
    G = GATES.get(cell, 1) * H
    if Ws.shape[-1] != G:
        _fail("Ws", f"shape {Ws.shape}", f"(..., {H}, {G}) for cell {cell!r}")
    lead = Ws.shape[:1] if pbatched else ()
    I = p["Wx"].shape[-2] if p["Wx"].ndim >= 2 else -1
    O = p["Wy"].shape[-1] if p["Wy"].ndim >= 2 else -1
    expect = {"Wx": lead + (I, G), "Wy": lead + (H, O), "b": lead + (G,), "by": lead + (O,),
              "bn": lead + (H,)}
    for k, shape in expect.items():
        if k in p and p[k].shape != shape:
            _fail(k, f"shape {p[k].shape}", f"{shape} (H={H}, cell {cell!r})")
    if x.ndim not in (3, 4) or x.shape[-1] != I:
        _fail("x", f"shape {x.shape}", f"(T, B, {I}) or (R, T, B, {I})")
    T, B = x.shape[-3], x.shape[-2]
    if T < 1 or B < 1:
        _fail("x", f"shape {x.shape}", "T >= 1 and B >= 1")
    if d.ndim not in (3, 4) or d.shape[-3:] != (T, B, O):
        _fail("d", f"shape {d.shape}", f"(T, B, O) = ({T}, {B}, {O}) or with a leading run axis")
    if s0 is not None:
        s0 = np.asarray(s0)
        if s0.ndim not in (2, 3) or s0.shape[-2:] != (B, H):
            _fail("s0", f"shape {s0.shape}", f"(B, H) = ({B}, {H}) or (R, B, H)")
    runs = {a.shape[0] for a, nd in ((Ws, 3), (x, 4), (d, 4)) if a.ndim == nd}
    if s0 is not None and s0.ndim == 3:
        runs.add(s0.shape[0])
    if len(runs) > 1:
        _fail("run axis", f"sizes {sorted(runs)}", "one run count R shared by all run-axis arrays")
    batched = bool(runs)
    R = runs.pop() if runs else 1
    arrays = [*p.values(), x, d] + ([s0] if s0 is not None else [])
    dtype = np.result_type(*arrays)
    if not np.issubdtype(dtype, np.floating):
        dtype = np.dtype(np.float64)
    for name, a in [*p.items(), ("x", x), ("d", d), ("s0", s0)]:
        if a is not None and not np.isfinite(a).all():
            _fail(name, "non-finite values (NaN or inf)", "finite numbers")
    p = {k: (v if pbatched else v[None]).astype(dtype, copy=False) for k, v in p.items()}
    x = (x if x.ndim == 4 else x[None]).astype(dtype, copy=False)
    d = (d if d.ndim == 4 else d[None]).astype(dtype, copy=False)
    if s0 is not None:
        s0 = (s0 if s0.ndim == 3 else s0[None]).astype(dtype, copy=False)
    return p, x, d, s0, R, batched, dtype


@dataclass
class Arguments:
    """``bptt``'s arguments, checked and on the run axis.

    params: name -> (R|1, ...) in the API's gate order; x: (R|1, T, B, I); d: (R|1, T, B, O);
    s0: (R|1, B, H) or None; c0: (B, H), (R, B, H) or None; R: the run count; batched: whether
    any input had a run axis (the result keeps it only then); dtype: the common float dtype;
    clip_at: (R, 1) per-step clip thresholds, or None; window: the truncation window k, or None
    for exact BPTT (also when k >= T).
    """

    params: dict
    x: np.ndarray
    d: np.ndarray
    s0: np.ndarray | None
    c0: np.ndarray | None
    R: int
    batched: bool
    dtype: np.dtype
    clip_at: np.ndarray | None
    window: int | None


def check_arguments(params, x, d, *, cell, activation, output, loss, loss_at, truncate,
                    clip_step, s0, c0) -> Arguments:
    """Check every argument of ``bptt`` (ValueError naming the argument, what was seen and what is
    allowed) and bring the arrays onto the run axis."""
    _check_choice("cell", cell, CELLS)
    _check_choice("activation", activation, ACTIVATIONS)
    _check_choice("output", output, OUTPUTS)
    _check_choice("loss", loss, LOSSES)
    _check_choice("loss_at", loss_at, LOSS_AT)
    if loss == "ce" and output != "softmax":
        _fail("loss", "'ce' with output 'linear'",
              "'ce' only with output 'softmax' (log y needs y > 0)")
    if truncate is not None and (isinstance(truncate, bool) or int(truncate) != truncate
                                 or truncate < 1):
        _fail("truncate", repr(truncate), "None or an integer >= 1")
    if c0 is not None and cell != "lstm":
        _fail("c0", "an initial cell state", "c0 only with cell 'lstm'")
    p, x, d, s0, R, batched, dtype = _prepare(params, x, d, s0, cell)
    if c0 is not None:
        c0 = np.asarray(c0, dtype=dtype)
        if c0.shape[-2:] != (B0 := x.shape[2], H0 := p["Ws"].shape[-2]) or c0.ndim not in (2, 3):
            _fail("c0", f"shape {c0.shape}", f"(B, H) = ({B0}, {H0}) or (R, B, H)")
        if not np.isfinite(c0).all():
            _fail("c0", "non-finite values (NaN or inf)", "finite numbers")
    clip_at = None
    if clip_step is not None:
        clip_at = np.broadcast_to(np.asarray(clip_step, dtype=dtype), (R,)).reshape(R, 1)
        if np.any(~(clip_at > 0)):
            _fail("clip_step", repr(clip_step),
                  "a number > 0 (inf for no clipping), or (R,) of them")
    T = x.shape[1]
    window = None if truncate is None or truncate >= T else int(truncate)
    return Arguments(p, x, d, s0, c0, R, batched, dtype, clip_at, window)


def _sumsq_rows(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """sum_j a[..., j]^2; np.vecdot (NumPy >= 2) is ~2x cheaper per call than np.einsum's Python
    wrapper, which matters in the per-step loop for short B*H."""
    if _VECDOT is not None:
        return _VECDOT(a, a, out=out)
    r = np.einsum("...j,...j->...", a, a)
    if out is None:
        return r
    out[...] = r
    return out


_VECDOT = getattr(np, "vecdot", None)


def _steps(a: np.ndarray, R: int) -> np.ndarray:
    """(R, T, ...) -> a time-major view whose [t] is a[:, t], without the run axis when R = 1."""
    return a[0] if R == 1 else a.swapaxes(0, 1)


def _run(a: np.ndarray, R: int) -> np.ndarray:
    """(R, ...) -> a[0] when R = 1 (2-d per-step operands), else a."""
    return a[0] if R == 1 else a


def _lstm_perm(H: int) -> np.ndarray:
    """Column order (i, f, o, g) from the API's (i, f, g, o): sigmoid gates become contiguous."""
    return np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H]


def term_norms(a: np.ndarray, dz: np.ndarray, budget: int = 1 << 16) -> np.ndarray:
    """||a_t^T dz_t||_F for every run and step, without a Python loop over steps.

    a: (R|1, T, B, P); dz: (R, T, B, Q) -> (R, T). Uses ||A^T Z||_F^2 = <A A^T, Z Z^T> (B x B Gram
    matrices) when B (P + Q) < P Q, the P x Q terms otherwise; processed in chunks of steps so the
    temporaries stay under ``budget`` elements per run (chunks never depend on R).
    """
    R, T, B, Q = dz.shape
    P = a.shape[-1]
    gram = B * (P + Q) < P * Q
    per_step = B * B if gram else P * Q
    chunk = max(1, min(T, budget // per_step))
    out = np.empty((R, T), dtype=dz.dtype)
    for t0 in range(0, T, chunk):
        at, zt = a[:, t0:t0 + chunk], dz[:, t0:t0 + chunk]
        if gram:
            ga = np.matmul(at, at.swapaxes(-1, -2))
            gz = np.matmul(zt, zt.swapaxes(-1, -2))
            sq = np.einsum("rtij,rtij->rt", np.broadcast_to(ga, gz.shape), gz)
        else:
            m = np.matmul(at.swapaxes(-1, -2), zt)                 # the terms: (R, chunk, P, Q)
            sq = np.einsum("rtpq,rtpq->rt", m, m)
        out[:, t0:t0 + chunk] = np.sqrt(np.maximum(sq, 0))
    return out


def forward(params: dict, x, d, *, cell: str = "rnn", activation: str = "tanh",
            output: str = "softmax", loss: str = "mse", loss_at: str = "last", s0=None,
            c0=None, outputs: bool = True) -> BPTTResult:
    """The forward pass and loss only (for evaluation): ``bptt`` without the backward pass.

    Same arguments and shapes as ``bptt``; the result has ``grads`` and ``step_norms`` empty.
    """
    return bptt(params, x, d, cell=cell, activation=activation, output=output, loss=loss,
                loss_at=loss_at, s0=s0, c0=c0, outputs=outputs, _backward=False)


@timed("engine")
def bptt(params: dict, x, d, *, cell: str = "rnn", activation: str = "tanh",
         output: str = "softmax", loss: str = "mse", loss_at: str = "last",
         truncate: int | None = None, clip_step=None, s0=None, c0=None, norms: bool = True,
         outputs: bool = True, _backward: bool = True) -> BPTTResult:
    """Forward pass, loss and exact (or truncated) BPTT gradients, with per-step norms.

    Shapes: params Wx: (I, G), Ws: (H, G), Wy: (H, O), b: (G,), by: (O,) with G = H (rnn), 4H
    (lstm, gate order i, f, g, o) or 3H (gru, gate order r, z, n; its optional bn: (H,) is the
    bias b_hn inside the reset product, see ``cells``); x: (T, B, I); d: (T, B, O); s0, c0: (B, H)
    initial state and (lstm) initial cell, zeros when None (truncated training carries them
    across chunks). Any of them may carry a leading run axis R (params (R, ...), x (R, T, B, I),
    d (R, T, B, O), s0 (R, B, H)); then every result carries it too. ``activation`` is the vanilla
    cell's phi; the LSTM's and GRU's nonlinearities are fixed (sigmoid gates, tanh candidate).

    truncate=k: each loss term's error reaches back k steps at most (BPTT(h)).
    clip_step=c (scalar or (R,)): before it flows on, the error delta_t of each sequence is
    rescaled to norm c where its norm exceeds c; ``step_norms["ds"]`` reports the clipped error.
    norms=False skips the per-step norms (``step_norms`` is empty) and outputs=False the outputs
    y_t (``outputs`` is None): a training step that logs nothing needs neither. Neither changes
    any other number: loss and gradients are computed the same way either way.

    The same computation, written the way the lecture writes it: ``reference.bptt``.
    """
    a = check_arguments(params, x, d, cell=cell, activation=activation, output=output, loss=loss,
                        loss_at=loss_at, truncate=truncate, clip_step=clip_step, s0=s0, c0=c0)
    if active_engine() == "compiled":           # the Numba kernel (select.py), when it covers this
        from .compiled import run as run_compiled
        res = run_compiled(a.params, a.x, a.d, a.s0, a.c0, a.clip_at, a.window, R=a.R,
                           batched=a.batched, dtype=a.dtype, cell=cell, activation=activation,
                           output=output, loss=loss, loss_at=loss_at, norms=norms,
                           outputs=outputs, backward=_backward, keys=list(params))
        if res is not None:
            return res
    w = recurrent_weights(a.params, cell, activation)
    tr = forward_pass(w, a, cell, activation)
    head = head_and_loss(tr.S, a.params, a.d, output=output, loss=loss, loss_at=loss_at,
                         outputs=outputs, backward=_backward)
    cells = tr.C[:, 1:] if cell == "lstm" else None
    if not _backward:
        return package_result(a.batched, head.E, {}, tr.S[:, 1:], head.Y, {}, cells, {})
    back = backward_pass(tr, w, head.dE_ds, a, cell=cell, activation=activation, loss_at=loss_at,
                         norms=norms)
    grads, step_norms = weight_gradients(tr.S, a.x, back, w, cell=cell, norms=norms)
    grads.update(head.grads)
    grads = {key: grads[key] for key in params}            # same keys, same order as params
    extra = {} if back.clip_factors is None else {"clip_factors": back.clip_factors}
    return package_result(a.batched, head.E, grads, tr.S[:, 1:], head.Y, step_norms, cells, extra)


@dataclass
class Weights:
    """The recurrence's weights as the loops use them (R|1 leading).

    Wx: (R|1, I, G); Ws: (R|1, H, G); b: (R|1, G) or None; WsT: (R|1, G, H), Ws^T contiguous for
    the backward pass (never scaled). LSTM columns in the internal gate order (i, f, o, g), with
    ``perm`` the API -> internal column order (None for the other cells). ``minus2``: Wx, Ws and b
    are scaled by -2 for the tanh RNN, whose forward pass carries u = -2 z
    (``cells.rnn_forward_tanh``; exact: a power of two).
    """

    Wx: np.ndarray
    Ws: np.ndarray
    b: np.ndarray | None
    WsT: np.ndarray
    perm: np.ndarray | None
    minus2: bool


def recurrent_weights(p: dict, cell: str, activation: str) -> Weights:
    """Wx, Ws, b in the order and scale the loops use (see ``Weights``)."""
    Wx, Ws, b = p["Wx"], p["Ws"], p.get("b")
    perm = None
    if cell == "lstm":                          # internal gate order (i, f, o, g)
        perm = _lstm_perm(Ws.shape[-2])
        Wx, Ws = Wx[..., perm], Ws[..., perm]
        b = None if b is None else b[..., perm]
    WsT = np.ascontiguousarray(Ws.swapaxes(-1, -2))
    minus2 = cell == "rnn" and activation == "tanh"
    if minus2:
        Wx, Ws, b = -2 * Wx, -2 * Ws, (None if b is None else -2 * b)
    return Weights(Wx, Ws, b, WsT, perm, minus2)


@dataclass
class Trajectory:
    """What the forward pass leaves for the backward pass (R runs, T steps, B sequences).

    Z: (R, T, B, G) for the rnn z_t = x_t Wx + b + s_{t-1} Ws (u_t = -2 z_t for tanh), for the
    lstm and gru the gate activations (``cells``); S: (R, T+1, B, H) s_0..s_T; lstm: C (R, T+1,
    B, H) c_0..c_T and TC (R, T, B, H) tanh(c_t); gru: Q (R, T, B, H) q_t = s_{t-1} W_hn + b_hn.
    """

    Z: np.ndarray
    S: np.ndarray
    C: np.ndarray | None = None
    TC: np.ndarray | None = None
    Q: np.ndarray | None = None


def forward_pass(w: Weights, a: Arguments, cell: str, activation: str) -> Trajectory:
    """The recurrence s_t = cell(x_t, s_{t-1}) for t = 1..T, for all R runs at once.

    The input projection x_t Wx + b of all steps is one matmul before the loop; the loop adds
    s_{t-1} Ws and applies the cell (``cells``), step by step.
    """
    x, R, dtype = a.x, a.R, a.dtype
    T, B, I = x.shape[1:]
    H, G = w.Ws.shape[-2:]
    Rx = x.shape[0]
    Z = np.matmul(x.reshape(Rx, T * B, I), w.Wx).reshape(-1, T, B, G)
    if Z.shape[0] != R:
        Z = np.ascontiguousarray(np.broadcast_to(Z, (R, T, B, G)))
    if w.b is not None:
        Z += w.b[:, None, None, :]
    S = np.empty((R, T + 1, B, H), dtype=dtype)             # S[:, t] = s_t, S[:, 0] = s0
    S[:, 0] = 0 if a.s0 is None else a.s0
    tmp = np.empty((R, B, G), dtype=dtype)
    tr = Trajectory(Z, S)
    if cell == "lstm":
        tr.C = C = np.empty((R, T + 1, B, H), dtype=dtype)  # C[:, t] = c_t, c_0 = 0
        C[:, 0] = 0 if a.c0 is None else a.c0
        tr.TC = TC = np.empty((R, T, B, H), dtype=dtype)    # tanh(c_t)
        for t in range(T):
            lstm_forward(S[:, t], C[:, t], w.Ws, Z[:, t], C[:, t + 1], TC[:, t], S[:, t + 1], tmp)
    elif cell == "gru":
        tr.Q = Q = np.empty((R, T, B, H), dtype=dtype)      # q_t = s_{t-1} W_hn + b_hn
        bn = a.params["bn"][:, None, :] if "bn" in a.params else None
        for t in range(T):
            gru_forward(S[:, t], w.Ws, bn, Z[:, t], Q[:, t], S[:, t + 1], tmp)
    else:   # time-major views: St[t] is S[:, t], 2-d when R = 1 (cheaper per-step calls)
        St, Zt, Ws_, tmp_ = _steps(S, R), _steps(Z, R), _run(w.Ws, R), _run(tmp, R)
        if w.minus2:
            with np.errstate(over="ignore"):
                for t in range(T):
                    rnn_forward_tanh(St[t], Ws_, Zt[t], St[t + 1], tmp_)
        else:
            for t in range(T):
                rnn_forward(St[t], Ws_, Zt[t], St[t + 1], tmp_, activation)
    return tr


@dataclass
class Head:
    """The head's results. E: (R,) the loss; Y: (R, T, B, O) y_1..y_T or None; without the
    backward pass only these. grads: "Wy" (R, H, O) and "by" (R, O) when the params have it;
    dE_ds: (R, |L|, B, H) dE_t/ds_t at the loss steps L, where the errors delta start."""

    E: np.ndarray
    Y: np.ndarray | None
    grads: dict = field(default_factory=dict)
    dE_ds: np.ndarray | None = None


def head_and_loss(S, p, d, *, output, loss, loss_at, outputs, backward) -> Head:
    """y_t = head(s_t Wy + by) and the loss at the loss steps (y at every step only if asked
    for); with ``backward``, the head's weight gradients and dE_t/ds_t = dE_t/dl_t Wy^T.

    S: (R, T+1, B, H) s_0..s_T; p: params (R|1, ...); d: (R|1, T, B, O).
    """
    T = S.shape[1] - 1
    Wy, by = p["Wy"], p.get("by")
    Ls = slice(T - 1, T) if loss_at == "last" else slice(0, T)
    logits, YL = head_forward(S[:, 1:][:, Ls], Wy, by, output)
    E, dlogits = loss_backward(logits, YL, d[:, Ls], output, loss)
    del logits
    Y = None
    if outputs:
        Y = YL
        if loss_at == "last":
            Y = head_forward(S[:, 1:], Wy, by, output)[1]
            Y[:, Ls] = YL                                   # the very y the loss saw
    if not backward:
        return Head(E, Y)
    R, nL, B = dlogits.shape[:3]
    H = S.shape[-1]
    SL = S[:, 1:][:, Ls].reshape(R, nL * B, H)
    dlog2 = dlogits.reshape(R, nL * B, -1)
    grads = {"Wy": np.matmul(SL.swapaxes(-1, -2), dlog2)}
    if by is not None:
        grads["by"] = dlogits.sum(axis=(1, 2))
    dE_ds = np.matmul(dlogits, Wy.swapaxes(-1, -2)[:, None])   # dE_t/ds_t: (R, nL, B, H)
    return Head(E, Y, grads, dE_ds)


@dataclass
class Backward:
    """The backward pass's results (R runs, T steps, B sequences).

    DZ: (R, T, B, G) dz_t, the gradient on the pre-activations the recurrent weights see (lstm:
    internal gate order; gru: [da_r, da_z, dq]), zero at steps no error reaches; DN: (R, T, B, H)
    the gru's da_n (the input side's candidate block), else None; ds2: (R, T) ||delta_t||^2 (zeros
    with norms off); dc2: (R, T) ||dE/dc_t||^2 (lstm, norms on), else None; clip_factors: (R, T,
    B) the factor each sequence's delta_t was scaled by, or None without per-step clipping.
    """

    DZ: np.ndarray
    DN: np.ndarray | None
    ds2: np.ndarray
    dc2: np.ndarray | None
    clip_factors: np.ndarray | None


def backward_pass(tr: Trajectory, w: Weights, dE_ds, a: Arguments, *, cell, activation, loss_at,
                  norms) -> Backward:
    """delta_t = dE/ds_t from the loss steps back to step 1 (or to the truncation window's start).

    With truncation and a loss at every step each loss term's error has its own window of k
    steps, so up to k errors are in flight at once (``backward_errors_in_flight``); otherwise one
    error is, and the vanilla RNN takes the cheaper ``backward_one_error``.
    """
    R, (T, B) = a.R, a.x.shape[1:3]
    H, G = w.Ws.shape[-2:]
    dtype, window = a.dtype, a.window
    in_flight = window if (window is not None and loss_at == "all") else 1
    stop = T - window if (window is not None and loss_at == "last") else 0   # last step reached
    ds2 = np.zeros((R, T), dtype=dtype)
    clip_factors = np.ones((R, T, B), dtype=dtype) if a.clip_at is not None else None
    DN = dc2 = None
    if cell in ("lstm", "gru"):
        DZ = np.zeros((R, T, B, G), dtype=dtype)            # dE/da_t (internal gate order)
        if cell == "gru":                                   # recurrent side [da_r, da_z, dq];
            DN = np.zeros((R, T, B, H), dtype=dtype)        # da_n of the input side
    else:
        DZ = tr.Z                                           # reuse: phi'(z_t), then dz_t
        dphi(activation, tr.S[:, 1:], out=DZ)
    if cell == "rnn" and in_flight == 1:
        ring_len = int(min(T, max(2, (1 << 14) // (R * B * H))))
        ring = np.zeros((ring_len, R, B, H), dtype=dtype)
        backward_one_error(ring, DZ, w.WsT, dE_ds, ds2 if norms else None, clip_factors,
                           a.clip_at, R=R, T=T, stop=stop, window=window, every=loss_at == "all")
    else:
        dc2 = backward_errors_in_flight(tr, w.WsT, dE_ds, DZ, DN, ds2, clip_factors, a.clip_at,
                                        cell=cell, in_flight=in_flight, stop=stop,
                                        window=window, every=loss_at == "all", norms=norms)
    if stop > 0:
        DZ[:, :stop] = 0
    return Backward(DZ, DN, ds2, dc2, clip_factors)


def backward_one_error(ring, DZ, WsT, dE_ds, ds2, clip_factors, clip_at, *, R, T, stop, window,
                       every):
    """The vanilla RNN's backward loop with one error in flight (no truncation with a loss at
    every step), the mirror of the forward loop:

        delta_t += dE_t/ds_t;   dz_t = delta_t * phi'(z_t);   delta_{t-1} = dz_t Ws^T

    ring: (K, R, B, H) the last K errors, delta_t in slot t % K (slot of step T-1 zero on entry),
    so that their norms can be taken K steps per call; DZ: (R, T, B, H) phi'(z_t) on entry, dz_t
    on exit; WsT: (R, H, H); dE_ds: (R, |L|, B, H) the loss terms' dE_t/ds_t; ds2: (R, T)
    receives ||delta_t||^2 (None: no norms); clip_factors: (R, T, B) or None; clip_at: (R, 1) the
    clip threshold. window: truncation window (then delta_t is the loss term's own error only,
    k = 1) or None; stop: the last step reached; every: a loss at every step.
    """
    K, B, H = ring.shape[0], ring.shape[2], ring.shape[3]
    slot = ring[:, 0] if R == 1 else ring                   # slot[j]: without R if R = 1
    DZt, dE_dst, WsT_ = _steps(DZ, R), _steps(dE_ds, R), _run(WsT, R)
    for t in range(T - 1, stop - 1, -1):
        delta = slot[t % K]                                 # delta_t: (R, B, H), (B, H) if R = 1
        if every:                                           # the loss term at t adds its error
            if window is None:
                np.add(delta, dE_dst[t], out=delta)
            else:
                delta[...] = dE_dst[t]
        elif t == T - 1:
            delta[...] = dE_dst[0]
        if clip_factors is not None:
            clip_factors[:, t] = clip_rows(ring[t % K][None], clip_at)
        if ds2 is not None and (t % K == 0 or t == stop):   # ||delta_t|| .. to the block's end
            e = min(t - t % K + K, T)
            ds2[:, t:e] = _sumsq_rows(ring[t % K:t % K + e - t].reshape(e - t, R, B * H)).T
        dz = DZt[t]                                         # phi'(z_t) on entry, dz_t on exit
        np.multiply(dz, delta, out=dz)
        mm(dz, WsT_, out=slot[(t - 1) % K])                 # delta_{t-1} = dz_t Ws^T


def backward_errors_in_flight(tr: Trajectory, WsT, dE_ds, DZ, DN, ds2, clip_factors, clip_at, *,
                              cell, in_flight, stop, window, every, norms):
    """The backward loop for any cell with ``in_flight`` errors travelling together (one per
    loss term still inside its truncation window; 1 without truncation), on a leading axis of
    that size: the term of loss step tau sits in slot tau % in_flight until it expires.

    Arguments as ``backward_one_error``; DZ: (R, T, B, G) receives dz_t (summed over the errors
    in flight), DN: (R, T, B, H) the gru's da_n. Returns dc2: (R, T) ||dE/dc_t||^2 for the lstm
    (zeros with norms off), else None.
    """
    R, T, B, G = DZ.shape
    H, dtype = tr.S.shape[-1], DZ.dtype
    lstm, gru = cell == "lstm", cell == "gru"
    Z, S = tr.Z, tr.S
    delta = np.zeros((in_flight, R, B, H), dtype=dtype)     # in-flight errors dE/ds_t
    flow_buffers = (np.empty_like(delta), np.empty_like(delta))  # alternate: no allocation per step
    work = DZ[None] if in_flight == 1 else np.empty((in_flight, R, B, G), dtype=dtype)
    if gru:
        work_n = DN[None] if in_flight == 1 else np.empty((in_flight, R, B, H), dtype=dtype)
    dc2 = None
    if lstm:
        dcell = np.zeros((in_flight, R, B, H), dtype=dtype)  # in-flight dE/dc_t
        dc2 = np.zeros((R, T), dtype=dtype)
    for t in range(T - 1, stop - 1, -1):
        # the loss term at step t injects its own error dE_t/ds_t
        if every:
            if window is None:
                delta[0] += dE_ds[:, t]
            else:                                           # slot of the term from t+k: expired
                delta[t % in_flight] = dE_ds[:, t]
                if lstm:
                    dcell[t % in_flight] = 0
        elif t == T - 1:
            delta[0] = dE_ds[:, 0]
        if clip_factors is not None:
            clip_factors[:, t] = clip_rows(delta, clip_at)
        if norms:
            total = (delta[0] if in_flight == 1 else delta.sum(axis=0)).reshape(R, B * H)
            _sumsq_rows(total, out=ds2[:, t])
        if lstm:
            flow, dcell_on = lstm_backward(delta, dcell, Z[:, t], tr.C[:, t], tr.TC[:, t], WsT,
                                           work[:, :, t] if in_flight == 1 else work)
            if norms:
                dc_total = dcell[0] if in_flight == 1 else dcell.sum(axis=0)   # dE/dc_t (total)
                dc2[:, t] = np.einsum("rbh,rbh->r", dc_total, dc_total)
            delta, dcell = flow, dcell_on
        elif gru:
            delta = gru_backward(delta, Z[:, t], tr.Q[:, t], S[:, t], WsT,
                                 work[:, :, t] if in_flight == 1 else work,
                                 work_n[:, :, t] if in_flight == 1 else work_n)
        else:
            delta = rnn_backward(delta, DZ[:, t], WsT, work, out=flow_buffers[t & 1])
        if in_flight > 1:
            work.sum(axis=0, out=DZ[:, t])
            if gru:
                work_n.sum(axis=0, out=DN[:, t])
    return dc2


def weight_gradients(S, x, back: Backward, w: Weights, *, cell, norms):
    """dWs = sum_t s_{t-1}^T dz_t, dWx = sum_t x_t^T dz_t, db = sum_t sum_b dz_t: one matmul
    over all steps each; with ``norms`` the norms of their per-step terms (``term_norms``) and of
    delta_t (and dE/dc_t). The gru's input weights see da_n on the candidate block, its recurrent
    weights dq = da_n r.

    S: (R, T+1, B, H); x: (R|1, T, B, I). Returns (grads: Wx, Ws and b, bn as the params have
    them, in the API's gate order; step_norms: "ds", "dWs", "dWx" (and "dc"), (R, T), or {}).
    """
    DZ, DN = back.DZ, back.DN
    R, T, B, G = DZ.shape
    H, I, Rx = S.shape[-1], x.shape[-1], x.shape[0]
    Sprev = S[:, :T]                                        # s_{t-1}: (R, T, B, H)
    DX = np.concatenate([DZ[..., :2 * H], DN], axis=-1) if cell == "gru" else DZ
    gWs = np.matmul(Sprev.reshape(R, T * B, H).swapaxes(-1, -2), DZ.reshape(R, T * B, G))
    gWx = np.matmul(x.reshape(Rx, T * B, I).swapaxes(-1, -2), DX.reshape(R, T * B, G))
    gb = DX.sum(axis=(1, 2))
    step_norms = {}
    if norms:
        budget = max(1 << 12, T * B * G // 8)               # temporaries <= 1/8 of DZ per run
        step_norms = {"ds": np.sqrt(back.ds2), "dWs": term_norms(Sprev, DZ, budget),
                      "dWx": term_norms(x, DX, budget)}
    if w.perm is not None:
        inv = np.argsort(w.perm)
        gWs, gWx, gb = gWs[..., inv], gWx[..., inv], gb[..., inv]
        if norms:
            step_norms["dc"] = np.sqrt(back.dc2)
    grads = {"Wx": gWx, "Ws": gWs}
    if w.b is not None:
        grads["b"] = gb
    if cell == "gru":
        grads["bn"] = DZ[..., 2 * H:].sum(axis=(1, 2))
    return grads, step_norms


def package_result(batched, E, grads, states, Y, norms, cells, extra) -> BPTTResult:
    """Package the run-axis arrays; without a run axis in the inputs, drop it again."""
    if not batched:
        E = float(E[0])
        grads = {key: g[0] for key, g in grads.items()}
        norms = {key: v[0] for key, v in norms.items()}
        states, Y = states[0], None if Y is None else Y[0]
        cells = None if cells is None else cells[0]
        extra = {key: v[0] for key, v in extra.items()}
    return BPTTResult(loss=E, grads=grads, states=states, outputs=Y, step_norms=norms, cells=cells,
                      extra=extra)
