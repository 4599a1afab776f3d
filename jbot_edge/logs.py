"""Logging and progress bars shared by every command (rich on stderr, so stdout stays machine-readable)."""

from __future__ import annotations

import logging
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

console = Console(stderr=True)
_configured = False


def setup_logging(verbose: bool = False) -> None:
    global _configured
    if _configured:
        return
    handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        datefmt="[%X]", handlers=[handler])
    _configured = True


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def progress_bar(*extra_columns: TextColumn) -> Progress:
    """A rich progress bar; pass extra ``TextColumn("{task.fields[loss]}")`` style columns for live metrics."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), *extra_columns,
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
    )
