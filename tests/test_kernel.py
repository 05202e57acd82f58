"""The compiled engine (Numba kernel) against its specification, the NumPy engine: agreement to
1e-12 relative on every configuration it covers, finite differences, random shapes; bit-for-bit
promises (batching, norms/outputs flags, cached vs fresh compile); engine choice, fallback and
the cache folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from rnnlab import compiling  # noqa: E402
from rnnlab.engine import (  # noqa: E402
    bptt,
    forward,
    init_params,
    select,  # noqa: E402
)
from rnnlab.engine import compiled as comp  # noqa: E402
from rnnlab.engine.gradcheck import check  # noqa: E402

ACTS = ("tanh", "relu", "sigmoid", "identity")
GATED = ("lstm", "gru")
KWS = [{}, {"loss_at": "all"}, {"truncate": 3}, {"loss_at": "all", "truncate": 3},
       {"clip_step": 0.05}, {"loss_at": "all", "truncate": 2, "clip_step": 0.1},
       {"loss": "ce"}, {"loss": "ce", "loss_at": "all", "clip_step": 0.02},
       {"output": "linear"}, {"output": "linear", "loss_at": "all", "truncate": 4}]


@pytest.fixture(autouse=True)
def _engine_reset():
    """No test leaves an engine choice (or RNNLAB_ENGINE) behind for the tests after it."""
    before = os.environ.get("RNNLAB_ENGINE")
    yield
    select.set_engine(None)
    assert os.environ.get("RNNLAB_ENGINE") == before


def with_engine(name, fn, *args, **kw):
    with select.using_engine(name):
        return fn(*args, **kw)


def problem(seed, R=4, T=9, B=3, I=2, H=5, O=3, scale=1.3, runs_axis=True, dtype=np.float64,
            cell="rnn"):
    rng = np.random.default_rng(seed)
    plist = []
    for _ in range(R):
        p = init_params(rng, cell=cell, input_size=I, hidden=H, output_size=O, scale=scale)
        plist.append({k: v + 0.1 * rng.standard_normal(v.shape) for k, v in p.items()})
    P = {k: np.stack([p[k] for p in plist]).astype(dtype) for k in plist[0]}
    x = rng.standard_normal((R, T, B, I)).astype(dtype)
    d = np.eye(O)[rng.integers(0, O, (R, T, B))].astype(dtype)
    if not runs_axis:
        P, x, d = {k: v[0] for k, v in P.items()}, x[0], d[0]
    return P, x, d


def values(res) -> dict:
    out = {"loss": np.asarray(res.loss), "states": res.states}
    if res.cells is not None:
        out["cells"] = res.cells
    if res.outputs is not None:
        out["outputs"] = res.outputs
    out.update({f"grad_{k}": g for k, g in res.grads.items()})
    out.update({f"norm_{k}": v for k, v in res.step_norms.items()})
    out.update({f"extra_{k}": v for k, v in res.extra.items()})
    return out


def assert_agree(a: dict, b: dict, rel: float, atol: float = 0.0):
    """Same keys, shapes and dtypes; |a - b| <= rel * max|a| + atol for every array."""
    assert a.keys() == b.keys()
    for key in a:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        assert x.shape == y.shape and x.dtype == y.dtype, key
        scale = max(float(np.max(np.abs(x))), 1e-300)
        err = float(np.max(np.abs(x - y)))
        assert err <= rel * scale + atol, \
            f"{key}: difference {err:.2e} > {rel:.0e} * max|a| ({scale:.2e}) + {atol:.1e}"


def assert_bits(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("kw", KWS, ids=lambda k: ",".join(f"{a}={v}" for a, v in k.items()))
@pytest.mark.parametrize("act", ACTS)
def test_kernel_agrees_with_numpy_engine(act, kw):
    P, x, d = problem(1)
    ref = with_engine("numpy", bptt, P, x, d, activation=act, **kw)
    got = with_engine("compiled", bptt, P, x, d, activation=act, **kw)
    assert_agree(values(ref), values(got), 1e-12)
    if "clip_step" in kw:
        assert (ref.extra["clip_factors"] < 1).any()


@pytest.mark.parametrize("kw", KWS, ids=lambda k: ",".join(f"{a}={v}" for a, v in k.items()))
@pytest.mark.parametrize("cell", GATED)
def test_kernel_agrees_with_numpy_engine_gated(cell, kw):
    """The LSTM (with its cell norms dc) and the GRU (with and without its bias b_hn)."""
    P, x, d = problem(8, cell=cell)
    rng = np.random.default_rng(1)
    starts = [{}, {"s0": rng.standard_normal((4, 3, 5)) * 0.5}]
    if cell == "lstm":
        starts[1]["c0"] = rng.standard_normal((3, 5))
    for extra in starts:
        ref = with_engine("numpy", bptt, P, x, d, cell=cell, **kw, **extra)
        got = with_engine("compiled", bptt, P, x, d, cell=cell, **kw, **extra)
        assert ("dc" in got.step_norms) == (cell == "lstm")
        assert_agree(values(ref), values(got), 1e-12)
    if cell == "gru":
        no_bn = {k: v for k, v in P.items() if k != "bn"}
        ref = with_engine("numpy", bptt, no_bn, x, d, cell=cell, **kw)
        got = with_engine("compiled", bptt, no_bn, x, d, cell=cell, **kw)
        assert "bn" not in got.grads
        assert_agree(values(ref), values(got), 1e-12)


@pytest.mark.parametrize("kw", [{}, {"loss_at": "all", "truncate": 3, "clip_step": 0.1}])
def test_kernel_forward_norms_outputs_flags(kw):
    """forward(), norms=False and outputs=False agree with the NumPy engine; the flags change no
    bit of the loss, gradients or states (they only skip work)."""
    P, x, d = problem(2)
    ref = with_engine("numpy", forward, P, x, d, loss_at=kw.get("loss_at", "last"))
    got = with_engine("compiled", forward, P, x, d, loss_at=kw.get("loss_at", "last"))
    assert_agree(values(ref), values(got), 1e-12)
    full = with_engine("compiled", bptt, P, x, d, **kw)
    bare = with_engine("compiled", bptt, P, x, d, norms=False, outputs=False, **kw)
    assert bare.step_norms == {} and bare.outputs is None
    assert_bits({k: v for k, v in values(full).items()
                 if not k.startswith("norm_") and k != "outputs"}, values(bare))
    np.testing.assert_array_equal(full.loss, got.loss if kw == {} else full.loss)


def test_kernel_without_run_axis_and_shared_operands():
    """Unbatched inputs give unbatched results; params shared over per-run data, data shared over
    per-run params, per-run s0 and clip thresholds, params without biases."""
    P, x, d = problem(3, runs_axis=False)
    for kw in ({}, {"clip_step": 0.05, "loss_at": "all"}):
        ref = with_engine("numpy", bptt, P, x, d, **kw)
        got = with_engine("compiled", bptt, P, x, d, **kw)
        assert isinstance(got.loss, float)
        assert_agree(values(ref), values(got), 1e-12)
    Pr, xr, dr = problem(4)
    s0 = np.random.default_rng(0).standard_normal((4, 3, 5)) * 0.5
    cases = [(P, xr, dr, {}), (Pr, x, d, {"clip_step": np.linspace(0.01, 0.1, 4)}),
             (Pr, xr, d, {"s0": s0}),
             ({k: Pr[k] for k in ("Wx", "Ws", "Wy")}, xr, dr, {"loss_at": "all"})]
    for p, xx, dd, kw in cases:
        ref = with_engine("numpy", bptt, p, xx, dd, **kw)
        got = with_engine("compiled", bptt, p, xx, dd, **kw)
        assert list(got.grads) == list(p)
        assert_agree(values(ref), values(got), 1e-12)


@pytest.mark.parametrize("cell", ["rnn", *GATED])
def test_read_only_inputs_compile_nothing_outside_ensure_compiled(cell):
    """Read-only arrays (np.broadcast_to, frozen parameters, a frozen clip vector) reach the
    kernel as the one array type ``ensure_compiled`` compiled, and the kernel refuses any other:
    a signature compiled by a plain call would miss the SLP setting and be cached without it."""
    from rnnlab.engine import kernel
    P, x, d = problem(5, cell=cell)
    frozen = {k: v.copy() for k, v in P.items()}
    for v in frozen.values():
        v.setflags(write=False)
    clip = np.linspace(0.01, 0.1, 4)
    clip.setflags(write=False)
    xb = np.broadcast_to(x[:1], x.shape)
    ref = with_engine("numpy", bptt, P, xb.copy(), d, cell=cell, clip_step=clip.copy())
    comp.ensure_compiled(cell, np.float64)
    fn = kernel.KERNELS[cell]
    before = list(fn.signatures)
    got = with_engine("compiled", bptt, frozen, xb, d, cell=cell, clip_step=clip)
    assert list(fn.signatures) == before
    assert_agree(values(ref), values(got), 1e-12)
    with pytest.raises(TypeError, match="No matching definition"):
        fn(*([np.zeros((1, 1, 1), np.float16)] * fn.py_func.__code__.co_argcount))


@pytest.mark.parametrize("act", ACTS + GATED)
@pytest.mark.parametrize("kw", [{}, {"loss_at": "all", "truncate": 3, "clip_step": 0.1},
                                {"loss": "ce", "clip_step": 0.05}])
def test_kernel_float32(act, kw):
    """float32 end to end, close to the NumPy engine's float32 numbers."""
    cell = act if act in GATED else "rnn"
    kw = dict(kw, cell=cell) if cell in GATED else dict(kw, activation=act)
    P, x, d = problem(5, dtype=np.float32, cell=cell)
    ref = with_engine("numpy", bptt, P, x, d, **kw)
    got = with_engine("compiled", bptt, P, x, d, **kw)
    for v in values(got).values():
        assert v.dtype == np.float32
    assert_agree(values(ref), values(got), 2e-5)


