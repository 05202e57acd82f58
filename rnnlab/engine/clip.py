"""Gradient clipping rules.

- "norm" (Pascanu, Mikolov & Bengio 2013, Algorithm 1): g <- dE/dtheta over *all* parameters;
  if ||g|| >= threshold then g <- (threshold / ||g||) g. One global L2 norm per run.
- "value" (Mikolov's variant; min-char-rnn clips into [-5, 5]): each entry into [-c, c].
- "step" is not a rule on the weight gradient: it rescales the back-propagated error
  delta_t = dE/ds_t at every time step inside the backward pass (``bptt(clip_step=c)``);
  ``clip_rows`` below is that rule.
"""

from __future__ import annotations

import numpy as np

CLIP_MODES = ("none", "norm", "value", "step")


def global_norm(grads: dict, batched: bool) -> np.ndarray:
    """sqrt(sum_k ||g_k||_F^2): a scalar, or (R,) when ``batched`` (leading run axis)."""
    if batched:
        return np.sqrt(sum(np.square(g).reshape(g.shape[0], -1).sum(axis=1)
                           for g in grads.values()))
    return np.sqrt(sum(float(np.square(g).sum()) for g in grads.values()))


def _per_run(c, g: np.ndarray, batched: bool):
    """Broadcast a threshold (scalar or (R,)) against a gradient array of a run-axis batch."""
    c = np.asarray(c, dtype=g.dtype)
    if batched and c.ndim == 1:
        return c.reshape((-1,) + (1,) * (g.ndim - 1))
    return c


def clip_grads(grads: dict, mode: str, threshold, *, batched: bool | None = None):
    """Clip a gradient dict.

    grads: name -> array, optionally with a leading run axis R (detected from ``Ws``: 3-d means
    batched, unless ``batched`` says otherwise). threshold: scalar or (R,); ``inf`` or ``None``
    disables clipping for that run.

    Returns (clipped_grads, norm_before, clipped) where norm_before is the global L2 norm before
    clipping and clipped says whether anything was changed (scalars, or (R,) arrays).
    """
    if mode not in CLIP_MODES:
        raise ValueError(f"clip mode: got {mode!r}; allowed: {', '.join(CLIP_MODES)}")
    if batched is None:
        batched = grads["Ws"].ndim == 3
    norm = global_norm(grads, batched)
    if threshold is None or mode in ("none", "step"):
        return dict(grads), norm, np.zeros_like(norm, dtype=bool)
    c = np.asarray(threshold, dtype=np.float64)
    if np.any(c <= 0) or np.any(np.isnan(c)):
        raise ValueError(f"clip threshold: got {threshold!r}; allowed: a number > 0")
    if mode == "norm":
        # Algorithm 1: if ||g|| >= threshold, g <- threshold/||g|| * g
        clipped = norm >= c
        if not np.any(clipped):      # every factor is 1 and g * 1 is g: nothing to multiply
            return dict(grads), norm, clipped
        factor = np.where(clipped, c / np.where(norm > 0, norm, 1.0), 1.0)
        out = {k: g * _per_run(factor, g, batched) for k, g in grads.items()}
        return out, norm, clipped
    # mode == "value": each entry into [-c, c]
    out, hit = {}, np.zeros_like(norm, dtype=bool)
    for k, g in grads.items():
        ck = _per_run(c, g, batched)
        out[k] = np.clip(g, -ck, ck)
        over = np.abs(g) > ck
        hit = hit | (over.reshape(g.shape[0], -1).any(axis=1) if batched else bool(over.any()))
    return out, norm, hit


def clip_rows(delta: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Per-sequence error clipping, in place: delta[..., b, :] <- c / ||delta_b|| * delta_b where
    ||delta_b|| > c.

    delta: (W, R, B, H), the in-flight errors dE/ds_t (W loss terms under truncation, usually 1);
    the norm is that of their sum (the total error at step t), and every term is scaled by the
    same factor so the total is clipped exactly. c: (R, 1) thresholds (inf = no clipping).
    Returns the factors applied, (R, B) (1 where nothing was clipped).
    """
    total = delta.sum(axis=0) if delta.shape[0] > 1 else delta[0]
    nrm = np.sqrt(np.einsum("rbh,rbh->rb", total, total))
    over = nrm > c
    factor = np.where(over, c / np.where(over, nrm, 1.0), 1.0)
    if over.any():
        delta *= factor[None, :, :, None]
    return factor
