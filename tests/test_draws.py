"""The compiled task draws (rnnlab/tasks/kernel.py, compiled.py): NumPy's numbers bit for bit and
the Generators left in the same state, on random shapes and options; the check before first use
and its fallback; the tasks they do not cover. tests/test_loop_bits.py also runs them against the
frozen samplers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.tasks import compiled, make_task
from rnnlab.tasks.samplers import SAMPLERS

pytest.importorskip("numba")


def _numpy(task, seeds, B):
    rngs = [np.random.default_rng(s) for s in seeds]
    x, d = task.sample_runs(rngs, B)
    return x, d, rngs


def _compiled(task, seeds, B):
    rngs = [np.random.default_rng(s) for s in seeds]
    x, d = task.sample_runs(rngs, B, compiled=True)
    return x, d, rngs


def _same(a, b):
    xa, da, ga = a
    xb, db, gb = b
    assert xa.tobytes() == xb.tobytes() and da.tobytes() == db.tobytes()     # -0.0 too
    assert [g.bit_generator.state for g in ga] == [g.bit_generator.state for g in gb]


def test_the_covered_tasks_run_compiled():
    assert compiled.ready()
    assert set(compiled.COVERED) <= set(SAMPLERS)
    task = make_task("recall", 4)
    x = np.zeros((1, 4, 2, task.input_size))
    d = np.zeros((1, 4, 2, task.output_size))
    assert compiled.fill(task, [np.random.default_rng(0)], x, d)
    assert x.any() and d.any()
    assert not compiled.fill(make_task("copy", 4), [np.random.default_rng(0)], x, d)


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 60), B=st.integers(1, 40), K=st.integers(2, 9),
       noise=st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0]), R=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1))
def test_recall_bits(T, B, K, noise, R, seed):
    task = make_task("recall", T, symbols=K, noise=noise)
    seeds = [np.random.SeedSequence([seed, r]) for r in range(R)]
    _same(_numpy(task, seeds, B), _compiled(task, seeds, B))


@settings(max_examples=40, deadline=None)
@given(T=st.integers(10, 80), B=st.integers(1, 40), R=st.integers(1, 4),
       placement=st.sampled_from(["halves", "anywhere", "pascanu"]),
       target=st.sampled_from(["sum", "mean"]), seed=st.integers(0, 2**32 - 1))
def test_adding_bits(T, B, R, placement, target, seed):
    task = make_task("adding", T, placement=placement, target=target)
    seeds = [np.random.SeedSequence([seed, r]) for r in range(R)]
    _same(_numpy(task, seeds, B), _compiled(task, seeds, B))


@pytest.mark.parametrize("T", [2, 3])
def test_adding_shortest(T):
    """T = 2: each marker's window holds one step, so no integer is drawn for it."""
    task = make_task("adding", T, placement="halves")
    seeds = [5, 6]
    _same(_numpy(task, seeds, 7), _compiled(task, seeds, 7))


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 40), B=st.integers(1, 20), I=st.integers(1, 6), K=st.integers(2, 9),
       seed=st.integers(0, 2**32 - 1))
def test_random_bits(T, B, I, K, seed):
    task = make_task("random", T, input_size=I, symbols=K)
    seeds = [seed, seed + 1]
    _same(_numpy(task, seeds, B), _compiled(task, seeds, B))


def test_many_draws_cover_the_ziggurats_rare_branches():
    """~2.6 million normals: the wedge branch (exp) about 30,000 times, the tail (log1p) about a
    hundred times."""
    task = make_task("recall", 200, noise=1.0, symbols=8)
    seeds = list(range(4))
    _same(_numpy(task, seeds, 400), _compiled(task, seeds, 400))


def test_float32_is_the_rounding_of_the_same_draws():
    task = make_task("recall", 12)
    a = task.sample_runs([np.random.default_rng(3)], 8, dtype=np.float32)
    b = task.sample_runs([np.random.default_rng(3)], 8, dtype=np.float32, compiled=True)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()


def test_handles_follow_the_generators():
    """The handles of a list of Generators are kept for the next call with the same list, and
    a new list (a new Generator at a reused position) gets its own."""
    a = [np.random.default_rng(0), np.random.default_rng(1)]
    h = compiled.handles(a)
    assert compiled.handles(a) is h
    b = [a[0], np.random.default_rng(1)]
    assert compiled.handles(b) is not h
    assert (compiled.handles(b)[0] == h[0]).all() and h[1, 0] != compiled.handles(b)[1, 0]


def test_disagreement_falls_back_to_numpy_and_says_so_once(monkeypatch, capsys):
    import rnnlab.compiling
    monkeypatch.setattr(compiled, "_ready", None)
    monkeypatch.setattr(compiled, "_agrees", lambda: False)
    monkeypatch.setattr(rnnlab.compiling, "_said", set())
    task = make_task("recall", 6)
    for _ in range(2):
        _same(_numpy(task, [1, 2], 5), _compiled(task, [1, 2], 5))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "do not give NumPy's numbers" in err[0] and "NumPy draws" in err[0]


def test_without_numba_numpy_draws_silently(monkeypatch, capsys):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(compiled, "_ready", None)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "numba" else real(name, *a))
    task = make_task("adding", 20)
    _same(_numpy(task, [1], 5), _compiled(task, [1], 5))
    assert compiled.ready() is False
    assert capsys.readouterr().err == ""


def test_the_agreement_check_detects_a_changed_draw(monkeypatch):
    """``_agrees`` compares bits: a compiled recall that scales its noise once more is caught."""
    from rnnlab.tasks import kernel
    real = kernel.recall

    def off(h, K, sigma, x, d):
        real(h, K, sigma, x, d)
        x[:, 1:] *= 1.0 + 2.0**-52
    monkeypatch.setattr(kernel, "recall", off)
    assert compiled._agrees() is False
    monkeypatch.setattr(kernel, "recall", real)
    assert compiled._agrees() is True


def test_first_compile_is_announced_then_loaded_from_the_cache(tmp_path):
    """A fresh cache folder: the first process compiles and says so in one line; the next loads
    the draws from the cache silently. Both pass the agreement check."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    code = "from rnnlab.tasks import compiled; assert compiled.ready()"
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    lines = first.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnlab: compiled the task draws in ")
    assert (tmp_path / "cache" / "rnnlab-draws").is_dir()
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and again.stderr == ""
