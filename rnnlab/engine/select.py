"""Which engine ``bptt`` runs: the NumPy engine or the compiled kernel (``kernel.py``).

    numpy     the NumPy engine (``bptt.py``), the specification
    compiled  the Numba kernel; when numba is not installed, the NumPy engine, announced once
    auto      the kernel when numba is installed, else the NumPy engine (silently)

The choice is process-wide: ``set_engine(name)``, else the environment variable RNNLAB_ENGINE,
else ``DEFAULT_ENGINE``. ``set_engine`` also exports RNNLAB_ENGINE so worker processes started
afterwards (``--workers``, a local Dask cluster) make the same choice.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os

ENGINES = ("numpy", "compiled", "auto")
#: The engine when nothing is chosen.
DEFAULT_ENGINE = "numpy"
ENV_VAR = "RNNLAB_ENGINE"

_chosen: str | None = None
_UNSET = object()
_env_before = _UNSET            # RNNLAB_ENGINE as it was before the first set_engine


def _check(name, source: str) -> str:
    if name not in ENGINES:
        raise ValueError(f"{source}: got {name!r}; allowed: one of {', '.join(ENGINES)}")
    return name


def set_engine(name: str | None) -> None:
    """Choose the engine for this process (and its future workers); None: back to the default
    (RNNLAB_ENGINE as it was before any choice, else ``DEFAULT_ENGINE``)."""
    global _chosen, _env_before
    if name is None:
        _chosen = None
        if _env_before is not _UNSET:
            if _env_before is None:
                os.environ.pop(ENV_VAR, None)
            else:
                os.environ[ENV_VAR] = _env_before
            _env_before = _UNSET
        return
    name = _check(name, "engine")
    if _env_before is _UNSET:
        _env_before = os.environ.get(ENV_VAR)
    _chosen = name
    os.environ[ENV_VAR] = name


@contextlib.contextmanager
def using_engine(name: str):
    """``with using_engine("compiled"): ...``: the engine inside the block, the earlier choice
    after it."""
    global _chosen
    before_chosen, before_env = _chosen, os.environ.get(ENV_VAR)
    _chosen = _check(name, "engine")
    os.environ[ENV_VAR] = name
    try:
        yield
    finally:
        _chosen = before_chosen
        if before_env is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = before_env


def get_engine() -> str:
    """The engine asked for: ``numpy``, ``compiled`` or ``auto``."""
    if _chosen is not None:
        return _chosen
    env = os.environ.get(ENV_VAR, "").strip()
    return _check(env, ENV_VAR) if env else DEFAULT_ENGINE


def numba_available() -> bool:
    """Whether numba can be imported (without importing it)."""
    return importlib.util.find_spec("numba") is not None


def active_engine() -> str:
    """The engine that runs: ``numpy`` or ``compiled``."""
    name = get_engine()
    if name == "numpy":
        return "numpy"
    if numba_available():
        return "compiled"
    if name == "compiled":
        from ..compiling import announce_once
        announce_once("unavailable", "engine 'compiled' asked for but numba is not installed "
                      "(pip install 'rnnlab[fast]'); the NumPy engine runs")
    return "numpy"
