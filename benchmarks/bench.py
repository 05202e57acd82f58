"""Benchmark rnnlab's BPTT engine against a plain NumPy loop and a PyTorch per-step loop.

    python benchmarks/bench.py [--quick] [--repeats N] [--json out.json] [--blas-threads N]
                               [--no-torch] [--only sweep,h256,t1000] [--profile]

Workloads: forward + backward + per-step error norms ||dE/ds_t||, vanilla tanh RNN,
softmax head, mse loss at the last step, orthogonal init (scale 1), float64 unless noted:

    sweep   256 independent runs, T=50  B=16 I=4 H=32  O=4  (rnnlab: ONE call over the run axis;
            NumPy loop and torch: one run after another)
    h256    one problem,          T=100 B=32 I=8 H=256 O=8
    t1000   one problem,          T=1000 B=8 I=8 H=32  O=8

Implementations:
    rnnlab-f64 / rnnlab-f32   rnnlab.engine.bptt (it also returns the per-step dWs and dWx term
                              norms and the outputs at every step, which the others do not)
    rnnlab-f64-nolog          bptt(norms=False, outputs=False): the call of a training step that
                              logs nothing (no per-step norms at all, not even ||delta_t||)
    numpy-loop                min-char-rnn style: a Python loop over time forward, a loop back
                              with per-step weight-gradient accumulation and ||delta_t||
    torch / torch-f32         torch.set_num_threads(1); loop over time, retain_grad() on every
                              state, loss.backward(), per-step norms of state.grad
    compiled-f64 / -f32 / -f64-nolog   the same calls on the compiled engine (the Numba kernel,
                              rnnlab.engine.kernel; rows skipped without numba)
    torch-bmm                 torch batched over the run axis (the strongest peer a user would
                              write): one graph for all R runs, torch.baddbmm per step,
                              retain_grad() on every state, one backward, per-step norms
    numpy-floor               not an implementation: the per-step matmuls (forward and backward),
                              one exp per state element and the dWs, dWx matmuls, the least any
                              NumPy engine must do (``numpy_floor``); torch / numpy-floor bounds
                              torch / rnnlab. Its GFLOP/s count its own products only.

FLOP count (matrix products only, 2mnk each, per run; |L| = number of loss steps = 1):
    forward recurrence  2 T B H^2      input projection   2 T B I H      head   2 |L| B H O
    backward recurrence 2 T B H^2      dWs                2 T B H^2      dWx    2 T B I H
    dWy and dE/ds at loss steps  2 * 2 |L| B H O
    total = 2 T B (3 H^2 + 2 I H) + 6 |L| B H O
The same nominal count is used for every implementation (rnnlab also evaluates the head at every
step and forms B x B Gram matrices for the per-step term norms; that work is not counted).

GEMM peak: best time of np.matmul on 1024 x 1024 matrices (float64 and float32), measured in the
same run with the same BLAS thread setting. Memory: tracemalloc peak of one bptt call (NumPy
reports its data allocations to tracemalloc) against the arrays the backward pass must keep:
states (R, T+1, B, H) plus pre-activations or their derivatives (R, T, B, H).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as _dt
import gc
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_busy, cpu_model, make_printer, table  # noqa: E402

from rnnlab.engine import bptt, init_params, using_engine  # noqa: E402
from rnnlab.engine.select import numba_available  # noqa: E402

THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
              "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_VERBOSE")
SLOW_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


@dataclass(frozen=True)
class Workload:
    name: str
    R: int
    T: int
    B: int
    I: int
    H: int
    O: int
    note: str

    @property
    def flops(self) -> int:
        """Nominal matrix-product FLOPs for all R runs (see module docstring)."""
        T, B, I, H, O = self.T, self.B, self.I, self.H, self.O
        return self.R * (2 * T * B * (3 * H * H + 2 * I * H) + 6 * 1 * B * H * O)

    def must_keep(self, itemsize: int) -> int:
        """Bytes the backward pass has to keep: states (R,T+1,B,H) + derivatives (R,T,B,H)."""
        return itemsize * self.R * ((self.T + 1) + self.T) * self.B * self.H


WORKLOADS = {
    "sweep": Workload("sweep", 256, 50, 16, 4, 32, 4, "256 runs, T=50 B=16 I=4 H=32 O=4"),
    "h256": Workload("h256", 1, 100, 32, 8, 256, 8, "1 run, T=100 B=32 I=8 H=256 O=8"),
    "t1000": Workload("t1000", 1, 1000, 8, 8, 32, 8, "1 run, T=1000 B=8 I=8 H=32 O=8"),
}

# (workload, numerator impl, denominator impl, threshold, description) -- the targets
SPEED_TARGETS = [
    ("sweep", "torch", "rnnlab-f64", 15.0, "sweep: torch (one run at a time) / rnnlab f64 >= 15x"),
    ("sweep", "rnnlab-f64", "rnnlab-f32", 2.0, "sweep: rnnlab f64 / rnnlab f32 >= 2x"),
    ("h256", "torch", "rnnlab-f64", 1.5, "h256: torch loop / rnnlab f64 >= 1.5x"),
    ("t1000", "torch", "rnnlab-f64", 5.0, "t1000: torch loop / rnnlab f64 >= 5x"),
    # the compiled engine's targets (the kernel issue)
    ("sweep", "torch", "compiled-f64", 15.0, "sweep: torch loop / compiled f64 >= 15x"),
    ("sweep", "torch-bmm", "compiled-f64", 4.0, "sweep: torch bmm / compiled f64 >= 4x"),
    ("t1000", "torch", "compiled-f64", 10.0, "t1000: torch loop / compiled f64 >= 10x"),
    ("h256", "torch", "compiled-f64", 1.5, "h256: torch loop / compiled f64 >= 1.5x"),
]
PEAK_TARGETS = [("sweep", "rnnlab-f64", 0.25), ("h256", "rnnlab-f64", 0.60),
                ("sweep", "compiled-f64", 0.50), ("h256", "compiled-f64", 0.60)]
MEMORY_TARGET = 1.5


# ------------------------------------------------------------------------------ problem data

def make_problem(w: Workload, seed: int = 0):
    """Per-run float64 params stacked on a run axis (R, ...), shared x (T,B,I) and d (T,B,O)."""
    rng = np.random.default_rng(seed)
    runs = [init_params(rng, cell="rnn", input_size=w.I, hidden=w.H, output_size=w.O,
                        init="orthogonal", scale=1.0) for _ in range(w.R)]
    params = {k: np.stack([r[k] for r in runs]) for k in runs[0]}
    x = rng.standard_normal((w.T, w.B, w.I))
    d = np.eye(w.O)[rng.integers(0, w.O, (w.T, w.B))]
    return params, x, d


def engine_args(w: Workload, params, x, d, dtype):
    p = {k: v.astype(dtype) for k, v in params.items()}
    if w.R == 1:                                     # a single problem: no run axis at all
        p = {k: v[0] for k, v in p.items()}
    return p, x.astype(dtype), d.astype(dtype)


def run_engine(p, x, d, log: bool = True, engine: str = "numpy"):
    """The default call (``log``: per-step norms and outputs at every step), or the call of a
    training step that logs nothing (``bptt(norms=False, outputs=False)``), on ``engine``."""
    with using_engine(engine):
        return bptt(p, x, d, cell="rnn", activation="tanh", output="softmax", loss="mse",
                    loss_at="last", norms=log, outputs=log)


# ----------------------------------------------------------------------- plain NumPy loop

def numpy_loop(p, x, d):
    """One run, min-char-rnn style. Returns loss, grads, ds (T,) with ds[t-1] = ||dE/ds_t||."""
    Wx, Ws, Wy, b, by = p["Wx"], p["Ws"], p["Wy"], p["b"], p["by"]
    T, B, _ = x.shape
    H = Ws.shape[0]
    s = np.zeros((T + 1, B, H), dtype=x.dtype)
    for t in range(T):
        s[t + 1] = np.tanh(x[t] @ Wx + s[t] @ Ws + b)
    logits = s[T] @ Wy + by
    y = np.exp(logits - logits.max(axis=-1, keepdims=True))
    y /= y.sum(axis=-1, keepdims=True)
    diff = y - d[T - 1]
    loss = float(np.sum(diff * diff)) / B
    dy = diff * (2.0 / B)
    dlogits = y * (dy - np.sum(dy * y, axis=-1, keepdims=True))
    gWy = s[T].T @ dlogits
    gby = dlogits.sum(axis=0)
    gWx, gWs, gb = np.zeros_like(Wx), np.zeros_like(Ws), np.zeros_like(b)
    ds = np.empty(T, dtype=x.dtype)
    delta = dlogits @ Wy.T
    for t in range(T, 0, -1):
        ds[t - 1] = np.sqrt(np.sum(delta * delta))
        dz = delta * (1.0 - s[t] * s[t])
        gWs += s[t - 1].T @ dz
        gWx += x[t - 1].T @ dz
        gb += dz.sum(axis=0)
        delta = dz @ Ws.T
    return loss, {"Wx": gWx, "Ws": gWs, "Wy": gWy, "b": gb, "by": gby}, ds


def numpy_loop_all(params, x, d, dtype):
    """All runs of a workload, one after another."""
    p = {k: v.astype(dtype) for k, v in params.items()}
    x, d = x.astype(dtype), d.astype(dtype)
    return [numpy_loop({k: v[r] for k, v in p.items()}, x, d) for r in range(p["Ws"].shape[0])]


# ---------------------------------------------------------------------------------- torch

def torch_setup(params, x, d, dtype):
    import torch

    tdt = torch.float64 if dtype == np.float64 else torch.float32
    runs = [{k: torch.tensor(v[r], dtype=tdt, requires_grad=True) for k, v in params.items()}
            for r in range(params["Ws"].shape[0])]
    return runs, torch.tensor(x, dtype=tdt), torch.tensor(d, dtype=tdt)


def torch_loop(tp, xt, dt):
    """One run: a loop over time, retain_grad() on each state, backward, per-step norms."""
    import torch

    for v in tp.values():
        v.grad = None
    T, B, _ = xt.shape
    s = torch.zeros(B, tp["Ws"].shape[0], dtype=xt.dtype)
    states = []
    for t in range(T):
        s = torch.tanh(xt[t] @ tp["Wx"] + s @ tp["Ws"] + tp["b"])
        s.retain_grad()
        states.append(s)
    y = torch.softmax(s @ tp["Wy"] + tp["by"], dim=-1)
    loss = ((y - dt[T - 1]) ** 2).sum() / B
    loss.backward()
    ds = torch.stack([torch.linalg.vector_norm(st.grad) for st in states])
    return loss.item(), {k: v.grad.numpy() for k, v in tp.items()}, ds.numpy()


def torch_loop_all(runs, xt, dt):
    return [torch_loop(tp, xt, dt) for tp in runs]


def torch_bmm_setup(params, x, d, dtype):
    import torch

    tdt = torch.float64 if dtype == np.float64 else torch.float32
    tp = {k: torch.tensor(v, dtype=tdt, requires_grad=True) for k, v in params.items()}
    return tp, torch.tensor(x, dtype=tdt), torch.tensor(d, dtype=tdt)


def torch_bmm(tp, xt, dt):
    """All R runs in one graph: s (R, B, H), torch.baddbmm per step, one backward, norms of
    every state's gradient per run. Returns loss (R,), grads (R, ...), ds (R, T)."""
    import torch

    for v in tp.values():
        v.grad = None
    T, B, _ = xt.shape
    R, H = tp["Ws"].shape[0], tp["Ws"].shape[1]
    xin = torch.matmul(xt.unsqueeze(0), tp["Wx"].unsqueeze(1)) + tp["b"][:, None, None, :]
    xs = xin.unbind(1)          # one op: slicing xin[:, t] would backpropagate T full-size zeros
    s = torch.zeros(R, B, H, dtype=xt.dtype)
    states = []
    for t in range(T):
        s = torch.tanh(torch.baddbmm(xs[t], s, tp["Ws"]))
        s.retain_grad()
        states.append(s)
    y = torch.softmax(torch.bmm(s, tp["Wy"]) + tp["by"][:, None, :], dim=-1)
    per_run = ((y - dt[T - 1]) ** 2).sum(dim=(1, 2)) / B
    per_run.sum().backward()
    ds = torch.stack([torch.linalg.vector_norm(st.grad, dim=(1, 2)) for st in states], dim=1)
    return (per_run.detach().numpy(), {k: v.grad.numpy() for k, v in tp.items()},
            ds.numpy())


