"""Experiment files: load, override, validate and expand a sweep into runs.

An experiment is a base configuration (the schema and its defaults live in :mod:`rnnlab.config`)
plus a sweep: axes of values whose product is the grid; each grid point runs ``repeats`` times
with seeds ``seed, seed + 1, ...``.  Layers are applied in this order, later ones winning:

1. the file;
2. the selected profile (``profiles.NAME``): dotted overrides, then its own ``sweep``;
3. ``--set KEY=VALUE`` overrides, in order;
4. ``--sweep KEY=V1,V2,...`` axes, in order.

An override of a swept key pins it: the key leaves its axis (an axis left with no keys goes).
A new axis replaces every earlier axis that shares a key with it, taking the place of the first.

Sweep values: a non-empty list; ``{linspace: [a, b, n]}``; ``{logspace: [a, b, n]}`` (``10**a`` to
``10**b``); ``{range: [start, stop, step]}`` (Python's range, stop excluded).  A linspace or
logspace value that is a whole number becomes an int when the key holds integers.  ``zip`` maps
keys to equal-length value lists that vary together as one axis (a list of such mappings makes
several axes).  Every value is validated like the key's field and floats are normalised to 12
significant digits.

Grid order: :func:`itertools.product` of the axes in order (the last axis varies fastest), then the
repeats of each point.  Every user mistake raises :class:`rnnlab.errors.UserError` whose message
is one line.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import yaml
from pydantic import BaseModel, ValidationError

from rnnlab.config import (
    INT_LIMIT,
    SECTIONS,
    SWEEP_ALLOWED,
    BaseConfig,
    ExperimentFile,
    RunConfig,
    Shown,
    convert_validation_error,
    describe_field,
    field_adapter,
    is_int_field,
    leaf_fields,
    normalise_float,
    shown,
    sweepable_keys,
)
from rnnlab.errors import ConfigError, UserError

__all__ = [
    "Axis",
    "Experiment",
    "RunConfig",
    "RunSpec",
    "canonical_json",
    "load_experiment",
    "parse_experiment",
    "run_id",
]

VALUES_ALLOWED = (
    "a non-empty list, {linspace: [a, b, n]}, {logspace: [a, b, n]} or {range: [start, stop, step]}"
)

# --------------------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """Safe YAML that reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``) and refuses duplicate
    keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        self.flatten_mapping(node)
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable: the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml_error(exc: yaml.YAMLError, text: str, file: str) -> ConfigError:
    lines = text.splitlines()
    mark = getattr(exc, "problem_mark", None)
    if mark is None or mark.line >= len(lines):  # at the end of the text: show where it began
        mark = getattr(exc, "context_mark", None) or mark
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    if mark is None:
        return ConfigError(file, "YAML", shown(text), "valid YAML", problem)
    line = lines[mark.line].strip() if mark.line < len(lines) else ""
    return ConfigError(file, f"line {mark.line + 1}", shown(line), "valid YAML", problem)


def _parse_yaml(text: str, file: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, file) from None


# --------------------------------------------------------------------------- canonical form


