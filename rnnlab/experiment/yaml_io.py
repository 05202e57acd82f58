"""YAML text of experiment files and of ``--set``/``--sweep`` values: a safe loader that reads
``1e-3`` as a float and refuses duplicate keys, and parse errors turned into one-line
:class:`rnnlab.errors.ConfigError` messages that name the file (or flag) and the line (or key).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from rnnlab.errors import ConfigError
from rnnlab.experiment.schema import shown

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


def parse_yaml(text: str, file: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, file) from None


def parse_yaml_value(text: str, file: str, key: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(file, key, text, "a YAML value", problem) from None
