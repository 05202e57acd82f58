"""Parquet and file I/O of the results folder: atomic, fsynced writes and checksummed reads.

Every file is written under a temporary name ``.tmp-<name>-<pid>`` in its folder, fsynced and
moved into place with ``os.replace`` (the commit protocol built on this is in
:mod:`rnnlab.results.store`). Reads verify page checksums, row counts and required columns, and turn
damage into a one-line UserError naming the file and the remedy. Also here: the fixed schemas of run
rows, grad norms and metrics, and the conversion of python rows and DataFrames to arrow tables with
stable types.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rnnlab.errors import EnvironmentFault, UserError

TMP_PREFIX = ".tmp-"
PARTS_KEY = b"rnnlab.parts"
#: Schema metadata of a runs part: its batch's place in the order of commits (0, 1, ...), so the
#: runs read as one table have the column order and types of the batches appended in that order.
SEQ_KEY = b"rnnlab.seq"

#: Columns every run row has, with fixed types (other columns, e.g. swept ones, are inferred).
RUN_FIELDS: dict[str, pa.DataType] = {
    "run_id": pa.string(),
    "seed": pa.int64(),
    "seq_len": pa.int64(),
    "status": pa.string(),
    "error": pa.string(),
    "diverged_step": pa.int64(),
    "final_loss": pa.float64(),
    "accuracy": pa.float64(),
    "accuracy_hs": pa.float64(),
    "accuracy_pascanu": pa.float64(),
    "solved": pa.bool_(),
    "steps_to_solve": pa.int64(),
    "rho_start": pa.float64(),
    "sigma_start": pa.float64(),
    "rho_end": pa.float64(),
    "sigma_end": pa.float64(),
    "clip_rate": pa.float64(),
    "decay_bound": pa.float64(),
    "decay_bound_end": pa.float64(),
    "last_step": pa.int64(),
    "wall_time": pa.float64(),
}
#: Integer run columns that may be missing; loaded as pandas' nullable ``Int64`` always.
NULLABLE_INT_RUN_COLUMNS = ("diverged_step", "steps_to_solve")

GRAD_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("step", pa.int64()),
        ("t", pa.int64()),
        ("ds", pa.float64()),
        ("dWs", pa.float64()),
        ("dWx", pa.float64()),
        ("dc", pa.float64()),
    ]
)
METRICS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("step", pa.int64()),
        ("loss", pa.float64()),
        ("accuracy", pa.float64()),
        ("grad_norm", pa.float64()),
        ("grad_norm_clipped", pa.float64()),
        ("clipped", pa.bool_()),
    ]
)
LYAP_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("step", pa.int64()),
        ("kind", pa.string()),
        ("index", pa.int64()),
        ("value", pa.float64()),
    ]
)
#: Columns a file must have to be read (a damaged footer can rename or drop them).
RUNS_COLS = pa.schema([("run_id", pa.string()), ("status", pa.string()), ("part", pa.string())])
METRICS_COLS = METRICS_SCHEMA
GRAD_SORT = [("run_id", "ascending"), ("step", "ascending"), ("t", "ascending")]
METRICS_SORT = [("run_id", "ascending"), ("step", "ascending")]
LYAP_SORT = [("run_id", "ascending"), ("step", "ascending"), ("kind", "ascending"),
              ("index", "ascending")]


# --------------------------------------------------------------------------------------------
# small file helpers


def _tmp_path(path: Path) -> Path:
    return path.parent / f"{TMP_PREFIX}{path.name}-{os.getpid()}"


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_FULL_TEXTS = ("No space left on device", "Disk quota exceeded")


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError saying the disk is full or the quota is used up (pyarrow's IO errors
    carry the errno or, at least, its text)."""
    if not isinstance(exc, OSError):
        return False
    return exc.errno in _FULL_ERRNOS or any(t in str(exc) for t in _FULL_TEXTS)


def disk_full_error(folder: Path, exc: OSError) -> EnvironmentFault:
    """The one-line error of a write that found the disk full (or the quota used up)."""
    cause = os.strerror(exc.errno) if exc.errno in _FULL_ERRNOS else next(
        (t for t in _FULL_TEXTS if t in str(exc)), "disk full")
    return EnvironmentFault(
        f"cannot write to {folder} ({cause}); finished runs are kept: free some space (or move "
        "the folder to a disk with room) and rerun the same command to resume")


