"""Helpers for asserting on synth_report.json figures."""

from __future__ import annotations

from typing import Any

#: Keys every figure carries besides its value and source: the basis (= source), the design it describes, and why
#: it is unknown (only then).
LABEL_KEYS = ("basis", "design", "reason")


def core(figure: dict[str, Any]) -> dict[str, Any]:
    """A figure without its labels, after checking they are there: basis equals source, a design is named, and an
    unknown figure says why."""
    assert figure["basis"] == figure["source"], figure
    assert figure["design"], figure
    assert ("reason" in figure) == (figure["source"] == "unknown"), figure
    return {k: v for k, v in figure.items() if k not in LABEL_KEYS}
