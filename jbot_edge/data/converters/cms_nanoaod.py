"""CMS Open Data NanoAOD with PF candidates (PFNano) → canonical AK8 jets with constituents (extra ``root``).

Schema: CMS NanoAOD (TTree ``Events``, one entry per collision event, one branch per column of each table, jagged
per event, with an ``n<Table>`` counter) as extended by PFNano (github.com/cms-jet/PFNano; the format of the CMS
Open Data PFNano samples, e.g. opendata.cern.ch records of the 2016 UL "PFNanoAOD" datasets)::

    FatJet_pt, FatJet_eta, FatJet_phi, FatJet_mass, FatJet_msoftdrop       AK8 PUPPI jets          [GeV]
    PFCands_pt, PFCands_eta, PFCands_phi, PFCands_mass, PFCands_charge,   particle-flow candidates
    PFCands_pdgId
    FatJetPFCands_jetIdx, FatJetPFCands_pFCandsIdx                        constituent links: FatJet index and
                                                                          PFCands index within the event

Every FatJet becomes one canonical jet (pT-ordered constituents, truncated or zero-padded to P, default 128), with
``part_deta = η − η_jet``, ``part_dphi = Δφ`` wrapped, ``part_pt_rel = pT / pT_jet``, absolute ``part_pt``,
``part_eta``, ``part_phi``, ``part_energy = sqrt((pT cosh η)² + m²)``, ``part_charge``, ``part_pid`` (pdgId), and jet
features ``jet_pt, jet_eta, jet_phi, jet_mass`` (the FatJet columns), ``jet_n_constituents`` (linked candidates)
and ``jet_sdmass`` (FatJet_msoftdrop). FatJets without linked candidates (none in PFNano, which links every AK8
jet) are dropped and counted. The label is one per file (``--label``: a dataset is one process or one trigger
stream). Anything not in this layout (another tree name, missing tables) is refused in one line naming what is
missing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jbot_edge.data.converters.common import (Converter, SourceFile, check_finite, open_root_tree, order_and_pad,
                                              require_module, wrap_phi)
from jbot_edge.data.format import JetBatch
from jbot_edge.errors import JbotEdgeError

TREE = "Events"
DEFAULT_N_PARTICLES = 128
JET_BRANCHES = ("FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_mass", "FatJet_msoftdrop")
CAND_BRANCHES = ("PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_mass", "PFCands_charge", "PFCands_pdgId")
LINK_BRANCHES = ("FatJetPFCands_jetIdx", "FatJetPFCands_pFCandsIdx")
BRANCHES = (*JET_BRANCHES, *CAND_BRANCHES, *LINK_BRANCHES)


def _awkward() -> Any:
    return require_module("awkward", "root", "reading CMS NanoAOD files")


def _open_events(path: Path) -> tuple[Any, Any]:
    return open_root_tree(path, TREE, "cms-nanoaod")


def _flat(ak: Any, array: Any) -> np.ndarray:
    return ak.to_numpy(ak.flatten(array, axis=1))


class CMSNanoAODConverter(Converter):
    name = "cms-nanoaod"
    reference = ("CMS NanoAOD + PFNano (github.com/cms-jet/PFNano; CMS Open Data PFNanoAOD): TTree 'Events' with "
                 "FatJet_*, PFCands_* and FatJetPFCands_{jetIdx,pFCandsIdx} jagged branches")
    particle_features = ("part_deta", "part_dphi", "part_pt_rel", "part_pt", "part_eta", "part_phi", "part_energy",
                         "part_charge", "part_pid")
    jet_features = ("jet_pt", "jet_eta", "jet_phi", "jet_mass", "jet_n_constituents", "jet_sdmass")

    def inspect(self, path: Path) -> SourceFile:
        ak = _awkward()
        root_file, tree = _open_events(path)
        with root_file:
            missing = [b for b in BRANCHES if b not in tree.keys()]
            if missing:
                raise JbotEdgeError(f"cms-nanoaod file {path}: branch(es) {missing} missing from '{TREE}' (expected "
                                    "PFNano with FatJet, PFCands and FatJetPFCands tables)")
            n_jets = int(ak.sum(ak.num(tree["FatJet_pt"].array(library="ak"), axis=1)))
        if n_jets == 0:
            raise JbotEdgeError(f"cms-nanoaod file {path}: no FatJet in any event")
        return SourceFile(path=path, n_jets=n_jets, n_particles=DEFAULT_N_PARTICLES)

    def iter_batches(self, source: SourceFile, label_names: Sequence[str], n_particles: int,
                     chunk_size: int, max_jets: int | None) -> Iterator[JetBatch]:
        """Events are read ``chunk_size`` at a time; ``max_jets`` caps the jets (FatJets) taken from the file."""
        ak = _awkward()
        label = label_names.index(source.label) if source.label is not None else 0
        root_file, tree = _open_events(source.path)
        done = 0
        with root_file:
            for arrays in tree.iterate(list(BRANCHES), step_size=chunk_size, library="ak"):
                batch = self._convert_chunk(ak, arrays, label, n_particles, source, done)
                if max_jets is not None and done + len(batch) > max_jets:
                    batch = batch.select(np.arange(max_jets - done))
                if len(batch):
                    yield batch
                done += len(batch)
                if max_jets is not None and done >= max_jets:
                    break

    @staticmethod
    def _convert_chunk(ak: Any, arrays: Any, label: int, n_particles: int, source: SourceFile,
                       offset: int) -> JetBatch:
        path = source.path
        n_jets_ev = ak.to_numpy(ak.num(arrays["FatJet_pt"], axis=1))
        n_cand_ev = ak.to_numpy(ak.num(arrays["PFCands_pt"], axis=1))
        n_link_ev = ak.to_numpy(ak.num(arrays["FatJetPFCands_jetIdx"], axis=1))
        jet_start = np.concatenate([[0], np.cumsum(n_jets_ev)[:-1]])
        cand_start = np.concatenate([[0], np.cumsum(n_cand_ev)[:-1]])
        event_of_link = np.repeat(np.arange(len(n_link_ev)), n_link_ev)
        jet_idx = _flat(ak, arrays["FatJetPFCands_jetIdx"]).astype(np.int64)
        cand_idx = _flat(ak, arrays["FatJetPFCands_pFCandsIdx"]).astype(np.int64)
        bad = (jet_idx < 0) | (jet_idx >= n_jets_ev[event_of_link]) | (cand_idx < 0) | \
            (cand_idx >= n_cand_ev[event_of_link])
        if bad.any():
            event = int(event_of_link[np.argmax(bad)])
            raise JbotEdgeError(f"cms-nanoaod file {path}: FatJetPFCands link out of range in event "
                                f"{event} of the chunk at jet {offset}")
        jet_gid = jet_start[event_of_link] + jet_idx
        cand_gid = cand_start[event_of_link] + cand_idx

        jets = {b: _flat(ak, arrays[b]).astype(np.float64) for b in JET_BRANCHES}
        cands = {b: _flat(ak, arrays[b]).astype(np.float64) for b in CAND_BRANCHES}
        for name, values in {**jets, **cands}.items():
            check_finite(values, f"cms-nanoaod file {path}: branch '{name}'", offset)

        # Dense [n_jets, S] constituent table: slot = order of the link within its jet.
        n_jets = len(jets["FatJet_pt"])
        counts = np.bincount(jet_gid, minlength=n_jets)
        order = np.argsort(jet_gid, kind="stable")
        slot = np.empty_like(order)
        slot[order] = np.arange(len(order)) - np.repeat(np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        width = max(int(counts.max()) if n_jets else 0, 1)
        valid = np.zeros((n_jets, width), dtype=bool)
        valid[jet_gid, slot] = True

        def dense(values: np.ndarray) -> np.ndarray:
            out = np.zeros((n_jets, width))
            out[jet_gid, slot] = values[cand_gid]
            return out

        pt, eta, phi, mass = (dense(cands[f"PFCands_{k}"]) for k in ("pt", "eta", "phi", "mass"))
        jet_pt, jet_eta, jet_phi = jets["FatJet_pt"], jets["FatJet_eta"], jets["FatJet_phi"]
        features, mask = order_and_pad({
            "part_deta": eta - jet_eta[:, None],
            "part_dphi": wrap_phi(phi - jet_phi[:, None]),
            "part_pt_rel": pt / jet_pt[:, None],
            "part_pt": pt, "part_eta": eta, "part_phi": phi,
            "part_energy": np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2),
            "part_charge": dense(cands["PFCands_charge"]), "part_pid": dense(cands["PFCands_pdgId"]),
        }, valid, pt, n_particles)
        keep = counts > 0
        source.info["jets_without_constituents"] = source.info.get("jets_without_constituents", 0) + int((~keep).sum())
        batch = JetBatch(particles=features, mask=mask, jets={
            "jet_pt": jet_pt, "jet_eta": jet_eta, "jet_phi": jet_phi, "jet_mass": jets["FatJet_mass"],
            "jet_n_constituents": counts.astype(np.float64), "jet_sdmass": jets["FatJet_msoftdrop"],
        }, labels=np.full(n_jets, label, dtype=np.int64))
        return batch.select(np.flatnonzero(keep))
