"""Jacobians of the recurrent state map, Lyapunov exponents and Jacobian-product spectra.

Pure NumPy, no I/O. The state of a cell is a row vector u_t (per sequence):

    u_t = s_t (rnn, gru; D = H)        u_t = (s_t, c_t) (lstm; D = 2H, s first)

and one step of the forward pass is the state map u_t = F_t(u_{t-1}) (x_t fixed). Its Jacobian
J_t = dF_t/du_{t-1} is a D x D matrix, J_t[j, i] = d u_t[j] / d u_{t-1}[i]; back-propagation
multiplies the error by it from the right, delta_{t-1} = delta_t J_t, so the factor that takes the
error from the loss step T back k steps is the product P_k = J_T J_{T-1} ... J_{T-k+1}.

Jacobians (A_x = the H x H block of Ws for gate x, transposed: A_x[j, i] = Ws[i, x_j]; diag(v)
scales rows, written v * A):

    rnn   z = x Wx + b + s Ws, s' = phi(z):       J = phi'(z) * A
    lstm  (gate order i, f, g, o; see ``cells``)
          dc'/ds = c f(1-f) * A_f + g i(1-i) * A_i + i (1-g^2) * A_g        dc'/dc = diag(f)
          ds'/ds = tanh(c') o(1-o) * A_o + o (1-tanh^2 c') * dc'/ds
          ds'/dc = diag(o (1-tanh^2 c') f)                 J = [[ds'/ds, ds'/dc], [dc'/ds, dc'/dc]]
    gru   (gate order r, z, n; q = s W_hn + b_hn; see ``cells``)
          dr = r(1-r) * A_r;  dz = z(1-z) * A_z;  dn = (1-n^2) * (q * dr + r * A_n)
          J = (1-z) * dn + (s - n) * dz + diag(z)

Lyapunov exponents (Benettin et al. 1980; Engelken, Wolf & Abbott 2020): with Q_0 a fixed
orthonormal D x m matrix (``initial_frame``: the same for every run and sequence), for t = 1..T

    Q_t R_t = qr(J_t Q_{t-1})          lambda_k = (1/T) sum_t log |R_t[k, k]|     (nats per step)

for every sequence of the batch, sorted in descending order; the reported exponents are the means
over the sequences (NaN when a sequence's tangent vectors or product overflow: a run that
explodes has no finite exponents; a tangent direction that is annihilated exactly, as by dead relu
units, gives -inf). They are finite-time exponents of the T steps of the trajectory (from its
first step: no transient is cut): lambda_1 + ... + lambda_k is the growth rate of k-dimensional
volumes spanned by tangent vectors, and with m = D the sum is exactly (1/T) log |det J_T...J_1|.
Individual exponents approach the asymptotic ones as O(1/T) (the start frame's overlap with the
growing directions). Decades per step are
lambda / ln 10, the unit of rnnlab's measured ``decay`` of ||dE/ds_t||.

Jacobian-product spectrum (the dynamical-isometry view, Pennington et al. 2017): the singular
values sigma_i (i = 1..H) of the rows of s of P_k over the last k steps before the loss step (the
loss reaches the state through s only, so delta_{T-k} = delta_T[s] P_k[s, :]: for the lstm the
H x 2H block, else all of P_k), per sequence, reported as the mean over sequences of log sigma_i
(nats; divide by k for the rate per step). The product is accumulated with its Frobenius norm
divided out at every step (the log of the scale is added back), so it neither overflows nor
underflows; singular values below ~1e-16 of the largest are at the rounding level of the SVD.

Cost. J_t is never formed: J_t V is one (G, H) x (H, B c) product per run and elementwise work
(``_apply``), for the m tangent vectors at every step (then a QR of each sequence's D x m frame)
and for the D columns of P_k over the last k steps (then one SVD per sequence). ``step_jacobian``
builds the explicit matrix (for tests and inspection).

Shapes: params as for ``bptt`` (no head needed: Wy, by are ignored), with or without a leading run
axis R; x: (T, B, I) or (R, T, B, I); s0, c0: (B, H) or (R, B, H). Every computation is elementwise
or a product of stacked matrices per (run, sequence), so a run's numbers do not depend on the runs
it is batched with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cells import ACTIVATIONS, CELLS, GATES, dphi, phi, sigmoid

LN10 = float(np.log(10.0))


def state_size(cell: str, hidden: int) -> int:
    """D, the length of the state vector u: 2H for the lstm (s and c), H otherwise."""
    return 2 * hidden if cell == "lstm" else hidden


def default_exponents(hidden: int) -> int:
    """The default number m of exponents: min(H, 8)."""
    return min(hidden, 8)


def initial_frame(D: int, m: int, dtype=np.float64) -> np.ndarray:
    """Q_0: a fixed generic orthonormal (D, m) frame (QR of a Gaussian matrix from seed 0). Not
    the identity's columns, which a diagonal Jacobian would never rotate towards its largest
    entries."""
    q, r = np.linalg.qr(np.random.default_rng(0).standard_normal((D, m)))
    return (q * np.sign(np.diag(r))).astype(dtype)


def _blocks(Ws: np.ndarray, n: int) -> list[np.ndarray]:
    """The n H x H blocks of Ws (R, H, nH), each transposed and with a sequence axis:
    (R, 1, H, H), A[j, i] = Ws[i, block_j]."""
    H = Ws.shape[-2]
    return [np.swapaxes(Ws[:, :, k * H:(k + 1) * H], -1, -2)[:, None] for k in range(n)]


def _step(cell: str, params: dict, x_t: np.ndarray, u: np.ndarray, activation: str):
    """One step of the state map: u_t and the per-unit factors its Jacobian is made of (each
    (R, B, H); names as in the module docstring's equations)."""
    Wx, Ws = params["Wx"], params["Ws"]
    H = Ws.shape[-2]
    a = np.matmul(x_t, Wx)
    if "b" in params:
        a = a + params["b"][:, None, :]
    s = u[..., :H]
    if cell == "rnn":
        z = a + np.matmul(s, Ws)
        s_new = phi(activation, z, out=np.empty_like(z))
        return s_new, {"d": dphi(activation, s_new, out=np.empty_like(s_new))}
    if cell == "lstm":
        c = u[..., H:]
        a = a + np.matmul(s, Ws)
        i, f = sigmoid(a[..., :H]), sigmoid(a[..., H:2 * H])
        g, o = np.tanh(a[..., 2 * H:3 * H]), sigmoid(a[..., 3 * H:])
        c_new = f * c + i * g
        tc = np.tanh(c_new)
        fac = {"ci": g * i * (1 - i), "cf": c * f * (1 - f), "cg": i * (1 - g * g), "f": f,
               "so": tc * o * (1 - o), "do": o * (1 - tc * tc)}
        return np.concatenate([o * tc, c_new], axis=-1), fac
    h = np.matmul(s, Ws)                                            # gru
    r = sigmoid(a[..., :H] + h[..., :H])
    z = sigmoid(a[..., H:2 * H] + h[..., H:2 * H])
    q = h[..., 2 * H:] + (params["bn"][:, None, :] if "bn" in params else 0)
    n = np.tanh(a[..., 2 * H:] + r * q)
    fac = {"rq": (1 - z) * (1 - n * n) * q * r * (1 - r), "rn": (1 - z) * (1 - n * n) * r,
           "zz": (s - n) * z * (1 - z), "z": z}
    return (1 - z) * n + z * s, fac


def _explicit(cell: str, Ws: np.ndarray, fac: dict, dtype) -> np.ndarray:
    """J_t as a matrix, (R, B, D, D), from the factors of ``_step``."""
    if cell == "rnn":
        return fac["d"][..., :, None] * _blocks(Ws, 1)[0]
    H = Ws.shape[-2]
    eye = np.eye(H, dtype=dtype)
    if cell == "lstm":
        Ai, Af, Ag, Ao = _blocks(Ws, 4)
        dc_ds = (fac["cf"][..., None] * Af + fac["ci"][..., None] * Ai
                 + fac["cg"][..., None] * Ag)
        J = np.empty(fac["f"].shape[:-1] + (2 * H, 2 * H), dtype=dtype)
        J[..., :H, :H] = fac["so"][..., None] * Ao + fac["do"][..., None] * dc_ds
        J[..., :H, H:] = (fac["do"] * fac["f"])[..., None] * eye
        J[..., H:, :H] = dc_ds
        J[..., H:, H:] = fac["f"][..., None] * eye
        return J
    Ar, Az, An = _blocks(Ws, 3)
    J = fac["rq"][..., None] * Ar + fac["rn"][..., None] * An + fac["zz"][..., None] * Az
    J += fac["z"][..., None] * eye
    return J


def _apply(cell: str, WsT: np.ndarray, fac: dict, V: np.ndarray) -> np.ndarray:
    """J_t V without forming J_t, for tangent vectors in column layout.

    WsT: (R, G, H) = Ws transposed; fac: ``_step``'s factors transposed to (R, H, B, 1);
    V: (R, D, B, c), c vectors per sequence. One (G, H) x (H, B c) product per run, then
    elementwise work: cheaper than forming the (R, B, D, D) Jacobian and multiplying by it.
    """
    R, _, B, c = V.shape
    H = WsT.shape[-1]
    AV = np.matmul(WsT, V[:, :H].reshape(R, H, B * c)).reshape(R, -1, B, c)   # blocks A_x V_s
    if cell == "rnn":
        return fac["d"] * AV
    if cell == "lstm":
        dc = (fac["cf"] * AV[:, H:2 * H] + fac["ci"] * AV[:, :H] + fac["cg"] * AV[:, 2 * H:3 * H]
              + fac["f"] * V[:, H:])
        return np.concatenate([fac["so"] * AV[:, 3 * H:] + fac["do"] * dc, dc], axis=1)
    return (fac["rq"] * AV[:, :H] + fac["rn"] * AV[:, 2 * H:] + fac["zz"] * AV[:, H:2 * H]
            + fac["z"] * V)


def step_jacobian(cell: str, params: dict, x_t: np.ndarray, u: np.ndarray,
                  activation: str = "tanh", jacobian: bool = True):
    """One step of the state map and its Jacobian, with a run axis.

    params: run-axis arrays Wx (R, I, G), Ws (R, H, G), optional b (R, G), bn (R, H);
    x_t: (R, B, I); u: (R, B, D) the state u_{t-1}. Returns (u_t, J_t) with u_t: (R, B, D) and
    J_t: (R, B, D, D) (None unless ``jacobian``); equations in the module docstring.
    """
    u_new, fac = _step(cell, params, x_t, u, activation)
    return u_new, (_explicit(cell, params["Ws"], fac, u.dtype) if jacobian else None)


@dataclass
class LyapunovResult:
    """What ``lyapunov`` returns; with a run axis in the inputs every entry carries a leading R.

    exponents: (m,) the top m Lyapunov exponents in nats per step, descending (mean over the
    batch's sequences; ``exponents / ln 10`` is decades per step);
    log_sv: (H,) mean over sequences of log sigma_i(P_k[s, :]), descending (nats over k steps;
    None when k = 0); k: the window of the product; states: (T, B, D) the trajectory u_1..u_T
    (with a run axis (R, T, B, D)).
    """

    exponents: np.ndarray
    log_sv: np.ndarray | None
    k: int
    states: np.ndarray

    @property
    def decades(self) -> np.ndarray:
        """The exponents in decades (log10) per step."""
        return self.exponents / LN10

    @property
    def log_sv_per_step(self) -> np.ndarray | None:
        """log sigma_i(P_k) / k: the mean growth rate per step of each singular direction."""
        return None if self.log_sv is None else self.log_sv / self.k


def _fail(arg: str, seen, allowed: str):
    raise ValueError(f"lyapunov: {arg}: got {seen}; allowed: {allowed}")


def _prepare(cell, params, x, s0, c0):
    """Run-axis views of the inputs: params (R, ...), x (R, T, B, I), u0 (R, B, D); and R, batched,
    dtype."""
    if cell not in CELLS:
        _fail("cell", repr(cell), "one of " + ", ".join(CELLS))
    p = {k: np.asarray(params[k]) for k in ("Wx", "Ws", "b", "bn") if k in params}
    if "bn" in p and cell != "gru":
        _fail("params", "key bn", "bn only with cell 'gru'")
    x = np.asarray(x)
    Ws = p["Ws"]
    if Ws.ndim not in (2, 3) or x.ndim not in (3, 4):
        _fail("shapes", f"Ws {Ws.shape}, x {x.shape}", "Ws (H, G) or (R, H, G), x (T, B, I) or "
              "(R, T, B, I)")
    H = Ws.shape[-2]
    G = GATES.get(cell, 1) * H
    if Ws.shape[-1] != G or p["Wx"].shape[-1] != G or p["Wx"].shape[-2] != x.shape[-1]:
        _fail("shapes", f"Ws {Ws.shape}, Wx {p['Wx'].shape}, x {x.shape}",
              f"Ws (..., {H}, {G}) and Wx (..., I, {G}) for cell {cell!r}, x (..., I)")
    runs = {a.shape[0] for a, nd in ((Ws, 3), (x, 4)) if a.ndim == nd}
    if len(runs) > 1:
        _fail("run axis", f"sizes {sorted(runs)}", "one run count R")
    batched = bool(runs)
    R = runs.pop() if runs else 1
    dtype = np.result_type(*p.values(), x)
    if not np.issubdtype(dtype, np.floating):
        dtype = np.dtype(np.float64)
    for key, v in p.items():
        v = v[None] if v.ndim == (2 if key in ("Wx", "Ws") else 1) else v
        p[key] = np.broadcast_to(v, (R,) + v.shape[1:]).astype(dtype)
    x = np.broadcast_to(x if x.ndim == 4 else x[None], (R,) + x.shape[-3:]).astype(dtype)
    B = x.shape[2]
    u0 = np.zeros((R, B, state_size(cell, H)), dtype=dtype)
    for name, v, sl in (("s0", s0, slice(0, H)), ("c0", c0, slice(H, 2 * H))):
        if v is None:
            continue
        if name == "c0" and cell != "lstm":
            _fail("c0", "an initial cell state", "c0 only with cell 'lstm'")
        v = np.asarray(v, dtype=dtype)
        if v.shape[-2:] != (B, H):
            _fail(name, f"shape {v.shape}", f"(B, H) = ({B}, {H}) or (R, B, H)")
        u0[..., sl] = v
    return p, x, u0, R, batched, dtype


def lyapunov(params: dict, x, *, cell: str = "rnn", activation: str = "tanh",
             exponents: int | None = None, window: int | None = None, s0=None,
             c0=None) -> LyapunovResult:
    """Top-m Lyapunov exponents of the trajectory driven by x, and the singular values of the
    Jacobian product over its last k steps (module docstring).

    exponents: m, default min(H, 8), at most D; window: k, default T, at most T (0: no product).
    """
    if activation not in ACTIVATIONS:
        _fail("activation", repr(activation), "one of " + ", ".join(ACTIVATIONS))
    p, x, u, R, batched, dtype = _prepare(cell, params, x, s0, c0)
    T, B = x.shape[1], x.shape[2]
    H = p["Ws"].shape[-2]
    D = u.shape[-1]
    m = default_exponents(H) if exponents is None else exponents
    if isinstance(m, bool) or int(m) != m or not 1 <= m <= D:
        _fail("exponents", repr(exponents), f"an integer from 1 to D = {D}")
    k = T if window is None else window
    if isinstance(k, bool) or int(k) != k or not 0 <= k <= T:
        _fail("window", repr(window), f"an integer from 0 to T = {T}")
    m, k = int(m), int(k)
    WsT = np.ascontiguousarray(p["Ws"].swapaxes(-1, -2))             # (R, G, H)
    Q = np.ascontiguousarray(np.broadcast_to(initial_frame(D, m, dtype)[None, :, None, :],
                                             (R, D, B, m)))         # column layout (R, D, B, m)
    Q0 = Q.copy()
    logr = np.zeros((R, B, m), dtype=dtype)
    bad = np.zeros((R, B), dtype=bool)                      # a non-finite tangent or product
    P = None
    logscale = np.zeros((R, B), dtype=dtype)
    states = np.empty((R, T, B, D), dtype=dtype)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        for t in range(T):
            u, fac = _step(cell, p, x[:, t], u, activation)
            states[:, t] = u
            fac = {key: v.swapaxes(1, 2)[..., None] for key, v in fac.items()}   # (R, H, B, 1)
            Y = _apply(cell, WsT, fac, Q)
            now = ~np.isfinite(Y).all(axis=(1, 3))
            if now.any():                   # an overflowing sequence: NaN, the others go on
                bad |= now
                Y = np.where(now[:, None, :, None], Q0, Y)
            q, Rt = np.linalg.qr(Y.transpose(0, 2, 1, 3))
            Q = np.ascontiguousarray(q.transpose(0, 2, 1, 3))
            logr += np.log(np.abs(np.diagonal(Rt, axis1=-2, axis2=-1)))
            if t >= T - k:                                  # P <- J_t P, rescaled
                if P is None:
                    P = np.ascontiguousarray(np.broadcast_to(
                        np.eye(D, dtype=dtype)[None, :, None, :], (R, D, B, D)))
                P = _apply(cell, WsT, fac, P)
                now = ~np.isfinite(P).all(axis=(1, 3))
                if now.any():
                    bad |= now
                    P = np.where(now[:, None, :, None], np.eye(D, dtype=dtype)[None, :, None, :],
                                 P)
                scale = np.sqrt(np.einsum("ribj,ribj->rb", P, P))
                P /= np.where(scale > 0, scale, 1)[:, None, :, None]
                logscale += np.log(scale)
        lam = -np.sort(-(logr / T), axis=-1)
        lam = np.where(bad[..., None], np.nan, lam).mean(axis=1)
        log_sv = None
        if P is not None:                                   # rows of s: (R, B, H, D)
            sv = np.linalg.svd(P[:, :H].transpose(0, 2, 1, 3), compute_uv=False)
            log_sv = np.where(bad[..., None], np.nan, np.log(sv) + logscale[..., None])
            log_sv = log_sv.mean(axis=1)
    if not batched:
        return LyapunovResult(exponents=lam[0], log_sv=None if log_sv is None else log_sv[0],
                              k=k, states=states[0])
    return LyapunovResult(exponents=lam, log_sv=log_sv, k=k, states=states)