# -------------------------------------------------------------------------------- helpers

#: The clock of ``timed``: wall time, or with --clock cpu this process's CPU time (on a machine
#: shared with other jobs, CPU time is far less inflated by waiting for a core than wall time).
CLOCK = {"fn": time.perf_counter}


def timed(fn, repeats: int, warmup: int = 1) -> list[float]:
    clock = CLOCK["fn"]
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        gc.collect()
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return times


def gemm_peak(dtype, repeats: int = 7, n: int = 1024) -> dict:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    c = np.empty_like(a)
    times = timed(lambda: np.matmul(a, b, out=c), repeats, warmup=2)
    flops = 2 * n ** 3
    return {"n": n, "best_s": min(times), "median_s": float(np.median(times)),
            "gflops": flops / min(times) / 1e9, "gflops_median": flops / np.median(times) / 1e9}


def blas_info() -> list[dict]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "threadpoolctl not installed: pip install threadpoolctl"}]
    return threadpool_info()


def blas_limits(n: int | None):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if n is None or threadpool_limits is None:
        from contextlib import nullcontext
        return nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def machine_info() -> dict:
    info = {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "platform": platform.platform(),
            "python": sys.version.split()[0], "numpy": np.__version__}
    try:
        import torch
        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    try:
        import threadpoolctl
        info["threadpoolctl"] = threadpoolctl.__version__
    except ImportError:
        info["threadpoolctl"] = None
    return info


