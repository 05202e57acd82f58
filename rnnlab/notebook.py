"""A results folder from Python: ``rnnlab.open(DIR)`` for notebooks and scripts.

    >>> r = rnnlab.open("results/quickstart")
    >>> r.runs                                   # one row per run (pandas)
    >>> r.norms(columns=["ds"], runs=r.runs[r.runs["task.seq_len"] == 20], steps=0)
    >>> r.summary(by=["task.seq_len"])
    >>> r.plot("decay")                          # a matplotlib Figure
    >>> r.check()                                # the claims and whether each holds

``norms`` reads the ``grad_norms/`` parquet dataset through ``pyarrow.dataset``: only the part
files that hold the requested runs become fragments of the dataset, only the requested columns
are read from them, and the run and step filters are pushed into the scan (row groups whose
statistics exclude them are skipped). A large folder is never loaded whole for a small question.
Everything else comes from the readers of :mod:`rnnlab.results.readers`, with their checks.
"""

from __future__ import annotations

import html
import numbers
import os
from collections.abc import Iterable
from functools import cached_property

import pandas as pd

from rnnlab.errors import UserError
from rnnlab.results.layout import GRAD_DIR
from rnnlab.results.parquet_io import GRAD_SCHEMA, GRAD_SORT
from rnnlab.results.readers import (
    load_manifest,
    load_metrics,
    load_runs,
    parts_of_runs,
    results_dir,
)

NORM_COLUMNS = [f.name for f in GRAD_SCHEMA if f.name not in ("run_id", "step", "t")]
INDEX_COLUMNS = ["run_id", "step", "t"]


def open(path: str | os.PathLike, *, filesystem=None) -> Results:  # noqa: A001 - rnnlab.open
    """The results folder ``path`` as a :class:`Results` (a UserError if it is not one).

    ``filesystem``: a ``pyarrow.fs.FileSystem`` through which :meth:`Results.norms` reads the
    gradient norms (default: the local one).
    """
    return Results(path, filesystem=filesystem)


