"""Experiment files: load, override, validate and expand a sweep into runs.

An experiment is a base configuration (the schema and its defaults live in
:mod:`rnnlab.experiment.schema`) plus a sweep: axes of values whose product is the grid; each grid
point runs ``repeats`` times with seeds ``seed, seed + 1, ...``.  Layers are applied in this order,
later ones winning:

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

This module holds :class:`Experiment`, :class:`RunSpec`, :func:`load_experiment`,
:func:`load_profiles` and :func:`parse_experiment`; the pieces they build on live in their own
modules: ``rnnlab.experiment.yaml_io`` (the YAML loader and its errors),
``rnnlab.experiment.overrides`` (``--set``/``--sweep`` items, dotted keys),
``rnnlab.experiment.axes`` (sweep axes and their value forms) and ``rnnlab.experiment.identity``
(``canonical_json``, ``run_id``).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from rnnlab.errors import ConfigError, UserError
from rnnlab.experiment.axes import (
    SweepAxis,
    parse_sweep,
    pin,
    replace_axes,
)
from rnnlab.experiment.claims import ClaimError, check_claim, check_names, table_columns
from rnnlab.experiment.identity import canonical_json, run_id
from rnnlab.experiment.overrides import (
    cli_values,
    flatten_override,
    split_cli,
)
from rnnlab.experiment.schema import (
    CLAIMS_ALLOWED,
    INT_LIMIT,
    PROFILE_KEYS,
    SWEEP_ALLOWED,
    BaseConfig,
    Claim,
    ExperimentFile,
    RunConfig,
    Shown,
    convert_validation_error,
    shown,
)
from rnnlab.experiment.yaml_io import (
    parse_yaml,
    parse_yaml_value,
)
from rnnlab.timing import timed

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


class Experiment:
    """A validated experiment: the base configuration, the sweep axes and the runs they make."""

    def __init__(self, base: BaseConfig, axes: list[SweepAxis], source: str, profile: str | None,
                 claims: list | None = None, claims_at: str = "claims"):
        self.base = base
        self.claims = list(claims or [])
        #: Where the claims are in the file: ``claims``, or ``profiles.NAME.claims`` when the
        #: selected profile replaces them (errors about a claim name it).
        self.claims_at = claims_at
        #: Claims of the file that --set/--sweep left without a column they read, as (where in
        #: the file, why): not checked on this experiment's folder.
        self.set_aside: list[tuple[str, str]] = []
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

    def shape_configs(self) -> list:
        """One ``RunConfig`` per distinct run shape (``shape_key``): what decides the columns
        of the experiment's tables (``claims.table_columns``)."""
        return list({spec.config.shape_key(): spec.config for spec in self._runs}.values())

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
                node = node.get(p, {})
            # a key the dump leaves out at its default (a later task option, train.lyapunov)
            # may be absent already
            node.pop(last, None)
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
            "claims": [c.model_dump(mode="json") for c in self.claims],
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


@timed("load")
def load_experiment(path: str | Path, **options: Any) -> Experiment:
    """Read an experiment YAML file and apply the profile, ``--set`` and ``--sweep`` overrides:
    ``options`` are the keywords of :func:`parse_experiment` after ``source``."""
    return parse_experiment(_read(path), source=str(path), **options)


def load_profiles(path: str | Path, **options: Any) -> dict[str, Experiment]:
    """Every profile of an experiment file, each loaded as if it were selected (``options`` as
    for :func:`load_experiment`, without ``profile``), so a mistake in any profile (a key, a
    value, a claim) is found without selecting it (``rnnlab validate``)."""
    data = _read(path)
    profiles = data.get("profiles") if isinstance(data, dict) else None
    names = list(profiles) if isinstance(profiles, dict) else []
    return {name: parse_experiment(data, source=str(path), profile=name, **options)
            for name in names}


