"""The results folder: crash-safe storage of finished runs, their gradient norms and metrics.

Layout of a results folder (default ``results/<experiment name>/``)::

    manifest.json        experiment name, fingerprint, resolved experiment, versions, command line
    runs.parquet         one row per committed run; column ``part`` names the run's part files
    grad_norms/          parquet dataset: one ``part-<hash>.parquet`` per batch of runs
    metrics/             parquet part files of the batches not yet compacted
    metrics.parquet      metrics compacted by ``finalize`` (lists its parts in its metadata)
    summary.csv          summary table (4 significant digits, identical on every machine)
    summary.md           the same table for humans
    .lock                pid and host of the sweep writing to the folder

Commit protocol. A batch first writes its two part files (grad norms, metrics), then rewrites
``runs.parquet`` with the batch's rows appended. Every file is written under a temporary name
``.tmp-<name>-<pid>`` in the same folder, fsynced and moved into place with ``os.replace``. A batch
is committed iff its runs are in ``runs.parquet``; part files that ``runs.parquet`` does not
reference were left by a killed process and are deleted when the folder is next opened for writing.
Readers only read part files referenced by ``runs.parquet`` and never see temporary files (pyarrow
ignores names starting with ``.``; they do not end in ``.parquet`` either).

Metrics are small and read whole, so ``finalize`` compacts them into one ``metrics.parquet``; the
grad norms are large and stay a dataset folder that ``pandas.read_parquet(folder)``, pyarrow,
polars and duckdb read directly. A run whose part file was deleted (the advice given for a corrupted
file) is dropped from ``runs.parquet`` at the next open, so the next sweep recomputes it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import hashlib
import io
import json
import math
import os
import platform
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rnnlab.errors import UserError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
RUNS = "runs.parquet"
GRAD_DIR = "grad_norms"
METRICS_DIR = "metrics"
METRICS = "metrics.parquet"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
LOCK = ".lock"
TMP_PREFIX = ".tmp-"
PART_PREFIX = "part-"
_PARTS_KEY = b"rnnlab.parts"
_OWN_NAMES = {MANIFEST, RUNS, GRAD_DIR, METRICS_DIR, METRICS, SUMMARY_CSV, SUMMARY_MD, LOCK}

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
    "solved": pa.bool_(),
    "steps_to_solve": pa.int64(),
    "rho_start": pa.float64(),
    "sigma_start": pa.float64(),
    "rho_end": pa.float64(),
    "sigma_end": pa.float64(),
    "clip_rate": pa.float64(),
    "decay_bound": pa.float64(),
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
#: Columns a file must have to be read (a damaged footer can rename or drop them).
_RUNS_COLS = pa.schema([("run_id", pa.string()), ("status", pa.string()), ("part", pa.string())])
_METRICS_COLS = METRICS_SCHEMA
_GRAD_SORT = [("run_id", "ascending"), ("step", "ascending"), ("t", "ascending")]
_METRICS_SORT = [("run_id", "ascending"), ("step", "ascending")]


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


def _replace_atomic(path: Path, write) -> None:
    """Call ``write(tmp)``, fsync ``tmp`` and move it onto ``path``; remove ``tmp`` on failure."""
    tmp = _tmp_path(path)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _write_text_atomic(path: Path, text: str) -> None:
    _replace_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _write_parquet_atomic(path: Path, table: pa.Table) -> None:
    _replace_atomic(
        path,
        lambda tmp: pq.write_table(table, tmp, compression="zstd", write_page_checksum=True),
    )


def _corrupt(path: Path, reason: str, advice: str) -> UserError:
    reason = str(reason).splitlines()[0] if str(reason) else type(reason).__name__
    return UserError(f"{path}: cannot read ({reason}); {advice}")


_PART_ADVICE = "delete it and rerun `rnnlab sweep` to recompute the runs it held"


def _read_parquet(
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
                    raise _corrupt(path, f"no column {field.name!r}", advice)
                typ = schema.field(field.name).type
                if _kind(typ) != _kind(field.type):
                    raise _corrupt(path, f"column {field.name!r} has type {typ}", advice)
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
                raise _corrupt(path, f"read {seen} of {f.metadata.num_rows} rows", advice)
        return table
    except (pa.ArrowException, OSError, ValueError) as e:
        raise _corrupt(path, e, advice) from e


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


def _read_parts_metadata(path: Path) -> set[str]:
    """The part names a compacted ``metrics.parquet`` holds (from its schema metadata)."""
    try:
        meta = pq.read_schema(path).metadata or {}
        if _PARTS_KEY not in meta:  # finalize always writes it
            raise ValueError(f"no {_PARTS_KEY.decode()} metadata")
        parts = json.loads(meta[_PARTS_KEY])
        if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
            raise ValueError(f"bad {_PARTS_KEY.decode()} metadata")
    except (pa.ArrowException, OSError, ValueError) as e:
        raise _corrupt(path, e, "delete it and rerun `rnnlab sweep` to recompute its runs") from e
    return set(parts)


def part_name(run_ids: Iterable[str]) -> str:
    """Deterministic part file name of a batch: ``part-<sha1(sorted run ids)[:16]>.parquet``."""
    digest = hashlib.sha1("\n".join(sorted(run_ids)).encode()).hexdigest()[:16]
    return f"{PART_PREFIX}{digest}.parquet"


def _is_part(name: str) -> bool:
    return name.startswith(PART_PREFIX) and name.endswith(".parquet")


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


def _runs_table(rows: list[dict]) -> pa.Table:
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


def _frame_table(df: pd.DataFrame | None, schema: pa.Schema, what: str) -> pa.Table:
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


def _runs_to_pandas(table: pa.Table) -> pd.DataFrame:
    """pandas view of a runs table with stable dtypes (nullable ints/bools where needed)."""
    df = table.to_pandas()
    for name, typ in zip(table.schema.names, table.schema.types, strict=True):
        col = table.column(name)
        if pa.types.is_integer(typ) and (name in NULLABLE_INT_RUN_COLUMNS or col.null_count):
            df[name] = pd.array(col.to_pylist(), dtype="Int64")
        elif pa.types.is_boolean(typ) and col.null_count:
            df[name] = pd.array(col.to_pylist(), dtype="boolean")
    return df


# --------------------------------------------------------------------------------------------
# the lock


def _host() -> str:
    return socket.gethostname()


def _read_holder(lock_path: Path) -> tuple[int | None, str]:
    try:
        parts = lock_path.read_text(encoding="utf-8").split()
    except OSError:
        return None, ""
    try:
        return int(parts[0]), (parts[1] if len(parts) > 1 else "")
    except (IndexError, ValueError):
        return None, ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _busy(folder: Path, pid: int | None, host: str) -> UserError:
    who = f"pid {pid}" if pid is not None else "pid unknown"
    if host and host != _host():
        who += f" on {host}"
    return UserError(
        f"another rnnlab sweep ({who}) is writing to {folder}; wait for it to finish or pass --out"
    )


def _acquire_lock(folder: Path) -> int:
    """Exclusive lock on ``folder/.lock``; returns its file descriptor.

    ``fcntl.flock`` is released by the kernel when the holder dies (even by SIGKILL), so a
    stale lock file is simply taken over. On filesystems without flock the pid and host written in
    the file decide: a lock whose pid is not alive on this host is stale and taken over.
    The file is unlinked on release; the inode check below makes that race-free.
    """
    lock_path = folder / LOCK
    for _ in range(20):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _busy(folder, *_read_holder(lock_path)) from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                os.close(fd)
                raise
            pid, host = _read_holder(lock_path)
            if pid is not None and (host != _host() or pid == os.getpid() or _pid_alive(pid)):
                os.close(fd)
                raise _busy(folder, pid, host) from None
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder unlinked the file between our open and flock
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {_host()}\n".encode())
        os.fsync(fd)
        return fd
    raise UserError(f"could not lock {lock_path}; try again")


def _release_lock(folder: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        (folder / LOCK).unlink()
    os.close(fd)


# --------------------------------------------------------------------------------------------
# the store


def _refuse_foreign(path: Path) -> None:
    """UserError if ``path`` (a folder without a manifest) holds anything not rnnlab's."""
    foreign = sorted(
        e for e in os.listdir(path)
        if e not in _OWN_NAMES and not e.startswith(TMP_PREFIX)
    )
    if foreign:
        raise UserError(
            f"{path} is not empty and is not an rnnlab results folder "
            f"(no {MANIFEST}; found {foreign[0]!r}); pass another --out"
        )


