"""Streaming reader for canonical jet files (see :mod:`jbot_edge.data.format`).

Files can hold 10^7 jets, so nothing here loads a whole file: :meth:`JetFile.iter_batches` reads contiguous
chunk-aligned blocks and filters labels in memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from jbot_edge.data.format import DEFAULT_SPLIT, SPLIT_NAMES, JetBatch, SplitSpec, split_names_to_ids
from jbot_edge.data.validate import check_block, check_structure
from jbot_edge.errors import JbotEdgeError
from jbot_edge.logs import get_logger

log = get_logger(__name__)


class JetFile:
    """A canonical jet file opened for reading. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._split_derivation_logged = False
        if not self.path.is_file():
            raise JbotEdgeError(f"jet file {self.path} does not exist")
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as exc:
            raise JbotEdgeError(f"jet file {self.path} is not a readable HDF5 file (truncated or corrupt?)") from exc
        try:
            self._check_schema()
        except BaseException:
            self._h5.close()
            raise

    def _check_schema(self) -> None:
        # Attributes, label names and dataset shapes now; values block by block as they are read (validate.py).
        self._label_names = check_structure(self._h5, self.path)

    def _datasets(self, group: str) -> dict[str, h5py.Dataset]:
        if group not in self._h5:
            return {}
        return {k: v for k, v in self._h5[group].items() if isinstance(v, h5py.Dataset)}

    # -- metadata ---------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._h5["labels"].shape[0])

    @property
    def n_jets(self) -> int:
        return len(self)

    @property
    def n_particles(self) -> int:
        return int(self._h5["particles/mask"].shape[1])

    @property
    def particle_features(self) -> list[str]:
        return [k for k in self._datasets("particles") if k != "mask"]

    @property
    def jet_features(self) -> list[str]:
        return list(self._datasets("jets"))

    @property
    def label_names(self) -> list[str]:
        return list(self._label_names)

    @property
    def attrs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self._h5.attrs.items():
            if key == "label_names":
                value = self.label_names
            elif key == "provenance":
                value = self.provenance
            elif key == "split_fractions":
                value = list(self.split_spec.fractions)
            elif isinstance(value, np.generic):
                value = value.item()
            out[key] = value
        return out

    @property
    def provenance(self) -> dict[str, Any]:
        try:
            value = json.loads(self._h5.attrs.get("provenance", "{}"))
        except (ValueError, TypeError):
            value = None
        if not isinstance(value, dict):
            raise JbotEdgeError(f"{self.path}: attribute 'provenance' is not a JSON object")
        return value

    # -- held-out split (see jbot_edge.data.format.SplitSpec) ----------------------------------------------------
    @property
    def has_split(self) -> bool:
        """Whether the file stores ``/split`` (files written before it existed do not)."""
        return "split" in self._h5

    @property
    def split_spec(self) -> SplitSpec:
        """The spec recorded in the attributes, or the default one that derives the split of older files."""
        attrs = self._h5.attrs
        if "split_fractions" not in attrs:
            return DEFAULT_SPLIT
        return SplitSpec(tuple(json.loads(attrs["split_fractions"])), int(attrs.get("split_seed", 0)))

    def splits(self) -> np.ndarray:
        """int8 [N] split of every jet (0 train, 1 val, 2 test): stored, or derived for older files (logged)."""
        return self._split_range(0, len(self))

    def split_counts(self) -> dict[str, dict[str, int]]:
        """{split name: {label: jets}} over the whole file."""
        labels, split = self.labels(), self.splits()
        return {name: {label: int(np.sum((split == s) & (labels == i))) for i, label in enumerate(self.label_names)}
                for s, name in enumerate(SPLIT_NAMES)}

    def split_summary(self) -> dict[str, Any]:
        """What evaluate/pretrain record about the split they used: stored or derived, spec, counts."""
        spec = self.split_spec
        return {"stored": self.has_split, "fractions": list(spec.fractions), "seed": spec.seed,
                "method": str(self._h5.attrs.get("split_method", "derived by the reader (file has no /split)")),
                "counts": self.split_counts()}

    def selection(self, labels: Sequence[str] | None = None, splits: Sequence[str] | None = None,
                  option: str = "labels") -> np.ndarray:
        """Boolean [N]: jets whose label is in ``labels`` and split in ``splits`` (None: no filter)."""
        keep = np.ones(len(self), dtype=bool)
        if labels is not None:
            keep &= np.isin(self.labels(), self.label_indices(list(labels), option))
        if splits is not None:
            keep &= np.isin(self.splits(), split_names_to_ids(splits, "splits"))
        return keep

    def _split_range(self, lo: int, hi: int) -> np.ndarray:
        if self.has_split:
            return self._h5["split"][lo:hi].astype(np.int8)
        if not self._split_derivation_logged:
            spec = self.split_spec
            log.info("%s has no /split (written before held-out splits existed): derived it from the jet positions "
                     "(fractions %s, seed %d)", self.path, list(spec.fractions), spec.seed)
            self._split_derivation_logged = True
        return self.split_spec.assign(np.arange(lo, hi))

    def labels(self) -> np.ndarray:
        """All labels (int32, 4 bytes a jet: fine even for 10^7 jets)."""
        labels = self._h5["labels"][:]
        check_block(JetBatch(particles={}, mask=np.zeros((len(labels), 0), bool), labels=labels), self.path, 0,
                    len(self._label_names))
        return labels

    def label_indices(self, names: Sequence[str], option: str = "labels") -> list[int]:
        """Map label names to indices; unknown names raise an error naming ``option``."""
        known = self.label_names
        unknown = [n for n in names if n not in known]
        if unknown:
            raise JbotEdgeError(f"{option}: label(s) {unknown} not in {self.path} (it has {known})")
        if not names:
            raise JbotEdgeError(f"{option}: the label filter is empty")
        return [known.index(n) for n in names]

    def require_particle_features(self, names: Sequence[str], option: str = "features") -> None:
        available = set(self.particle_features)
        missing = [n for n in names if n not in available]
        if missing:
            raise JbotEdgeError(
                f"{self.path}: {option} needs particle feature(s) {missing}, the file has {sorted(available)}"
            )

    def counts_per_label(self) -> dict[str, int]:
        counts = np.bincount(self.labels(), minlength=len(self.label_names))
        return {name: int(c) for name, c in zip(self.label_names, counts)}

    # -- data -------------------------------------------------------------------------------------------------
    def read(
        self,
        index: slice | np.ndarray,
        particle_features: Sequence[str] | None = None,
        jet_features: Sequence[str] | None = None,
    ) -> JetBatch:
        """Read jets by slice, integer index array (any order, repeats allowed) or boolean mask over all jets.

        An index array reads the one contiguous block spanning it, then selects in memory (HDF5 fancy indexing
        is slow and wants sorted unique indices), so keep index arrays local for big files.
        """
        pnames = self.particle_features if particle_features is None else list(particle_features)
        jnames = self.jet_features if jet_features is None else list(jet_features)
        self.require_particle_features(pnames)
        missing_jets = [n for n in jnames if n not in self.jet_features]
        if missing_jets:
            raise JbotEdgeError(f"{self.path}: jet feature(s) {missing_jets} missing (has {self.jet_features})")
        if isinstance(index, np.ndarray):
            index = self._positions(index)
            if index.size == 0:
                lo, hi = 0, 0
            else:
                lo, hi = int(index.min()), int(index.max()) + 1
            block = self.read(slice(lo, hi), pnames, jnames)
            return block.select(index - lo)
        h5 = self._h5
        batch = JetBatch(
            particles={n: h5[f"particles/{n}"][index] for n in pnames},
            mask=h5["particles/mask"][index].astype(bool),
            jets={n: h5[f"jets/{n}"][index] for n in jnames},
            labels=h5["labels"][index].astype(np.int64),
            split=h5["split"][index].astype(np.int8) if self.has_split else None,
        )
        check_block(batch, self.path, index.start or 0, len(self._label_names))
        return batch

    def _positions(self, index: np.ndarray) -> np.ndarray:
        """Integer positions from an index array; a boolean array is a mask over all jets."""
        n = len(self)
        if index.dtype == np.bool_:
            if index.shape != (n,):
                raise JbotEdgeError(f"{self.path}: boolean index has shape {index.shape}, expected ({n},)")
            return np.flatnonzero(index)
        if index.size == 0:
            return np.zeros(0, dtype=np.int64)
        if index.dtype.kind not in "iu":
            raise JbotEdgeError(f"{self.path}: index array must hold integers or booleans, got {index.dtype}")
        if index.min() < 0 or index.max() >= n:
            raise JbotEdgeError(f"{self.path}: jet index out of range (file has {n} jets, got "
                                f"{int(index.min())}..{int(index.max())})")
        return index.astype(np.int64, copy=False)

    def iter_batches(
        self,
        batch_size: int,
        particle_features: Sequence[str] | None = None,
        jet_features: Sequence[str] | None = None,
        labels: Sequence[str] | None = None,
        start: int = 0,
        stop: int | None = None,
        splits: Sequence[str] | None = None,
    ) -> Iterator[JetBatch]:
        """Yield batches of up to ``batch_size`` jets from ``[start, stop)``, optionally only the given labels
        and held-out splits (names from ``("train", "val", "test")``)."""
        if batch_size < 1:
            raise JbotEdgeError(f"{self.path}: batch_size must be ≥ 1, got {batch_size}")
        stop = len(self) if stop is None else min(stop, len(self))
        keep = None if labels is None else np.asarray(self.label_indices(labels, "labels"))
        keep_splits = None if splits is None else np.asarray(split_names_to_ids(splits, "splits"))
        pending: list[JetBatch] = []
        n_pending = 0
        block = max(batch_size, 4096)
        for lo in range(start, stop, block):
            hi = min(lo + block, stop)
            chunk = self.read(slice(lo, hi), particle_features, jet_features)
            selected = np.ones(len(chunk), dtype=bool)
            if keep is not None:
                selected &= np.isin(chunk.labels, keep)
            if keep_splits is not None:
                selected &= np.isin(self._split_range(lo, hi), keep_splits)
            if not selected.all():
                chunk = chunk.select(selected)
            pending.append(chunk)
            n_pending += len(chunk)
            while n_pending >= batch_size:
                merged = JetBatch.concatenate(pending)
                yield merged.select(slice(0, batch_size))
                rest = merged.select(slice(batch_size, None))
                pending, n_pending = [rest], len(rest)
        if n_pending:
            yield JetBatch.concatenate(pending)

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> JetFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
