"""First-order optimisers as pure functions over dicts of arrays, vectorised over runs.

Every parameter array carries a leading run axis R, e.g. for a vanilla RNN

    Wx: (R, I, H), Ws: (R, H, H), Wy: (R, H, O), b: (R, H), by: (R, O)

and ``grads`` has the same keys and shapes. Every hyper-parameter (``lr``, ``momentum``,
``beta1``, ``beta2``, ``eps``) is a scalar or an array of shape (R,), reshaped to (R, 1, ..., 1)
inside so that run r uses its own value. :func:`step` returns *new* parameter and state dicts and
never writes into its inputs.

Update rules, for one parameter p with gradient g (all operations elementwise; k counts the
updates a run has taken):

- ``sgd``:       p <- p - lr g
- ``momentum``:  v <- mu v + g;  p <- p - lr v                      (heavy ball, PyTorch form)
                 with ``nesterov=True``: p <- p - lr (g + mu v)      (PyTorch's Nesterov form)
- ``adagrad``:   m <- m + g^2;   p <- p - lr g / sqrt(m + eps)        (as in Karpathy's
                 min-char-rnn, which uses eps = 1e-8 inside the square root)
- ``adam``:      k <- k + 1;  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
                 mhat = m / (1 - b1^k);  vhat = v / (1 - b2^k);
                 p <- p - lr mhat / (sqrt(vhat) + eps)              (Kingma & Ba 2015, Alg. 1)

State layout (each inner dict has the parameters' keys and shapes):

- ``sgd``: ``{}``
- ``momentum``: ``{"v": {...}}``
- ``adagrad``: ``{"m": {...}}``
- ``adam``: ``{"m": {...}, "v": {...}, "t": (R,) int64}``, ``t`` the per-run step count k.

``active``: an optional bool array (R,). Runs where it is False (e.g. diverged runs) keep their
parameters and their whole state, step count included, exactly as they were.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

OPTIMIZERS = ("sgd", "momentum", "adagrad", "adam")

_SLOTS = {"sgd": (), "momentum": ("v",), "adagrad": ("m",), "adam": ("m", "v")}


def _check_name(name: str) -> None:
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: got {name!r}; allowed: {', '.join(OPTIMIZERS)}")


def _num_runs(params: dict[str, np.ndarray]) -> int:
    """R, the common leading axis of every parameter array."""
    if not params:
        raise ValueError("params: got an empty dict; allowed: a dict of arrays (R, ...)")
    runs = {k: np.shape(v)[0] if np.ndim(v) else None for k, v in params.items()}
    sizes = set(runs.values())
    if None in sizes or len(sizes) != 1:
        raise ValueError(f"params: leading (run) axes differ or are missing: {runs}")
    return sizes.pop()


def init_state(name: str, params: dict[str, np.ndarray]) -> dict:
    """Initial optimiser state for ``params`` (dict of (R, ...) arrays).

    Returns
    -------
    dict
        ``{}`` for sgd; zero accumulators shaped like the parameters for the others
        (``"v"`` for momentum, ``"m"`` for adagrad, ``"m"`` and ``"v"`` for adam) and, for adam,
        the step count ``"t"``: zeros (R,) of int64.
    """
    _check_name(name)
    R = _num_runs(params)
    state: dict = {slot: {k: np.zeros_like(p) for k, p in params.items()}
                   for slot in _SLOTS[name]}
    if name == "adam":
        state["t"] = np.zeros(R, dtype=np.int64)
    return state


def _per_run(h, R: int, ndim: int, label: str) -> np.ndarray:
    """A scalar or (R,) hyper-parameter as an array broadcastable against (R, ...) of ``ndim``."""
    a = np.asarray(h, dtype=np.float64)
    if a.ndim == 0:
        return a
    if a.shape != (R,):
        raise ValueError(f"{label}: got shape {a.shape}; allowed: a scalar or shape ({R},)")
    if R and (a == a[0]).all():
        # One value for every run (the usual case): the same products as broadcasting the
        # (R, 1, ..., 1) array, but NumPy's loops over an array and a 0-d array run about twice
        # as fast. Still a float64 array (not a Python float), so the result types are the same.
        return a[:1].reshape(())
    return a.reshape((R,) + (1,) * (ndim - 1))


def step(name: str, params: dict, grads: dict, state: dict, *, lr, momentum=0.9,
         nesterov: bool = False, beta1=0.9, beta2=0.999, eps=1e-8,
         active=None) -> tuple[dict, dict]:
    """One optimiser update of every run (equations in the module docstring).

    Parameters
    ----------
    name : str
        One of ``OPTIMIZERS``.
    params, grads : dict of (R, ...) arrays
        Parameters and their gradients, same keys and shapes.
    state : dict
        The state from :func:`init_state` or the previous :func:`step`.
    lr, momentum, beta1, beta2, eps : float or (R,) array
        Learning rate; momentum mu (momentum only); Adam's b1, b2; eps (adagrad and adam).
    nesterov : bool
        Nesterov momentum in PyTorch's form, p <- p - lr (g + mu v) with v already updated.
    active : (R,) bool array or None
        Runs to update; the others keep parameters and state unchanged. None: all runs.

    Returns
    -------
    (new_params, new_state) : tuple of dict
        Fresh arrays in the parameters' dtypes; the inputs are not modified.
    """
    _check_name(name)
    R = _num_runs(params)
    if set(grads) != set(params):
        raise ValueError(f"grads: keys {sorted(grads)} differ from params keys {sorted(params)}")
    act = None
    if active is not None:
        act = np.asarray(active)
        if act.shape != (R,) or act.dtype != np.bool_:
            raise ValueError(f"active: got {act.dtype} array of shape {act.shape}; allowed: a bool "
                             f"array of shape ({R},)")
    # Every run active (the usual case): masking would keep every new value, so it is skipped
    # (the same numbers, without three np.where per parameter).
    masked = act is not None and not act.all()

    new_params: dict = {}
    new_state: dict = {slot: {} for slot in _SLOTS[name]}
    bc1 = bc2 = None
    if name == "adam":
        t_old = np.asarray(state["t"])
        t_new = np.where(act, t_old + 1, t_old) if masked else t_old + 1
        # max(k, 1) keeps the bias correction finite for frozen runs that never stepped.
        k = np.maximum(t_new, 1).astype(np.float64)
        bc1 = 1.0 - np.asarray(beta1, dtype=np.float64) ** k
        bc2 = 1.0 - np.asarray(beta2, dtype=np.float64) ** k
        new_state["t"] = t_new

    hyper: dict[int, dict] = {}      # ndim -> the hyper-parameters shaped for arrays of that ndim

    def shaped(nd: int) -> dict:
        if nd not in hyper:
            h = {"lr": _per_run(lr, R, nd, "lr")}
            if name == "momentum":
                h["mu"] = _per_run(momentum, R, nd, "momentum")
            elif name == "adagrad":
                h["e"] = _per_run(eps, R, nd, "eps")
            elif name == "adam":
                h["b1"] = _per_run(beta1, R, nd, "beta1")
                h["b2"] = _per_run(beta2, R, nd, "beta2")
                h["e"] = _per_run(eps, R, nd, "eps")
                h["bc1"] = _per_run(bc1, R, nd, "beta1")
                h["bc2"] = _per_run(bc2, R, nd, "beta2")
            hyper[nd] = h
        return hyper[nd]

    # Frozen runs may hold inf/NaN (diverged); their arithmetic is discarded by the mask below.
    with np.errstate(all="ignore") if act is not None else nullcontext():
        for key, p in params.items():
            p = np.asarray(p)
            g = np.asarray(grads[key])
            if np.shape(g) != np.shape(p):
                raise ValueError(f"grads[{key!r}]: got shape {np.shape(g)}; allowed: "
                                 f"{np.shape(p)}")
            nd = p.ndim
            h = shaped(nd)
            a_lr = h["lr"]
            if name == "sgd":
                p_new = p - a_lr * g
                slots = {}
            elif name == "momentum":
                mu = h["mu"]
                v = mu * state["v"][key] + g
                p_new = p - a_lr * (g + mu * v) if nesterov else p - a_lr * v
                slots = {"v": v}
            elif name == "adagrad":
                m = state["m"][key] + g * g
                p_new = p - a_lr * g / np.sqrt(m + h["e"])
                slots = {"m": m}
            else:  # adam
                # The equations' operations in their order, the in-place ones on fresh float64
                # arrays (every product with a float64 hyper-parameter is float64): the same
                # numbers with fewer temporaries to allocate.
                b1, b2 = h["b1"], h["b2"]
                m = b1 * state["m"][key]
                m += (1.0 - b1) * g                           # m = b1 m + (1 - b1) g
                v = b2 * state["v"][key]
                v += (1.0 - b2) * (g * g)                     # v = b2 v + (1 - b2) g^2
                update = m / h["bc1"]                         # mhat
                update *= a_lr                                # lr mhat
                denom = v / h["bc2"]                          # vhat
                np.sqrt(denom, out=denom)
                denom += h["e"]                               # sqrt(vhat) + eps
                update /= denom
                p_new = p - update
                slots = {"m": m, "v": v}

            if masked:
                mask = act.reshape((R,) + (1,) * (nd - 1))
                p_new = np.where(mask, p_new, p)
                slots = {s: np.where(mask, val, state[s][key]) for s, val in slots.items()}
            new_params[key] = np.asarray(p_new).astype(p.dtype, copy=False)
            for s, val in slots.items():
                new_state[s][key] = np.asarray(val).astype(state[s][key].dtype, copy=False)
    return new_params, new_state