def _read(path: str | Path) -> Any:
    """The YAML data of an experiment file; UserError when it cannot be read."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{file}: no such experiment file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{file}: cannot read: {exc}") from None
    return parse_yaml(text, file)


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
    base_raw = {k: v for k, v in raw.items() if k not in ("sweep", "profiles", "claims")}
    claims, claims_at = list(file_cfg.claims), "claims"
    provenance: dict[str, tuple[str, str]] = {}

    def override(key: str, value: Any, file: str, where: str, also: tuple[str, ...] = ()) -> None:
        for leaf, leaf_value, leaf_where in flatten_override(key, value, file, where, also):
            _assign(base_raw, leaf, leaf_value)
            provenance[leaf] = (file, leaf_where)
            pin(axes, leaf)

    axes = parse_sweep(file_cfg.sweep, source, "sweep", limit)
    if profile is not None:
        if profile not in file_cfg.profiles:
            names = ", ".join(file_cfg.profiles) or "none (the file defines no profiles)"
            raise ConfigError(source, "profile", profile, f"one of {names}")
        body = dict(file_cfg.profiles[profile])
        prefix = f"profiles.{profile}"
        profile_sweep = body.pop("sweep", {})
        if "claims" in body:
            claims_at = f"{prefix}.claims"
            claims = _validate_claims(body.pop("claims"), source, claims_at)
        for key, value in body.items():
            override(key, value, source, f"{prefix}.{key}", PROFILE_KEYS)
        if not isinstance(profile_sweep, dict):
            raise ConfigError(source, f"{prefix}.sweep", shown(profile_sweep), SWEEP_ALLOWED)
        replace_axes(axes, parse_sweep(profile_sweep, source, f"{prefix}.sweep", limit))
    for item in sets:
        key, text = split_cli(item, "--set")
        override(key, parse_yaml_value(text, "--set", key), "--set", key)
    for item in sweeps:
        key, text = split_cli(item, "--sweep")
        replace_axes(axes, parse_sweep({key: cli_values(key, text)}, "--sweep", "", limit))

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
    for i, claim in enumerate(claims):
        check_claim(claim, source, f"{claims_at}[{i}]")
    exp = Experiment(base, axes, source, profile, claims, claims_at)
    errors = _claim_errors(exp)
    if not (sets or sweeps):
        for err in errors:
            if err is not None:
                raise err
        return exp
    # The claims must fit the experiment as its file (and profile) writes it; those that only
    # the --set/--sweep overrides leave without a column are set aside, not errors: a user may
    # pin or change a swept key to explore.
    parse_experiment(data, source=source, profile=profile, max_runs=max_runs, yes=yes)
    exp.set_aside = [(f"{exp.claims_at}[{i}]", err.hint or f"no column {err.value!r} in this "
                      "sweep") for i, err in enumerate(errors) if err is not None]
    exp.claims = [c for c, err in zip(exp.claims, errors, strict=True) if err is None]
    return exp


def _claim_errors(exp: Experiment) -> list[ClaimError | None]:
    """For each claim of ``exp``, in order, why it cannot be checked on this experiment's
    folder (a table the experiment cannot make, a name the table will not have, a step the runs
    do not log), or None: found before anything trains."""
    known: dict[str, list[str] | None] = {}
    errors: list[ClaimError | None] = []
    for i, claim in enumerate(exp.claims):
        at = f"{exp.claims_at}[{i}]"
        if claim.table not in known:
            known[claim.table] = table_columns(claim.table, exp.swept_keys, exp.shape_configs())
        try:
            columns = known[claim.table]
            if columns is None:
                why = ("task.seq_len is not swept" if "task.seq_len" not in exp.swept_keys
                       else "train.steps is swept")
                raise ClaimError(exp.source, f"{at}.table", claim.table,
                                 "summary, or budget and limit when task.seq_len is swept and "
                                 "train.steps is not", f"{why}, so there is no limit map")
            check_names(claim, columns, exp.source, at)
            if claim.step is not None:
                _check_claim_step(exp, claim.step, f"{at}.step")
            errors.append(None)
        except ClaimError as err:
            errors.append(err)
    return errors


def _check_claim_step(exp: Experiment, step: int, at: str) -> None:
    """A claim's ``step`` must be one every run logs (0, every ``train.log_every`` steps, and
    ``train.steps``): gradient norms exist only there."""
    for steps, every in sorted({(s.config.train.steps, s.config.train.log_every)
                                for s in exp.runs()}):
        if step % every == 0 and step <= steps or step == steps:
            continue
        logged = sorted({*range(0, steps + 1, every), steps})
        shown_steps = ", ".join(map(str, logged[:8])) + (", ..." if len(logged) > 8 else "")
        raise ClaimError(exp.source, at, step, f"a step the runs log: {shown_steps}",
                         f"train.steps {steps}, train.log_every {every}")


def _validate_claims(value: Any, source: str, where: str) -> list[Claim]:
    """The claims of a profile, validated like the file's (errors name ``where``)."""
    if not isinstance(value, list):
        raise ConfigError(source, where, shown(value), CLAIMS_ALLOWED)
    try:
        return [Claim.model_validate(c) for c in value]
    except ValidationError as exc:
        err = exc.errors()[0]
        i = next((j for j, c in enumerate(value) if not _valid_claim(c)), 0)
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(source, f"{where}[{i}]{'.' + key if key else ''}",
                          shown(err.get("input")), CLAIMS_ALLOWED) from None


def _valid_claim(c: Any) -> bool:
    try:
        Claim.model_validate(c)
    except ValidationError:
        return False
    return True


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