def _normalise(obj: Any) -> Any:
    if isinstance(obj, float):
        return normalise_float(obj)
    if isinstance(obj, dict):
        return {str(k): _normalise(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_normalise(v) for v in obj]
    return obj


def _dumps(obj: Any) -> str:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, floats at 12 significant digits: the text that gets hashed."""
    return _dumps(_normalise(obj))


def run_id(config: RunConfig) -> str:
    """12 hex characters of the sha256 of the run's canonical JSON (seed included)."""
    # A RunConfig's floats are normalised by validation, so canonical_json's pass is not needed.
    return hashlib.sha256(_dumps(config.to_dict()).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- public types


class Axis(NamedTuple):
    """One axis of the grid: ``keys`` vary together; each entry of ``values`` is a tuple aligned
    with ``keys`` (1-tuples for a plain axis)."""

    keys: tuple[str, ...]
    values: list[tuple]


@dataclass(frozen=True)
class RunSpec:
    """One training run: its identity, seed, repeat index, full config and swept values."""

    run_id: str
    seed: int
    repeat: int
    config: RunConfig
    swept: dict[str, Any]

    def __hash__(self) -> int:
        return hash(self.run_id)


@dataclass
class _Axis:
    keys: list[str]
    points: list[tuple]
    file: str
    wheres: list[str]


class Experiment:
    """A validated experiment: the base configuration, the sweep axes and the runs they make."""

    def __init__(self, base: BaseConfig, axes: list[_Axis], source: str, profile: str | None):
        self.base = base
        self.source = source
        self.profile = profile
        self.axes = [Axis(tuple(a.keys), list(a.points)) for a in axes]
        self._axes = axes
        self._runs = self._expand()

    name = property(lambda self: self.base.name, doc="Experiment name.")
    description = property(lambda self: self.base.description, doc="Free text.")
    seed = property(lambda self: self.base.seed, doc="Seed of repeat 0.")
    repeats = property(lambda self: self.base.repeats, doc="Seeds per grid point.")
    model = property(lambda self: self.base.model, doc="Base ModelConfig.")
    task = property(lambda self: self.base.task, doc="Base TaskConfig.")
    train = property(lambda self: self.base.train, doc="Base TrainConfig.")

    @property
    def swept_keys(self) -> list[str]:
        """Dotted keys varied by the sweep, in axis order."""
        return [k for axis in self.axes for k in axis.keys]

    @property
    def grid_size(self) -> int:
        """Number of grid points (runs = grid_size * repeats)."""
        return math.prod(len(a.values) for a in self.axes)

    def runs(self) -> list[RunSpec]:
        """Every run: grid points in product order, each followed by its repeats."""
        return list(self._runs)

    def fingerprint(self) -> str:
        """16 hex characters identifying everything that affects the numbers of the runs.

        Hashes the base model/task/train (without the values of swept keys, which no run uses),
        the axes, the seed and the repeats; not the name, description, source or profile.
        """
        base = {
            s: getattr(self.base, s).model_dump(mode="json") for s in ("model", "task", "train")
        }
        for key in self.swept_keys:
            *parents, last = key.split(".")
            node = base
            for p in parents:
                node = node[p]
            node.pop(last)
        data = {
            "base": base,
            "seed": self.seed,
            "repeats": self.repeats,
            "axes": [[list(a.keys), [list(v) for v in a.values]] for a in self.axes],
        }
        return hashlib.sha256(canonical_json(data).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """The resolved experiment as JSON-able data (for the manifest)."""
        return {
            **self.base.model_dump(mode="json"),
            "axes": [
                {"keys": list(a.keys), "values": [list(v) for v in a.values]} for a in self.axes
            ],
            "grid_size": self.grid_size,
            "runs": len(self._runs),
            "fingerprint": self.fingerprint(),
            "source": self.source,
            "profile": self.profile,
        }

    def _expand(self) -> tuple[RunSpec, ...]:
        sections = {s: getattr(self.base, s).model_dump() for s in ("model", "task", "train")}
        origin = {k: (a.file, w) for a in self._axes for k, w in zip(a.keys, a.wheres, strict=True)}
        specs = []
        for combo in itertools.product(*(a.points for a in self._axes)):
            cfg: dict[str, Any] = _copy_tree(sections)
            swept = {}
            for axis, point in zip(self._axes, combo, strict=True):
                for key, value in zip(axis.keys, point, strict=True):
                    _assign(cfg, key, value)
                    swept[key] = value
            cfg["seed"] = self.seed
            try:
                first = RunConfig.model_validate(cfg)
            except ValidationError as exc:
                raise _combination_error(exc, swept, origin, self.source) from None
            for r in range(self.repeats):
                config = first if r == 0 else first.model_copy(update={"seed": self.seed + r})
                specs.append(RunSpec(run_id(config), config.seed, r, config, dict(swept)))
        return tuple(specs)


def _combination_error(exc: ValidationError, swept: dict, origin: dict, source: str) -> UserError:
    """The first error of a grid point; a task mismatch blames task.name when only it is swept."""
    err = exc.errors()[0]
    if err["type"] == "task_mismatch":
        ctx = err["ctx"]
        key = f"task.{ctx['key']}"
        if key not in swept and "task.name" in swept:
            hint = f"{key} is {ctx['value']!r}"
            return ConfigError(*origin["task.name"], ctx["name"], ctx["name_allowed"], hint)
    return convert_validation_error(exc, RunConfig, lambda k: origin.get(k, (source, k)))


# --------------------------------------------------------------------------- loading


def load_experiment(
    path: str | Path,
    *,
    sets: list[str] | tuple[str, ...] = (),
    sweeps: list[str] | tuple[str, ...] = (),
    profile: str | None = None,
    max_runs: int = 10_000,
    yes: bool = False,
) -> Experiment:
    """Read an experiment YAML file and apply the profile, ``--set`` and ``--sweep`` overrides."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{file}: no such experiment file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{file}: cannot read: {exc}") from None
    data = _parse_yaml(text, file)
    return parse_experiment(
        data, source=file, sets=sets, sweeps=sweeps, profile=profile, max_runs=max_runs, yes=yes
    )


def parse_experiment(
    data: Any,
    *,
    source: str = "<experiment>",
    sets: list[str] | tuple[str, ...] = (),
    sweeps: list[str] | tuple[str, ...] = (),
    profile: str | None = None,
    max_runs: int = 10_000,
    yes: bool = False,
) -> Experiment:
    """Validate experiment data (as read from YAML) and expand it; see the module docstring.

    A sweep of more than ``max_runs`` runs (grid points times repeats) is refused unless ``yes``.
    """
    if not isinstance(data, dict):
        allowed = "a mapping with keys " + ", ".join(ExperimentFile.model_fields)
        raise ConfigError(source, "(top level)", shown(data), allowed)
    raw = copy.deepcopy(data)
    file_cfg = _validate(ExperimentFile, raw, lambda k: (source, k))
    limit = None if yes else max_runs
    base_raw = {k: v for k, v in raw.items() if k not in ("sweep", "profiles")}
    provenance: dict[str, tuple[str, str]] = {}

    def override(key: str, value: Any, file: str, where: str) -> None:
        for leaf, leaf_value, leaf_where in _flatten_override(key, value, file, where):
            _assign(base_raw, leaf, leaf_value)
            provenance[leaf] = (file, leaf_where)
            _pin(axes, leaf)

    axes = _parse_sweep(file_cfg.sweep, source, "sweep", limit)
    if profile is not None:
        if profile not in file_cfg.profiles:
            names = ", ".join(file_cfg.profiles) or "none (the file defines no profiles)"
            raise ConfigError(source, "profile", profile, f"one of {names}")
        body = dict(file_cfg.profiles[profile])
        prefix = f"profiles.{profile}"
        profile_sweep = body.pop("sweep", {})
        for key, value in body.items():
            override(key, value, source, f"{prefix}.{key}")
        if not isinstance(profile_sweep, dict):
            raise ConfigError(source, f"{prefix}.sweep", shown(profile_sweep), SWEEP_ALLOWED)
        _replace_axes(axes, _parse_sweep(profile_sweep, source, f"{prefix}.sweep", limit))
    for item in sets:
        key, text = _split_cli(item, "--set")
        override(key, _parse_yaml_value(text, "--set", key), "--set", key)
    for item in sweeps:
        key, text = _split_cli(item, "--sweep")
        _replace_axes(axes, _parse_sweep({key: _cli_values(key, text)}, "--sweep", "", limit))

    base = _validate(BaseConfig, base_raw, lambda k: provenance.get(k, (source, k)))
    if base.seed + base.repeats > INT_LIMIT:  # the last repeat's seed must fit 64 bits too
        allowed = f"an integer >= 0 and <= 2**63 - repeats ({base.repeats})"
        raise ConfigError(*provenance.get("seed", (source, "seed")), base.seed, allowed)
    for axis in axes:
        if len(set(axis.points)) < len(axis.points):
            dup = next(p for i, p in enumerate(axis.points) if p in axis.points[:i])
            value = dup[0] if len(dup) == 1 else dup
            raise ConfigError(
                axis.file,
                axis.wheres[0],
                shown(value),
                "distinct values",
                "this value appears twice",
            )
    runs = math.prod(len(a.points) for a in axes) * base.repeats
    if limit is not None and runs > limit:
        got = Shown(f"{runs} runs ({runs // base.repeats} grid points x {base.repeats} repeats)")
        raise ConfigError(source, "sweep", got, f"at most {limit} runs", "pass --yes to run them")
    return Experiment(base, axes, source, profile)


def _validate(model: type[BaseModel], raw: dict, locate) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise convert_validation_error(exc, model, locate) from None


def _copy_tree(tree: dict) -> dict:
    """A copy of nested dicts (leaves shared): much faster than deepcopy for configs."""
    return {k: _copy_tree(v) if isinstance(v, dict) else v for k, v in tree.items()}


def _assign(tree: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = value


def _key_error(key: Any, value: Any, file: str, where: str, candidates: list[str]) -> ConfigError:
    """An unknown or unusable dotted key, with "did you mean" among ``candidates``."""
    text = str(key)
    parent = text.rpartition(".")[0]
    children = [c.rpartition(".")[2] for c in candidates if c.rpartition(".")[0] == parent]
    if parent in SECTIONS and children:
        allowed = f"a key of {parent}: {', '.join(children)}"
    elif candidates == sweepable_keys():
        allowed = "a dotted key of model, task or train, such as task.seq_len"
    else:
        allowed = "a key of the top level: " + ", ".join(BaseConfig.model_fields)
    if text == "seed":
        hint = "seed is not sweepable; use repeats"
    elif text in leaf_fields():
        hint = f"{text} cannot be swept"
    else:
        match = difflib.get_close_matches(text, candidates, n=1)
        hint = f"did you mean {match[0]}?" if match else ""
    return ConfigError(file, where, shown(value), allowed, hint)


def _flatten_override(key: Any, value: Any, file: str, where: str) -> list[tuple[str, Any, str]]:
    """(leaf key, value, where) for an override; a mapping given to a section is spread out."""
    if key in SECTIONS:
        if not isinstance(value, dict):
            raise ConfigError(file, where, shown(value), f"a mapping of keys of {key}")
        out = []
        for sub, sub_value in value.items():
            out += _flatten_override(f"{key}.{sub}", sub_value, file, f"{where}.{sub}")
        return out
    if key not in leaf_fields():
        raise _key_error(key, value, file, where, [*leaf_fields(), *SECTIONS])
    return [(key, value, where)]


def _pin(axes: list[_Axis], key: str) -> None:
    """Remove ``key`` from its axis (an override fixes its value)."""
    for i, axis in enumerate(axes):
        if key in axis.keys:
            j = axis.keys.index(key)
            del axis.keys[j], axis.wheres[j]
            axis.points = [p[:j] + p[j + 1 :] for p in axis.points]
            if not axis.keys:
                del axes[i]
            return


def _replace_axes(axes: list[_Axis], new: list[_Axis]) -> None:
    """Add ``new`` axes in place; each replaces the earlier axes it shares a key with."""
    for axis in new:
        clash = [i for i, a in enumerate(axes) if set(a.keys) & set(axis.keys)]
        for i in reversed(clash):
            del axes[i]
        axes.insert(clash[0] if clash else len(axes), axis)


def _split_cli(item: Any, flag: str) -> tuple[str, str]:
    key, eq, text = str(item).partition("=")
    if not eq or not key.strip():
        raise ConfigError(flag, str(item), shown(item), "KEY=VALUE, such as model.hidden=128")
    return key.strip(), text


def _parse_yaml_value(text: str, file: str, key: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(file, key, text, "a YAML value", problem) from None


def _cli_values(key: str, text: str) -> Any:
    """``10,20,40`` -> [10, 20, 40]; a text starting with ``[`` or ``{`` (or for ``zip``) is
    read as one YAML value, such as ``{logspace: [-4, -1, 4]}``."""
    if key == "zip" or text.lstrip().startswith(("[", "{")):
        return _parse_yaml_value(text, "--sweep", key)
    if not text.strip():
        return []
    parts = text.split(",")
    if any(not p.strip() for p in parts):
        raise ConfigError("--sweep", key, text, "comma-separated values (write null for null)")
    return [_parse_yaml_value(p, "--sweep", key) for p in parts]


# --------------------------------------------------------------------------- sweeps


def _parse_sweep(mapping: dict, file: str, prefix: str, limit: int | None) -> list[_Axis]:
    """The axes of one sweep mapping, each value validated."""

    def where(*parts: str) -> str:
        return ".".join(p for p in (prefix, *parts) if p)

    axes: list[_Axis] = []
    for key, value in mapping.items():
        if key != "zip":
            values = _axis_values(key, value, file, where(str(key)), limit)
            axes.append(_Axis([key], [(v,) for v in values], file, [where(str(key))]))
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
            axes.append(_Axis(keys, list(zip(*cols, strict=True)), file, wheres))
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
        raise _key_error(key, value, file, where, sweepable_keys())
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


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


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
    ok = isinstance(args, list) and len(args) == 3 and _is_int(args[2]) and args[2] >= 1
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
    ok = isinstance(args, list) and 1 <= len(args) <= 3 and all(_is_int(x) for x in args)
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
