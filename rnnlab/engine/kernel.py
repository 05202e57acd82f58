"""The compiled engine kernel (Numba): forward recurrence, head and loss, backward recurrence,
per-step norms and weight gradients of one cell, in one call over the run axis.

Pure numerics; the only I/O of the compiled engine is the one-line compile announcement in
``rnnlab.engine.compiled``. The NumPy engine (``bptt.py``, ``cells.py``, ``heads.py``) is the
specification: the equations below are the same, evaluated element by element per run.

Vanilla cell, for each run r (independently: no number of run r depends on another run, nor on
R, so batching never changes a bit):

    z_t = (x_t Wx + b) + s_{t-1} Ws,   s_t = phi(z_t),   phi'(z_t) from s_t
    logits_t = s_t Wy + by,  y_t = softmax(logits_t) or logits_t        (loss steps; every step
                                                                          when outputs are asked)
    E = (1/B) sum_{t in L} sum_b ||d_tb - y_tb||^2   or   -(1/B) sum_{t in L} sum_b d_tb . log y_tb
    backward, t = T-1 .. stop:  delta_t (+)= dE_t/ds_t;  clip;  dz_t = delta_t * phi'(z_t);
                                delta_{t-1} = dz_t Ws^T
    dWs = sum_t s_{t-1}^T dz_t,  dWx = sum_t x_t^T dz_t,  db = sum_{t,b} dz_t

The per-step terms s_{t-1}^T dz_t and x_t^T dz_t are formed every step and summed into dWs, dWx in
step order whether or not their norms are reported, so ``norms`` never changes a gradient bit.

Truncation with a loss at every step keeps W = k errors in flight (a ring indexed by t mod k), as
the NumPy engine does; otherwise W = 1.

Shapes (leading axes of size 1 broadcast over the R runs): Wx (Rp, I, H), Ws (Rp, H, H),
b (Rp, H), Wy (Rp, H, O), by (Rp, O), x (Rx, T, B, I), d (Rd, T, B, O), s0 (Rs, B, H),
clip (R,) (inf: no clipping). Outputs: loss (R,), gWx, gWs, gb, gWy, gby like the params with R
runs, S (R, T, B, H) states s_1..s_T, Y (R, T, B, O) outputs, ds, dWs, dWx (R, T) norms (zero
on entry: steps a truncation cuts off keep 0), alpha (R, T, B) clip factors. Arrays not asked
for (Y without outputs, norms without norms) may be any array of the right dtype and rank, and
alpha without clipping any (R, T, n) array (its rows are indexed, never touched).

Floating point: no fastmath but ``contract`` on the functions in ``CONTRACTED`` (the products'
and exp's multiply-adds fused into one rounding each; a reassociated reduction would give a
cached compile and a fresh one different bits, a fused multiply-add does not);
``error_model="numpy"`` (no zero-division checks, so the loops vectorise). Every sum runs in an
order fixed by the code and the per-run sizes (never by R): products one k at a time in k order
(``_mm``), norms per column then across columns. The products are register-tiled
(``_mm``) and compiled with LLVM's SLP vectoriser on (``slp_compiles``), which packs operations
into vector lanes but never reorders one. exp is ``_exp`` (within 1 ulp of NumPy's,
vectorisable; tanh uses ``_exp_t``, the same bits without range checks), so tanh and sigmoid are the
NumPy engine's formulas on it. Numba compiles once per cell and dtype (activation, loss, flags
and shapes are run-time values).

LSTM (gate order i, f, g, o as at the API; columns 0:H, H:2H, 2H:3H, 3H:4H of a_t):

    a_t = (x_t Wx + b) + s_{t-1} Ws,  i, f, o = sigmoid(a_i, a_f, a_o),  g = tanh(a_g)
    c_t = f c_{t-1} + i g,  s_t = o tanh(c_t)
    backward: dc_t = dc_{t+1} f_{t+1} + delta_t o (1 - tanh^2 c_t);
              da_i = dc_t g i (1 - i), da_f = dc_t c_{t-1} f (1 - f),
              da_o = delta_t tanh(c_t) o (1 - o), da_g = dc_t i (1 - g^2);  delta_{t-1} = da_t Ws^T

GRU (gate order r, z, n): ``gru_kernel``'s docstring.
"""

from __future__ import annotations

import contextlib
import math
import os

import numpy as np

from ..compiling import cache_subdir

#: Whether the kernels are compiled with LLVM's SLP vectoriser (``slp_compiles``); only
#: RNNLAB_KERNEL_SLP=0 turns it off (a check and a fallback: the same bits, ~2x slower products),
#: and such compiles are cached in a folder of their own.
SLP = os.environ.get("RNNLAB_KERNEL_SLP", "1") != "0"
# NUMBA_CACHE_DIR must be set before numba is imported; the locator reads CACHE_DIR when the
# functions below are decorated (one subfolder per package name, ``cache_subdir``)
_CACHE = cache_subdir(__name__, "-slp" if SLP else "-noslp")

import numba  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import njit, types  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

numba.config.CACHE_DIR = _CACHE

FLAGS = {"cache": True, "error_model": "numpy", "nogil": True, "fastmath": False,
         "boundscheck": False}

#: exp's polynomial and the products' inner steps (``CONTRACTED``) may fuse each multiply-add
#: into one fused multiply-add (one rounding instead of two: as accurate or more; tanh ~35% and
#: the small products ~10-15% less time). ``contract`` is the one fastmath flag used: it never
#: reorders operations, so a cached and a fresh compile, and compiles with and without the SLP
#: vectoriser, fuse the same pairs and give the same bits. A CPU without FMA instructions keeps
#: them apart: the bits depend on the CPU type (``kernel_info`` records it), as Numba's
#: host-specific compiles already may.
FMA_FLAGS = {**FLAGS, "fastmath": {"contract"}}
#: The functions compiled with ``FMA_FLAGS`` (``kernel_info`` lists them for the manifest).
CONTRACTED = ("_exp_parts", "_g8", "_row1", "_part")

ACT_CODES = {"tanh": 0, "relu": 1, "sigmoid": 2, "identity": 3}


@contextlib.contextmanager
def slp_compiles():
    """Numba compiles inside this block with LLVM's SLP vectoriser on (``SLP``). Numba turns it
    off by default since LLVM miscompiled some code with it (numba PR 8852); the register tiles
    of ``_mm`` and ``_term`` need it to become vector code. It packs isomorphic scalar
    operations into vector lanes and never reorders a floating-point operation (no fastmath),
    so it changes no bit: tests/test_kernel.py compares compiles with and without it. Numba's
    compiler lock is held so that no other thread's compile sees the setting.

    Numba's compiler reloads its whole config from the environment whenever a NUMBA_ variable
    changed since the last reload, which would silently undo a setting made on ``numba.config``
    alone; so the environment says it too, for the block's duration."""
    from numba.core.compiler_lock import global_compiler_lock
    with global_compiler_lock:
        env_before = os.environ.get("NUMBA_SLP_VECTORIZE")
        before = numba.config.SLP_VECTORIZE
        os.environ["NUMBA_SLP_VECTORIZE"] = str(int(SLP))
        numba.config.SLP_VECTORIZE = int(SLP)
        try:
            yield
        finally:
            if env_before is None:
                os.environ.pop("NUMBA_SLP_VECTORIZE", None)
            else:
                os.environ["NUMBA_SLP_VECTORIZE"] = env_before
            numba.config.SLP_VECTORIZE = before


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01        # ln 2 split so n * _LN2_HI is exact for |n| < 2^11
_LN2_LO = 1.90821492927058770002e-10


