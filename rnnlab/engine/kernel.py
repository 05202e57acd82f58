"""The compiled engine kernel (Numba): forward recurrence, head and loss, backward recurrence,
per-step norms and weight gradients of one cell, in one call over the run axis.

Pure numerics; the only I/O of the compiled engine is the one-line compile announcement in
``rnnlab.engine.compiled``. The NumPy engine (``bptt.py``, ``cells.py``, ``heads.py``) is the
specification: the equations below are the same, evaluated element by element per run.

Vanilla cell, for each run r (independently: no number of run r depends on another run, nor on
R, so batching never changes a bit):

    z_t = (x_t Wx + b) + s_{t-1} Ws,   s_t = phi(z_t),   phi'(z_t) from s_t
    logits_t = s_t Wy + by,  y_t = softmax(logits_t) or logits_t        (loss steps; every step
                                                                          when outputs are asked)
    E = (1/B) sum_{t in L} sum_b ||d_tb - y_tb||^2   or   -(1/B) sum_{t in L} sum_b d_tb . log y_tb
    backward, t = T-1 .. stop:  delta_t (+)= dE_t/ds_t;  clip;  dz_t = delta_t * phi'(z_t);
                                delta_{t-1} = dz_t Ws^T
    dWs = sum_t s_{t-1}^T dz_t,  dWx = sum_t x_t^T dz_t,  db = sum_{t,b} dz_t

The per-step terms s_{t-1}^T dz_t and x_t^T dz_t are formed every step and summed into dWs, dWx in
step order whether or not their norms are reported, so ``norms`` never changes a gradient bit.

Truncation with a loss at every step keeps W = k errors in flight (a ring indexed by t mod k), as
the NumPy engine does; otherwise W = 1.

Shapes (leading axes of size 1 broadcast over the R runs): Wx (Rp, I, H), Ws (Rp, H, H),
b (Rp, H), Wy (Rp, H, O), by (Rp, O), x (Rx, T, B, I), d (Rd, T, B, O), s0 (Rs, B, H),
clip (R,) (inf: no clipping). Outputs: loss (R,), gWx, gWs, gb, gWy, gby like the params with R
runs, S (R, T, B, H) states s_1..s_T, Y (R, T, B, O) outputs, ds, dWs, dWx (R, T) norms,
alpha (R, T, B) clip factors. Arrays not asked for (Y without outputs, norms without norms,
alpha without clipping) may be any array of the right dtype and rank; they are not touched.

Floating point: no fastmath (a reassociated reduction would give a cached compile and a fresh one
different bits); ``error_model="numpy"`` (no zero-division checks, so the loops vectorise).
Numba compiles once per dtype; shapes are run-time values.

LSTM (gate order i, f, g, o as at the API; columns 0:H, H:2H, 2H:3H, 3H:4H of a_t):

    a_t = (x_t Wx + b) + s_{t-1} Ws,  i, f, o = sigmoid(a_i, a_f, a_o),  g = tanh(a_g)
    c_t = f c_{t-1} + i g,  s_t = o tanh(c_t)
    backward: dc_t = dc_{t+1} f_{t+1} + delta_t o (1 - tanh^2 c_t);
              da_i = dc_t g i (1 - i), da_f = dc_t c_{t-1} f (1 - f),
              da_o = delta_t tanh(c_t) o (1 - o), da_g = dc_t i (1 - g^2);  delta_{t-1} = da_t Ws^T
"""

from __future__ import annotations

import math

import numpy as np

from .compiled import cache_dir

cache_dir()                     # NUMBA_CACHE_DIR must be set before numba is imported

from numba import njit  # noqa: E402

FLAGS = {"cache": True, "error_model": "numpy", "nogil": True, "fastmath": False,
         "boundscheck": False}

ACT_CODES = {"tanh": 0, "relu": 1, "sigmoid": 2, "identity": 3}


@njit(**FLAGS)
def _sigmoid(z, one):
    """1 / (1 + exp(-z)), as ``cells.sigmoid``."""
    return one / (one + math.exp(-z))


@njit(**FLAGS)
def _tanh(z, one, two):
    """tanh(z) = 2 / (1 + exp(-2 z)) - 1, the NumPy engine's tanh cell (``rnn_forward_tanh``)."""
    return two / (one + math.exp(-two * z)) - one


@njit(**FLAGS)
def _tanh_abs(z, one, two):
    """tanh(z) = sign(z) (2 / (1 + exp(-2|z|)) - 1), the NumPy engine's ``tanh_exp``."""
    e = two / (one + math.exp(-two * abs(z))) - one
    return e if z >= 0 else -e


@njit(**FLAGS)
def _head(s, Wy, by, softmax, logit, y):
    """logits = s Wy + by, y = softmax(logits) or logits, for one sequence: s (H,), y (O,)."""
    H, O = Wy.shape
    for o in range(O):
        logit[o] = 0
    for h in range(H):
        a = s[h]
        for o in range(O):
            logit[o] += a * Wy[h, o]
    for o in range(O):
        logit[o] += by[o]
    if softmax:
        m = logit[0]
        for o in range(1, O):
            m = max(m, logit[o])
        tot = logit[0] * 0
        for o in range(O):
            y[o] = math.exp(logit[o] - m)
            tot += y[o]
        for o in range(O):
            y[o] /= tot
    else:
        for o in range(O):
            y[o] = logit[o]


