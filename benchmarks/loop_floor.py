"""What bit-identity leaves of the data sampling of benchmarks/e2e.yaml: the Generator calls alone
against ``Task.sample_runs`` (the same calls, plus building the arrays), in CPU seconds.

    python benchmarks/loop_floor.py [--repeats 3]

The e2e sweep's training data: 3 batches (seq_len 5, 10, 20) of 16 runs, 201 steps, each step
one ``integers(4, size=32)`` and one ``standard_normal((T - 1, 32, 4))`` per run from the run's
own Generator. Those calls, in that order, are what makes the data the same bits, so their time
is the floor of the data section; the held-out sets (drawn once per batch) come on top.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rnnlab.tasks import make_task

LENGTHS, RUNS, STEPS, B, K = (5, 10, 20), 16, 201, 32, 4


def draws_only() -> None:
    rngs = [np.random.default_rng(i) for i in range(RUNS)]
    for T in LENGTHS:
        for _ in range(STEPS):
            for rng in rngs:
                rng.integers(K, size=B)
                rng.standard_normal((T - 1, B, K))


def sample_runs() -> None:
    rngs = [np.random.default_rng(i) for i in range(RUNS)]
    for T in LENGTHS:
        task = make_task("recall", T)
        for _ in range(STEPS):
            task.sample_runs(rngs, B)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    got: dict = {f.__name__: [] for f in (draws_only, sample_runs)}
    for _ in range(a.repeats):
        for f in (draws_only, sample_runs):        # interleaved
            c = time.process_time()
            f()
            got[f.__name__].append(time.process_time() - c)
    for name, v in got.items():
        print(f"{name:12s} CPU s: median {np.median(v):.3f} (min {min(v):.3f}, max {max(v):.3f})")


if __name__ == "__main__":
    main()
