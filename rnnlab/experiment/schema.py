"""The experiment schema: every key, its type, its bounds and its default, in one place.

These pydantic models are the project's single set of defaults; nothing else may restate them.
Types are strict: a string is never an int, a bool is never a number, a float is never an int
(an int is accepted where a float is expected and becomes a float).  Unknown keys are errors.
Every float is normalised to 12 significant digits (``float(f"{x:.12g}")``) as it is validated,
so ``0.30000000000000004`` and ``0.3`` are the same configuration, and the numbers a run uses are
exactly the numbers its identity is computed from.  ``null`` in a task option, ``model.output`` or
``train.loss_at`` means "the task's natural choice", decided by :mod:`rnnlab.tasks`.

Also here: :func:`describe_field`, which turns a field into the "allowed" text of error messages,
and :func:`leaf_fields`, the table of dotted keys (``train.clip.threshold``) that overrides and
sweeps may name.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    model_serializer,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from rnnlab.engine.bptt import LOSS_AT
from rnnlab.engine.cells import ACTIVATIONS, CELLS
from rnnlab.engine.clip import CLIP_MODES
from rnnlab.engine.heads import OUTPUTS
from rnnlab.engine.init import INITS
from rnnlab.engine.optim import OPTIMIZERS
from rnnlab.errors import ConfigError
from rnnlab.tasks import MIN_SEQ_LEN, OPTIONS, TASKS, min_seq_len
from rnnlab.tasks import TASK_OPTIONS as _TASK_DEFAULTS

_STRICT = ConfigDict(
    extra="forbid", strict=True, frozen=True, allow_inf_nan=False, use_attribute_docstrings=True
)


def normalise_float(x: float) -> float:
    """Round a float to 12 significant digits: ``float(f"{x:.12g}")``."""
    return float(f"{x:.12g}")


def _normalise_input(x: Any) -> Any:
    return normalise_float(x) if isinstance(x, float) and math.isfinite(x) else x


Float = Annotated[float, BeforeValidator(_normalise_input)]
"""A float normalised to 12 significant digits; an int is accepted and becomes a float."""

INT_LIMIT = 2**63
"""Every integer key is below this: results are stored in 64-bit integer columns, so a larger
value (a seed, or any swept integer) would be accepted here and crash the store later."""

#: Which task options each task reads; setting any other option is an error.  Names, defaults and
#: allowed values are defined once, in ``rnnlab.tasks.options``; this is their view by task.
#: (The smallest seq_len of each task comes from ``rnnlab.tasks.min_seq_len``.)
TASK_OPTIONS: dict[str, tuple[str, ...]] = {t: tuple(o) for t, o in _TASK_DEFAULTS.items()}
#: Every task option (a ``TaskConfig`` field that may be null).
ALL_TASK_OPTIONS: tuple[str, ...] = tuple(OPTIONS)
#: Options added after run ids were first stored: left out of the dumped form (so of run ids and
#: fingerprints) while null, so configurations that do not set them keep their ids.
#: ``windows`` is the exception for temporal_order: its default data changed (floor windows), so
#: it is always dumped there and every temporal_order id differs from those of the ceil data.
LATER_TASK_OPTIONS: tuple[str, ...] = ("target", "tolerance", "scoring", "distractors", "windows",
                                       "jitter")


def _option_bounds(name: str) -> dict[str, Any]:
    """``Field`` bounds of an int or float task option, from ``rnnlab.tasks.OPTIONS``."""
    spec = OPTIONS[name]
    if spec.kind == "int":
        return {"ge": int(spec.minimum), "lt": INT_LIMIT}
    return {"gt" if spec.strict else "ge": spec.minimum}


_PLACEMENTS = Literal[OPTIONS["placement"].choices]
_TARGETS = Literal[OPTIONS["target"].choices]
_SCORINGS = Literal[OPTIONS["scoring"].choices]
_WINDOWS = Literal[OPTIONS["windows"].choices]


class _Strict(BaseModel):
    model_config = _STRICT


class ModelConfig(_Strict):
    """The recurrent network."""

    cell: Literal[CELLS] = "rnn"
    """Recurrent cell: a vanilla RNN, an LSTM or a GRU (PyTorch's GRUCell equations)."""
    activation: Literal[ACTIVATIONS] = "tanh"
    """Hidden nonlinearity phi of the vanilla RNN (the LSTM and GRU ignore it: their gates are
    fixed)."""
    hidden: int = Field(32, ge=1, lt=INT_LIMIT)
    """Number of hidden units."""
    init: Literal[INITS] = "orthogonal"
    """Recurrent weight initialisation."""
    weight_scale: Float = Field(1.0, ge=0)
    """Multiplier of the initial recurrent weights (the gain)."""
    bias: bool = True
    """Whether the cell has bias vectors."""
    forget_bias: Float = 1.0
    """Initial LSTM forget-gate bias (ignored by the vanilla RNN and the GRU)."""
    output: Literal[OUTPUTS] | None = None
    """Output head; null means the task's natural head."""
    dtype: Literal["float64", "float32"] = "float64"
    """Floating-point type of every array."""


class TaskConfig(_Strict):
    """The data: which task, how long, how many sequences per step."""

    name: Literal[TASKS] = "recall"
    """Task generator (see rnnlab.tasks)."""
    seq_len: int = Field(10, ge=1, lt=INT_LIMIT)
    """Sequence length (time steps)."""
    batch: int = Field(32, ge=1, lt=INT_LIMIT)
    """Training sequences per step."""
    eval_batch: int = Field(1000, ge=1, lt=INT_LIMIT)
    """Sequences in the fixed evaluation set."""
    symbols: int | None = Field(None, **_option_bounds("symbols"))
    """Alphabet size (recall, copy, random); null = the task default."""
    noise: Float | None = Field(None, **_option_bounds("noise"))
    """Input noise level (recall); null = the task default."""
    placement: _PLACEMENTS | None = None
    """Where the two marked numbers fall (adding): halves, anywhere, or pascanu (Pascanu et al.
    2013's windows, T >= 10); null = the task default (halves)."""
    target: _TARGETS | None = None
    """The adding target: sum (X1 + X2) or mean ((X1 + X2)/2, Pascanu et al. 2013); null = the
    task default (sum)."""
    tolerance: Float | None = Field(None, **_option_bounds("tolerance"))
    """|error| below which an adding output counts in ``accuracy`` (target units); null = the
    task default (0.04)."""
    input_size: int | None = Field(None, **_option_bounds("input_size"))
    """Input width (random); null = the task default."""
    copy_len: int | None = Field(None, **_option_bounds("copy_len"))
    """Length of the sequence to copy (copy); null = the task default."""
    scoring: _SCORINGS | None = None
    """How copy is scored: rnnlab (ce summed over steps, accuracy on the copied symbols) or
    arjovsky (ce averaged over all steps, accuracy over all steps); null = rnnlab."""
    distractors: int | None = Field(None, **_option_bounds("distractors"))
    """Number of distractor symbols (temporal_order); null = the task default (4)."""
    windows: _WINDOWS | None = None
    """Marker windows of temporal_order: floor (Pascanu et al. 2013) or ceil; null = floor."""
    jitter: Float | None = Field(None, **_option_bounds("jitter"))
    """Length jitter of adding's training batches: T + k steps, k uniform on
    0..floor(jitter T) - 1, shared by the runs at each step (Pascanu et al. 2013: 0.1); null =
    the task default (0)."""

    @model_serializer(mode="wrap")
    def _omit_later_options(self, handler):
        """Options in ``LATER_TASK_OPTIONS`` are left out of the dumped form while null (run ids
        of configurations that do not set them are what they were before they existed), except
        ``windows`` of temporal_order, always dumped (its default data changed)."""
        data = handler(self)
        for option in LATER_TASK_OPTIONS:
            if getattr(self, option) is None and not (
                    option == "windows" and self.name == "temporal_order"):
                data.pop(option, None)
        return data

    @model_validator(mode="after")
    def _fits_task(self) -> TaskConfig:
        used = TASK_OPTIONS[self.name]
        for option in ALL_TASK_OPTIONS:
            value = getattr(self, option)
            if value is not None and option not in used:
                users = [t for t, opts in TASK_OPTIONS.items() if option in opts]
                raise _task_mismatch(
                    option,
                    value,
                    f"null for task {self.name} (it uses {', '.join(used) or 'none'})",
                    self.name,
                    f"a task that uses {option}: {', '.join(users)}",
                )
        least = min_seq_len(self.name, {"placement": self.placement})
        if self.seq_len < least:
            users = [t for t, m in MIN_SEQ_LEN.items() if m <= self.seq_len]
            extra = " with placement pascanu" if least > MIN_SEQ_LEN[self.name] else ""
            raise _task_mismatch(
                "seq_len",
                self.seq_len,
                f"an integer >= {least} for task {self.name}{extra}",
                self.name,
                f"a task that accepts seq_len {self.seq_len}: {', '.join(users)}",
            )
        return self


_OPTION_FIELDS = set(TaskConfig.model_fields) - {"name", "seq_len", "batch", "eval_batch"}
if _OPTION_FIELDS != set(OPTIONS):   # the one definition is rnnlab.tasks.OPTIONS
    raise RuntimeError(f"TaskConfig's option fields {sorted(_OPTION_FIELDS)} differ from "
                       f"rnnlab.tasks.OPTIONS {sorted(OPTIONS)}")


def _task_mismatch(key: str, value: Any, allowed: str, name: str, name_allowed: str) -> Exception:
    """A task key that does not fit the task name.  ``key`` is blamed unless only ``name`` varies
    (see ``rnnlab.experiment.load``)."""
    ctx = {
        "key": key,
        "value": value,
        "allowed": allowed,
        "name": name,
        "name_allowed": name_allowed,
    }
    return PydanticCustomError("task_mismatch", "task.{key} does not fit task {name}", ctx)


class ClipConfig(_Strict):
    """Gradient clipping.  A null threshold means no clipping, whatever the mode."""

    mode: Literal[CLIP_MODES] = "norm"
    """none; norm (rescale the global gradient norm, Pascanu et al. 2013 Algorithm 1); value
    (clip each gradient entry into [-c, c]); step (rescale each sequence's back-propagated error
    dE/ds_t at every time step, inside BPTT)."""
    threshold: Float | None = Field(None, gt=0)
    """Clipping threshold; null = no clipping.  Stacked runs may mix null and numbers."""

    @property
    def threshold_or_inf(self) -> float:
        """The threshold as a number: ``inf`` when clipping is off (mode none or threshold null)."""
        if self.mode == "none" or self.threshold is None:
            return math.inf
        return self.threshold


class LyapunovConfig(_Strict):
    """Lyapunov exponents and the Jacobian-product spectrum of the trajectory, computed at the
    logged steps on the step's training batch (``rnnlab.engine.lyapunov``).  Off by default; it
    changes no training number."""

    enabled: bool = False
    """Compute and store them (results folder ``lyapunov/``)."""
    exponents: int | None = Field(None, ge=1, lt=INT_LIMIT)
    """Number m of exponents; null = min(hidden, 8); at most the state size (2 hidden for the
    lstm)."""
    window: int | None = Field(None, ge=1, lt=INT_LIMIT)
    """Steps k of the Jacobian product before the loss step; null = the whole sequence; capped at
    the sequence length."""


class TrainConfig(_Strict):
    """The optimiser and the training loop."""

    steps: int = Field(500, ge=0, lt=INT_LIMIT)
    """Number of parameter updates."""
    optimizer: Literal[OPTIMIZERS] = "adam"
    """Update rule."""
    lr: Float = Field(0.01, gt=0)
    """Learning rate."""
    momentum: Float = Field(0.9, ge=0, lt=1)
    """Momentum coefficient (momentum optimiser)."""
    nesterov: bool = False
    """Nesterov momentum (momentum optimiser)."""
    beta1: Float = Field(0.9, ge=0, lt=1)
    """Adam first-moment decay."""
    beta2: Float = Field(0.999, ge=0, lt=1)
    """Adam second-moment decay."""
    eps: Float = Field(1e-8, gt=0)
    """Denominator guard (adagrad, adam)."""
    clip: ClipConfig = Field(default_factory=ClipConfig)
    """Gradient clipping."""
    tbptt: int | None = Field(None, ge=1, lt=INT_LIMIT)
    """Truncated-BPTT window in steps; null = full BPTT."""
    loss_at: Literal[LOSS_AT] | None = None
    """Where the loss is taken: the last step or every step; null = the task default."""
    log_every: int = Field(10, ge=1, lt=INT_LIMIT)
    """Record metrics every this many steps."""
    lyapunov: LyapunovConfig = Field(default_factory=LyapunovConfig)
    """Lyapunov analysis at the logged steps (off by default)."""

    @model_serializer(mode="wrap")
    def _omit_default_analysis(self, handler):
        """The analysis is left out of the dumped form while it is at its defaults (off), so run
        ids and fingerprints of configurations without it are what they were before it existed;
        switched on, it is part of them (a folder resumed with it on recomputes its runs)."""
        data = handler(self)
        if self.lyapunov == LyapunovConfig():
            data.pop("lyapunov", None)
        return data


NAME_ALLOWED = "a name of letters, digits, '_', '.' and '-', not only dots"
SWEEP_ALLOWED = "a mapping of dotted keys to lists or range forms, and zip"
#: The keys a profile holds beside its dotted overrides.
PROFILE_KEYS = ("sweep", "claims")
PROFILE_ALLOWED = "a mapping of dotted overrides, sweep and claims"
PROFILES_ALLOWED = "a mapping of profile names to mappings of dotted overrides, sweep and claims"


class BaseConfig(_Strict):
    """An experiment without its sweep: the configuration every run starts from."""

    # at least one character that is not a dot: "." and ".." would make results/<name> the
    # results root itself or its parent
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]*[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$",
                      json_schema_extra={"allowed": NAME_ALLOWED})
    """Experiment name (required)."""
    description: str = ""
    """Free text; does not affect any number."""
    seed: int = Field(0, ge=0, lt=INT_LIMIT)
    """Seed of repeat 0; repeat r uses seed + r."""
    repeats: int = Field(1, ge=1, lt=INT_LIMIT)
    """Seeds per grid point."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


CLAIMS_ALLOWED = ("a list of claims, each a mapping with keys says, expect, where, holds, step, "
                  "table")


class Claim(_Strict):
    """A finding stated as data: a predicate over the rows of the summary table.

    ``expect`` is evaluated on every row selected by ``where`` (all rows when empty); ``holds``
    says whether it must be true on all of them, on at least one, or on none. Expressions use
    the summary's column names (dotted keys, or their last part where unambiguous), numbers,
    strings, comparisons, ``and``/``or``/``not``, + - * /, and abs, min, max, log10
    (see rnnlab.experiment.claims). A claim that selects no row does not hold."""

    says: str = Field(min_length=1)
    """The finding in words, as the README states it."""
    expect: str = Field(min_length=1)
    """Predicate on one summary row, e.g. ``solved_lo >= 0.7``."""
    where: str = ""
    """Which rows the claim is about, e.g. ``seq_len <= 8``; empty: every row."""
    holds: Literal["all", "any", "none"] = "all"
    """On how many of the selected rows ``expect`` must be true."""
    step: int | None = Field(None, ge=0, lt=INT_LIMIT)
    """Training step of the gradient statistics (default: initialisation)."""
    table: Literal["summary", "budget", "limit"] = "summary"
    """The table the claim reads: the summary (default), or the limit map's tables
    (rnnlab.analysis.limits: ``budget``, solved within each training budget per grid point;
    ``limit``, the longest T solved with p >= 1/2 per setting and budget)."""

    @model_validator(mode="after")
    def _step_only_on_the_summary(self) -> Claim:
        if self.step is not None and self.table != "summary":
            raise PydanticCustomError(
                "claim_step", "step: the {table} table has no training step; allowed: step "
                "only with table: summary", {"table": self.table})
        return self


class ExperimentFile(BaseConfig):
    """The whole experiment file: the base plus the sweep and the profiles."""

    sweep: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"allowed": SWEEP_ALLOWED}
    )
    """Dotted key -> values (a list or a range form), plus ``zip`` for axes that vary together."""
    profiles: dict[str, dict[str, Any]] = Field(
        default_factory=dict, json_schema_extra={"allowed": PROFILES_ALLOWED}
    )
    """Profile name -> dotted overrides of the base, plus an optional ``sweep`` and ``claims``
    (which replace the file's claims)."""
    claims: list[Claim] = Field(
        default_factory=list, json_schema_extra={"allowed": CLAIMS_ALLOWED}
    )
    """The experiment's findings as checkable predicates (``rnnlab check``)."""


class RunConfig(_Strict):
    """Everything one training run needs: the model, the task, the training and the seed."""

    model: ModelConfig
    task: TaskConfig
    train: TrainConfig
    seed: int = Field(ge=0, lt=INT_LIMIT)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON-able data (floats already normalised)."""
        return self.model_dump(mode="json")

    def shape_key(self) -> tuple:
        """What must be equal for runs to be stacked on the engine's run axis.

        Included: everything that changes array shapes, the data stream's structure or a code
        path -- the cell, activation, hidden size, bias, output head, dtype; the task name, every
        task option, seq_len, batch and eval_batch; the optimiser, Nesterov switch, loss_at,
        tbptt, clip mode, steps, log_every and the Lyapunov settings.  Left out, because they are
        per-run numbers the engine holds as arrays of length runs: the seed, init scheme (used
        once, at initialisation), weight_scale, forget_bias, lr, momentum, beta1, beta2, eps and
        the clip threshold (null stacks with numbers: use :attr:`ClipConfig.threshold_or_inf`).
        """
        m, t, tr = self.model, self.task, self.train
        return (
            ("model", m.cell, m.activation, m.hidden, m.bias, m.output, m.dtype),
            ("task", t.name, t.seq_len, t.batch, t.eval_batch)
            + tuple(getattr(t, o) for o in ALL_TASK_OPTIONS),
            (
                "train",
                tr.optimizer,
                tr.nesterov,
                tr.loss_at,
                tr.tbptt,
                tr.clip.mode,
                tr.steps,
                tr.log_every,
                tuple(tr.lyapunov.model_dump().values()),
            ),
        )


# --------------------------------------------------------------------------- field table


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the type without Annotated/Optional, whether null is allowed)."""
    nullable = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(annotation))
        annotation = args[0]
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation, nullable


