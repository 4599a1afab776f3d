"""Top Tagging reference dataset (pandas HDF5) → canonical.

Schema (Kasieczka, Plehn, Thompson, Russell, "Top Quark Tagging Reference Dataset", Zenodo record 2603256, used in
"The Machine Learning Landscape of Top Taggers", SciPost Phys. 7, 014 (2019), arXiv:1902.09914): ``train.h5``,
``val.h5``, ``test.h5``, each a pandas DataFrame under key ``table`` with 806 columns::

    E_0, PX_0, PY_0, PZ_0, ..., E_199, PX_199, PY_199, PZ_199   constituent four-momenta [GeV], pT-sorted, zero-padded
    truthE, truthPX, truthPY, truthPZ                           top-quark four-momentum (signal only; not carried over)
    ttv                                                         0/1/2 = train/test/validation split flag (not carried)
    is_signal_new                                               1 = top jet, 0 = QCD jet

Labels are named ``qcd`` (is_signal_new = 0) and ``t`` (= 1). A constituent is real when E > 0. Jet pT, η, φ and
mass are recomputed from the sum of the constituents (the dataset stores no jet four-vector). Both pandas layouts
(``format='table'`` and ``'fixed'``) are read in row chunks with ``HDFStore.select(start=, stop=)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jbot_edge.data.converters.common import (Converter, SourceFile, check_finite, check_not_empty, chunk_ranges,
                                              jet_from_constituents, order_and_pad, pt_eta_phi, require_module,
                                              wrap_phi)
from jbot_edge.data.format import JetBatch
from jbot_edge.errors import JbotEdgeError

KEY = "table"
LABEL_COLUMN = "is_signal_new"
LABEL_NAMES = ("qcd", "t")
_CONSTITUENT_COLUMN = re.compile(r"^E_(\d+)$")


def _open_store(path: Path) -> Any:
    pd = require_module("pandas", "toptagging", "reading Top Tagging files")
    require_module("tables", "toptagging", "reading Top Tagging files")
    try:
        return pd.HDFStore(path, mode="r")
    except Exception as exc:  # pytables raises a zoo of types for non-HDF5 / truncated files
        raise JbotEdgeError(f"toptagging file {path} is not a readable pandas HDF5 file "
                            f"(truncated or corrupt?): {type(exc).__name__}") from exc


class TopTaggingConverter(Converter):
    name = "toptagging"
    reference = ("Top Quark Tagging Reference Dataset (Kasieczka et al., Zenodo 2603256, arXiv:1902.09914): pandas "
                 "key 'table', columns E_i/PX_i/PY_i/PZ_i (i<200), truthE..., ttv, is_signal_new")
    labels_in_file = True
    particle_features = ("part_deta", "part_dphi", "part_pt_rel", "part_pt", "part_eta", "part_phi", "part_energy")
    jet_features = ("jet_pt", "jet_eta", "jet_phi", "jet_mass", "jet_n_constituents")

    def label_names(self, sources: Sequence[SourceFile]) -> list[str]:
        return list(LABEL_NAMES)

    def inspect(self, path: Path) -> SourceFile:
        with _open_store(path) as store:
            if f"/{KEY}" not in store.keys():
                raise JbotEdgeError(f"toptagging file {path}: key '{KEY}' missing (has {store.keys()})")
            storer = store.get_storer(KEY)
            fixed = not storer.is_table
            n_jets = int(storer.shape[0]) if fixed else int(storer.nrows)
            columns = list(store.select(KEY, start=0, stop=0).columns)
        indices = sorted(int(m.group(1)) for c in columns if (m := _CONSTITUENT_COLUMN.match(str(c))))
        if not indices:
            raise JbotEdgeError(f"toptagging file {path}: key '{KEY}' has no constituent columns E_0, PX_0, ...")
        n_const = indices[-1] + 1
        needed = [f"{v}_{i}" for i in range(n_const) for v in ("E", "PX", "PY", "PZ")] + [LABEL_COLUMN]
        missing = [c for c in needed if c not in set(columns)]
        if missing:
            raise JbotEdgeError(f"toptagging file {path}: key '{KEY}' lacks column(s) {missing[:5]}"
                                f"{' ...' if len(missing) > 5 else ''} (expected E_i, PX_i, PY_i, PZ_i for "
                                f"i < {n_const} and '{LABEL_COLUMN}')")
        if n_jets == 0:
            raise JbotEdgeError(f"toptagging file {path}: key '{KEY}' holds no jets")
        return SourceFile(path=path, n_jets=n_jets, n_particles=n_const,
                          info={"pandas_format": "fixed" if fixed else "table"})

    def iter_batches(self, source: SourceFile, label_names: Sequence[str], n_particles: int,
                     chunk_size: int, max_jets: int | None) -> Iterator[JetBatch]:
        path, s = source.path, source.n_particles
        columns = {v: [f"{v}_{i}" for i in range(s)] for v in ("E", "PX", "PY", "PZ")}
        with _open_store(path) as store:
            for lo, hi in chunk_ranges(source.n_jets, chunk_size, max_jets):
                try:
                    frame = store.select(KEY, start=lo, stop=hi)
                except Exception as exc:
                    raise JbotEdgeError(f"toptagging file {path}: cannot read rows {lo}-{hi} of '{KEY}' "
                                        f"(truncated or corrupt?): {type(exc).__name__}") from exc
                arrays = {v: frame[cols].to_numpy(dtype=np.float64) for v, cols in columns.items()}
                signal = frame[LABEL_COLUMN].to_numpy()
                yield self._convert_chunk(arrays, signal, label_names, n_particles, path, lo)

    @staticmethod
    def _convert_chunk(arrays: dict[str, np.ndarray], signal: np.ndarray, label_names: Sequence[str],
                       n_particles: int, path: Path, offset: int) -> JetBatch:
        for v, values in arrays.items():
            check_finite(values, f"toptagging file {path}: columns {v}_i", offset)
        check_finite(signal.astype(np.float64), f"toptagging file {path}: column '{LABEL_COLUMN}'", offset)
        if not np.isin(signal, (0, 1)).all():
            raise JbotEdgeError(f"toptagging file {path}: column '{LABEL_COLUMN}' holds values other than 0 and 1")
        energy, px, py, pz = arrays["E"], arrays["PX"], arrays["PY"], arrays["PZ"]
        valid = energy > 0
        check_not_empty(valid, f"toptagging file {path}", offset)
        pt, eta, phi = pt_eta_phi(px, py, pz)
        jet = jet_from_constituents(energy, px, py, pz, valid)
        features, mask = order_and_pad(
            {
                "part_deta": eta - jet.eta[:, None],
                "part_dphi": wrap_phi(phi - jet.phi[:, None]),
                "part_pt_rel": pt / jet.pt[:, None],
                "part_pt": pt,
                "part_eta": eta,
                "part_phi": phi,
                "part_energy": energy,
            },
            valid, pt, n_particles,
        )
        labels = np.where(signal == 1, label_names.index("t"), label_names.index("qcd")).astype(np.int64)
        return JetBatch(
            particles=features,
            mask=mask,
            jets={"jet_pt": jet.pt, "jet_eta": jet.eta, "jet_phi": jet.phi, "jet_mass": jet.mass,
                  "jet_n_constituents": valid.sum(axis=1).astype(np.float64)},
            labels=labels,
        )
