"""The BPTT engine: pure NumPy, no I/O. ``from rnnlab.engine import bptt``.

``set_engine("numpy" | "compiled" | "auto")`` (or RNNLAB_ENGINE) runs ``bptt`` on the compiled
Numba kernel instead (``select.py``, ``kernel.py``). ``reference.bptt`` is the same computation
written the way the lecture writes it (slow, one loop per direction); the fast engines are
tested against it.
"""

from . import reference
from .bptt import LOSS_AT, BPTTResult, bptt, forward, term_norms
from .cells import ACTIVATIONS, CELLS
from .clip import CLIP_MODES, clip_grads, global_norm
from .heads import LOSSES, OUTPUTS
from .init import INITS, init_params, spectral_stats
from .select import DEFAULT_ENGINE, ENGINES, active_engine, get_engine, set_engine, using_engine

__all__ = [
    "ACTIVATIONS", "CELLS", "CLIP_MODES", "DEFAULT_ENGINE", "ENGINES", "INITS", "LOSSES",
    "LOSS_AT", "OUTPUTS", "BPTTResult", "active_engine", "bptt", "clip_grads", "forward",
    "get_engine", "global_norm", "init_params", "reference", "set_engine", "spectral_stats",
    "term_norms", "using_engine",
]