VARIANTS = [(None, None, None), (3, None, None), (None, 0.05, None), (2, 0.05, 3)]


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
@pytest.mark.parametrize("loss_at", ["last", "all"])
@pytest.mark.parametrize("head", [("softmax", "mse"), ("softmax", "ce"), ("linear", "mse")],
                         ids="/".join)
@pytest.mark.parametrize("act", ACTS + GATED)
def test_kernel_finite_differences(act, head, loss_at, variant):
    truncate, clip_step, runs = variant
    cell = act if act in GATED else "rnn"
    res = with_engine("compiled", check, cell=cell, activation="tanh" if cell in GATED else act,
                      output=head[0], loss=head[1],
                      loss_at=loss_at, truncate=truncate, clip_step=clip_step, runs=runs,
                      seq_len=6, scale=1.3)
    assert res.ok, res.errors


@settings(max_examples=40, deadline=None)
@example(R=1, T=9, B=3, I=4, H=4, O=3, act="identity", kw={}, seed=0)
@given(R=st.integers(1, 3), T=st.integers(1, 12), B=st.integers(1, 5), I=st.integers(1, 4),
       H=st.integers(1, 9), O=st.integers(1, 5), act=st.sampled_from(ACTS + GATED),
       kw=st.sampled_from(KWS), seed=st.integers(0, 2 ** 16))
