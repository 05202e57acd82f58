"""Reading a results folder: manifest, runs, grad norms, metrics and (when the analysis was on)
the Lyapunov tables of the committed runs.

Readers only read part files of committed batches (those with a runs part, or compacted into
``runs.parquet``: see the commit protocol in :mod:`rnnlab.results.store`), so they never see the
leftovers of an interrupted sweep.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rnnlab.errors import UserError
from rnnlab.results.layout import (
    GRAD_DIR,
    LOCK,
    LYAP_DIR,
    MANIFEST,
    METRICS,
    METRICS_DIR,
    RUNS,
    RUNS_DIR,
    is_part,
)
from rnnlab.results.parquet_io import (
    GRAD_SCHEMA,
    GRAD_SORT,
    LYAP_SCHEMA,
    LYAP_SORT,
    METRICS_COLS,
    METRICS_SCHEMA,
    METRICS_SORT,
    RUNS_COLS,
    combine_runs,
    commit_seq,
    corrupt,
    read_parquet,
    read_parts_metadata,
    runs_to_pandas,
)


def is_results_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder with a ``manifest.json``."""
    p = Path(path)
    return p.is_dir() and (p / MANIFEST).is_file()


def results_dir(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p} does not exist; pass a results folder made by `rnnlab sweep`")
    if not p.is_dir():
        raise UserError(f"{p} is not a folder; pass a results folder made by `rnnlab sweep`")
    if not (p / MANIFEST).is_file():
        if not any(p.iterdir()):
            raise UserError(f"{p} is empty; run `rnnlab sweep` to fill it")
        raise UserError(
            f"{p} is not an rnnlab results folder (no {MANIFEST}); "
            "pass a folder made by `rnnlab sweep`"
        )
    return p


