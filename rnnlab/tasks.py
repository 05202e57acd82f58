"""Synthetic sequence tasks: inputs ``x: (T, B, I)`` and targets ``d: (T, B, O)`` from a Generator.

Time is indexed from 0 in the arrays: the lecture's step t = 1 is ``x[0]`` and step t = T is
``x[T - 1]`` (written ``x[-1]``). ``seq_len`` is the user's T; ``length`` is the number of time
steps actually generated (equal to T for every task except ``copy``, whose length is
T + 2 * copy_len). Targets are zero wherever the task puts no target (every step but the last when
``loss_at`` is "last").

Tasks (see each sampler's docstring for the exact construction and the baseline's derivation):

========================  =====  =====  =======  ====  =======  ================================
name                      I      O      output   loss  loss_at  baseline
========================  =====  =====  =======  ====  =======  ================================
``recall``                K      K      softmax  mse   last     accuracy 1/K
``adding``                2      1      linear   mse   last     MSE Var(X1 + X2) = 1/6
``copy``                  S + 2  S + 1  softmax  ce    all      ce L log S / (T + 2L) per step
``temporal_order``        D + 2  4      softmax  ce    last     accuracy 1/4
``random``                I      K      softmax  mse   last     accuracy 1/K (no success)
========================  =====  =====  =======  ====  =======  ================================

Every ``Task.baseline`` is a dict with the keys

- ``metric``, ``value``, ``formula``, ``source``: the number the literature quotes for the
  memoryless (or chance) predictor, with its formula and where it comes from;
- ``loss``, ``loss_formula``: the same predictor's loss in the engine's units, where mse is
  ``sum_o (y_o - d_o)^2`` at each target step and ce is ``-sum_o d_o log y_o``, both summed over the
  target steps and averaged over the batch. These differ from ``value`` only for ``copy``, whose
  published baseline is a per-step average.

Every sampler is vectorised (array draws only, no loop over batch elements or time steps), draws
from the Generator in a fixed order, builds the data in float64 and casts it to the requested dtype
at the end, so the same Generator state and arguments give the same arrays (and float32 data is the
rounding of the float64 data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TASKS = ("recall", "adding", "copy", "temporal_order", "random")

#: Allowed options per task, with their defaults. ``make_task`` rejects any other option name.
TASK_OPTIONS: dict[str, dict[str, object]] = {
    "recall": {"symbols": 4, "noise": 1.0},
    "adding": {"placement": "halves", "tolerance": 0.04},
    "copy": {"copy_len": 10, "symbols": 8},
    "temporal_order": {"distractors": 4},
    "random": {"input_size": 4, "symbols": 4},
}

PLACEMENTS = ("halves", "anywhere")

#: Smallest seq_len each task accepts (adding needs two distinct marker positions, temporal_order
#: needs the windows [0.1T, 0.2T) and [0.5T, 0.6T) to each hold at least one integer).
MIN_SEQ_LEN = {"recall": 1, "adding": 2, "copy": 1, "temporal_order": 10, "random": 1}

#: Success thresholds (see ``Task.solved``).
RECALL_SOLVED_ACCURACY = 0.95
ADDING_SOLVED_MSE = 0.01
COPY_SOLVED_ACCURACY = 0.99
TEMPORAL_ORDER_SOLVED_ACCURACY = 0.99

#: Class order of the temporal-order task: index = 2 * [first is B] + [second is B].
TEMPORAL_ORDER_CLASSES = ("AA", "AB", "BA", "BB")


@dataclass(frozen=True)
class Task:
    """One configured task. Build it with :func:`make_task`.

    Attributes
    ----------
    name : str
        One of ``TASKS``.
    seq_len : int
        The user's T.
    length : int
        Number of time steps of a generated sequence (T, or T + 2 * copy_len for ``copy``).
    input_size, output_size : int
        I and O.
    output : str
        The natural output head: ``"softmax"`` or ``"linear"``.
    loss : str
        The natural loss: ``"mse"`` or ``"ce"``.
    loss_at : str
        ``"last"`` (loss on step T only) or ``"all"`` (loss summed over every step).
    options : dict
        The resolved options (defaults filled in).
    baseline : dict
        Chance / memoryless baseline; keys described in the module docstring.
    criterion : str
        Human-readable success criterion used by :meth:`solved`.
    """

    name: str
    seq_len: int
    length: int
    input_size: int
    output_size: int
    output: str
    loss: str
    loss_at: str
    options: dict
    baseline: dict
    criterion: str

    def sample(self, rng: np.random.Generator, batch: int,
               dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
        """Draw a batch of sequences.

        Parameters
        ----------
        rng : numpy.random.Generator
            The only source of randomness.
        batch : int
            B, the number of sequences.
        dtype : floating dtype
            Dtype of both returned arrays.

        Returns
        -------
        x : (T, B, I) array
            Inputs, T = ``self.length``.
        d : (T, B, O) array
            Targets, zero at steps that carry no target.
        """
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng: got {type(rng).__name__}; allowed: numpy.random.Generator")
        if not _is_int(batch) or batch < 1:
            raise ValueError(f"batch: got {batch!r}; allowed: an integer >= 1")
        dt = np.dtype(dtype)
        if dt.kind != "f":
            raise ValueError(f"dtype: got {dt}; allowed: a floating dtype")
        x, d = _SAMPLERS[self.name](self, rng, int(batch))
        return x.astype(dt, copy=False), d.astype(dt, copy=False)

    def accuracy(self, y: np.ndarray, d: np.ndarray) -> float | np.ndarray | None:
        """Task accuracy of outputs ``y`` against targets ``d``.

        Parameters
        ----------
        y : (T, B, O) or (R, T, B, O) array
            Model outputs (after the head), optionally with a leading run axis R.
        d : (T, B, O) or (R, T, B, O) array
            Targets as returned by :meth:`sample`; broadcast against ``y`` (so one batch of
            targets can serve every run).

        Returns
        -------
        float, or (R,) array when either input has a run axis; None if the task has no accuracy
        (every current task has one).

        Notes
        -----
        - recall, temporal_order, random: fraction of the batch with
          ``argmax_o y[T-1, b, o] == argmax_o d[T-1, b, o]``.
        - copy: the same, over the last ``copy_len`` steps and the batch.
        - adding: fraction of the batch with ``|y[T-1, b, 0] - d[T-1, b, 0]| < tolerance``.

        A prediction containing NaN or inf never counts as correct.
        """
        y = np.asarray(y)
        d = np.asarray(d)
        for label, a in (("y", y), ("d", d)):
            if a.ndim not in (3, 4) or a.shape[-3] != self.length or \
                    a.shape[-1] != self.output_size:
                raise ValueError(
                    f"{label}: got shape {a.shape}; allowed: (T, B, O) or (R, T, B, O) with "
                    f"T = {self.length}, O = {self.output_size}")
        if self.name == "adding":
            hit = np.abs(y[..., -1, :, 0] - d[..., -1, :, 0]) < self.options["tolerance"]
            acc = hit.mean(axis=-1)
        elif self.name == "copy":
            L = self.options["copy_len"]
            acc = _argmax_hits(y[..., -L:, :, :], d[..., -L:, :, :]).mean(axis=(-2, -1))
        else:
            acc = _argmax_hits(y[..., -1, :, :], d[..., -1, :, :]).mean(axis=-1)
        return float(acc) if np.ndim(acc) == 0 else acc

    def solved(self, loss: float, accuracy: float | None) -> bool:
        """The task's success criterion for one run.

        - recall: ``accuracy >= 0.95``.
        - adding: ``loss < 0.01``, the MSE of the sum, i.e. 6 % of the baseline 1/6 (94 % of the
          variance of X1 + X2 explained). Hochreiter & Schmidhuber's stopping rule also asked for
          an average training error below 0.01; our threshold is on the plain MSE of the sum.
        - copy: ``accuracy >= 0.99`` (99 % of the copied symbols right).
        - temporal_order: ``accuracy >= 0.99``, i.e. error below 1 % (Pascanu et al. 2013).
        - random: never (targets are independent of the inputs; the task exists to measure
          gradient flow at initialisation), so always False.
        """
        if self.name == "adding":
            return loss is not None and bool(np.isfinite(loss)) and float(loss) < ADDING_SOLVED_MSE
        if self.name == "random" or accuracy is None:
            return False
        threshold = {"recall": RECALL_SOLVED_ACCURACY, "copy": COPY_SOLVED_ACCURACY,
                     "temporal_order": TEMPORAL_ORDER_SOLVED_ACCURACY}[self.name]
        return bool(float(accuracy) >= threshold)


def make_task(name: str, seq_len: int, **options) -> Task:
    """Build a :class:`Task`.

    Parameters
    ----------
    name : str
        One of ``TASKS``.
    seq_len : int
        T, at least ``MIN_SEQ_LEN[name]``.
    **options
        Task options from ``TASK_OPTIONS[name]``; a value of None means the default.

    Raises
    ------
    ValueError
        Unknown task, unknown option for that task (the message names the allowed ones), or a
        bad value.
    """
    if name not in TASKS:
        raise ValueError(f"task: got {name!r}; allowed: {', '.join(TASKS)}")
    allowed = TASK_OPTIONS[name]
    for key in options:
        if key not in allowed:
            names = ", ".join(allowed) if allowed else "none"
            raise ValueError(f"task {name!r}: unknown option {key!r}; allowed options: {names}")
    opts = {k: (v if options.get(k) is None else options[k]) for k, v in allowed.items()}
    if not _is_int(seq_len) or seq_len < MIN_SEQ_LEN[name]:
        raise ValueError(f"seq_len: got {seq_len!r}; allowed: an integer >= {MIN_SEQ_LEN[name]} "
                         f"for task {name!r}")
    T = int(seq_len)
    opts = _check_options(name, opts)
    return _BUILDERS[name](T, opts)


# --------------------------------------------------------------------------------------------
# option checking


def _is_int(v) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


def _int_option(name: str, key: str, v, minimum: int) -> int:
    if not _is_int(v) or v < minimum:
        raise ValueError(f"task {name!r}: option {key}: got {v!r}; allowed: an integer >= "
                         f"{minimum}")
    return int(v)


def _float_option(name: str, key: str, v, *, positive: bool) -> float:
    ok = isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
    ok = ok and math.isfinite(float(v)) and (float(v) > 0 if positive else float(v) >= 0)
    if not ok:
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"task {name!r}: option {key}: got {v!r}; allowed: a finite number "
                         f"{bound}")
    return float(v)


def _check_options(name: str, opts: dict) -> dict:
    out = dict(opts)
    for key in ("symbols", "copy_len", "input_size", "distractors"):
        if key in out:
            out[key] = _int_option(name, key, out[key], 2 if key == "symbols" else 1)
    if "noise" in out:
        out["noise"] = _float_option(name, "noise", out["noise"], positive=False)
    if "tolerance" in out:
        out["tolerance"] = _float_option(name, "tolerance", out["tolerance"], positive=True)
    if "placement" in out and out["placement"] not in PLACEMENTS:
        raise ValueError(f"task {name!r}: option placement: got {out['placement']!r}; allowed: "
                         f"{', '.join(PLACEMENTS)}")
    return out


# --------------------------------------------------------------------------------------------
# helpers


def _one_hot(idx: np.ndarray, n: int) -> np.ndarray:
    """One-hot float64 encoding: idx (...) of ints in [0, n) -> (..., n)."""
    return np.eye(n)[idx]


def _argmax_hits(y: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Boolean ``argmax y == argmax d`` over the last axis; non-finite predictions are misses."""
    return (np.argmax(y, axis=-1) == np.argmax(d, axis=-1)) & np.isfinite(y).all(axis=-1)