def test_kernel_random_shapes(R, T, B, I, H, O, act, kw, seed):
    """Random shapes (sizes below, at and above the kernel's blocks of eight).

    The absolute floor: with the identity activation the states can grow to tens and saturate
    the softmax, and then a gradient of 1e-4 is the difference of O(1) terms. Two valid
    summation orders then differ by the rounding of those terms, about eps * |s| per step, not
    of the gradient (in the pinned example the readable reference agrees with the kernel to
    1e-14 of max|grad| and with the NumPy engine to 3e-11)."""
    if kw.get("loss") == "ce" and O < 2:
        O = 2
    cell = act if act in GATED else "rnn"
    kw = dict(kw, cell=cell) if cell in GATED else dict(kw, activation=act)
    P, x, d = problem(seed, R=R, T=T, B=B, I=I, H=H, O=O, cell=cell)
    ref = with_engine("numpy", bptt, P, x, d, **kw)
    got = with_engine("compiled", bptt, P, x, d, **kw)
    atol = 64 * T * np.finfo(np.float64).eps * max(1.0, float(np.max(np.abs(ref.states))))
    assert_agree(values(ref), values(got), 1e-12, atol)


@pytest.mark.parametrize("cell", ["rnn", *GATED])
@pytest.mark.parametrize("kw", [{}, {"loss_at": "all", "truncate": 3, "clip_step": 0.1},
                                {"loss": "ce", "clip_step": 0.05}, {"loss_at": "all"}])
