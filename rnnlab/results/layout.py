"""Names of the files in a results folder and of its part files.

The layout and the commit protocol are described in :mod:`rnnlab.results.store`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
RUNS = "runs.parquet"
RUNS_DIR = "runs"
GRAD_DIR = "grad_norms"
LYAP_DIR = "lyapunov"
METRICS_DIR = "metrics"
METRICS = "metrics.parquet"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
LOCK = ".lock"
PART_PREFIX = "part-"
OWN_NAMES = {MANIFEST, RUNS, RUNS_DIR, GRAD_DIR, LYAP_DIR, METRICS_DIR, METRICS, SUMMARY_CSV,
              SUMMARY_MD, LOCK}


def part_name(run_ids: Iterable[str]) -> str:
    """Deterministic part file name of a batch: ``part-<sha1(sorted run ids)[:16]>.parquet``."""
    digest = hashlib.sha1("\n".join(sorted(run_ids)).encode()).hexdigest()[:16]
    return f"{PART_PREFIX}{digest}.parquet"


def is_part(name: str) -> bool:
    """Whether ``name`` is a part file's name."""
    return name.startswith(PART_PREFIX) and name.endswith(".parquet")

