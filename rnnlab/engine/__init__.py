"""The BPTT engine: pure NumPy, no I/O. ``from rnnlab.engine import bptt``."""

from .bptt import CELLS, LOSS_AT, BPTTResult, bptt, forward, term_norms
from .cells import ACTIVATIONS
from .clip import CLIP_MODES, clip_grads, global_norm
from .heads import LOSSES, OUTPUTS
from .init import INITS, init_params, spectral_stats

__all__ = [
    "ACTIVATIONS", "CELLS", "CLIP_MODES", "INITS", "LOSSES", "LOSS_AT", "OUTPUTS",
    "BPTTResult", "bptt", "clip_grads", "forward", "global_norm", "init_params", "spectral_stats",
    "term_norms",
]