@njit(**FLAGS)
def _loss_grad(logit, y, d, ce, softmax, scale, Bv, dl):
    """One sequence's loss term (before the 1/B) and dE/dlogits (with it) into ``dl``.

    mse: dE/dy = 2 (y - d) / B, softmax: dl = y (dE/dy - <dE/dy, y>);  ce: dl = (y sum d - d) / B.
    """
    O = y.shape[0]
    E = y[0] * 0
    if not ce:
        inner = E
        for o in range(O):
            diff = y[o] - d[o]
            E += diff * diff
            dl[o] = diff * scale
            inner += dl[o] * y[o]
        if softmax:
            for o in range(O):
                dl[o] = y[o] * (dl[o] - inner)
        return E
    m = logit[0]
    for o in range(1, O):
        m = max(m, logit[o])
    tot = E
    dsum = E
    for o in range(O):
        tot += math.exp(logit[o] - m)
        dsum += d[o]
    lse = math.log(tot)
    for o in range(O):
        E -= d[o] * ((logit[o] - m) - lse)
    for o in range(O):
        dl[o] = (y[o] * dsum - d[o]) / Bv
    return E


@njit(**FLAGS)
def _clip_norms(D, W, tot, c, alpha_t, clip, norms):
    """Total error tot = sum_w D[w] (B, H); with ``clip`` rescale every sequence whose total
    norm exceeds c (all W terms by the same factor, so the total is clipped exactly), writing the
    factors into alpha_t (B,). Returns ||tot||^2 after clipping (0 without ``norms``)."""
    B, H = tot.shape
    for bb in range(B):
        for j in range(H):
            tot[bb, j] = D[0, bb, j]
        for w in range(1, W):
            for j in range(H):
                tot[bb, j] += D[w, bb, j]
    if clip:
        for bb in range(B):
            sq = tot[bb, 0] * 0
            for j in range(H):
                sq += tot[bb, j] * tot[bb, j]
            nrm = math.sqrt(sq)
            f = nrm * 0 + 1
            if nrm > c:
                f = c / nrm
                for w in range(W):
                    for j in range(H):
                        D[w, bb, j] *= f
                for j in range(H):
                    tot[bb, j] *= f
            alpha_t[bb] = f
    sq = tot[0, 0] * 0
    if norms:
        for bb in range(B):
            for j in range(H):
                sq += tot[bb, j] * tot[bb, j]
    return sq


@njit(**FLAGS)
def _term(a, dz, M, acc):
    """M = a^T dz for one step (a: (B, P), dz: (B, Q)), acc += M; returns ||M||_F^2."""
    B, P = a.shape
    Q = dz.shape[1]
    for i in range(P):
        for j in range(Q):
            M[i, j] = 0
    for bb in range(B):
        for i in range(P):
            v = a[bb, i]
            for j in range(Q):
                M[i, j] += v * dz[bb, j]
    sq = M[0, 0] * 0
    for i in range(P):
        for j in range(Q):
            acc[i, j] += M[i, j]
            sq += M[i, j] * M[i, j]
    return sq


@njit(**FLAGS)
def _matvec_acc(v, Wm, out):
    """out += v Wm for one row: v (P,), Wm (P, Q), out (Q,)."""
    P, Q = Wm.shape
    for i in range(P):
        a = v[i]
        for j in range(Q):
            out[j] += a * Wm[i, j]


@njit(**FLAGS)
def _head_loss(r, rp, rd, Hs, Wy, by, d, softmax, ce, loss_all, outputs, backward, Y, gWy, gby,
               direct, logit, y, dl):
    """Head at every step that needs it, loss at the loss steps, dWy, dby and dE/ds_t."""
    T, B, H = Hs.shape
    O = Wy.shape[2]
    E = Hs[0, 0, 0] * 0
    Bv = E + B
    scale = (E + 2) / Bv
    for t in range(T):
        is_loss = loss_all or t == T - 1
        if not (is_loss or outputs):
            continue
        li = t if loss_all else 0
        for bb in range(B):
            _head(Hs[t, bb], Wy[rp], by[rp], softmax, logit, y)
            if outputs:
                for o in range(O):
                    Y[r, t, bb, o] = y[o]
            if not is_loss:
                continue
            E += _loss_grad(logit, y, d[rd, t, bb], ce, softmax, scale, Bv, dl)
            if backward:
                for h in range(H):
                    a = Hs[t, bb, h]
                    acc = a * 0
                    for o in range(O):
                        gWy[r, h, o] += a * dl[o]
                        acc += dl[o] * Wy[rp, h, o]
                    direct[li, bb, h] = acc
                for o in range(O):
                    gby[r, o] += dl[o]
    return E / Bv


