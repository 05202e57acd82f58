"""Tests for rnnlab.tasks: shapes, determinism, structure, baselines, accuracy, options."""

import math

import numpy as np
import pytest

from rnnlab.tasks import (
    TASK_OPTIONS,
    TASKS,
    Task,
    make_task,
    temporal_order_windows,
)


def rng(seed=0):
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------------------
# shapes, dtypes, determinism

EXPECTED = {  # name -> (length, I, O, output, loss, loss_at) for seq_len 12 and default options
    "recall": (12, 4, 4, "softmax", "mse", "last"),
    "adding": (12, 2, 1, "linear", "mse", "last"),
    "copy": (32, 10, 9, "softmax", "ce", "all"),
    "temporal_order": (12, 6, 4, "softmax", "ce", "last"),
    "random": (12, 4, 4, "softmax", "mse", "last"),
}


def test_task_list_matches_options():
    assert set(TASKS) == set(TASK_OPTIONS) == set(EXPECTED)


@pytest.mark.parametrize("name", TASKS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_shapes_dtypes_and_metadata(name, dtype):
    task = make_task(name, 12)
    length, I, O, output, loss, loss_at = EXPECTED[name]
    assert isinstance(task, Task)
    assert (task.name, task.seq_len, task.length) == (name, 12, length)
    assert (task.input_size, task.output_size) == (I, O)
    assert (task.output, task.loss, task.loss_at) == (output, loss, loss_at)
    assert task.options == TASK_OPTIONS[name]
    for key in ("metric", "value", "formula", "source", "loss", "loss_formula"):
        assert key in task.baseline
    x, d = task.sample(rng(), 5, dtype=dtype)
    assert x.shape == (length, 5, I) and d.shape == (length, 5, O)
    assert x.dtype == np.dtype(dtype) and d.dtype == np.dtype(dtype)


def test_default_dtype_is_float64():
    x, d = make_task("recall", 5).sample(rng(), 2)
    assert x.dtype == np.float64 and d.dtype == np.float64


@pytest.mark.parametrize("name", TASKS)
def test_determinism(name):
    task = make_task(name, 20)
    x1, d1 = task.sample(rng(7), 16)
    x2, d2 = task.sample(rng(7), 16)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(d1, d2)
    x3, _ = task.sample(rng(8), 16)
    assert not np.array_equal(x1, x3)
    # float32 data is the rounding of the float64 data
    x4, d4 = task.sample(rng(7), 16, dtype=np.float32)
    np.testing.assert_array_equal(x4, x1.astype(np.float32))
    np.testing.assert_array_equal(d4, d1.astype(np.float32))


def test_sample_argument_checks():
    task = make_task("recall", 5)
    with pytest.raises(ValueError, match="batch"):
        task.sample(rng(), 0)
    with pytest.raises(ValueError, match="dtype"):
        task.sample(rng(), 2, dtype=np.int64)
    with pytest.raises(TypeError, match="Generator"):
        task.sample(np.random.RandomState(0), 2)


# ------------------------------------------------------------------------------------------
# recall


def test_recall_structure():
    task = make_task("recall", 9, symbols=5, noise=0.5)
    x, d = task.sample(rng(), 4000)
    s = x[0].argmax(-1)
    np.testing.assert_array_equal(x[0], np.eye(5)[s])
    np.testing.assert_array_equal(d[-1], np.eye(5)[s])
    assert not d[:-1].any()
    assert abs(x[1:].std() - 0.5) < 0.01 and abs(x[1:].mean()) < 0.01


def test_recall_zero_noise():
    x, _ = make_task("recall", 6, noise=0).sample(rng(), 10)
    assert not x[1:].any()
    assert (x[0].sum(-1) == 1).all()


@pytest.mark.parametrize("K", [4, 5])
def test_recall_baseline(K):
    task = make_task("recall", 5, symbols=K)
    assert task.baseline["value"] == pytest.approx(1 / K)
    _, d = task.sample(rng(1), 40000)
    # a uniform (constant) prediction: argmax picks class 0 every time
    y_uniform = np.full_like(d, 1 / K)
    assert task.accuracy(y_uniform, d) == pytest.approx(1 / K, abs=0.01)
    # a random guess that ignores the input
    y_guess = rng(2).random(d.shape)
    assert task.accuracy(y_guess, d) == pytest.approx(1 / K, abs=0.01)
    # mse of the uniform output in engine units: sum over outputs, mean over batch
    mse = ((y_uniform[-1] - d[-1]) ** 2).sum(-1).mean()
    assert mse == pytest.approx(task.baseline["loss"], rel=1e-12)
    assert task.baseline["loss"] == pytest.approx(1 - 1 / K)


# ------------------------------------------------------------------------------------------
# adding


def marker_positions(x):
    """(T, B, 2) adding inputs -> (i, j) arrays (B,) of the two marker steps, i < j."""
    b, t = np.nonzero(x[:, :, 1].T)  # (B, T) in row-major order: by batch, then time
    b, t = b.reshape(-1, 2), t.reshape(-1, 2)  # requires exactly two markers per sequence
    assert (b == np.arange(x.shape[1])[:, None]).all()
    return t[:, 0], t[:, 1]


@pytest.mark.parametrize("T", [2, 3, 11, 50])
def test_adding_markers_halves(T):
    x, d = make_task("adding", T).sample(rng(3), 5000)
    assert set(np.unique(x[:, :, 1])) <= {0.0, 1.0}
    assert (x[:, :, 1].sum(0) == 2).all()
    i, j = marker_positions(x)
    h = T // 2
    assert (i < h).all() and (j >= h).all()
    assert i.min() == 0 and i.max() == h - 1 and j.min() == h and j.max() == T - 1
    cols = np.arange(x.shape[1])
    np.testing.assert_allclose(d[-1, :, 0], x[i, cols, 0] + x[j, cols, 0])
    assert not d[:-1].any()
    assert (x[:, :, 0] >= 0).all() and (x[:, :, 0] < 1).all()


def test_adding_markers_anywhere():
    T = 10
    x, d = make_task("adding", T, placement="anywhere").sample(rng(4), 20000)
    assert (x[:, :, 1].sum(0) == 2).all()  # two distinct positions
    i, j = marker_positions(x)
    # every ordered pair of distinct positions occurs, roughly uniformly (45 pairs)
    counts = np.bincount(i * T + j, minlength=T * T).reshape(T, T)
    pairs = counts[np.triu_indices(T, 1)]
    assert (pairs > 0).all()
    assert pairs.std() / pairs.mean() < 0.15
    assert ((i < T // 2) & (j < T // 2)).any()  # not forced into halves
    cols = np.arange(x.shape[1])
    np.testing.assert_allclose(d[-1, :, 0], x[i, cols, 0] + x[j, cols, 0])


@pytest.mark.parametrize("placement", ["halves", "anywhere"])
def test_adding_baseline(placement):
    task = make_task("adding", 10, placement=placement)
    _, d = task.sample(rng(5), 100_000)
    mse = ((1.0 - d[-1, :, 0]) ** 2).mean()
    assert abs(mse - 1 / 6) < 0.01
    assert task.baseline["value"] == pytest.approx(1 / 6)
    acc = task.accuracy(np.ones_like(d), d)
    assert acc == pytest.approx(task.baseline["accuracy"], abs=0.005)


def test_adding_accuracy_hand_made():
    task = make_task("adding", 3)
    d = np.zeros((3, 4, 1))
    d[-1, :, 0] = [1.0, 1.0, 0.5, 1.5]
    y = np.zeros((3, 4, 1))
    y[-1, :, 0] = [1.03, 0.95, 0.5, np.nan]  # hit, miss (0.05), hit, nan
    y[0, :, 0] = 100.0  # outputs before T are ignored
    assert task.accuracy(y, d) == pytest.approx(0.5)
    assert make_task("adding", 3, tolerance=0.08).accuracy(y, d) == pytest.approx(0.75)


def test_adding_solved():
    task = make_task("adding", 10)
    assert task.solved(0.009, None) and task.solved(0.005, 0.2)
    assert not task.solved(0.011, 1.0)
    assert not task.solved(float("nan"), None)


# ------------------------------------------------------------------------------------------
# copy


def test_copy_structure():
    T, L, S = 7, 3, 5
    task = make_task("copy", T, copy_len=L, symbols=S)
    assert task.length == T + 2 * L
    x, d = task.sample(rng(), 50)
    assert (x.sum(-1) == 1).all() and (d.sum(-1) == 1).all()  # one-hot everywhere
    xi, di = x.argmax(-1), d.argmax(-1)
    a = xi[:L]
    assert (a < S).all()
    assert (xi[L:L + T - 1] == S).all()
    assert (xi[L + T - 1] == S + 1).all()
    assert (xi[L + T:] == S).all()
    assert (di[:T + L] == S).all()
    np.testing.assert_array_equal(di[T + L:], a)


@pytest.mark.parametrize("T,L,S", [(50, 10, 8), (20, 4, 3)])
def test_copy_baseline(T, L, S):
    task = make_task("copy", T, copy_len=L, symbols=S)
    assert task.baseline["value"] == pytest.approx(L * math.log(S) / (T + 2 * L))
    assert task.baseline["loss"] == pytest.approx(L * math.log(S))
    _, d = task.sample(rng(6), 5000)
    # best memoryless predictor: the empirical class distribution of each step
    p = d.mean(axis=1, keepdims=True)  # (n, 1, S + 1)
    with np.errstate(divide="ignore"):
        logp = np.where(d > 0, np.log(p), 0.0)
    ce_summed = -(d * logp).sum(axis=(0, 2)).mean()
    assert ce_summed == pytest.approx(task.baseline["loss"], rel=2e-3)
    assert ce_summed / task.length == pytest.approx(task.baseline["value"], rel=2e-3)


def test_copy_default_baseline_formula():
    task = make_task("copy", 100)
    assert task.baseline["value"] == pytest.approx(10 * math.log(8) / 120)


def test_copy_accuracy_hand_made():
    T, L, S = 4, 2, 3
    task = make_task("copy", T, copy_len=L, symbols=S)
    x, d = task.sample(rng(), 3)
    y = d.copy()
    y[:T + L] = 0.0  # wrong (argmax 0 != blank) but outside the scored window
    assert task.accuracy(y, d) == 1.0
    y[-1, 0] = np.roll(d[-1, 0], 1)  # one wrong symbol of L * B = 6
    assert task.accuracy(y, d) == pytest.approx(5 / 6)
    y[-2, 1] = np.nan  # a non-finite prediction is a miss
    assert task.accuracy(y, d) == pytest.approx(4 / 6)
    assert task.solved(1.0, 0.99) and not task.solved(0.0, 0.98)


# ------------------------------------------------------------------------------------------
# temporal order


@pytest.mark.parametrize("T", range(10, 31))
def test_temporal_order_windows_ceil(T):
    (lo1, hi1), (lo2, hi2) = temporal_order_windows(T, "ceil")
    w1, w2 = range(lo1, hi1), range(lo2, hi2)
    assert len(w1) >= 1 and len(w2) >= 1
    assert list(w1) == [t for t in range(T) if T <= 10 * t < 2 * T]  # 0.1 T <= t < 0.2 T
    assert list(w2) == [t for t in range(T) if 5 * T <= 10 * t < 6 * T]
    assert hi1 <= lo2 and hi2 <= T - 1


@pytest.mark.parametrize("T,B", [(10, 40000), (13, 40000), (100, 5000)])
def test_temporal_order_structure_and_baseline(T, B):
    task = make_task("temporal_order", T)
    D = task.options["distractors"]
    x, d = task.sample(rng(9), B)
    assert (x.sum(-1) == 1).all()
    idx = x.argmax(-1)  # (T, B)
    relevant = idx >= D
    assert (relevant.sum(0) == 2).all()
    b, t = np.nonzero(relevant.T)
    t = t.reshape(-1, 2)
    (lo1, hi1), (lo2, hi2) = temporal_order_windows(T, "floor")
    assert t[:, 0].min() == lo1 and t[:, 0].max() == hi1 - 1
    assert t[:, 1].min() == lo2 and t[:, 1].max() == hi2 - 1
    cols = np.arange(x.shape[1])
    first_b = idx[t[:, 0], cols] == D + 1
    second_b = idx[t[:, 1], cols] == D + 1
    cls = d[-1].argmax(-1)
    np.testing.assert_array_equal(cls, 2 * first_b + second_b)
    assert not d[:-1].any() and (d[-1].sum(-1) == 1).all()
    freq = np.bincount(cls, minlength=4) / cls.size
    np.testing.assert_allclose(freq, 0.25, atol=4 * math.sqrt(0.1875 / B))
    assert task.baseline["value"] == 0.25
    # distractors uniform over D symbols
    dfreq = np.bincount(idx[~relevant], minlength=D) / (~relevant).sum()
    np.testing.assert_allclose(dfreq, 1 / D, atol=0.01)


def test_temporal_order_too_short():
    with pytest.raises(ValueError, match="seq_len"):
        make_task("temporal_order", 9)


def test_temporal_order_accuracy_and_solved():
    task = make_task("temporal_order", 10)
    _, d = task.sample(rng(), 100)
    y = d.copy()
    y[-1, :3] = np.roll(y[-1, :3], 1, axis=-1)
    assert task.accuracy(y, d) == pytest.approx(0.97)
    assert not task.solved(0.1, 0.97)
    assert task.solved(0.1, 0.99)


# ------------------------------------------------------------------------------------------
# random


def test_random_task():
    task = make_task("random", 6, input_size=3, symbols=5)
    x, d = task.sample(rng(), 20000)
    assert x.shape == (6, 20000, 3) and d.shape == (6, 20000, 5)
    assert abs(x.std() - 1) < 0.01
    assert (d.sum(-1) == 1).all()
    np.testing.assert_allclose(d.mean(axis=(0, 1)), 0.2, atol=0.01)
    assert task.accuracy(rng(1).random(d.shape), d) == pytest.approx(0.2, abs=0.01)
    assert task.solved(0.0, 1.0) is False


# ------------------------------------------------------------------------------------------
# accuracy


def test_recall_accuracy_hand_made():
    task = make_task("recall", 3, symbols=3)
    d = np.zeros((3, 4, 3))
    d[-1] = np.eye(3)[[0, 1, 2, 0]]
    y = np.zeros((3, 4, 3))
    y[-1] = [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]]
    y[0] = np.eye(3)[[1, 2, 0, 1]]  # earlier steps are ignored
    assert task.accuracy(y, d) == pytest.approx(0.5)
    y[-1, 0] = np.nan
    assert task.accuracy(y, d) == pytest.approx(0.25)
    assert task.solved(1.0, 0.95) and not task.solved(0.0, 0.949)


@pytest.mark.parametrize("name", TASKS)
def test_accuracy_with_run_axis(name):
    task = make_task(name, 10)
    _, d = task.sample(rng(), 32)
    R = 3
    g = rng(1)
    # runs of different quality: the targets blended with more or less noise
    y = np.stack([d + s * g.standard_normal(d.shape) for s in (0.0, 0.05, 1.0)])
    acc = task.accuracy(y, d)  # d broadcast over runs
    assert isinstance(acc, np.ndarray) and acc.shape == (R,)
    np.testing.assert_allclose(acc, [task.accuracy(y[r], d) for r in range(R)])
    dd = np.broadcast_to(d, y.shape)
    np.testing.assert_allclose(task.accuracy(y, dd), acc)
    assert acc[0] == 1.0
    assert isinstance(task.accuracy(y[0], d), float)


def test_accuracy_shape_check():
    task = make_task("recall", 5)
    _, d = task.sample(rng(), 3)
    with pytest.raises(ValueError, match="shape"):
        task.accuracy(d[:-1], d)
    with pytest.raises(ValueError, match="shape"):
        task.accuracy(d[..., :2], d)


# ------------------------------------------------------------------------------------------
# options


def test_unknown_option():
    with pytest.raises(ValueError, match=r"'placement'.*symbols, noise"):
        make_task("recall", 10, placement="halves")
    with pytest.raises(ValueError, match=r"'noise'.*copy_len, symbols"):
        make_task("copy", 10, noise=1.0)


def test_unknown_task():
    with pytest.raises(ValueError, match=r"'nope'.*recall, adding, copy"):
        make_task("nope", 10)


@pytest.mark.parametrize("name,kw", [
    ("recall", {"symbols": 1}), ("recall", {"symbols": 2.5}), ("recall", {"noise": -1.0}),
    ("recall", {"noise": float("nan")}), ("adding", {"placement": "middle"}),
    ("adding", {"tolerance": 0}), ("copy", {"copy_len": 0}), ("copy", {"symbols": True}),
    ("random", {"input_size": 0}), ("temporal_order", {"distractors": 0}),
])
def test_bad_option_values(name, kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        make_task(name, 20, **kw)


@pytest.mark.parametrize("name,T", [("adding", 1), ("recall", 0), ("copy", 0), ("random", 2.0)])
def test_bad_seq_len(name, T):
    with pytest.raises(ValueError, match="seq_len"):
        make_task(name, T)


def test_none_means_default():
    task = make_task("copy", 10, copy_len=None, symbols=3)
    assert task.options == {"copy_len": 10, "symbols": 3, "scoring": "rnnlab"}
    assert task.length == 30 and task.input_size == 5 and task.output_size == 4


# ------------------------------------------------------------------------------------------
# adding: the published accuracy criteria, Pascanu et al.'s variant

from rnnlab.tasks import (  # noqa: E402
    ACCURACY_CRITERIA,
    ADDING_SOLVED_FRACTION,
    ADDING_SOLVED_MSE,
    ADDING_SOLVED_MSE_MEAN,
    HS_TOLERANCE,
    PASCANU_SQUARED_ERROR,
    adding_windows,
)


def test_criteria_constants_and_their_derivation():
    # H&S: |error| < 0.04 on 0.5 + (X1 + X2)/4 with X = 2U - 1, i.e. on (U1 + U2)/2
    u1, u2 = 0.3, 0.9
    x1, x2 = 2 * u1 - 1, 2 * u2 - 1
    assert 0.5 + (x1 + x2) / 4 == pytest.approx((u1 + u2) / 2)
    assert HS_TOLERANCE == 0.04
    assert 2 * HS_TOLERANCE == 0.08                   # on the sum, exactly (a power of two)
    # Pascanu: wrong when the squared error on the mean exceeds 0.04: |e| <= 0.2, 0.4 on the sum
    assert PASCANU_SQUARED_ERROR == 0.04
    assert math.sqrt(PASCANU_SQUARED_ERROR) == pytest.approx(0.2)
    assert ACCURACY_CRITERIA == ("accuracy_hs", "accuracy_pascanu")
    # solved: the same fraction 0.06 of each target's baseline
    assert ADDING_SOLVED_MSE == 0.01 and ADDING_SOLVED_FRACTION == pytest.approx(0.06)
    assert ADDING_SOLVED_MSE_MEAN == pytest.approx(ADDING_SOLVED_FRACTION / 24)
    assert make_task("adding", 10).baseline["solved_mse"] == ADDING_SOLVED_MSE
    assert make_task("adding", 10, target="mean").baseline["solved_mse"] == 0.0025


def _adding_outputs(errors, target="sum"):
    """(y, d) for adding at T = 2 whose last-step errors y - d are ``errors``."""
    e = np.asarray(errors, dtype=float)
    d = np.zeros((2, e.size, 1))
    d[-1, :, 0] = 1.0 if target == "sum" else 0.5
    y = d.copy()
    y[-1, :, 0] += e
    return y, d


@pytest.mark.parametrize("target,scale", [("sum", 2.0), ("mean", 1.0)])
def test_criteria_counts_at_their_thresholds(target, scale):
    task = make_task("adding", 2, target=target)
    hs = HS_TOLERANCE * scale                       # 0.08 on the sum, 0.04 on the mean
    pa = math.sqrt(PASCANU_SQUARED_ERROR) * scale   # 0.4 on the sum, 0.2 on the mean
    eps = 1e-9
    # errors (both signs): just inside and just outside each threshold
    errors = [0.0, hs - eps, -(hs - eps), hs + eps, -(hs + eps),
              pa - eps, -(pa - eps), pa + eps, -(pa + eps), np.nan]
    y, d = _adding_outputs(errors, target)
    got = task.criteria(y, d)
    n = len(errors)
    assert got["accuracy_hs"] == pytest.approx(3 / n)          # 0 and the two just inside
    assert got["accuracy_pascanu"] == pytest.approx(7 / n)     # all but the outside two, nan
    # the default accuracy: tolerance 0.04 in the target's units
    inside_tol = sum(abs(e) < 0.04 for e in errors if not np.isnan(e))
    assert task.accuracy(y, d) == pytest.approx(inside_tol / n)
    # the same with a run axis, and an empty dict for every other task
    both = task.criteria(np.stack([y, d]), d)
    np.testing.assert_allclose(both["accuracy_hs"], [3 / n, 1.0])
    assert make_task("recall", 5).criteria(*make_task("recall", 5).sample(rng(), 2)[::-1]) == {}


def test_criteria_are_exact_on_the_sum_and_the_mean():
    # the same predictions, halved, give the same counts under both targets
    g = rng(11)
    d_sum = np.zeros((4, 5000, 1))
    d_sum[-1, :, 0] = g.random(5000) + g.random(5000)
    y_sum = d_sum + 0.3 * g.standard_normal(d_sum.shape)
    a = make_task("adding", 4).criteria(y_sum, d_sum)
    b = make_task("adding", 4, target="mean").criteria(y_sum / 2, d_sum / 2)
    assert a == b
    assert 0 < a["accuracy_hs"] < a["accuracy_pascanu"] < 1


@pytest.mark.parametrize("T", [10, 11, 19, 20, 37, 99, 100, 203])
def test_adding_pascanu_positions(T):
    task = make_task("adding", T, placement="pascanu", target="mean")
    x, d = task.sample(rng(12), 20000)
    i, j = marker_positions(x)
    a, b = T // 10, 4 * T // 10       # Pascanu et al.: int(.1 L), int(.4 L)
    assert adding_windows(T, "pascanu") == ((0, a), (a, a + b))
    assert (i >= 0).all() and (i < a).all() and (j >= a).all() and (j < a + b).all()
    # every position of each window occurs
    assert set(np.unique(i)) == set(range(a)) and set(np.unique(j)) == set(range(a, a + b))
    assert (j < T / 2).all()           # both markers in the first half
    cols = np.arange(x.shape[1])
    np.testing.assert_array_equal(d[-1, :, 0], (x[i, cols, 0] + x[j, cols, 0]) / 2)


def test_adding_mean_baseline_by_simulation():
    task = make_task("adding", 50, placement="pascanu", target="mean")
    assert task.baseline["value"] == pytest.approx(1 / 24)
    assert task.baseline["loss"] == pytest.approx(1 / 24)
    B = 200_000
    _, d = task.sample(rng(13), B)
    t = d[-1, :, 0]
    mse = ((0.5 - t) ** 2).mean()
    # Var((U1 + U2)/2) = 1/24; the sd of a squared deviation is below 1/16, so 5 sd ~ 7e-4
    assert abs(mse - 1 / 24) < 5 * (1 / 16) / math.sqrt(B)
    acc = task.accuracy(np.full_like(d, 0.5), d)
    assert acc == pytest.approx(task.baseline["accuracy"], abs=0.005)
    # solved at 6 % of the baseline, as for the sum
    assert task.solved(0.0024, None) and not task.solved(0.0026, None)
    assert task.criterion == "mse < 0.0025"


def test_adding_pascanu_needs_ten_steps():
    with pytest.raises(ValueError, match=r"seq_len: got 9; allowed: an integer >= 10.*pascanu"):
        make_task("adding", 9, placement="pascanu")
    make_task("adding", 9)                        # the other placements need 2


def test_adding_target_option_checked():
    with pytest.raises(ValueError, match=r"option target: got 'median'; allowed: sum, mean"):
        make_task("adding", 10, target="median")


# ------------------------------------------------------------------------------------------
# temporal order: Pascanu's floor windows (the default)


def _floor_windows(T):
    # Pascanu et al.'s tempOrder.py: randint(int(.1 L), int(.2 L)), randint(int(.5 L), int(.6 L))
    return (int(T * .1), int(T * .2)), (int(T * .5), int(T * .6))


def test_temporal_order_floor_windows_match_the_paper():
    for T in range(10, 201):
        (lo1, hi1), (lo2, hi2) = temporal_order_windows(T)
        assert ((lo1, hi1), (lo2, hi2)) == _floor_windows(T)
        assert hi1 > lo1 and hi2 > lo2 and hi1 <= lo2 and hi2 <= T - 1
    differ = [T for T in range(10, 201)
              if temporal_order_windows(T) != temporal_order_windows(T, "ceil")]
    assert all(T % 10 for T in differ) and len(differ) > 100


def test_temporal_order_draws_lie_in_and_cover_the_floor_windows():
    for T in range(10, 201):
        task = make_task("temporal_order", T)
        assert task.options["windows"] == "floor"
        x, _ = task.sample(rng(T), 400)
        relevant = x.argmax(-1) >= task.options["distractors"]
        _, t = np.nonzero(relevant.T)
        t = t.reshape(-1, 2)
        (lo1, hi1), (lo2, hi2) = _floor_windows(T)
        assert set(np.unique(t[:, 0])) == set(range(lo1, hi1))
        assert set(np.unique(t[:, 1])) == set(range(lo2, hi2))


def test_temporal_order_ceil_windows_option():
    T = 15
    x, _ = make_task("temporal_order", T, windows="ceil").sample(rng(3), 4000)
    _, t = np.nonzero((x.argmax(-1) >= 4).T)
    t = t.reshape(-1, 2)
    assert set(np.unique(t[:, 0])) == {2} and set(np.unique(t[:, 1])) == {8}    # ceil
    x, _ = make_task("temporal_order", T).sample(rng(3), 4000)
    _, t = np.nonzero((x.argmax(-1) >= 4).T)
    t = t.reshape(-1, 2)
    assert set(np.unique(t[:, 0])) == {1, 2} and set(np.unique(t[:, 1])) == {7, 8}  # floor
    with pytest.raises(ValueError, match=r"option windows: got 'round'; allowed: floor, ceil"):
        make_task("temporal_order", T, windows="round")


# ------------------------------------------------------------------------------------------
# copy: Arjovsky et al.'s scoring


def test_copy_arjovsky_scoring_conversion():
    T, L, S = 12, 3, 4
    ours = make_task("copy", T, copy_len=L, symbols=S)
    theirs = make_task("copy", T, copy_len=L, symbols=S, scoring="arjovsky")
    n = T + 2 * L
    assert ours.loss_scale == 1.0 and theirs.loss_scale == pytest.approx(1 / n)
    # the baseline loss: L log S summed, L log S / n averaged (Arjovsky et al.'s 10 log 8 / (T+20))
    assert theirs.baseline["loss"] == pytest.approx(ours.baseline["loss"] / n)
    assert theirs.baseline["loss"] == pytest.approx(theirs.baseline["value"])
    # the conversion on a real batch: the engine's summed ce times loss_scale is the mean over
    # the n steps of the per-step ce
    _, d = ours.sample(rng(), 64)
    y = rng(1).dirichlet(np.ones(S + 1), size=(n, 64))
    ce_steps = -(d * np.log(y)).sum(-1).mean(1)            # (n,) per-step ce, batch mean
    summed = ce_steps.sum()
    assert summed * theirs.loss_scale == pytest.approx(ce_steps.mean(), rel=1e-12)
    # accuracy: the copied symbols only, or every step
    y = d.copy()
    y[0, 0] = np.roll(y[0, 0], 1)        # one wrong blank (outside the copied window)
    y[-1, 1] = np.roll(y[-1, 1], 1)      # one wrong copied symbol
    assert ours.accuracy(y, d) == pytest.approx(1 - 1 / (L * 64))
    assert theirs.accuracy(y, d) == pytest.approx(1 - 2 / (n * 64))
    # solved: no more wrong steps than 1 % of the copied symbols
    assert theirs.baseline["solved_accuracy"] == pytest.approx(1 - 0.01 * L / n)
    assert theirs.solved(0.0, 1 - 0.01 * L / n) and not theirs.solved(0.0, 1 - 0.011 * L / n)


def test_every_option_is_one_definition():
    from rnnlab.experiment.schema import TaskConfig, describe_field
    from rnnlab.tasks import OPTIONS

    fields = set(TaskConfig.model_fields) - {"name", "seq_len", "batch", "eval_batch"}
    assert fields == set(OPTIONS) == {k for opts in TASK_OPTIONS.values() for k in opts}
    for name, spec in OPTIONS.items():
        text = describe_field(TaskConfig.model_fields[name])
        if spec.kind == "choice":
            assert text == "one of " + ", ".join(spec.choices) + ", null"
        else:
            sym = ">" if spec.strict else ">="
            assert f"{sym} {spec.minimum:g}" in text
    # every default is an allowed value
    for task, opts in TASK_OPTIONS.items():
        make_task(task, 20, **opts)


def test_readme_states_the_constants():
    """The README's task table and adding paragraph say what the constants are."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    text = " ".join(text.replace("\\|", "|").split())
    hs, pa = HS_TOLERANCE, math.sqrt(PASCANU_SQUARED_ERROR)
    default_tol = TASK_OPTIONS["adding"]["tolerance"]
    for phrase in (
        f"`accuracy_hs`: |error| < {hs:g} on the mean ({2 * hs:g} on the sum)",
        f"`accuracy_pascanu`: (error on the mean)^2 <= {PASCANU_SQUARED_ERROR:g} "
        f"(|error| <= {2 * pa:g} on the sum)",
        f"`tolerance: {default_tol:g}`",
        f"MSE < {ADDING_SOLVED_MSE:g} (sum), < {ADDING_SOLVED_MSE_MEAN:g} (mean): "
        f"{ADDING_SOLVED_FRACTION * 100:g} % of the baseline",
        f"its `accuracy` counts |error| < {default_tol:g} on the sum",
        f"i.e. {2 * hs:g} on the sum",
    ):
        assert phrase in text, phrase


# ------------------------------------------------------------------------------------------
# adding: Pascanu et al.'s length jitter


def test_jitter_lengthens_training_batches_as_pascanus_randint():
    """k uniform on 0..floor(0.1 T) - 1 (numpy's ``randint(int(.1 * L))``), every value drawn,
    the same k at a step for every caller; no jitter below T = 20 (randint(1) = 0)."""
    for T in (20, 30, 50, 100):
        task = make_task("adding", T, jitter=0.1)
        n = int(0.1 * T + 1e-9)
        lengths = [task.training_length(step) for step in range(3000)]
        assert set(lengths) == set(range(T, T + n))
        assert task.max_length == T + n - 1
        counts = np.bincount(np.array(lengths) - T)
        assert counts.min() > 3000 / n * 0.8                  # roughly uniform
        again = make_task("adding", T, jitter=0.1)
        assert [again.training_length(s) for s in range(50)] == lengths[:50]
    for T in (10, 15):
        short = make_task("adding", T, jitter=0.1)
        assert {short.training_length(s) for s in range(100)} == {T} and short.max_length == T
    plain = make_task("adding", 50)
    assert plain.training_length(7) == 50 and plain.max_length == 50
    with pytest.raises(ValueError, match="jitter"):
        make_task("adding", 50, jitter=-0.1)
    with pytest.raises(ValueError, match="unknown option 'jitter'"):
        make_task("recall", 50, jitter=0.1)