def _replace_atomic(path: Path, write) -> None:
    """Call ``write(tmp)``, fsync ``tmp`` and move it onto ``path``; remove ``tmp`` on failure.

    A full disk or a used-up quota is an :class:`EnvironmentFault` naming the folder; ``path``
    is then left as it was."""
    tmp = _tmp_path(path)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if is_disk_full(e):
            raise disk_full_error(path.parent, e) from None
        raise
    _fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    _replace_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_parquet_atomic(path: Path, table: pa.Table) -> None:
    _replace_atomic(
        path,
        lambda tmp: pq.write_table(table, tmp, compression="zstd", write_page_checksum=True),
    )


def corrupt(path: Path, reason: str, advice: str) -> UserError:
    reason = str(reason).splitlines()[0] if str(reason) else type(reason).__name__
    return UserError(f"{path}: cannot read ({reason}); {advice}")


_PART_ADVICE = "delete it and rerun `rnnlab sweep` to recompute the runs it held"


def read_parquet(
    path: Path, advice: str = _PART_ADVICE, *, filters=None, need: pa.Schema | None = None
) -> pa.Table:
    """Read a parquet file whole, or the rows matching the pyarrow expression ``filters``.

    A missing, truncated or corrupted file, or one without the columns of ``need`` (or with
    another kind of type: string, integer, float, bool), is a UserError naming it. Page checksums
    are verified (files written without them still read), and ``filters`` is applied batch by
    batch after decoding, never through the footer's statistics, so that damaged statistics
    cannot silently drop rows.
    """
    if not path.is_file():
        raise UserError(f"{path} is missing; rerun `rnnlab sweep` to recompute the runs it held")
    try:
        with pq.ParquetFile(path, page_checksum_verification=True) as f:
            schema = f.schema_arrow
            names = schema.names  # decodes the column names: damaged ones raise here
            for field in need or ():
                if field.name not in names:
                    raise corrupt(path, f"no column {field.name!r}", advice)
                typ = schema.field(field.name).type
                if _kind(typ) != _kind(field.type):
                    raise corrupt(path, f"column {field.name!r} has type {typ}", advice)
            if filters is None:
                table = f.read()
                seen = table.num_rows
            else:
                tables, seen = [], 0
                for batch in f.iter_batches():
                    seen += batch.num_rows
                    tables.append(pa.Table.from_batches([batch]).filter(filters))
                table = pa.concat_tables(tables) if tables else schema.empty_table()
            if seen != f.metadata.num_rows:   # a damaged column chunk header can hide rows
                raise corrupt(path, f"read {seen} of {f.metadata.num_rows} rows", advice)
        return table
    except (pa.ArrowException, OSError, ValueError) as e:
        raise corrupt(path, e, advice) from e


def _kind(typ: pa.DataType) -> str:
    """The family of an arrow type (string, integer, float, bool), so that a reader's choice of
    string or large_string or string_view does not matter."""
    if typ in (pa.string(), pa.large_string()) or str(typ) == "string_view":
        return "string"
    for kind, test in (("integer", pa.types.is_integer), ("float", pa.types.is_floating),
                       ("bool", pa.types.is_boolean)):
        if test(typ):
            return kind
    return str(typ)


def read_parts_metadata(path: Path) -> set[str]:
    """The part names a compacted ``metrics.parquet`` holds (from its schema metadata)."""
    try:
        meta = pq.read_schema(path).metadata or {}
        if PARTS_KEY not in meta:  # finalize always writes it
            raise ValueError(f"no {PARTS_KEY.decode()} metadata")
        parts = json.loads(meta[PARTS_KEY])
        if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
            raise ValueError(f"bad {PARTS_KEY.decode()} metadata")
    except (pa.ArrowException, OSError, ValueError) as e:
        raise corrupt(path, e, "delete it and rerun `rnnlab sweep` to recompute its runs") from e
    return set(parts)


# --------------------------------------------------------------------------------------------
# converting python rows and DataFrames to arrow tables with stable types


