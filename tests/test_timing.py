"""rnnlab.timing: the stages a sweep marks, recorded only inside ``record``; nesting counts once;
memory peaks per stage; ``rnnlab sweep --timings``."""

from __future__ import annotations

import pickle
import time
import tracemalloc

import numpy as np
import pytest
from conftest import invoke, ok

from rnnlab import timing
from rnnlab.run.train import train_batch


@timing.timed("outer")
def outer(n):
    with timing.section("inner"):
        time.sleep(0.01)
    return inner_again(n) if n else 0


@timing.timed("outer")
def inner_again(n):
    return outer(n - 1)


def test_sections_count_outermost_call_once_and_overlap_across_names():
    with timing.record() as t:
        outer(2)                        # outer -> inner_again -> outer -> ...: one outer call
    assert t.calls == {"outer": 1, "inner": 3}
    assert t.seconds["inner"] >= 0.03 - 1e-3
    assert t.seconds["outer"] >= t.seconds["inner"]
    assert set(t.first) == {"outer", "inner"}


def test_nothing_is_recorded_outside_record_and_errors_close_sections():
    outer(1)                                            # no recorder: nothing to see, no error
    with timing.record() as t:
        with pytest.raises(KeyError):
            with timing.section("boom"):
                raise KeyError("x")
        with timing.section("boom"):
            pass
    assert t.calls == {"boom": 2} and t._depth == {"boom": 0}
    with timing.record() as t2:
        pass
    assert t2.seconds == {} and t is not t2


def test_timed_keeps_the_function_name_and_pickles():
    assert outer.__name__ == "outer" and outer.__wrapped__.__name__ == "outer"
    assert pickle.loads(pickle.dumps(train_batch)) is train_batch     # sent to worker processes


def test_memory_peaks_per_section_nested():
    tracemalloc.start()
    try:
        with timing.record(memory=True) as t:
            with timing.section("a"):
                big = np.ones(2_000_000)                 # 16 MB, freed inside b's sibling
                del big
                with timing.section("b"):
                    small = np.ones(100_000)             # 0.8 MB
                    del small
    finally:
        tracemalloc.stop()
    assert 15e6 < t.peak_bytes["a"] < 18e6              # the nested reset lost none of a's peak
    assert 0.7e6 < t.peak_bytes["b"] < 1.5e6
    with timing.record(memory=True) as t:               # tracemalloc off: memory is not recorded
        with timing.section("a"):
            pass
    assert t.peak_bytes == {} and not t.memory


def test_a_sweep_records_every_stage(tiny_experiment, tmp_path):
    from rnnlab.experiment.load import load_experiment
    from rnnlab.run.sweep import run_sweep

    with timing.record() as t:
        exp = load_experiment(tiny_experiment())
        run_sweep(exp, tmp_path / "out")
    stages = set(timing.SECTIONS)
    assert set(t.seconds) == stages
    assert t.seconds["engine"] <= t.seconds["training"] <= t.seconds["sweep"]
    assert t.calls["training"] == t.calls["commit"] >= 1 and t.calls["sweep"] == 1


def test_cli_sweep_timings(tiny_experiment, tmp_path):
    res = ok(invoke("sweep", tiny_experiment(), "--out", tmp_path / "o", "--timings",
                    "--format", "csv"))
    lines = [ln.split() for ln in res.stderr.splitlines() if ln.startswith("  ")]
    assert [ln[0] for ln in lines] == list(timing.SECTIONS)
    assert "where the time went" in res.stderr
