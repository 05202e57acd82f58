"""A/B timing of rnnlab's engine at two revisions, interleaved in one process.

    python benchmarks/ab.py OLD [NEW] [--only sweep,t1000,h256] [--repeats 5] [--dtype float64]
                            [--cell rnn|lstm|gru] [--clock wall|cpu]

OLD and NEW are git revisions of this repository (NEW defaults to the working tree). Each side's
``rnnlab`` package is exported with ``git archive`` into a temporary folder and imported under
its own name, so both engines live in this process; every repeat calls OLD then NEW on the same
problem (benchmarks/bench.py's workloads and problem data, 1 BLAS thread), so a busy machine
slows both alike. Prints the median time of each and old / new, and checks that both return the
same loss to 1e-12 (a numerics change shows up as a larger difference, not as an error) and
says whether the gradients are equal bit for bit. Ratios from one run of this script, not
absolute times, are what to quote. ``RNNLAB_ENGINE=compiled`` compares the compiled kernels;
``--cell lstm`` (or ``gru``) times that cell on the workloads' shapes (its own parameters);
``--clock cpu`` times with the process's CPU time (a shared machine). With
``RNNLAB_ENGINE=compiled``, an OLD whose kernel does not cover the cell runs it on NumPy (and says
so), which compares the NumPy engine with the kernel in one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def export(rev: str | None, into: Path, alias: str):
    """Import rnnlab at git revision ``rev`` (None: the working tree) as module ``alias``."""
    if rev is None:
        src = ROOT / "rnnlab"
    else:
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "rnnlab"], check=True,
                             capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
            tf.extractall(into / alias, filter="data")
        src = into / alias / "rnnlab"
    spec = importlib.util.spec_from_file_location(alias, src / "__init__.py",
                                                  submodule_search_locations=[str(src)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    spec.loader.exec_module(module)
    return importlib.import_module(f"{alias}.engine")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", help="git revision of the baseline engine")
    ap.add_argument("new", nargs="?", default=None, help="git revision (default: working tree)")
    ap.add_argument("--only", default="sweep,t1000,h256", help="comma-separated workloads")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--cell", default="rnn", choices=["rnn", "lstm", "gru"])
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"])
    args = ap.parse_args(argv)

    import bench
    from threadpoolctl import threadpool_limits

    with tempfile.TemporaryDirectory() as tmp:
        engines = {"old": export(args.old, Path(tmp), "rnnlab_ab_old"),
                   "new": export(args.new, Path(tmp), "rnnlab_ab_new")}
        kw = dict(cell=args.cell, activation="tanh", output="softmax", loss="mse",
                  loss_at="last")
        clock = time.process_time if args.clock == "cpu" else time.perf_counter
        print(f"old = {args.old}, new = {args.new or 'working tree'}, {args.cell}, {args.dtype}, "
              f"{args.repeats} interleaved calls each, 1 BLAS thread, {args.clock} clock")
        for name in args.only.split(","):
            w = bench.WORKLOADS[name]
            params, x, d = bench.make_problem(w)
            if args.cell != "rnn":
                rng = np.random.default_rng(0)
                runs = [engines["new"].init_params(rng, cell=args.cell, input_size=w.I, hidden=w.H,
                                                   output_size=w.O) for _ in range(w.R)]
                params = {k: np.stack([r[k] for r in runs]) for k in runs[0]}
            p, xx, dd = bench.engine_args(w, params, x, d, np.dtype(args.dtype))
            times: dict = {"old": [], "new": []}
            loss = {}
            with threadpool_limits(1):
                grads = {}
                for tag, eng in engines.items():              # warm-up, and the losses
                    res = eng.bptt(p, xx, dd, **kw)
                    loss[tag], grads[tag] = np.asarray(res.loss), res.grads
                for _ in range(args.repeats):
                    for tag, eng in engines.items():
                        t0 = clock()
                        eng.bptt(p, xx, dd, **kw)
                        times[tag].append(clock() - t0)
            o, n = np.median(times["old"]), np.median(times["new"])
            diff = float(np.max(np.abs(loss["old"] - loss["new"]) / np.abs(loss["old"])))
            print(f"{name:6s} old {o * 1e3:8.1f} ms   new {n * 1e3:8.1f} ms   old/new {o / n:5.2f}"
                  f"   loss rel. diff {diff:.1e}   grads bit-identical "
                  f"{all(np.array_equal(grads['old'][k], grads['new'][k]) for k in grads['old'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