@njit(**FMA_FLAGS)
def _exp_parts(xc):
    """(n, p) with exp(xc) = 2^n p: n = round(xc log2 e), r = xc - n ln 2 (|r| <= ln2 / 2,
    two-part ln 2), p(r) of degree 11 (Horner): the near-minimax fit of exp on |r| <= 0.3466
    (Chebyshev, ``mpmath.chebyfit`` at 50 digits), error < 3.2e-18, below the degree-13 Taylor
    polynomial's 2e-17 with two multiply-adds fewer. n is an integral float (``np.floor``;
    ``math.floor`` returns an int, which costs a conversion to int64 and one back per element
    for n ln 2: tanh 5% slower, same values)."""
    n = np.floor(xc * _LOG2E + 0.5)
    r = (xc - n * _LN2_HI) - n * _LN2_LO
    p = 2.5110046444457486e-08
    p = p * r + 2.76326511328741e-07
    p = p * r + 2.7557240894691074e-06
    p = p * r + 2.4801485451264055e-05
    p = p * r + 0.00019841269890069431
    p = p * r + 0.0013888888952343797
    p = p * r + 0.008333333333319592
    p = p * r + 0.04166666666648799
    p = p * r + 0.1666666666666668
    p = p * r + 0.5000000000000019
    p = p * r + 1.0
    p = p * r + 1.0
    return n, p