# --------------------------------------------------------------------------------------------
# recall


def _build_recall(T: int, opts: dict) -> Task:
    K = opts["symbols"]
    baseline = {
        "metric": "accuracy", "value": 1.0 / K, "formula": "1/K",
        "source": "chance: the symbol is uniform over K classes, so any predictor that ignores "
                  "the input is right with probability 1/K",
        "loss": 1.0 - 1.0 / K,
        "loss_formula": "1 - 1/K = (1 - 1/K)^2 + (K - 1)/K^2 (mse of the uniform output 1/K)",
    }
    return Task("recall", T, T, K, K, "softmax", "mse", "last", opts, baseline,
                f"accuracy >= {RECALL_SOLVED_ACCURACY}")


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


def _build_adding(T: int, opts: dict) -> Task:
    tol = opts["tolerance"]
    baseline = {
        "metric": "mse", "value": 1.0 / 6.0, "formula": "Var(X1 + X2) = 2 * (1/12) = 1/6",
        "source": "predicting the mean E[X1 + X2] = 1 regardless of the input (Le, Jaitly & "
                  "Hinton 2015; Arjovsky, Shah & Bengio 2016)",
        "loss": 1.0 / 6.0, "loss_formula": "1/6",
        "accuracy": 2 * tol - tol * tol,
        "accuracy_formula": "P(|X1 + X2 - 1| < tol) = 2 tol - tol^2 (triangular density)",
    }
    return Task("adding", T, T, 2, 1, "linear", "mse", "last", opts, baseline,
                f"mse < {ADDING_SOLVED_MSE}")


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


