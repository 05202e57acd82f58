"""Floating-point stacks to emulate other machines on this one (docs/reproducibility.md).

    python scripts/fpstacks.py              # the names: default sandybridge prescott avx2
    python scripts/fpstacks.py sandybridge  # its environment, as NAME=VALUE lines
    env $(python scripts/fpstacks.py sandybridge) python -m pytest -m rounding

NumPy picks SIMD loops (AVX2, AVX-512) by CPU at run time and OpenBLAS picks a kernel by CPU;
both choose summation orders, so both change the last bits of a result. Each stack switches them
with ``NPY_DISABLE_CPU_FEATURES`` (only features this NumPy dispatches and this CPU has: NumPy
refuses to disable its baseline) and ``OPENBLAS_CORETYPE``:

- ``default``: what this machine does on its own;
- ``sandybridge``: no NumPy SIMD dispatch beyond the baseline, OpenBLAS's Sandybridge (AVX) kernel;
- ``prescott``: NumPy's own choice, OpenBLAS's oldest SSE kernel;
- ``avx2``: NumPy limited to AVX2 (X86_V3) and OpenBLAS's Haswell kernel: an AVX2 machine, as
  seen from an AVX-512 one (on an AVX2 machine this is the default).
"""

from __future__ import annotations

import sys


def _dispatched() -> list[str]:
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]


def stack_env(name: str) -> dict[str, str]:
    """The environment variables of the stack ``name``."""
    found = _dispatched()
    if name == "default":
        return {}
    if name == "sandybridge":
        env = {"OPENBLAS_CORETYPE": "Sandybridge"}
        if found:
            env["NPY_DISABLE_CPU_FEATURES"] = " ".join(found)
        return env
    if name == "prescott":
        return {"OPENBLAS_CORETYPE": "Prescott"}
    if name == "avx2":
        above = [f for f in found if f != "X86_V3" and not f.startswith(("SSE", "AVX2", "FMA"))]
        env = {"OPENBLAS_CORETYPE": "Haswell"}
        if above:
            env["NPY_DISABLE_CPU_FEATURES"] = " ".join(above)
        return env
    raise SystemExit(f"fpstacks: unknown stack {name!r}; allowed: {', '.join(STACKS)}")


STACKS = ("default", "sandybridge", "prescott", "avx2")

if __name__ == "__main__":
    if len(sys.argv) == 1:
        print(" ".join(STACKS))
    else:
        for key, value in stack_env(sys.argv[1]).items():
            print(f"{key}={value}")
