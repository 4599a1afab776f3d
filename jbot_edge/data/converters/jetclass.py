"""JetClass ROOT → canonical (needs the ``root`` extra: uproot + awkward).

Schema (Qu, Li, Qian, "Particle Transformer for Jet Tagging", ICML 2022, arXiv:2202.03772; dataset Zenodo record
6619768; branch names as read by ``dataloader.py`` and ``data/JetClass/JetClass_full.yaml`` in
github.com/jet-universe/particle_transformer): a TTree ``tree``, one entry per jet (anti-kT R = 0.8,
500 < pT < 1000 GeV, |η| < 2)::

    part_px, part_py, part_pz, part_energy [GeV], part_deta, part_dphi,           jagged float
    part_d0val, part_d0err, part_dzval, part_dzerr [mm], part_charge
    part_isChargedHadron, part_isNeutralHadron, part_isPhoton, part_isElectron,   jagged 0/1 flags
    part_isMuon
    jet_pt, jet_eta, jet_phi, jet_energy [GeV], jet_nparticles, jet_sdmass [GeV],  float per jet
                                                                                 (jet_nparticles not read: the
                                                                                 jagged length is used)
    jet_tau1, jet_tau2, jet_tau3, jet_tau4
    label_QCD, label_Hbb, label_Hcc, label_Hgg, label_H4q, label_Hqql, label_Zqq,  one-hot (bool/int/float mixed)
    label_Wqq, label_Tbqq, label_Tbl

Label names are the JetClass ones (``QCD, Hbb, …, Tbl``, always all ten, in this order, so files converted
separately share label indices). ``part_deta``/``part_dphi`` are taken from the file; ``part_pt``, ``part_eta``,
``part_phi`` come from the momenta; ``jet_mass`` = sqrt(E² − (pT cosh η)²) from the jet four-vector (JetClass stores
only the soft-drop mass, kept as ``jet_sdmass``). ``part_pid`` is rebuilt from the type flags and the charge:
photon 22, neutral hadron 130, charged hadron 211·q, electron −11·q, muon −13·q (PDG sign convention), 0 if no flag.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jbot_edge.data.converters.common import (Converter, SourceFile, check_finite, check_not_empty,
                                              open_root_tree, order_and_pad, pt_eta_phi, require_module)
from jbot_edge.data.format import JetBatch
from jbot_edge.errors import JbotEdgeError

TREE = "tree"
#: ParT pads JetClass jets to 128 particles (data/JetClass/*.yaml ``length: 128``); more is < 0.01% of jets.
DEFAULT_N_PARTICLES = 128
LABEL_NAMES = ("QCD", "Hbb", "Hcc", "Hgg", "H4q", "Hqql", "Zqq", "Wqq", "Tbqq", "Tbl")
LABEL_BRANCHES = tuple(f"label_{n}" for n in LABEL_NAMES)
FLOAT_PARTICLE_BRANCHES = ("part_px", "part_py", "part_pz", "part_energy", "part_deta", "part_dphi",
                           "part_d0val", "part_d0err", "part_dzval", "part_dzerr", "part_charge")
#: type flag → PDG id; for charged species the id of the charge +1 particle (π⁺ 211, e⁺ −11, μ⁺ −13), so that
#: id · charge gives the PDG id with the right sign (e⁻ = 11 has charge −1)
PID_FLAGS = {"part_isPhoton": 22, "part_isNeutralHadron": 130, "part_isChargedHadron": 211,
             "part_isElectron": -11, "part_isMuon": -13}
CHARGED_CODES = (211, -11, -13)
JET_BRANCHES = ("jet_pt", "jet_eta", "jet_phi", "jet_energy", "jet_sdmass",
                "jet_tau1", "jet_tau2", "jet_tau3", "jet_tau4")
#: JetClass-specific quantities carried over under their JetClass names
EXTRA_PARTICLE_FEATURES = ("part_d0val", "part_d0err", "part_dzval", "part_dzerr")
EXTRA_JET_FEATURES = ("jet_sdmass", "jet_tau1", "jet_tau2", "jet_tau3", "jet_tau4")


def _modules() -> tuple[Any, Any]:
    uproot = require_module("uproot", "root", "reading JetClass ROOT files")
    ak = require_module("awkward", "root", "reading JetClass ROOT files")
    return uproot, ak


def _open_tree(path: Path) -> tuple[Any, Any]:
    return open_root_tree(path, TREE, "jetclass")


class JetClassConverter(Converter):
    name = "jetclass"
    reference = ("JetClass (Qu, Li, Qian, arXiv:2202.03772; Zenodo 6619768): ROOT TTree 'tree' with jagged part_* "
                 "branches, jet_* branches and one-hot label_* branches")
    labels_in_file = True
    particle_features = ("part_deta", "part_dphi", "part_pt_rel", "part_pt", "part_eta", "part_phi", "part_energy",
                         "part_charge", "part_pid") + EXTRA_PARTICLE_FEATURES
    jet_features = ("jet_pt", "jet_eta", "jet_phi", "jet_mass", "jet_n_constituents") + EXTRA_JET_FEATURES

    def label_names(self, sources: Sequence[SourceFile]) -> list[str]:
        return list(LABEL_NAMES)

    def branches(self) -> list[str]:
        return [*FLOAT_PARTICLE_BRANCHES, *PID_FLAGS, *JET_BRANCHES, *LABEL_BRANCHES]

    def inspect(self, path: Path) -> SourceFile:
        root_file, tree = _open_tree(path)
        with root_file:
            missing = [b for b in self.branches() if b not in tree.keys()]
            if missing:
                raise JbotEdgeError(f"jetclass file {path}: branch(es) {missing} missing from '{TREE}'")
            n_jets = int(tree.num_entries)
        if n_jets == 0:
            raise JbotEdgeError(f"jetclass file {path}: '{TREE}' holds no jets")
        return SourceFile(path=path, n_jets=n_jets, n_particles=DEFAULT_N_PARTICLES)

    def iter_batches(self, source: SourceFile, label_names: Sequence[str], n_particles: int,
                     chunk_size: int, max_jets: int | None) -> Iterator[JetBatch]:
        _, ak = _modules()
        path = source.path
        root_file, tree = _open_tree(path)
        with root_file:
            offset = 0
            chunks = tree.iterate(self.branches(), step_size=chunk_size, entry_stop=max_jets, library="ak")
            while True:
                try:
                    arrays = next(chunks)
                except StopIteration:
                    break
                except Exception as exc:
                    raise JbotEdgeError(f"jetclass file {path}: cannot read entries from {offset} on "
                                        f"(truncated or corrupt?): {type(exc).__name__}: {exc}") from exc
                yield self._convert_chunk(ak, arrays, label_names, n_particles, path, offset)
                offset += len(arrays)

    @staticmethod
    def _convert_chunk(ak: Any, arrays: Any, label_names: Sequence[str], n_particles: int, path: Path,
                       offset: int) -> JetBatch:
        counts = ak.to_numpy(ak.num(arrays["part_px"], axis=1))
        width = max(int(counts.max()) if len(counts) else 0, 1)

        def dense(branch: str) -> np.ndarray:
            padded = ak.fill_none(ak.pad_none(arrays[branch], width, axis=1, clip=True), 0)
            return ak.to_numpy(padded).astype(np.float64)

        part = {b: dense(b) for b in (*FLOAT_PARTICLE_BRANCHES, *PID_FLAGS)}
        jet = {b: ak.to_numpy(arrays[b]).astype(np.float64) for b in JET_BRANCHES}
        for name, values in {**part, **jet}.items():
            check_finite(values, f"jetclass file {path}: branch '{name}'", offset)
        valid = np.arange(width)[None, :] < counts[:, None]
        check_not_empty(valid, f"jetclass file {path}", offset)

        onehot = np.stack([ak.to_numpy(arrays[b]).astype(np.float64) for b in LABEL_BRANCHES], axis=1)
        check_finite(onehot, f"jetclass file {path}: label branches", offset)
        n_set = (onehot != 0).sum(axis=1)
        if np.any(n_set != 1):
            bad = int(np.argmax(n_set != 1))
            raise JbotEdgeError(f"jetclass file {path}: jet {bad + offset} has {int(n_set[bad])} label_* branches "
                                "set; expected exactly one (one-hot)")
        labels = np.array([label_names.index(LABEL_NAMES[i]) for i in np.argmax(onehot != 0, axis=1)],
                          dtype=np.int64)

        pt, eta, phi = pt_eta_phi(part["part_px"], part["part_py"], part["part_pz"])
        charge = part["part_charge"]
        pid = np.zeros_like(charge)
        for flag, code in PID_FLAGS.items():
            signed = code * charge if code in CHARGED_CODES else np.full_like(charge, code)
            pid = np.where((part[flag] != 0) & (pid == 0), signed, pid)
        jet_pt = jet["jet_pt"]
        features, mask = order_and_pad(
            {
                "part_deta": part["part_deta"],
                "part_dphi": part["part_dphi"],
                "part_pt_rel": pt / jet_pt[:, None],
                "part_pt": pt,
                "part_eta": eta,
                "part_phi": phi,
                "part_energy": part["part_energy"],
                "part_charge": charge,
                "part_pid": pid,
                **{name: part[name] for name in EXTRA_PARTICLE_FEATURES},
            },
            valid, pt, n_particles,
        )
        p_total = jet_pt * np.cosh(jet["jet_eta"])
        jet_mass = np.sqrt(np.clip(jet["jet_energy"] ** 2 - p_total**2, 0.0, None))
        return JetBatch(
            particles=features,
            mask=mask,
            jets={
                "jet_pt": jet_pt,
                "jet_eta": jet["jet_eta"],
                "jet_phi": jet["jet_phi"],
                "jet_mass": jet_mass,
                "jet_n_constituents": counts.astype(np.float64),
                **{name: jet[name] for name in EXTRA_JET_FEATURES},
            },
            labels=labels,
        )
