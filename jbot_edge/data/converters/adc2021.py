"""CMS Anomaly Detection Challenge 2021 HDF5 → canonical, as *events as sets of objects*.

Schema (Govorkova et al., "LHC physics dataset for unsupervised New Physics detection at 40 MHz", Sci. Data 9, 118
(2022), arXiv:2107.02157; files published on Zenodo for the ADC2021 challenge, mpp-hep.github.io/ADC2021)::

    Particles          float64 [N, 19, 4]  (pT [GeV], η, φ, class) per slot; rows: 0 = MET (η = 0),
                                           1–4 electrons, 5–8 muons, 9–18 jets, each block pT-ordered;
                                           class 1 = MET, 2 = electron, 3 = muon, 4 = jet, 0 = empty slot
    Particles_Names    bytes [4]           ("Pt", "Eta", "Phi", "Class")   (not required)
    Particles_Classes  bytes [4]           object class names             (not required)

Each *event* becomes one "jet" of the canonical format; its objects are the "particles" (documented choices):

* objects are **pT-ordered** (the canonical contract, so truncation keeps the hardest objects);
  ``part_pid`` holds the ADC class code (1 MET, 2 e, 3 μ, 4 jet), so the challenge's fixed-slot layout is
  recovered by a stable sort on (class, −pT) — within a class the order is the source's;
* the event axis is the **leading non-MET object**: ``part_deta = η − η_lead``, ``part_dphi = φ − φ_lead``
  (wrapped); MET has no η, so its ``part_deta`` is 0; ``jet_eta``/``jet_phi`` are the axis;
* ``jet_pt`` is the scalar sum of all object pT including MET, and ``part_pt_rel = pT / jet_pt`` (sums to 1);
* ``jet_mass`` is the invariant mass of the visible objects (MET excluded) taken as massless;
* absolute ``part_pt``, ``part_eta``, ``part_phi`` are kept (the trigger-style model input).

The label comes from ``--label`` or from the published file name (``background_for_training.h5`` → background,
``Ato4l_lepFilter_13TeV.h5`` → Ato4l, ``hToTauTau_13TeV_PU20.h5`` → hToTauTau, …).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np

from jbot_edge.data.converters.common import (Converter, SourceFile, check_finite, check_not_empty, chunk_ranges,
                                              invariant_mass, order_and_pad, wrap_phi)
from jbot_edge.data.format import JetBatch
from jbot_edge.errors import JbotEdgeError

KEY = "Particles"
N_SLOTS = 19
CLASS_CODES = {0: "empty", 1: "MET", 2: "electron", 3: "muon", 4: "jet"}
MET = 1
#: sample names of the published files (the part of the file name before the first "_")
KNOWN_SAMPLES = ("background", "Ato4l", "hChToTauNu", "hToTauTau", "leptoquark")


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise JbotEdgeError(f"adc2021 file {path} is not a readable HDF5 file (truncated or corrupt?)") from exc


class ADC2021Converter(Converter):
    name = "adc2021"
    reference = ("CMS ADC2021 (Govorkova et al., Sci. Data 9, 118 (2022), arXiv:2107.02157): Particles [N,19,4] = "
                 "(pT, eta, phi, class); rows 0 MET, 1-4 e, 5-8 mu, 9-18 jets; class 0 = padding")
    particle_features = ("part_deta", "part_dphi", "part_pt_rel", "part_pt", "part_eta", "part_phi", "part_pid")
    jet_features = ("jet_pt", "jet_eta", "jet_phi", "jet_mass", "jet_n_constituents")
    provenance_extra: ClassVar[Mapping[str, Any]] = {
        "object_set": "adc2021",
        "part_pid": "ADC2021 object class code: " + ", ".join(f"{k} = {v}" for k, v in CLASS_CODES.items() if k),
        "event_axis": "leading non-MET object",
        "jet_pt": "scalar sum of object pT including MET",
    }

    def infer_label(self, path: Path) -> str | None:
        sample = path.name.split("_", 1)[0].split(".", 1)[0]
        return sample if sample in KNOWN_SAMPLES else None

    def inspect(self, path: Path) -> SourceFile:
        with _open(path) as h5:
            if KEY not in h5 or not isinstance(h5[KEY], h5py.Dataset):
                raise JbotEdgeError(f"adc2021 file {path}: key '{KEY}' missing (expected Particles [N, 19, 4])")
            shape = tuple(h5[KEY].shape)
        if len(shape) != 3 or shape[1:] != (N_SLOTS, 4):
            raise JbotEdgeError(f"adc2021 file {path}: {KEY} has shape {shape}, expected (N, 19, 4) = "
                                "(pT, eta, phi, class)")
        if shape[0] == 0:
            raise JbotEdgeError(f"adc2021 file {path}: {KEY} holds no events")
        return SourceFile(path=path, n_jets=shape[0], n_particles=N_SLOTS)

    def iter_batches(self, source: SourceFile, label_names: Sequence[str], n_particles: int,
                     chunk_size: int, max_jets: int | None) -> Iterator[JetBatch]:
        assert source.label is not None
        label = label_names.index(source.label)
        with _open(source.path) as h5:
            ds = h5[KEY]
            for lo, hi in chunk_ranges(source.n_jets, chunk_size, max_jets):
                try:
                    block = np.asarray(ds[lo:hi], dtype=np.float64)
                except OSError as exc:
                    raise JbotEdgeError(f"adc2021 file {source.path}: cannot read events {lo}-{hi} "
                                        "(truncated or corrupt?)") from exc
                yield self.convert_chunk(block, label, n_particles, source.path, lo)

    @staticmethod
    def convert_chunk(block: np.ndarray, label: int, n_particles: int, path: Path, offset: int) -> JetBatch:
        check_finite(block, f"adc2021 file {path}: {KEY}", offset)
        pt, eta, phi, cls = (block[:, :, i] for i in range(4))
        if not np.isin(cls, list(CLASS_CODES)).all():
            raise JbotEdgeError(f"adc2021 file {path}: {KEY}[..., 3] holds class codes other than 0-4")
        valid = cls != 0
        check_not_empty(valid, f"adc2021 file {path}", offset)
        is_met = cls == MET
        visible = valid & ~is_met
        rows = np.arange(len(block))
        # Axis: leading visible object; an event with MET only falls back to the MET direction (η = 0).
        lead = np.where(visible.any(axis=1), np.argmax(np.where(visible, pt, -1.0), axis=1),
                        np.argmax(np.where(valid, pt, -1.0), axis=1))
        axis_eta, axis_phi = eta[rows, lead], phi[rows, lead]
        scalar_sum = np.where(valid, pt, 0.0).sum(axis=1)
        if np.any(scalar_sum <= 0):
            bad = int(np.argmax(scalar_sum <= 0))
            raise JbotEdgeError(f"adc2021 file {path}: event {bad + offset} has zero total pT; expected pT > 0")
        w = visible.astype(np.float64)
        e = (pt * np.cosh(eta) * w).sum(axis=1)
        px, py, pz = ((pt * f * w).sum(axis=1) for f in (np.cos(phi), np.sin(phi), np.sinh(eta)))
        features, mask = order_and_pad(
            {
                "part_deta": np.where(is_met, 0.0, eta - axis_eta[:, None]),
                "part_dphi": wrap_phi(phi - axis_phi[:, None]),
                "part_pt_rel": pt / scalar_sum[:, None],
                "part_pt": pt,
                "part_eta": eta,
                "part_phi": phi,
                "part_pid": cls,
            },
            valid, pt, n_particles,
        )
        return JetBatch(
            particles=features,
            mask=mask,
            jets={"jet_pt": scalar_sum, "jet_eta": axis_eta, "jet_phi": axis_phi,
                  "jet_mass": invariant_mass(e, px, py, pz), "jet_n_constituents": valid.sum(axis=1).astype(float)},
            labels=np.full(len(block), label, dtype=np.int64),
        )
