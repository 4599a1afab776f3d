"""User-facing errors.

Anything a user can cause (bad file, bad key, bad option value) raises :class:`JbotEdgeError` with a single
line that names the file/key/option and what was expected. The CLI prints it as ``error: ...`` and exits
with status 2; tracebacks are reserved for bugs.
"""

from __future__ import annotations


class JbotEdgeError(Exception):
    """An error caused by user input; its message is one line meant for the user."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
