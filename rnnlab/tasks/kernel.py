"""The task draws compiled (Numba): recall, adding and random, every run of a batch in one call.

Each function makes the draws of its sampler in ``samplers.py``, in the same order and with the
same algorithms, so it fills the same numbers bit for bit and leaves each Generator in the same
state; it only skips NumPy's per-call costs (a Generator method costs 2-4 us a call, and a
normal from ``standard_normal`` ~9.5 ns here against ~4 ns in a loop).

Run r draws from its own bit generator, called through the function pointers NumPy publishes
(``BitGenerator.ctypes``): ``h[r] = (state, next_uint64, next_uint32, next_double)``, from
``rnnlab.tasks.compiled.handles``. The distributions are NumPy's (numpy/random/src/distributions),
written again below:

    normal      ``_normal``: the ziggurat of ``random_standard_normal`` with NumPy's tables
                (``Generator.standard_normal``)
    integer     ``_integer``: Lemire's rejection on ``next_uint32``, as ``Generator.integers``
                draws a range below 2^32 (no draw for a range of one)
    uniform     ``next_double`` (``Generator.random``)

``rnnlab.tasks.compiled`` checks the bits against the NumPy samplers before the first use, so
draws that differ (another compiler fusing a multiply-add NumPy's build does not, say) are never
used. Shapes: x (R, T, B, I), d (R, T, B, O), zeros on entry; time indexed from 0 as in
``samplers.py``.
"""

from __future__ import annotations

import math

import numpy as np

from rnnlab.compiling import cache_subdir

_CACHE = cache_subdir(__name__, "-draws")   # NUMBA_CACHE_DIR must be set before numba's import

import numba  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import njit, types  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

# NumPy's ziggurat tables (numpy/random/src/distributions/ziggurat_constants.h), as Numba ships
# them for its own port
from numba.np.random._constants import (  # noqa: E402
    fi_double,
    ki_double,
    wi_double,
    ziggurat_nor_inv_r,
    ziggurat_nor_r,
)

numba.config.CACHE_DIR = _CACHE             # read when the functions below are decorated

FLAGS = {"cache": True, "error_model": "numpy", "nogil": True, "fastmath": False,
         "boundscheck": False}
#: The draws of one number: inlined into each task's loop (Numba's IR), no call per number.
INLINE = {**FLAGS, "inline": "always"}

_KI = ki_double.astype(np.uint64)
_WI = wi_double.astype(np.float64)
_FI = fi_double.astype(np.float64)
_NOR_R = float(ziggurat_nor_r)
_NOR_INV_R = float(ziggurat_nor_inv_r)


def _call_codegen(context, builder, sig, args):
    """Call the C function at address args[0] with the state address args[1]."""
    fnty = ir.FunctionType(context.get_value_type(sig.return_type), (ir.IntType(64),))
    return builder.call(builder.inttoptr(args[0], fnty.as_pointer()), (args[1],))


@intrinsic
def _next_uint64(typingctx, fn, state):
    return types.uint64(types.uint64, types.uint64), _call_codegen


@intrinsic
def _next_uint32(typingctx, fn, state):
    return types.uint32(types.uint64, types.uint64), _call_codegen


@intrinsic
def _next_double(typingctx, fn, state):
    return types.float64(types.uint64, types.uint64), _call_codegen


@njit(**INLINE)
def _normal(st, f64, fd):
    """One N(0, 1) draw from the bit generator with state ``st`` and functions ``f64``
    (next_uint64), ``fd`` (next_double): NumPy's ``random_standard_normal``, the ziggurat with
    256 layers (99 % of draws return at the first test)."""
    while True:
        u = _next_uint64(f64, st)
        idx = u & np.uint64(0xFF)
        u >>= np.uint64(8)
        rabs = (u >> np.uint64(1)) & np.uint64(0x000FFFFFFFFFFFFF)
        x = np.float64(rabs) * _WI[idx]
        if u & np.uint64(1):
            x = -x
        if rabs < _KI[idx]:
            return x
        if idx == 0:                            # the tail beyond r
            while True:
                xx = -_NOR_INV_R * math.log1p(-_next_double(fd, st))
                yy = -math.log1p(-_next_double(fd, st))
                if yy + yy > xx * xx:
                    if (rabs >> np.uint64(8)) & np.uint64(1):
                        return -(_NOR_R + xx)
                    return _NOR_R + xx
        elif (_FI[idx - 1] - _FI[idx]) * _next_double(fd, st) + _FI[idx] < math.exp(-0.5 * x * x):
            return x


@njit(**INLINE)
def _integer(st, f32, low, n):
    """``Generator.integers(low, low + n)``, one draw (1 <= n < 2^32) from the bit generator
    with state ``st`` and next_uint32 ``f32``: NumPy's ``buffered_bounded_lemire_uint32``."""
    if n == 1:
        return low
    n_ = np.uint64(n)
    low32 = np.uint64(0xFFFFFFFF)
    m = np.uint64(_next_uint32(f32, st)) * n_
    if (m & low32) < n_:
        threshold = (np.uint64(1 << 32) - n_) % n_
        while (m & low32) < threshold:
            m = np.uint64(_next_uint32(f32, st)) * n_
    return low + np.int64(m >> np.uint64(32))


@njit(**FLAGS)
def recall(h, K, sigma, x, d):
    """``_sample_recall`` for every run: s ~ U{0..K-1} (B draws), then z ~ N(0, 1) of shape
    (T - 1, B, K) in C order; x_0 = e_s, x_t = sigma z_t, d_{T-1} = e_s."""
    R, T, B, _ = x.shape
    for r in range(R):
        st, f64, f32, fd = h[r, 0], h[r, 1], h[r, 2], h[r, 3]
        for b in range(B):
            s = _integer(st, f32, 0, K)
            x[r, 0, b, s] = 1.0
            d[r, T - 1, b, s] = 1.0
        for t in range(1, T):
            for b in range(B):
                for k in range(K):
                    z = _normal(st, f64, fd)
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
        st, f32, fd = h[r, 0], h[r, 2], h[r, 3]
        for t in range(T):
            for b in range(B):
                x[r, t, b, 0] = _next_double(fd, st)
        for b in range(B):
            ij[0, b] = _integer(st, f32, lo1, n1)
        for b in range(B):
            ij[1, b] = _integer(st, f32, lo2, n2)
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
        st, f64, f32, fd = h[r, 0], h[r, 1], h[r, 2], h[r, 3]
        for t in range(T):
            for b in range(B):
                for i in range(I):
                    x[r, t, b, i] = _normal(st, f64, fd)
        for t in range(T):
            for b in range(B):
                d[r, t, b, _integer(st, f32, 0, K)] = 1.0


#: The compiled draws by task name.
DRAWS = {"recall": recall, "adding": adding, "random": random}
