"""Physics observables of a jet used as anomaly scores: the references a learned score has to beat.

Every observable is turned into a score with an orientation **fixed in advance** (never chosen per signal from
labels), higher = more anomalous:

================  ==========================================================  ==================================
name              value                                                       score
================  ==========================================================  ==================================
``mass``          jet invariant mass [GeV]                                     +mass (heavy resonances are rare)
``m_over_pt``     mass / pT                                                    +m/pT
``multiplicity``  number of constituents                                       +multiplicity
``tau21``         N-subjettiness ratio τ2/τ1                                   −τ21 (two-prong: low τ21)
``tau32``         N-subjettiness ratio τ3/τ2                                   −τ32 (three-prong: low τ32)
================  ==========================================================  ==================================

Definitions:

* ``mass``, ``m_over_pt`` and ``multiplicity`` use the file's jet-level ``jet_mass``, ``jet_pt`` and
  ``jet_n_constituents`` when it stores them (they describe the whole jet, before truncation to P particles);
  otherwise they are computed from the stored constituents taken as massless (``part_pt`` or ``part_pt_rel · jet_pt``
  at ``(part_deta, part_dphi)``; ``mass`` is left out when no absolute pT scale is stored).
* N-subjettiness (Thaler, Van Tilburg, arXiv:1011.2268), β = 1:
  ``τ_N = Σ_i pT_i · min_k ΔR(i, k) / (Σ_i pT_i · R0)`` with ``R0`` the jet radius (from the file's provenance)
  and the N axes the **exclusive-kT** subjets of the stored constituents (FastJet, kT with the maximal R and the
  E-scheme, as fjcontrib's ``ExclusiveJetAxes``). The constituents enter as massless four-vectors at
  ``(η, φ) = (part_deta, part_dphi)`` with pT ``part_pt_rel``: a longitudinal boost and a rotation of the real jet,
  which leave ΔR and the ratios unchanged. Axis distances use the axis rapidity, as fjcontrib does.
  A jet with at most N particles has ``τ_N = 0``; a ratio with a zero denominator (a one-particle jet) is 1,
  i.e. "no evidence of substructure".

:func:`observable_scores` streams a :class:`~jbot_edge.data.reader.JetFile` block by block (or takes an in-memory
:class:`~jbot_edge.data.format.JetBatch`); about 20k jets of 30 particles take a few seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jbot_edge.data.format import JetBatch
from jbot_edge.data.substructure import constituent_mass_and_pt, nsubjettiness, safe_ratio
from jbot_edge.data.provenance import DEFAULT_JET_R, jet_radius
from jbot_edge.logs import get_logger

log = get_logger(__name__)

#: name → sign applied to the value to make the score (higher = more anomalous); fixed, never fitted.
ORIENTATION: dict[str, float] = {"mass": 1.0, "m_over_pt": 1.0, "multiplicity": 1.0, "tau21": -1.0, "tau32": -1.0}
OBSERVABLES: tuple[str, ...] = tuple(ORIENTATION)
_PARTICLE_FEATURES = ("part_deta", "part_dphi", "part_pt_rel")
_JET_FEATURES = ("jet_mass", "jet_pt", "jet_n_constituents")
_BLOCK_JETS = 16384
def observable_values(batch: JetBatch, r0: float) -> dict[str, np.ndarray]:
    """Raw observable values (float64 [N] each) of an in-memory batch; see the module docstring."""
    mask = batch.mask
    pt_rel = batch.particles["part_pt_rel"].astype(np.float64)
    eta = batch.particles["part_deta"].astype(np.float64)
    phi = batch.particles["part_dphi"].astype(np.float64)
    rel_mass, rel_pt = constituent_mass_and_pt(pt_rel, eta, phi, mask)
    values: dict[str, np.ndarray] = {}
    jets = batch.jets
    if "jet_mass" in jets:
        values["mass"] = jets["jet_mass"].astype(np.float64)
    elif "jet_pt" in jets:
        values["mass"] = rel_mass * jets["jet_pt"]
    elif "part_pt" in batch.particles:
        values["mass"] = constituent_mass_and_pt(batch.particles["part_pt"].astype(np.float64), eta, phi, mask)[0]
    if "jet_mass" in jets and "jet_pt" in jets:
        values["m_over_pt"] = safe_ratio(jets["jet_mass"].astype(np.float64), jets["jet_pt"].astype(np.float64))
    else:
        values["m_over_pt"] = safe_ratio(rel_mass, rel_pt)
    values["multiplicity"] = (jets["jet_n_constituents"].astype(np.float64) if "jet_n_constituents" in jets
                              else mask.sum(axis=1).astype(np.float64))
    tau1, tau2, tau3 = (nsubjettiness(pt_rel, eta, phi, mask, n, r0) for n in (1, 2, 3))
    values["tau21"] = safe_ratio(tau2, tau1)
    values["tau32"] = safe_ratio(tau3, tau2)
    return values


def orient(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Observable values → anomaly scores (higher = more anomalous) with the fixed :data:`ORIENTATION`."""
    return {name: ORIENTATION[name] * v for name, v in values.items()}


def observable_scores(source, index: np.ndarray | None = None, r0: float | None = None,
                      names: Sequence[str] = OBSERVABLES, block: int = _BLOCK_JETS) -> dict[str, np.ndarray]:
    """Anomaly scores {name: float64 [len(index)]} of the jets at sorted file ``index`` (all jets if None).

    ``source`` is a :class:`~jbot_edge.data.reader.JetFile` (streamed in blocks of ``block`` jets, never loaded
    whole; ``r0`` defaults to the radius in its provenance) or a :class:`JetBatch` (``r0`` then required unless
    0.8 is right). Observables the data cannot provide (``mass`` without any absolute pT) are left out.
    """
    if isinstance(source, JetBatch):
        batch = source if index is None else source.select(np.asarray(index))
        return _pick(orient(observable_values(batch, DEFAULT_JET_R if r0 is None else r0)), names)
    if r0 is None:
        r0, origin = jet_radius(source.provenance)
        log.info("N-subjettiness R0 = %g (%s)", r0, origin)
    index = np.arange(len(source)) if index is None else np.asarray(index)
    if len(index) and np.any(np.diff(index) <= 0):
        raise ValueError("observable_scores needs sorted, unique indices")
    particle_features = [f for f in (*_PARTICLE_FEATURES, "part_pt") if f in source.particle_features]
    jet_features = [f for f in _JET_FEATURES if f in source.jet_features]
    parts: list[dict[str, np.ndarray]] = []
    for lo in range(0, len(source), block):
        hi = min(lo + block, len(source))
        a, b = np.searchsorted(index, [lo, hi])
        if a == b:
            continue
        chunk = source.read(slice(lo, hi), particle_features, jet_features).select(index[a:b] - lo)
        parts.append(orient(observable_values(chunk, r0)))
    if not parts:
        return {name: np.zeros(0) for name in names}
    return _pick({k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, names)


def _pick(scores: dict[str, np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
    return {name: scores[name] for name in names if name in scores}