class Results:
    """Lazy view of one results folder; each property reads its file on first use."""

    def __init__(self, path: str | os.PathLike, *, filesystem=None):
        self.path = results_dir(path)
        self._fs = filesystem

    def __repr__(self) -> str:
        return f"rnnlab.Results({str(self.path)!r})"

    # ------------------------------------------------------------------ the folder's tables
    @cached_property
    def manifest(self) -> dict:
        """The manifest: versions, machine, the resolved experiment, the command line."""
        return load_manifest(self.path)

    @property
    def name(self) -> str:
        exp = self.manifest.get("experiment") or {}
        return str(self.manifest.get("name") or exp.get("name") or self.path.name)

    @cached_property
    def runs(self) -> pd.DataFrame:
        """One row per committed run (``rnnlab.results.readers.load_runs``)."""
        return load_runs(self.path)

    @cached_property
    def metrics(self) -> pd.DataFrame:
        """Loss, accuracy and gradient norm per logged training step of every run."""
        return load_metrics(self.path)

    @property
    def swept_keys(self) -> list[str]:
        """The swept settings (dotted run columns such as ``task.seq_len``)."""
        return [str(c) for c in self.runs.columns if "." in str(c)]

    def summary(self, by: Iterable[str] | None = None, step: int | None = None) -> pd.DataFrame:
        """The summary table of ``rnnlab report`` (grouped by ``by``, default the swept keys;
        gradient statistics at training ``step``, default initialisation)."""
        from rnnlab.analysis.summarize import summary_of

        return summary_of(self.path, by=None if by is None else list(by), step=step)

    def check(self) -> pd.DataFrame:
        """The experiment's claims checked on this folder (``rnnlab check``): one row per claim
        with ``says``, ``expect``, ``where``, ``holds_on``, ``holds``, ``observed``, ``rows``."""
        from dataclasses import asdict

        from rnnlab.experiment.check import check_folder

        columns = ["says", "expect", "where", "holds_on", "holds", "observed", "rows"]
        return pd.DataFrame([asdict(r) for r in check_folder(self.path)], columns=columns)

    # ------------------------------------------------------------------ gradient norms
    def norm_files(self, runs=None) -> list[str]:
        """The part files of ``grad_norms/`` that hold ``runs`` (all committed runs if None)."""
        part_of = parts_of_runs(self.path, self._run_ids(runs))
        return [str(self.path / GRAD_DIR / p) for p in sorted(set(part_of.values()))]

    def dataset(self, runs=None):
        """A ``pyarrow.dataset`` over the part files that hold ``runs`` only."""
        import pyarrow.dataset as ds

        files = self.norm_files(runs)
        fmt = ds.ParquetFileFormat(
            default_fragment_scan_options=ds.ParquetFragmentScanOptions(
                page_checksum_verification=True))
        return ds.dataset(files, schema=GRAD_SCHEMA, format=fmt, filesystem=self._fs)

    def scanner(self, columns: Iterable[str] | None = None, runs=None,
                steps: int | Iterable[int] | None = None):
        """The ``pyarrow.dataset.Scanner`` behind :meth:`norms`: a dataset of the part files
        of ``runs`` only, projected onto ``run_id, step, t`` and ``columns``, filtered on
        ``runs`` and ``steps``."""
        import pyarrow as pa
        import pyarrow.compute as pc

        wanted = list(NORM_COLUMNS if columns is None else
                      [columns] if isinstance(columns, str) else columns)
        bad = [c for c in wanted if c not in NORM_COLUMNS]
        if bad:
            raise UserError(f"norms: no column {bad[0]!r}; allowed: {', '.join(NORM_COLUMNS)}")
        ids = self._run_ids(runs)
        flt = None if ids is None else pc.field("run_id").isin(pa.array(ids, pa.string()))
        if steps is not None:
            want_steps = ([int(steps)] if isinstance(steps, numbers.Integral)
                          else [int(s) for s in steps])
            step_flt = pc.field("step").isin(pa.array(want_steps, pa.int64()))
            flt = step_flt if flt is None else flt & step_flt
        return self.dataset(ids).scanner(columns=INDEX_COLUMNS + list(dict.fromkeys(wanted)),
                                         filter=flt)

    def norms(self, columns: Iterable[str] | None = None, runs=None,
              steps: int | Iterable[int] | None = None) -> pd.DataFrame:
        """Per-time-step gradient norms, sorted by run_id, step, t; reads only what is asked.

        ``columns``: of ``ds``, ``dWs``, ``dWx``, ``dc`` (default all; ``run_id``, ``step`` and
        ``t`` always come along). ``runs``: run ids, or a DataFrame with a ``run_id`` column
        (e.g. a filtered ``.runs``). ``steps``: one training step or several.
        """
        import pyarrow as pa

        scanner = self.scanner(columns, runs, steps)
        try:
            table = scanner.to_table()
        except (pa.ArrowException, OSError) as e:
            raise UserError(f"{self.path / GRAD_DIR}: cannot read the gradient norms ({e}); "
                            "delete the folder's damaged part and rerun `rnnlab sweep`") from None
        return table.sort_by(GRAD_SORT).to_pandas()

    def _run_ids(self, runs) -> list[str] | None:
        if runs is None:
            return None
        if isinstance(runs, pd.DataFrame):
            runs = runs["run_id"]
        if isinstance(runs, str):
            runs = [runs]
        return sorted({str(r) for r in runs})

    # ------------------------------------------------------------------ figures
    def plot(self, kind: str = "heatmap", **options):
        """A matplotlib Figure of ``rnnlab plot`` (``by``: a swept key, ``step``, ``where``:
        ``"KEY=VALUE"`` or a list of them, ``metric``), not written to a file. What the command
        would print about the figure comes as warnings."""
        import warnings

        from rnnlab.plot import figure

        options.setdefault("note", lambda message: warnings.warn(message, stacklevel=3))
        return figure(self.path, kind, **options)

    def _repr_html_(self) -> str:
        """The summary table and one figure, for Jupyter."""
        import base64
        import io

        from rnnlab.analysis.summarize import display_cells

        table = self.summary()
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
                       for row in display_cells(table))
        parts = [f"<h4>{html.escape(self.name)}: {html.escape(str(self.path))} "
                 f"({len(self.runs)} runs)</h4>",
                 f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"]
        for kind in ("heatmap", "decay"):
            try:
                fig = self.plot(kind)
            except UserError:
                continue
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=72)
            data = base64.b64encode(buf.getvalue()).decode()
            parts.append(f'<img alt="{kind}" src="data:image/png;base64,{data}">')
            break
        return "\n".join(parts)
