"""The package's shape stays what docs/ARCHITECTURE.md says: layers import downward only, and
modules use each other's public names (no ``from other import _private``, no ``other._private``).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rnnlab"

#: The layers, top to bottom; a module may import its own layer or any layer below it.
LAYERS = ["cli", "report", "notebook", "plot", "run", "experiment", "analysis", "results",
          "engine", "tasks", "compiling", "timing", "errors"]
#: Layers on the same level that must not import each other.
SIBLINGS = {("engine", "tasks"), ("tasks", "engine"), ("timing", "errors"), ("errors", "timing")}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "rnnlab" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path, ast.parse(path.read_text(), filename=str(path))


def _imports(name: str, path: Path, tree: ast.AST):
    """(imported module, imported names, node) for every import of an rnnlab module."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("rnnlab"):
                yield target, [a.name for a in node.names], node
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("rnnlab"):
                    yield a.name, [], node


def test_layers_import_downward_only():
    bad = []
    for name, path, tree in _modules():
        mine = _layer(name)
        if mine is None:
            continue
        for target, _, node in _imports(name, path, tree):
            theirs = _layer(target)
            if theirs is None or theirs == mine:
                continue
            if LAYERS.index(theirs) < LAYERS.index(mine) or (mine, theirs) in SIBLINGS:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {mine} imports "
                           f"{target} ({theirs})")
    assert not bad, "\n".join(bad)


def test_modules_use_each_others_public_names():
    bad = []
    for name, path, tree in _modules():
        aliases = {}
        for target, names, node in _imports(name, path, tree):
            if target == name:
                continue
            for imported in names:
                if imported.startswith("_") and not imported.startswith("__"):
                    bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: "
                               f"from {target} import {imported}")
            if isinstance(node, ast.Import):
                for a in node.names:
                    aliases[a.asname or a.name.split(".")[0]] = a.name
            else:
                for a in node.names:
                    aliases[a.asname or a.name] = f"{target}.{a.name}"
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: "
                           f"{aliases[node.value.id]}.{node.attr}")
    assert not bad, "\n".join(bad)
