"""``rnnlab.open``: the results object of a folder, and that ``norms`` reads only what is asked.

What is read is counted by a pyarrow filesystem that records every file opened and every byte
read through it (not by timing).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pytest
from conftest import tiny_exp

import rnnlab
from rnnlab.analysis.summarize import summary_of
from rnnlab.errors import UserError
from rnnlab.results.readers import load_grad_norms, load_metrics, load_runs
from rnnlab.run.sweep import run_sweep


class _CountingFile:
    """A binary file that adds every byte read to ``counter``."""

    def __init__(self, path, counter):
        self._f = open(path, "rb")  # noqa: SIM115 - closed by pyarrow through close()
        self._counter = counter
        self.closed = False

    def read(self, n=-1):
        data = self._f.read(n)
        self._counter["bytes"] += len(data)
        return data

    def seek(self, offset, whence=0):
        return self._f.seek(offset, whence)

    def tell(self):
        return self._f.tell()

    def close(self):
        self.closed = True
        self._f.close()

    def readable(self):
        return True

    def seekable(self):
        return True


class CountingHandler(pafs.FileSystemHandler):
    """The local filesystem, read-only, counting files opened and bytes read."""

    def __init__(self):
        self.local = pafs.LocalFileSystem()
        self.counter = {"bytes": 0}
        self.opened: list[str] = []

    def get_type_name(self):
        return "counting"

    def get_file_info(self, paths):
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.local.get_file_info(selector)

    def normalize_path(self, path):
        return path

    def open_input_file(self, path):
        self.opened.append(path)
        return pa.PythonFile(_CountingFile(path, self.counter), mode="r")

    def open_input_stream(self, path):
        return self.open_input_file(path)

    def _read_only(self, *args):
        raise OSError("read-only")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = _read_only
    delete_file = move = copy_file = open_output_stream = open_append_stream = _read_only


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny sweep in 4 batches (one per grid point, so 4 part files)."""
    out = tmp_path_factory.mktemp("open") / "out"
    run_sweep(tiny_exp(), out, max_batch=2)
    return out


def counting(folder):
    handler = CountingHandler()
    return rnnlab.open(folder, filesystem=pafs.PyFileSystem(handler)), handler


def test_open_gives_the_folder_tables(folder):
    r = rnnlab.open(folder)
    pd.testing.assert_frame_equal(r.runs, load_runs(folder))
    pd.testing.assert_frame_equal(r.metrics, load_metrics(folder))
    pd.testing.assert_frame_equal(r.norms(), load_grad_norms(folder))
    pd.testing.assert_frame_equal(r.summary(by=["task.seq_len"]),
                                  summary_of(folder, by=["task.seq_len"]))
    assert r.name == "tiny" and r.swept_keys == ["task.seq_len", "model.weight_scale"]
    assert r.manifest["experiment"]["name"] == "tiny"


def test_norms_filters_match_the_full_table(folder):
    r = rnnlab.open(folder)
    full = load_grad_norms(folder)
    pick = r.runs[r.runs["task.seq_len"] == 5]
    got = r.norms(columns=["ds"], runs=pick, steps=[0, 6])
    want = full[full["run_id"].isin(pick["run_id"]) & full["step"].isin([0, 6])]
    pd.testing.assert_frame_equal(got, want[["run_id", "step", "t", "ds"]].reset_index(drop=True))
    one = r.norms(runs=pick["run_id"].iloc[0], steps=3)
    assert set(one["run_id"]) == {pick["run_id"].iloc[0]} and set(one["step"]) == {3}


def test_norms_opens_only_the_part_files_of_the_runs_asked_for(folder):
    r, handler = counting(folder)
    n_parts = len(r.norm_files())
    assert n_parts == 4
    run = r.runs["run_id"].iloc[0]
    got = r.norms(runs=[run])
    assert set(got["run_id"]) == {run}
    opened = set(handler.opened)
    assert opened == set(r.norm_files([run])) and len(opened) == 1
    assert r.dataset([run]).files == r.norm_files([run])


