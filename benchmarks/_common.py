"""What the benchmark scripts share: console output (rich tables when rich is installed, plain
text otherwise) and two facts about the machine (CPU model, how busy other processes keep it)."""

from __future__ import annotations

import contextlib
import platform
import sys
import time
from pathlib import Path


def table(head, rows, title, numbers_right: bool = False):
    """A rich Table (or its plain-text rendering) of ``rows`` under ``head``; with
    ``numbers_right`` every column but the first is right-aligned."""
    try:
        from rich.table import Table
    except ImportError:
        widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=False)]
        lines = [title, "  ".join(h.ljust(n) for h, n in zip(head, widths, strict=True))]
        lines += ["  ".join(str(c).ljust(n) for c, n in zip(r, widths, strict=True))
                  for r in rows]
        return "\n".join(lines)
    tab = Table(title=title)
    for i, h in enumerate(head):
        tab.add_column(h, justify="right" if numbers_right and i > 0 else "left")
    for r in rows:
        tab.add_row(*[str(c) for c in r])
    return tab


def make_printer(quiet: bool):
    """say(obj, plain=False): tables through rich when installed; strings, and anything with
    ``plain``, through print (no markup is read into them)."""
    try:
        from rich.console import Console
        console = Console(width=None if sys.stdout.isatty() else 120)
    except ImportError:
        console = None

    def say(obj, plain: bool = False) -> None:
        if quiet:
            return
        if console is None or plain or isinstance(obj, str):
            print(obj)
        else:
            console.print(obj)

    return say


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_busy(seconds: float = 0.5) -> float | None:
    """Fraction of all CPUs busy over ``seconds`` while this process sleeps (Linux /proc/stat):
    the load other processes put on the machine."""
    def sample():
        vals = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return vals[3] + vals[4], sum(vals)             # idle + iowait, total
    try:
        i0, t0 = sample()
        time.sleep(seconds)
        i1, t1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (i1 - i0) / max(t1 - t0, 1)
