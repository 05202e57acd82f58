"""Initialisers for the recurrent weights, parameterised by a scale.

``weight_scale`` means the same thing for every init: the scale of the recurrent matrix Ws.

- ``orthogonal``: Ws = scale * Q with Q a Haar-random orthogonal matrix, so *every* singular value
  of Ws equals ``scale`` (and so does the spectral radius).
- ``gaussian``:  Ws_ij ~ N(0, scale^2 / H); by the circular law the spectral radius is close to
  ``scale`` for large H (the largest singular value is about 2 * scale).
- ``identity``:  Ws = scale * I, as in the IRNN of Le, Jaitly & Hinton (2015).

For the LSTM the recurrent matrix is (H, 4H) and for the GRU (H, 3H): each gate's H x H block is
drawn on its own with the same rule. Input and output weights are N(0, 1/fan_in): Wx ~ N(0, 1/I),
Wy ~ N(0, 1/H). Biases start at zero, except the LSTM forget-gate block of ``b``, which starts
at ``forget_bias`` (Gers, Schmidhuber & Cummins 2000; Jozefowicz et al. 2015). The GRU's biases
(b and its b_hn, ``bn``) all start at zero: ``forget_bias`` is the LSTM's only.

Draw order is fixed (Ws, then Wx, then Wy), so the same Generator state gives the same weights.
"""

from __future__ import annotations

import numpy as np

from .cells import CELLS, GATES

INITS = ("orthogonal", "gaussian", "identity")


def orthogonal(rng: np.random.Generator, n: int, dtype=np.float64) -> np.ndarray:
    """A Haar-distributed random orthogonal matrix (n, n): QR of a Gaussian matrix with the signs
    of R's diagonal folded into Q (Mezzadri 2007), so the distribution is uniform."""
    a = rng.standard_normal((n, n))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return q.astype(dtype, copy=False)


def recurrent_matrix(rng: np.random.Generator, hidden: int, init: str, scale: float,
                     dtype=np.float64) -> np.ndarray:
    """One H x H recurrent block, Ws: (H, H), scaled as described in the module docstring."""
    if init == "orthogonal":
        w = orthogonal(rng, hidden)
    elif init == "gaussian":
        w = rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)
    elif init == "identity":
        w = np.eye(hidden)
    else:
        raise ValueError(f"init: got {init!r}; allowed: {', '.join(INITS)}")
    return (scale * w).astype(dtype, copy=False)


def init_params(rng: np.random.Generator, *, cell: str = "rnn", input_size: int, hidden: int,
                output_size: int, init: str = "orthogonal", scale: float = 1.0,
                bias: bool = True, forget_bias: float = 1.0, dtype=np.float64) -> dict:
    """Initial parameters for one run.

    Returns a dict with Wx: (I, G), Ws: (H, G), Wy: (H, O) and, when ``bias``, b: (G,), by: (O,),
    where G = H for cell "rnn", G = 4H for cell "lstm" (gate order i, f, g, o) and G = 3H for
    cell "gru" (gate order r, z, n), which with ``bias`` also has bn: (H,), the bias b_hn.
    """
    if cell not in CELLS:
        raise ValueError(f"cell: got {cell!r}; allowed: {', '.join(CELLS)}")
    for name, v in (("input_size", input_size), ("hidden", hidden), ("output_size", output_size)):
        if int(v) < 1:
            raise ValueError(f"{name}: got {v!r}; allowed: an integer >= 1")
    gates = GATES[cell]
    H = hidden
    Ws = np.concatenate([recurrent_matrix(rng, H, init, scale, dtype) for _ in range(gates)],
                        axis=1)
    Wx = (rng.standard_normal((input_size, gates * H)) / np.sqrt(input_size)).astype(dtype)
    Wy = (rng.standard_normal((H, output_size)) / np.sqrt(H)).astype(dtype)
    params = {"Wx": Wx, "Ws": Ws, "Wy": Wy}
    if bias:
        b = np.zeros(gates * H, dtype=dtype)
        if cell == "lstm":
            b[H:2 * H] = forget_bias
        params["b"] = b
        params["by"] = np.zeros(output_size, dtype=dtype)
        if cell == "gru":
            params["bn"] = np.zeros(H, dtype=dtype)
    return params


def spectral_stats(Ws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spectral radius and largest singular value of the recurrent matrix.

    Ws: (H, H) or (R, H, H); for an LSTM's (.., H, 4H) or a GRU's (.., H, 3H) the statistics of
    the H x H blocks are reported for the whole horizontal stack: radius of the candidate block
    (g, or n: columns 2H..3H in both; the cell's own recurrence), top singular value of the full
    matrix.
    Returns (rho, sigma), scalars or (R,).
    """
    H = Ws.shape[-2]
    square = Ws[..., :, 2 * H:3 * H] if Ws.shape[-1] in (3 * H, 4 * H) else Ws
    rho = np.abs(np.linalg.eigvals(square.astype(np.float64))).max(axis=-1)
    sigma = np.linalg.norm(Ws.astype(np.float64), ord=2, axis=(-2, -1))
    return rho, sigma
