"""Jet substructure from stored constituents: invariant mass, N-subjettiness, and the jet-shape features that can be
appended to an embedding.

These are properties of the data, shared by two stages: ``evaluate`` scores jets with them as physics references
(:mod:`jbot_edge.evaluate.observables`, which documents the definitions), and a
:class:`~jbot_edge.pretrain.artifact.Teacher` can append :func:`constituent_observables` to its embedding
(``evaluate``'s ``embedding.observables``), so the score head and the ``qat`` student that distils it see them too.

Constituents enter as massless four-vectors at ``(η, φ) = (part_deta, part_dphi)``; the pT may be absolute or a
fraction of the jet's (N-subjettiness ratios and m/pT do not depend on the scale).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np

from jbot_edge.data.format import JetBatch
from jbot_edge.errors import JbotEdgeError

#: fjcontrib's ExclusiveJetAxes uses JetDefinition::max_allowable_R so that no constituent merges with the beam.
_KT_MAX_R = 1000.0


def _massless_four_vectors(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, ...]:
    return pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)


def constituent_mass_and_pt(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray,
                             mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Invariant mass and pT of the sum of the massless constituents (float64, padding ignored)."""
    w = mask.astype(np.float64)
    px, py, pz, e = ((c * w).sum(axis=1) for c in _massless_four_vectors(pt, eta, phi))
    return np.sqrt(np.clip(e**2 - px**2 - py**2 - pz**2, 0.0, None)), np.hypot(px, py)


def _exclusive_kt_axes(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, counts: np.ndarray,
                       n_axes: int) -> tuple[np.ndarray, np.ndarray]:
    """Rapidity and azimuth [J, n_axes] of the exclusive-kT axes of J jets (each with more than n_axes particles)."""
    import awkward as ak
    import fastjet
    import fastjet._swig

    fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)
    px, py, pz, e = _massless_four_vectors(pt, eta, phi)
    flat = ak.zip({"px": px, "py": py, "pz": pz, "E": e}, with_name="Momentum4D")
    events = ak.unflatten(flat, counts)
    jet_def = fastjet.JetDefinition(fastjet.kt_algorithm, _KT_MAX_R, fastjet.E_scheme)
    with warnings.catch_warnings():  # fastjet warns about exclusive jets for every algorithm, kT included
        warnings.simplefilter("ignore", UserWarning)
        axes = fastjet.ClusterSequence(events, jet_def).exclusive_jets(n_jets=n_axes)
    ax = {k: ak.to_numpy(ak.flatten(axes[k])).astype(np.float64).reshape(-1, n_axes) for k in ("px", "py", "pz", "E")}
    rapidity = 0.5 * np.log(np.maximum(ax["E"] + ax["pz"], 1e-300) / np.maximum(ax["E"] - ax["pz"], 1e-300))
    return rapidity, np.arctan2(ax["py"], ax["px"])


def nsubjettiness(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mask: np.ndarray, n_axes: int,
                  r0: float) -> np.ndarray:
    """τ_N (β = 1) of each jet [N] from constituents ``[N, P]`` (see module docstring); 0 where N ≥ multiplicity."""
    counts = mask.sum(axis=1)
    out = np.zeros(len(mask))
    rows = np.flatnonzero(counts > n_axes)
    if len(rows) == 0:
        return out
    m = mask[rows]
    axis_y, axis_phi = _exclusive_kt_axes(pt[rows][m], eta[rows][m], phi[rows][m], counts[rows], n_axes)
    deta = eta[rows][:, :, None] - axis_y[:, None, :]
    dphi = (phi[rows][:, :, None] - axis_phi[:, None, :] + np.pi) % (2 * np.pi) - np.pi
    nearest = np.sqrt(deta**2 + dphi**2).min(axis=2)
    weights = np.where(m, pt[rows], 0.0)
    out[rows] = (weights * nearest).sum(axis=1) / (weights.sum(axis=1) * r0)
    return out


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    safe = denominator > 0
    return np.where(safe, numerator / np.where(safe, denominator, 1.0), 1.0)


#: Features :func:`constituent_observables` can compute, all from the stored constituents alone (so that
#: pseudo-anomalies, which have no jet-level record, get them the same way): log(m/pT), τ2/τ1 and τ3/τ2.
ObservableName = Literal["log_m_over_pt", "tau21", "tau32"]
CONSTITUENT_OBSERVABLES: tuple[str, ...] = get_args(ObservableName)
#: m/pT floor before the log (a one-particle jet has m = 0)
_MIN_M_OVER_PT = 1e-4


def constituent_observables(batch: JetBatch, names: Sequence[str], r0: float) -> np.ndarray:
    """float64 ``[N, len(names)]``: the :data:`CONSTITUENT_OBSERVABLES` ``names`` of each jet, from its constituents
    (``part_pt_rel`` or else ``part_pt``, ``part_deta``, ``part_dphi``); N-subjettiness with radius ``r0``."""
    unknown = [n for n in names if n not in CONSTITUENT_OBSERVABLES]
    if unknown:
        raise JbotEdgeError(f"embedding observables {unknown} are not known "
                            f"(choose from {list(CONSTITUENT_OBSERVABLES)})")
    pt_name = "part_pt_rel" if "part_pt_rel" in batch.particles else "part_pt"
    missing = [f for f in (pt_name, "part_deta", "part_dphi") if f not in batch.particles]
    if missing:
        raise JbotEdgeError(f"embedding observables need particle feature(s) {missing}")
    mask = batch.mask
    pt = np.where(mask, batch.particles[pt_name], 0.0).astype(np.float64)
    eta = batch.particles["part_deta"].astype(np.float64)
    phi = batch.particles["part_dphi"].astype(np.float64)
    values: dict[str, np.ndarray] = {}
    if "log_m_over_pt" in names:
        mass, jet_pt = constituent_mass_and_pt(pt, eta, phi, mask)
        values["log_m_over_pt"] = np.log(np.maximum(safe_ratio(mass, jet_pt), _MIN_M_OVER_PT))
    axes_needed = {"tau21": (1, 2), "tau32": (2, 3)}
    taus = {n: nsubjettiness(pt, eta, phi, mask, n, r0)
            for n in sorted({n for name in names for n in axes_needed.get(name, ())})}
    if "tau21" in names:
        values["tau21"] = safe_ratio(taus[2], taus[1])
    if "tau32" in names:
        values["tau32"] = safe_ratio(taus[3], taus[2])
    return np.stack([values[n] for n in names], axis=1) if names else np.zeros((len(batch), 0))