def test_kernel_batching_changes_no_bit(kw, cell):
    """A run's numbers do not depend on the runs sharing its call: one at a time vs together."""
    R, T, B, H = 6, 12, 16, 24
    P, x, d = problem(6, R=R, T=T, B=B, H=H, I=3, O=4, cell=cell)
    kw = dict(kw, cell=cell)
    thresholds = np.linspace(0.05, 1.0, R) if "clip_step" in kw else None
    kwb = dict(kw, clip_step=thresholds) if thresholds is not None else kw
    batch = with_engine("compiled", bptt, P, x, d, **kwb)
    for r in range(R):
        kwr = dict(kw, clip_step=thresholds[r]) if thresholds is not None else kw
        one = with_engine("compiled", bptt, {k: v[r] for k, v in P.items()}, x[r], d[r], **kwr)
        got = {k: (v[r] if np.ndim(v) else v) for k, v in values(batch).items()}
        got["loss"] = np.asarray(batch.loss[r])
        assert_bits(got, values(one))
        # and in a batch of two other runs
    pair = with_engine("compiled", bptt, {k: v[2:4] for k, v in P.items()}, x[2:4], d[2:4],
                       **(dict(kw, clip_step=thresholds[2:4]) if thresholds is not None else kw))
    np.testing.assert_array_equal(pair.grads["Ws"], batch.grads["Ws"][2:4])


def test_result_arrays_are_reused_only_once_unreferenced():
    """Large result arrays are recycled (no page faults for fresh memory), but never while
    anything refers to one: a result the caller keeps, or a view of it, never changes."""
    comp.release_arrays()
    shape = (64, 50, 16, 32)                                # 13 MB: recycled
    a = comp.result_array(shape, np.float64)
    view, addr = a[1:3], a.ctypes.data
    del a
    assert comp.result_array(shape, np.float64).ctypes.data != addr    # the view holds it
    del view
    assert comp.result_array(shape, np.float64).ctypes.data == addr    # now free: reused
    assert comp.result_array(shape, np.float32).ctypes.data != addr    # another dtype
    P, x, d = problem(0, R=64, T=50, B=16, I=2, H=32, O=3)
    first = with_engine("compiled", bptt, P, x, d)
    kept = {k: v.copy() for k, v in values(first).items()}
    for scale in (0.5, 2.0, 3.0):                           # other states, same shapes
        with_engine("compiled", bptt, P, scale * x, d)
    assert_bits(values(first), kept)
    comp.release_arrays()


def test_trainer_on_the_kernel_matches_numpy(tiny_experiment):
    """A whole training batch (tbptt windows with s0 carried, forward-only windows, evaluation)
    on the compiled engine stays within rounding of the NumPy engine."""
    from conftest import tiny_exp

    from rnnlab.run.train import train_batch
    exp = tiny_exp(train={"steps": 6, "log_every": 3, "tbptt": 2, "clip": {"mode": "step",
                                                                            "threshold": 0.5}})
    specs = exp.runs()[:2]
    a = with_engine("numpy", train_batch, specs)
    b = with_engine("compiled", train_batch, specs)
    for ra, rb in zip(a.runs, b.runs, strict=True):
        assert ra["final_loss"] == pytest.approx(rb["final_loss"], rel=1e-9)
    np.testing.assert_allclose(a.grad_norms["ds"], b.grad_norms["ds"], rtol=1e-9, atol=1e-300)


# --------------------------------------------------------------------------- choice, fallback

