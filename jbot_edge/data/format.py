"""The canonical jet file (HDF5), schema ``jbot-edge.jets`` version 1.

Layout (N jets, P particle slots; documented for users in ``docs/jet_format.md``)::

    /                     attrs: schema, schema_version, n_particles, label_names (JSON list),
                                 source, provenance (JSON object: generator settings, seed, ...), created_by
    /particles/<name>     float32 [N, P]  one dataset per per-particle feature, pT-ordered, zero-padded
    /particles/mask       bool    [N, P]  True for real particles (always a prefix: padding is at the end)
    /jets/<name>          float64 [N]     one dataset per per-jet quantity
    /labels               int32   [N]     index into label_names
    /split                int8    [N]     held-out split: 0 train, 1 val, 2 test (see :class:`SplitSpec`)

Standard feature names (a file holds a subset; ``part_deta, part_dphi, part_pt_rel`` always):

* particles: ``part_deta``, ``part_dphi`` (relative to the jet axis), ``part_pt_rel`` (pT / jet pT),
  ``part_pt`` [GeV], ``part_eta``, ``part_phi``, ``part_energy`` [GeV], ``part_charge`` [e], ``part_pid`` (PDG id)
* jets: ``jet_pt`` [GeV], ``jet_eta``, ``jet_phi``, ``jet_mass`` [GeV], ``jet_n_constituents`` (before truncation
  to P)

Root attributes ``split_seed``, ``split_fractions`` (JSON [train, val, test]) and ``split_method`` describe how
``/split`` was assigned: a hash of ``(split_seed, position of the jet in the file)``, so it is stable across runs,
workers and converters that write the same jets in the same order, and it travels with a jet that is copied into
another file (a writer keeps a batch's ``split`` when it has one). Files written before the split existed have no
``/split``; readers derive it with the default :class:`SplitSpec` (and log that they did).

Datasets are chunked along N (``CHUNK_JETS`` jets a chunk) and gzip-compressed, so files of 10^7 jets are
streamed in batches without ever being loaded whole (see :mod:`jbot_edge.data.reader`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pydantic

from jbot_edge import __version__
from jbot_edge.atomic import atomic_path
from jbot_edge.config import StrictModel
from jbot_edge.errors import JbotEdgeError

SCHEMA_NAME = "jbot-edge.jets"
SCHEMA_VERSION = 1
CHUNK_JETS = 1024
REQUIRED_PARTICLE_FEATURES = ("part_deta", "part_dphi", "part_pt_rel")
STANDARD_PARTICLE_FEATURES = (
    "part_deta", "part_dphi", "part_pt_rel", "part_pt", "part_eta", "part_phi", "part_energy", "part_charge",
    "part_pid",
)
STANDARD_JET_FEATURES = ("jet_pt", "jet_eta", "jet_phi", "jet_mass", "jet_n_constituents")
SPLIT_NAMES = ("train", "val", "test")
SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST = 0, 1, 2
SPLIT_METHOD = "top 53 bits of splitmix64(splitmix64(seed) xor index) / 2^53 against cumulative fractions"
#: Canonical class names; JetNet's q, g, t, w, z plus h (H→bb). Converters may add others (e.g. ``qcd``).
STANDARD_LABELS = ("q", "g", "w", "z", "t", "h")


@dataclass(frozen=True)
class SplitSpec:
    """How ``/split`` is assigned: fractions of (train, val, test) and the seed of the per-jet hash."""

    fractions: tuple[float, float, float] = (0.6, 0.1, 0.3)
    seed: int = 0

    def __post_init__(self) -> None:
        f = tuple(float(x) for x in self.fractions)
        if len(f) != 3 or any(x < 0 for x in f) or abs(sum(f) - 1.0) > 1e-6:
            raise JbotEdgeError(f"split fractions must be three non-negative numbers (train, val, test) summing to "
                                f"1, got {list(self.fractions)}")
        object.__setattr__(self, "fractions", f)

    def assign(self, index: np.ndarray) -> np.ndarray:
        """int8 split (0 train, 1 val, 2 test) of the jets at file positions ``index``: a pure function of
        ``(seed, index)``, so any subset of a file can be split without reading the rest."""
        u = _unit_hash(np.asarray(index, dtype=np.uint64), self.seed)
        edges = np.cumsum(self.fractions)[:2]
        return np.searchsorted(edges, u, side="right").astype(np.int8)

    def attrs(self) -> dict[str, Any]:
        return {"split_seed": int(self.seed), "split_fractions": json.dumps(list(self.fractions)),
                "split_method": SPLIT_METHOD}


DEFAULT_SPLIT = SplitSpec()


class SplitSettings(StrictModel):
    """Config keys of the writers (``generate``, ``convert``) that set how ``/split`` is assigned."""

    split_fractions: list[float] = pydantic.Field(default_factory=lambda: list(DEFAULT_SPLIT.fractions),
                                                  description="held-out split fractions [train, val, test]")
    split_seed: int = pydantic.Field(default=DEFAULT_SPLIT.seed, ge=0, description="seed of the per-jet split hash")

    @pydantic.field_validator("split_fractions")
    @classmethod
    def _valid_fractions(cls, value: list[float]) -> list[float]:
        try:
            SplitSpec(tuple(value))
        except JbotEdgeError as exc:
            raise ValueError(str(exc)) from exc
        return value

    def split_spec(self) -> SplitSpec:
        return SplitSpec(tuple(self.split_fractions), self.split_seed)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (Steele et al.), vectorised; uint64 arithmetic wraps, as intended."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _unit_hash(index: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) numbers, one per index, from 53 bits of a seeded 64-bit hash."""
    with np.errstate(over="ignore"):
        key = _splitmix64(np.array([seed], dtype=np.uint64))[0]
        mixed = _splitmix64(index ^ key)
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def split_names_to_ids(names: Sequence[str], option: str = "split") -> list[int]:
    unknown = [n for n in names if n not in SPLIT_NAMES]
    if unknown:
        raise JbotEdgeError(f"{option}: unknown split(s) {unknown}; expected names from {list(SPLIT_NAMES)}")
    return [SPLIT_NAMES.index(n) for n in names]