def plain_value(v: object) -> object:
    """numpy scalars -> python scalars; NaN and pandas NA -> None."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _coerce(v: object, typ: pa.DataType, column: str) -> object:
    v = plain_value(v)
    if v is None:
        return None
    if pa.types.is_string(typ):
        return v if isinstance(v, str) else _as_text(v)
    if pa.types.is_boolean(typ):
        if isinstance(v, bool):
            return v
        raise ValueError(f"run column {column!r}: expected a bool, got {v!r}")
    if pa.types.is_integer(typ):
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        raise ValueError(f"run column {column!r}: expected an int, got {v!r}")
    if pa.types.is_floating(typ):
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
        raise ValueError(f"run column {column!r}: expected a number, got {v!r}")
    return v


def _as_text(v: object) -> str:
    if isinstance(v, list | tuple | dict):
        return json.dumps(v, sort_keys=True, default=str)
    return str(v)


def _infer_type(values: list) -> pa.DataType:
    """Type of a non-fixed run column from its values (None ignored; all None -> float64)."""
    present = [v for v in values if v is not None]
    if not present:
        return pa.float64()
    if all(isinstance(v, bool) for v in present):
        return pa.bool_()
    if any(isinstance(v, bool) for v in present):
        return pa.string()
    if all(isinstance(v, int) for v in present):
        return pa.int64()
    if all(isinstance(v, int | float) for v in present):
        return pa.float64()
    return pa.string()


def runs_table(rows: list[dict]) -> pa.Table:
    """Arrow table of run rows: fixed types for RUN_FIELDS, inferred types for other columns.

    Column order: ``run_id``, then columns in order of first appearance, then fixed columns that
    no row had, then ``part``. ``solved`` missing or None is stored as False (a run that produced
    no result did not solve the task). Rows are sorted by ``run_id``.
    """
    names: list[str] = ["run_id"]
    seen = {"run_id", "part"}
    for row in rows:
        for k in row:
            if k not in seen:
                seen.add(k)
                names.append(k)
    names += [k for k in RUN_FIELDS if k not in seen] + ["part"]
    rows = sorted(rows, key=lambda r: r["run_id"])
    arrays, fields = [], []
    for name in names:
        raw = [plain_value(r.get(name)) for r in rows]
        typ = RUN_FIELDS.get(name) or (pa.string() if name == "part" else _infer_type(raw))
        if name == "solved":
            raw = [False if v is None else v for v in raw]
        vals = [_coerce(v, typ, name) for v in raw]
        arrays.append(pa.array(vals, type=typ))
        fields.append(pa.field(name, typ))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def commit_seq(table: pa.Table) -> int:
    """The place of a runs part in the order of commits (-1 when it has none)."""
    try:
        return int((table.schema.metadata or {}).get(SEQ_KEY, b"-1"))
    except ValueError:
        return -1


def combine_runs(tables: list[pa.Table]) -> pa.Table:
    """One runs table (sorted by ``run_id``) from the tables of several batches in the order they
    were committed: concatenated
    when they have the same columns and types (the usual case: every run of an experiment has the
    same keys), which gives the table ``runs_table`` builds from all their rows; otherwise (a
    column new or gone, a type that the values together infer differently) rebuilt from the rows.
    """
    tables = [t.replace_schema_metadata(None) for t in tables]
    if all(t.schema.equals(tables[0].schema) for t in tables[1:]):
        both = pa.concat_tables(tables)
        return both.sort_by([("run_id", "ascending")]).combine_chunks()
    return runs_table([row for t in tables for row in t.to_pylist()])


def frame_table(df: pd.DataFrame | None, schema: pa.Schema, what: str) -> pa.Table:
    """Arrow table of a long-format frame with the fixed ``schema`` (NaN -> null).

    ``run_id`` and ``step`` are required; other schema columns that are absent become null.
    Columns not in the schema are kept with inferred types, after the schema's columns.
    """
    if df is None:
        return schema.empty_table()
    for req in ("run_id", "step"):
        if req not in df.columns:
            raise ValueError(f"{what}: missing column {req!r}")
    arrays, fields = [], []
    for f in schema:
        if f.name in df.columns:
            col = df[f.name]
            if pa.types.is_string(f.type):
                col = col.astype(str)
            arrays.append(pa.array(col.to_numpy(), type=f.type, from_pandas=True))
        else:
            arrays.append(pa.nulls(len(df), type=f.type))
        fields.append(f)
    for extra in df.columns:
        if extra not in schema.names:
            arr = pa.array(df[extra], from_pandas=True)
            arrays.append(arr)
            fields.append(pa.field(str(extra), arr.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def runs_to_pandas(table: pa.Table) -> pd.DataFrame:
    """pandas view of a runs table with stable dtypes (nullable ints/bools where needed)."""
    df = table.to_pandas()
    for name, typ in zip(table.schema.names, table.schema.types, strict=True):
        col = table.column(name)
        if pa.types.is_integer(typ) and (name in NULLABLE_INT_RUN_COLUMNS or col.null_count):
            df[name] = pd.array(col.to_pylist(), dtype="Int64")
        elif pa.types.is_boolean(typ) and col.null_count:
            df[name] = pd.array(col.to_pylist(), dtype="boolean")
    return df
