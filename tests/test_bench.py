"""Smoke test of benchmarks/bench.py on its smallest workload: the record's structure and the
engine's agreement with the script's plain NumPy loop, never timings."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    yield from load_script(SCRIPT, "rnnlab_bench")


def test_bench_writes_a_complete_record(bench, tmp_path):
    out = tmp_path / "bench.json"
    assert bench.main(["--no-torch", "--only", "t1000", "--repeats", "1", "--quiet",
                       "--no-env-variant", "--json", str(out)]) == 0
    rec = json.loads(out.read_text())
    w = rec["workloads"]["t1000"]
    from rnnlab.engine.select import numba_available
    compiled = ({"compiled-f64", "compiled-f32", "compiled-f64-nolog"} if numba_available()
                else set())
    assert set(w["impls"]) == {"rnnlab-f64", "rnnlab-f32", "rnnlab-f64-nolog", "numpy-loop",
                               "numpy-floor"} | compiled
    for r in w["impls"].values():
        assert 0 < r["min_s"] <= r["median_s"] <= r["max_s"]
        assert r["gflops"] > 0
    for other in ["numpy-loop"] + (["compiled"] if compiled else []):
        check = w["check_f64"][other]
        assert check["loss"] < 1e-12 and check["grads"] < 1e-12 and check["ds"] < 1e-12
    for m in w["memory"].values():
        assert m["peak_bytes"] >= m["must_keep_bytes"] > 0
    t1000 = next(t for t in rec["targets"] if t["target"].startswith("t1000: torch"))
    assert t1000["value"] is None and t1000["met"] is None          # no torch rows here


def test_floor_does_the_recurrences_and_weight_gradients_products(bench, monkeypatch):
    """numpy_floor runs 2T stacked per-step products, then dWs and dWx over all T B rows."""
    import numpy as np

    calls = []
    real = np.matmul
    monkeypatch.setattr(np, "matmul",
                        lambda a, b, out=None: calls.append((a.shape, b.shape))
                        or real(a, b, out=out))
    w = bench.Workload("tiny", 3, 4, 2, 1, 5, 2, "tiny")              # R T B I H O
    bench.numpy_floor(w, np.float64)()
    assert calls == [((3, 2, 5), (3, 5, 5))] * 8 + [((3, 5, 8), (3, 8, 5)),
                                                     ((1, 1, 8), (3, 8, 5))]
    assert bench.floor_flops(w) == 3 * 2 * 4 * 2 * (3 * 25 + 5)


def test_ab_compares_two_revisions_of_the_engine(capsys):
    """benchmarks/ab.py imports HEAD's engine next to the working tree's and times both."""
    import subprocess

    root = SCRIPT.parents[1]
    if subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                      capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    spec = importlib.util.spec_from_file_location("rnnlab_ab", root / "benchmarks" / "ab.py")
    ab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ab)
    try:
        assert ab.main(["HEAD", "--only", "t1000", "--repeats", "1"]) == 0
    finally:
        for name in [m for m in sys.modules if m.startswith("rnnlab_ab_")]:
            del sys.modules[name]
    out = capsys.readouterr().out
    assert "old = HEAD, new = working tree" in out and "t1000" in out and "old/new" in out


def test_threads_splits_the_sweep_call_with_the_same_bits(capsys):
    """benchmarks/threads.py times the sweep call on one thread and in two halves on two threads,
    and the halves give the one call's bits."""
    pytest.importorskip("numba")
    for threads in load_script(SCRIPT.parent / "threads.py", "rnnlab_threads"):
        assert threads.main(["--rounds", "1", "--calls", "1"]) == 0
    out = capsys.readouterr().out
    assert "the halves give the one call's bits: True" in out
    assert "one call, one thread" in out and "two halves, two threads" in out


def test_draws_compares_the_two_ways_with_the_same_bits(capsys):
    """benchmarks/draws.py times NumPy's samplers against the compiled draws, whose bits agree."""
    pytest.importorskip("numba")
    for draws in load_script(SCRIPT.parent / "draws.py", "rnnlab_draws"):
        assert draws.main(["--runs", "2", "--batch", "4", "--rounds", "1", "--calls", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [ln for ln in lines if ln.split()[:1] and ln.split()[0] in ("recall", "adding",
                                                                        "random")]
    assert len(rows) == 6 and all(ln.endswith("True") for ln in rows)
