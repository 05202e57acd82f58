"""What the Lyapunov analysis (``train.lyapunov``) costs, against the training step it rides on.

For each cell, the time of one ``bptt`` call (forward, backward, per-step norms) and of one
``engine.lyapunov`` call on the same batch at the default number of exponents (m = min(H, 8)),
without the Jacobian product (k = 0) and with it over the whole sequence (k = T, the default).
Best of ``--repeats`` timings, one BLAS thread, float64. The analysis runs once per logged step,
so its share of a sweep is about (lyapunov / bptt) / log_every.

    python benchmarks/lyapunov.py                   # R=10 runs, B=32, H=32, T=20 and 100
    python benchmarks/lyapunov.py --markdown        # the table of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from rnnlab.engine import bptt, init_params
from rnnlab.engine.lyapunov import lyapunov


def best(f, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--seq-len", type=int, nargs="+", default=[20, 100])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    R, B, H, I, O = args.runs, args.batch, args.hidden, 8, 8
    rng = np.random.default_rng(0)
    rows = []
    with threadpool_limits(1, "blas"):
        for T in args.seq_len:
            for cell in ("rnn", "lstm", "gru"):
                ps = [init_params(rng, cell=cell, input_size=I, hidden=H, output_size=O)
                      for _ in range(R)]
                P = {k: np.stack([p[k] for p in ps]) for k in ps[0]}
                x = rng.standard_normal((R, T, B, I))
                d = np.eye(O)[rng.integers(0, O, (R, T, B))]
                a = best(lambda: bptt(P, x, d, cell=cell), args.repeats)          # noqa: B023
                b = best(lambda: lyapunov(P, x, cell=cell, window=0), args.repeats)  # noqa: B023
                c = best(lambda: lyapunov(P, x, cell=cell), args.repeats)         # noqa: B023
                rows.append((T, cell, a, b, c))
    head = ("T", "cell", "bptt ms", "lyapunov k=0 ms", "lyapunov k=T ms", "k=0 / bptt",
            "k=T / bptt")
    lines = [[str(T), cell, f"{a * 1e3:.1f}", f"{b * 1e3:.1f}", f"{c * 1e3:.1f}",
              f"{b / a:.1f}", f"{c / a:.1f}"] for T, cell, a, b, c in rows]
    title = f"R={R} runs, B={B}, H={H}, m=min(H, 8), float64, 1 BLAS thread, best of {args.repeats}"
    if args.markdown:
        print(title + "\n")
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" if i < 2 else "--:" for i in range(len(head))) + "|")
        for r in lines:
            print("| " + " | ".join(r) + " |")
    else:
        print(title)
        for r in [list(head), *lines]:
            print("  ".join(f"{c:>16}" for c in r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
