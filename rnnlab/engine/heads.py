"""Output heads and losses.

    output "softmax":  y_t = softmax(s_t Wy + by)        output "linear":  y_t = s_t Wy + by
    loss "mse":  E = (1/B) sum_b sum_{t in L} ||d_tb - y_tb||^2      (the lecture's (d_t - y_t)^2)
    loss "ce":   E = -(1/B) sum_b sum_{t in L} sum_k d_tbk log y_tbk  (needs output "softmax")

Shapes: s: (R, T, B, H); Wy: (R, H, O); by: (R, O); logits, y, d: (R, T, B, O) (d may be shared,
(T, B, O)). L is the set of loss steps ({T} or every step).
"""

from __future__ import annotations

import numpy as np

OUTPUTS = ("softmax", "linear")
LOSSES = ("mse", "ce")


def softmax(logits: np.ndarray) -> np.ndarray:
    """y = exp(l - max l) / sum exp(l - max l) along the last axis."""
    O = logits.shape[-1]
    if O > 16:
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        e /= e.sum(axis=-1, keepdims=True)
        return e
    # a short last axis: column-wise ufuncs instead of per-row reductions (2-3x faster at O=4)
    m = logits[..., 0].copy()
    for k in range(1, O):
        np.maximum(m, logits[..., k], out=m)
    e = np.subtract(logits, m[..., None])
    np.exp(e, out=e)
    np.copyto(m, e[..., 0])
    for k in range(1, O):
        m += e[..., k]
    e /= m[..., None]
    return e


def head_forward(s: np.ndarray, Wy: np.ndarray, by: np.ndarray | None, output: str):
    """Returns (logits, y), both (R, T, B, O): one matmul over all steps."""
    R, T, B, H = s.shape
    logits = np.matmul(s.reshape(R, T * B, H), Wy).reshape(R, T, B, -1)
    if by is not None:
        logits += by[:, None, None, :]
    y = softmax(logits) if output == "softmax" else logits
    return logits, y


def loss_backward(logits: np.ndarray, y: np.ndarray, d: np.ndarray, output: str, loss: str):
    """Loss per run and its gradient with respect to the logits, over the loss steps given.

    logits, y, d: (R, L, B, O) (d may lack R). Returns E: (R,) and dE/dlogits: (R, L, B, O).

        mse:      dE/dy = 2 (y - d) / B;  softmax: dE/dl = y * (dE/dy - <dE/dy, y>)
        ce+softmax: E = -(1/B) sum d log y;  dE/dl = (y sum_k d_k - d) / B
    """
    B = y.shape[2]
    if loss == "mse":
        diff = y - d
        E = np.einsum("rlbo,rlbo->r", diff, diff) / B
        dy = diff * (2.0 / B)
        if output == "softmax":
            return E, y * (dy - np.einsum("rlbo,rlbo->rlb", dy, y)[..., None])
        return E, dy
    # cross-entropy on a softmax head, with log y computed stably from the logits
    shifted = logits - logits.max(axis=-1, keepdims=True)
    logy = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    dd = np.broadcast_to(d, y.shape)
    E = -np.einsum("rlbo,rlbo->r", dd, logy) / B
    return E, (y * dd.sum(axis=-1, keepdims=True) - dd) / B
