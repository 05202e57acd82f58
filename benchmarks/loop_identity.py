"""Bit-identity check of the training loop: sweep a fixed set of experiments with both engines
and compare every parquet table of two such sets column by column, bit for bit.

    python benchmarks/loop_identity.py sweep DIR          # DIR/<engine>/<case>/ for every case
    python benchmarks/loop_identity.py compare REF NEW    # exit status 1 on any difference

The cases: benchmarks/e2e.yaml and experiments/quickstart.yaml as they are, the quick profile of
every experiment scripts/reproduce.py sweeps, and benchmarks/identity/*.yaml (every task and task
option, optimiser, clip mode and cell, truncation, float32, runs that diverge mid-batch). Each is
swept with ``rnnlab sweep --fresh --workers 1`` under RNNLAB_ENGINE=numpy and =compiled.

Float columns are compared as their bit patterns (so -0.0 != 0.0 and NaN == NaN only with the same
payload); only the columns in ``SKIP`` (wall-clock time) are left out. Rows are compared in the
order the files hold them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
ENGINES = ("numpy", "compiled")
QUICK = ["vanishing", "spectrum", "clipping", "lstm", "truncation", "lyapunov", "limits",
         "limits-lstm"]
#: Columns that hold wall-clock time, host or timing: not a computed number.
SKIP = {"wall_time"}


def cases() -> dict[str, list[str]]:
    """name -> the arguments of ``rnnlab sweep`` after the command."""
    out = {"e2e": ["benchmarks/e2e.yaml"], "quickstart": ["experiments/quickstart.yaml"]}
    for name in QUICK:
        out[f"{name}-quick"] = [f"experiments/{name}.yaml", "--profile", "quick"]
    for f in sorted((ROOT / "benchmarks" / "identity").glob("*.yaml")):
        out[f.stem] = [str(f.relative_to(ROOT))]
    return out


def sweep(dest: Path) -> None:
    exe = Path(sys.executable).parent / "rnnlab"
    for engine in ENGINES:
        for name, args in cases().items():
            out = dest / engine / name
            env = dict(os.environ, RNNLAB_ENGINE=engine)
            print(f"{engine} {name}", flush=True)
            subprocess.run([str(exe), "sweep", *args, "--out", str(out), "--fresh",
                            "--workers", "1", "--format", "csv"],
                           cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


def _same(a, b) -> bool:
    """Bitwise equality of two column arrays (floats by their bit patterns)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "f":
        return np.array_equal(a.view(f"u{a.dtype.itemsize}"), b.view(f"u{b.dtype.itemsize}"))
    if a.dtype.kind == "O":
        return all((x is None and y is None) or (isinstance(x, float) and isinstance(y, float)
                   and np.isnan(x) and np.isnan(y)) or x == y for x, y in zip(a, b, strict=True))
    return np.array_equal(a, b)


def compare(ref: Path, new: Path) -> int:
    files = sorted(p.relative_to(ref) for p in ref.rglob("*.parquet"))
    other = sorted(p.relative_to(new) for p in new.rglob("*.parquet"))
    bad = 0
    if files != other:
        print(f"DIFFERENT FILE SETS: only in ref {sorted(set(files) - set(other))}, "
              f"only in new {sorted(set(other) - set(files))}")
        bad += 1
    cols = rows = 0
    for rel in files:
        if rel not in other:
            continue
        a, b = pq.read_table(ref / rel), pq.read_table(new / rel)
        if a.schema != b.schema:
            print(f"{rel}: schemas differ")
            bad += 1
            continue
        for name in a.column_names:
            if name in SKIP:
                continue
            ca = a.column(name).to_pandas().to_numpy()
            cb = b.column(name).to_pandas().to_numpy()
            cols += 1
            if not _same(ca, cb):
                print(f"{rel}: column {name} differs")
                bad += 1
        rows += a.num_rows
    print(f"{len(files)} parquet files, {cols} columns, {rows} rows compared "
          f"(skipped: {sorted(SKIP)}): {'IDENTICAL' if not bad else f'{bad} DIFFERENCES'}")
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "sweep":
        sweep(Path(sys.argv[2]).resolve())
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)
