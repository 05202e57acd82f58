"""The task draws: NumPy's samplers against the compiled draws (rnnlab/tasks/kernel.py), one
training step's data of R runs, timed interleaved in one process.

    python benchmarks/draws.py [--runs 30] [--batch 32] [--rounds 7] [--calls 20]

For recall (K = 4, noise 0.5) at T = 2, 10, 30, 100, adding (T = 50) and random (T = 30, I = 4):
``Task.sample_runs`` of R runs, each from its own Generator, the NumPy samplers against
``compiled=True``. Prints the best of ``rounds`` (each the mean of ``calls`` calls) in us per run,
the ns per number drawn, the ratio, and whether both gave the same bits and left the Generators in
the same state.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_busy  # noqa: E402

from rnnlab.tasks import compiled, make_task  # noqa: E402

CASES = [("recall", 2, {"noise": 0.5}), ("recall", 10, {"noise": 0.5}),
         ("recall", 30, {"noise": 0.5}), ("recall", 100, {"noise": 0.5}),
         ("adding", 50, {}), ("random", 30, {"input_size": 4})]


def _draws(task, B: int) -> int:
    """The numbers one run's batch draws (normals, uniforms, integers)."""
    T = task.length
    if task.name == "recall":
        return B + (T - 1) * B * task.input_size
    if task.name == "adding":
        return T * B + 2 * B
    return T * B * task.input_size + T * B


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=20)
    args = ap.parse_args(argv)
    R, B = args.runs, args.batch
    if not compiled.ready():
        print("the compiled draws are not available here (numba missing or disagreeing)")
        return 1
    busy = cpu_busy()
    print(f"R = {R} runs, B = {B}; CPUs busy with other work before: "
          f"{'?' if busy is None else f'{busy:.0%}'}")
    print(f"{'task':8s} {'T':>4s} {'NumPy us/run':>13s} {'compiled us/run':>16s} "
          f"{'ns/number':>10s} {'ratio':>6s}  same bits")
    for name, T, opts in CASES:
        task = make_task(name, T, **opts)
        ways = {way: [np.random.default_rng([7, r]) for r in range(R)]
                for way in ("numpy", "compiled")}
        a = task.sample_runs(ways["numpy"], B)
        b = task.sample_runs(ways["compiled"], B, compiled=True)
        same = (a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
                and all(p.bit_generator.state == q.bit_generator.state
                        for p, q in zip(ways["numpy"], ways["compiled"], strict=True)))
        best = {"numpy": np.inf, "compiled": np.inf}
        for _ in range(args.rounds):
            for way, rngs in ways.items():
                t0 = time.perf_counter()
                for _ in range(args.calls):
                    task.sample_runs(rngs, B, compiled=way == "compiled")
                best[way] = min(best[way], (time.perf_counter() - t0) / args.calls / R)
        per_number = best["compiled"] / _draws(task, B)
        print(f"{name:8s} {T:4d} {best['numpy'] * 1e6:13.1f} {best['compiled'] * 1e6:16.1f} "
              f"{per_number * 1e9:10.2f} {best['numpy'] / best['compiled']:5.2f}x  {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
