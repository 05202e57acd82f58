"""Recurrent cells: one step forward and, right beside it, one step backward.

Shapes (R runs, B sequences, H hidden units, W in-flight error terms, see ``bptt``):

    s_prev: (R, B, H)     Ws: (R, H, G)     G = H (rnn), 4H (lstm) or 3H (gru)
    delta:  (W, R, B, H)  the error dE/ds_t arriving at step t (W = 1 unless truncating)

Vanilla RNN (the lecture):

    z_t = x_t Wx + b + s_{t-1} Ws          (x_t Wx + b is precomputed for all t in one matmul)
    s_t = phi(z_t)
    backward:  dz_t = delta_t * phi'(z_t);   delta_{t-1} += dz_t Ws^T

LSTM, gate order i, f, g, o at the API (PyTorch's); internally the columns are permuted to
i, f, o, g so the three sigmoid gates are one contiguous slice:

    a_t = x_t Wx + b + s_{t-1} Ws          i, f, o = sigmoid(a_i, a_f, a_o);  g = tanh(a_g)
    c_t = f * c_{t-1} + i * g              s_t = o * tanh(c_t)
    backward:  dc_t = dc_{t+1} * f_{t+1} + delta_t * o * (1 - tanh^2 c_t)
               da_i = dc_t g i(1-i);  da_f = dc_t c_{t-1} f(1-f);  da_o = delta_t tanh(c_t) o(1-o)
               da_g = dc_t i (1-g^2);  delta_{t-1} += da_t Ws^T;    dc_{t-1} <- dc_t * f_t

GRU, PyTorch's ``GRUCell`` (Cho et al. 2014, reset gate applied after the recurrent product,
its bias b_hn inside), gate order r, z, n at the API and internally:

    a_t = x_t Wx + b   (R, B, 3H: a_r, a_z, a_n);   h_t = s_{t-1} Ws (h_r, h_z, h_n)
    r = sigmoid(a_r + h_r);  z = sigmoid(a_z + h_z);  q_t = h_n + b_hn
    n = tanh(a_n + r * q_t);  s_t = (1 - z) * n + z * s_{t-1}
    backward:  dn = delta_t (1 - z);  da_n = dn (1 - n^2);  dq = da_n r
               da_r = da_n q r(1-r);  da_z = delta_t (s_{t-1} - n) z(1-z)
               delta_{t-1} += [da_r, da_z, dq] Ws^T + delta_t z
    (the recurrent weights see [da_r, da_z, dq], the input weights [da_r, da_z, da_n])
"""

from __future__ import annotations

import numpy as np

#: The recurrent cells, and the activations of the vanilla RNN: one step each, below.
CELLS = ("rnn", "lstm", "gru")
#: Gate blocks per cell: the recurrent and input weights have GATES[cell] * H columns.
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")