def _bounds(field: FieldInfo) -> str:
    words = []
    for meta in field.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                value = getattr(meta, attr)
                words.append(f"{sym} {'2**63' if value == INT_LIMIT else value}")
    return " and ".join(words)


def describe_field(field: FieldInfo) -> str:
    """What a field accepts, for error messages: "an integer >= 1", "one of rnn, lstm, gru"."""
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "allowed" in extra:
        return str(extra["allowed"])
    kind, nullable = _unwrap(field.annotation)
    if typing.get_origin(kind) is Literal:
        text = "one of " + ", ".join(str(v) for v in typing.get_args(kind))
        return text + ", null" if nullable else text
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        text = "a mapping with keys " + ", ".join(kind.model_fields)
    elif kind is bool:
        text = "true or false"
    elif kind is int or kind is float:
        text = "an integer" if kind is int else "a number"
        bounds = _bounds(field)
        text = f"{text} {bounds}" if bounds else text
    elif kind is str:
        text = "a string"
    else:
        text = "a mapping" if typing.get_origin(kind) is dict else str(kind)
    return text + ", or null" if nullable else text


def is_int_field(field: FieldInfo) -> bool:
    """Whether the field holds integers (so integral range-form values may become ints)."""
    return _unwrap(field.annotation)[0] is int


