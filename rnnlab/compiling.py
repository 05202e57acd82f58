"""What the compiled parts (the engine kernel, the task draws) share: Numba's cache folder and
their one-line announcements on stderr.

Compiled code is cached on disk in a per-user folder, so a read-only install and Dask workers
work too:

    NUMBA_CACHE_DIR if set, else $RNNLAB_CACHE_DIR/numba, else $XDG_CACHE_HOME/rnnlab/numba,
    else ~/.cache/rnnlab/numba; if that folder cannot be written, <tmp>/rnnlab-numba-<uid>.

Nothing here imports numba.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

_said: set = set()


def announce_once(key, message: str) -> None:
    """One line on stderr, once per process and key."""
    if key in _said:
        return
    _said.add(key)
    print(f"rnnlab: {message}", file=sys.stderr, flush=True)


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
        return True
    except OSError:
        return False


def cache_dir() -> str:
    """The folder compiled code is cached in (module docstring); sets NUMBA_CACHE_DIR (read by
    numba at import, and inherited by worker processes)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    if os.environ.get("RNNLAB_CACHE_DIR"):
        base = Path(os.environ["RNNLAB_CACHE_DIR"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rnnlab"
    folder = base / "numba"
    if not _writable(folder):
        uid = os.getuid() if hasattr(os, "getuid") else "user"
        folder = Path(tempfile.gettempdir()) / f"rnnlab-numba-{uid}"
        _writable(folder)
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
    if "numba" in sys.modules:                  # numba imported before us: tell its config too
        sys.modules["numba"].config.CACHE_DIR = str(folder)
    return str(folder)


def cache_subdir(module_name: str, suffix: str = "") -> str:
    """The cache subfolder for the compiled functions of ``module_name``, to be set as
    ``numba.config.CACHE_DIR`` before they are decorated. Numba keys its cache by source file,
    not by module name, and a cached function refers to its module by name: the same file
    imported under another top-level name (benchmarks/ab.py imports the working tree as
    rnnlab_ab_new) must not share entries, so there is one subfolder per top-level name."""
    return os.path.join(cache_dir(), module_name.partition(".")[0] + suffix)
