"""The full reference reproduction's speed-up, estimated from a sample of each experiment.

    python benchmarks/full_sample.py [--trees before=/old/.venv/bin/python,now=python]
                                     [--engines before=numpy,now=compiled] [--only limits ...]
                                     [--json out.json]

``python scripts/reproduce.py`` (the full variants) takes hours on two cores, too long to time
before and after a change side by side. This script times a sample of every experiment instead:
the same grid with fewer values on its longest axis and a fraction of the training steps (see
``SAMPLES``; repeats, batch sizes and every other setting stay, because the runs stacked in a
batch decide the engine's efficiency), each as ``python -m rnnlab sweep`` in a fresh process, per
tree (a Python interpreter whose environment holds rnnlab: another worktree's venv for the tree
before a change) and engine, interleaved experiment by experiment. It reports the CPU time of
each (the command and every process it started; ``--workers 1``, so nothing waits on a pool) and
the ratio between the first tree and each other.

The experiment files are stripped of what an older rnnlab may not know: claims, profiles,
``train.lyapunov`` and the GRU (``--portable``, on by default: the sample then measures the same
runs on every tree). The estimate of the full reproduction weighs each experiment's ratio by
its share of the first tree's time in ``--weights`` (seconds per experiment, default: the full
variants' times recorded in results/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workers import timed_child  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

#: experiment -> (divide train.steps by, sweep axes replaced by a subset of their values).
SAMPLES = {
    "limits": (8, {"task.seq_len": [4, 20, 50]}),
    "limits-lstm": (16, {"task.seq_len": [10, 50]}),
    "lstm": (8, {"task.seq_len": [20, 50]}),
    "clipping": (8, {}),
    "vanishing": (8, {}),
    "truncation": (8, {}),
    "spectrum": (1, {}),
}


def sample_file(name: str, folder: Path, portable: bool) -> Path:
    """The sampled experiment file of ``name`` (``SAMPLES``), written into ``folder``."""
    exp = yaml.safe_load((ROOT / "experiments" / f"{name}.yaml").read_text())
    steps_div, axes = SAMPLES[name]
    exp["train"]["steps"] //= steps_div
    exp["sweep"].update(axes)
    if portable:
        for key in ("claims", "profiles"):
            exp.pop(key, None)
        exp["train"].pop("lyapunov", None)
        zipped = exp["sweep"].get("zip", {})
        while "gru" in zipped.get("model.cell", []):
            i = zipped["model.cell"].index("gru")
            for values in zipped.values():
                values.pop(i)
    path = folder / f"sample-{name}.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


def recorded_times() -> dict[str, float]:
    """The full variants' seconds per experiment from results/README.md's table."""
    times = {}
    for line in (ROOT / "results" / "README.md").read_text().splitlines():
        m = re.match(r"\| \[([\w-]+)\]\([^)]*\) \|(?:[^|]*\|){5}\s*([\d.]+)\s*\|", line)
        if m and not m.group(1).endswith("-quick"):
            times[m.group(1)] = float(m.group(2))
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", default=f"now={sys.executable}",
                    help="comma-separated NAME=PYTHON; the first is the baseline")
    ap.add_argument("--engines", default="", help="comma-separated NAME=ENGINE (default numpy)")
    ap.add_argument("--only", nargs="*", default=list(SAMPLES), choices=list(SAMPLES))
    ap.add_argument("--no-portable", dest="portable", action="store_false")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    trees = dict(t.split("=", 1) for t in args.trees.split(","))
    engines = dict(e.split("=", 1) for e in args.engines.split(",") if e)
    base = next(iter(trees))
    cpu: dict[str, dict[str, float]] = {t: {} for t in trees}
    with tempfile.TemporaryDirectory(prefix="rnnlab-full-sample-") as tmp:
        for name in args.only:
            file = sample_file(name, Path(tmp), args.portable)
            for tree, python in trees.items():
                env = {**os.environ, "RNNLAB_ENGINE": engines.get(tree, "numpy"),
                       "OPENBLAS_NUM_THREADS": "1"}
                cmd = [python, "-m", "rnnlab", "sweep", str(file), "--out",
                       str(Path(tmp) / f"{tree}-{name}"), "--no-progress", "--format", "csv"]
                cpu[tree][name] = timed_child(cmd, env, Path(tmp))["cpu_s"]
                print(f"{name:12s} {tree:10s} {cpu[tree][name]:8.2f} s CPU", flush=True)
    weights = recorded_times()
    rows = {}
    for tree in trees:
        ratios = {n: cpu[base][n] / cpu[tree][n] for n in args.only}
        known = [n for n in args.only if n in weights]
        full = (sum(weights[n] for n in known) / sum(weights[n] / ratios[n] for n in known)
                if known else float("nan"))
        rows[tree] = {"cpu_s": cpu[tree], "ratio": ratios, "weighted_ratio": full}
    print(f"\n| experiment | {' | '.join(trees)} | weight (s) |")
    print("|---|" + "---:|" * (len(trees) + 1))
    for n in args.only:
        cells = " | ".join(f"{cpu[t][n]:.1f} s ({rows[t]['ratio'][n]:.2f}x)" for t in trees)
        print(f"| {n} | {cells} | {weights.get(n, float('nan')):.0f} |")
    print("| full reproduction, weighted | "
          + " | ".join(f"{rows[t]['weighted_ratio']:.2f}x" for t in trees) + " | |")
    if args.json:
        args.json.write_text(json.dumps({"trees": trees, "engines": engines, "samples": SAMPLES,
                                         "weights": weights, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