@cache
def leaf_fields() -> dict[str, FieldInfo]:
    """Dotted key -> field for every scalar key of the base (``model.hidden``, ``seed``...)."""
    table: dict[str, FieldInfo] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            kind, _ = _unwrap(field.annotation)
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                walk(kind, f"{prefix}{name}.")
            else:
                table[prefix + name] = field

    walk(BaseConfig, "")
    return table


SECTIONS = ("model", "task", "train", "train.clip", "train.lyapunov")
"""Dotted keys that name a group of keys rather than one value."""


def sweepable_keys() -> list[str]:
    """Dotted keys a sweep may vary: every key of model, task and train."""
    return [k for k in leaf_fields() if k.split(".")[0] in ("model", "task", "train")]


@cache
def field_adapter(key: str) -> TypeAdapter:
    """A validator for one dotted key's value on its own (no cross-field checks)."""
    field = leaf_fields()[key]
    kind = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
    return TypeAdapter(kind, config=ConfigDict(strict=True, allow_inf_nan=False))


# --------------------------------------------------------------------------- error messages


class Shown:
    """A value as an error message shows it (``repr`` gives ``text``)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


MISSING = Shown("nothing")


def shown(value: Any, width: int = 60) -> Any:
    """The value itself, or a stand-in whose repr is cut to ``width`` characters."""
    text = repr(value)
    return value if len(text) <= width else Shown(text[: width - 3] + "...")


def _walk(root: type[BaseModel], loc: tuple) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """(the model holding the last element of loc, the field it names), None where unknown."""
    model: type[BaseModel] | None = root
    field = None
    for i, part in enumerate(loc):
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return (model if i == len(loc) - 1 else None), None
        if i < len(loc) - 1:
            kind, _ = _unwrap(field.annotation)
            if not (isinstance(kind, type) and issubclass(kind, BaseModel)):
                return None, None
            model = kind
    return model, field


Locate = typing.Callable[[str], tuple[str, str]]
"""Maps a dotted key to the (file, key) an error message should name."""


def convert_validation_error(exc: Any, root: type[BaseModel], locate: Locate) -> ConfigError:
    """Turn a pydantic ``ValidationError`` into one ``ConfigError`` about its first error.

    Unknown keys are reported first (a typo usually also causes a "missing" error), with a
    "did you mean" suggestion drawn from the keys allowed at that level.
    """
    errors = sorted(exc.errors(), key=lambda e: e["type"] not in ("extra_forbidden", "invalid_key"))
    err = errors[0]
    loc, kind, ctx = tuple(err["loc"]), err["type"], err.get("ctx") or {}
    if kind == "task_mismatch":
        key = ".".join(str(p) for p in (*loc, ctx["key"]))
        return ConfigError(*locate(key), shown(ctx["value"]), ctx["allowed"])
    if "[key]" in loc:
        key = ".".join(str(p) for p in loc[: loc.index("[key]")])
        return ConfigError(*locate(key), shown(err["input"]), "a mapping with string keys")
    dotted = ".".join(str(p) for p in loc)
    if kind in ("extra_forbidden", "invalid_key"):
        model, _ = _walk(root, loc)
        names = list(model.model_fields) if model else []
        parent = ".".join(str(p) for p in loc[:-1])
        match = difflib.get_close_matches(str(loc[-1]), names, n=1)
        hint = f"did you mean {parent + '.' if parent else ''}{match[0]}?" if match else ""
        allowed = f"a key of {parent or 'the top level'}: {', '.join(names)}"
        return ConfigError(*locate(dotted), shown(err["input"]), allowed, hint)
    _, field = _walk(root, loc)
    if field is not None:
        allowed = describe_field(field)
    elif len(loc) == 2 and loc[0] == "profiles":
        allowed = PROFILE_ALLOWED
    else:
        allowed = str(err["msg"])
    if kind == "missing":
        return ConfigError(*locate(dotted), MISSING, allowed, "required")
    return ConfigError(*locate(dotted), shown(err["input"]), allowed)
