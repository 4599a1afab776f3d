"""JetNet HDF5 → canonical.

Schema (JetNet, Kansal et al., arXiv:2106.11535 and JOSS 10.21105/joss.05789; files from Zenodo records 6975118
(30 particles) and 6302240 (150 particles), read by ``jetnet.datasets.JetNet.getData`` in github.com/jet-net/JetNet)::

    particle_features  float [N, P_src, 4]  (η_rel, φ_rel, pT_rel, mask), pT-ordered, zero-padded; P_src = 30 or 150
    jet_features       float [N, 4]         (pT [GeV], η, mass [GeV], n_particles)

One class per file, named ``{g,q,t,w,z}.hdf5`` (``g150.hdf5`` … for JetNet150): the label comes from ``--label`` or
from that file name. The jet azimuth is not stored, so ``jet_phi`` is 0 and no absolute ``part_phi`` is written;
``part_pt = pT_rel · jet pT`` and ``part_eta = η_rel + jet η`` are exact.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np

from jbot_edge.data.converters.common import (Converter, SourceFile, check_finite, check_not_empty, chunk_ranges,
                                              order_and_pad)
from jbot_edge.data.format import JetBatch
from jbot_edge.errors import JbotEdgeError

_FILE_NAME = re.compile(r"^(?P<label>[gqtwz])(?:150)?\.(?:hdf5|h5)$", re.IGNORECASE)


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise JbotEdgeError(f"jetnet file {path} is not a readable HDF5 file (truncated or corrupt?)") from exc


class JetNetConverter(Converter):
    name = "jetnet"
    reference = ("JetNet (Kansal et al., arXiv:2106.11535; Zenodo 6975118 / 6302240): particle_features [N,P,4] = "
                 "(etarel, phirel, ptrel, mask), jet_features [N,4] = (pt, eta, mass, num_particles)")
    particle_features = ("part_deta", "part_dphi", "part_pt_rel", "part_pt", "part_eta")
    jet_features = ("jet_pt", "jet_eta", "jet_phi", "jet_mass", "jet_n_constituents")

    def infer_label(self, path: Path) -> str | None:
        match = _FILE_NAME.match(path.name)
        return match.group("label").lower() if match else None

    def inspect(self, path: Path) -> SourceFile:
        with _open(path) as h5:
            for key in ("particle_features", "jet_features"):
                if key not in h5 or not isinstance(h5[key], h5py.Dataset):
                    raise JbotEdgeError(f"jetnet file {path}: key '{key}' missing (expected the JetNet layout: "
                                        "particle_features [N, 30, 4], jet_features [N, 4])")
            pf, jf = h5["particle_features"], h5["jet_features"]
            if pf.ndim != 3 or pf.shape[2] != 4:
                raise JbotEdgeError(f"jetnet file {path}: particle_features has shape {tuple(pf.shape)}, "
                                    "expected (N, 30, 4) = (etarel, phirel, ptrel, mask)")
            if jf.shape != (pf.shape[0], 4):
                raise JbotEdgeError(f"jetnet file {path}: jet_features has shape {tuple(jf.shape)}, "
                                    f"expected ({pf.shape[0]}, 4) = (pt, eta, mass, num_particles)")
            if pf.shape[0] == 0:
                raise JbotEdgeError(f"jetnet file {path}: particle_features holds no jets")
            return SourceFile(path=path, n_jets=int(pf.shape[0]), n_particles=int(pf.shape[1]))

    def iter_batches(self, source: SourceFile, label_names: Sequence[str], n_particles: int,
                     chunk_size: int, max_jets: int | None) -> Iterator[JetBatch]:
        assert source.label is not None
        label = label_names.index(source.label)
        path = source.path
        with _open(path) as h5:
            pf_ds, jf_ds = h5["particle_features"], h5["jet_features"]
            for lo, hi in chunk_ranges(source.n_jets, chunk_size, max_jets):
                try:
                    pf = np.asarray(pf_ds[lo:hi], dtype=np.float64)
                    jf = np.asarray(jf_ds[lo:hi], dtype=np.float64)
                except OSError as exc:
                    raise JbotEdgeError(f"jetnet file {path}: cannot read jets {lo}-{hi} "
                                        "(truncated or corrupt?)") from exc
                yield self._convert_chunk(pf, jf, label, n_particles, path, lo)

    @staticmethod
    def _convert_chunk(pf: np.ndarray, jf: np.ndarray, label: int, n_particles: int, path: Path,
                       offset: int) -> JetBatch:
        check_finite(pf, f"jetnet file {path}: particle_features", offset)
        check_finite(jf, f"jetnet file {path}: jet_features", offset)
        flag = pf[:, :, 3]
        if not np.isin(flag, (0.0, 1.0)).all():
            raise JbotEdgeError(f"jetnet file {path}: particle_features[..., 3] (mask) holds values other than "
                                "0 and 1")
        valid = flag > 0.5
        check_not_empty(valid, f"jetnet file {path}", offset)
        eta_rel, phi_rel, pt_rel = pf[:, :, 0], pf[:, :, 1], pf[:, :, 2]
        jet_pt, jet_eta, jet_mass, jet_n = jf[:, 0], jf[:, 1], jf[:, 2], jf[:, 3]
        features, mask = order_and_pad(
            {
                "part_deta": eta_rel,
                "part_dphi": phi_rel,
                "part_pt_rel": pt_rel,
                "part_pt": pt_rel * jet_pt[:, None],
                "part_eta": eta_rel + jet_eta[:, None],
            },
            valid, pt_rel, n_particles,
        )
        return JetBatch(
            particles=features,
            mask=mask,
            jets={
                "jet_pt": jet_pt,
                "jet_eta": jet_eta,
                "jet_phi": np.zeros_like(jet_pt),
                "jet_mass": jet_mass,
                "jet_n_constituents": jet_n,
            },
            labels=np.full(len(pf), label, dtype=np.int64),
        )