def test_engine_choice_env_setter_and_errors(monkeypatch):
    monkeypatch.delenv("RNNLAB_ENGINE", raising=False)
    select.set_engine(None)
    assert select.get_engine() == select.DEFAULT_ENGINE in select.ENGINES
    monkeypatch.setenv("RNNLAB_ENGINE", "auto")
    assert select.get_engine() == "auto" and select.active_engine() == "compiled"
    select.set_engine("numpy")
    assert select.get_engine() == "numpy" and os.environ["RNNLAB_ENGINE"] == "numpy"
    with pytest.raises(ValueError, match="engine: got 'fast'; allowed: one of numpy"):
        select.set_engine("fast")
    select.set_engine(None)                                  # back to the variable as it was
    assert os.environ["RNNLAB_ENGINE"] == "auto"
    with select.using_engine("compiled"):
        assert select.get_engine() == "compiled"
    assert select.get_engine() == "auto"
    select.set_engine(None)                                  # using_engine left nothing behind
    assert os.environ["RNNLAB_ENGINE"] == "auto"
    monkeypatch.setenv("RNNLAB_ENGINE", "gpu")
    with pytest.raises(ValueError, match="RNNLAB_ENGINE: got 'gpu'"):
        select.get_engine()


def test_without_numba_the_numpy_engine_runs_and_says_so_once(monkeypatch, capsys):
    monkeypatch.setattr(select, "numba_available", lambda: False)
    monkeypatch.setattr(compiling, "_said", set())
    P, x, d = problem(7)
    ref = with_engine("numpy", bptt, P, x, d)
    capsys.readouterr()
    a = with_engine("compiled", bptt, P, x, d)
    b = with_engine("compiled", bptt, P, x, d)
    assert_bits(values(ref), values(a))
    assert_bits(values(ref), values(b))
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "numba is not installed" in lines[0]
    with_engine("auto", bptt, P, x, d)                      # auto: silent
    assert capsys.readouterr().err == ""


def test_uncovered_cell_runs_on_numpy_and_says_so_once(monkeypatch, capsys):
    """A cell the kernel does not cover (as the LSTM is here made to be) runs on NumPy."""
    monkeypatch.setattr(comp, "KERNEL_CELLS", ("rnn",))
    monkeypatch.setattr(compiling, "_said", set())
    rng = np.random.default_rng(0)
    p = init_params(rng, cell="lstm", input_size=2, hidden=3, output_size=2, scale=1.0)
    x = rng.standard_normal((4, 2, 2))
    d = np.eye(2)[rng.integers(0, 2, (4, 2))]
    ref = with_engine("numpy", bptt, p, x, d, cell="lstm")
    got = [with_engine("compiled", bptt, p, x, d, cell="lstm") for _ in range(2)]
    assert_bits(values(ref), values(got[1]))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not cover cell 'lstm'" in err[0]


def test_kernel_info_for_the_manifest():
    info = comp.kernel_info()
    assert info["name"] == "numba" and info["available"] is True
    assert info["version"] == numba.__version__
    assert info["flags"]["fastmath"] is False and info["flags"]["error_model"] == "numpy"
    assert info["slp_vectorize"] is True
    json.dumps(info)                                         # manifest-ready