def mm(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """a @ b into ``out``: np.dot for 2-d operands (a single run: ~1 us less per call than
    np.matmul's gufunc loop, which adds up over thousands of steps), np.matmul for stacks."""
    return np.dot(a, b, out=out) if a.ndim == 2 and b.ndim == 2 else np.matmul(a, b, out=out)


_CONST: dict = {}


def const(v: float, dtype) -> np.ndarray:
    """A cached 0-d array of ``dtype``: a Python scalar operand costs ~1 us per ufunc call to
    convert, which matters for the per-step work of small problems."""
    key = (v, np.dtype(dtype))
    if key not in _CONST:
        _CONST[key] = np.array(v, dtype=dtype)
    return _CONST[key]


def sigmoid(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Logistic sigmoid sigma(a) = 1 / (1 + exp(-a)).

    exp is several times cheaper than tanh in NumPy's float64 kernels, and this form keeps full
    relative precision for every a (exp(-a) overflowing to inf gives exactly 0).

    -a is formed as a * -1 (exact, the same bits): NumPy 2.4's ``np.negative`` writes wrong
    values when input and output have different strides and trailing axes of length 1 (a stack
    of runs with B = H = 1), which made the second run's states wrong.
    """
    out = np.multiply(a, const(-1, a.dtype), out=out)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


def tanh_exp(z: np.ndarray, out: np.ndarray) -> np.ndarray:
    """tanh(z) = sign(z) (1 - e) / (1 + e), e = exp(-2|z|), into ``out`` (must not alias z).

    NumPy's float64 tanh is scalar code on AVX2 machines (~35 ns/element here), its exp is SIMD
    (~11 ns): 3x faster on large slabs. Absolute error <= 4e-16 (relative error grows as
    |z| -> 0, e.g. 1e-6 at |z| = 1e-10); exact 0 at z = 0.
    """
    e = np.abs(z, out=out)
    e *= -2
    np.exp(e, out=e)
    e += 1
    np.divide(2, e, out=e)
    e -= 1
    return np.copysign(e, z, out=e)


def tanh(z: np.ndarray, out: np.ndarray) -> np.ndarray:
    """tanh(z) into ``out``: ``tanh_exp`` for float64 operands that do not alias, else np.tanh.

    The choice depends on the dtype and the call site only, never on the array's size: a size
    threshold would make a run's numbers depend on how many runs share its batch (R B H)."""
    if z.dtype == np.float64 and not np.may_share_memory(z, out):
        return tanh_exp(z, out)
    return np.tanh(z, out=out)


def phi(name: str, z: np.ndarray, out: np.ndarray) -> np.ndarray:
    """s = phi(z) for the vanilla cell, written into ``out``."""
    if name == "tanh":
        return tanh(z, out)
    if name == "relu":
        return np.maximum(z, 0, out=out)
    if name == "sigmoid":
        return sigmoid(z, out=out)
    if name == "identity":
        if out is not z:
            out[...] = z
        return out
    raise ValueError(f"activation: got {name!r}; allowed: {', '.join(ACTIVATIONS)}")


def dphi(name: str, s: np.ndarray, out: np.ndarray) -> np.ndarray:
    """phi'(z) expressed through s = phi(z) (all four activations allow it), into ``out``.

    tanh: 1 - s^2;  sigmoid: s (1 - s);  relu: [s > 0];  identity: 1.
    """
    if name == "tanh":
        np.multiply(s, s, out=out)
        np.subtract(1, out, out=out)
    elif name == "sigmoid":
        np.subtract(1, s, out=out)
        out *= s
    elif name == "relu":
        np.greater(s, 0, out=out)
    else:
        out[...] = 1
    return out


# --------------------------------------------------------------------------------------- rnn

def rnn_forward(s_prev, Ws, z, s, tmp, activation):
    """z_t = (x_t Wx + b) + s_{t-1} Ws (``z`` holds x_t Wx + b on entry); s_t = phi(z_t).

    s_prev: (R, B, H) or (B, H); Ws: (R, H, H) or (H, H); z, s, tmp: like s_prev, in place.
    """
    mm(s_prev, Ws, out=tmp)
    np.add(z, tmp, out=z)
    phi(activation, z, out=s)


def rnn_forward_tanh(s_prev, Ws_m2, u, s, tmp):
    """The tanh cell carrying u_t = -2 z_t:  s_t = tanh(z_t) = 2 / (1 + exp(u_t)) - 1.

    The caller scales Wx, b and Ws by -2 once (exact in floating point: a power of two), so ``u``
    holds -2 (x_t Wx + b) on entry and u_t = -2 z_t = that + s_{t-1} (-2 Ws) on exit. Four
    elementwise passes after the matmul instead of tanh's scalar loop (NumPy's float64 tanh is not
    vectorised on AVX2 CPUs; exp is cheaper), with absolute error <= 2.3e-16 like tanh itself
    near +-1, but relative error up to ~1e-16/|z| for tiny |z|. exp overflowing to inf gives
    exactly -1 (callers silence the overflow warning).

    s_prev: (R, B, H) or (B, H); Ws_m2: (R, H, H) or (H, H); u, s, tmp: like s_prev, in place.
    """
    one, two = const(1, s.dtype), const(2, s.dtype)
    mm(s_prev, Ws_m2, out=tmp)
    np.add(u, tmp, out=u)
    np.exp(u, out=s)
    np.add(s, one, out=s)
    np.divide(two, s, out=s)
    np.subtract(s, one, out=s)


def rnn_backward(delta, dphi_t, WsT, dz, out=None):
    """dz_t = delta_t * phi'(z_t);  returns dz_t Ws^T, the error flowing on to s_{t-1}.

    delta: (W, R, B, H); dphi_t: (R, B, H); WsT: (R, H, H); dz: (W, R, B, H) written in place.
    """
    np.multiply(delta, dphi_t, out=dz)
    return np.matmul(dz, WsT, out=out)


# -------------------------------------------------------------------------------------- lstm

def lstm_forward(s_prev, c_prev, Ws, a, c, tc, s, tmp):
    """One LSTM step with internal gate order (i, f, o, g).

    ``a`` holds x_t Wx + b on entry, (R, B, 4H); on exit the gate *activations* i, f, o, g.
    c, tc, s: (R, B, H) receive c_t, tanh(c_t), s_t.
    """
    H = s.shape[-1]
    np.matmul(s_prev, Ws, out=tmp)
    a += tmp
    sigmoid(a[..., :3 * H], out=a[..., :3 * H])          # i, f, o
    i, f, o, g = a[..., :H], a[..., H:2 * H], a[..., 2 * H:3 * H], a[..., 3 * H:]
    g[...] = tanh(g, out=s)                              # g (s is free until the last line)
    np.multiply(f, c_prev, out=c)                        # c_t = f c_{t-1} + i g
    c += i * g
    tanh(c, out=tc)                                      # s_t = o tanh(c_t)
    np.multiply(o, tc, out=s)


def lstm_backward(delta, dc, gates, c_prev, tc, WsT, da):
    """One LSTM step backward (the mirror of ``lstm_forward``).

    delta: (W, R, B, H) dE/ds_t; dc: (W, R, B, H) on entry the error reaching c_t from c_{t+1}
    (dc_{t+1} * f_{t+1}), on exit the total dE/dc_t; gates: (R, B, 4H) activations (i, f, o, g);
    c_prev, tc: (R, B, H) c_{t-1} and tanh(c_t); da: (W, R, B, 4H) receives dE/da_t.
    Returns (da_t Ws^T, dc_t * f_t): the errors flowing on to s_{t-1} and c_{t-1}.
    """
    H = tc.shape[-1]
    i, f, o, g = gates[..., :H], gates[..., H:2 * H], gates[..., 2 * H:3 * H], gates[..., 3 * H:]
    dc += delta * o * (1 - tc * tc)                      # dc_t (total derivative)
    np.multiply(dc, g * i * (1 - i), out=da[..., :H])                  # da_i
    np.multiply(dc, c_prev * f * (1 - f), out=da[..., H:2 * H])        # da_f
    np.multiply(delta, tc * o * (1 - o), out=da[..., 2 * H:3 * H])     # da_o
    np.multiply(dc, i * (1 - g * g), out=da[..., 3 * H:])              # da_g
    return np.matmul(da, WsT), dc * f


# --------------------------------------------------------------------------------------- gru

def gru_forward(s_prev, Ws, bn, a, q, s, tmp):
    """One GRU step (gate order r, z, n).

    s_prev: (R, B, H); Ws: (R, H, 3H); bn: (R, 1, H) the bias b_hn, or None.
    ``a`` holds x_t Wx + b on entry, (R, B, 3H); on exit the gate activations r, z, n.
    q: (R, B, H) receives q_t = s_{t-1} W_hn + b_hn (the term the reset gate scales);
    s: (R, B, H) receives s_t; tmp: (R, B, 3H) scratch.
    """
    H = s.shape[-1]
    np.matmul(s_prev, Ws, out=tmp)
    rz, n = a[..., :2 * H], a[..., 2 * H:]
    rz += tmp[..., :2 * H]
    sigmoid(rz, out=rz)                                  # r, z
    r, z = a[..., :H], a[..., H:2 * H]
    if bn is None:
        q[...] = tmp[..., 2 * H:]
    else:
        np.add(tmp[..., 2 * H:], bn, out=q)
    np.multiply(r, q, out=s)                             # s is scratch until the last lines
    s += n
    tanh(s, out=n)                                       # n = tanh(a_n + r q)
    np.subtract(s_prev, n, out=s)                        # s_t = n + z (s_{t-1} - n)
    s *= z
    s += n


def gru_backward(delta, gates, q, s_prev, WsT, da, da_n):
    """One GRU step backward (the mirror of ``gru_forward``).

    delta: (W, R, B, H) dE/ds_t; gates: (R, B, 3H) activations r, z, n; q: (R, B, H) the
    reset-scaled term q_t; s_prev: (R, B, H) s_{t-1}; WsT: (R, 3H, H).
    da: (W, R, B, 3H) receives the gradient on the recurrent pre-activations [da_r, da_z, dq];
    da_n: (W, R, B, H) receives the gradient on the candidate's pre-activation (the input side's
    third block). Returns da Ws^T + delta z, the error flowing on to s_{t-1}.
    """
    H = q.shape[-1]
    r, z, n = gates[..., :H], gates[..., H:2 * H], gates[..., 2 * H:]
    np.multiply(delta, (1 - z) * (1 - n * n), out=da_n)              # da_n
    np.multiply(da_n, q * r * (1 - r), out=da[..., :H])              # da_r
    np.multiply(delta, (s_prev - n) * z * (1 - z), out=da[..., H:2 * H])   # da_z
    np.multiply(da_n, r, out=da[..., 2 * H:])                       # dq
    flow = np.matmul(da, WsT)
    flow += delta * z
    return flow
