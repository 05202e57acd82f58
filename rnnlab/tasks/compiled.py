"""The compiled task draws' glue: which tasks they cover, the bit generators' handles, and the
check that they give NumPy's bits.

``Task.sample_runs(..., compiled=True)`` calls ``fill``: recall, adding and random are drawn by
``kernel.py`` (all runs in one call, the same numbers bit for bit as ``samplers.py``); other
tasks, or a process where the compiled draws are not available, use the NumPy samplers (nothing
changes but the speed, so that is silent). Numba is imported at the first ``fill``; before the
compiled draws are used, ``ready`` draws every covered task both ways from the same seeds and
compares the bits and the Generators' states afterwards; on a difference the NumPy samplers
run and one line says so. A compile (not a load from the cache) is announced in one line.
"""

from __future__ import annotations

import ctypes
import importlib.util
import time

import numpy as np

from rnnlab.compiling import announce_once, cache_dir

#: The tasks with compiled draws.
COVERED = ("recall", "adding", "random")

_ready: bool | None = None          # None: not tried yet in this process
_handles: dict = {}                  # ids of a list of Generators -> (the Generators, handles)
_HANDLES_KEPT = 8


def _address(fn) -> int:
    return ctypes.cast(fn, ctypes.c_void_p).value


def handles(rngs) -> np.ndarray:
    """(R, 4) uint64: for each Generator, the addresses of its bit generator's state and of its
    next_uint64, next_uint32 and next_double functions (valid while the Generator lives).
    Kept for the last few lists asked for, with the Generators themselves (so their ids stay
    theirs): a training loop asks for the same runs' Generators every step."""
    key = tuple(map(id, rngs))
    hit = _handles.get(key)
    if hit is not None:
        return hit[1]
    h = np.empty((len(rngs), 4), np.uint64)
    for r, rng in enumerate(rngs):
        c = rng.bit_generator.ctypes
        h[r] = (c.state_address, _address(c.next_uint64), _address(c.next_uint32),
                _address(c.next_double))
    _handles[key] = (tuple(rngs), h)
    while len(_handles) > _HANDLES_KEPT:
        del _handles[next(iter(_handles))]
    return h


def _call(task, h, x, d) -> None:
    from rnnlab.tasks import kernel
    o = task.options
    if task.name == "recall":
        kernel.recall(h, int(o["symbols"]), float(o["noise"]), x, d)
    elif task.name == "random":
        kernel.random(h, int(o["symbols"]), x, d)
    else:
        from rnnlab.tasks.samplers import adding_windows
        T = x.shape[1]
        anywhere = o["placement"] == "anywhere"
        if anywhere:
            (lo1, hi1), (lo2, hi2) = (0, T), (0, T - 1)
        else:
            (lo1, hi1), (lo2, hi2) = adding_windows(T, o["placement"])
        kernel.adding(h, lo1, hi1 - lo1, lo2, hi2 - lo2, anywhere, o["target"] == "mean", x, d)


def _agrees() -> bool:
    """Whether the compiled draws give the NumPy samplers' numbers and Generator states, on a
    sample of every covered task (~100,000 numbers: the ziggurat's rare branches included)."""
    from rnnlab.tasks import make_task
    from rnnlab.tasks.samplers import SAMPLERS
    cases = [make_task("recall", 100, noise=0.5), make_task("recall", 20),
             make_task("adding", 50), make_task("adding", 30, placement="anywhere",
                                                     target="mean"),
             make_task("adding", 40, placement="pascanu"), make_task("random", 30)]
    for n, task in enumerate(cases):
        shape = (3, task.length, 48)
        want = [np.zeros(shape + (task.input_size,)), np.zeros(shape + (task.output_size,))]
        got = [np.zeros_like(want[0]), np.zeros_like(want[1])]
        seeds = [np.random.SeedSequence([n, r]) for r in range(3)]
        a = [np.random.default_rng(s) for s in seeds]
        b = [np.random.default_rng(s) for s in seeds]
        for r in range(3):
            SAMPLERS[task.name](task, a[r], want[0][r], want[1][r])
        _call(task, handles(b), *got)
        if any(w.tobytes() != g.tobytes() for w, g in zip(want, got, strict=True)):
            return False
        if any(p.bit_generator.state != q.bit_generator.state for p, q in zip(a, b, strict=True)):
            return False
    return True


def ready() -> bool:
    """Whether the compiled draws can run in this process: numba importable, the draws compiled
    (or loaded from the cache) and in agreement with NumPy (``_agrees``); tried once."""
    global _ready
    if _ready is not None:
        return _ready
    _ready = False
    if importlib.util.find_spec("numba") is None:
        return False
    cache_dir()
    t0 = time.perf_counter()
    from rnnlab.tasks import kernel
    misses = sum(sum(f.stats.cache_misses.values()) for f in kernel.DRAWS.values())
    if not _agrees():
        import numba
        announce_once("draws", f"the compiled task draws do not give NumPy's numbers with numba "
                      f"{numba.__version__}; NumPy draws the data")
        return False
    if sum(sum(f.stats.cache_misses.values()) for f in kernel.DRAWS.values()) > misses:
        announce_once("draws-compiled", f"compiled the task draws in {time.perf_counter() - t0:.1f}"
                      f" s; cached in {kernel.numba.config.CACHE_DIR}")
    _ready = True
    return True


def fill(task, rngs, x, d) -> bool:
    """Fill x (R, T, B, I) and d (R, T, B, O), float64 zeros, with the task's data of each run
    (run r from ``rngs[r]``) by the compiled draws; False, touching nothing, where they do not
    run (the caller then uses the NumPy samplers)."""
    if task.name not in COVERED or not ready():
        return False
    _call(task, handles(rngs), x, d)
    return True