@intrinsic
def _f64_bits(typingctx, bits):
    """The float64 whose IEEE 754 bit pattern is the int64 ``bits`` (an LLVM bitcast)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@njit(**FLAGS)
def _pow2_times(p, n):
    """p 2^n for an integral n in -1022..1023: 2^n built from its bits, (n + 1023) << 52, so the
    product rounds nothing (p 2^n may still overflow to inf)."""
    return p * _f64_bits((int(n) + 1023) << 52)


@njit(**FLAGS)
def _exp(x):
    """exp(x) in float64 within 1 ulp of NumPy's exp, in plain arithmetic so that loops calling
    it vectorise (libm's exp is a scalar call, ~5 ns; this ~1.5 ns per element here): 2^n p
    (``_exp_parts``, ``_pow2_times``).

    x < -708.3 gives 0 (the true value is a subnormal below 3e-308), x > 709.7 gives inf.
    """
    n, p = _exp_parts(min(max(x, -708.0), 709.0))
    e = _pow2_times(p, n)
    if x < -708.3:
        e = 0.0
    if x > 709.7:
        e = math.inf
    return e


@njit(**FLAGS)
def _exp_t(x):
    """``_exp(x)`` for |x| <= 40, bit for bit, without its two range checks; beyond +-40 the
    value at +-40: only for tanh, where 2 / (1 + e) - 1 is then +-1 exactly with either value
    (e^40 > 2^57; 1 + e^-40 == 1)."""
    n, p = _exp_parts(min(max(x, -40.0), 40.0))
    return _pow2_times(p, n)


@njit(**FLAGS)
def _sigmoid(z, one):
    """1 / (1 + exp(-z)), as ``cells.sigmoid``."""
    return one / (one + _exp(-z))


@njit(**FLAGS)
def _tanh(z, one, two):
    """tanh(z) = 2 / (1 + exp(-2 z)) - 1, the NumPy engine's tanh cell (``rnn_forward_tanh``)."""
    return two / (one + _exp_t(-two * z)) - one


@njit(**FLAGS)
def _tanh_abs(z, one, two):
    """tanh(z) = sign(z) (2 / (1 + exp(-2|z|)) - 1), the NumPy engine's ``tanh_exp``."""
    e = two / (one + _exp_t(-two * abs(z))) - one
    return e if z >= 0 else -e


@njit(**FLAGS)
def _sq8(c, m):
    """c + m * m elementwise: eight column sums of squares (a tuple) plus one row m."""
    return (c[0] + m[0] * m[0], c[1] + m[1] * m[1], c[2] + m[2] * m[2], c[3] + m[3] * m[3],
            c[4] + m[4] * m[4], c[5] + m[5] * m[5], c[6] + m[6] * m[6], c[7] + m[7] * m[7])


@njit(**FLAGS)
def _sumsq(X, lanes):
    """||X||_F^2 of X (P, Q): the squares summed per column in row order into lanes (Q,), eight
    columns at a time in registers, then over the columns in order."""
    P, Q = X.shape
    Q8 = Q - Q % 8
    lanes[0] = 0
    z = lanes[0]                    # zero in the arrays' dtype: float32 sums stay float32
    for j in range(0, Q8, 8):
        c = (z, z, z, z, z, z, z, z)
        for i in range(P):
            c = _sq8(c, X[i, j:j + 8])
        Lj = lanes[j:j + 8]
        Lj[0], Lj[1], Lj[2], Lj[3], Lj[4], Lj[5], Lj[6], Lj[7] = c
    for j in range(Q8, Q):
        c1 = z
        for i in range(P):
            c1 += X[i, j] * X[i, j]
        lanes[j] = c1
    sq = X[0, 0] * 0                # float64 (Numba: float32 * int), so the columns' float32
    for j in range(Q):              # sums are added in float64
        sq += lanes[j]
    return sq


@njit(**FLAGS)
def _clip_norms(D, W, tot, c, alpha_t, clip, norms, lanes):
    """Total error tot = sum_w D[w] (B, H); with ``clip`` rescale every sequence whose total
    norm exceeds c (all W terms by the same factor, so the total is clipped exactly), writing the
    factors into alpha_t (B,). Returns ||tot||^2 after clipping (0 without ``norms``)."""
    B, H = tot.shape
    if W == 1:
        tot = D[0]                          # the total is the one term (scaled once below)
    else:
        for bb in range(B):
            for j in range(H):
                tot[bb, j] = D[0, bb, j]
            for w in range(1, W):
                for j in range(H):
                    tot[bb, j] += D[w, bb, j]
    if clip:
        for bb in range(B):
            sq = tot[bb, 0] * 0
            for j in range(H):
                sq += tot[bb, j] * tot[bb, j]
            nrm = math.sqrt(sq)
            f = nrm * 0 + 1
            if nrm > c:
                f = c / nrm
                for w in range(W):
                    for j in range(H):
                        D[w, bb, j] *= f
                if W > 1:
                    for j in range(H):
                        tot[bb, j] *= f
            alpha_t[bb] = f
    return _sumsq(tot, lanes) if norms else tot[0, 0] * 0


@njit(inline="always", **FLAGS)
def _seg8(p, k):
    """p[k], .., p[k+7]: a row of A at eight k (``_tile_nn``)."""
    return (p[k], p[k + 1], p[k + 2], p[k + 3], p[k + 4], p[k + 5], p[k + 6], p[k + 7])


@njit(inline="always", **FLAGS)
def _col8(q, r):
    """Element r of each of the eight rows q: a row of A^T at eight k (``_tile_tn``)."""
    return (q[0][r], q[1][r], q[2][r], q[3][r], q[4][r], q[5][r], q[6][r], q[7][r])


@njit(**FMA_FLAGS)
def _g8(c, a, b, j):
    """c + sum_q a[q] b[q][j] over eight k, added one k at a time in k order (one fused
    multiply-add each), the fixed order of every product here."""
    c = c + a[0] * b[0][j]
    c = c + a[1] * b[1][j]
    c = c + a[2] * b[2][j]
    c = c + a[3] * b[3][j]
    c = c + a[4] * b[4][j]
    c = c + a[5] * b[5][j]
    c = c + a[6] * b[6][j]
    return c + a[7] * b[7][j]


@njit(**FLAGS)
def _row8(c, a, b):
    """One tile row: eight accumulators c (a tuple, kept in registers) plus eight k of products
    of the row's values a with the 8-column slices b of Bm (constant indices: no index
    wrap-around, so the eight columns become one vector operation)."""
    return (_g8(c[0], a, b, 0), _g8(c[1], a, b, 1), _g8(c[2], a, b, 2), _g8(c[3], a, b, 3),
            _g8(c[4], a, b, 4), _g8(c[5], a, b, 5), _g8(c[6], a, b, 6), _g8(c[7], a, b, 7))


@njit(**FMA_FLAGS)
def _row1(c, a, b):
    """One tile row plus one k (the k % 8 remainder)."""
    return (c[0] + a * b[0], c[1] + a * b[1], c[2] + a * b[2], c[3] + a * b[3],
            c[4] + a * b[4], c[5] + a * b[5], c[6] + a * b[6], c[7] + a * b[7])


@njit(**FLAGS)
def _put8(c, C, i, j):
    """C[i, j:j+8] = the tile row c."""
    Ci = C[i, j:j + 8]
    Ci[0], Ci[1], Ci[2], Ci[3] = c[0], c[1], c[2], c[3]
    Ci[4], Ci[5], Ci[6], Ci[7] = c[4], c[5], c[6], c[7]


@njit(inline="always", **FLAGS)
def _tile_nn(A, Bm, C, i, j, K8, K, z8, eight):
    """C[i:i+8, j:j+8] (``eight``; else C[i:i+4, j:j+8]) of C = A Bm (``_mm``), held in
    registers across the whole k loop: each 8-column slice of a row of Bm, loaded once, serves
    every row of the tile."""
    p0, p1, p2, p3 = A[i], A[i + 1], A[i + 2], A[i + 3]
    p4, p5, p6, p7 = (A[i + 4], A[i + 5], A[i + 6], A[i + 7]) if eight else (p0, p1, p2, p3)
    c0, c1, c2, c3, c4, c5, c6, c7 = z8, z8, z8, z8, z8, z8, z8, z8
    for k in range(0, K8, 8):
        b = (Bm[k, j:j + 8], Bm[k + 1, j:j + 8], Bm[k + 2, j:j + 8], Bm[k + 3, j:j + 8],
             Bm[k + 4, j:j + 8], Bm[k + 5, j:j + 8], Bm[k + 6, j:j + 8], Bm[k + 7, j:j + 8])
        c0 = _row8(c0, _seg8(p0, k), b)
        c1 = _row8(c1, _seg8(p1, k), b)
        c2 = _row8(c2, _seg8(p2, k), b)
        c3 = _row8(c3, _seg8(p3, k), b)
        if eight:
            c4 = _row8(c4, _seg8(p4, k), b)
            c5 = _row8(c5, _seg8(p5, k), b)
            c6 = _row8(c6, _seg8(p6, k), b)
            c7 = _row8(c7, _seg8(p7, k), b)
    for k in range(K8, K):
        b = Bm[k, j:j + 8]
        c0 = _row1(c0, p0[k], b)
        c1 = _row1(c1, p1[k], b)
        c2 = _row1(c2, p2[k], b)
        c3 = _row1(c3, p3[k], b)
        if eight:
            c4 = _row1(c4, p4[k], b)
            c5 = _row1(c5, p5[k], b)
            c6 = _row1(c6, p6[k], b)
            c7 = _row1(c7, p7[k], b)
    _put8(c0, C, i, j)
    _put8(c1, C, i + 1, j)
    _put8(c2, C, i + 2, j)
    _put8(c3, C, i + 3, j)
    if eight:
        _put8(c4, C, i + 4, j)
        _put8(c5, C, i + 5, j)
        _put8(c6, C, i + 6, j)
        _put8(c7, C, i + 7, j)


@njit(inline="always", **FLAGS)
def _tile_tn(A, Bm, i, j, K8, K, z8, eight):
    """``_tile_nn`` for C = A^T Bm (``_term``): the tile's values of A come from slices of its
    rows, A[k, i:i+8], tile row r reading element r of each. Returns the tile's rows (c0, ..,
    c7; without ``eight`` c4.. are z8)."""
    c0, c1, c2, c3, c4, c5, c6, c7 = z8, z8, z8, z8, z8, z8, z8, z8
    for k in range(0, K8, 8):
        b = (Bm[k, j:j + 8], Bm[k + 1, j:j + 8], Bm[k + 2, j:j + 8], Bm[k + 3, j:j + 8],
             Bm[k + 4, j:j + 8], Bm[k + 5, j:j + 8], Bm[k + 6, j:j + 8], Bm[k + 7, j:j + 8])
        q = (A[k, i:i + 8], A[k + 1, i:i + 8], A[k + 2, i:i + 8], A[k + 3, i:i + 8],
             A[k + 4, i:i + 8], A[k + 5, i:i + 8], A[k + 6, i:i + 8], A[k + 7, i:i + 8])
        c0 = _row8(c0, _col8(q, 0), b)
        c1 = _row8(c1, _col8(q, 1), b)
        c2 = _row8(c2, _col8(q, 2), b)
        c3 = _row8(c3, _col8(q, 3), b)
        if eight:
            c4 = _row8(c4, _col8(q, 4), b)
            c5 = _row8(c5, _col8(q, 5), b)
            c6 = _row8(c6, _col8(q, 6), b)
            c7 = _row8(c7, _col8(q, 7), b)
    for k in range(K8, K):
        b = Bm[k, j:j + 8]
        q = A[k, i:i + 8]
        c0 = _row1(c0, q[0], b)
        c1 = _row1(c1, q[1], b)
        c2 = _row1(c2, q[2], b)
        c3 = _row1(c3, q[3], b)
        if eight:
            c4 = _row1(c4, q[4], b)
            c5 = _row1(c5, q[5], b)
            c6 = _row1(c6, q[6], b)
            c7 = _row1(c7, q[7], b)
    return c0, c1, c2, c3, c4, c5, c6, c7


@njit(**FMA_FLAGS)
def _part(A, tn, Bm, C, zero, M4, N8):
    """What the tiles of C = A Bm (or A^T Bm with ``tn``) leave: columns N8.. of rows ..M4 and
    rows M4.., one row at a time; the loop over the columns vectorises, with eight
    multiply-adds per load and store of C."""
    M, N = C.shape
    K = Bm.shape[0]
    K8 = K - K % 8
    for i in range(0 if N8 < N else M4, M):
        j0, j1 = (N8 if i < M4 else 0), N
        c = C[i]
        for j in range(j0, j1):
            c[j] = zero
        for k in range(0, K8, 8):
            b = (Bm[k], Bm[k + 1], Bm[k + 2], Bm[k + 3], Bm[k + 4], Bm[k + 5], Bm[k + 6],
                 Bm[k + 7])
            if tn:
                a = _col8((A[k], A[k + 1], A[k + 2], A[k + 3], A[k + 4], A[k + 5], A[k + 6],
                           A[k + 7]), i)
            else:
                a = _seg8(A[i], k)
            for j in range(j0, j1):
                c[j] = _g8(c[j], a, b, j)
        for k in range(K8, K):
            a = A[k, i] if tn else A[i, k]
            b = Bm[k]
            for j in range(j0, j1):
                c[j] += a * b[j]


@njit(**FLAGS)
def _mm(A, Bm, C, zero):
    """C = A Bm, A: (M, K); Bm: (K, N), C: (M, N). Every entry is the same sum in the same order
    whatever the shapes: c = zero, then c = fma(a_k, b_k, c) for k = 0, 1, .., K-1 (one fused
    multiply-add per k, ``_g8``, ``_row1``; eight k per step of the loop, then the rest).

    Register tiles: 8 (or 4) rows x 8 columns of C are held in accumulators (8-tuples, one per
    tile row) across the whole k loop; each 8-column slice of a row of Bm, loaded once, serves
    all rows of the tile. The columns of a tile row are eight isomorphic scalar expressions on
    consecutive elements, which LLVM's SLP vectoriser turns into one vector operation
    (``slp_compiles``): one AVX-512 register per tile row in float64. Rows are taken eight at a
    time, then four; the rows past the last multiple of 4 and the columns past the last
    multiple of 8 go through ``_part`` (the same sums, one row at a time). Compiled once for
    every shape (no per-shape code)."""
    M, K = A.shape
    N = Bm.shape[1]
    if M == 0 or N == 0:
        return
    K8, N8, M8, M4 = K - K % 8, N - N % 8, M - M % 8, M - M % 4
    C[0, 0] = zero
    z = C[0, 0]                     # zero in C's dtype (the kernel's ``zero`` is float64 for
    z8 = (z, z, z, z, z, z, z, z)   # float32 arrays): float32 tiles accumulate in float32
    for i in range(0, M8, 8):
        for j in range(0, N8, 8):
            _tile_nn(A, Bm, C, i, j, K8, K, z8, True)
    if M8 < M4:
        for j in range(0, N8, 8):
            _tile_nn(A, Bm, C, M8, j, K8, K, z8, False)
    _part(A, False, Bm, C, zero, M4, N8)


@njit(inline="always", **FLAGS)
def _acc8(c, acc, i, j, sq):
    """acc[i, j:j+8] += c (one tile row); returns sq + c * c, the eight columns' sums of squares
    with this row added."""
    a = acc[i, j:j + 8]
    a[0], a[1], a[2], a[3] = a[0] + c[0], a[1] + c[1], a[2] + c[2], a[3] + c[3]
    a[4], a[5], a[6], a[7] = a[4] + c[4], a[5] + c[5], a[6] + c[6], a[7] + c[7]
    return _sq8(sq, c)


@njit(inline="always", **FLAGS)
def _acc_tile(tile, acc, lanes, i, j, eight):
    """A tile of a term (rows i.., columns j:j+8) added into acc, and its squares into the
    column sums lanes[j:j+8], row after row."""
    c0, c1, c2, c3, c4, c5, c6, c7 = tile
    L = lanes[j:j + 8]
    sq = (L[0], L[1], L[2], L[3], L[4], L[5], L[6], L[7])
    sq = _acc8(c0, acc, i, j, sq)
    sq = _acc8(c1, acc, i + 1, j, sq)
    sq = _acc8(c2, acc, i + 2, j, sq)
    sq = _acc8(c3, acc, i + 3, j, sq)
    if eight:
        sq = _acc8(c4, acc, i + 4, j, sq)
        sq = _acc8(c5, acc, i + 5, j, sq)
        sq = _acc8(c6, acc, i + 6, j, sq)
        sq = _acc8(c7, acc, i + 7, j, sq)
    L[0], L[1], L[2], L[3], L[4], L[5], L[6], L[7] = sq


@njit(**FLAGS)
def _term(A, Bm, C, acc, lanes, zero):
    """A per-step weight-gradient term A^T Bm (P, Q), A: (K, P), Bm: (K, Q), added into acc
    (P, Q); returns its ||.||_F^2. ``_mm``'s tiles and sums with A read down its columns
    (``_tile_tn``), but each tile goes from the registers straight into acc, and its squares
    into the column sums lanes (Q,), instead of into a work array and from there through a
    second pass (that pass cost about a third as much as the product itself on the sweep's
    32 x 32 terms). Only what the tiles leave (rows past the last multiple of 4, columns past
    the last multiple of 8) goes through the work array C (``_part``). Every column sums its
    squares in row order (the tiles' rows, then C's), then the columns are summed in order:
    the same sums in the same order whatever the shape."""
    K, P = A.shape
    Q = Bm.shape[1]
    for j in range(Q):
        lanes[j] = zero
    sq = zero
    if P == 0 or Q == 0:
        return sq
    K8, Q8, P8, P4 = K - K % 8, Q - Q % 8, P - P % 8, P - P % 4
    C[0, 0] = zero
    z = C[0, 0]
    z8 = (z, z, z, z, z, z, z, z)
    for i in range(0, P8, 8):
        for j in range(0, Q8, 8):
            _acc_tile(_tile_tn(A, Bm, i, j, K8, K, z8, True), acc, lanes, i, j, True)
    if P8 < P4:
        for j in range(0, Q8, 8):
            _acc_tile(_tile_tn(A, Bm, P8, j, K8, K, z8, False), acc, lanes, P8, j, False)
    _part(A, True, Bm, C, zero, P4, Q8)
    for i in range(P4, P):                  # rows below the tiles, the tiles' columns
        for j in range(Q8):
            acc[i, j] += C[i, j]
            lanes[j] += C[i, j] * C[i, j]
    for j in range(Q8, Q):                  # columns right of the tiles, every row
        c1 = lanes[j]
        for i in range(P):
            acc[i, j] += C[i, j]
            c1 += C[i, j] * C[i, j]
        lanes[j] = c1
    for j in range(Q):
        sq += lanes[j]
    return sq


@njit(**FLAGS)
def _colsum_add(X, acc):
    """acc[j] += X[0, j] + X[1, j] + .. (in row order) for every column j of X (P, Q): a bias
    gradient's sum over the batch. Eight columns at a time in registers down the rows."""
    P, Q = X.shape
    Q8 = Q - Q % 8
    for j in range(0, Q8, 8):
        a = acc[j:j + 8]
        c = (a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7])
        for i in range(P):
            x = X[i, j:j + 8]
            c = (c[0] + x[0], c[1] + x[1], c[2] + x[2], c[3] + x[3],
                 c[4] + x[4], c[5] + x[5], c[6] + x[6], c[7] + x[7])
        a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7] = c
    for j in range(Q8, Q):
        c1 = acc[j]
        for i in range(P):
            c1 += X[i, j]
        acc[j] = c1


