"""Errors a user can cause. The CLI turns every UserError into one line on stderr and exit 2.

Every message is one line whatever the user's keys and values contain: :func:`one_line` escapes
control and line-separator characters and cuts over-long pieces, and ``UserError`` applies it to
its message.
"""

from __future__ import annotations

import unicodedata

#: Longest message, and longest key, a one-line error shows (the rest is cut to "...").
MAX_MESSAGE = 2000
MAX_KEY = 80
#: Exit status of a sweep stopped by the environment (disk full, quota), not by a user mistake.
EXIT_ENVIRONMENT = 3


def _escape(ch: str) -> str:
    if ch in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: object, limit: int = MAX_MESSAGE) -> str:
    """``str(text)`` with control, format and line-separator characters escapes (``\\n``,
    ``\\x00``, ``\\u2028``), cut to ``limit`` characters (ending "...")."""
    s = str(text)
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in s):
        s = "".join(
            _escape(c) if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in s
        )
    return s if len(s) <= limit else s[: limit - 3] + "..."


class UserError(Exception):
    """A mistake in the user's input (file, key, value): reported in one line, exit status 2."""

    #: The CLI's exit status for this error.
    exit_code = 2

    def __init__(self, message: object = "", *args):
        super().__init__(one_line(message), *args)


class EnvironmentFault(UserError):
    """The machine stopped the command (disk full, quota, a Dask scheduler lost or not
    answering): one line naming the folder (or scheduler) and the cause, exit status
    ``EXIT_ENVIRONMENT``; nothing written is half a file."""

    exit_code = EXIT_ENVIRONMENT


class ConfigError(UserError):
    """A bad value in an experiment file or override.

    The message reads ``FILE: KEY: got VALUE; allowed: WHAT`` so that one line says where, what and
    what would have been accepted.
    """

    def __init__(self, file: str, key: str, value: object, allowed: str, hint: str = ""):
        self.file, self.key, self.value, self.allowed, self.hint = file, key, value, allowed, hint
        shown_value = one_line(repr(value), 200)
        msg = f"{file}: {one_line(key, MAX_KEY)}: got {shown_value}; allowed: {allowed}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)
