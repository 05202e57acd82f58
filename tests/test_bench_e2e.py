"""Smoke test of benchmarks/e2e.py on the tiny experiment: the structure of its record, not timings.

The script is loaded from its file (benchmarks/ is not a package). The in-process time split must
see every batch through its probes and leave rnnlab's functions as they were; a full ``main`` run
(one repeat, memory scales 1 and 2, a CLI subprocess per row) must write a complete JSON record.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import load_script, tiny_data, write_yaml

import rnnlab.engine
import rnnlab.run.plan
import rnnlab.run.sweep
import rnnlab.run.train
from rnnlab.results.store import ResultsStore

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "e2e.py"


@pytest.fixture(scope="module")
def e2e():
    yield from load_script(SCRIPT, "rnnlab_bench_e2e")


@pytest.fixture
def tiny_file(tmp_path) -> Path:
    return write_yaml(tmp_path / "tiny.yaml", tiny_data())   # 8 runs, 2 batches (one per seq_len)


def originals() -> dict:
    return {"train_batch": rnnlab.run.train.train_batch,
            "plan": rnnlab.run.plan.plan_batches,
            "bptt": rnnlab.run.train.bptt, "forward": rnnlab.run.train.forward,
            "summary_of": rnnlab.run.sweep.summary_of, "open": vars(ResultsStore)["open"],
            "write_batch": vars(ResultsStore)["write_batch"]}


def test_time_split_structure(e2e, tiny_file):
    before = originals()
    split = e2e.time_split(tiny_file, [], repeats=2)
    assert originals() == before                                   # every probe removed
    assert rnnlab.run.train.bptt is rnnlab.engine.bptt
    assert len(split["repeats"]) == 2 and split["runs"] == 8
    calls = split["calls"]
    assert calls["training"] == 2 and calls["commit"] == 2         # one per batch
    assert calls["engine"] > calls["training"] and calls["summary"] >= 1
    expected = {*e2e.TOP, *e2e.INNER, "training_rest", "other"}
    for rep in split["repeats"]:
        sec = rep["seconds"]
        assert set(sec) == expected
        assert all(v >= -1e-9 for v in sec.values())
        assert sec["engine"] <= sec["training"] <= rep["wall_s"]
        assert sum(sec[b] for b in e2e.TOP) + sec["other"] == pytest.approx(rep["wall_s"])
        assert rep["statuses"]["failed"] == 0
    assert set(split["share"]) == expected
    assert all(0 <= split["share"][b] <= 1 for b in e2e.TOP)


def test_main_writes_record(e2e, tiny_file, tmp_path):
    out = tmp_path / "e2e.json"
    result = e2e.main(["--file", str(tiny_file), "--repeats", "1", "--scales", "1,2",
                       "--mem-steps", "2", "--json", str(out), "--quiet"])
    rec = json.loads(out.read_text())
    assert rec["schema"] == 1 and rec["repeats"] == 1
    assert rec["experiment"]["runs"] == 8 and rec["experiment"]["batches"] == 2
    cli = rec["cli"]
    assert cli["command"].startswith("python -m rnnlab sweep")
    assert cli["wall_s"] > 0 and cli["peak_rss_bytes"] > 0
    assert cli["calls"]["load"] == 1 and cli["calls"]["training"] == 2   # probes in the child
    for rep in cli["repeats"]:
        sec = rep["seconds"]
        assert set(sec) == {*e2e.TOP, *e2e.INNER, "training_rest", "other", "startup", "cli_rest"}
        assert sec["startup"] > 0 and sec["engine"] <= sec["training"]
        parts = sec["startup"] + sum(sec[b] for b in e2e.TOP) + sec["other"] + sec["cli_rest"]
        assert parts == pytest.approx(rep["wall_s"])
    mem = rec["memory"]
    assert [r["repeats"] for r in mem["scales"]] == [1, 2]
    assert [r["runs"] for r in mem["scales"]] == [4, 8]
    assert [r["batches"] for r in mem["scales"]] == [2, 2]
    assert all(r["peak_rss_bytes"] > 0 for r in mem["scales"]) and mem["ratio"] >= 1
    assert mem["ratio_full_batches"] is None                      # tiny batches never reach 64
    an = rec["memory_anatomy"]
    assert an["largest_batch"] == 4 and an["budget_estimate_bytes"] > 0
    peaks = an["peaks_bytes"]
    assert [k.split()[0] for k in peaks] == ["engine", "evaluation", "data"]
    assert all(0 < v <= an["batch_peak_bytes"] for v in peaks.values()), (peaks, an)
    assert len(rec["targets"]) == 4
    assert all(t["met"] in (True, False, None) for t in rec["targets"])
    assert rec["targets"][-1]["met"] is None
    assert result["time_split"]["runs"] == 8


def test_child_peak_rss_is_its_own(e2e, tmp_path):
    """A child's ru_maxrss must not include this process's memory (Linux keeps the hiwater RSS
    of the image replaced at exec, so a child forked from a big parent reports the parent's)."""
    big = bytearray(256 * 2 ** 20)
    big[::4096] = b"\1" * len(big[::4096])                  # touch every page: resident
    res = e2e.run_child([sys.executable, "-c", "pass"], cwd=tmp_path)
    assert 0 < res["peak_rss_bytes"] < 128 * 2 ** 20
    assert res["wall_s"] > 0 and res["cpu_s"] >= 0
    del big


def test_load_measurement_structure(e2e):
    """``--load N``: per-batch times at both ends, memory and open files of a fresh process."""
    load = e2e.load_test(300)                      # 300 tiny runs: 5 batches of at most 64
    assert load["runs"] == 300 and load["batches"] == 5 and load["failed"] == 0
    assert load["edge_batches"] == 1
    for key in ("batch_s", "commit_s"):
        assert 0 < load[key]["start"] and 0 < load[key]["end"]
    assert load["growth"] == pytest.approx(load["batch_s"]["end"] / load["batch_s"]["start"])
    assert 0 < load["rss_bytes"]["after_first_batch"] <= load["peak_rss_bytes"]
    assert 3 <= load["open_fds_end"] <= load["open_fds_max"] < 64
    target, = e2e.load_targets(load)
    assert target["met"] == (load["growth"] <= e2e.LOAD_GROWTH)


def test_workers_benchmark_times_each_configuration(tmp_path, tiny_file):
    """benchmarks/workers.py on the tiny experiment: a row per engine and worker count with its
    repeats, a table and a JSON record (the timings themselves are not checked)."""
    loaded = load_script(SCRIPT.parent / "workers.py", "rnnlab_bench_workers")
    module = next(loaded)
    record = tmp_path / "w.json"
    assert module.main(["--file", str(tiny_file), "--workers", "1,2", "--engines", "numpy",
                        "--repeats", "1", "--json", str(record)]) == 0
    rows = json.loads(record.read_text())["rows"]
    assert [(r["command"], r["engine"], r["workers"]) for r in rows] == [
        ("sweep", "numpy", 1), ("sweep", "numpy", 2)]
    assert all(r["wall_s"] > 0 and r["cpu_s"] > 0 and len(r["repeats"]) == 1 for r in rows)
    if sys.platform.startswith("linux"):   # fork-server workers adopted, their CPU time counted
        assert all(rep["forked_workers_counted"] for r in rows for rep in r["repeats"])
    assert "| sweep | numpy | 2 |" in module.table(rows)


def test_full_sample_times_each_tree_and_weighs_the_ratios(tmp_path):
    """benchmarks/full_sample.py on one experiment's sample (spectrum: no training), two "trees"
    that are this interpreter with each engine: a CPU time per experiment and tree, ratios
    against the first tree (1 for itself), the weight from results/README.md, a JSON record."""
    loaded = load_script(SCRIPT.parent / "full_sample.py", "rnnlab_bench_full_sample")
    module = next(loaded)
    record = tmp_path / "f.json"
    assert module.main(["--trees", f"a={sys.executable},b={sys.executable}",
                        "--engines", "a=numpy,b=numpy", "--only", "spectrum",
                        "--json", str(record)]) == 0
    data = json.loads(record.read_text())
    assert data["weights"]["limits"] > 1000 and "spectrum" in data["weights"]
    a, b = data["rows"]["a"], data["rows"]["b"]
    assert a["ratio"] == {"spectrum": 1.0} and a["weighted_ratio"] == 1.0
    assert a["cpu_s"]["spectrum"] > 0 and b["ratio"]["spectrum"] > 0
    exp = module.yaml.safe_load(module.sample_file("lstm", tmp_path, True).read_text())
    assert "gru" not in exp["sweep"]["zip"]["model.cell"] and "claims" not in exp
    assert exp["sweep"]["task.seq_len"] == [20, 50] and exp["train"]["steps"] == 100
