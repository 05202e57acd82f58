"""The task draws compiled (Numba): recall, adding and random, every run of a batch in one call.

Each function makes the draws of its sampler in ``samplers.py``, in the same order and with the
same algorithms, so it fills the same numbers bit for bit and leaves each Generator in the same
state; it only skips NumPy's per-call costs (a Generator method costs 2-4 us a call, and a
normal from ``standard_normal`` ~9.5 ns here against ~4 ns in a loop).

Run r draws from its own bit generator, called through the function pointers NumPy publishes
(``BitGenerator.ctypes``): ``h[r] = (state, next_uint64, next_uint32, next_double)``, from
``rnnlab.tasks.compiled.handles``. The distributions are Numba's ports of NumPy's:

    normal      ``random_standard_normal``: the ziggurat with NumPy's tables
                (``Generator.standard_normal``)
    integer     ``buffered_bounded_lemire_uint32``: Lemire's rejection on ``next_uint32``, as
                ``Generator.integers`` draws a range below 2^32 (no draw for a range of one)
    uniform     ``next_double`` (``Generator.random``)

``rnnlab.tasks.compiled`` checks the bits against the NumPy samplers before the first use, so a
Numba whose ports drift is never used. Shapes: x (R, T, B, I), d (R, T, B, O), zeros on entry;
time indexed from 0 as in ``samplers.py``.
"""

from __future__ import annotations

import numpy as np

from rnnlab.compiling import cache_subdir

_CACHE = cache_subdir(__name__, "-draws")   # NUMBA_CACHE_DIR must be set before numba's import

import numba  # noqa: E402
from numba import njit, types  # noqa: E402
from numba.core import cgutils  # noqa: E402
from numba.extending import intrinsic  # noqa: E402
from numba.np.random.distributions import random_standard_normal  # noqa: E402
from numba.np.random.generator_core import next_double  # noqa: E402
from numba.np.random.random_methods import buffered_bounded_lemire_uint32  # noqa: E402

numba.config.CACHE_DIR = _CACHE             # read when the functions below are decorated

FLAGS = {"cache": True, "error_model": "numpy", "nogil": True, "fastmath": False,
         "boundscheck": False}

_BITGEN = types.NumPyRandomBitGeneratorType("bit_generator")


@intrinsic
def _bitgen(typingctx, state, next_uint64, next_uint32, next_double_):
    """Numba's bit-generator value from the addresses of a NumPy bit generator's state and of its
    three ``next_*`` functions (what Numba builds itself when it unboxes a Generator, at ~10 us
    a call)."""
    sig = _BITGEN(types.uint64, types.uint64, types.uint64, types.uint64)

    def codegen(context, builder, sig, args):
        bg = cgutils.create_struct_proxy(_BITGEN)(context, builder)
        bg.parent = cgutils.get_null_value(bg.parent.type)
        bg.state_address = args[0]
        bg.state = args[0]
        bg.fnptr_next_uint64 = args[1]
        bg.fnptr_next_uint32 = args[2]
        bg.fnptr_next_double = args[3]
        bg.bit_generator = context.get_constant(types.uintp, 0)
        return bg._getvalue()
    return sig, codegen


@njit(**FLAGS)
def _run(h, r):
    return _bitgen(h[r, 0], h[r, 1], h[r, 2], h[r, 3])


@njit(**FLAGS)
def _integer(bg, low, n):
    """``Generator.integers(low, low + n)``, one draw (n >= 1)."""
    if n == 1:
        return low
    return low + np.int64(buffered_bounded_lemire_uint32(bg, np.uint32(n - 1)))


@njit(**FLAGS)
def recall(h, K, sigma, x, d):
    """``_sample_recall`` for every run: s ~ U{0..K-1} (B draws), then z ~ N(0, 1) of shape
    (T - 1, B, K) in C order; x_0 = e_s, x_t = sigma z_t, d_{T-1} = e_s."""
    R, T, B, _ = x.shape
    for r in range(R):
        bg = _run(h, r)
        for b in range(B):
            s = _integer(bg, 0, K)
            x[r, 0, b, s] = 1.0
            d[r, T - 1, b, s] = 1.0
        for t in range(1, T):
            for b in range(B):
                for k in range(K):
                    z = random_standard_normal(bg)
                    x[r, t, b, k] = z if sigma == 1.0 else z * sigma


@njit(**FLAGS)
def adding(h, lo1, n1, lo2, n2, anywhere, mean, x, d):
    """``_sample_adding`` for every run: values U[0, 1) of shape (T, B), then the B first
    markers i ~ U{lo1..lo1+n1-1}, then the B second ones j ~ U{lo2..lo2+n2-1} (``anywhere``:
    j + [j >= i]); x_{t,0} = value, x_{i,1} = x_{j,1} = 1, d_{T-1} = value_i + value_j (halved
    for the mean target)."""
    R, T, B, _ = x.shape
    ij = np.empty((2, B), np.int64)
    for r in range(R):
        bg = _run(h, r)
        for t in range(T):
            for b in range(B):
                x[r, t, b, 0] = next_double(bg)
        for b in range(B):
            ij[0, b] = _integer(bg, lo1, n1)
        for b in range(B):
            ij[1, b] = _integer(bg, lo2, n2)
        for b in range(B):
            i, j = ij[0, b], ij[1, b]
            if anywhere and j >= i:
                j += 1
            x[r, i, b, 1] = 1.0
            x[r, j, b, 1] = 1.0
            v = x[r, i, b, 0] + x[r, j, b, 0]
            d[r, T - 1, b, 0] = v * 0.5 if mean else v


@njit(**FLAGS)
def random(h, K, x, d):
    """``_sample_random`` for every run: x ~ N(0, 1) of shape (T, B, I) in C order, then
    c ~ U{0..K-1} of shape (T, B); d_t = e_{c_t}."""
    R, T, B, I = x.shape
    for r in range(R):
        bg = _run(h, r)
        for t in range(T):
            for b in range(B):
                for i in range(I):
                    x[r, t, b, i] = random_standard_normal(bg)
        for t in range(T):
            for b in range(B):
                d[r, t, b, _integer(bg, 0, K)] = 1.0


#: The compiled draws by task name.
DRAWS = {"recall": recall, "adding": adding, "random": random}
