"""Batch planning: runs grouped into batches by shape, and the checks made before anything runs.

Runs whose ``RunConfig.shape_key()`` agree share every array shape and code path, so they are
stacked on the engine's run axis and trained in one call (``train.train_batch``). A batch is capped
by ``max_batch`` and by a memory budget (an estimate of the arrays one training step keeps for the
backward pass), so memory does not grow with the size of the sweep; the held-out evaluation is
chunked by runs inside the batch (``train.EVAL_BUDGET``). A configuration of which a single run
cannot fit in the machine's memory (``check_memory``), or a sweep whose results cannot fit the
disk (``check_disk``), is refused before anything runs.
"""

from __future__ import annotations

import math
import os

from rnnlab.engine.cells import GATES
from rnnlab.errors import UserError
from rnnlab.run.train import build_task, eval_run_bytes
from rnnlab.timing import timed

#: Default cap on runs per batch, and memory budget (bytes) for one batch's training arrays.
MAX_BATCH = 64
MEMORY_BUDGET = 1 << 30


def run_bytes(cfg) -> int:
    """Estimated bytes one run holds in a training step: states, pre-activations and their
    gradients (T+1, B, G each) plus outputs and targets (T, B, O), at the run's dtype."""
    task = build_task(cfg)
    gates = GATES[cfg.model.cell]
    item = 4 if cfg.model.dtype == "float32" else 8
    T, B, H = task.max_length, cfg.task.batch, cfg.model.hidden
    per_step = B * (3 * gates * H + 2 * H) + 3 * B * task.output_size + B * task.input_size
    return item * (T + 1) * per_step


def eval_bytes(cfg) -> int:
    """Estimated bytes one run's held-out evaluation holds (``train.eval_run_bytes``)."""
    task = build_task(cfg)
    G = GATES[cfg.model.cell] * cfg.model.hidden
    return eval_run_bytes(task.length, cfg.task.eval_batch, G, cfg.model.hidden,
                          task.output_size, task.input_size,
                          4 if cfg.model.dtype == "float32" else 8)


