"""The data of each task: one sampler per task, ``(task, rng, B) -> (x, d)`` in float64, plus the
temporal-order windows and class order. ``Task.sample`` checks its arguments, calls the task's
sampler and casts the result to the requested dtype; the conventions every sampler follows
(vectorised draws in a fixed order, time indexed from 0) are in the docstring of
:mod:`rnnlab.tasks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rnnlab.tasks.task import Task

#: Class order of the temporal-order task: index = 2 * [first is B] + [second is B].
TEMPORAL_ORDER_CLASSES = ("AA", "AB", "BA", "BB")


# --------------------------------------------------------------------------------------------
# helpers


def _one_hot(idx: np.ndarray, n: int) -> np.ndarray:
    """One-hot float64 encoding: idx (...) of ints in [0, n) -> (..., n)."""
    return np.eye(n)[idx]


# --------------------------------------------------------------------------------------------
# recall


def _sample_recall(task: Task, rng: np.random.Generator, B: int):
    """Remember one symbol across T - 1 noisy steps (the lecture's setting).

    With K = ``symbols`` and sigma = ``noise``:

    .. math::

        s_b \\sim U\\{0..K-1\\}, \\quad x_1 = e_{s_b}, \\quad
        x_t \\sim N(0, \\sigma^2 I_K) \\; (t = 2..T), \\quad d_T = e_{s_b}, \\; d_{t<T} = 0.

    ``x: (T, B, K)``, ``d: (T, B, K)``. Default sigma = 1: the distractors have the same scale
    as the one-hot cue (per-channel standard deviation equal to the cue's amplitude), so they
    drive the hidden state as hard as the signal does and must be actively forgotten; sigma = 0
    gives a pure memory task with silent distractors. Chance accuracy is 1/K.
    """
    T, K = task.length, task.options["symbols"]
    s = rng.integers(K, size=B)
    z = rng.standard_normal((T - 1, B, K))
    x = np.empty((T, B, K))
    x[0] = _one_hot(s, K)
    x[1:] = task.options["noise"] * z
    d = np.zeros((T, B, K))
    d[-1] = x[0]
    return x, d


# --------------------------------------------------------------------------------------------
# adding


def _sample_adding(task: Task, rng: np.random.Generator, B: int):
    """The adding problem (Hochreiter & Schmidhuber 1997, sec. 5.4), in the modern form of Le,
    Jaitly & Hinton (2015) and Arjovsky, Shah & Bengio (2016).

    Channel 0 holds values, channel 1 markers:

    .. math::

        x_{t,0} \\sim U[0, 1), \\quad x_{t,1} = [t = i] + [t = j], \\quad
        d_T = x_{i,0} + x_{j,0}, \\; d_{t<T} = 0.

    ``x: (T, B, 2)``, ``d: (T, B, 1)``. Marker positions (0-based), with h = floor(T / 2):

    - ``placement="halves"`` (default): i ~ U{0..h-1}, j ~ U{h..T-1} (first marker in the first
      half, second in the second; for odd T the second half is one step longer);
    - ``placement="anywhere"``: (i, j) uniform over ordered pairs of distinct positions.

    Baseline: predicting E[X1 + X2] = 1 gives MSE Var(X1 + X2) = 2/12 = 1/6 ~ 0.167.

    Accuracy: ``|y_T - d_T| < tolerance`` (default 0.04). H&S counted a sequence as correct when
    the absolute error was below 0.04 on their target 0.5 + (X1 + X2)/4 with X in [-1, 1]. Mapping
    their values onto ours (X = 2U - 1) makes their target (U1 + U2)/2, so their criterion is
    |error| < 0.08 on our sum; we keep 0.04 on the sum, twice as strict. Pass
    ``tolerance=0.08`` for the exact H&S equivalent.
    """
    T = task.length
    vals = rng.random((T, B))
    if task.options["placement"] == "halves":
        h = T // 2
        i = rng.integers(0, h, size=B)
        j = rng.integers(h, T, size=B)
    else:
        i = rng.integers(0, T, size=B)
        j = rng.integers(0, T - 1, size=B)
        j = j + (j >= i)
    cols = np.arange(B)
    x = np.zeros((T, B, 2))
    x[:, :, 0] = vals
    x[i, cols, 1] = 1.0
    x[j, cols, 1] = 1.0
    d = np.zeros((T, B, 1))
    d[-1, :, 0] = vals[i, cols] + vals[j, cols]
    return x, d


# --------------------------------------------------------------------------------------------
# copy


def _sample_copy(task: Task, rng: np.random.Generator, B: int):
    """The copy task of Arjovsky, Shah & Bengio (2016).

    With L = ``copy_len``, S = ``symbols``, classes 0..S-1 the symbols, S the blank and S + 1
    the delimiter (inputs only), over 0-based steps 0..T+2L-1:

    ======================  ======================  =====================
    steps                   input class             target class
    ======================  ======================  =====================
    0 .. L-1                a_k ~ U{0..S-1}         blank S
    L .. L+T-2              blank S                 blank S
    L+T-1                   delimiter S+1           blank S
    L+T .. T+2L-1           blank S                 a_k (the copy)
    ======================  ======================  =====================

    ``x: (T + 2L, B, S + 2)`` and ``d: (T + 2L, B, S + 1)``, both one-hot; output class k is
    input channel k for k <= S. The loss is ce at every step.

    Baseline: a memoryless predictor outputs blank (ce 0) for T + L steps and the uniform
    distribution over the S symbols for the last L, so its ce is L log S summed over the
    sequence, L log S / (T + 2L) per step (the number Arjovsky et al. quote: 10 log 8 / (T + 20)).
    The engine's ce is summed over steps, so compare its loss with ``baseline["loss"]`` = L log S
    and the per-step average with ``baseline["value"]``.
    """
    T, L, S = task.seq_len, task.options["copy_len"], task.options["symbols"]
    n = T + 2 * L
    a = rng.integers(S, size=(L, B))
    xi = np.full((n, B), S)
    xi[:L] = a
    xi[L + T - 1] = S + 1
    di = np.full((n, B), S)
    di[T + L:] = a
    return _one_hot(xi, S + 2), _one_hot(di, S + 1)


# --------------------------------------------------------------------------------------------
# temporal order


def temporal_order_windows(T: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The half-open 0-based windows ``[lo, hi)`` of the two relevant symbols.

    They hold exactly the integer steps t with 0.1 T <= t < 0.2 T and 0.5 T <= t < 0.6 T:
    lo = ceil(k T / 10), hi = ceil(k' T / 10), computed in integer arithmetic. Each window is
    non-empty for T >= 10 and both lie strictly before the last step T - 1.
    """
    def c(k: int) -> int:
        return -(-k * T // 10)

    return (c(1), c(2)), (c(5), c(6))


def _sample_temporal_order(task: Task, rng: np.random.Generator, B: int):
    """The temporal order problem (Hochreiter & Schmidhuber 1997, sec. 5.6, task 6a; Pascanu,
    Mikolov & Bengio 2013, sec. 4.1.1).

    With D = ``distractors`` (default 4, H&S's a, b, c, d), input channels 0..D-1 are the
    distractors, D is A (H&S's X) and D + 1 is B (H&S's Y). Every step carries one
    uniformly drawn distractor, except two steps (0-based)

    .. math::

        t_1 \\sim U\\{t : 0.1T \\le t < 0.2T\\}, \\quad
        t_2 \\sim U\\{t : 0.5T \\le t < 0.6T\\},

    which carry A or B with probability 1/2 each. The target at step T is the one-hot class
    ``2 * [sym(t_1) = B] + [sym(t_2) = B]``, i.e. AA, AB, BA, BB = 0, 1, 2, 3.

    ``x: (T, B, D + 2)``, ``d: (T, B, 4)``. As in Pascanu et al.'s version the sequence length is
    fixed at T and H&S's start and trigger symbols (E, B) are dropped: the output is read at the
    last step anyway. Chance accuracy 1/4; ce of the uniform output log 4.
    """
    T, D = task.length, task.options["distractors"]
    (lo1, hi1), (lo2, hi2) = temporal_order_windows(T)
    idx = rng.integers(D, size=(T, B))
    t1 = rng.integers(lo1, hi1, size=B)
    t2 = rng.integers(lo2, hi2, size=B)
    ab = rng.integers(2, size=(2, B))
    cols = np.arange(B)
    idx[t1, cols] = D + ab[0]
    idx[t2, cols] = D + ab[1]
    d = np.zeros((T, B, 4))
    d[-1] = _one_hot(2 * ab[0] + ab[1], 4)
    return _one_hot(idx, D + 2), d


# --------------------------------------------------------------------------------------------
# random


def _sample_random(task: Task, rng: np.random.Generator, B: int):
    """Random data for measuring gradient flow at initialisation.

    .. math::

        x_t \\sim N(0, I_I), \\quad d_t = e_{c_t}, \\; c_t \\sim U\\{0..K-1\\}
        \\quad (t = 1..T, \\text{ all independent}).

    ``x: (T, B, I)``, ``d: (T, B, K)``. Targets are present at every step (so the data also fits
    ``loss_at="all"``), but the natural loss is at the last step only. Nothing can be learned;
    chance accuracy is 1/K and :meth:`Task.solved` is always False.
    """
    T, I, K = task.length, task.options["input_size"], task.options["symbols"]
    x = rng.standard_normal((T, B, I))
    c = rng.integers(K, size=(T, B))
    return x, _one_hot(c, K)


_SAMPLERS = {
    "recall": _sample_recall, "adding": _sample_adding, "copy": _sample_copy,
    "temporal_order": _sample_temporal_order, "random": _sample_random,
}