class ResultsStore:
    """Writer of one results folder. Create with :meth:`ResultsStore.open`.

    ``cleanup_notes`` lists what opening repaired (orphan parts deleted, runs dropped because
    their part file is missing) so the caller can tell the user.
    """

    def __init__(self, path: Path, fingerprint: str, name: str):
        self.path = path
        self.fingerprint = fingerprint
        self.name = name
        self.manifest: dict = {}
        self.cleanup_notes: list[str] = []
        self._runs: pa.Table | None = None
        self._lock_fd: int | None = None

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        fingerprint: str,
        manifest: dict,
        fresh: bool = False,
        experiment_name: str,
    ) -> ResultsStore:
        """Open (creating it and its parents if needed) the results folder ``path`` for writing.

        Refuses (UserError) a path that is a file or not writable, a folder written by an
        experiment with another fingerprint (unless ``fresh``), a non-empty folder that is not a
        results folder, and a folder another live sweep holds locked. ``fresh`` deletes rnnlab's
        own files in the folder (and nothing else) and starts over. Writes ``manifest.json`` when
        the folder is new or fresh, deletes temporary and orphan part files, and drops runs whose
        part files are missing.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise UserError(f"{path} is a file, not a folder; pass another --out")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(
                f"cannot create results folder {path} ({e.strerror}); pass a writable --out"
            ) from e
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserError(f"results folder {path} is not writable; fix its permissions or --out")
        if not (path / MANIFEST).is_file():
            _refuse_foreign(path)       # before the lock file: a foreign folder stays untouched
        store = cls(path, fingerprint, experiment_name)
        with store.lock():
            store._open_locked(manifest, fresh)
        return store

    def _open_locked(self, manifest: dict, fresh: bool) -> None:
        path = self.path
        entries = [e for e in os.listdir(path) if e != LOCK and not e.startswith(TMP_PREFIX)]
        has_manifest = (path / MANIFEST).is_file()
        if not has_manifest:
            _refuse_foreign(path)
            if entries and not fresh:
                raise UserError(
                    f"{path} holds rnnlab result files but no {MANIFEST}; "
                    "use --fresh to start over or pass another --out"
                )
        elif not fresh:
            old = _read_manifest(path / MANIFEST, "use --fresh to start over or pass another --out")
            if old.get("fingerprint") != self.fingerprint:
                made_by = old.get("name")
                who = f"experiment {made_by!r}" if made_by else "another experiment"
                raise UserError(
                    f"{path} was made by {who} or the experiment changed since "
                    f"(fingerprint {str(old.get('fingerprint'))[:12]} != {self.fingerprint[:12]}); "
                    "use --fresh to overwrite or --out to write elsewhere"
                )
            self.manifest = old
        if fresh:
            self._remove_own_files()
        if fresh or not has_manifest:
            self.manifest = {
                "format_version": FORMAT_VERSION,
                "name": self.name,
                "fingerprint": self.fingerprint,
                **{k: v for k, v in manifest.items() if k not in ("name", "fingerprint")},
            }
            text = json.dumps(self.manifest, indent=2, default=str) + "\n"
            _write_text_atomic(path / MANIFEST, text)
        runs_path = path / RUNS
        if runs_path.exists():
            self._runs = _read_parquet(
                runs_path,
                "delete it and rerun `rnnlab sweep` to recompute all runs",
                need=_RUNS_COLS,
            )
        self._cleanup()

    def _remove_own_files(self) -> None:
        """Delete rnnlab's files (commit record first, so a crash here leaves no half state)."""
        for name in (RUNS, METRICS, SUMMARY_CSV, SUMMARY_MD):
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()
        for sub in (GRAD_DIR, METRICS_DIR):
            folder = self.path / sub
            if folder.is_dir():
                for e in os.listdir(folder):
                    if _is_part(e) or e.startswith(TMP_PREFIX):
                        (folder / e).unlink()
                with contextlib.suppress(OSError):
                    folder.rmdir()
        self._runs = None

    def _cleanup(self) -> None:
        """Remove temporary files, orphan parts and runs whose part files are missing."""
        for folder in (self.path, self.path / GRAD_DIR, self.path / METRICS_DIR):
            if folder.is_dir():
                for e in os.listdir(folder):
                    if e.startswith(TMP_PREFIX):
                        with contextlib.suppress(OSError):
                            (folder / e).unlink()
        compacted = self._compacted_parts()
        referenced = self._referenced_parts()
        broken = {
            p
            for p in referenced
            if not (self.path / GRAD_DIR / p).is_file()
            or (p not in compacted and not (self.path / METRICS_DIR / p).is_file())
        }
        if broken:
            keep = pc.invert(pc.is_in(self._runs.column("part"), pa.array(sorted(broken))))
            dropped = self._runs.num_rows
            self._runs = self._runs.filter(keep)
            dropped -= self._runs.num_rows
            _write_parquet_atomic(self.path / RUNS, self._runs)
            self.cleanup_notes.append(
                f"dropped {dropped} run(s) whose part files are missing; they will be recomputed"
            )
            referenced -= broken
        removed = 0
        for sub, keep_parts in ((GRAD_DIR, referenced), (METRICS_DIR, referenced - compacted)):
            folder = self.path / sub
            if not folder.is_dir():
                continue
            for e in os.listdir(folder):
                if _is_part(e) and e not in keep_parts:
                    (folder / e).unlink()
                    removed += 1
        if removed:
            self.cleanup_notes.append(
                f"removed {removed} part file(s) left by an interrupted sweep or finalize"
            )

    def _referenced_parts(self) -> set[str]:
        if self._runs is None:
            return set()
        return set(self._runs.column("part").to_pylist())

    def _compacted_parts(self) -> set[str]:
        path = self.path / METRICS
        return _read_parts_metadata(path) if path.is_file() else set()

    # -- locking -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[ResultsStore]:
        """Hold the folder's exclusive lock (``.lock``: pid and host) while the block runs.

        A second holder gets UserError "another rnnlab sweep (pid N) is writing to DIR". Locks
        left by dead processes are taken over. Re-entrant within this store object.
        """
        if self._lock_fd is not None:
            yield self
            return
        self._lock_fd = _acquire_lock(self.path)
        try:
            yield self
        finally:
            fd, self._lock_fd = self._lock_fd, None
            _release_lock(self.path, fd)

    # -- writing -------------------------------------------------------------------------------

    def done_run_ids(self) -> set[str]:
        """Ids of the committed runs (whatever their status)."""
        if self._runs is None:
            return set()
        return set(self._runs.column("run_id").to_pylist())

    def write_batch(
        self, runs: list[dict], grad_norms: pd.DataFrame | None, metrics: pd.DataFrame | None
    ) -> None:
        """Commit a batch of finished runs atomically (see the module docstring).

        ``grad_norms`` and ``metrics`` are long-format frames whose ``run_id`` values must belong
        to the batch. Committing a run id twice is a programming error (ValueError).
        """
        if not runs:
            return
        ids = [r["run_id"] for r in runs]
        if not all(isinstance(i, str) and i for i in ids):
            raise ValueError("every run needs a non-empty str run_id")
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate run_id in batch")
        again = set(ids) & self.done_run_ids()
        if again:
            raise ValueError(f"runs already stored: {sorted(again)[:5]}")
        grad = _frame_table(grad_norms, GRAD_SCHEMA, "grad_norms")
        met = _frame_table(metrics, METRICS_SCHEMA, "metrics")
        for what, table in (("grad_norms", grad), ("metrics", met)):
            stray = set(table.column("run_id").to_pylist()) - set(ids)
            if stray:
                raise ValueError(f"{what} has rows of runs not in the batch: {sorted(stray)[:5]}")
        part = part_name(ids)
        for sub, table, order in ((GRAD_DIR, grad, _GRAD_SORT), (METRICS_DIR, met, _METRICS_SORT)):
            folder = self.path / sub
            folder.mkdir(exist_ok=True)
            _write_parquet_atomic(folder / part, table.sort_by(order))
        old = self._runs.to_pylist() if self._runs is not None else []
        table = _runs_table(old + [{**r, "part": part} for r in runs])
        _write_parquet_atomic(self.path / RUNS, table)
        self._runs = table

    def write_summary(self, table: pd.DataFrame, markdown: str) -> None:
        """Write ``summary.csv`` (rendered with 4 significant digits) and ``summary.md``."""
        from rnnlab.summarize import render

        _write_text_atomic(self.path / SUMMARY_CSV, render(table, "csv"))
        _write_text_atomic(
            self.path / SUMMARY_MD, markdown if markdown.endswith("\n") else markdown + "\n"
        )

    def finalize(self) -> None:
        """Compact the metrics parts of committed runs into ``metrics.parquet``.

        ``metrics.parquet`` replaces the old one atomically and records the parts it holds in
        its metadata; only then are those parts deleted. If killed in between, readers ignore
        the leftover parts and the next open deletes them.
        """
        target = self.path / METRICS
        compacted = self._compacted_parts()
        referenced = self._referenced_parts()
        new = sorted(referenced - compacted)
        if new:
            tables = []
            if target.is_file():
                tables.append(
                    _read_parquet(target, "delete it and rerun `rnnlab sweep`", need=_METRICS_COLS)
                )
            tables += [_read_parquet(self.path / METRICS_DIR / p, need=_METRICS_COLS) for p in new]
            table = pa.concat_tables(tables, promote_options="default")
            ids = pa.array(sorted(self.done_run_ids()), pa.string())
            table = table.filter(pc.is_in(table.column("run_id"), ids)).sort_by(_METRICS_SORT)
            parts = json.dumps(sorted((compacted | set(new)) & referenced))
            table = table.replace_schema_metadata({_PARTS_KEY: parts.encode()})
            _write_parquet_atomic(target, table)
            compacted = compacted | set(new)
        folder = self.path / METRICS_DIR
        if folder.is_dir():
            for e in os.listdir(folder):
                if _is_part(e) and e in compacted:
                    (folder / e).unlink()
            with contextlib.suppress(OSError):
                folder.rmdir()


