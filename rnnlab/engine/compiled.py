"""The compiled engine's glue: the kernel's cache folder, its first-compile announcement, the
call from ``bptt`` (``run``), ``warmup`` and ``kernel_info`` for the manifest.

Numba is imported only when the compiled engine runs (``kernel.py``). Compiled code is cached on
disk once per cell and dtype (shapes are run-time values) in the per-user folder of
:func:`rnnlab.compiling.cache_dir`, so a read-only install and Dask workers work too. A compile
(not a load from the cache) is announced in one line on stderr with its duration.

The large result arrays (states, cells, outputs) come from ``result_array``: memory that an
earlier call returned and that nothing references any more, else new memory. New memory of that
size comes from the system as zeroed pages, and faulting them in costs about as much as a tenth
of the sweep call; recycled memory is already mapped. A caller never sees its array change:
memory is reused only once no object (array, view, memoryview) refers to it.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np

from ..compiling import announce_once, cache_dir
from .cells import GATES

#: Cells the kernel covers (others run on the NumPy engine, said once).
KERNEL_CELLS = ("rnn", "lstm", "gru")
DTYPES = (np.dtype(np.float64), np.dtype(np.float32))

_ready: set = set()

#: ``result_array`` recycles arrays of at least this many bytes (smaller ones come from malloc's
#: heap, whose pages stay mapped) and keeps at most ``_POOL_ARRAYS`` of the last it handed out,
#: so at most that many unreferenced arrays stay allocated between calls (``release_arrays``).
_POOL_MIN_BYTES = 4 << 20
_POOL_ARRAYS = 6
_pool: list = []
_pool_lock = threading.Lock()


def _only_pool_refers(a_list: list, i: int) -> bool:
    """Whether the list is the one holder of its item i (CPython reference count: the list's
    reference and getrefcount's argument)."""
    return sys.getrefcount(a_list[i]) <= 2


def result_array(shape, dtype) -> np.ndarray:
    """An uninitialised C-order array for a result: one this function handed out before if
    nothing else refers to it any more (module docstring), else ``np.empty``."""
    dtype = np.dtype(dtype)
    if int(np.prod(shape)) * dtype.itemsize < _POOL_MIN_BYTES:
        return np.empty(shape, dtype)
    shape = tuple(int(n) for n in shape)
    with _pool_lock:
        for i in range(len(_pool)):
            cand = _pool[i]
            if cand.shape == shape and cand.dtype == dtype:
                del cand
                if _only_pool_refers(_pool, i):
                    a = _pool.pop(i)
                    _pool.append(a)
                    return a
        a = np.empty(shape, dtype)
        _pool.append(a)
        del _pool[:-_POOL_ARRAYS]
        return a


def release_arrays() -> None:
    """Forget the arrays kept for reuse (``result_array``); the unreferenced ones are freed."""
    with _pool_lock:
        _pool.clear()


def kernel_info() -> dict:
    """Name, version and compile flags of the compiled engine, for the manifest (it is part of
    the floating-point stack). Without numba: ``{"name": "numba", "available": False}``."""
    from .select import active_engine, get_engine, numba_available
    info = {"name": "numba", "available": numba_available(), "engine": get_engine()}
    if not info["available"]:
        return info
    import numba
    import numba.core.config as cfg

    from .kernel import CONTRACTED, FLAGS, SLP
    info.update({"version": numba.__version__, "flags": {k: v for k, v in FLAGS.items()},
                 "slp_vectorize": SLP, "contract": list(CONTRACTED),
                 "active": active_engine(), "cpu_name": cfg.CPU_NAME or _host_cpu(),
                 "cpu_features": cfg.CPU_FEATURES or "host", "opt": int(cfg.OPT),
                 "threads": 1, "exp": "rnnlab.engine.kernel._exp (within 1 ulp)",
                 "cells": list(KERNEL_CELLS),
                 "cache_dir": os.environ.get("NUMBA_CACHE_DIR")})
    return info


def _host_cpu() -> str:
    try:
        import llvmlite.binding as llvm
        return llvm.get_host_cpu_name()
    except Exception:               # noqa: BLE001 - informational only
        return "unknown"


def supports(cell: str) -> bool:
    """Whether the kernel covers this configuration; if not, say so once."""
    if cell in KERNEL_CELLS:
        return True
    announce_once(("cell", cell), f"the compiled engine does not cover cell {cell!r}; the NumPy "
                  "engine runs it")
    return False


def _tiny_call(cell: str, dtype) -> None:
    """Run the kernel once on tiny arrays of ``dtype``: compiles or loads it (same array types as
    every real call: C-contiguous, same ranks)."""
    rng = np.random.default_rng(0)
    R, T, B, I, H, O = 1, 3, 2, 2, 3, 2
    G = GATES[cell] * H
    p = {"Wx": rng.standard_normal((R, I, G)), "Ws": rng.standard_normal((R, H, G)),
         "b": np.zeros((R, G)), "Wy": rng.standard_normal((R, H, O)), "by": np.zeros((R, O))}
    p = {k: v.astype(dtype) for k, v in p.items()}
    x = rng.standard_normal((R, T, B, I)).astype(dtype)
    d = np.zeros((R, T, B, O), dtype=dtype)
    _call(p, x, d, None, None, None, cell=cell, activation="tanh", output="softmax", loss="mse",
          loss_at="last", norms=True, outputs=True, backward=True, R=R, dtype=np.dtype(dtype))


def ensure_compiled(cell: str, dtype) -> float | None:
    """Compile (or load from the cache) the kernel for ``cell`` and ``dtype`` once per process;
    announce a real compile with its duration. Returns the seconds a compile took, else None."""
    key = (cell, np.dtype(dtype).name)
    if key in _ready:
        return None
    cache_dir()
    from . import kernel
    fn = kernel.KERNELS[cell]
    misses = sum(fn.stats.cache_misses.values())
    t0 = time.perf_counter()
    _ready.add(key)
    try:
        with kernel.slp_compiles():
            # Compiles happen here only: a signature compiled lazily by a later call would miss
            # the SLP setting and be cached without it, for every later process to load.
            fn.disable_compile(False)
            try:
                _tiny_call(cell, dtype)
            finally:
                fn.disable_compile(True)
    except BaseException:
        _ready.discard(key)
        raise
    took = time.perf_counter() - t0
    if sum(fn.stats.cache_misses.values()) > misses:
        announce_once(("compiled",) + key, f"compiled the engine kernel ({cell}, {key[1]}) in "
                      f"{took:.1f} s; cached in {os.environ.get('NUMBA_CACHE_DIR')}")
        return took
    return None


def warmup(cells=KERNEL_CELLS, dtypes=DTYPES) -> dict:
    """Compile ahead (for clusters: run once per machine or shared cache folder).
    Returns {(cell, dtype): seconds of compile, or None when loaded from the cache}."""
    return {(c, np.dtype(t).name): ensure_compiled(c, t) for c in cells for t in dtypes}


def _c(a, dtype):
    """C order, ``dtype`` and writeable: the one array type the kernel is compiled for (a
    read-only array, e.g. from ``np.broadcast_to``, is another Numba type and would need a
    compile of its own)."""
    a = np.ascontiguousarray(a, dtype=dtype)
    return a if a.flags.writeable else a.copy()


def _param_rows(p, key, Rp, n, dtype):
    """Bias ``key`` as (Rp, n) rows, one per parameter set (the kernel indexes every parameter by
    one run index); zeros when the params have none."""
    a = _c(p[key], dtype) if key in p else np.zeros((1, n), dtype)
    return a if a.shape[0] == Rp else _c(np.broadcast_to(a, (Rp, n)), dtype)


def _call(p, x, d, s0, c0, c, *, cell, activation, output, loss, loss_at, norms, outputs,
          backward, R, dtype, k=None):
    """Prepare the kernel's arguments (run-axis arrays, C order, one dtype), call it and return
    (loss, grads by name, states, outputs or None, step norms, clip factors or None)."""
    from . import kernel
    T, B, I = x.shape[1:]
    H, G = p["Ws"].shape[-2:]
    O = p["Wy"].shape[-1]
    Rp = p["Ws"].shape[0]
    Wx, Ws, Wy = _c(p["Wx"], dtype), _c(p["Ws"], dtype), _c(p["Wy"], dtype)
    b = _param_rows(p, "b", Rp, G, dtype)
    by = _param_rows(p, "by", Rp, O, dtype)
    s0 = np.zeros((1, B, H), dtype) if s0 is None else _c(s0, dtype)
    clip = np.full(R, np.inf, dtype) if c is None else _c(np.reshape(c, R), dtype)
    zeros = np.zeros
    lossv = np.empty(R, dtype)
    g = {"Wx": zeros((R, I, G), dtype), "Ws": zeros((R, H, G), dtype), "b": zeros((R, G), dtype),
         "Wy": zeros((R, H, O), dtype), "by": zeros((R, O), dtype)}
    S = result_array((R, T, B, H), dtype)
    Y = result_array((R, T, B, O), dtype) if outputs else np.empty((1, 1, 1, O), dtype)
    keys = ("ds", "dWs", "dWx", "dc") if cell == "lstm" else ("ds", "dWs", "dWx")
    nrm = {key: zeros((R, T), dtype) for key in keys}
    alpha = np.ones((R, T, B) if c is not None else (R, T, 0), dtype)    # (R, T, 0): not touched
    flags = (output == "softmax", loss == "ce", loss_at == "all", int(k or 0), bool(backward),
             bool(norms), bool(outputs), c is not None)
    head = (Wx, Ws, b, Wy, by, _c(x, dtype), _c(d, dtype), s0)
    grads = (lossv, g["Wx"], g["Ws"], g["b"], g["Wy"], g["by"])
    C = None
    if cell == "gru":
        g["bn"] = zeros((R, H), dtype)
        kernel.gru_kernel(*head, _param_rows(p, "bn", Rp, H, dtype), clip, *flags, *grads,
                          g["bn"], S, Y, nrm["ds"], nrm["dWs"], nrm["dWx"], alpha)
    elif cell == "lstm":
        c0 = np.zeros((1, B, H), dtype) if c0 is None else _c(c0 if c0.ndim == 3 else c0[None],
                                                              dtype)
        C = result_array((R, T, B, H), dtype)
        kernel.lstm_kernel(*head, c0, clip, *flags, *grads, S, C, Y, nrm["ds"], nrm["dWs"],
                           nrm["dWx"], nrm["dc"], alpha)
    else:
        kernel.rnn_kernel(*head, clip, int(kernel.ACT_CODES[activation]), *flags, *grads, S, Y,
                          nrm["ds"], nrm["dWs"], nrm["dWx"], alpha)
    return (lossv, g, S, C, Y if outputs else None, nrm if (norms and backward) else {},
            alpha if c is not None and backward else None)


def run(p, x, d, s0, c0, c, k, *, R, batched, dtype, cell, activation, output, loss, loss_at,
        norms, outputs, backward, keys):
    """``bptt`` on the compiled kernel, on ``bptt``'s validated run-axis arrays; None when the
    kernel does not cover the configuration (the caller then runs the NumPy engine)."""
    if not supports(cell):
        return None
    ensure_compiled(cell, dtype)
    from .bptt import package_result
    E, g, S, C, Y, nrm, alpha = _call(p, x, d, s0, c0, c, cell=cell, activation=activation,
                                   output=output, loss=loss, loss_at=loss_at, norms=norms,
                                   outputs=outputs, backward=backward, R=R, dtype=dtype, k=k)
    grads = {key: g[key] for key in keys} if backward else {}
    extra = {} if alpha is None else {"clip_factors": alpha}
    return package_result(batched, E, grads, S, Y, nrm, C, extra)