@njit(**FLAGS)
def _head_scratch(T, B, H, O, like):
    """The work arrays of ``_head_loss``, allocated once per kernel call."""
    dt = like.dtype
    n = T * B
    O8 = O + (-O) % 8
    return (np.zeros((H, O8), dt), np.empty((n, O8), dt), np.empty((O, n), dt),
            np.empty((O, n), dt), np.empty(n, dt), np.empty(n, dt), np.empty((O, B), dt),
            np.empty((B, O), dt), np.empty((O, H), dt), np.empty((O, H), dt),
            np.empty((O, H), dt), np.empty(B, dt))


@njit(**FLAGS)
def _head_loss(r, rp, rd, Sr, Wy, by, d, softmax, ce, loss_all, outputs, backward, Y, gWy, gby,
               direct, zero, hs):
    """Head at every step that needs it, loss at the loss steps, dWy, dby and dE/ds_t.

    The logits of all needed steps (every step with ``outputs`` or a loss at every step, else
    the last) are one product (T B, H) (H, O) into (T B, O), no per-step transpose of the
    states, with Wy's columns padded with zeros to a multiple of 8 (whole register tiles; the
    padding changes no logit); they are then laid out (O, T B) so that the softmax's loops over
    the T B rows vectorise: logits = s Wy + by;  y = softmax over o (max-shifted) or the logits.
    Per loss step:
    mse: E += sum (y - d)^2, dl = 2 (y - d) / B, softmax: dl = y (dl - <dl, y>);
    ce: E -= sum d (l - max - log sum exp), dl = (y sum d - d) / B;
    dWy += s_t^T dl, dby += sum_b dl, direct[t] = dl Wy^T (B, H). Returns E / B.
    """
    T, B, H = Sr.shape
    O = Wy.shape[2]
    Wp, LB, L, Yt, mQ, sQ, DL, DLT, GO, WyT, gWyT, inner = hs
    t0 = 0 if (loss_all or outputs) else T - 1
    n = (T - t0) * B
    for h in range(H):
        for o in range(O):
            Wp[h, o] = Wy[rp, h, o]                         # columns O.. stay zero
    _mm(Sr[t0:].reshape((n, H)), Wp, LB[:n], zero)          # logits (n, O), in register tiles
    for q in range(n):
        for o in range(O):
            L[o, q] = LB[q, o] + by[rp, o]
    if softmax:
        for q in range(n):
            mQ[q] = L[0, q]
        for o in range(1, O):
            for q in range(n):
                mQ[q] = max(mQ[q], L[o, q])
        for o in range(O):
            for q in range(n):
                Yt[o, q] = _exp(L[o, q] - mQ[q])
        for q in range(n):
            sQ[q] = Yt[0, q]
        for o in range(1, O):
            for q in range(n):
                sQ[q] += Yt[o, q]
        for o in range(O):
            for q in range(n):
                Yt[o, q] /= sQ[q]
    else:
        for o in range(O):
            for q in range(n):
                Yt[o, q] = L[o, q]
    if outputs:
        Yf = Y[r].reshape((T * B, O))
        for q in range(n):
            for o in range(O):
                Yf[q, o] = Yt[o, q]
    for h in range(H):
        for o in range(O):
            WyT[o, h] = Wy[rp, h, o]
    gWyT[:] = 0
    E = zero
    Bv = zero + B
    scale = (zero + 2) / Bv
    for t in range(T - 1 if not loss_all else t0, T):
        li = t if loss_all else 0
        q0 = (t - t0) * B
        if not ce:
            for bb in range(B):
                inner[bb] = zero
            for o in range(O):
                for bb in range(B):
                    y = Yt[o, q0 + bb]
                    diff = y - d[rd, t, bb, o]
                    E += diff * diff
                    DL[o, bb] = diff * scale
                    inner[bb] += DL[o, bb] * y
            if softmax:
                for o in range(O):
                    for bb in range(B):
                        DL[o, bb] = Yt[o, q0 + bb] * (DL[o, bb] - inner[bb])
        else:                                               # with a softmax head (checked)
            for bb in range(B):
                inner[bb] = zero                            # sum_k d_k
                sQ[q0 + bb] = math.log(sQ[q0 + bb])         # log sum exp(l - max)
            for o in range(O):
                for bb in range(B):
                    dv = d[rd, t, bb, o]
                    E -= dv * ((L[o, q0 + bb] - mQ[q0 + bb]) - sQ[q0 + bb])
                    inner[bb] += dv
            for o in range(O):
                for bb in range(B):
                    DL[o, bb] = (Yt[o, q0 + bb] * inner[bb] - d[rd, t, bb, o]) / Bv
        if backward:
            _mm(DL, Sr[t], GO, zero)                        # dl^T s_t (O, H)
            for o in range(O):
                for h in range(H):
                    gWyT[o, h] += GO[o, h]
                for bb in range(B):
                    gby[r, o] += DL[o, bb]
            for bb in range(B):                             # dl laid out (B, O) for _mm
                for o in range(O):
                    DLT[bb, o] = DL[o, bb]
            _mm(DLT, WyT, direct[li], zero)                 # dl Wy^T (B, H)
    if backward:
        for h in range(H):
            for o in range(O):
                gWy[r, h, o] = gWyT[o, h]
    return E / Bv


