"""Event-level object sets from Pythia (``jbot-edge generate --preset l1-event``), in the ADC2021 layout.

Each Pythia event becomes one "jet" of the canonical format whose "particles" are the trigger objects of the CMS
Anomaly Detection Challenge 2021 (Govorkova et al., arXiv:2107.02157; used by Metzger et al., arXiv:2502.15926):
MET, up to 4 electrons, 4 muons and 10 jets, each (pT, η, φ). The objects are built at truth level:

* **MET**: the transverse vector sum of the final-state neutrinos (the only invisibles of the SM and of the signal
  processes in :data:`jbot_edge.data.processes.EVENT_STREAMS`); η = 0. MET is always present (class 1), also when
  it is 0.
* **electrons / muons**: final-state e± / μ± with pT > :data:`LEPTON_PT_MIN` (3 GeV), |η| < 2.5 (e) / 2.4 (μ),
  that are *isolated*: the scalar pT sum of all other visible final-state particles within ΔR < 0.3 is below
  0.1 × the lepton pT. Leptons from hadron decays inside jets fail the isolation and end up in the jets.
* **jets**: anti-kT R = ``jet_r`` (0.4) on every visible final-state particle (status > 0, not a neutrino) except the
  isolated leptons (all of them, not only the 4 stored), pT > ``jet_pt_min`` (15 GeV), |η| < ``jet_abs_eta_max``
  (4.0) and pT < ``jet_pt_max``.

Objects of each class are pT-ordered and truncated to the ADC multiplicities (4 e, 4 μ, 10 jets); an event with no
lepton and no jet (MET only) is dropped, since it has no event axis. The 19 × (pT, η, φ, class) block is then turned
into canonical features by the ADC2021 converter itself (:class:`jbot_edge.data.converters.adc2021.ADC2021Converter`),
so generated and published ADC2021 events share one convention: ``part_pid`` = class code (1 MET, 2 e, 3 μ, 4 jet),
the event axis is the leading non-MET object, ``jet_pt`` = scalar pT sum including MET, ``part_pt_rel = pT/jet_pt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jbot_edge.data.converters.adc2021 import N_SLOTS, ADC2021Converter
from jbot_edge.data.format import JetBatch

#: Object definitions (documented above; fixed, as the ADC2021 layout is).
LEPTON_PT_MIN = 3.0
ELECTRON_ABS_ETA_MAX = 2.5
MUON_ABS_ETA_MAX = 2.4
ISOLATION_DR = 0.3
ISOLATION_MAX = 0.1
N_ELECTRONS, N_MUONS, N_JETS = 4, 4, 10
#: First slot of each block in the ADC2021 row layout: 0 MET, 1-4 e, 5-8 μ, 9-18 jets.
ELECTRON_SLOT, MUON_SLOT, JET_SLOT = 1, 1 + N_ELECTRONS, 1 + N_ELECTRONS + N_MUONS
CLASS_MET, CLASS_ELECTRON, CLASS_MUON, CLASS_JET = 1, 2, 3, 4
_NEUTRINOS = (12, 14, 16)

PARTICLE_FEATURES: tuple[str, ...] = ADC2021Converter.particle_features
JET_FEATURES: tuple[str, ...] = ADC2021Converter.jet_features
PROVENANCE: dict[str, Any] = {
    **ADC2021Converter.provenance_extra,
    "objects": (f"MET = vector sum of neutrinos; e/mu: pT > {LEPTON_PT_MIN} GeV, |eta| < {ELECTRON_ABS_ETA_MAX}/"
                f"{MUON_ABS_ETA_MAX}, sum pT(dR < {ISOLATION_DR})/pT < {ISOLATION_MAX}; jets: anti-kT of visible "
                "final-state particles minus isolated leptons; up to 4 e, 4 mu, 10 jets"),
}


def _pt_eta_phi(px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(np.where(pt > 0, pz / np.where(pt > 0, pt, 1.0), np.sign(pz) * 1e4))
    return pt, eta, np.arctan2(py, px)


def _fill_block(block: np.ndarray, event: np.ndarray, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray,
                first_slot: int, n_slots: int, code: int) -> None:
    """Write objects (any order) into their class block of ``block`` [n_events, 19, 4], pT-ordered, truncated."""
    order = np.lexsort((-pt, event))
    event, pt, eta, phi = event[order], pt[order], eta[order], phi[order]
    counts = np.bincount(event, minlength=len(block))
    rank = np.arange(len(event)) - np.repeat(np.cumsum(counts) - counts, counts)
    keep = rank < n_slots
    rows, cols = event[keep], first_slot + rank[keep]
    block[rows, cols] = np.stack([pt[keep], eta[keep], phi[keep], np.full(keep.sum(), float(code))], axis=1)


class EventExtractor:
    """Turns a batch of Pythia events (``pythia.nextBatch``) into ADC2021-like object sets, one label per stream."""

    def __init__(self, config: Any, label: int) -> None:
        import fastjet
        import fastjet._swig

        fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)  # keep stdout machine-readable
        self.config = config
        self.label = label
        self.jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, config.jet_r)

    def __call__(self, events: Any) -> tuple[JetBatch, int]:
        """Return the accepted events as a canonical batch and the number of events generated."""
        import awkward as ak
        import fastjet

        prt = events["prt"]
        n_events = len(prt)
        per_event = ak.to_numpy(ak.num(prt.id, axis=1)).astype(np.int64)
        event_of = np.repeat(np.arange(n_events), per_event)
        pid = ak.to_numpy(ak.flatten(prt.id)).astype(np.int64)
        status = ak.to_numpy(ak.flatten(prt.status)).astype(np.int64)
        px, py, pz, energy = (ak.to_numpy(ak.flatten(prt.p[c])) for c in ("px", "py", "pz", "e"))
        final = status > 0
        apid = np.abs(pid)
        block = np.zeros((n_events, N_SLOTS, 4))

        # MET: vector sum of the neutrinos (η = 0 by convention).
        nu = final & np.isin(apid, _NEUTRINOS)
        met_x = np.bincount(event_of[nu], weights=px[nu], minlength=n_events)
        met_y = np.bincount(event_of[nu], weights=py[nu], minlength=n_events)
        block[:, 0, 0] = np.hypot(met_x, met_y)
        block[:, 0, 2] = np.arctan2(met_y, met_x)
        block[:, 0, 3] = CLASS_MET

        visible = np.flatnonzero(final & ~np.isin(apid, _NEUTRINOS))
        pt, eta, phi = _pt_eta_phi(px[visible], py[visible], pz[visible])
        vis_event = event_of[visible]
        isolated = self._isolated_leptons(apid[visible], pt, eta, phi, vis_event, n_events)
        for code, lepton_id, first, n_slots in ((CLASS_ELECTRON, 11, ELECTRON_SLOT, N_ELECTRONS),
                                                 (CLASS_MUON, 13, MUON_SLOT, N_MUONS)):
            sel = isolated & (apid[visible] == lepton_id)
            _fill_block(block, vis_event[sel], pt[sel], eta[sel], phi[sel], first, n_slots, code)

        # Jets from the visible particles that are not isolated leptons.
        hadronic = visible[~isolated]
        counts = np.bincount(event_of[hadronic], minlength=n_events)
        particles = ak.unflatten(ak.zip({"px": px[hadronic], "py": py[hadronic], "pz": pz[hadronic],
                                         "E": energy[hadronic]}), counts)
        jets = fastjet.ClusterSequence(particles, self.jet_def).inclusive_jets(min_pt=self.config.jet_pt_min)
        jet_event = np.repeat(np.arange(n_events), ak.to_numpy(ak.num(jets, axis=1)))
        jpt, jeta, jphi = _pt_eta_phi(*(ak.to_numpy(ak.flatten(jets[c])) for c in ("px", "py", "pz")))
        ok = (np.abs(jeta) < self.config.jet_abs_eta_max) & (jpt < self.config.jet_pt_max)
        _fill_block(block, jet_event[ok], jpt[ok], jeta[ok], jphi[ok], JET_SLOT, N_JETS, CLASS_JET)

        # Without a visible object the event has no axis (and the ADC converter rejects it): drop it.
        block = block[(block[:, 1:, 3] != 0).any(axis=1)]
        if len(block) == 0:
            return self._empty(), n_events
        batch = ADC2021Converter.convert_chunk(block, self.label, self.config.n_particles, Path("pythia8"), 0)
        return batch, n_events

    def _empty(self) -> JetBatch:
        n = self.config.n_particles
        return JetBatch(particles={k: np.zeros((0, n), dtype=np.float32) for k in PARTICLE_FEATURES},
                        mask=np.zeros((0, n), dtype=bool), jets={k: np.zeros(0) for k in JET_FEATURES},
                        labels=np.zeros(0, dtype=np.int64))

    @staticmethod
    def _isolated_leptons(apid: np.ndarray, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, event: np.ndarray,
                          n_events: int) -> np.ndarray:
        """Mask over the visible particles: isolated electrons and muons inside the acceptance."""
        in_acceptance = (((apid == 11) & (np.abs(eta) < ELECTRON_ABS_ETA_MAX))
                         | ((apid == 13) & (np.abs(eta) < MUON_ABS_ETA_MAX)))
        candidate = np.flatnonzero((pt > LEPTON_PT_MIN) & in_acceptance)
        isolated = np.zeros(len(apid), dtype=bool)
        if len(candidate) == 0:
            return isolated
        # Pair each candidate with every visible particle of its event (visible particles are event-ordered).
        offsets = np.concatenate([[0], np.cumsum(np.bincount(event, minlength=n_events))])
        lo, hi = offsets[event[candidate]], offsets[event[candidate] + 1]
        n_pairs = hi - lo
        pair_lep = np.repeat(candidate, n_pairs)
        pair_other = np.repeat(lo, n_pairs) + np.arange(n_pairs.sum()) - np.repeat(np.cumsum(n_pairs) - n_pairs,
                                                                                    n_pairs)
        dphi = np.mod(phi[pair_lep] - phi[pair_other] + np.pi, 2 * np.pi) - np.pi
        near = (np.hypot(eta[pair_lep] - eta[pair_other], dphi) < ISOLATION_DR) & (pair_lep != pair_other)
        cone = np.bincount(pair_lep[near], weights=pt[pair_other[near]], minlength=len(apid))
        isolated[candidate] = cone[candidate] < ISOLATION_MAX * pt[candidate]
        return isolated
