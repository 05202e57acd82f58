"""``rnnlab compare A B``: identical folders give no marks; a changed cell is marked; the manifests
are compared key by key."""

from __future__ import annotations

import io
import json
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import invoke, ok, tiny_exp

from rnnlab.report.compare import compare, manifest_differences
from rnnlab.run.sweep import run_sweep


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    a = root / "a"
    run_sweep(tiny_exp(), a)
    same = root / "same"
    shutil.copytree(a, same)
    return a, same, root


def changed_copy(a, dest, seq_len, scale, **values):
    """A copy of folder ``a`` whose runs at one grid point have other ``values``."""
    shutil.copytree(a, dest)
    table = pq.read_table(dest / "runs.parquet")
    df = table.to_pandas()
    rows = (df["task.seq_len"] == seq_len) & (df["model.weight_scale"] == scale)
    for k, v in values.items():
        df.loc[rows, k] = v
    pq.write_table(pa_table(df, table.schema), dest / "runs.parquet")
    return dest


def pa_table(df, schema):
    import pyarrow as pa

    return pa.Table.from_pandas(df, schema=schema, preserve_index=False)


def test_identical_folders_have_no_marks(folders):
    a, same, _ = folders
    cmp = compare(a, same)
    assert cmp.marks == 0 and cmp.manifest == [] and cmp.keys == ["task.seq_len",
                                                                  "model.weight_scale"]
    assert (cmp.table["present"] == "both").all() and len(cmp.table) == 4
    res = ok(invoke("compare", a, same))
    assert "*" not in res.stdout and "0 mark(s)" in res.stdout
    assert "manifests: same" in res.stdout
    assert max(len(line) for line in res.stdout.splitlines()) <= 80


def test_a_changed_cell_is_marked_and_only_it(folders):
    a, _, root = folders
    b = changed_copy(a, root / "changed", 5, 1.5, clip_rate=0.5)
    cmp = compare(a, b)
    flags = cmp.table["clip_rate_differs"].tolist()
    rows = cmp.table[["task.seq_len", "model.weight_scale"]].values.tolist()
    assert flags == [r == [5, 1.5] for r in rows]
    assert cmp.marks == 1
    res = ok(invoke("compare", a, b))
    marked = [line for line in res.stdout.splitlines() if "*" in line]
    assert len(marked) == 1 and "0.5 *" in marked[0] and "B" in marked[0]
    md = ok(invoke("compare", a, b, "--format", "markdown")).stdout
    assert md.count(" -> 0.5 *") == 1 and md.count("*") == 1
    csv = pd.read_csv(io.StringIO(ok(invoke("compare", a, b, "--format", "csv")).stdout))
    assert csv["clip_rate_differs"].sum() == 1
    assert {"solved_a", "solved_lo_a", "solved_hi_b", "acc_hi_b"} <= set(csv.columns)


def test_intervals_that_do_not_overlap_are_marked(folders):
    a, _, root = folders
    left = changed_copy(a, root / "left", 3, 0.5, accuracy=0.3)      # interval [0.3, 0.3]
    right = changed_copy(a, root / "right", 3, 0.5, accuracy=0.6)
    cmp = compare(left, right)
    row = cmp.table[(cmp.table["task.seq_len"] == 3) & (cmp.table["model.weight_scale"] == 0.5)]
    assert row["acc_hi_a"].iloc[0] < row["acc_lo_b"].iloc[0]
    assert row["acc_differs"].iloc[0] and cmp.table["acc_differs"].sum() == 1
    assert compare(left, left).marks == 0


def test_overlapping_intervals_are_not_marked():
    from rnnlab.report.compare import _overlap_differs

    assert not _overlap_differs(0.5, 0.1, 0.9, 0.8, 0.4, 0.95)
    assert _overlap_differs(0.2, 0.1, 0.3, 0.8, 0.4, 0.95)
    assert _overlap_differs(0.2, float("nan"), 0.3, 0.8, 0.4, 0.95)      # no interval: values
    assert not _overlap_differs(0.2, float("nan"), 0.3, 0.2, 0.4, 0.95)


def test_manifest_and_grid_differences(folders, tmp_path):
    a, _, _ = folders
    b = tmp_path / "b"
    run_sweep(tiny_exp(train={"lr": 0.05}, sweep={"task.seq_len": [3, 7],
                                                  "model.weight_scale": [0.5, 1.5]}), b)
    cmp = compare(a, b)
    keys = {d["key"] for d in cmp.manifest}
    assert "experiment.train.lr" in keys and "created" not in keys and "command" not in keys
    assert sorted(cmp.table["present"].tolist()) == ["a", "a", "b", "b", "both", "both"]
    assert not cmp.table.loc[cmp.table["present"] != "both", "loss_differs"].any()
    doc = json.loads(ok(invoke("compare", a, b, "--format", "json")).stdout)
    assert doc["by"] == ["task.seq_len", "model.weight_scale"] and len(doc["rows"]) == 6
    assert any(d["key"] == "experiment.train.lr" and d["b"] == 0.05 for d in doc["manifest"])
    md = ok(invoke("compare", a, b, "--format", "markdown", "--by", "task.seq_len")).stdout
    assert "experiment.train.lr" in md and md.count("\n| ") >= 3
    res = ok(invoke("compare", a, b))
    assert "manifest differences" in res.stdout and "experiment.train.lr" in res.stdout


def test_claims_of_each_side(tmp_path):
    claims = [{"says": "every row has two runs", "expect": "n == 2"},
              {"says": "accuracy above 0.9", "expect": "acc > 0.9"}]
    a, b = tmp_path / "a", tmp_path / "b"
    run_sweep(tiny_exp(claims=claims), a)
    run_sweep(tiny_exp(claims=claims[:1], repeats=3), b)
    cmp = compare(a, b)
    assert cmp.claims == [{"says": "every row has two runs", "a": "PASS", "b": "FAIL"},
                          {"says": "accuracy above 0.9", "a": "FAIL", "b": None}]
    res = ok(invoke("compare", a, b))
    assert "every row has two runs" in res.stdout and "claims" in res.stdout
    assert json.loads(ok(invoke("compare", a, b, "--format", "json")).stdout)["claims"]


def test_flat_manifest_differences():
    a = {"numpy": "2.0", "blas": {"blas": "openblas"}, "created": "x", "axes": [1, 2]}
    b = {"numpy": "2.1", "blas": {"blas": "mkl"}, "created": "y", "axes": [1, 2]}
    assert manifest_differences(a, b) == [
        {"key": "blas.blas", "a": "openblas", "b": "mkl"},
        {"key": "numpy", "a": "2.0", "b": "2.1"}]


def test_not_a_folder_is_one_line_exit_2(folders, tmp_path):
    a, _, _ = folders
    res = invoke("compare", a, tmp_path / "nope")
    assert res.exit_code == 2 and "does not exist" in res.stderr and "Traceback" not in res.stderr
    res = invoke("compare", a, a, "--by", "model.nope")
    assert res.exit_code == 2 and "model.nope" in res.stderr


def test_terminal_view_options(folders):
    a, same, _ = folders
    picked = ok(invoke("compare", a, same, "--columns", "acc,loss")).stdout
    header = next(line for line in picked.splitlines() if "side" in line)
    assert " acc " in header and " loss " in header and " decay " not in header
    wide = ok(invoke("compare", a, same, "--wide")).stdout
    for name in ("clip_rate", "grad_ratio", "decay_sd", "horizon"):
        assert f" {name} " in wide, name
    res = invoke("compare", a, same, "--columns", "nope")
    assert res.exit_code == 2 and "'nope'" in res.stderr