@njit(**FLAGS)
def _window(T, k, loss_all):
    """(W, stop, nL): errors in flight (k with truncation and a loss at every step, else 1), the
    first step the backward pass reaches, and how many steps carry a loss."""
    W = k if (k > 0 and loss_all) else 1
    stop = T - k if (k > 0 and not loss_all) else 0
    return W, stop, (T if loss_all else 1)


@njit(**FLAGS)
def _inputs(xr, Wxr, br, A, zero, bias):
    """A[t] = x_t Wx + b for every step t (without ``bias``: x_t Wx, the caller adds b first
    thing in its own pass over A[t]): one product over the T B rows (each row's sums as in a
    product per step)."""
    T, B, G = A.shape
    Af = A.reshape((T * B, G))
    _mm(xr.reshape((T * B, xr.shape[2])), Wxr, Af, zero)
    if bias:
        for q in range(T * B):
            for j in range(G):
                Af[q, j] += br[j]


@njit(**FLAGS)
def _transpose(X, XT):
    """XT = X^T."""
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            XT[j, i] = X[i, j]


@njit(**FLAGS)
def _inject(D, direct, t, T, W, k, loss_all):
    """The loss's error dE_t/ds_t joins the errors in flight at step t; returns whether it opened
    a new slot of the ring (truncation with a loss at every step: slot t mod W)."""
    B, H = D.shape[1:]
    if loss_all:
        if k == 0:
            for bb in range(B):
                for j in range(H):
                    D[0, bb, j] += direct[t, bb, j]
        else:
            D[t % W] = direct[t]
            return True
    elif t == T - 1:
        D[0] = direct[0]
    return False