@njit(**FLAGS)
def rnn_kernel(Wx, Ws, b, Wy, by, x, d, s0, clip, act, softmax, ce, loss_all, k, backward,
               norms, outputs, use_clip, loss, gWx, gWs, gb, gWy, gby, S, Y, ds, dWs, dWx,
               alpha):
    """The vanilla cell over R runs (module docstring); ``act`` is an ``ACT_CODES`` value, k the
    truncation window (0: none)."""
    R, T, B, H = S.shape
    I = x.shape[3]
    Rp, Rx, Rd, Rs = Ws.shape[0], x.shape[0], d.shape[0], s0.shape[0]
    dt = S.dtype
    one = Ws[0, 0, 0] * 0 + 1               # 1 in the arrays' dtype (inputs are finite)
    two = one + one
    W = k if (k > 0 and loss_all) else 1
    stop = T - k if (k > 0 and not loss_all) else 0
    nL = T if loss_all else 1
    A = np.empty((T, B, H), dt)             # phi'(z_t), then dz_t
    tmp = np.empty(H, dt)
    D = np.zeros((W, B, H), dt)             # errors in flight
    Dn = np.zeros((W, B, H), dt)
    dz = np.empty((B, H), dt)
    tot = np.empty((B, H), dt)
    direct = np.zeros((nL, B, H), dt)
    WsT = np.empty((H, H), dt)
    M = np.empty((H, H), dt)
    Mx = np.empty((I, H), dt)
    logit = np.empty(Wy.shape[2], dt)
    y = np.empty(Wy.shape[2], dt)
    dl = np.empty(Wy.shape[2], dt)
    for r in range(R):
        rp = r if Rp > 1 else 0
        rx = r if Rx > 1 else 0
        rs = r if Rs > 1 else 0
        rd = r if Rd > 1 else 0
        # ---- forward ----------------------------------------------------------------------
        for t in range(T):
            sprev = s0[rs] if t == 0 else S[r, t - 1]
            for bb in range(B):
                z = A[t, bb]
                for j in range(H):
                    z[j] = 0
                _matvec_acc(x[rx, t, bb], Wx[rp], z)
                for j in range(H):
                    z[j] += b[rp, j]
                for j in range(H):
                    tmp[j] = 0
                _matvec_acc(sprev[bb], Ws[rp], tmp)
                s = S[r, t, bb]
                if act == 0:
                    for j in range(H):
                        zj = z[j] + tmp[j]
                        sj = _tanh(zj, one, two)
                        s[j] = sj
                        z[j] = one - sj * sj
                elif act == 1:
                    for j in range(H):
                        zj = z[j] + tmp[j]
                        sj = zj if zj > 0 else zj * 0
                        s[j] = sj
                        z[j] = one if sj > 0 else sj * 0
                elif act == 2:
                    for j in range(H):
                        sj = _sigmoid(z[j] + tmp[j], one)
                        s[j] = sj
                        z[j] = (one - sj) * sj
                else:
                    for j in range(H):
                        s[j] = z[j] + tmp[j]
                        z[j] = one
        loss[r] = _head_loss(r, rp, rd, S[r], Wy, by, d, softmax, ce, loss_all, outputs,
                             backward, Y, gWy, gby, direct, logit, y, dl)
        if not backward:
            continue
        # ---- backward through time -----------------------------------------------------------
        for i in range(H):
            for j in range(H):
                WsT[j, i] = Ws[rp, i, j]
        D[:] = 0
        for t in range(T - 1, stop - 1, -1):
            if loss_all:
                if k == 0:
                    for bb in range(B):
                        for j in range(H):
                            D[0, bb, j] += direct[t, bb, j]
                else:
                    D[t % W] = direct[t]
            elif t == T - 1:
                D[0] = direct[0]
            sq = _clip_norms(D, W, tot, clip[r], alpha[r, t], use_clip, norms)
            if norms:
                ds[r, t] = math.sqrt(sq)
            for w in range(W):
                for bb in range(B):
                    for j in range(H):
                        dz[bb, j] = D[w, bb, j] * A[t, bb, j]
                    for j in range(H):
                        Dn[w, bb, j] = 0
                    _matvec_acc(dz[bb], WsT, Dn[w, bb])
                    if w == 0:
                        for j in range(H):
                            tot[bb, j] = dz[bb, j]
                    else:
                        for j in range(H):
                            tot[bb, j] += dz[bb, j]
            A[t] = tot
            D, Dn = Dn, D
        for t in range(stop):
            A[t] = 0
            if norms:
                ds[r, t] = 0
        # ---- weight gradients: the per-step terms, summed in step order --------------------------
        for t in range(T):
            sprev = s0[rs] if t == 0 else S[r, t - 1]
            sq = _term(sprev, A[t], M, gWs[r])
            sqx = _term(x[rx, t], A[t], Mx, gWx[r])
            if norms:
                dWs[r, t] = math.sqrt(sq)
                dWx[r, t] = math.sqrt(sqx)
            for bb in range(B):
                for j in range(H):
                    gb[r, j] += A[t, bb, j]


#: The kernel of each cell the compiled engine covers.
KERNELS = {"rnn": rnn_kernel}
