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

With ``target="mean"`` adding's baseline is Var((X1 + X2)/2) = 1/24; with ``scoring="arjovsky"``
copy's loss is the ce averaged over the T + 2L steps (``Task.loss_scale``). adding also reports
Hochreiter & Schmidhuber's and Pascanu et al.'s accuracy criteria (``Task.criteria``).

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

The package: :mod:`rnnlab.tasks.options` (task names, options and their defaults, minimum lengths,
checking of option values), :mod:`rnnlab.tasks.task` (the :class:`Task` class, success thresholds,
each task's metadata and baseline) and :mod:`rnnlab.tasks.samplers` (each task's data). This
module holds :func:`make_task` and the public names of the three (``__all__``).
"""

from __future__ import annotations

from rnnlab.tasks.options import (
    ADDING_TARGETS,
    COPY_SCORINGS,
    MIN_SEQ_LEN,
    OPTIONS,
    PLACEMENTS,
    TASK_OPTIONS,
    TASKS,
    WINDOWS,
    Option,
    check_options,
    is_int,
    min_seq_len,
)
from rnnlab.tasks.samplers import TEMPORAL_ORDER_CLASSES, adding_windows, temporal_order_windows
from rnnlab.tasks.task import (
    ACCURACY_CRITERIA,
    ADDING_SOLVED_FRACTION,
    ADDING_SOLVED_MSE,
    ADDING_SOLVED_MSE_MEAN,
    BUILDERS,
    COPY_SOLVED_ACCURACY,
    CRITERIA_TASKS,
    EXPLODED_FACTOR,
    HS_TOLERANCE,
    PASCANU_SQUARED_ERROR,
    RECALL_SOLVED_ACCURACY,
    TEMPORAL_ORDER_SOLVED_ACCURACY,
    Task,
)

__all__ = [
    "ACCURACY_CRITERIA",
    "CRITERIA_TASKS",
    "ADDING_SOLVED_FRACTION",
    "ADDING_SOLVED_MSE",
    "ADDING_SOLVED_MSE_MEAN",
    "HS_TOLERANCE",
    "PASCANU_SQUARED_ERROR",
    "adding_windows",
    "ADDING_TARGETS",
    "COPY_SCORINGS",
    "OPTIONS",
    "Option",
    "WINDOWS",
    "min_seq_len",
    "COPY_SOLVED_ACCURACY",
    "MIN_SEQ_LEN",
    "PLACEMENTS",
    "EXPLODED_FACTOR",
    "RECALL_SOLVED_ACCURACY",
    "TASKS",
    "TASK_OPTIONS",
    "TEMPORAL_ORDER_CLASSES",
    "TEMPORAL_ORDER_SOLVED_ACCURACY",
    "Task",
    "make_task",
    "temporal_order_windows",
]


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
    opts = check_options(name, opts)
    least = min_seq_len(name, opts)
    if not is_int(seq_len) or seq_len < least:
        extra = " with placement pascanu" if least > MIN_SEQ_LEN[name] else ""
        raise ValueError(f"seq_len: got {seq_len!r}; allowed: an integer >= {least} "
                         f"for task {name!r}{extra}")
    T = int(seq_len)
    return BUILDERS[name](T, opts)
