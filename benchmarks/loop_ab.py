"""Old vs new training loop, side by side: CPU time of `rnnlab sweep` on an experiment, two source
trees interleaved round by round (branch loop, docs/benchmarks.md).

    git archive main | tar -x -C /tmp/rnnlab-old          # the tree to compare against
    python benchmarks/loop_ab.py /tmp/rnnlab-old . [--engine numpy|compiled] [--rounds 5]
                                 [--file benchmarks/e2e.yaml]

Each round runs, for each tree in turn (the order alternates between rounds so that neither
always goes first), two fresh processes with PYTHONPATH set to the tree:

- in-process: load the experiment, one warm-up ``run_sweep`` (imports, first allocations, the
  compiled kernel's cache), then one timed ``run_sweep`` into a fresh folder (workers=1, BLAS at
  one thread) inside ``rnnlab.timing.record()``: CPU seconds (``time.process_time``) of the
  sweep and of rnnlab's own sections (engine, data, evaluate, training, ...: the child swaps
  the clock ``rnnlab.timing`` reads, ``time.perf_counter``, for ``time.process_time``);
- CLI: ``python -m rnnlab sweep FILE --out TMP --workers 1`` with the engine in RNNLAB_ENGINE:
  the child's CPU seconds (user + system, from ``os.wait4``), interpreter start and imports
  included.

CPU time, not wall time: another process may share the machine. Reported: the median over rounds
of each number per tree, the ratio new / old, and "non-engine" = CPU of the sweep minus the CPU
of the engine section (``bptt`` and ``forward``: the kernel or the NumPy passes, with the
argument checks and the compiled engine's glue).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

IN_PROCESS = r"""
import json, sys, tempfile, time, types
from threadpoolctl import threadpool_limits
from rnnlab import timing
# sections in CPU seconds: rnnlab.timing reads its clock as time.perf_counter
timing.time = types.SimpleNamespace(perf_counter=time.process_time, time=time.time)
from rnnlab.engine import select
from rnnlab.experiment.load import load_experiment
from rnnlab.run.sweep import run_sweep
select.set_engine(sys.argv[1])
exp = load_experiment(sys.argv[2])
with threadpool_limits(1), tempfile.TemporaryDirectory() as d:
    run_sweep(exp, d + "/warm", workers=1)
    c0 = time.process_time()
    with timing.record() as t:
        run_sweep(exp, d + "/timed", workers=1)
    cpu = time.process_time() - c0
print(json.dumps({"cpu": cpu, **{k: v for k, v in t.seconds.items()}}))
"""

LAUNCHER = r"""
import json, os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
print(json.dumps({"cpu": ru.ru_utime + ru.ru_stime, "status": status}))
"""


def env_for(tree: Path, engine: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), RNNLAB_ENGINE=engine, OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def in_process(tree: Path, engine: str, file: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", IN_PROCESS, engine, str(file)], cwd=tree,
                         env=env_for(tree, engine), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cli(tree: Path, engine: str, file: Path) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([sys.executable, "-c", LAUNCHER, sys.executable, "-m", "rnnlab",
                              "sweep", str(file), "--out", d + "/cli", "--workers", "1"],
                             cwd=tree, env=env_for(tree, engine), capture_output=True, text=True,
                             check=True)
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    if rec["status"] != 0:
        raise SystemExit(f"CLI sweep failed in {tree}")
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--engine", default="numpy", choices=("numpy", "compiled"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--file", type=Path, default=Path("benchmarks/e2e.yaml"))
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    trees = {"old": a.old.resolve(), "new": a.new.resolve()}
    file = a.file.resolve()
    got: dict = {k: {"in": [], "cli": []} for k in trees}
    for i in range(a.rounds):
        order = ["old", "new"] if i % 2 == 0 else ["new", "old"]
        for k in order:
            got[k]["in"].append(in_process(trees[k], a.engine, file))
            got[k]["cli"].append(cli(trees[k], a.engine, file))
        print(f"round {i + 1}: " + ", ".join(
            f"{k} {got[k]['in'][-1]['cpu']:.3f} s in-process, {got[k]['cli'][-1]['cpu']:.3f} s "
            f"CLI" for k in trees), flush=True)

    def med(k, kind, key):
        vals = [r.get(key, 0.0) for r in got[k][kind]]
        return statistics.median(vals)

    rows = [("CPU, in-process sweep", "in", "cpu"), ("  engine (section)", "in", "engine"),
            ("  data (section)", "in", "data"), ("  evaluate (section)", "in", "evaluate"),
            ("  training (section)", "in", "training"), ("CPU, CLI process", "cli", "cpu")]
    print(f"\n{a.engine} engine, {a.file}, {a.rounds} rounds, medians (seconds)")
    print(f"{'':28s}{'old':>9s}{'new':>9s}{'new/old':>9s}")
    summary = {}
    for label, kind, key in rows:
        o, n = med("old", kind, key), med("new", kind, key)
        summary[label.strip()] = {"old": o, "new": n}
        print(f"{label:28s}{o:9.3f}{n:9.3f}{n / o if o else float('nan'):9.3f}")
    non = {k: statistics.median(r["cpu"] - r.get("engine", 0.0) for r in got[k]["in"])
           for k in trees}
    summary["non-engine"] = non
    print(f"{'non-engine (CPU - engine)':28s}{non['old']:9.3f}{non['new']:9.3f}"
          f"{non['new'] / non['old']:9.3f}")
    if a.json:
        a.json.write_text(json.dumps({"engine": a.engine, "rounds": a.rounds, "raw": got,
                                      "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
