"""Pieces shared by every converter: kinematics, pT-ordering and padding, source checks, label resolution.

Every converter turns the source's per-constituent arrays (padded to the source's own width ``S``) into the
canonical layout of :mod:`jbot_edge.data.format`: features pT-ordered, truncated or zero-padded to ``P`` slots,
and a boolean mask that is a prefix of real particles.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from jbot_edge.data.format import JetBatch
from jbot_edge.errors import JbotEdgeError


def wrap_phi(phi: np.ndarray) -> np.ndarray:
    """Map angles to [-π, π) so Δφ never jumps by 2π across the ±π boundary."""
    return (phi + np.pi) % (2 * np.pi) - np.pi


def pt_eta_phi(px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Transverse momentum, pseudorapidity and azimuth; η = asinh(pz/pT), and 0 where pT = 0 (padding)."""
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt > 0, np.arcsinh(pz / np.where(pt > 0, pt, 1.0)), 0.0)
    phi = np.arctan2(py, px)
    return pt, eta, phi


def invariant_mass(energy: np.ndarray, px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> np.ndarray:
    """sqrt(E² − p²), clipped at 0: float rounding makes nearly massless systems slightly space-like."""
    m2 = energy**2 - px**2 - py**2 - pz**2
    return np.sqrt(np.clip(m2, 0.0, None))


@dataclass
class JetKinematics:
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    mass: np.ndarray


def jet_from_constituents(energy: np.ndarray, px: np.ndarray, py: np.ndarray, pz: np.ndarray,
                          valid: np.ndarray) -> JetKinematics:
    """Jet four-vector as the sum of its valid constituents (E-scheme, as anti-kT in FastJet), in float64."""
    w = valid.astype(np.float64)
    e, x, y, z = ((a.astype(np.float64) * w).sum(axis=1) for a in (energy, px, py, pz))
    pt, eta, phi = pt_eta_phi(x, y, z)
    return JetKinematics(pt=pt, eta=eta, phi=phi, mass=invariant_mass(e, x, y, z))


def order_and_pad(features: Mapping[str, np.ndarray], valid: np.ndarray, pt: np.ndarray,
                  n_particles: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Sort each jet's valid particles by descending pT, keep the leading ``n_particles``, zero the padding.

    ``features`` and ``valid``/``pt`` are [N, S]. The sort is stable, so particles of equal pT keep the source
    order; invalid slots go last whatever their position in the source (some sources leave gaps).
    """
    n = valid.shape[0]
    key = np.where(valid, -pt.astype(np.float64), np.inf)
    order = np.argsort(key, axis=1, kind="stable")[:, :n_particles]
    rows = np.arange(n)[:, None]
    mask = valid[rows, order]
    width = order.shape[1]
    out: dict[str, np.ndarray] = {}
    for name, values in features.items():
        picked = np.where(mask, values[rows, order], 0).astype(np.float32)
        if width < n_particles:
            picked = np.pad(picked, ((0, 0), (0, n_particles - width)))
        out[name] = picked
    if width < n_particles:
        mask = np.pad(mask, ((0, 0), (0, n_particles - width)))
    return out, mask.astype(bool)


def check_finite(values: np.ndarray, where: str, offset: int = 0) -> None:
    """Raise one line naming ``where`` and the first bad jet (counting from ``offset``) if anything is NaN/inf."""
    if values.dtype.kind in "fc" and not np.isfinite(values).all():
        bad = int(np.argwhere(~np.isfinite(values))[0][0]) + offset
        raise JbotEdgeError(f"{where} holds NaN/inf (first at jet {bad}); expected finite values")


def check_not_empty(valid: np.ndarray, where: str, offset: int = 0) -> None:
    counts = valid.sum(axis=1)
    if counts.size and counts.min() == 0:
        raise JbotEdgeError(f"{where}: jet {int(np.argmin(counts)) + offset} has no particles; "
                            "every jet needs at least one")


def require_module(module: str, extra: str, what: str) -> Any:
    """Import an optional dependency or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise JbotEdgeError(f"{what} needs the Python package '{module}': pip install 'jbot-edge[{extra}]'") from exc


def open_root_tree(path: Path, tree: str, fmt: str) -> tuple[Any, Any]:
    """(open uproot file, its TTree ``tree``), or one line naming the file and what is wrong (extra ``root``)."""
    uproot = require_module("uproot", "root", f"reading {fmt} ROOT files")
    try:
        root_file = uproot.open(path)
    except Exception as exc:  # uproot raises ValueError/OSError/struct.error on non-ROOT or truncated files
        raise JbotEdgeError(f"{fmt} file {path} is not a readable ROOT file (truncated or corrupt?): "
                            f"{type(exc).__name__}") from exc
    keys = list(root_file.keys())
    if tree not in [k.split(";")[0] for k in keys]:
        root_file.close()
        raise JbotEdgeError(f"{fmt} file {path}: key '{tree}' missing (has {keys})")
    return root_file, root_file[tree]


@dataclass
class SourceFile:
    """One input file and the label its jets get (``None``: the format stores labels per jet)."""

    path: Path
    label: str | None = None
    n_jets: int = 0
    n_particles: int = 0
    info: dict[str, Any] = field(default_factory=dict)


class Converter:
    """Base class: one subclass per public format.

    Subclasses set the class attributes and implement :meth:`inspect` (cheap: shapes and keys only, so every
    source is checked before anything is written) and :meth:`iter_batches` (streams canonical batches).
    """

    #: value of ``--from``
    name: str = ""
    #: one line citing where the schema comes from (written into the output's provenance)
    reference: str = ""
    #: whether jets carry their own labels (JetClass, Top Tagging) or one label per file is needed
    labels_in_file: bool = False
    particle_features: tuple[str, ...] = ()
    jet_features: tuple[str, ...] = ()
    #: extra provenance entries (e.g. ``object_set``)
    provenance_extra: ClassVar[Mapping[str, Any]] = {}

    def inspect(self, path: Path) -> SourceFile:
        raise NotImplementedError

    def infer_label(self, path: Path) -> str | None:
        """Label implied by a published file name, or None."""
        return None

    def label_names(self, sources: Sequence[SourceFile]) -> list[str]:
        """Label names of the merged output; per-file labels in order of first appearance."""
        names: list[str] = []
        for source in sources:
            if source.label is not None and source.label not in names:
                names.append(source.label)
        return names

    def iter_batches(self, source: SourceFile, label_names: Sequence[str], n_particles: int,
                     chunk_size: int, max_jets: int | None) -> Iterator[JetBatch]:
        raise NotImplementedError


def chunk_ranges(n_jets: int, chunk_size: int, max_jets: int | None) -> Iterator[tuple[int, int]]:
    stop = n_jets if max_jets is None else min(n_jets, max_jets)
    for lo in range(0, stop, chunk_size):
        yield lo, min(lo + chunk_size, stop)


def assign_labels(converter: Converter, paths: Sequence[str | os.PathLike[str]],
                  labels: Sequence[str]) -> list[str | None]:
    """Per-file labels: none given → inferred from each file name; one → all files; one per file → pairwise."""
    paths = [Path(p) for p in paths]
    if converter.labels_in_file:
        if labels:
            raise JbotEdgeError(f"--label: {converter.name} files store a label per jet; do not pass --label")
        return [None] * len(paths)
    if len(labels) == len(paths):
        return list(labels)
    if len(labels) == 1:
        return [labels[0]] * len(paths)
    if labels:
        raise JbotEdgeError(f"--label: got {len(labels)} labels for {len(paths)} files; "
                            "give none (inferred from file names), one for all files, or one per file")
    out: list[str | None] = []
    for path in paths:
        label = converter.infer_label(path)
        if label is None:
            raise JbotEdgeError(f"{converter.name} file {path}: cannot infer the class from the file name; "
                                "pass --label NAME (once per file, in order)")
        out.append(label)
    return out
