"""The engine against golden values from PyTorch autograd (float64), at rtol 1e-10.

tests/data/golden.npz (rnn, lstm) and tests/data/golden_gru.npz (gru) are written by
scripts/make_golden.py (see its docstring for how each value is obtained from torch: nn.RNNCell /
nn.LSTMCell / nn.GRUCell step by step, a weight copy per step for the
per-step terms, detached windows for truncation, state hooks for per-step clipping). These tests
need no torch; the last one regenerates cases live when torch is importable and skips otherwise.

Tolerances: rtol 1e-10 with atol 1e-300, elementwise, so every nonzero value, however small (the
vanishing case's per-step norms go down to ~2e-10), is checked to ten significant digits. The
only zeros are exact zeros on both sides: per-step norms of steps outside every truncation window,
the weight term of step 1 when s_0 = 0 (s_0^T dz_1 = 0), relu states at 0 and the rows of dWs of
a relu unit that is 0 at every step. The explosion case's gradient grows ~4e3-fold over 30 steps;
rounding grows with it (engine vs torch: 1e-11 there, 1e-13 or less elsewhere), which is why it
is not steeper: at a 1e6-fold growth even two torch paths (fused nn.RNN vs nn.RNNCell step by
step) differ by ~1e-8 elementwise.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from rnnlab.engine import bptt

DATA = Path(__file__).parent / "data" / "golden.npz"
DATA_GRU = Path(__file__).parent / "data" / "golden_gru.npz"
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "make_golden.py"
RTOL, ATOL = 1e-10, 1e-300
LOSS_AT = ("last", "all")


def _load(path: Path) -> dict:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    cases = {}
    for name in json.loads(str(arrays["cases"])):
        pre = f"{name}/"
        case = {"options": json.loads(str(arrays[pre + "options"])), "in": {}, "out": {}}
        for key, v in arrays.items():
            if key.startswith(pre + "in/"):
                case["in"][key[len(pre) + 3:]] = v
            elif key.startswith(pre + "out/"):
                case["out"][key[len(pre) + 4:]] = v
        cases[name] = case
    return cases


OLD_CASES = _load(DATA)
GRU_CASES = _load(DATA_GRU)
CASES = {**OLD_CASES, **GRU_CASES}


def run_engine(inp: dict, opts: dict):
    params = {k: inp[k] for k in ("Wx", "Ws", "Wy", "b", "by", "bn") if k in inp}
    return bptt(params, inp["x"], inp["d"], s0=inp.get("s0"), c0=inp.get("c0"), **opts)


def engine_values(res) -> dict:
    """The engine's results under the golden file's keys."""
    out = {"loss": np.float64(res.loss), "states": res.states, "outputs": res.outputs}
    out.update({f"grad_{k}": g for k, g in res.grads.items()})
    out.update(res.step_norms)
    if res.cells is not None:
        out["cells"] = res.cells
    if "clip_factors" in res.extra:
        out["clip_factors"] = res.extra["clip_factors"]
    return out


def compare(name: str, got: dict, want: dict, rel_floor: float = 0.0) -> None:
    """Elementwise rtol 1e-10; ``rel_floor`` > 0 adds atol = rel_floor * max|array|."""
    assert set(got) == set(want), f"{name}: keys {sorted(got)} vs golden {sorted(want)}"
    for key, ref in want.items():
        atol = max(ATOL, rel_floor * float(np.max(np.abs(ref))))
        np.testing.assert_allclose(got[key], ref, rtol=RTOL, atol=atol, err_msg=f"{name}: {key}")


def test_golden_file_covers_the_grid():
    opts = [c["options"] for c in OLD_CASES.values()]
    assert 16 <= len(opts) <= 30
    nets = {"rnn_tanh", "rnn_relu", "lstm"}
    heads = {"softmax_mse", "softmax_ce", "linear_mse"}

    def net(o):
        return o["cell"] + ("_" + o["activation"] if o["cell"] == "rnn" else "")

    plain = [o for o in opts if o["truncate"] is None and o["clip_step"] is None]
    assert {(net(o), f"{o['output']}_{o['loss']}") for o in plain} == {
        (n, h) for n in nets for h in heads}
    assert {(net(o), o["loss_at"]) for o in plain} == {(n, a) for n in nets for a in LOSS_AT}
    assert {(f"{o['output']}_{o['loss']}", o["loss_at"]) for o in plain} == {
        (h, a) for h in heads for a in LOSS_AT}
    kinds = {(o["cell"], o["truncate"] is not None, o["clip_step"] is not None, o["loss_at"])
             for o in opts}
    for cell in ("rnn", "lstm"):
        assert (cell, True, False, "all") in kinds and (cell, True, False, "last") in kinds
        assert (cell, False, True, "all") in kinds and (cell, True, True, "all") in kinds
    # clipping really happens, and not at every step
    for c in CASES.values():
        if "clip_factors" in c["out"]:
            f = c["out"]["clip_factors"]
            assert (f < 1).any() and (f == 1).any()


def test_gru_golden_file_covers_the_grid():
    """Every head with each loss placement, truncation (last/all, k = 1), clipping with and
    without truncation, a nonzero s0, no biases and a long case; every case has b_hn (bn) as an
    input when it has biases, and its gradient is compared."""
    opts = {name: c["options"] for name, c in GRU_CASES.items()}
    assert len(opts) >= 10 and all(o["cell"] == "gru" for o in opts.values())
    plain = [o for o in opts.values() if o["truncate"] is None and o["clip_step"] is None]
    assert {(o["output"], o["loss"], o["loss_at"]) for o in plain} >= {
        ("softmax", "mse", "last"), ("softmax", "mse", "all"), ("softmax", "ce", "last"),
        ("softmax", "ce", "all"), ("linear", "mse", "all"), ("linear", "mse", "last")}
    kinds = {(o["truncate"] is not None, o["clip_step"] is not None, o["loss_at"])
             for o in opts.values()}
    assert {(True, False, "all"), (True, False, "last"), (False, True, "all"),
            (True, True, "all")} <= kinds
    assert any(o["truncate"] == 1 for o in opts.values())
    ins = [c["in"] for c in GRU_CASES.values()]
    assert any("s0" in i for i in ins) and any("b" not in i for i in ins)
    assert max(i["x"].shape[0] for i in ins) >= 30
    for c in GRU_CASES.values():
        assert ("bn" in c["in"]) == ("b" in c["in"]) == ("grad_bn" in c["out"])
        assert "dc" not in c["out"] and "cells" not in c["out"]
        if "clip_factors" in c["out"]:                   # clipping happens, not at every step
            f = c["out"]["clip_factors"]
            assert (f < 1).any() and (f == 1).any()


@pytest.mark.parametrize("name", sorted(CASES))
def test_engine_matches_torch(name):
    case = CASES[name]
    res = run_engine(case["in"], case["options"])
    compare(name, engine_values(res), case["out"])


def test_long_cases_explode_and_vanish():
    """The T=30 cases really reach the regimes they are there for, and are still checked at
    rtol 1e-10 (above) down to their smallest norms."""
    explode = CASES["rnn_tanh_T30_explode"]["out"]["ds"]
    vanish = CASES["rnn_tanh_T30_vanish"]["out"]["ds"]
    assert explode[0] / explode[-1] > 1e3
    assert vanish[0] < 1e-9 and vanish[0] / vanish[-1] < 1e-8


def _generator():
    spec = importlib.util.spec_from_file_location("make_golden", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("base", ["lstm_clip_trunc4_all_linear", "rnn_tanh_trunc3_all_ce",
                                  "gru_clip_trunc3_all_linear", "gru_softmax_ce_all_soft_s0"])
def test_live_torch_cross_check(base):
    """Regenerate a case with torch, with a fresh seed, and compare (skips without torch).

    A random draw can put a gradient entry near zero by cancellation, where rounding gives it a
    large *relative* error (over 150 seeds the worst entry was 3e-11, the median 5e-14), so this
    check adds atol = 1e-12 * max|array| to rtol 1e-10; the stored cases use no such floor.
    """
    pytest.importorskip("torch")
    mg = _generator()
    case = dict(next(c for c in mg.CASES if c["name"] == base))
    case["seed"] = int(np.random.default_rng().integers(1 << 31))
    p, inp, ref = mg.generate(case)
    res = run_engine({**p, **inp}, mg.options(case))
    compare(f"{base} seed {case['seed']}", engine_values(res), ref, rel_floor=1e-12)