def physical_memory() -> int | None:
    """This machine's RAM in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(specs, source: str, limit: int | None = None) -> None:
    """Refuse, before anything runs, a configuration of which a single run cannot fit in memory
    (``limit``, default this machine's RAM): in a training step (``run_bytes``) or in its held-out
    evaluation (evaluated one run at a time at the least). Batches are smaller than the memory
    budget anyway; this catches the run that would fail alone. Raises UserError naming the file
    and the keys that set the size."""
    limit = physical_memory() if limit is None else limit
    if limit is None:
        return
    seen = set()
    for s in specs:
        key = s.config.shape_key()
        if key in seen:
            continue
        seen.add(key)
        cfg = s.config
        need = {"a training step": run_bytes(cfg), "its held-out evaluation": eval_bytes(cfg)}
        what, most = max(need.items(), key=lambda kv: kv[1])
        if most > limit:
            sizes = (f"task.seq_len={cfg.task.seq_len}, task.batch={cfg.task.batch}, "
                     f"task.eval_batch={cfg.task.eval_batch}, model.hidden={cfg.model.hidden}")
            raise UserError(
                f"{source}: {sizes}: one run needs {most / 2**30:.1f} GiB for {what}, more than "
                f"this machine's {limit / 2**30:.1f} GiB of memory; allowed: sizes whose run "
                f"fits (lower task.seq_len, task.batch, task.eval_batch or model.hidden)")


#: Bytes on disk per row of grad norms, of metrics and per run row, as written (zstd parquet;
#: measured: 28-41 and 35-83 bytes per row), and per batch for the two part files' footers.
GRAD_ROW_BYTES, METRICS_ROW_BYTES, RUN_ROW_BYTES, PART_BYTES = 36, 64, 512, 8192


def logged_steps(cfg) -> int:
    """How many steps a run logs: every ``train.log_every`` from 0, and the last one."""
    steps, every = cfg.train.steps, cfg.train.log_every
    return steps // every + 1 + (1 if steps % every else 0)


def disk_bytes(cfg) -> int:
    """Estimated bytes one run adds to its results folder: its grad norms (a row per logged step
    and time step), metrics (a row per logged step) and its row of ``runs.parquet``."""
    k = logged_steps(cfg)
    return k * build_task(cfg).max_length * GRAD_ROW_BYTES + k * METRICS_ROW_BYTES + RUN_ROW_BYTES


def free_disk(path) -> int | None:
    """Free bytes on the filesystem that holds ``path`` (or would: its nearest existing parent)."""
    import shutil
    from pathlib import Path

    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def check_disk(specs, out, source: str, max_batch: int = MAX_BATCH,
               free: int | None = None) -> None:
    """Refuse, before anything is written, runs whose results would not fit the free space of
    the disk of ``out`` (``free``, default measured). The estimate (``disk_bytes`` per run, the
    part files' footers per batch, and room for one more copy of ``runs.parquet`` and of the
    compacted metrics) is in the message."""
    specs = list(specs)
    if not specs:
        return
    free = free_disk(out) if free is None else free
    if free is None:
        return
    per_run = sum(disk_bytes(s.config) for s in specs)
    batches = -(-len(specs) // max_batch) + len({s.config.shape_key() for s in specs})
    need = per_run + batches * PART_BYTES + len(specs) * (RUN_ROW_BYTES + METRICS_ROW_BYTES)
    need += 1 << 20                                      # manifest, summaries, slack
    if need > free:
        mib = 1 << 20
        raise UserError(
            f"{source}: the results of {len(specs)} run(s) need about {need / mib:.1f} MiB on "
            f"disk, more than the {free / mib:.1f} MiB free where {out} is; allowed: results "
            "that fit (raise train.log_every, lower task.seq_len or the number of runs, or pass "
            "--out on a disk with room)")


def batch_work(specs) -> float:
    """A batch's relative training cost, to balance batches across workers: runs x steps x the
    time steps of a sequence x (the recurrent product's gates x H^2 + the input product's
    gates x I H) x the batch B. Only ratios between batches of one sweep matter."""
    cfg = specs[0].config
    task = build_task(cfg)
    G, H = GATES[cfg.model.cell], cfg.model.hidden
    per_step = cfg.task.batch * G * H * (H + task.input_size + 1)
    return float(len(specs) * cfg.train.steps * task.max_length * per_step)


@timed("plan")
def plan_batches(specs, max_batch: int = MAX_BATCH, memory_budget: int = MEMORY_BUDGET,
                 workers: int = 1):
    """Group runs by shape key (first-seen order) and cut each group into capped batches.

    With ``workers`` > 1 the batches are cut finer, so that the workers finish together: a
    group whose work (``batch_work``) exceeds 1 / (2 workers) of the sweep's is split into
    near-equal batches of at most that much, and the batches come largest first (the longest
    are started first, the short ones fill the gaps). A run's numbers do not depend on the batch
    it trains in, so this changes only the wall time."""
    order: dict = {}
    for s in specs:
        order.setdefault(s.config.shape_key(), []).append(s)
    caps = {key: max(1, min(max_batch, memory_budget // max(run_bytes(group[0].config), 1)))
            for key, group in order.items()}
    if workers > 1 and order:
        work = {key: batch_work(group) for key, group in order.items()}
        share = sum(work.values()) / (2 * workers)
        for key, group in order.items():
            pieces = max(1, math.ceil(work[key] / share - 1e-9))
            caps[key] = max(1, min(caps[key], math.ceil(len(group) / pieces)))
    batches = []
    for key, group in order.items():
        cap = caps[key]
        batches += [group[i:i + cap] for i in range(0, len(group), cap)]
    if workers > 1:
        batches.sort(key=batch_work, reverse=True)     # stable: ties keep the planned order
    return batches
