"""Versions and machine facts recorded in a results folder's manifest, and its floating-point stack.

The *floating-point stack* is everything that decides the last bits of rnnlab's numbers on a
given input: the CPU's instruction set as NumPy uses it (its SIMD dispatch: AVX2, AVX-512 loops
sum in other orders), the BLAS library and the kernel it picked for this CPU (OpenBLAS's
``SkylakeX`` and ``Haswell`` kernels block matrix products differently), their versions, and the
environment variables that override either choice. Two folders made on the same stack hold the
same numbers bit for bit; across stacks, quantities before training agree to about 1e-9 and the
outcomes of training are statistics over seeds (docs/reproducibility.md).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

#: Environment variables that change which floating-point code runs. RNNLAB_ENGINE is not one:
#: it is a request (``compiled`` runs the NumPy engine without numba), and the engine that runs
#: is recorded as ``engine``.
ROUNDING_ENV = (
    "NPY_DISABLE_CPU_FEATURES",
    "NPY_ENABLE_CPU_FEATURES",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
)
#: Variables that older manifests recorded in ``fp_stack.env`` but that change no number by
#: themselves (the engine request; ``engine`` says which engine ran): never a difference.
IGNORED_ENV = ("RNNLAB_ENGINE",)
#: CPU flags that decide which SIMD code NumPy and the BLAS may run.
_CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl",
              "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile")


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


def cpu_info() -> dict:
    """The CPU model and the SIMD flags that matter for rounding (Linux: /proc/cpuinfo)."""
    model, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not flags:
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    return {"model": model, "flags": [f for f in _CPU_FLAGS if f in flags]}


def numpy_simd() -> list[str]:
    """NumPy's SIMD extensions in use: its baseline plus the dispatched ones this CPU has and
    the environment did not disable (what ``numpy.show_runtime()`` lists as found)."""
    try:
        from numpy._core._multiarray_umath import (
            __cpu_baseline__,
            __cpu_dispatch__,
            __cpu_features__,
        )
    except ImportError:             # NumPy 1.x keeps them in numpy.core
        try:
            from numpy.core._multiarray_umath import (
                __cpu_baseline__,
                __cpu_dispatch__,
                __cpu_features__,
            )
        except ImportError:
            return []
    return list(__cpu_baseline__) + [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]


def blas_runtime() -> list[dict]:
    """The BLAS libraries loaded in this process (threadpoolctl): library, version, kernel."""
    try:
        import threadpoolctl
    except ImportError:
        return []
    out = []
    for lib in threadpoolctl.threadpool_info():
        if lib.get("user_api") == "blas":
            out.append({"library": lib.get("internal_api"), "version": lib.get("version"),
                        "kernel": lib.get("architecture"),
                        "file": os.path.basename(lib.get("filepath") or "")})
    return out


def engine_info() -> dict:
    """The compiled kernel when it is the engine in use (numba version, compile flags, the
    functions whose multiply-adds are fused (``contract``: their last bits depend on the CPU
    having FMA), target CPU): part of the floating-point stack. Empty for the NumPy engine,
    whose stack is NumPy's and the BLAS's."""
    try:
        from rnnlab.engine.select import active_engine
    except ImportError:
        return {}
    if active_engine() != "compiled":
        return {}
    from rnnlab.engine.compiled import kernel_info

    info = kernel_info()
    return {"name": "numba " + str(info.get("version")), "flags": info.get("flags"),
            "contract": info.get("contract"), "cpu": info.get("cpu_name"),
            "cpu_features": info.get("cpu_features"), "opt": info.get("opt")}


def fp_stack() -> dict:
    """The floating-point stack of this process (see the module docstring)."""
    return {
        "machine": platform.machine(),
        "numpy": np.__version__,
        "numpy_simd": numpy_simd(),
        "blas": [f"{b['library']} {b['version']} {b['kernel']}" for b in blas_runtime()],
        "engine": engine_info(),
        "env": {k: os.environ[k] for k in ROUNDING_ENV if k in os.environ},
    }


def stack_differences(recorded: dict | None, current: dict | None = None) -> list[str]:
    """What differs between a folder's recorded stack and ``current`` (default: this process),
    as short ``key: old -> new`` texts; ``["not recorded"]`` for a folder without one."""
    if not isinstance(recorded, dict):
        return ["not recorded"]
    current = fp_stack() if current is None else current
    out = []
    for key in ("machine", "numpy", "numpy_simd", "blas", "engine", "env"):
        old, new = recorded.get(key), current.get(key)
        if key == "env":
            old, new = _rounding_env(old), _rounding_env(new)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict) and old and new:
            # two of a kind (two compiled kernels, two BLAS builds): only what differs
            keys = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
            old, new = ({k: d.get(k) for k in keys} for d in (old, new))
        elif key == "engine":                       # one NumPy engine, one compiled kernel
            old, new = (f"{d['name']} kernel" if d else "the NumPy engine" for d in (old, new))
        out.append(f"{key}: {_short(old)} -> {_short(new)}")
    return out


def _rounding_env(env):
    """``env`` without the variables of ``IGNORED_ENV``."""
    if not isinstance(env, dict):
        return env
    return {k: v for k, v in env.items() if k not in IGNORED_ENV}


def _short(value) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value) or "none"
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items()) or "none"
    return str(value)


#: Manifest key of the stacks other than ``fp_stack`` that trained runs of the folder (a sweep
#: resumed with ``--mixed-stacks``): a list of ``{"fp_stack", "runs", "created", "command"}``,
#: ``runs`` the ids of the runs that stack trained. The runs it does not name were trained on
#: ``fp_stack``.
OTHER_STACKS = "other_fp_stacks"


def other_stacks(manifest: dict) -> list[dict]:
    """The entries of ``OTHER_STACKS`` in ``manifest`` that name runs (well-formed ones only)."""
    entries = manifest.get(OTHER_STACKS) if isinstance(manifest, dict) else None
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("runs"), list)
            and e["runs"]]


def stack_note(manifest: dict) -> str | None:
    """One line for a folder made on another floating-point stack than this process's, or on
    several (``OTHER_STACKS``), or None.

    Its outcomes of training are then statistics to compare by claims, not digit by digit."""
    recorded = manifest.get("fp_stack") if isinstance(manifest, dict) else None
    diffs = stack_differences(recorded)
    mixed = other_stacks(manifest)
    if mixed:
        runs = sum(len(e["runs"]) for e in mixed)
        how = sorted({d for e in mixed for d in stack_differences(recorded, e.get("fp_stack"))})
        here = (f"; this process's stack differs from the first too ({'; '.join(diffs)})"
                if diffs else "")
        return (f"note: this folder mixes {len(mixed) + 1} floating-point stacks: {runs} run(s) "
                f"were trained on another than the first ({'; '.join(how)}; manifest.json "
                f"{OTHER_STACKS} names them){here}: training outcomes compare only as "
                "statistics (by claims, not digits)")
    if not diffs:
        return None
    if diffs == ["not recorded"]:
        return ("note: this folder does not record its floating-point stack; its training "
                "outcomes may differ in the last digits from a rerun here (compare by claims)")
    return ("note: this folder was made on another floating-point stack (" + "; ".join(diffs)
            + "): numbers before training agree to ~1e-9, training outcomes only as statistics "
            "(compare by claims, not digits)")


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
        "cpu": cpu_info(),
        "blas": _blas_info(),
        "blas_runtime": blas_runtime(),
        "fp_stack": fp_stack(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