@njit(**FLAGS)
def _weight_grads(r, s0r, Sr, xr, A, gWs, gWx, gb, M, Mx, lanes, norms, dWs, dWx, zero):
    """dWs += s_{t-1}^T dz_t, dWx += x_t^T dz_t, db += sum_b dz_t, in step order (dz_t: A[t]);
    with ``norms`` the norms of the per-step terms into dWs[r, t], dWx[r, t]."""
    T, B, G = A.shape
    for t in range(T):
        sprev = s0r if t == 0 else Sr[t - 1]
        sq = _term(sprev, A[t], M, gWs[r], lanes, zero)     # s_{t-1}^T dz_t
        sqx = _term(xr[t], A[t], Mx, gWx[r], lanes, zero)   # x_t^T dz_t
        if norms:
            dWs[r, t] = math.sqrt(sq)
            dWx[r, t] = math.sqrt(sqx)
        _colsum_add(A[t], gb[r])                            # db += sum_b dz_t


@njit(**FLAGS)
def rnn_kernel(Wx, Ws, b, Wy, by, x, d, s0, clip, act, softmax, ce, loss_all, k, backward,
               norms, outputs, use_clip, loss, gWx, gWs, gb, gWy, gby, S, Y, ds, dWs, dWx,
               alpha):
    """The vanilla cell over R runs (module docstring); ``act`` is an ``ACT_CODES`` value, k the
    truncation window (0: none)."""
    R, T, B, H = S.shape
    I = x.shape[3]
    Rp, Rx, Rd, Rs = Ws.shape[0], x.shape[0], d.shape[0], s0.shape[0]
    dt = S.dtype
    one = Ws[0, 0, 0] * 0 + 1               # 1 in the arrays' dtype (inputs are finite)
    two = one + one
    W, stop, nL = _window(T, k, loss_all)
    A = np.empty((T, B, H), dt)             # x_t Wx + b, then phi'(z_t), then dz_t
    zero = one - one
    tmp = np.empty((B, H), dt)
    lanes = np.empty(H, dt)
    D = np.zeros((W, B, H), dt)             # errors in flight
    Dn = np.zeros((W, B, H), dt)
    dz = np.empty((B, H), dt)
    tot = np.empty((B, H), dt)
    direct = np.zeros((nL, B, H), dt)
    WsT = np.empty((H, H), dt)
    M = np.empty((H, H), dt)
    Mx = np.empty((I, H), dt)
    hs = _head_scratch(T, B, H, Wy.shape[2], S)
    for r in range(R):
        rp = r if Rp > 1 else 0
        rx = r if Rx > 1 else 0
        rs = r if Rs > 1 else 0
        rd = r if Rd > 1 else 0
        # ---- forward ----------------------------------------------------------------------
        _inputs(x[rx], Wx[rp], b[rp], A, zero, False)   # x_t Wx; + b below
        br = b[rp]
        for t in range(T):
            sprev = s0[rs] if t == 0 else S[r, t - 1]
            Zt = A[t]
            _mm(sprev, Ws[rp], tmp, zero)                   # s_{t-1} Ws
            for bb in range(B):
                z = Zt[bb]
                tz = tmp[bb]
                s = S[r, t, bb]
                if act == 0:
                    for j in range(H):
                        sj = _tanh((z[j] + br[j]) + tz[j], one, two)
                        s[j] = sj
                        z[j] = one - sj * sj
                elif act == 1:
                    for j in range(H):
                        zj = (z[j] + br[j]) + tz[j]
                        sj = zj if zj > 0 else zero
                        s[j] = sj
                        z[j] = one if sj > 0 else zero
                elif act == 2:
                    for j in range(H):
                        sj = _sigmoid((z[j] + br[j]) + tz[j], one)
                        s[j] = sj
                        z[j] = (one - sj) * sj
                else:
                    for j in range(H):
                        s[j] = (z[j] + br[j]) + tz[j]
                        z[j] = one
        loss[r] = _head_loss(r, rp, rd, S[r], Wy, by, d, softmax, ce, loss_all, outputs,
                             backward, Y, gWy, gby, direct, zero, hs)
        if not backward:
            continue
        # ---- backward through time -----------------------------------------------------------
        _transpose(Ws[rp], WsT)
        D[:] = 0
        for t in range(T - 1, stop - 1, -1):
            _inject(D, direct, t, T, W, k, loss_all)
            sq = _clip_norms(D, W, tot, clip[r], alpha[r, t], use_clip, norms, lanes)
            if norms:
                ds[r, t] = math.sqrt(sq)
            At = A[t]
            if W == 1:                                      # dz_t in place of phi'(z_t)
                for bb in range(B):
                    for j in range(H):
                        At[bb, j] = D[0, bb, j] * At[bb, j]
                _mm(At, WsT, Dn[0], zero)                   # dz_t Ws^T
            else:
                for w in range(W):
                    for bb in range(B):
                        for j in range(H):
                            dz[bb, j] = D[w, bb, j] * At[bb, j]
                    _mm(dz, WsT, Dn[w], zero)               # dz_t Ws^T
                    for bb in range(B):
                        if w == 0:
                            for j in range(H):
                                tot[bb, j] = dz[bb, j]
                        else:
                            for j in range(H):
                                tot[bb, j] += dz[bb, j]
                At[:] = tot
            D, Dn = Dn, D
        A[:stop] = 0                                        # steps the truncation cuts off
        _weight_grads(r, s0[rs], S[r], x[rx], A, gWs, gWx, gb, M, Mx, lanes, norms, dWs, dWx,
                      zero)


@njit(**FLAGS)
def _lstm_gate(z, tg, one, two):
    """The LSTM's gate nonlinearity at one column: i, f, o: sigmoid(z) = 1 / (1 + exp(-z)),
    ``_sigmoid``; g (``tg``): tanh(z) = sign(z) (2 / (1 + exp(-2|z|)) - 1), ``_tanh_abs``. One
    exp for both kinds, chosen per column by selects, so a loop over all 4H columns of a row is
    one vectorised loop (loops over H columns are too short for LLVM's vector loop on small H,
    and run scalar). The tanh's exp is ``_exp``, not ``_exp_t``: they differ only for
    -2|z| < -40, where 1 + exp(-2|z|) is 1 either way, so the same bits."""
    u = -two * abs(z) if tg else -z
    q = (two if tg else one) / (one + _exp(u))
    y = q - one if tg else q
    return -y if (tg and not z >= 0) else y


@njit(**FLAGS)
def _dc_norm(dc, lanes, zero):
    """||dc||_F of the LSTM's dE/dc_t (B, H): squares summed per column into lanes, then across
    the columns."""
    B, H = dc.shape
    for j in range(H):
        lanes[j] = zero
    for bb in range(B):
        for j in range(H):
            lanes[j] += dc[bb, j] * dc[bb, j]
    sq = zero
    for j in range(H):
        sq += lanes[j]
    return math.sqrt(sq)


