"""Task names, the options each task accepts with their defaults, the smallest seq_len of each
task, and the checking of option values (every bad value raises ``ValueError`` naming the task,
the option, what was seen and what is allowed).
"""

from __future__ import annotations

import math

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