@pytest.fixture(scope="module")
def long_folder(tmp_path_factory):
    """Part files of about 120 kB (T = 300, every step logged): larger than the footer read."""
    out = tmp_path_factory.mktemp("open") / "long"
    run_sweep(tiny_exp(train={"log_every": 1},
                       sweep={"task.seq_len": [300], "model.weight_scale": [0.5, 1.5]}),
              out, max_batch=2)
    return out


def test_norms_projects_and_filters_in_the_scan(folder):
    r = rnnlab.open(folder)
    run = r.runs["run_id"].iloc[0]
    scanner = r.scanner(columns=["ds"], runs=[run], steps=0)
    assert scanner.projected_schema.names == ["run_id", "step", "t", "ds"]
    assert r.dataset([run]).files == r.norm_files([run]) and len(r.norm_files([run])) == 1
    table = scanner.to_table()
    assert set(table.column("run_id").to_pylist()) == {run}
    assert set(table.column("step").to_pylist()) == {0}


def test_norms_reads_fewer_bytes_for_fewer_columns(long_folder):
    r_all, all_cols = counting(long_folder)
    r_all.norms()
    r_one, one_col = counting(long_folder)
    r_one.norms(columns=["ds"])
    assert 0 < one_col.counter["bytes"] < 0.75 * all_cols.counter["bytes"]
    run = r_one.runs["run_id"].iloc[0]
    r_run, one_run = counting(long_folder)
    r_run.norms(runs=[run])
    assert len(one_run.opened) == 1 and len(all_cols.opened) == 2
    assert one_run.counter["bytes"] < 0.6 * all_cols.counter["bytes"]


def test_bad_arguments_are_user_errors(folder):
    r = rnnlab.open(folder)
    with pytest.raises(UserError, match="no column 'nope'"):
        r.norms(columns=["nope"])
    with pytest.raises(UserError, match="no run with id"):
        r.norms(runs=["000000000000"])
    with pytest.raises(UserError, match="does not exist"):
        rnnlab.open(folder / "missing")


def test_check_gives_the_claims_as_a_table(folder, tmp_path):
    out = tmp_path / "claimed"
    run_sweep(tiny_exp(claims=[{"says": "two runs per row", "expect": "n == 2"},
                               {"says": "never", "expect": "n == 3"}]), out)
    verdicts = rnnlab.open(out).check()
    assert verdicts["says"].tolist() == ["two runs per row", "never"]
    assert verdicts["holds"].tolist() == [True, False]
    none = rnnlab.open(folder).check()                     # an experiment without claims
    assert len(none) == 0 and list(none.columns) == list(verdicts.columns)


def test_norms_take_what_a_dataframe_gives(folder):
    """A step taken from a table is a NumPy integer; a filter may leave no run."""
    r = rnnlab.open(folder)
    last = r.metrics["step"].max()
    assert isinstance(last, np.integer)
    got = r.norms(columns="ds", steps=last)
    assert len(got) and set(got["step"]) == {int(last)}
    none = r.norms(columns="ds", runs=r.runs[r.runs["task.seq_len"] == 99])
    assert none.empty and list(none.columns) == ["run_id", "step", "t", "ds"]


def test_plot_takes_one_where_text_and_a_list_of_one_key(folder):
    pytest.importorskip("matplotlib")
    r = rnnlab.open(folder)
    one = r.plot("decay", where="task.seq_len=5", by=["weight_scale"])
    listed = r.plot("decay", where=["task.seq_len=5"], by="weight_scale")
    assert len(one.axes) == len(listed.axes)
    with pytest.raises(UserError, match=r"^by: got \['a', 'b'\]; allowed: one swept key"):
        r.plot("decay", by=["a", "b"])


def test_plot_returns_a_figure_and_writes_nothing(folder):
    pytest.importorskip("matplotlib")
    before = sorted(p.name for p in folder.iterdir())
    fig = rnnlab.open(folder).plot("decay", by="weight_scale")
    assert fig.axes and type(fig).__name__ == "Figure"
    assert sorted(p.name for p in folder.iterdir()) == before


def test_repr_html_has_the_summary_and_a_figure(folder):
    pytest.importorskip("matplotlib")
    text = rnnlab.open(folder)._repr_html_()
    assert text.count("<tr>") == 1 + len(summary_of(folder))
    assert 'src="data:image/png;base64,' in text