def read_manifest(path: Path, advice: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise corrupt(path, e, advice) from e
    if not isinstance(data, dict):
        raise corrupt(path, "not a JSON object", advice)
    return data


def load_manifest(path: str | os.PathLike) -> dict:
    """The manifest of the results folder ``path``."""
    p = results_dir(path)
    return read_manifest(p / MANIFEST, "delete the folder and rerun `rnnlab sweep`")


def folder_notes(path: str | os.PathLike) -> list[str]:
    """One-line warnings about a results folder that can still be read: a damaged
    ``manifest.json`` (the tables come from ``runs.parquet`` and the part files regardless), a
    sweep still writing to it. Empty for a folder that is not a results folder (the reading
    command refuses it with its own message)."""
    p = Path(path)
    if not is_results_dir(p):
        return []
    notes = []
    try:
        read_manifest(p / MANIFEST, "")
    except UserError as e:
        notes.append(
            f"{str(e).rstrip('; ')}; shown is what {RUNS} and the part files hold; a sweep into "
            "this folder needs the manifest restored, or --fresh (which discards the results)")
    holder = _live_lock_holder(p)
    if holder is not None:
        notes.append(f"a sweep ({holder}) is still writing to {p}; shown are the runs it has "
                     "committed so far")
    return notes


def _live_lock_holder(p: Path) -> str | None:
    """'pid N' of the sweep holding the folder's lock, or None (no lock, or a stale one)."""
    try:
        fd = os.open(p / LOCK, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            pid = os.read(fd, 100).decode("utf-8", "replace").split()[0]
        except (OSError, IndexError):
            pid = "unknown"
        return f"pid {pid}"
    except OSError:
        return None                            # no flock here: nothing reliable to say
    finally:
        os.close(fd)
    return None


def runs_parts(p: Path, compacted: pa.Table | None) -> list[str]:
    """The names of the runs part files in ``p/runs/`` not yet compacted into ``runs.parquet``
    (``compacted``; a part it holds is the leftover of an interrupted ``finalize``), sorted."""
    folder = p / RUNS_DIR
    if not folder.is_dir():
        return []
    done = set() if compacted is None else set(compacted.column("part").to_pylist())
    return sorted(e for e in os.listdir(folder) if is_part(e) and e not in done)


def read_runs_parts(p: Path, compacted: pa.Table | None) -> list[pa.Table]:
    """The runs parts not compacted into ``runs.parquet`` (``compacted``), in commit order."""
    tables = [read_parquet(p / RUNS_DIR / part, need=RUNS_COLS)
              for part in runs_parts(p, compacted)]
    return sorted(tables, key=commit_seq)


def has_runs(p: Path) -> bool:
    """Whether the folder ``p`` holds committed runs (a runs file), read or not."""
    return (p / RUNS).is_file() or bool(runs_parts(p, None))


def read_runs(p: Path) -> pa.Table | None:
    """The committed runs of the folder ``p`` as one table (runs.parquet and the runs part of
    each batch committed since the last ``finalize``), sorted by run_id; None when it has none.
    A damaged file is a UserError naming it."""
    compacted = None
    if (p / RUNS).is_file():
        compacted = read_parquet(
            p / RUNS, "delete it and rerun `rnnlab sweep` to recompute all runs", need=RUNS_COLS
        )
    tables = [compacted] if compacted is not None else []
    tables += read_runs_parts(p, compacted)
    if not tables:
        return None
    return tables[0] if len(tables) == 1 else combine_runs(tables)


def runs_table_of(p: Path) -> pa.Table:
    table = read_runs(p)
    if table is None:
        parts = os.listdir(p / GRAD_DIR) if (p / GRAD_DIR).is_dir() else []
        if any(e.endswith(".parquet") for e in parts):
            raise UserError(
                f"{p / RUNS} is missing but {p / GRAD_DIR} holds part files: without it no "
                "run is committed; rerun `rnnlab sweep` into the folder to recompute the runs "
                "(it removes those parts)")
        if (p / "summary.csv").is_file():      # a summary without its runs: a committed folder
            raise UserError(f"{p} holds a summary (summary.csv, summary.md) but not the runs it "
                            f"was made from (no {RUNS}; a git checkout of a reference folder has "
                            f"only its summary): `rnnlab sweep FILE --out {p}` recomputes them "
                            "(for the reference folders: python scripts/reproduce.py --only NAME)")
        raise UserError(f"{p} has no finished runs yet (no {RUNS}); run `rnnlab sweep` first")
    return table


def load_runs(path: str | os.PathLike) -> pd.DataFrame:
    """One row per committed run, sorted by ``run_id`` (without the internal ``part`` column).

    Dtypes are stable: ``diverged_step``/``steps_to_solve`` are nullable ``Int64``, floats are
    float64 with NaN for missing values, text columns are strings.
    """
    table = runs_table_of(results_dir(path))
    if "part" in table.column_names:
        table = table.drop_columns(["part"])
    return runs_to_pandas(table.sort_by([("run_id", "ascending")]))


def parts_of_runs(p: Path, run_ids: Iterable[str] | None = None) -> dict[str, str]:
    """run_id -> the name of its batch's part files, for the committed runs ``run_ids`` (every
    committed run if None) of the folder ``p``, in run_id order; an id of no committed run is a
    UserError."""
    runs = runs_table_of(p)
    part_of = dict(
        zip(runs.column("run_id").to_pylist(), runs.column("part").to_pylist(), strict=True)
    )
    if run_ids is None:
        return dict(sorted(part_of.items()))
    wanted = sorted(set(run_ids))
    unknown = [r for r in wanted if r not in part_of]
    if unknown:
        raise UserError(f"{p}: no run with id {unknown[0]!r}")
    return {r: part_of[r] for r in wanted}


def load_grad_norms(
    path: str | os.PathLike, run_ids: Iterable[str] | None = None, step: int | None = None
) -> pd.DataFrame:
    """Per-time-step gradient norms of committed runs, sorted by run_id, step, t.

    ``run_ids`` restricts to those runs (an unknown id is a UserError); ``step`` to one training
    step. Only the part files holding the requested runs are read.
    """
    p = results_dir(path)
    return _read_batch_parts(p / GRAD_DIR, GRAD_SCHEMA, GRAD_SORT, parts_of_runs(p, run_ids), step)


def check_step(path: str | os.PathLike, step: int, run_ids: Iterable[str] | None = None) -> None:
    """A UserError naming the recorded steps when no run (of ``run_ids``) has gradient norms at
    training ``step``; nothing when some have, or when no run has any (nothing to point to)."""
    g = load_grad_norms(path, run_ids=run_ids)
    if len(g) == 0 or (g["step"] == step).any():
        return
    steps = sorted(int(s) for s in g["step"].unique())
    shown = ", ".join(map(str, steps[:12])) + (", ..." if len(steps) > 12 else "")
    raise UserError(f"{path}: no gradient norms at training step {step}; recorded steps: {shown}")


def load_lyapunov(
    path: str | os.PathLike, run_ids: Iterable[str] | None = None, step: int | None = None
) -> pd.DataFrame:
    """The Lyapunov tables of committed runs (``train.lyapunov``), sorted by run_id, step, kind,
    index: columns run_id, step, kind, index, value (kinds in ``rnnlab.analysis.lyapunov_stats``).
    Empty when the analysis was off. ``run_ids`` and ``step`` restrict as in
    :func:`load_grad_norms`.
    """
    p = results_dir(path)
    part_of = parts_of_runs(p)
    if run_ids is not None:
        part_of = {r: part_of[r] for r in sorted(set(run_ids) & set(part_of))}
    return _read_batch_parts(p / LYAP_DIR, LYAP_SCHEMA, LYAP_SORT, part_of, step, optional=True)


def _read_batch_parts(folder: Path, schema: pa.Schema, order: list, part_of: dict[str, str],
                      step: int | None, optional: bool = False) -> pd.DataFrame:
    """The rows of the runs of ``part_of`` (run_id -> part, :func:`parts_of_runs`), at training
    ``step`` if given, from a dataset of one part file per batch (``folder``), sorted by
    ``order``; only the parts of those runs are read. ``optional``: a batch may have written no
    part there, which reads as no rows."""
    flt = pc.field("run_id").isin(list(part_of))
    if step is not None:
        flt = flt & (pc.field("step") == int(step))
    tables = [
        read_parquet(folder / part, filters=flt, need=schema)
        for part in sorted(set(part_of.values()))
        if not optional or (folder / part).is_file()
    ]
    table = pa.concat_tables(tables, promote_options="default") if tables else schema.empty_table()
    return table.sort_by(order).to_pandas()


def load_metrics(path: str | os.PathLike) -> pd.DataFrame:
    """Training metrics of committed runs (compacted file plus pending parts), by run_id, step."""
    p = results_dir(path)
    runs = runs_table_of(p)
    ids = pa.array(sorted(set(runs.column("run_id").to_pylist())), pa.string())
    tables, compacted = [], set()
    target = p / METRICS
    if target.is_file():
        compacted = read_parts_metadata(target)
        tables.append(
            read_parquet(
                target, "delete it and rerun `rnnlab sweep` to recompute", need=METRICS_COLS
            )
        )
    for part in sorted(set(runs.column("part").to_pylist()) - compacted):
        tables.append(read_parquet(p / METRICS_DIR / part, need=METRICS_COLS))
    table = (
        pa.concat_tables(tables, promote_options="default")
        if tables
        else METRICS_SCHEMA.empty_table()
    )
    table = table.filter(pc.is_in(table.column("run_id"), ids)).replace_schema_metadata(None)
    return table.sort_by(METRICS_SORT).to_pandas()