# --------------------------------------------------------------------------------------------
# reading


def is_results_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder with a ``manifest.json``."""
    p = Path(path)
    return p.is_dir() and (p / MANIFEST).is_file()


def _results_dir(path: str | os.PathLike) -> Path:
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


def _read_manifest(path: Path, advice: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _corrupt(path, e, advice) from e
    if not isinstance(data, dict):
        raise _corrupt(path, "not a JSON object", advice)
    return data


def load_manifest(path: str | os.PathLike) -> dict:
    """The manifest of the results folder ``path``."""
    p = _results_dir(path)
    return _read_manifest(p / MANIFEST, "delete the folder and rerun `rnnlab sweep`")


def _runs_table_of(p: Path) -> pa.Table:
    runs_path = p / RUNS
    if not runs_path.is_file():
        raise UserError(f"{p} has no finished runs yet (no {RUNS}); run `rnnlab sweep` first")
    return _read_parquet(
        runs_path, "delete it and rerun `rnnlab sweep` to recompute all runs", need=_RUNS_COLS
    )


def load_runs(path: str | os.PathLike) -> pd.DataFrame:
    """One row per committed run, sorted by ``run_id`` (without the internal ``part`` column).

    Dtypes are stable: ``diverged_step``/``steps_to_solve`` are nullable ``Int64``, floats are
    float64 with NaN for missing values, text columns are strings.
    """
    table = _runs_table_of(_results_dir(path))
    if "part" in table.column_names:
        table = table.drop_columns(["part"])
    return _runs_to_pandas(table.sort_by([("run_id", "ascending")]))


def load_grad_norms(
    path: str | os.PathLike, run_ids: Iterable[str] | None = None, step: int | None = None
) -> pd.DataFrame:
    """Per-time-step gradient norms of committed runs, sorted by run_id, step, t.

    ``run_ids`` restricts to those runs (an unknown id is a UserError); ``step`` to one training
    step. Only the part files holding the requested runs are read.
    """
    p = _results_dir(path)
    runs = _runs_table_of(p)
    part_of = dict(
        zip(runs.column("run_id").to_pylist(), runs.column("part").to_pylist(), strict=True)
    )
    if run_ids is None:
        wanted = sorted(part_of)
    else:
        wanted = sorted(set(run_ids))
        unknown = [r for r in wanted if r not in part_of]
        if unknown:
            raise UserError(f"{p}: no run with id {unknown[0]!r}")
    flt = pc.field("run_id").isin(wanted)
    if step is not None:
        flt = flt & (pc.field("step") == int(step))
    tables = [
        _read_parquet(p / GRAD_DIR / part, filters=flt, need=GRAD_SCHEMA)
        for part in sorted({part_of[r] for r in wanted})
    ]
    table = (
        pa.concat_tables(tables, promote_options="default") if tables else GRAD_SCHEMA.empty_table()
    )
    return table.sort_by(_GRAD_SORT).to_pandas()


def load_metrics(path: str | os.PathLike) -> pd.DataFrame:
    """Training metrics of committed runs (compacted file plus pending parts), by run_id, step."""
    p = _results_dir(path)
    runs = _runs_table_of(p)
    ids = pa.array(sorted(set(runs.column("run_id").to_pylist())), pa.string())
    tables, compacted = [], set()
    target = p / METRICS
    if target.is_file():
        compacted = _read_parts_metadata(target)
        tables.append(
            _read_parquet(
                target, "delete it and rerun `rnnlab sweep` to recompute", need=_METRICS_COLS
            )
        )
    for part in sorted(set(runs.column("part").to_pylist()) - compacted):
        tables.append(_read_parquet(p / METRICS_DIR / part, need=_METRICS_COLS))
    table = (
        pa.concat_tables(tables, promote_options="default")
        if tables
        else METRICS_SCHEMA.empty_table()
    )
    table = table.filter(pc.is_in(table.column("run_id"), ids)).replace_schema_metadata(None)
    return table.sort_by(_METRICS_SORT).to_pandas()


# --------------------------------------------------------------------------------------------
# manifest helpers


def _blas_info() -> dict:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            config = np.show_config(mode="dicts")
    except (TypeError, ValueError, AttributeError):
        return {}
    deps = (config or {}).get("Build Dependencies", {})
    out = {}
    for lib in ("blas", "lapack"):
        info = deps.get(lib) or {}
        if info.get("name"):
            out[lib] = f"{info['name']} {info.get('version', '')}".strip()
    return out


def system_info() -> dict:
    """Versions and machine facts for the manifest; the caller adds experiment and command line."""
    import rnnlab

    return {
        "rnnlab": rnnlab.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "pyarrow": pa.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "blas": _blas_info(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
