"""The :class:`Task` class (a configured task: sizes, natural head and loss, baseline, accuracy,
success criterion) and, per task, the builder that fills in its metadata and baseline.

:meth:`Task.sample` draws from the task's sampler in :mod:`rnnlab.tasks.samplers`; each
sampler's docstring derives the baseline its builder states here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rnnlab.tasks.compiled import fill
from rnnlab.tasks.options import is_int
from rnnlab.tasks.samplers import SAMPLERS

#: Success thresholds (see ``Task.solved``).
RECALL_SOLVED_ACCURACY = 0.95
#: adding with the sum target is solved at MSE < 0.01: 6 % of its baseline 1/6.
ADDING_SOLVED_MSE = 0.01
#: The same fraction of the baseline for every target: 0.01 / (1/6) = 0.06.
ADDING_SOLVED_FRACTION = ADDING_SOLVED_MSE * 6.0
#: adding with the mean target: 0.06 of its baseline 1/24, i.e. 0.01 / 4 = 0.0025 (the mean is
#: half the sum, so every squared error is a quarter).
ADDING_SOLVED_MSE_MEAN = ADDING_SOLVED_MSE / 4.0
COPY_SOLVED_ACCURACY = 0.99
TEMPORAL_ORDER_SOLVED_ACCURACY = 0.99
#: Hochreiter & Schmidhuber's (1997, sec. 5.4) adding criterion: correct when |error| < 0.04 on
#: their target 0.5 + (X1 + X2)/4, X in [-1, 1]. With X = 2U - 1 that target is (U1 + U2)/2, the
#: mean, so the bound is 0.04 on the mean (0.08 on the sum); strict inequality.
HS_TOLERANCE = 0.04
#: Pascanu, Mikolov & Bengio's (2013, ``addition.py``) adding criterion: a sequence is wrong when
#: its squared error on the mean exceeds 0.04, so correct when (error on the mean)^2 <= 0.04,
#: i.e. |error| <= 0.2 on the mean (0.4 on the sum).
PASCANU_SQUARED_ERROR = 0.04
#: The extra per-run accuracy columns of :meth:`Task.criteria` (adding only; null elsewhere).
ACCURACY_CRITERIA = ("accuracy_hs", "accuracy_pascanu")
#: The tasks that have them (so the summary of a sweep over them has their columns).
CRITERIA_TASKS = ("adding",)
#: A run whose final loss is finite but above this many times its task's baseline loss has
#: exploded (it is counted apart from "ok" and never solved), beside runs that diverged to inf/NaN.
EXPLODED_FACTOR = 1e6
#: Seed of the length-jitter schedule (:meth:`Task.training_length`), apart from every run's own.
JITTER_STREAM = 0x6A17


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
    loss_scale : float
        Factor the trainer applies to the engine's loss and gradients: 1, or 1 / (T + 2 copy_len)
        for copy with ``scoring="arjovsky"`` (the ce summed over steps becomes their average).
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
    loss_scale: float = 1.0

    @property
    def max_length(self) -> int:
        """The longest training sequence: ``length``, plus floor(jitter T) - 1 with a length
        jitter (adding's ``jitter``)."""
        return self.length + max(self._jitter_span() - 1, 0)

    def _jitter_span(self) -> int:
        """n = floor(jitter T): a jittered batch is T + k steps with k uniform on 0..n-1, as
        Pascanu et al.'s ``randint(int(.1 * L))``. 1e-9 absorbs the rounding of jitter * T
        (0.1 * 30 = 3.0000000000000004)."""
        return int(math.floor(float(self.options.get("jitter") or 0.0) * self.seq_len + 1e-9))

    def training_length(self, step: int) -> int:
        """The length of training step ``step``'s batch: ``length`` without jitter, else
        ``length + k``, k uniform on 0..floor(jitter T) - 1, drawn from a stream of its own keyed
        by (T, step). Every run of every batch gets the same k at a step, so a run's numbers do
        not depend on which runs share its call; the runs' data streams are not touched."""
        n = self._jitter_span()
        if n <= 1:
            return self.length
        k = np.random.default_rng([JITTER_STREAM, self.seq_len, int(step)]).integers(0, n)
        return self.length + int(k)

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
        x, d = self.sample_runs([rng], batch, dtype=dtype)
        return x[0], d[0]

    def sample_runs(self, rngs, batch: int, dtype=np.float64,
                    compiled: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Draw a batch of sequences for each of R runs, run r from its own Generator
        ``rngs[r]``: the same arrays as stacking ``sample(rngs[r], batch, dtype)`` over r (each
        run's sampler fills its slice of one array, so nothing is stacked).

        With ``compiled`` the tasks of :mod:`rnnlab.tasks.compiled` are drawn by the compiled
        draws when numba is there: the same numbers bit for bit, faster.

        Returns
        -------
        x : (R, T, B, I) array
        d : (R, T, B, O) array
        """
        rngs = list(rngs)
        for rng in rngs:
            if not isinstance(rng, np.random.Generator):
                raise TypeError(f"rng: got {type(rng).__name__}; allowed: numpy.random.Generator")
        if not is_int(batch) or batch < 1:
            raise ValueError(f"batch: got {batch!r}; allowed: an integer >= 1")
        dt = np.dtype(dtype)
        if dt.kind != "f":
            raise ValueError(f"dtype: got {dt}; allowed: a floating dtype")
        R, T, B = len(rngs), self.length, int(batch)
        x = np.zeros((R, T, B, self.input_size))          # float64, cast at the end
        d = np.zeros((R, T, B, self.output_size))
        if not (compiled and fill(self, rngs, x, d)):
            sampler = SAMPLERS[self.name]
            for r, rng in enumerate(rngs):
                sampler(self, rng, x[r], d[r])
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
        - copy: the same, over the last ``copy_len`` steps and the batch (``scoring="rnnlab"``)
          or over all T + 2 copy_len steps and the batch (``scoring="arjovsky"``).
        - adding: fraction of the batch with ``|y[T-1, b, 0] - d[T-1, b, 0]| < tolerance``
          (in the target's units; :meth:`criteria` gives the published criteria).

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
            L = self.length if self.options["scoring"] == "arjovsky" else self.options["copy_len"]
            acc = _argmax_hits(y[..., -L:, :, :], d[..., -L:, :, :]).mean(axis=(-2, -1))
        else:
            acc = _argmax_hits(y[..., -1, :, :], d[..., -1, :, :]).mean(axis=-1)
        return float(acc) if np.ndim(acc) == 0 else acc

    def criteria(self, y: np.ndarray, d: np.ndarray) -> dict[str, float | np.ndarray]:
        """The published accuracy criteria of the task, beside :meth:`accuracy`: for adding
        ``{"accuracy_hs": ..., "accuracy_pascanu": ...}`` (see ``ACCURACY_CRITERIA``), empty for
        every other task. Shapes and broadcasting as in :meth:`accuracy`.

        With e = (y_T - d_T) / c the error on the mean (c = 2 for the sum target, 1 for the
        mean; dividing by 2 is exact):

        .. math::

            \\text{accuracy\\_hs} = \\tfrac{1}{B} \\sum_b [\\,|e_b| < 0.04\\,], \\qquad
            \\text{accuracy\\_pascanu} = \\tfrac{1}{B} \\sum_b [\\,e_b^2 \\le 0.04\\,].

        The first is Hochreiter & Schmidhuber's (``HS_TOLERANCE``: 0.04 on their target, which
        is the mean; 0.08 on the sum), the second Pascanu et al.'s (``PASCANU_SQUARED_ERROR``:
        wrong when the squared error on the mean exceeds 0.04; |e| <= 0.2, 0.4 on the sum).
        A non-finite prediction is never correct.
        """
        if self.name not in CRITERIA_TASKS:
            return {}
        self.accuracy(y, d)                                  # the same shape checks
        y, d = np.asarray(y), np.asarray(d)
        scale = 2.0 if self.options["target"] == "sum" else 1.0
        with np.errstate(invalid="ignore", over="ignore"):
            e = (y[..., -1, :, 0] - d[..., -1, :, 0]) / scale
            hs = (np.abs(e) < HS_TOLERANCE).mean(axis=-1)
            pascanu = (e * e <= PASCANU_SQUARED_ERROR).mean(axis=-1)
        out = {"accuracy_hs": hs, "accuracy_pascanu": pascanu}
        return {k: float(v) if np.ndim(v) == 0 else v for k, v in out.items()}

    def solved(self, loss: float, accuracy: float | None) -> bool:
        """The task's success criterion for one run.

        - recall: ``accuracy >= 0.95``.
        - adding: ``loss < 0.06 * baseline`` (``ADDING_SOLVED_FRACTION``): with the sum target
          ``loss < 0.01``, 6 % of the baseline 1/6 (94 % of the variance of X1 + X2 explained);
          with the mean target ``loss < 0.0025``, the same 6 % of its baseline 1/24 (the same
          outputs, halved, are solved under both). Hochreiter & Schmidhuber's stopping rule also
          asked for an average training error below 0.01; ours is on the plain MSE.
        - copy: ``accuracy >= 0.99`` (99 % of the copied symbols right); with
          ``scoring="arjovsky"``, whose accuracy is over all n = T + 2 copy_len steps,
          ``accuracy >= 1 - 0.01 copy_len / n`` (no more wrong steps than 1 % of the copied
          symbols).
        - temporal_order: ``accuracy >= 0.99``, i.e. error below 1 % (Pascanu et al. 2013).
        - random: never (targets are independent of the inputs; the task exists to measure
          gradient flow at initialisation), so always False.
        """
        if self.name == "adding":
            return (loss is not None and bool(np.isfinite(loss))
                    and float(loss) < self.baseline["solved_mse"])
        if self.name == "random" or accuracy is None:
            return False
        return bool(float(accuracy) >= self.baseline["solved_accuracy"])


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
        "solved_accuracy": RECALL_SOLVED_ACCURACY,
    }
    return Task("recall", T, T, K, K, "softmax", "mse", "last", opts, baseline,
                f"accuracy >= {RECALL_SOLVED_ACCURACY}")


# --------------------------------------------------------------------------------------------
# adding


def _build_adding(T: int, opts: dict) -> Task:
    tol = opts["tolerance"]
    if opts["target"] == "sum":
        value, formula, solved = 1.0 / 6.0, "Var(X1 + X2) = 2 * (1/12) = 1/6", ADDING_SOLVED_MSE
        acc, acc_formula = 2 * tol - tol * tol, \
            "P(|X1 + X2 - 1| < tol) = 2 tol - tol^2 (triangular density)"
        source = ("predicting the mean E[X1 + X2] = 1 regardless of the input (Le, Jaitly & "
                  "Hinton 2015; Arjovsky, Shah & Bengio 2016)")
    else:
        value, formula, solved = 1.0 / 24.0, "Var((X1 + X2)/2) = 1/24", ADDING_SOLVED_MSE_MEAN
        acc, acc_formula = 4 * tol - 4 * tol * tol, \
            "P(|(X1 + X2)/2 - 1/2| < tol) = 4 tol - 4 tol^2 (triangular density)"
        source = ("predicting the mean E[(X1 + X2)/2] = 1/2 regardless of the input (Pascanu, "
                  "Mikolov & Bengio 2013)")
    baseline = {
        "metric": "mse", "value": value, "formula": formula, "source": source,
        "loss": value, "loss_formula": formula.rsplit("= ", 1)[-1],
        "accuracy": acc, "accuracy_formula": acc_formula,
        "solved_mse": solved,
        "solved_formula": f"{ADDING_SOLVED_FRACTION:g} * {formula.rsplit('= ', 1)[-1]}",
    }
    return Task("adding", T, T, 2, 1, "linear", "mse", "last", opts, baseline,
                f"mse < {solved:g}")


# --------------------------------------------------------------------------------------------
# copy


def _build_copy(T: int, opts: dict) -> Task:
    L, S = opts["copy_len"], opts["symbols"]
    n = T + 2 * L
    summed = L * math.log(S)
    arjovsky = opts["scoring"] == "arjovsky"
    solved = 1.0 - (1.0 - COPY_SOLVED_ACCURACY) * L / n if arjovsky else COPY_SOLVED_ACCURACY
    baseline = {
        "metric": "ce_per_step", "value": summed / n,
        "formula": "copy_len * log(symbols) / (T + 2 * copy_len)",
        "source": "Arjovsky, Shah & Bengio 2016: a memoryless strategy predicts blank for "
                  "T + copy_len steps and a uniform symbol for the last copy_len steps "
                  "(10 log 8 / (T + 20) for the defaults)",
        "loss": summed / n if arjovsky else summed,
        "loss_formula": ("copy_len * log(symbols) / (T + 2 * copy_len) (scoring arjovsky: the "
                         "engine's summed ce times loss_scale = 1 / (T + 2 copy_len))"
                         if arjovsky else
                         "copy_len * log(symbols) (the same strategy's ce summed over steps, "
                         "as the engine reports it)"),
        "solved_accuracy": solved,
    }
    return Task("copy", T, n, S + 2, S + 1, "softmax", "ce", "all", opts, baseline,
                f"accuracy >= {solved:.6g}", 1.0 / n if arjovsky else 1.0)


# --------------------------------------------------------------------------------------------
# temporal order


def _build_temporal_order(T: int, opts: dict) -> Task:
    baseline = {
        "metric": "accuracy", "value": 0.25, "formula": "1/4",
        "source": "chance: the four classes AA, AB, BA, BB are equally likely",
        "loss": math.log(4.0), "loss_formula": "log 4 (ce of the uniform output)",
        "solved_accuracy": TEMPORAL_ORDER_SOLVED_ACCURACY,
    }
    return Task("temporal_order", T, T, opts["distractors"] + 2, 4, "softmax", "ce", "last", opts,
                baseline, f"accuracy >= {TEMPORAL_ORDER_SOLVED_ACCURACY}")


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


BUILDERS = {
    "recall": _build_recall, "adding": _build_adding, "copy": _build_copy,
    "temporal_order": _build_temporal_order, "random": _build_random,
}
