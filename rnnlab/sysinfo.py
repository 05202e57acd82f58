"""Versions and machine facts recorded in a results folder's manifest."""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import platform

import numpy as np
import pandas as pd
import pyarrow as pa


def _blas_info() -> dict:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            config = np.show_config(mode="dicts")
    except (TypeError, ValueError, AttributeError):
        return {}
    deps = (config or {}).get("Build Dependencies", {})
    out = {}
    for lib in ("blas", "lapack"):
        info = deps.get(lib) or {}
        if info.get("name"):
            out[lib] = f"{info['name']} {info.get('version', '')}".strip()
    return out


def system_info() -> dict:
    """Versions and machine facts for the manifest; the caller adds experiment and command line."""
    import rnnlab

    return {
        "rnnlab": rnnlab.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "pyarrow": pa.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "blas": _blas_info(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