def stats(times: list[float]) -> dict:
    return {"times_s": times, "median_s": float(np.median(times)), "min_s": min(times),
            "max_s": max(times)}


def max_rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def cross_check(w: Workload, params, x, d, torch_ok: bool) -> dict:
    """Run 0 of the workload in float64: rnnlab vs NumPy loop (and torch), max relative error."""
    p1 = {k: v[:1] for k, v in params.items()}
    res = run_engine(p1, x, d)
    ref_loss, ref_g, ref_ds = numpy_loop({k: v[0] for k, v in params.items()}, x, d)
    out = {"numpy-loop": {"loss": max_rel(res.loss[0], ref_loss),
                          "grads": max(max_rel(res.grads[k][0], ref_g[k]) for k in ref_g),
                          "ds": max_rel(res.step_norms["ds"][0], ref_ds)}}
    if torch_ok:
        runs, xt, dt = torch_setup(p1, x, d, np.float64)
        tl, tg, tds = torch_loop(runs[0], xt, dt)
        out["torch"] = {"loss": max_rel(res.loss[0], tl),
                        "grads": max(max_rel(res.grads[k][0], tg[k]) for k in tg),
                        "ds": max_rel(res.step_norms["ds"][0], tds)}
        tp, xt, dt = torch_bmm_setup(p1, x, d, np.float64)
        tl, tg, tds = torch_bmm(tp, xt, dt)
        out["torch-bmm"] = {"loss": max_rel(res.loss[0], tl[0]),
                            "grads": max(max_rel(res.grads[k][0], tg[k][0]) for k in tg),
                            "ds": max_rel(res.step_norms["ds"][0], tds[0])}
    if numba_available():
        comp = run_engine(p1, x, d, engine="compiled")
        out["compiled"] = {"loss": max_rel(res.loss[0], comp.loss[0]),
                           "grads": max(max_rel(res.grads[k][0], comp.grads[k][0])
                                        for k in comp.grads),
                           "ds": max(max_rel(res.step_norms[k][0], comp.step_norms[k][0])
                                     for k in comp.step_norms)}
    return out


