"""Where a command's time goes: named sections, marked where the work is done.

    from rnnlab import timing
    with timing.record() as t:
        run_sweep(exp)
    t.seconds       {"sweep": 2.4, "training": 2.3, "engine": 1.4, "data": 0.3, ...}
    t.calls         {"engine": 625, ...}

rnnlab marks its stages with ``@timing.timed("name")`` on a function or ``with
timing.section("name"):`` around a few lines (``SECTIONS`` lists them). Outside ``record`` a mark
costs one context-variable lookup, so the marks stay in the code; ``rnnlab sweep --timings``
prints the split. A name counts once when its sections nest (``forward`` calls ``bptt``: one
``engine``); different names overlap (``engine`` lies inside ``training``, which lies inside
``sweep``). ``record(memory=True)`` also keeps each section's tracemalloc peak above its start,
when tracemalloc is tracing.

Only this process's sections are recorded: batches trained in worker processes (``--workers``,
Dask) show as the time the parent spent waiting, not as their own sections.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import time
import tracemalloc
from dataclasses import dataclass, field

#: The sections rnnlab marks, in the order a sweep meets them, and what each covers.
SECTIONS = {
    "load": "load, validate and expand the experiment",
    "sweep": "the whole sweep after loading (run_sweep)",
    "open": "open the results folder and write the manifest",
    "plan": "plan the batches",
    "training": "train batches, in this process (train_batch)",
    "engine": "forward and backward passes (bptt, forward)",
    "data": "sample task batches (training and held-out)",
    "evaluate": "held-out evaluation (its sampling and forward passes included)",
    "package": "build a batch's result tables",
    "commit": "write a batch's parquet parts",
    "summary": "compute, render and write the summary table",
    "finalize": "compact the stored parts",
}


@dataclass
class Timings:
    """Wall seconds and calls per section name (outermost call of a name only), the wall clock
    (``time.time()``) of each name's first start and, with ``memory``, each name's largest
    tracemalloc peak above the memory in use when it started (bytes)."""
    memory: bool = False
    seconds: dict = field(default_factory=dict)
    calls: dict = field(default_factory=dict)
    first: dict = field(default_factory=dict)
    peak_bytes: dict = field(default_factory=dict)
    _depth: dict = field(default_factory=dict, repr=False)
    _open: list = field(default_factory=list, repr=False)      # [name, start bytes, peak seen]

    def _peak_so_far(self) -> None:
        """Fold tracemalloc's peak since the last reset into every open section, then reset, so
        that a nested section's reset loses no outer peak."""
        _, peak = tracemalloc.get_traced_memory()
        for entry in self._open:
            entry[2] = max(entry[2], peak)
        tracemalloc.reset_peak()


_current: contextvars.ContextVar[Timings | None] = contextvars.ContextVar("rnnlab_timing",
                                                                           default=None)


@contextlib.contextmanager
def record(memory: bool = False):
    """Record the sections entered in this block (this thread or task and what it calls)."""
    t = Timings(memory=memory and tracemalloc.is_tracing())
    token = _current.set(t)
    try:
        yield t
    finally:
        _current.reset(token)


class section:
    """``with section("engine"): ...``: time the block under that name while recording."""
    __slots__ = ("name", "t", "t0")

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        t = self.t = _current.get()
        if t is None:
            return self
        depth = t._depth.get(self.name, 0)
        t._depth[self.name] = depth + 1
        if depth == 0:
            t.calls[self.name] = t.calls.get(self.name, 0) + 1
            t.first.setdefault(self.name, time.time())
            if t.memory:
                t._peak_so_far()
                t._open.append([self.name, tracemalloc.get_traced_memory()[0], 0])
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        t = self.t
        if t is None:
            return False
        depth = t._depth[self.name] - 1
        t._depth[self.name] = depth
        if depth == 0:
            t.seconds[self.name] = t.seconds.get(self.name, 0.0) + time.perf_counter() - self.t0
            if t.memory:
                t._peak_so_far()
                name, start, peak = t._open.pop()
                t.peak_bytes[name] = max(t.peak_bytes.get(name, 0), peak - start)
        return False


def timed(name: str):
    """Decorator: every call of the function is a section ``name``."""
    def wrap(fn):
        @functools.wraps(fn)
        def timed_call(*args, **kwargs):
            with section(name):
                return fn(*args, **kwargs)
        return timed_call
    return wrap