@dataclass
class JetBatch:
    """A batch of jets in memory: feature name → array, plus mask and integer labels (and, when known, the
    held-out split of each jet, which a writer keeps)."""

    particles: dict[str, np.ndarray]
    mask: np.ndarray
    jets: dict[str, np.ndarray] = field(default_factory=dict)
    labels: np.ndarray | None = None
    split: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.mask.shape[0])

    @property
    def n_particles(self) -> int:
        return int(self.mask.shape[1])

    def select(self, index: np.ndarray | slice) -> JetBatch:
        return JetBatch(
            particles={k: v[index] for k, v in self.particles.items()},
            mask=self.mask[index],
            jets={k: v[index] for k, v in self.jets.items()},
            labels=None if self.labels is None else self.labels[index],
            split=None if self.split is None else self.split[index],
        )

    @staticmethod
    def concatenate(batches: Sequence[JetBatch]) -> JetBatch:
        if not batches:
            raise ValueError("no batches to concatenate")
        first = batches[0]
        return JetBatch(
            particles={k: np.concatenate([b.particles[k] for b in batches]) for k in first.particles},
            mask=np.concatenate([b.mask for b in batches]),
            jets={k: np.concatenate([b.jets[k] for b in batches]) for k in first.jets},
            labels=None if first.labels is None else np.concatenate([b.labels for b in batches]),
            split=(np.concatenate([b.split for b in batches]) if all(b.split is not None for b in batches)
                   else None),
        )


