"""One module per CLI subcommand; each exposes ``register(app: typer.Typer)``."""

from __future__ import annotations


def label_list(value: str | None, option: str) -> list[str] | None:
    """``"q, g"`` → ``["q", "g"]``; None stays None; an empty list is an error naming ``option``."""
    from jbot_edge.errors import JbotEdgeError

    if value is None:
        return None
    labels = [s.strip() for s in value.split(",") if s.strip()]
    if not labels:
        raise JbotEdgeError(f"{option} {value!r}: give comma-separated labels, e.g. q,g")
    return labels