def _build_copy(T: int, opts: dict) -> Task:
    L, S = opts["copy_len"], opts["symbols"]
    n = T + 2 * L
    summed = L * math.log(S)
    baseline = {
        "metric": "ce_per_step", "value": summed / n,
        "formula": "copy_len * log(symbols) / (T + 2 * copy_len)",
        "source": "Arjovsky, Shah & Bengio 2016: a memoryless strategy predicts blank for "
                  "T + copy_len steps and a uniform symbol for the last copy_len steps "
                  "(10 log 8 / (T + 20) for the defaults)",
        "loss": summed,
        "loss_formula": "copy_len * log(symbols) (the same strategy's ce summed over steps, "
                        "as the engine reports it)",
    }
    return Task("copy", T, n, S + 2, S + 1, "softmax", "ce", "all", opts, baseline,
                f"accuracy >= {COPY_SOLVED_ACCURACY}")


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


def _build_temporal_order(T: int, opts: dict) -> Task:
    baseline = {
        "metric": "accuracy", "value": 0.25, "formula": "1/4",
        "source": "chance: the four classes AA, AB, BA, BB are equally likely",
        "loss": math.log(4.0), "loss_formula": "log 4 (ce of the uniform output)",
    }
    return Task("temporal_order", T, T, opts["distractors"] + 2, 4, "softmax", "ce", "last", opts,
                baseline, f"accuracy >= {TEMPORAL_ORDER_SOLVED_ACCURACY}")


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


def _build_random(T: int, opts: dict) -> Task:
    K = opts["symbols"]
    baseline = {
        "metric": "accuracy", "value": 1.0 / K, "formula": "1/K",
        "source": "chance: targets are uniform and independent of the inputs, so no predictor "
                  "does better",
        "loss": 1.0 - 1.0 / K,
        "loss_formula": "1 - 1/K (mse of the uniform output 1/K)",
    }
    return Task("random", T, T, opts["input_size"], K, "softmax", "mse", "last", opts, baseline,
                "none (targets are independent of the inputs)")


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


_BUILDERS = {
    "recall": _build_recall, "adding": _build_adding, "copy": _build_copy,
    "temporal_order": _build_temporal_order, "random": _build_random,
}
_SAMPLERS = {
    "recall": _sample_recall, "adding": _sample_adding, "copy": _sample_copy,
    "temporal_order": _sample_temporal_order, "random": _sample_random,
}
