"""Sweep axes: a sweep mapping parsed into axes of validated values (a list,
``{linspace: [a, b, n]}``, ``{logspace: [a, b, n]}``, ``{range: [start, stop, step]}``, ``zip``
groups of keys that vary together), the ``max_runs`` limit on the length of a range form, and how
later layers change the axes (an override pins a key; a new axis replaces the axes it shares a
key with). The value forms and rules are in the docstring of :mod:`rnnlab.experiment.load`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from rnnlab.errors import ConfigError
from rnnlab.experiment.overrides import key_error
from rnnlab.experiment.schema import (
    Shown,
    describe_field,
    field_adapter,
    is_int_field,
    leaf_fields,
    normalise_float,
    shown,
    sweepable_keys,
)
from rnnlab.tasks.options import is_int

VALUES_ALLOWED = (
    "a non-empty list, {linspace: [a, b, n]}, {logspace: [a, b, n]} or {range: [start, stop, step]}"
)


@dataclass
class SweepAxis:
    keys: list[str]
    points: list[tuple]
    file: str
    wheres: list[str]


def pin(axes: list[SweepAxis], key: str) -> None:
    """Remove ``key`` from its axis (an override fixes its value)."""
    for i, axis in enumerate(axes):
        if key in axis.keys:
            j = axis.keys.index(key)
            del axis.keys[j], axis.wheres[j]
            axis.points = [p[:j] + p[j + 1 :] for p in axis.points]
            if not axis.keys:
                del axes[i]
            return


def replace_axes(axes: list[SweepAxis], new: list[SweepAxis]) -> None:
    """Add ``new`` axes in place; each replaces the earlier axes it shares a key with."""
    for axis in new:
        clash = [i for i, a in enumerate(axes) if set(a.keys) & set(axis.keys)]
        for i in reversed(clash):
            del axes[i]
        axes.insert(clash[0] if clash else len(axes), axis)


# --------------------------------------------------------------------------- sweeps


def parse_sweep(mapping: dict, file: str, prefix: str, limit: int | None) -> list[SweepAxis]:
    """The axes of one sweep mapping, each value validated."""

    def where(*parts: str) -> str:
        return ".".join(p for p in (prefix, *parts) if p)

    axes: list[SweepAxis] = []
    for key, value in mapping.items():
        if key != "zip":
            values = _axis_values(key, value, file, where(str(key)), limit)
            axes.append(SweepAxis([key], [(v,) for v in values], file, [where(str(key))]))
            continue
        groups = value if isinstance(value, list) else [value]
        if not groups:
            raise ConfigError(file, where("zip"), shown(value), "a mapping or a non-empty list")
        for i, group in enumerate(groups):
            gwhere = where(f"zip[{i}]" if isinstance(value, list) else "zip")
            if not isinstance(group, dict) or not group:
                allowed = "a non-empty mapping of dotted keys to lists of equal length"
                raise ConfigError(file, gwhere, shown(group), allowed)
            keys, wheres = list(group), [f"{gwhere}.{k}" for k in group]
            cols = [
                _axis_values(k, group[k], file, w, limit) for k, w in zip(keys, wheres, strict=True)
            ]
            if len({len(c) for c in cols}) > 1:
                got = Shown(
                    ", ".join(f"{k}: {len(c)} values" for k, c in zip(keys, cols, strict=True))
                )
                raise ConfigError(file, gwhere, got, "lists of equal length")
            axes.append(SweepAxis(keys, list(zip(*cols, strict=True)), file, wheres))
    seen: set[str] = set()
    for axis in axes:
        for key, w in zip(axis.keys, axis.wheres, strict=True):
            if key in seen:
                raise ConfigError(
                    file,
                    w,
                    Shown("a second axis"),
                    "each key in one axis only",
                    f"{key} is swept twice",
                )
            seen.add(key)
    return axes


def _axis_values(key: Any, value: Any, file: str, where: str, limit: int | None) -> list:
    """The validated values of one swept key."""
    if key not in sweepable_keys():
        raise key_error(key, value, file, where, sweepable_keys())
    if isinstance(value, list):
        items, from_range = value, False
    elif isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _RANGE_FORMS:
        form, args = next(iter(value.items()))
        items, from_range = _RANGE_FORMS[form](args, file, f"{where}.{form}", limit), True
    else:
        raise ConfigError(file, where, shown(value), VALUES_ALLOWED)
    if not items:
        raise ConfigError(file, where, shown(value), VALUES_ALLOWED, "this axis is empty")
    field, adapter = leaf_fields()[key], field_adapter(key)
    out = []
    for item in items:
        if from_range and is_int_field(field) and isinstance(item, float) and item.is_integer():
            item = int(item)
        try:
            out.append(adapter.validate_python(item))
        except ValidationError:
            raise ConfigError(file, where, shown(item), describe_field(field)) from None
    return out


def _check_length(n: int, file: str, where: str, limit: int | None) -> None:
    if limit is not None and n > limit:
        raise ConfigError(
            file,
            where,
            Shown(f"{n} values"),
            f"at most {limit} values",
            "pass --yes to allow more runs",
        )


def _space(args: Any, file: str, where: str, limit: int | None, log: bool) -> list[float]:
    allowed = "[a, b, n] with numbers a, b and an integer n >= 1"
    ok = isinstance(args, list) and len(args) == 3 and is_int(args[2]) and args[2] >= 1
    try:
        a, b = (float(x) for x in args[:2]) if ok else (0.0, 0.0)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok or any(isinstance(x, bool) for x in args[:2]) or not math.isfinite(a + b):
        raise ConfigError(file, where, shown(args), allowed)
    _check_length(args[2], file, where, limit)
    xs = np.linspace(a, b, args[2])
    if log:
        with np.errstate(over="ignore"):
            xs = 10.0**xs
    return [normalise_float(float(x)) for x in xs]


def _range(args: Any, file: str, where: str, limit: int | None) -> list[int]:
    ok = isinstance(args, list) and 1 <= len(args) <= 3 and all(is_int(x) for x in args)
    if not ok or (len(args) == 3 and args[2] == 0):
        raise ConfigError(file, where, shown(args), "[start, stop, step] of integers, step not 0")
    r = range(*args)
    try:
        n = len(r)
    except OverflowError:
        raise ConfigError(file, where, shown(args), "a range of a practical length") from None
    _check_length(n, file, where, limit)
    return list(r)


_RANGE_FORMS = {
    "linspace": lambda args, f, w, lim: _space(args, f, w, lim, log=False),
    "logspace": lambda args, f, w, lim: _space(args, f, w, lim, log=True),
    "range": _range,
}