def test_cache_folder_per_user_with_fallback(monkeypatch, tmp_path):
    """XDG_CACHE_HOME/rnnlab/numba when writable, else a per-user temporary folder."""
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.delenv("RNNLAB_CACHE_DIR", raising=False)
    monkeypatch.setattr(numba.config, "CACHE_DIR", numba.config.CACHE_DIR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert compiling.cache_dir() == str(tmp_path / "cache" / "rnnlab" / "numba")
    assert numba.config.CACHE_DIR == compiling.cache_dir()
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    folder = compiling.cache_dir()
    assert Path(folder).name.startswith("rnnlab-numba-") and Path(folder).is_dir()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert compiling.cache_dir() == str(tmp_path / "mine")


def test_cache_entries_are_kept_per_package_name():
    """Numba keys its cache by source file; a cached kernel names its module. The same file
    imported as another package (benchmarks/ab.py) must not share entries: one subfolder per
    top-level package name (a shared entry made every later start fail to import it)."""
    from rnnlab.engine import kernel
    comp.ensure_compiled("rnn", np.float64)
    path = Path(kernel.rnn_kernel.stats.cache_path)
    assert path.is_relative_to(Path(os.environ["NUMBA_CACHE_DIR"]) / "rnnlab-slp")


CHILD = r"""
import hashlib, json, os, sys
import numpy as np
from rnnlab.engine import bptt, select
from rnnlab.engine import kernel
# A NUMBA_ variable changed after numba's import makes its compiler reload the whole config from
# the environment (pytest and user code do this): the kernel's compile must keep SLP anyway.
os.environ["NUMBA_DEBUG_CACHE"] = "0"
sys.path.insert(0, sys.argv[1])
from test_kernel import problem, values
select.set_engine("compiled")
h = hashlib.sha256()
for kw in ({}, {"loss_at": "all", "truncate": 3, "clip_step": 0.1}, {"loss": "ce"}):
    for act in ("tanh", "sigmoid", "lstm", "gru"):
        for shape in ({"R": 3, "T": 20, "B": 4, "H": 16}, {"R": 2, "T": 7, "B": 19, "H": 13}):
            cell = act if act in ("lstm", "gru") else "rnn"
            res = bptt(*problem(11, cell=cell, **shape), cell=cell,
                       activation="tanh" if cell != "rnn" else act, **kw)
            for k, v in sorted(values(res).items()):
                h.update(k.encode()); h.update(np.ascontiguousarray(v).tobytes())
st = kernel.rnn_kernel.stats
asm = ""                                # machine code of a fresh compile (a cached load has none)
if sum(st.cache_misses.values()):
    asm = kernel.rnn_kernel.inspect_asm(kernel.rnn_kernel.signatures[0])
print(json.dumps({"hash": h.hexdigest(), "hits": sum(st.cache_hits.values()),
                  "misses": sum(st.cache_misses.values()), "slp": kernel.SLP,
                  "asm": hashlib.sha256(asm.encode()).hexdigest() if asm else ""}))
"""


def test_cached_and_fresh_compiles_give_identical_bits(tmp_path):
    """A fresh compile (empty cache folder) and a load from that cache compute the same bits,
    and so does this process (whose kernel came from the user's cache or its own compile)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), RNNLAB_ENGINE="compiled")
    here = str(Path(__file__).parent)

    def child():
        out = subprocess.run([sys.executable, "-c", CHILD, here], env=env, capture_output=True,
                             text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr

    fresh, err_fresh = child()
    cached, err_cached = child()
    assert fresh["misses"] >= 1 and fresh["hits"] == 0
    assert "compiled the engine kernel (rnn, float64)" in err_fresh
    assert cached["misses"] == 0 and cached["hits"] >= 1 and err_cached == ""
    assert fresh["hash"] == cached["hash"]
    assert any((tmp_path / "cache").rglob("*.nbi"))


def test_tanh_exp_without_table_is_exp_bit_for_bit():
    """``_exp_t`` (tanh's exp, no table) equals ``_exp`` on |x| <= 40, and beyond gives tanh
    the same bits (+-1)."""
    from rnnlab.engine import kernel
    rng = np.random.default_rng(0)
    xs = np.concatenate([np.linspace(-40, 40, 4001), rng.uniform(-40, 40, 4000),
                         rng.standard_normal(2000) * 1e-3, [0.0, -0.0, 40.0, -40.0, 5e-324]])
    for x in xs:
        assert kernel._exp_t(x) == kernel._exp(x), x
    for x in np.concatenate([np.linspace(-800, 800, 3201), [39.99, 40.01, -40.01, 1e300]]):
        assert 2.0 / (1.0 + kernel._exp_t(x)) - 1.0 == 2.0 / (1.0 + kernel._exp(x)) - 1.0, x


def test_slp_vectoriser_changes_no_bit(tmp_path):
    """The kernel is compiled with LLVM's SLP vectoriser (its register tiles need it; Numba
    leaves it off by default after miscompilations elsewhere). It packs scalar operations into
    vector lanes without reordering any, so a compile without it (RNNLAB_KERNEL_SLP=0, cached
    in a folder of its own) computes the same bits: tile shapes with and without remainders,
    the vanilla cell and the LSTM, float64. The two compiles differ in machine code: SLP was on,
    even with a NUMBA_ variable changed after numba's import (see CHILD)."""
    here = str(Path(__file__).parent)
    out = {}
    for slp in ("1", "0"):
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), RNNLAB_ENGINE="compiled",
                   RNNLAB_KERNEL_SLP=slp)
        res = subprocess.run([sys.executable, "-c", CHILD, here], env=env, capture_output=True,
                             text=True, check=True)
        out[slp] = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["1"]["slp"] is True and out["0"]["slp"] is False
    assert out["0"]["misses"] >= 1                 # compiled afresh, not loaded from SLP's cache
    assert out["1"]["hash"] == out["0"]["hash"]
    assert out["1"]["asm"] and out["0"]["asm"]
    assert out["1"]["asm"] != out["0"]["asm"]         # SLP really was on for the first compile
    assert (tmp_path / "cache" / "rnnlab-noslp").is_dir()


