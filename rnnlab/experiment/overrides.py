"""Overrides of an experiment's base configuration, from a profile or the command line: ``--set``
and ``--sweep`` ``KEY=VALUE`` items (``--sweep`` values comma-separated or one YAML value), a
mapping given to a section spread out into dotted leaf keys, and the error for an unknown or
unusable key, with "did you mean" (shared with the sweep axes). The order in which the layers
apply is in the docstring of :mod:`rnnlab.experiment.load`.
"""

from __future__ import annotations

import difflib
from typing import Any

from rnnlab.errors import ConfigError
from rnnlab.experiment.schema import SECTIONS, BaseConfig, leaf_fields, shown, sweepable_keys
from rnnlab.experiment.yaml_io import parse_yaml_value


def key_error(key: Any, value: Any, file: str, where: str, candidates: list[str],
              also: tuple[str, ...] = ()) -> ConfigError:
    """An unknown or unusable dotted key, with "did you mean" among ``candidates`` and ``also``
    (keys of the place beside the overrides, such as a profile's ``sweep`` and ``claims``)."""
    text = str(key)
    parent = text.rpartition(".")[0]
    children = [c.rpartition(".")[2] for c in candidates if c.rpartition(".")[0] == parent]
    if parent in SECTIONS and children:
        allowed = f"a key of {parent}: {', '.join(children)}"
    elif candidates == sweepable_keys():
        allowed = "a dotted key of model, task or train, such as task.seq_len"
    else:
        kinds = [f"a key of the top level ({', '.join(BaseConfig.model_fields)})",
                 "a dotted key of model, task or train such as task.seq_len", *also]
        allowed = ", ".join(kinds[:-1]) + " or " + kinds[-1]
    if text == "seed":
        hint = "seed is not sweepable; use repeats"
    elif text in leaf_fields():
        hint = f"{text} cannot be swept"
    else:
        match = difflib.get_close_matches(text, [*candidates, *also], n=1)
        hint = f"did you mean {match[0]}?" if match else ""
    return ConfigError(file, where, shown(value), allowed, hint)


def flatten_override(key: Any, value: Any, file: str, where: str,
                     also: tuple[str, ...] = ()) -> list[tuple[str, Any, str]]:
    """(leaf key, value, where) for an override; a mapping given to a section is spread out.
    ``also``: other keys allowed where the override is written (named by an unknown key's
    error), such as a profile's ``sweep`` and ``claims``."""
    if key in SECTIONS:
        if not isinstance(value, dict):
            raise ConfigError(file, where, shown(value), f"a mapping of keys of {key}")
        out = []
        for sub, sub_value in value.items():
            out += flatten_override(f"{key}.{sub}", sub_value, file, f"{where}.{sub}")
        return out
    if key not in leaf_fields():
        raise key_error(key, value, file, where, [*leaf_fields(), *SECTIONS], also)
    return [(key, value, where)]


def split_cli(item: Any, flag: str) -> tuple[str, str]:
    key, eq, text = str(item).partition("=")
    if not eq or not key.strip():
        raise ConfigError(flag, str(item), shown(item), "KEY=VALUE, such as model.hidden=128")
    return key.strip(), text


def cli_values(key: str, text: str) -> Any:
    """``10,20,40`` -> [10, 20, 40]; a text starting with ``[`` or ``{`` (or for ``zip``) is
    read as one YAML value, such as ``{logspace: [-4, -1, 4]}``."""
    if key == "zip" or text.lstrip().startswith(("[", "{")):
        return parse_yaml_value(text, "--sweep", key)
    if not text.strip():
        return []
    parts = text.split(",")
    if any(not p.strip() for p in parts):
        raise ConfigError("--sweep", key, text, "comma-separated values (write null for null)")
    return [parse_yaml_value(p, "--sweep", key) for p in parts]
