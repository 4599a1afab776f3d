"""Facts about a jet file read from its provenance attributes (shared by every stage that needs them)."""

from __future__ import annotations

import re

#: Published jet radii of the converted formats (their files do not store it).
SOURCE_JET_R: dict[str, float] = {"jetnet": 0.8, "toptagging": 0.8, "jetclass": 0.8}
DEFAULT_JET_R = 0.8


def jet_radius(provenance: dict) -> tuple[float, str]:
    """``(R, where it came from)`` for a file's provenance: generator settings, the jet definition string, the
    converted format's published radius, the common radius of a merged file's inputs, or the default 0.8."""
    merged = provenance.get("merged_from")
    if merged:  # a `merge` concatenation: the inputs' radius when they agree
        found = {jet_radius(entry.get("provenance") or {}) for entry in merged}
        if len({r for r, _ in found}) == 1:
            radius, origin = found.pop()
            return radius, f"{origin} of the merged inputs"
    settings = provenance.get("settings") or {}
    if isinstance(settings, dict) and "jet_r" in settings:
        return float(settings["jet_r"]), "provenance.settings.jet_r"
    match = re.search(r"R\s*=\s*([0-9.]+)", str(provenance.get("jet_definition", "")))
    if match:
        return float(match.group(1)), "provenance.jet_definition"
    fmt = provenance.get("source_format")
    if fmt in SOURCE_JET_R:
        return SOURCE_JET_R[fmt], f"published radius of {fmt}"
    return DEFAULT_JET_R, "default (not recorded in the file)"