def validate_batch(batch: JetBatch, n_particles: int, n_labels: int, where: str) -> None:
    """Check shapes, finiteness, padding and non-empty jets; raise one clear line naming ``where``."""
    n = len(batch)
    if batch.mask.dtype != np.bool_:
        raise JbotEdgeError(f"{where}: particles/mask must be boolean, got {batch.mask.dtype}")
    if batch.mask.shape != (n, n_particles):
        raise JbotEdgeError(f"{where}: particles/mask has shape {batch.mask.shape}, expected ({n}, {n_particles})")
    for name in REQUIRED_PARTICLE_FEATURES:
        if name not in batch.particles:
            raise JbotEdgeError(f"{where}: required particle feature '{name}' is missing")
    for name, values in batch.particles.items():
        if values.shape != (n, n_particles):
            raise JbotEdgeError(f"{where}: particles/{name} has shape {values.shape}, expected ({n}, {n_particles})")
        if not np.isfinite(values).all():
            bad = int(np.argwhere(~np.isfinite(values))[0][0])
            raise JbotEdgeError(f"{where}: particles/{name} holds NaN/inf (first at jet {bad}); expected finite values")
        if np.any(values[~batch.mask] != 0):
            raise JbotEdgeError(f"{where}: particles/{name} is non-zero in padded slots; expected zero padding")
    for name, values in batch.jets.items():
        if values.shape != (n,):
            raise JbotEdgeError(f"{where}: jets/{name} has shape {values.shape}, expected ({n},)")
        if not np.isfinite(values).all():
            raise JbotEdgeError(f"{where}: jets/{name} holds NaN/inf; expected finite values")
    counts = batch.mask.sum(axis=1)
    if n and counts.min() == 0:
        raise JbotEdgeError(f"{where}: jet {int(np.argmin(counts))} has no particles; every jet needs at least one")
    # Padding must be a suffix: real particles first, so that truncating to P' keeps the leading ones.
    if n and np.any(batch.mask[:, 1:] & ~batch.mask[:, :-1]):
        raise JbotEdgeError(f"{where}: particles/mask has gaps; real particles must come before padding")
    if batch.labels is None:
        raise JbotEdgeError(f"{where}: labels are missing")
    if batch.labels.shape != (n,):
        raise JbotEdgeError(f"{where}: labels have shape {batch.labels.shape}, expected ({n},)")
    if n and (batch.labels.min() < 0 or batch.labels.max() >= n_labels):
        raise JbotEdgeError(f"{where}: labels must lie in [0, {n_labels}) (one per label name)")


