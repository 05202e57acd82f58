"""Task names, every task option (its kind, bounds or allowed values, and what it does), the
options each task accepts with their defaults, the smallest seq_len of each task, and the checking
of option values (every bad value raises ``ValueError`` naming the task, the option, what was seen
and what is allowed).

This module is the one definition of the options: :class:`rnnlab.experiment.schema.TaskConfig` takes
its option fields' bounds and allowed values from :data:`OPTIONS` and the options each task reads
from :data:`TASK_OPTIONS` (and checks at import that it has a field for every option).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TASKS = ("recall", "adding", "copy", "temporal_order", "random")


@dataclass(frozen=True)
class Option:
    """What one task option accepts.

    Attributes
    ----------
    kind : str
        ``"int"`` (an integer >= ``minimum``), ``"float"`` (a finite number >= ``minimum``, or
        > ``minimum`` when ``strict``) or ``"choice"`` (one of ``choices``).
    doc : str
        What the option does (the field's description in ``TaskConfig``).
    minimum : float
        Lower bound of an int or float option.
    strict : bool
        Whether a float option must be strictly above ``minimum``.
    choices : tuple of str
        Allowed values of a choice option.
    """

    kind: str
    doc: str
    minimum: float = 0
    strict: bool = False
    choices: tuple[str, ...] = ()

    def allowed(self) -> str:
        """The "allowed" text of an error message."""
        if self.kind == "choice":
            return ", ".join(self.choices)
        sym = ">" if self.strict else ">="
        what = "an integer" if self.kind == "int" else "a finite number"
        return f"{what} {sym} {self.minimum:g}"


PLACEMENTS = ("halves", "anywhere", "pascanu")
ADDING_TARGETS = ("sum", "mean")
WINDOWS = ("floor", "ceil")
COPY_SCORINGS = ("rnnlab", "arjovsky")

#: Every task option: kind, bounds or allowed values, and what it does.
OPTIONS: dict[str, Option] = {
    "symbols": Option("int", "Alphabet size (recall, copy, random).", minimum=2),
    "noise": Option("float", "Standard deviation of the distractor inputs (recall).", minimum=0),
    "placement": Option(
        "choice", "Where the two marked numbers fall (adding): halves (one in each half), "
        "anywhere (any two distinct steps) or pascanu (Pascanu et al. 2013: the first in "
        "[0, floor(T/10)), the second in [floor(T/10), floor(T/10) + floor(4T/10))).",
        choices=PLACEMENTS),
    "target": Option(
        "choice", "The adding target: sum (X1 + X2, Le et al. 2015; Arjovsky et al. 2016) or "
        "mean ((X1 + X2)/2, Pascanu et al. 2013).", choices=ADDING_TARGETS),
    "tolerance": Option(
        "float", "An adding output counts as correct when |y - target| < tolerance (in the "
        "target's units) for the accuracy column.", minimum=0, strict=True),
    "input_size": Option("int", "Input width (random).", minimum=1),
    "copy_len": Option("int", "Length of the sequence to copy (copy).", minimum=1),
    "scoring": Option(
        "choice", "How copy is scored: rnnlab (cross-entropy summed over the steps, accuracy on "
        "the copied symbols) or arjovsky (Arjovsky et al. 2016: cross-entropy averaged over the "
        "T + 2 copy_len steps, accuracy over all of them).", choices=COPY_SCORINGS),
    "distractors": Option("int", "Number of distractor symbols (temporal_order).", minimum=1),
    "jitter": Option(
        "float", "Length jitter of the training batches (adding): each step's batch has T + k "
        "steps, k uniform on 0..floor(jitter T) - 1, the same k for every run at that step "
        "(Pascanu et al. 2013 use 0.1); held-out sequences keep T.", minimum=0),
    "windows": Option(
        "choice", "Marker windows of temporal_order: floor (Pascanu et al. 2013: [floor(T/10), "
        "floor(2T/10)) and [floor(5T/10), floor(6T/10))) or ceil (the rule rnnlab used first: the "
        "integers t with T/10 <= t < 2T/10 and 5T/10 <= t < 6T/10).", choices=WINDOWS),
}

#: Allowed options per task, with their defaults. ``make_task`` rejects any other option name.
TASK_OPTIONS: dict[str, dict[str, object]] = {
    "recall": {"symbols": 4, "noise": 1.0},
    "adding": {"placement": "halves", "tolerance": 0.04, "target": "sum", "jitter": 0.0},
    "copy": {"copy_len": 10, "symbols": 8, "scoring": "rnnlab"},
    "temporal_order": {"distractors": 4, "windows": "floor"},
    "random": {"input_size": 4, "symbols": 4},
}

#: Smallest seq_len each task accepts with any options (adding needs two distinct marker
#: positions; temporal_order needs both marker windows to hold an integer: with ceil windows
#: that holds from T = 10 on, with floor windows for T = 5, 7 and every T >= 9, so 10 is the
#: bound that holds for both rules and every longer T). See :func:`min_seq_len` for options that
#: raise it.
MIN_SEQ_LEN = {"recall": 1, "adding": 2, "copy": 1, "temporal_order": 10, "random": 1}

#: adding with ``placement: pascanu`` needs floor(T/10) >= 1 (a non-empty first window).
PASCANU_MIN_SEQ_LEN = 10


def min_seq_len(name: str, options: dict | None = None) -> int:
    """Smallest seq_len of task ``name`` with these options (missing or None = the default)."""
    opts = options or {}
    if name == "adding" and opts.get("placement") == "pascanu":
        return max(MIN_SEQ_LEN[name], PASCANU_MIN_SEQ_LEN)
    return MIN_SEQ_LEN[name]


def is_int(v) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


def _int_option(name: str, key: str, v, minimum: int) -> int:
    if not is_int(v) or v < minimum:
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


def check_options(name: str, opts: dict) -> dict:
    """The options with checked values (ints as int, floats as float), in the same order."""
    out = dict(opts)
    for key, value in opts.items():
        spec = OPTIONS[key]
        if spec.kind == "int":
            out[key] = _int_option(name, key, value, int(spec.minimum))
        elif spec.kind == "float":
            # every float option is bounded at 0 (>= 0, or > 0 when strict)
            out[key] = _float_option(name, key, value, positive=spec.strict)
        elif value not in spec.choices:
            raise ValueError(f"task {name!r}: option {key}: got {value!r}; allowed: "
                             f"{spec.allowed()}")
    return out
