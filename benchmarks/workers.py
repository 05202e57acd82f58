"""Wall time of whole commands against the number of worker processes and the engine.

    python benchmarks/workers.py [--file EXP.yaml] [--workers 1,2] [--engines numpy,compiled]
                                 [--repeats 3] [--reproduce] [--json out.json]

What ``benchmarks/e2e.py`` (one process, its stages) does not show: what ``--workers`` buys on
this machine once worker start-up, loading the compiled kernel in each worker and uneven batches
are paid. Each configuration runs as the command a user types, in a fresh process:
``python -m rnnlab sweep FILE --out TMP --workers N`` (default FILE: benchmarks/e2e.yaml) and,
with ``--reproduce``, ``python scripts/reproduce.py --quick --workers N --root TMP`` (every
reference experiment's quick variant, claims checked). The engine is chosen with RNNLAB_ENGINE.
Configurations are interleaved (one repeat of each, then the next), so a change in the machine's
load falls on all of them; the table shows the median and range of the wall time and the median
CPU time of the process and every process it started (workers included, also those a fork server
forked: on Linux this script adopts them as their subreaper).
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

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILE = ROOT / "benchmarks" / "e2e.yaml"


# Runs one command and prints its wall time and the CPU time of every process it started. It is
# a separate process because it makes itself the subreaper of its orphaned descendants (Linux's
# PR_SET_CHILD_SUBREAPER): a fork server outlives the command that started it, and the workers it
# forks are its children, not the command's; reparented to the wrapper and waited for here, their
# CPU time counts in its children's times instead of being lost with them.
WRAPPER = """
import ctypes, json, os, subprocess, sys, time
try:
    adopted = ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0
except (OSError, AttributeError):
    adopted = False
t0 = time.perf_counter()
proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - t0
deadline = time.monotonic() + 30
while True:
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        break
    if pid == 0:
        if time.monotonic() > deadline:
            break
        time.sleep(0.005)
t = os.times()
print(json.dumps({"rc": proc.returncode, "stderr": proc.stderr[-2000:], "wall_s": wall,
                  "cpu_s": t.children_user + t.children_system, "adopted": adopted}))
"""


def timed_child(cmd: list[str], env: dict, cwd: Path) -> dict:
    """Wall time of ``cmd`` run to its end, and the CPU time (user + system) of it and of every
    process it started, workers forked by a fork server included (on Linux; elsewhere
    ``forked_workers_counted`` is False and such workers are missed)."""
    out = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], env=env, cwd=cwd,
                         capture_output=True, text=True, check=True)
    res = json.loads(out.stdout)
    if res["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {res['rc']}:\n{res['stderr']}")
    return {"wall_s": res["wall_s"], "cpu_s": res["cpu_s"],
            "forked_workers_counted": res["adopted"]}


def command(kind: str, file: Path, workers: int, out: Path) -> list[str]:
    if kind == "sweep":
        return [sys.executable, "-m", "rnnlab", "sweep", str(file), "--out", str(out),
                "--workers", str(workers)]
    return [sys.executable, str(ROOT / "scripts" / "reproduce.py"), "--quick", "--workers",
            str(workers), "--root", str(out)]


def measure(kinds, file: Path, workers: list[int], engines: list[str], repeats: int) -> list:
    configs = [(k, e, w) for k in kinds for e in engines for w in workers]
    times: dict = {c: [] for c in configs}
    with tempfile.TemporaryDirectory(prefix="rnnlab-workers-") as tmp:
        for i in range(repeats):
            for kind, engine, w in configs:
                env = {**os.environ, "RNNLAB_ENGINE": engine}
                out = Path(tmp) / f"{kind}-{engine}-{w}-{i}"
                times[(kind, engine, w)].append(
                    timed_child(command(kind, file, w, out), env, Path(tmp)))
    rows = []
    for (kind, engine, w), reps in times.items():
        walls = [r["wall_s"] for r in reps]
        rows.append({"command": kind, "engine": engine, "workers": w,
                     "wall_s": statistics.median(walls), "wall_min_s": min(walls),
                     "wall_max_s": max(walls),
                     "cpu_s": statistics.median(r["cpu_s"] for r in reps), "repeats": reps})
    return rows


def table(rows: list[dict]) -> str:
    base: dict[str, float] = {}
    for r in rows:                                  # the first row of each command
        base.setdefault(r["command"], r["wall_s"])
    lines = ["| command | engine | workers | wall (median, range) | CPU, children incl. | "
             "x first row of its command |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        ratio = base.get(r["command"], float("nan")) / r["wall_s"]
        lines.append(f"| {r['command']} | {r['engine']} | {r['workers']} | {r['wall_s']:.2f} s "
                     f"({r['wall_min_s']:.2f}-{r['wall_max_s']:.2f}) | {r['cpu_s']:.2f} s | "
                     f"{ratio:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, default=DEFAULT_FILE)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--engines", default="numpy,compiled", help="comma-separated engines")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reproduce", action="store_true",
                    help="also time scripts/reproduce.py --quick (about a minute per run)")
    ap.add_argument("--no-sweep", action="store_true", help="skip the sweep command")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    kinds = ([] if args.no_sweep else ["sweep"]) + (["reproduce"] if args.reproduce else [])
    workers = [int(w) for w in args.workers.split(",")]
    engines = args.engines.split(",")
    rows = measure(kinds, args.file.resolve(), workers, engines, args.repeats)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"file": str(args.file), "cpus": os.cpu_count(),
                                         "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
