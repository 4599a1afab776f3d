"""User-facing errors.

Anything a user can cause (bad file, bad key, bad option value) raises :class:`JbotEdgeError` with a single
line that names the file/key/option and what was expected. The CLI prints it as ``error: ...`` and exits
with status 2; tracebacks are reserved for bugs.
"""

from __future__ import annotations


from typing import Any

#: Longest user-supplied value an error message echoes, and the longest message overall: a hostile or huge input
#: (a 5 MB override, an expanded YAML alias) must still give a short, readable line.
MAX_ECHO = 200
MAX_MESSAGE = 2000


def shorten(value: Any, limit: int = MAX_ECHO, quote: bool = True) -> str:
    """``repr(value)`` (or ``str`` with ``quote=False``) cut to ``limit`` characters, saying how much was cut."""
    text = repr(value) if quote else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class JbotEdgeError(Exception):
    """An error caused by user input; its message is one line meant for the user."""

    exit_code = 2

    def __init__(self, message: str):
        line = " ".join(str(message).split())
        if len(line) > MAX_MESSAGE:
            line = f"{line[:MAX_MESSAGE]}... (message cut, {len(line) - MAX_MESSAGE} more characters)"
        super().__init__(line)
