"""The data of each task: one sampler per task, ``(task, rng, x, d)``, which fills
``x: (T, B, I)`` and ``d: (T, B, O)``, float64 arrays of zeros handed to it, plus the
temporal-order windows and class order. ``Task.sample`` checks its arguments, allocates the zeros,
calls the task's sampler and casts the result to the requested dtype; ``Task.sample_runs`` does
the same for R runs at once, each run's sampler filling its own slice ``x[r], d[r]`` of one
(R, T, B, I) array (no per-run arrays to stack). The conventions every sampler follows
(vectorised draws in a fixed order, time indexed from 0) are in the docstring of
:mod:`rnnlab.tasks`.

Filling given zeros instead of returning new arrays is for speed (a training step samples one
small batch per run, thousands of times per sweep) and changes no bit: every array the old
samplers built (one-hots from ``np.eye(n)[idx]``, zeros, the draws) holds the same numbers.
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


def _one_hot_into(out: np.ndarray, idx: np.ndarray) -> None:
    """Write the one-hot encoding of idx (...), ints in [0, n), into ``out`` (..., n), which holds
    zeros: out[..., k] = [idx == k] (the numbers ``np.eye(n)[idx]`` holds)."""
    if idx.ndim == 1:           # one step of B sequences (recall's cue): np.indices costs more
        out[np.arange(idx.shape[0]), idx] = 1.0
    else:
        out[(*np.indices(idx.shape, sparse=True), idx)] = 1.0


# --------------------------------------------------------------------------------------------
# recall


def _sample_recall(task: Task, rng: np.random.Generator, x: np.ndarray, d: np.ndarray) -> None:
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
    B = x.shape[1]
    s = rng.integers(task.options["symbols"], size=B)
    z = x[1:]                                   # drawn in place: out= fills it in C order, the
    rng.standard_normal(out=z)                  # same draws as standard_normal((T - 1, B, K))
    sigma = task.options["noise"]
    if sigma != 1.0:                            # 1 z_t is z_t, bit for bit: skip the product
        z *= sigma                              # sigma z_t
    _one_hot_into(x[0], s)
    d[-1] = x[0]


# --------------------------------------------------------------------------------------------
# adding


def adding_windows(T: int, placement: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """The half-open 0-based windows ``[lo, hi)`` of the two adding markers (the ``halves`` and
    ``pascanu`` placements; ``anywhere`` has none).

    - ``halves``: [0, h) and [h, T) with h = floor(T / 2);
    - ``pascanu``: [0, a) and [a, a + b) with a = floor(T / 10), b = floor(4 T / 10), Pascanu et
      al.'s ``addition.py`` (``randint(int(.1 L))`` and ``randint(int(.4 L)) + int(.1 L)``;
      ``int(k * .1 * L)`` equals the integer ``k * L // 10`` for every L up to 10^5, checked).
      Both markers fall in the first half; a >= 1 needs T >= 10.
    """
    if placement == "halves":
        h = T // 2
        return (0, h), (h, T)
    if placement == "pascanu":
        a, b = T // 10, 4 * T // 10
        return (0, a), (a, a + b)
    raise ValueError(f"placement {placement!r} has no windows")


def _sample_adding(task: Task, rng: np.random.Generator, x: np.ndarray, d: np.ndarray) -> None:
    """The adding problem (Hochreiter & Schmidhuber 1997, sec. 5.4), in the modern form of Le,
    Jaitly & Hinton (2015) and Arjovsky, Shah & Bengio (2016), or Pascanu, Mikolov & Bengio's
    (2013, ``addition.py`` of their trainingRNNs code) with ``placement="pascanu"`` and
    ``target="mean"``.

    Channel 0 holds values, channel 1 markers:

    .. math::

        x_{t,0} \\sim U[0, 1), \\quad x_{t,1} = [t = i] + [t = j], \\quad
        d_T = c \\, (x_{i,0} + x_{j,0}), \\; d_{t<T} = 0,

    with c = 1 for ``target="sum"`` (default) and c = 1/2 for ``target="mean"``.
    ``x: (T, B, 2)``, ``d: (T, B, 1)``. Marker positions (0-based), i < j always:

    - ``placement="halves"`` (default): i ~ U{0..h-1}, j ~ U{h..T-1} with h = floor(T / 2)
      (first marker in the first half, second in the second; for odd T the second half is one
      step longer);
    - ``placement="anywhere"``: (i, j) uniform over ordered pairs of distinct positions;
    - ``placement="pascanu"``: i ~ U{0..a-1}, j ~ U{a..a+b-1} with a = floor(T/10),
      b = floor(4T/10) (:func:`adding_windows`): both markers in the first half. Pascanu et al.
      also lengthen each training batch by ``randint(int(.1 L))`` steps: the option
      ``jitter: 0.1`` does the same (:meth:`Task.training_length`: one extra length per training
      step, shared by the runs of the step; the markers are placed in the batch's own length;
      held-out sequences keep T).

    Baseline: predicting the mean E[d_T] gives MSE Var(c (U1 + U2)) = c^2 / 6: 1/6 ~ 0.167 for
    the sum, 1/24 ~ 0.0417 for the mean (Pascanu et al.'s baseline).

    Accuracy (``Task.accuracy``): ``|y_T - d_T| < tolerance`` (default 0.04, in the target's
    units). ``Task.criteria`` adds the two published criteria, both on the same outputs
    (``rnnlab.tasks.task.HS_TOLERANCE``, ``PASCANU_SQUARED_ERROR``):

    - ``accuracy_hs``: H&S counted a sequence as correct when the absolute error was below 0.04
      on their target 0.5 + (X1 + X2)/4 with X in [-1, 1]. Mapping their values onto ours
      (X = 2U - 1) makes their target (U1 + U2)/2, the mean: |error| < 0.04 on the mean, 0.08
      on the sum. The default ``accuracy`` (0.04 on the sum) is twice as strict.
    - ``accuracy_pascanu``: a sequence counts as wrong when its squared error on the mean
      exceeds 0.04, i.e. correct when (error on the mean)^2 <= 0.04: |error| <= 0.2 on the mean,
      0.4 on the sum.
    """
    T, B = x.shape[:2]
    vals = rng.random((T, B))
    if task.options["placement"] == "anywhere":
        i = rng.integers(0, T, size=B)
        j = rng.integers(0, T - 1, size=B)
        j = j + (j >= i)
    else:
        (lo1, hi1), (lo2, hi2) = adding_windows(T, task.options["placement"])
        i = rng.integers(lo1, hi1, size=B)
        j = rng.integers(lo2, hi2, size=B)
    cols = np.arange(B)
    x[:, :, 0] = vals
    x[i, cols, 1] = 1.0
    x[j, cols, 1] = 1.0
    d[-1, :, 0] = vals[i, cols] + vals[j, cols]
    if task.options["target"] == "mean":
        d[-1, :, 0] *= 0.5        # exact: a power of two


# --------------------------------------------------------------------------------------------
# copy


def _sample_copy(task: Task, rng: np.random.Generator, x: np.ndarray, d: np.ndarray) -> None:
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
    n, B = x.shape[:2]                          # n = T + 2 L
    a = rng.integers(S, size=(L, B))
    xi = np.full((n, B), S)
    xi[:L] = a
    xi[L + T - 1] = S + 1
    di = np.full((n, B), S)
    di[T + L:] = a
    _one_hot_into(x, xi)
    _one_hot_into(d, di)


# --------------------------------------------------------------------------------------------
# temporal order


def temporal_order_windows(T: int,
                           rule: str = "floor") -> tuple[tuple[int, int], tuple[int, int]]:
    """The half-open 0-based windows ``[lo, hi)`` of the two relevant symbols.

    - ``rule="floor"`` (default; Pascanu et al. 2013, ``tempOrder.py``: ``randint(int(.1 L),
      int(.2 L))`` and ``randint(int(.5 L), int(.6 L))``): [floor(T/10), floor(2T/10)) and
      [floor(5T/10), floor(6T/10));
    - ``rule="ceil"`` (rnnlab's first rule): exactly the integer steps t with 0.1 T <= t < 0.2 T
      and 0.5 T <= t < 0.6 T, i.e. [ceil(T/10), ceil(2T/10)) and [ceil(5T/10), ceil(6T/10)).

    Both are computed in integer arithmetic (``int(k * .1 * L)`` equals ``k * L // 10`` for every
    L up to 10^5, checked). They coincide when 10 divides T. Each window is non-empty for
    T >= 10 under both rules and both lie strictly before the last step T - 1.
    """
    if rule == "floor":
        def c(k: int) -> int:
            return k * T // 10
    elif rule == "ceil":
        def c(k: int) -> int:
            return -(-k * T // 10)
    else:
        raise ValueError(f"windows: got {rule!r}; allowed: floor, ceil")
    return (c(1), c(2)), (c(5), c(6))


def _sample_temporal_order(task: Task, rng: np.random.Generator, x: np.ndarray,
                           d: np.ndarray) -> None:
    """The temporal order problem (Hochreiter & Schmidhuber 1997, sec. 5.6, task 6a; Pascanu,
    Mikolov & Bengio 2013, sec. 4.1.1).

    With D = ``distractors`` (default 4, H&S's a, b, c, d), input channels 0..D-1 are the
    distractors, D is A (H&S's X) and D + 1 is B (H&S's Y). Every step carries one
    uniformly drawn distractor, except two steps (0-based)

    .. math::

        t_1 \\sim U\\{\\lfloor T/10 \\rfloor, \\dots, \\lfloor 2T/10 \\rfloor - 1\\}, \\quad
        t_2 \\sim U\\{\\lfloor 5T/10 \\rfloor, \\dots, \\lfloor 6T/10 \\rfloor - 1\\},

    (``windows="floor"``, the default: Pascanu et al.'s ``tempOrder.py``; ``windows="ceil"`` draws
    instead from the integers t with 0.1 T <= t < 0.2 T and 0.5 T <= t < 0.6 T, rnnlab's first rule;
    the two differ for most T that 10 does not divide, see :func:`temporal_order_windows`), which
    carry A or B with probability 1/2 each. The target at step T is the one-hot class
    ``2 * [sym(t_1) = B] + [sym(t_2) = B]``, i.e. AA, AB, BA, BB = 0, 1, 2, 3.

    ``x: (T, B, D + 2)``, ``d: (T, B, 4)``. As in Pascanu et al.'s version the sequence length is
    fixed at T and H&S's start and trigger symbols (E, B) are dropped: the output is read at the
    last step anyway. Chance accuracy 1/4; ce of the uniform output log 4.
    """
    (T, B), D = x.shape[:2], task.options["distractors"]
    (lo1, hi1), (lo2, hi2) = temporal_order_windows(T, task.options["windows"])
    idx = rng.integers(D, size=(T, B))
    t1 = rng.integers(lo1, hi1, size=B)
    t2 = rng.integers(lo2, hi2, size=B)
    ab = rng.integers(2, size=(2, B))
    cols = np.arange(B)
    idx[t1, cols] = D + ab[0]
    idx[t2, cols] = D + ab[1]
    _one_hot_into(d[-1], 2 * ab[0] + ab[1])
    _one_hot_into(x, idx)


# --------------------------------------------------------------------------------------------
# random


def _sample_random(task: Task, rng: np.random.Generator, x: np.ndarray, d: np.ndarray) -> None:
    """Random data for measuring gradient flow at initialisation.

    .. math::

        x_t \\sim N(0, I_I), \\quad d_t = e_{c_t}, \\; c_t \\sim U\\{0..K-1\\}
        \\quad (t = 1..T, \\text{ all independent}).

    ``x: (T, B, I)``, ``d: (T, B, K)``. Targets are present at every step (so the data also fits
    ``loss_at="all"``), but the natural loss is at the last step only. Nothing can be learned;
    chance accuracy is 1/K and :meth:`Task.solved` is always False.
    """
    T, B = x.shape[:2]
    rng.standard_normal(out=x)                  # the same draws as standard_normal((T, B, I))
    c = rng.integers(task.options["symbols"], size=(T, B))
    _one_hot_into(d, c)


SAMPLERS = {
    "recall": _sample_recall, "adding": _sample_adding, "copy": _sample_copy,
    "temporal_order": _sample_temporal_order, "random": _sample_random,
}