@njit(**FLAGS)
def lstm_kernel(Wx, Ws, b, Wy, by, x, d, s0, c0, clip, softmax, ce, loss_all, k, backward,
                norms, outputs, use_clip, loss, gWx, gWs, gb, gWy, gby, S, Cc, Y, ds, dWs, dWx,
                dcn, alpha):
    """The LSTM over R runs (module docstring; gate order i, f, g, o). c0: (Rc, B, H) initial
    cells; Cc: (R, T, B, H) receives c_1..c_T; dcn: (R, T) the norms ||dE/dc_t||."""
    R, T, B, H = S.shape
    G = 4 * H
    I = x.shape[3]
    Rp, Rx, Rd, Rs, Rc = Ws.shape[0], x.shape[0], d.shape[0], s0.shape[0], c0.shape[0]
    dt = S.dtype
    one = Ws[0, 0, 0] * 0 + 1               # 1 in the arrays' dtype (inputs are finite)
    two = one + one
    zero = one - one
    W, stop, nL = _window(T, k, loss_all)
    A = np.empty((T, B, G), dt)             # x_t Wx + b, gate activations i, f, g, o; dE/da_t
    TC = np.empty((T, B, H), dt)            # tanh(c_t)
    tmp = np.empty((B, G), dt)
    lanes = np.empty(G, dt)
    D = np.zeros((W, B, H), dt)             # errors dE/ds_t in flight
    Dn = np.zeros((W, B, H), dt)
    DC = np.zeros((W, B, H), dt)            # errors dE/dc_t in flight
    da = np.empty((B, G), dt)
    tot = np.empty((B, H), dt)
    dag = np.empty((B, G), dt)
    direct = np.zeros((nL, B, H), dt)
    WsT = np.empty((G, H), dt)
    M = np.empty((H, G), dt)
    Mx = np.empty((I, G), dt)
    hs = _head_scratch(T, B, H, Wy.shape[2], S)
    tg = np.zeros(G, np.bool_)              # the columns of g (tanh; the others sigmoid)
    tg[2 * H:3 * H] = True
    for r in range(R):
        rp = r if Rp > 1 else 0
        rx = r if Rx > 1 else 0
        rs = r if Rs > 1 else 0
        rc = r if Rc > 1 else 0
        rd = r if Rd > 1 else 0
        # ---- forward ----------------------------------------------------------------------
        _inputs(x[rx], Wx[rp], b[rp], A, zero, True)
        for t in range(T):
            sprev = s0[rs] if t == 0 else S[r, t - 1]
            cprev = c0[rc] if t == 0 else Cc[r, t - 1]
            At = A[t]
            _mm(sprev, Ws[rp], tmp, zero)                   # s_{t-1} Ws
            Ct = Cc[r, t]
            for bb in range(B):
                a = At[bb]
                ta = tmp[bb]
                for j in range(G):                          # i, f, g, o
                    a[j] = _lstm_gate(a[j] + ta[j], tg[j], one, two)
                c = Ct[bb]
                cp = cprev[bb]
                s = S[r, t, bb]
                for j in range(H):
                    c[j] = a[H + j] * cp[j]
                    c[j] += a[j] * a[2 * H + j]
                    s[j] = a[3 * H + j]                     # o, times tanh(c_t) below
            Cf = Ct.reshape(B * H)                          # tanh(c_t) over the whole step
            TCf = TC[t].reshape(B * H)
            Sf = S[r, t].reshape(B * H)
            for q in range(B * H):
                tcq = _tanh_abs(Cf[q], one, two)
                TCf[q] = tcq
                Sf[q] *= tcq                                # s_t = o tanh(c_t), tanh unrounded
        loss[r] = _head_loss(r, rp, rd, S[r], Wy, by, d, softmax, ce, loss_all, outputs,
                             backward, Y, gWy, gby, direct, zero, hs)
        if not backward:
            continue
        # ---- backward through time -----------------------------------------------------------
        _transpose(Ws[rp], WsT)
        D[:] = 0
        DC[:] = 0
        for t in range(T - 1, stop - 1, -1):
            if _inject(D, direct, t, T, W, k, loss_all):
                DC[t % W] = 0
            sq = _clip_norms(D, W, tot, clip[r], alpha[r, t], use_clip, norms, lanes)
            if norms:
                ds[r, t] = math.sqrt(sq)
            if W == 1:
                # da_t in place of the gate activations (position j of each gate is read and
                # written by iteration j alone), dE/dc_{t-1} = dc_t f_t in place of dc_{t+1} f_{t+1}
                for bb in range(B):
                    a = A[t, bb]
                    cp = c0[rc, bb] if t == 0 else Cc[r, t - 1, bb]
                    tc = TC[t, bb]
                    dl = D[0, bb]
                    dcr = DC[0, bb]
                    dct = tot[bb]
                    for j in range(H):
                        i_, f_, g_, o_ = a[j], a[H + j], a[2 * H + j], a[3 * H + j]
                        dc = dcr[j] + dl[j] * (o_ * (one - tc[j] * tc[j]))
                        dct[j] = dc                         # dE/dc_t, for its norm
                        dcr[j] = dct[j] * f_                # dc_t as stored (float32 arrays)
                        a[j] = dc * (g_ * i_ * (one - i_))
                        a[H + j] = dc * (cp[j] * f_ * (one - f_))
                        a[2 * H + j] = dc * (i_ * (one - g_ * g_))
                        a[3 * H + j] = dl[j] * (tc[j] * o_ * (one - o_))
                _mm(A[t], WsT, Dn[0], zero)                 # da_t Ws^T
                if norms:
                    dcn[r, t] = _dc_norm(tot, lanes, zero)
                D, Dn = Dn, D
                continue
            for w in range(W):
                for bb in range(B):
                    a = A[t, bb]
                    cprev = c0[rc, bb] if t == 0 else Cc[r, t - 1, bb]
                    for j in range(H):
                        i_, f_, g_, o_ = a[j], a[H + j], a[2 * H + j], a[3 * H + j]
                        tcj = TC[t, bb, j]
                        dl = D[w, bb, j]
                        dc = DC[w, bb, j] + dl * (o_ * (one - tcj * tcj))
                        DC[w, bb, j] = dc                   # dE/dc_t (total)
                        da[bb, j] = dc * (g_ * i_ * (one - i_))
                        da[bb, H + j] = dc * (cprev[j] * f_ * (one - f_))
                        da[bb, 2 * H + j] = dc * (i_ * (one - g_ * g_))
                        da[bb, 3 * H + j] = dl * (tcj * o_ * (one - o_))
                _mm(da, WsT, Dn[w], zero)                   # da_t Ws^T
                for bb in range(B):
                    if w == 0:
                        for j in range(G):
                            dag[bb, j] = da[bb, j]
                    else:
                        for j in range(G):
                            dag[bb, j] += da[bb, j]
            if norms:
                for bb in range(B):
                    for j in range(H):
                        v = DC[0, bb, j]
                        for w in range(1, W):
                            v += DC[w, bb, j]
                        tot[bb, j] = v
                dcn[r, t] = _dc_norm(tot, lanes, zero)
            for w in range(W):                              # dE/dc_{t-1} <- dc_t * f_t
                for bb in range(B):
                    for j in range(H):
                        DC[w, bb, j] *= A[t, bb, H + j]
            A[t] = dag
            D, Dn = Dn, D
        A[:stop] = 0                                        # steps the truncation cuts off
        _weight_grads(r, s0[rs], S[r], x[rx], A, gWs, gWx, gb, M, Mx, lanes, norms, dWs, dWx,
                      zero)