class JetFileWriter:
    """Append batches to a new canonical file; the file appears at ``path`` only when closed without error.

    Every jet gets a held-out split (``/split``): the batch's own ``split`` when it carries one (jets copied from
    another file keep theirs), else ``split_spec.assign(position)``. ``split_spec=None`` writes no split
    (temporary shard files, whose positions are not final).

    Use as a context manager::

        with JetFileWriter(out, n_particles=30, particle_features=[...], jet_features=[...],
                           label_names=["q", "g"], source="pythia8", provenance={...}) as writer:
            writer.append(batch)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        n_particles: int,
        particle_features: Sequence[str],
        jet_features: Sequence[str],
        label_names: Sequence[str],
        source: str,
        provenance: Mapping[str, Any] | None = None,
        compression: str | None = "gzip",
        split_spec: SplitSpec | None = DEFAULT_SPLIT,
    ):
        self.path = Path(path)
        self.n_particles = int(n_particles)
        self.particle_features = list(particle_features)
        self.jet_features = list(jet_features)
        self.label_names = list(label_names)
        self.source = source
        self.provenance = dict(provenance or {})
        self.compression = compression
        self.split_spec = split_spec
        self.n_written = 0
        missing = [f for f in REQUIRED_PARTICLE_FEATURES if f not in self.particle_features]
        if missing:
            raise JbotEdgeError(f"{self.path}: particle features {missing} are required")
        if len(set(self.label_names)) != len(self.label_names) or not self.label_names:
            raise JbotEdgeError(f"{self.path}: label names must be unique and non-empty, got {self.label_names}")
        self._atomic = None
        self._h5: h5py.File | None = None

    def __enter__(self) -> JetFileWriter:
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._h5 = h5py.File(tmp, "w")
        h5 = self._h5
        h5.attrs["schema"] = SCHEMA_NAME
        h5.attrs["schema_version"] = SCHEMA_VERSION
        h5.attrs["n_particles"] = self.n_particles
        h5.attrs["label_names"] = json.dumps(self.label_names)
        h5.attrs["source"] = self.source
        h5.attrs["provenance"] = json.dumps(self.provenance, sort_keys=True, default=str)
        h5.attrs["created_by"] = f"jbot-edge {__version__}"
        chunk = (CHUNK_JETS, self.n_particles)
        kwargs = dict(compression=self.compression, shuffle=self.compression is not None)
        for name in self.particle_features:
            h5.create_dataset(f"particles/{name}", shape=(0, self.n_particles), maxshape=(None, self.n_particles),
                              dtype=np.float32, chunks=chunk, **kwargs)
        h5.create_dataset("particles/mask", shape=(0, self.n_particles), maxshape=(None, self.n_particles),
                          dtype=np.bool_, chunks=chunk, **kwargs)
        for name in self.jet_features:
            h5.create_dataset(f"jets/{name}", shape=(0,), maxshape=(None,), dtype=np.float64,
                              chunks=(CHUNK_JETS,), **kwargs)
        labels = h5.create_dataset("labels", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=(CHUNK_JETS,),
                                   **kwargs)
        labels.attrs["label_names"] = json.dumps(self.label_names)
        if self.split_spec is not None:
            h5.attrs.update(self.split_spec.attrs())
            h5.create_dataset("split", shape=(0,), maxshape=(None,), dtype=np.int8, chunks=(CHUNK_JETS,), **kwargs)
        return self

    def append(self, batch: JetBatch) -> None:
        assert self._h5 is not None, "use JetFileWriter as a context manager"
        if len(batch) == 0:
            return
        validate_batch(batch, self.n_particles, len(self.label_names), where=str(self.path))
        extra = set(batch.particles) - set(self.particle_features)
        missing = set(self.particle_features) - set(batch.particles)
        if missing or extra:
            raise JbotEdgeError(f"{self.path}: batch particle features differ from the file's "
                                f"(missing {sorted(missing)}, extra {sorted(extra)})")
        missing_jets = set(self.jet_features) - set(batch.jets)
        if missing_jets:
            raise JbotEdgeError(f"{self.path}: batch lacks jet features {sorted(missing_jets)}")
        start, stop = self.n_written, self.n_written + len(batch)
        h5 = self._h5
        for name in self.particle_features:
            ds = h5[f"particles/{name}"]
            ds.resize(stop, axis=0)
            ds[start:stop] = batch.particles[name].astype(np.float32)
        ds = h5["particles/mask"]
        ds.resize(stop, axis=0)
        ds[start:stop] = batch.mask
        for name in self.jet_features:
            ds = h5[f"jets/{name}"]
            ds.resize(stop, axis=0)
            ds[start:stop] = batch.jets[name]
        ds = h5["labels"]
        ds.resize(stop, axis=0)
        ds[start:stop] = batch.labels
        if self.split_spec is not None:
            ds = h5["split"]
            ds.resize(stop, axis=0)
            ds[start:stop] = self._split_of(batch, start, stop)
        self.n_written = stop

    def _split_of(self, batch: JetBatch, start: int, stop: int) -> np.ndarray:
        assert self.split_spec is not None
        if batch.split is None:
            return self.split_spec.assign(np.arange(start, stop))
        split = np.asarray(batch.split)
        if split.shape != (len(batch),) or (len(split) and (split.min() < 0 or split.max() > SPLIT_TEST)):
            raise JbotEdgeError(f"{self.path}: batch split must be [{len(batch)}] values in 0..2 (train, val, test)")
        # Copied jets keep their split; the attributes then describe only how new jets would be assigned.
        self._h5.attrs["split_method"] = "carried over from the source file(s) where present; else " + SPLIT_METHOD
        return split.astype(np.int8)

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._h5 is not None and self._atomic is not None
        if exc_type is None and self.n_written == 0:
            exc = JbotEdgeError(f"{self.path}: no jets were written; refusing to create an empty file")
            exc_type = type(exc)
        self._h5.attrs["n_jets"] = self.n_written
        self._h5.close()
        if exc_type is None:
            self._atomic.__exit__(None, None, None)
        else:
            self._atomic.__exit__(exc_type, exc, tb)
            if isinstance(exc, JbotEdgeError) and tb is None:
                raise exc
