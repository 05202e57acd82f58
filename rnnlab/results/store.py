"""The results folder: crash-safe storage of finished runs, their gradient norms and metrics.

Layout of a results folder (default ``results/<experiment name>/``)::

    manifest.json        experiment name, fingerprint, resolved experiment, versions, command line
    runs/                one ``part-<hash>.parquet`` per committed batch: its runs, one row each
                         (column ``part`` names the batch's part files)
    runs.parquet         the runs of the batches compacted by ``finalize``
    grad_norms/          parquet dataset: one ``part-<hash>.parquet`` per batch of runs
    lyapunov/            the same for the Lyapunov analysis (``train.lyapunov``; only batches
                         that computed it have a part here: a missing part is no data, not damage)
    metrics/             parquet part files of the batches not yet compacted
    metrics.parquet      metrics compacted by ``finalize`` (lists its parts in its metadata)
    summary.csv          summary table (4 significant digits, identical on every machine)
    summary.md           the same table for humans
    .lock                pid and host of the sweep writing to the folder

Commit protocol. A batch writes its part files (grad norms, metrics, Lyapunov tables), then, last,
its runs part ``runs/part-<hash>.parquet``. Every file is written under a temporary name
``.tmp-<name>-<pid>`` in the same folder, fsynced and moved into place with ``os.replace``. A batch
is committed iff its runs are in a runs part or in ``runs.parquet``; nothing written before is
rewritten, so a commit costs the same at the first batch and the 10,000th. Part files of no
committed batch were left by a killed process and are deleted when the folder is next opened for
writing. Readers read the runs as one table (``runs.parquet`` plus the runs parts), only read part
files of committed batches and never see temporary files (pyarrow ignores names starting with
``.``; they do not end in ``.parquet`` either).

``finalize`` (at the end of a sweep) compacts the runs parts into ``runs.parquet`` and the metrics
parts into ``metrics.parquet``: each compacted file replaces the old one atomically, and only then
are the parts it holds deleted (killed in between, readers ignore the parts it holds and the next
open deletes them). The grad norms are large and stay a dataset folder that
``pandas.read_parquet(folder)``, pyarrow, polars and duckdb read directly. A run whose part file
was deleted (the advice given for a corrupted file) is dropped at the next open, so the next
sweep recomputes it. A folder written before runs parts existed (one ``runs.parquet``) is read
and resumed the same way.

This module holds the writer, :class:`ResultsStore`. The pieces it builds on live in their own
modules: ``layout`` (file names), ``parquet_io`` (atomic writes, checksummed reads, schemas),
``lock`` (the ``.lock``), ``readers`` (the ``load_*`` functions) and ``sysinfo`` (``system_info``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rnnlab.errors import UserError
from rnnlab.results.layout import (
    FORMAT_VERSION,
    GRAD_DIR,
    LOCK,
    LYAP_DIR,
    MANIFEST,
    METRICS,
    METRICS_DIR,
    OWN_NAMES,
    RUNS,
    RUNS_DIR,
    SUMMARY_CSV,
    SUMMARY_MD,
    is_part,
    part_name,
)
from rnnlab.results.lock import acquire_lock, release_lock
from rnnlab.results.parquet_io import (
    GRAD_SCHEMA,
    GRAD_SORT,
    LYAP_SCHEMA,
    LYAP_SORT,
    METRICS_COLS,
    METRICS_SCHEMA,
    METRICS_SORT,
    PARTS_KEY,
    RUNS_COLS,
    SEQ_KEY,
    TMP_PREFIX,
    combine_runs,
    commit_seq,
    disk_full_error,
    frame_table,
    is_disk_full,
    read_parquet,
    read_parts_metadata,
    runs_table,
    write_parquet_atomic,
    write_text_atomic,
)
from rnnlab.results.readers import (
    read_manifest,
    read_runs_parts,
    runs_parts,
)
from rnnlab.timing import timed

# --------------------------------------------------------------------------------------------
# the store


def _refuse_special(path: Path) -> None:
    """UserError if ``path`` is the root folder or the home folder: never a results folder."""
    try:
        real = path.resolve()
        home = Path.home().resolve()
    except (OSError, RuntimeError, KeyError):
        return
    if real == Path(real.anchor) or real == home:
        what = "the root folder" if real == Path(real.anchor) else "your home folder"
        raise UserError(f"{path} is {what}; pass --out a folder of its own (e.g. results/NAME)")


def _refuse_foreign(path: Path) -> None:
    """UserError if ``path`` (a folder without a manifest) holds anything not rnnlab's."""
    foreign = sorted(
        e for e in os.listdir(path)
        if e not in OWN_NAMES and not e.startswith(TMP_PREFIX)
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
        #: run_id -> (part, status) of every committed run
        self._runs: dict[str, tuple[str, str]] = {}
        #: parts whose runs are in runs.parquet (the others have a runs part in runs/)
        self._compacted: set[str] = set()
        #: the commit order of the next batch (``parquet_io.SEQ_KEY``)
        self._seq = 0
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
        _refuse_special(path)
        if path.exists() and not path.is_dir():
            raise UserError(f"{path} is a file, not a folder; pass another --out")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            if is_disk_full(e):
                raise disk_full_error(path, e) from None
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
            old = read_manifest(path / MANIFEST, "use --fresh to start over or pass another --out")
            if old.get("fingerprint") != self.fingerprint:
                made_by = old.get("name")
                if not old.get("fingerprint"):
                    why = f"its {MANIFEST} records no experiment (damaged?)"
                elif made_by and made_by != self.name:
                    why = f"it was made by experiment {made_by!r}, not {self.name!r}"
                else:
                    why = (f"experiment {self.name!r} changed since it was made (fingerprint "
                           f"{str(old['fingerprint'])[:12]} != {self.fingerprint[:12]})")
                raise UserError(f"{path}: {why}; use --fresh to overwrite or --out to write "
                                "elsewhere")
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
            write_text_atomic(path / MANIFEST, text)
        self._load_runs()
        self._cleanup()

    def _read_compacted(self) -> pa.Table | None:
        """``runs.parquet`` (the runs compacted by ``finalize``), or None."""
        if not (self.path / RUNS).exists():
            return None
        return read_parquet(self.path / RUNS,
                             "delete it and rerun `rnnlab sweep` to recompute all runs",
                             need=RUNS_COLS)

    def _load_runs(self) -> None:
        """Index the committed runs: runs.parquet, then the runs part of each later batch."""
        self._runs, self._compacted = {}, set()
        compacted = self._read_compacted()
        tables = []
        if compacted is not None:
            tables.append(compacted)
            self._compacted = set(compacted.column("part").to_pylist())
        tables += read_runs_parts(self.path, compacted)
        for table in tables:
            self._index(table)
        self._seq = max((commit_seq(t) for t in tables), default=-1) + 1

    def _index(self, table: pa.Table) -> None:
        cols = [table.column(c).to_pylist() for c in ("run_id", "part", "status")]
        for run_id, part, status in zip(*cols, strict=True):
            self._runs[run_id] = (part, status)

    def _remove_own_files(self) -> None:
        """Delete rnnlab's files (commit records first, so a crash here leaves no half state)."""
        for name in (RUNS, METRICS, SUMMARY_CSV, SUMMARY_MD):
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()
        for sub in (RUNS_DIR, GRAD_DIR, LYAP_DIR, METRICS_DIR):
            folder = self.path / sub
            if folder.is_dir():
                for e in os.listdir(folder):
                    if is_part(e) or e.startswith(TMP_PREFIX):
                        (folder / e).unlink()
                with contextlib.suppress(OSError):
                    folder.rmdir()
        self._runs, self._compacted = {}, set()

    def _cleanup(self) -> None:
        """Remove temporary files, orphan parts and runs whose part files are missing."""
        for folder in (self.path, self.path / RUNS_DIR, self.path / GRAD_DIR,
                       self.path / LYAP_DIR, self.path / METRICS_DIR):
            if folder.is_dir():
                for e in os.listdir(folder):
                    if e.startswith(TMP_PREFIX):
                        with contextlib.suppress(OSError):
                            (folder / e).unlink()
        merged = self._compacted_parts()            # metrics parts in metrics.parquet
        referenced = self._referenced_parts()
        broken = {
            p
            for p in referenced
            if not (self.path / GRAD_DIR / p).is_file()
            or (p not in merged and not (self.path / METRICS_DIR / p).is_file())
        }
        if broken:
            dropped = self._forget(run_id for run_id, (part, _) in self._runs.items()
                                   if part in broken)
            self.cleanup_notes.append(
                f"dropped {dropped} run(s) whose part files are missing; they will be recomputed"
            )
            referenced -= broken
        removed = 0
        for sub, keep_parts in ((RUNS_DIR, referenced - self._compacted),
                                (GRAD_DIR, referenced), (LYAP_DIR, referenced),
                                (METRICS_DIR, referenced - merged)):
            folder = self.path / sub
            if not folder.is_dir():
                continue
            for e in os.listdir(folder):
                if is_part(e) and e not in keep_parts:
                    (folder / e).unlink()
                    removed += 1
        if removed:
            self.cleanup_notes.append(
                f"removed {removed} part file(s) left by an interrupted sweep or finalize"
            )

    def _referenced_parts(self) -> set[str]:
        return {part for part, _ in self._runs.values()}

    def _compacted_parts(self) -> set[str]:
        path = self.path / METRICS
        return read_parts_metadata(path) if path.is_file() else set()

    def _forget(self, run_ids) -> int:
        """Remove committed runs from runs.parquet and from their runs parts (a part left empty
        is deleted: its batch is no longer committed). Returns how many were removed."""
        drop = set(run_ids) & set(self._runs)
        if not drop:
            return 0
        parts = {self._runs[r][0] for r in drop}
        ids = pa.array(sorted(drop), pa.string())
        if parts & self._compacted:
            table = self._read_compacted()
            table = table.filter(pc.invert(pc.is_in(table.column("run_id"), ids)))
            if table.num_rows:
                write_parquet_atomic(self.path / RUNS, runs_table(table.to_pylist()))
            else:
                (self.path / RUNS).unlink()
        for part in sorted(parts - self._compacted):
            target = self.path / RUNS_DIR / part
            table = read_parquet(target, need=RUNS_COLS)
            kept = table.filter(pc.invert(pc.is_in(table.column("run_id"), ids)))
            if kept.num_rows:
                kept = runs_table(kept.to_pylist()).replace_schema_metadata(table.schema.metadata)
                write_parquet_atomic(target, kept)
            else:
                target.unlink()
        for r in drop:
            del self._runs[r]
        self._compacted &= self._referenced_parts()
        return len(drop)

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
        self._lock_fd = acquire_lock(self.path)
        try:
            yield self
        finally:
            fd, self._lock_fd = self._lock_fd, None
            release_lock(self.path, fd)

    # -- writing -------------------------------------------------------------------------------

    def done_run_ids(self) -> set[str]:
        """Ids of the committed runs (whatever their status)."""
        return set(self._runs)

    def failed_run_ids(self) -> set[str]:
        """Ids of the committed runs whose status is ``failed``."""
        return {run_id for run_id, (_, status) in self._runs.items() if status == "failed"}

    def drop_runs(self, run_ids) -> int:
        """Forget committed runs (failed ones, to retry them): rewrite the runs files that hold
        them without them, atomically. Their part files are no longer referenced: a rerun of the
        same batch replaces them, and the next ``open`` removes any that stay orphaned. Returns
        the count."""
        drop = set(run_ids) & set(self._runs)
        if not drop:
            return 0
        # metrics.parquet first: it must no longer claim the dropped runs' parts as compacted,
        # or the rerun's new part of the same name would be taken as already merged. (Killed
        # between the writes, the next open drops the runs whose parts are gone: they rerun.)
        target = self.path / METRICS
        if target.is_file():
            table = read_parquet(target, "delete it and rerun `rnnlab sweep`", need=METRICS_COLS)
            keep = sorted(set(self._runs) - drop)
            still = {self._runs[r][0] for r in keep}
            parts = json.dumps(sorted(self._compacted_parts() & still))
            table = table.filter(pc.is_in(table.column("run_id"), pa.array(keep, pa.string())))
            table = table.replace_schema_metadata({PARTS_KEY: parts.encode()})
            write_parquet_atomic(target, table)
        return self._forget(drop)

    @timed("commit")
    def write_batch(
        self, runs: list[dict], grad_norms: pd.DataFrame | None, metrics: pd.DataFrame | None,
        lyapunov: pd.DataFrame | None = None,
    ) -> None:
        """Commit a batch of finished runs atomically (see the module docstring).

        ``grad_norms``, ``metrics`` and ``lyapunov`` (optional; no part file when None or empty)
        are long-format frames whose ``run_id`` values must belong to the batch. Committing a run
        id twice is a programming error (ValueError).
        """
        if not runs:
            return
        ids = [r["run_id"] for r in runs]
        if not all(isinstance(i, str) and i for i in ids):
            raise ValueError("every run needs a non-empty str run_id")
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate run_id in batch")
        again = [i for i in ids if i in self._runs]
        if again:
            raise ValueError(f"runs already stored: {sorted(again)[:5]}")
        grad = frame_table(grad_norms, GRAD_SCHEMA, "grad_norms")
        met = frame_table(metrics, METRICS_SCHEMA, "metrics")
        lya = frame_table(lyapunov, LYAP_SCHEMA, "lyapunov")
        for what, table in (("grad_norms", grad), ("metrics", met), ("lyapunov", lya)):
            stray = set(table.column("run_id").to_pylist()) - set(ids)
            if stray:
                raise ValueError(f"{what} has rows of runs not in the batch: {sorted(stray)[:5]}")
        part = part_name(ids)
        rows = runs_table([{**r, "part": part} for r in runs])
        rows = rows.replace_schema_metadata({SEQ_KEY: str(self._seq).encode()})
        written = []
        try:
            tables = [(GRAD_DIR, grad, GRAD_SORT), (METRICS_DIR, met, METRICS_SORT)]
            if lya.num_rows:
                tables.append((LYAP_DIR, lya, LYAP_SORT))
            tables.append((RUNS_DIR, rows, None))            # last: the commit
            for sub, table, order in tables:
                folder = self.path / sub
                try:
                    folder.mkdir(exist_ok=True)
                except OSError as e:
                    if is_disk_full(e):
                        raise disk_full_error(folder, e) from None
                    raise
                written.append(folder / part)     # before: an interrupt after the move counts
                write_parquet_atomic(folder / part, table if order is None
                                      else table.sort_by(order))
        except (Exception, KeyboardInterrupt):
            # not committed (disk full, or Ctrl-C in the middle): its parts are orphans, removed
            # now rather than at the next open, so that even a reader of the raw folder
            # (pandas.read_parquet of grad_norms/) sees committed data only; a Ctrl-C that lands
            # after the runs part was moved into place leaves a committed batch alone
            if not (self.path / RUNS_DIR / part).is_file():
                for p in written:
                    with contextlib.suppress(OSError):
                        p.unlink()
            raise
        finally:
            if (self.path / RUNS_DIR / part).is_file():
                self._index(rows)
                self._seq += 1

    def update_manifest(self, **changes) -> None:
        """Set (None: remove) top-level keys of ``manifest.json``, rewritten atomically; the
        name, fingerprint and format version stay."""
        kept = ("format_version", "name", "fingerprint")
        if any(k in kept for k in changes):
            raise ValueError(f"update_manifest: {', '.join(kept)} stay as they are")
        manifest = dict(self.manifest)
        for key, value in changes.items():
            if value is None:
                manifest.pop(key, None)
            else:
                manifest[key] = value
        with self.lock():
            write_text_atomic(self.path / MANIFEST,
                              json.dumps(manifest, indent=2, default=str) + "\n")
        self.manifest = manifest

    def write_summary(self, csv: str, markdown: str) -> None:
        """Write ``summary.csv`` and ``summary.md`` (the summary table rendered by the caller:
        ``analysis.summarize.render``)."""
        write_text_atomic(self.path / SUMMARY_CSV, csv)
        write_text_atomic(
            self.path / SUMMARY_MD, markdown if markdown.endswith("\n") else markdown + "\n"
        )

    @timed("finalize")
    def finalize(self) -> None:
        """Compact the runs parts into ``runs.parquet`` and the metrics parts of committed runs
        into ``metrics.parquet``.

        Each compacted file replaces the old one atomically (``metrics.parquet`` records the
        parts it holds in its metadata, ``runs.parquet`` in its ``part`` column); only then are
        those parts deleted. If killed in between, readers ignore the leftover parts and the
        next open deletes them.
        """
        self._compact_runs()
        target = self.path / METRICS
        compacted = self._compacted_parts()
        referenced = self._referenced_parts()
        new = sorted(referenced - compacted)
        if new:
            tables = []
            if target.is_file():
                tables.append(
                    read_parquet(target, "delete it and rerun `rnnlab sweep`", need=METRICS_COLS)
                )
            tables += [read_parquet(self.path / METRICS_DIR / p, need=METRICS_COLS) for p in new]
            table = pa.concat_tables(tables, promote_options="default")
            ids = pa.array(sorted(self.done_run_ids()), pa.string())
            table = table.filter(pc.is_in(table.column("run_id"), ids)).sort_by(METRICS_SORT)
            parts = json.dumps(sorted((compacted | set(new)) & referenced))
            table = table.replace_schema_metadata({PARTS_KEY: parts.encode()})
            write_parquet_atomic(target, table)
            compacted = compacted | set(new)
        _remove_parts(self.path / METRICS_DIR, compacted)

    def _compact_runs(self) -> None:
        compacted = self._read_compacted()
        new = runs_parts(self.path, compacted)
        if new:
            tables = [] if compacted is None else [compacted]
            tables += read_runs_parts(self.path, compacted)
            write_parquet_atomic(self.path / RUNS, combine_runs(tables))
            self._compacted |= set(new)
        _remove_parts(self.path / RUNS_DIR, self._compacted)


def _remove_parts(folder: Path, parts: set[str]) -> None:
    """Delete the part files of ``folder`` named in ``parts``, and the folder if left empty."""
    if folder.is_dir():
        for e in os.listdir(folder):
            if is_part(e) and e in parts:
                (folder / e).unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()