def test_cli_engine_option_and_warmup(tiny_experiment, tmp_path):
    from typer.testing import CliRunner

    from rnnlab.cli import app
    runner = CliRunner()
    res = runner.invoke(app, ["warmup"])
    assert res.exit_code == 0 and "kernel cache: " in res.output
    assert "task draws (recall, adding, random): ready" in res.output
    res = runner.invoke(app, ["run", "--engine", "compiled", "--set", "train.steps=2",
                              "--set", "task.seq_len=4"])
    assert res.exit_code == 0, res.output
    assert os.environ["RNNLAB_ENGINE"] == "compiled"
    res = runner.invoke(app, ["run", "--engine", "gpu"])
    assert res.exit_code == 2


def _golden():
    import test_golden
    return test_golden


@pytest.mark.parametrize("name", sorted(n for n, c in _golden().CASES.items()
                                        if c["options"]["cell"] in comp.KERNEL_CELLS))
def test_kernel_matches_torch_golden_values(name):
    """The golden cases (PyTorch autograd, rtol 1e-10) on the compiled engine. In the explosion
    case (gradients grow ~4e3-fold) the kernel's step-by-step sums of the weight-gradient terms
    round differently from torch's (and NumPy's) one product over all steps: entries that cancel
    to ~1e-3 of the largest differ at 1.3e-10 relative, so there atol = 1e-12 * max|array|."""
    g = _golden()
    case = g.CASES[name]
    res = with_engine("compiled", g.run_engine, case["in"], case["options"])
    g.compare(name, g.engine_values(res), case["out"], rel_floor=1e-12 if "explode" in name else 0)


def test_worker_processes_run_the_kernel_with_the_same_bits(tmp_path):
    """--workers 2 (each batch carries RNNLAB_ENGINE to its worker) and one batch at a time in this
    process give every run the same numbers under the compiled engine."""
    import pandas as pd
    from conftest import tiny_exp

    from rnnlab.run.sweep import run_sweep
    exp = tiny_exp()
    with select.using_engine("compiled"):
        run_sweep(exp, tmp_path / "one", workers=1)
        run_sweep(exp, tmp_path / "two", workers=2)
        a, b = (pd.read_parquet(tmp_path / n / "runs.parquet").sort_values("run_id")
                .reset_index(drop=True) for n in ("one", "two"))
    numeric = [c for c in a.columns if a[c].dtype.kind == "f" and c != "wall_time"]
    assert numeric and len(a) == 8
    pd.testing.assert_frame_equal(a[numeric], b[numeric], check_exact=True)
    ref = run_sweep(exp, tmp_path / "numpy", workers=1)                # the NumPy engine
    c = pd.read_parquet(tmp_path / "numpy" / "runs.parquet").sort_values("run_id")
    assert ref.outcome.failed == 0
    np.testing.assert_allclose(c["final_loss"], a["final_loss"], rtol=1e-9)