@njit(**FLAGS)
def gru_kernel(Wx, Ws, b, Wy, by, x, d, s0, bn, clip, softmax, ce, loss_all, k, backward,
               norms, outputs, use_clip, loss, gWx, gWs, gb, gWy, gby, gbn, S, Y, ds, dWs, dWx,
               alpha):
    """The GRU over R runs (gate order r, z, n as at the API; columns 0:H, H:2H, 2H:3H):

        a_t = x_t Wx + b,  u_t = s_{t-1} Ws,  r, z = sigmoid(a_rz + u_rz),
        q_t = u_n + b_hn,  n = tanh(a_n + r q_t),  s_t = (s_{t-1} - n) z + n
        backward: da_n = delta_t (1 - z)(1 - n^2),  da_r = da_n q_t r (1 - r),
                  da_z = delta_t (s_{t-1} - n) z (1 - z),  dq = da_n r;
                  delta_{t-1} = [da_r, da_z, dq] Ws^T + delta_t z
        dWs = sum_t s_{t-1}^T [da_r, da_z, dq],  dWx = sum_t x_t^T [da_r, da_z, da_n],
        db = sum_{t,b} [da_r, da_z, da_n],  db_hn = sum_{t,b} dq

    bn: (Rp, H) the bias b_hn inside the reset product (zeros when the params have none); gbn:
    (R, H) its gradient. The other arguments as ``rnn_kernel``'s."""
    R, T, B, H = S.shape
    G = 3 * H
    I = x.shape[3]
    Rp, Rx, Rd, Rs = Ws.shape[0], x.shape[0], d.shape[0], s0.shape[0]
    dt = S.dtype
    one = Ws[0, 0, 0] * 0 + 1               # 1 in the arrays' dtype (inputs are finite)
    two = one + one
    zero = one - one
    W, stop, nL = _window(T, k, loss_all)
    A = np.empty((T, B, G), dt)             # x_t Wx + b, gate activations r, z, n; [da_r, da_z, dq]
    Q = np.empty((T, B, H), dt)             # q_t; then da_n
    tmp = np.empty((B, G), dt)
    lanes = np.empty(G, dt)
    D = np.zeros((W, B, H), dt)             # errors dE/ds_t in flight
    Dn = np.zeros((W, B, H), dt)
    da = np.empty((B, G), dt)
    dan = np.empty((B, H), dt)
    dag = np.empty((B, G), dt)
    dagn = np.empty((B, H), dt)
    DX = np.empty((B, G), dt)               # the input side's [da_r, da_z, da_n]
    tot = np.empty((B, H), dt)
    direct = np.zeros((nL, B, H), dt)
    WsT = np.empty((G, H), dt)
    M = np.empty((H, G), dt)
    Mx = np.empty((I, G), dt)
    hs = _head_scratch(T, B, H, Wy.shape[2], S)
    for r in range(R):
        rp = r if Rp > 1 else 0
        rx = r if Rx > 1 else 0
        rs = r if Rs > 1 else 0
        rd = r if Rd > 1 else 0
        # ---- forward ----------------------------------------------------------------------
        _inputs(x[rx], Wx[rp], b[rp], A, zero, True)
        for t in range(T):
            sprev = s0[rs] if t == 0 else S[r, t - 1]
            At = A[t]
            _mm(sprev, Ws[rp], tmp, zero)                   # s_{t-1} Ws
            for bb in range(B):
                a = At[bb]
                ta = tmp[bb]
                for j in range(2 * H):                      # r, z
                    a[j] = _sigmoid(a[j] + ta[j], one)
                for j in range(H):
                    qj = ta[2 * H + j] + bn[rp, j]
                    Q[t, bb, j] = qj
                    nj = _tanh_abs(a[j] * qj + a[2 * H + j], one, two)
                    a[2 * H + j] = nj
                    S[r, t, bb, j] = (sprev[bb, j] - nj) * a[H + j] + nj
        loss[r] = _head_loss(r, rp, rd, S[r], Wy, by, d, softmax, ce, loss_all, outputs,
                             backward, Y, gWy, gby, direct, zero, hs)
        if not backward:
            continue
        # ---- backward through time -----------------------------------------------------------
        _transpose(Ws[rp], WsT)
        D[:] = 0
        for t in range(T - 1, stop - 1, -1):
            _inject(D, direct, t, T, W, k, loss_all)
            sq = _clip_norms(D, W, tot, clip[r], alpha[r, t], use_clip, norms, lanes)
            if norms:
                ds[r, t] = math.sqrt(sq)
            for w in range(W):
                for bb in range(B):
                    a = A[t, bb]
                    sprev = s0[rs, bb] if t == 0 else S[r, t - 1, bb]
                    for j in range(H):
                        r_, z_, n_ = a[j], a[H + j], a[2 * H + j]
                        dl = D[w, bb, j]
                        dn = dl * ((one - z_) * (one - n_ * n_))
                        dan[bb, j] = dn
                        da[bb, j] = dn * (Q[t, bb, j] * r_ * (one - r_))
                        da[bb, H + j] = dl * ((sprev[j] - n_) * z_ * (one - z_))
                        da[bb, 2 * H + j] = dn * r_
                _mm(da, WsT, Dn[w], zero)                   # [da_r, da_z, dq] Ws^T
                for bb in range(B):
                    for j in range(H):
                        Dn[w, bb, j] += D[w, bb, j] * A[t, bb, H + j]     # + delta_t z
                    if w == 0:
                        for j in range(G):
                            dag[bb, j] = da[bb, j]
                        for j in range(H):
                            dagn[bb, j] = dan[bb, j]
                    else:
                        for j in range(G):
                            dag[bb, j] += da[bb, j]
                        for j in range(H):
                            dagn[bb, j] += dan[bb, j]
            A[t] = dag
            Q[t] = dagn
            D, Dn = Dn, D
        A[:stop] = 0                                        # steps the truncation cuts off
        Q[:stop] = 0
        # ---- weight gradients: the per-step terms, summed in step order --------------------------
        for t in range(T):
            sprev = s0[rs] if t == 0 else S[r, t - 1]
            sq = _term(sprev, A[t], M, gWs[r], lanes, zero) # s_{t-1}^T [da_r, da_z, dq]
            for bb in range(B):
                for j in range(2 * H):
                    DX[bb, j] = A[t, bb, j]
                for j in range(H):
                    DX[bb, 2 * H + j] = Q[t, bb, j]
            sqx = _term(x[rx, t], DX, Mx, gWx[r], lanes, zero)  # x_t^T [da_r, da_z, da_n]
            if norms:
                dWs[r, t] = math.sqrt(sq)
                dWx[r, t] = math.sqrt(sqx)
            _colsum_add(DX, gb[r])
            _colsum_add(A[t, :, 2 * H:], gbn[r])


#: The kernel of each cell the compiled engine covers.
KERNELS = {"rnn": rnn_kernel, "lstm": lstm_kernel, "gru": gru_kernel}