def peak_memory(w: Workload, params, x, d, dtype) -> dict:
    p, xx, dd = engine_args(w, params, x, d, dtype)
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    res = run_engine(p, xx, dd)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del res
    keep = w.must_keep(np.dtype(dtype).itemsize)
    return {"peak_bytes": peak, "retained_by_result_bytes": current, "must_keep_bytes": keep,
            "ratio": peak / keep}


def profile_engine(w: Workload, params, x, d, dtype, top: int = 12) -> str:
    p, xx, dd = engine_args(w, params, x, d, dtype)
    run_engine(p, xx, dd)
    prof = cProfile.Profile()
    prof.enable()
    run_engine(p, xx, dd)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def has_torch() -> bool:
    """Whether torch is installed, without importing it (its OpenMP/MKL runtime is loaded only
    when the torch rows run, after the NumPy timings)."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


# ------------------------------------------------------------------ the floor of NumPy here

def numpy_floor(w: Workload, dtype):
    """The work no NumPy implementation of the workload can skip, as one callable: T per-step
    products s_{t-1} Ws forward and T products dz_t Ws^T backward for all R runs (one stacked
    matmul per step each, 2-d np.dot for a single run, as rnnlab does), one exp per state element
    (the cheapest float64 transcendental NumPy offers for tanh on this CPU; np.tanh itself costs
    several exps), and the weight gradients dWs = S^T DZ, dWx = X^T DZ as one matmul each over
    all T B rows. Everything else an engine does comes on top, so torch / floor is the largest
    torch / rnnlab ratio a NumPy engine can reach here."""
    R, T, B, I, H = w.R, w.T, w.B, w.I, w.H
    rng = np.random.default_rng(0)
    s = (0.1 * rng.standard_normal((R, B, H))).astype(dtype)
    Ws = (rng.standard_normal((R, H, H)) / np.sqrt(H)).astype(dtype)
    out, e = np.empty_like(s), np.empty_like(s)
    S, DZ = (rng.standard_normal((2, R, T * B, H)) * 0.1).astype(dtype)
    X = rng.standard_normal((1, T * B, I)).astype(dtype)
    mm = np.matmul
    if R == 1:
        s, Ws, out, e, mm = s[0], Ws[0], out[0], e[0], np.dot

    def run():
        for _ in range(T):
            mm(s, Ws, out=out)
            np.exp(s, out=e)
        for _ in range(T):
            mm(s, Ws, out=out)
        np.matmul(S.swapaxes(-1, -2), DZ)
        np.matmul(X.swapaxes(-1, -2), DZ)

    return run


def floor_flops(w: Workload) -> int:
    """Matrix-product FLOPs of ``numpy_floor``: forward and backward recurrence, dWs and dWx."""
    return w.R * 2 * w.T * w.B * (3 * w.H * w.H + w.I * w.H)


# -------------------------------------------------------------------------------- the run

def bench_workload(w: Workload, repeats: int, use_torch: bool, torch_f32: bool,
                   loop_runs: int | None) -> dict:
    params, x, d = make_problem(w)
    rec: dict = {"workload": w.name, "shape": {k: getattr(w, k) for k in "RTBIHO"},
                 "note": w.note, "flops": w.flops, "impls": {}}
    for name, dtype in (("rnnlab-f64", np.float64), ("rnnlab-f32", np.float32)):
        p, xx, dd = engine_args(w, params, x, d, dtype)
        rec["impls"][name] = stats(timed(lambda p=p, xx=xx, dd=dd: run_engine(p, xx, dd),
                                         repeats))
        rec["impls"][name]["dtype"] = np.dtype(dtype).name
    p, xx, dd = engine_args(w, params, x, d, np.float64)
    rec["impls"]["rnnlab-f64-nolog"] = stats(timed(lambda: run_engine(p, xx, dd, log=False),
                                                   repeats))
    rec["impls"]["rnnlab-f64-nolog"]["dtype"] = "float64"
    if numba_available():
        from rnnlab.engine.compiled import ensure_compiled
        for name, dtype, log in (("compiled-f64", np.float64, True),
                                 ("compiled-f32", np.float32, True),
                                 ("compiled-f64-nolog", np.float64, False)):
            ensure_compiled("rnn", dtype)                  # compile or load outside the timing
            p, xx, dd = engine_args(w, params, x, d, dtype)
            rec["impls"][name] = stats(timed(
                lambda p=p, xx=xx, dd=dd, log=log: run_engine(p, xx, dd, log, "compiled"),
                repeats))
            rec["impls"][name]["dtype"] = np.dtype(dtype).name
    rec["impls"]["numpy-floor"] = stats(timed(numpy_floor(w, np.float64), repeats))
    rec["impls"]["numpy-floor"].update(dtype="float64", flops=floor_flops(w))
    # the loops run all R runs unless --quick limits them; times are then scaled to R runs
    nloop = w.R if loop_runs is None else min(w.R, loop_runs)
    scale = w.R / nloop
    sub = {k: v[:nloop] for k, v in params.items()}
    t = timed(lambda: numpy_loop_all(sub, x, d, np.float64), repeats)
    rec["impls"]["numpy-loop"] = stats([v * scale for v in t])
    rec["impls"]["numpy-loop"].update(dtype="float64", runs_timed=nloop)
    if use_torch:
        import torch

        torch.set_num_threads(1)
        for name, dtype in (("torch", np.float64), ("torch-f32", np.float32)):
            if name == "torch-f32" and not torch_f32:
                continue
            runs, xt, dt = torch_setup(sub, x, d, dtype)
            t = timed(lambda runs=runs, xt=xt, dt=dt: torch_loop_all(runs, xt, dt), repeats)
            rec["impls"][name] = stats([v * scale for v in t])
            rec["impls"][name].update(dtype=np.dtype(dtype).name, runs_timed=nloop)
        tp, xt, dt = torch_bmm_setup(params, x, d, np.float64)       # all R runs: one graph
        rec["impls"]["torch-bmm"] = stats(timed(lambda: torch_bmm(tp, xt, dt), repeats))
        rec["impls"]["torch-bmm"]["dtype"] = "float64"
    rec["check_f64"] = cross_check(w, params, x, d, use_torch)
    rec["memory"] = {np.dtype(dt).name: peak_memory(w, params, x, d, dt)
                     for dt in (np.float64, np.float32)}
    return rec


def add_derived(rec: dict, peaks: dict) -> None:
    impls = rec["impls"]
    for r in impls.values():
        r["gflops"] = r.get("flops", rec["flops"]) / r["median_s"] / 1e9
        r["frac_peak"] = r["gflops"] / peaks[r["dtype"]]["gflops"]
    ref = impls["rnnlab-f64"]["median_s"]
    rec["ratios_vs_rnnlab_f64"] = {k: v["median_s"] / ref for k, v in impls.items()}
    same = {"float64": ref, "float32": impls["rnnlab-f32"]["median_s"]}
    rec["ratios_vs_rnnlab_same_dtype"] = {k: v["median_s"] / same[v["dtype"]]
                                          for k, v in impls.items()}


def evaluate_targets(records: dict) -> list[dict]:
    out = []
    for wname, num, den, thr, desc in SPEED_TARGETS:
        rec = records.get(wname)
        if rec is None or num not in rec["impls"] or den not in rec["impls"]:
            out.append({"target": desc, "value": None, "met": None})
            continue
        v = rec["impls"][num]["median_s"] / rec["impls"][den]["median_s"]
        ceiling = None
        if den == "rnnlab-f64" and "numpy-floor" in rec["impls"]:
            ceiling = rec["impls"][num]["median_s"] / rec["impls"]["numpy-floor"]["median_s"]
        out.append({"target": desc, "value": v, "met": v >= thr, "ceiling": ceiling})
    for wname, impl, thr in PEAK_TARGETS:
        rec = records.get(wname)
        desc = f"{wname}: {impl} >= {thr:.0%} of GEMM peak"
        if rec is None or impl not in rec["impls"]:
            out.append({"target": desc, "value": None, "met": None})
            continue
        v = rec["impls"][impl]["frac_peak"]
        out.append({"target": desc, "value": v, "met": v >= thr})
    for wname, rec in records.items():
        for dtname, m in rec["memory"].items():
            out.append({"target": f"{wname} {dtname}: peak memory of one call <= "
                                  f"{MEMORY_TARGET}x must-keep", "value": m["ratio"],
                        "met": m["ratio"] <= MEMORY_TARGET})
    return out


def env_variant(argv: list[str]) -> dict | None:
    """When OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set, rerun the rnnlab part without them."""
    if not any(k in os.environ for k in SLOW_ENV):
        return None
    import tempfile

    env = {k: v for k, v in os.environ.items() if k not in SLOW_ENV}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "variant.json"
        cmd = [sys.executable, __file__, *argv, "--no-torch", "--no-env-variant", "--json",
               str(out), "--quiet"]
        subprocess.run(cmd, env=env, check=True)
        return json.loads(out.read_text())


# ---------------------------------------------------------------------------------- output

def fmt_pct(v: float | None) -> str:
    return "?" if v is None else f"{v:.0%}"


def fmt_time(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 10 else f"{s:.2f} s"


def render(result: dict, console_print) -> None:
    rows = []
    for rec in result["workloads"].values():
        for name, r in rec["impls"].items():
            rows.append([rec["workload"], name, fmt_time(r["median_s"]),
                         f"{fmt_time(r['min_s'])} - {fmt_time(r['max_s'])}",
                         f"{rec['ratios_vs_rnnlab_f64'][name]:.2f}",
                         f"{rec['ratios_vs_rnnlab_same_dtype'][name]:.2f}",
                         f"{r['gflops']:.2f}", f"{r['frac_peak']:.1%}"])
    head = ["workload", "impl", "median", "min - max", "time / rnnlab-f64",
            "time / rnnlab same dtype", "GFLOP/s", "of GEMM peak"]
    console_print(table(head, rows, "Timings (forward + backward + per-step norms)"))
    pk = result["gemm_peak"]
    line = (f"GEMM peak (np.matmul 1024^2, {result['blas_threads']} BLAS thread(s), the "
            f"reference for 'of GEMM peak'): float64 {pk['float64']['gflops']:.1f} GFLOP/s, "
            f"float32 {pk['float32']['gflops']:.1f} GFLOP/s")
    if result.get("gemm_peak_all_cores_gflops"):
        ac = result["gemm_peak_all_cores_gflops"]
        line += (f"; with {result['machine']['logical_cpus']} threads: float64 "
                 f"{ac['float64']:.1f}, float32 {ac['float32']:.1f}")
    console_print(line)
    mrows = []
    for rec in result["workloads"].values():
        for dtname, m in rec["memory"].items():
            mrows.append([rec["workload"], dtname, f"{m['peak_bytes'] / 2**20:.1f} MiB",
                          f"{m['must_keep_bytes'] / 2**20:.1f} MiB", f"{m['ratio']:.2f}",
                          f"{m['retained_by_result_bytes'] / 2**20:.1f} MiB"])
    console_print(table(["workload", "dtype", "peak (tracemalloc)", "must keep", "ratio",
                         "held by result"], mrows, "Peak memory of one bptt call"))
    crows = []
    for rec in result["workloads"].values():
        for other, c in rec["check_f64"].items():
            crows.append([rec["workload"], f"rnnlab-f64 vs {other}", f"{c['loss']:.1e}",
                          f"{c['grads']:.1e}", f"{c['ds']:.1e}"])
    console_print(table(["workload", "compare (run 0)", "loss", "grads", "ds"], crows,
                        "Agreement (max relative difference)"))
    trows = [[t["target"], "-" if t["value"] is None else f"{t['value']:.2f}",
              "" if t.get("ceiling") is None else f"{t['ceiling']:.2f}",
              {True: "met", False: "NOT met", None: "n/a"}[t["met"]]] for t in result["targets"]]
    console_print(table(["target", "measured", "ceiling (x / numpy-floor)", ""], trows,
                        "Targets"))


def markdown(result: dict) -> str:
    """The timing table as Markdown (pasted into docs/benchmarks.md)."""
    lines = ["| workload | impl | median | min - max | time / rnnlab-f64 "
             "| time / rnnlab same dtype | GFLOP/s | of GEMM peak |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for rec in result["workloads"].values():
        for name, r in rec["impls"].items():
            lines.append(f"| {rec['workload']} | {name} | {fmt_time(r['median_s'])} | "
                         f"{fmt_time(r['min_s'])} - {fmt_time(r['max_s'])} | "
                         f"{rec['ratios_vs_rnnlab_f64'][name]:.2f} | "
                         f"{rec['ratios_vs_rnnlab_same_dtype'][name]:.2f} | "
                         f"{r['gflops']:.2f} | {r['frac_peak']:.1%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="2 repeats; the sweep's NumPy and torch loops time 64 of the 256 runs "
                         "(scaled to 256); no torch float32 (~20 s)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5, quick 2)")
    ap.add_argument("--json", type=Path, default=None, help="write the JSON record here")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="BLAS threads for NumPy via threadpoolctl (default 1, like torch's "
                         "set_num_threads(1); 0 = leave the library's own setting)")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    ap.add_argument("--only", default="sweep,h256,t1000", help="comma-separated workloads")
    ap.add_argument("--profile", action="store_true",
                    help="also print a cProfile of one rnnlab call per workload")
    ap.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    ap.add_argument("--no-env-variant", action="store_true",
                    help="do not rerun without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE when set")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="time with the wall clock (default) or this process's CPU time (for a "
                         "busy shared machine; one thread everywhere, so CPU time = busy time)")
    ap.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    raw = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(raw)
    repeats = args.repeats or (2 if args.quick else 5)
    CLOCK["fn"] = time.process_time if args.clock == "cpu" else time.perf_counter
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    for n in names:
        if n not in WORKLOADS:
            ap.error(f"--only: unknown workload {n!r}; allowed: {', '.join(WORKLOADS)}")

    console_print = make_printer(args.quiet)

    torch_ok = has_torch() and not args.no_torch
    notes = []
    if args.blas_threads and blas_info()[0].get("note"):
        notes.append("threadpoolctl not installed: --blas-threads ignored, BLAS threads as set "
                     "by the environment")
    if not has_torch() and not args.no_torch:
        notes.append("torch not installed: PyTorch columns skipped "
                     "(pip install torch to include them)")
    load0 = os.getloadavg()
    busy0 = cpu_busy()
    if busy0 is not None and busy0 > 0.1:
        notes.append(f"other processes kept {busy0:.0%} of the CPUs busy at start: timings are "
                     "inflated and noisy; rerun on an idle machine")
    t_start = time.perf_counter()
    with blas_limits(args.blas_threads or None):
        all_cores = None
        if args.blas_threads:                          # for reference: peak with every core
            with blas_limits(os.cpu_count()):
                all_cores = {np.dtype(dt).name: gemm_peak(dt)["gflops"]
                             for dt in (np.float64, np.float32)}
        info = blas_info()
        blas_threads = [i.get("num_threads") for i in info if i.get("user_api") == "blas"]
        peaks = {np.dtype(dt).name: gemm_peak(dt) for dt in (np.float64, np.float32)}
        records = {}
        for n in names:
            w = WORKLOADS[n]
            loop_runs = 64 if (args.quick and w.R > 64) else None
            records[n] = bench_workload(w, repeats, torch_ok, torch_f32=not args.quick,
                                        loop_runs=loop_runs)
            add_derived(records[n], peaks)
        profiles = {}
        if args.profile:
            for n in names:
                w = WORKLOADS[n]
                params, x, d = make_problem(w)
                profiles[n] = profile_engine(w, params, x, d, np.float64)
    load1 = os.getloadavg()
    busy1 = cpu_busy()
    result = {
        "schema": 1,
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *raw]),
        "machine": machine_info(),
        "blas": info,
        "blas_threads": blas_threads[0] if blas_threads else None,
        "thread_env": {k: os.environ.get(k) for k in THREAD_ENV},
        "load_average": {"start": load0, "end": load1},
        "other_cpu_busy": {"start": busy0, "end": busy1},
        "repeats": repeats,
        "clock": args.clock,
        "gemm_peak": peaks,
        "gemm_peak_all_cores_gflops": all_cores,
        "flop_count": "matrix products only, per run: 2 T B (3 H^2 + 2 I H) + 6 |L| B H O "
                      "(fwd + bwd recurrence, dWs, input projection, dWx, head, dWy, dE/ds)",
        "workloads": records,
        "targets": evaluate_targets(records),
        "notes": notes,
        "wall_s": None,
    }
    if not args.no_env_variant:
        variant = env_variant(raw)
        if variant is not None:
            result["without_slow_openblas_env"] = {
                "gemm_peak": variant["gemm_peak"], "blas": variant["blas"],
                "impls": {n: {k: v for k, v in r["impls"].items() if k.startswith("rnnlab")}
                          for n, r in variant["workloads"].items()}}
    result["wall_s"] = time.perf_counter() - t_start

    m = result["machine"]
    kern = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')} kernel, "
            f"{i.get('num_threads')} threads)" for i in info if i.get("user_api") == "blas"]
    console_print(f"{m['cpu']}, {m['logical_cpus']} logical CPUs; Python {m['python']}, "
                  f"NumPy {m['numpy']}, torch {m['torch']}; BLAS: {', '.join(kern) or 'unknown'}")
    console_print("thread env: " + ", ".join(f"{k}={v}" for k, v in
                                             result["thread_env"].items() if v is not None)
                  + f"  (CPUs busy with other work: {fmt_pct(busy0)} at start, "
                    f"{fmt_pct(busy1)} at end)")
    render(result, console_print)
    if "without_slow_openblas_env" in result:
        v = result["without_slow_openblas_env"]
        vk = ", ".join(f"{i.get('architecture')} kernel" for i in v["blas"]
                       if i.get("user_api") == "blas")
        console_print(f"Without {'/'.join(SLOW_ENV)} ({vk}): GEMM peak float64 "
                      f"{v['gemm_peak']['float64']['gflops']:.1f}, float32 "
                      f"{v['gemm_peak']['float32']['gflops']:.1f} GFLOP/s; " + "; ".join(
                          f"{n} {k} {fmt_time(r['median_s'])}" for n, im in v["impls"].items()
                          for k, r in im.items()))
    for note in notes:
        console_print(f"note: {note}")
    for n, text in profiles.items():
        console_print(f"--- cProfile, rnnlab-f64, {n} ---")
        console_print(text, plain=True)
    if args.markdown:
        print(markdown(result))
    console_print(f"wall time {result['wall_s']:.1f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
