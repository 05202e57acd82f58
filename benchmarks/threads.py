"""Two cores inside one process: the sweep call on one thread against its runs split in two halves
on two threads (the compiled kernel releases the GIL), as a ``prange`` over runs would split them.

    python benchmarks/threads.py [--rounds 5] [--calls 3]

The sweep workload of benchmarks/bench.py, float64, the compiled engine, one BLAS thread. Prints
the median wall and CPU time of each way and whether the two halves give the one call's bits.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402
from _common import cpu_busy  # noqa: E402

from rnnlab.engine import bptt  # noqa: E402
from rnnlab.engine.select import using_engine  # noqa: E402

KW = dict(cell="rnn", activation="tanh", output="softmax", loss="mse", loss_at="last")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=3, help="calls of each way per round")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    w = bench.WORKLOADS["sweep"]
    p, x, d = bench.engine_args(w, *bench.make_problem(w), np.dtype("float64"))
    R = p["Ws"].shape[0]
    halves = [slice(0, R // 2), slice(R // 2, R)]

    def half(rows):
        return bptt({k: v[rows] for k, v in p.items()}, x, d, **KW)

    ways = {"one call, one thread": lambda: bptt(p, x, d, **KW),
            "two halves, two threads": lambda: list(pool.map(half, halves))}
    times: dict = {k: [] for k in ways}
    with ThreadPoolExecutor(2) as pool, using_engine("compiled"), threadpool_limits(1):
        full, parts = ways["one call, one thread"](), ways["two halves, two threads"]()
        same = all(np.array_equal(full.grads[k], np.concatenate([a.grads[k] for a in parts]))
                   for k in full.grads)
        busy = cpu_busy()
        for _ in range(args.rounds):
            for name, way in ways.items():
                for _ in range(args.calls):
                    w0, c0 = time.perf_counter(), time.process_time()
                    way()
                    times[name].append((time.perf_counter() - w0, time.process_time() - c0))
    busy = "?" if busy is None else f"{busy:.0%}"
    print(f"sweep call, R = {R}; CPUs busy with other work before: {busy}; "
          f"the halves give the one call's bits: {same}")
    for name, v in times.items():
        wall, cpu = np.median([a for a, _ in v]), np.median([b for _, b in v])
        print(f"{name:24s} wall {wall * 1e3:6.1f} ms   CPU {cpu * 1e3:6.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
