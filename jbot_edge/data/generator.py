"""Pythia 8 + FastJet jet generator writing the canonical jet format (``jbot-edge generate``).

Physics
-------
pp collisions at √s = 13.6 TeV with ISR, FSR, multi-parton interactions (``mpi``) and hadronization on by default.
Particles with cτ > ``stable_ctau_mm`` (10 mm: K0S, Λ, … reach the detector) are left undecayed, as a detector
would see them. The visible final state (everything with status > 0 except neutrinos) is clustered with anti-kT of
radius ``jet_r`` (FastJet's multi-event awkward interface); jets inside ``jet_pt_min < pT < jet_pt_max`` and
``|η| < jet_abs_eta_max`` are candidates, and a candidate is kept only when its truth label is unambiguous:

* **q / g** (QCD stream, ``HardQCD:all``): the jet axis lies within ``parton_match_dr`` of exactly one of the two
  outgoing partons of the hard 2→2 process (event-record status ±23 whose mother is an incoming parton, i.e. the
  parton before showering). A gluon gives ``g``; a quark whose |PDG id| is in ``light_quark_ids`` (u, d, s) gives
  ``q``; jets matched to c or b quarks are dropped so that ``q`` stays a light-quark class, as in JetNet.
* **w / z / t / h** (one stream each): the decay quarks of a resonance are the status ±23 quarks whose mother is the
  resonance (for the top: the b and the two quarks of its W). With ``signal_match: contained`` (the ``jetnet``
  preset) the jet is kept when the resonance (its last copy, i.e. after ISR recoil) *and* all its decay quarks lie
  within ``signal_match_dr`` (0.8, as for JetClass and the Top Tagging dataset) of the jet axis — the whole decay is
  inside the jet and its mass peaks at the resonance mass. At trigger radius R = 0.4 full containment needs pT ≳ 2m/R
  (400 GeV for a W), so the ``l1`` preset uses ``signal_match: daughter``: the jet is within ``signal_match_dr`` of
  at least one decay quark, i.e. the label records that the jet *comes from* that resonance's decay. Either way a jet
  matched to two resonances (e.g. both tops) is dropped.

Event-level object sets (preset ``l1-event``) take another path through the same machinery: each process of
:data:`jbot_edge.data.processes.EVENT_STREAMS` is its own stream, and every event becomes one entry of the file whose
"particles" are MET, isolated e/μ and anti-kT jets in the ADC2021 convention (:mod:`jbot_edge.data.events`).

Constituents are pT-ordered and the ``n_particles`` leading ones stored (``jet_n_constituents`` counts all of them),
with η = pseudorapidity and Δφ wrapped to (−π, π].

Parallelism and reproducibility
-------------------------------
Each stream (``qcd`` serves both ``q`` and ``g``) is split into ``shards`` (default: ``workers``) independent Pythia
runs; shard ``k`` of stream ``s`` uses the seed :func:`derive_seed` ``(seed, s, k)`` and generates its share of every
requested class. Shards run in ``workers`` spawned processes (Pythia is created inside the worker) and each writes
a temporary shard file; the shards are then merged in a fixed order (by process in the order requested, then shard)
and — with ``shuffle`` on — interleaved with a seeded permutation in rounds of a few thousand jets, so any contiguous
block of the file is a mixture of all classes. The output therefore depends only on the settings, ``seed`` and
``shards``: the same command gives a byte-identical file, and ``workers`` changes only the speed as long as
``shards`` is fixed (with the default ``shards = workers``, a different worker count means different seeds and so
different jets).

Outputs next to ``FILE.h5``: ``FILE.summary.json`` (counts, efficiencies = accepted jets / generated events, timing)
and ``FILE.config.yaml`` (the resolved settings).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import math
import multiprocessing
import os
import queue as queue_module
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic

from jbot_edge.config import CONFIG_DIR
from jbot_edge.data.format import SCHEMA_VERSION, JetBatch, JetFileWriter, SplitSettings, SplitSpec
from jbot_edge.data.processes import (EVENT_PRESETS, EVENT_PROCESS_NAMES, PROCESS_NAMES, Stream, catalogue,
                                      process_names, stream_of, streams_for)
from jbot_edge.errors import JbotEdgeError
from jbot_edge.logs import get_logger

log = get_logger(__name__)

JET_PRESETS: tuple[str, ...] = ("jetnet", "l1")
#: ``l1-event`` writes whole events as ADC2021-like object sets (:mod:`jbot_edge.data.events`).
PRESETS: tuple[str, ...] = JET_PRESETS + EVENT_PRESETS
PARTICLE_FEATURES = ("part_deta", "part_dphi", "part_pt_rel", "part_pt", "part_eta", "part_phi", "part_energy",
                     "part_charge", "part_pid")
JET_FEATURES = ("jet_pt", "jet_eta", "jet_phi", "jet_mass", "jet_n_constituents")
_NEUTRINOS = (12, 14, 16)
_MAX_PYTHIA_SEED = 900_000_000  # Random:seed accepts 0 … 900 000 000
_MERGE_ROUND_JETS = 8192
#: Give up on a class that has not produced a single jet after this many events (cuts that cannot be met).
_GIVE_UP_EVENTS = 3000


def preset_file(preset: str) -> Path:
    """YAML defaults of a preset (``configs/data/<preset>.yaml``)."""
    if preset not in PRESETS:
        raise JbotEdgeError(f"--preset: unknown preset {preset!r} {_VALID_PRESETS}")
    return CONFIG_DIR / "data" / f"{preset}.yaml"


_VALID_PRESETS = f"(valid: {', '.join(JET_PRESETS)}) or the event-level {', '.join(EVENT_PRESETS)}"
_VALID_PROCESSES = (f"(valid: {', '.join(PROCESS_NAMES)}) or, with --preset {EVENT_PRESETS[0]}: "
                    f"{', '.join(EVENT_PROCESS_NAMES)}")


def parse_processes(value: str | list[str], option: str = "--processes") -> list[str]:
    """Split ``"q,g,t"`` and check every name; unknown or repeated names raise one line naming ``option``."""
    names = [p.strip() for p in value.split(",")] if isinstance(value, str) else [str(p).strip() for p in value]
    names = [n for n in names if n]
    if not names:
        raise JbotEdgeError(f"{option}: no process given {_VALID_PROCESSES}")
    unknown = [n for n in names if n not in PROCESS_NAMES and n not in EVENT_PROCESS_NAMES]
    if unknown:
        raise JbotEdgeError(f"{option}: unknown process {unknown[0]!r} {_VALID_PROCESSES}")
    if len(set(names)) != len(names):
        raise JbotEdgeError(f"{option}: process names must not repeat, got {','.join(names)}")
    return names


class GeneratorConfig(SplitSettings):
    """Settings of ``jbot-edge generate``; defaults come from ``configs/data/<preset>.yaml``. Energies in GeV."""

    preset: str = "jetnet"
    processes: list[str] = pydantic.Field(default_factory=lambda: ["q", "g", "w", "z", "t"])
    n_jets: int = pydantic.Field(1000, ge=1, description="jets per process")
    seed: int = pydantic.Field(0, ge=0)
    workers: int = pydantic.Field(1, ge=1, description="worker processes (speed only, see shards)")
    shards: int | None = pydantic.Field(None, ge=1, description="independent Pythia runs per stream; None = workers")
    sqrt_s: float = pydantic.Field(13600.0, gt=0)
    mpi: bool = True
    hadronization: bool = True
    stable_ctau_mm: float = pydantic.Field(10.0, gt=0, description="particles with a longer cτ are not decayed")
    pthat_min: float = pydantic.Field(450.0, ge=0)
    pthat_max: float | None = pydantic.Field(None, gt=0)
    jet_r: float = pydantic.Field(0.8, gt=0, le=2.0)
    jet_pt_min: float = pydantic.Field(500.0, ge=0)
    jet_pt_max: float = pydantic.Field(1000.0, gt=0)
    jet_abs_eta_max: float = pydantic.Field(2.0, gt=0)
    n_particles: int = pydantic.Field(30, ge=1)
    parton_match_dr: float = pydantic.Field(0.4, gt=0)
    signal_match: Literal["contained", "daughter"] = "contained"
    signal_match_dr: float = pydantic.Field(0.8, gt=0)
    light_quark_ids: list[int] = pydantic.Field(default_factory=lambda: [1, 2, 3])
    shuffle: bool = True
    max_events_per_batch: int = pydantic.Field(200, ge=1, description="events per pythia.nextBatch call (memory)")
    pythia_settings: list[str] = pydantic.Field(default_factory=list, description="extra Pythia lines, applied last")

    @pydantic.field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        if value not in PRESETS:
            raise ValueError(f"unknown preset {value!r} {_VALID_PRESETS}")
        return value

    @pydantic.field_validator("processes")
    @classmethod
    def _processes_fit_preset(cls, value: list[str], info: pydantic.ValidationInfo) -> list[str]:
        # Jet classes and event-level processes share the --processes option (w, z exist in both, meaning
        # hadronic jets vs leptonic events); the preset (validated first) decides which catalogue applies.
        preset = info.data.get("preset")
        if preset is None:
            return value
        valid = process_names(preset)
        wrong = [p for p in value if p not in valid]
        if wrong:
            raise ValueError(f"{wrong[0]!r} is not a process of preset {preset} (valid: {', '.join(valid)})")
        return value

    @pydantic.field_validator("processes", mode="before")
    @classmethod
    def _known_processes(cls, value: Any) -> list[str]:
        try:
            return parse_processes(value if isinstance(value, (str, list)) else str(value), option="processes")
        except JbotEdgeError as exc:
            raise ValueError(str(exc).removeprefix("processes: ")) from exc

    @pydantic.field_validator("jet_pt_max")
    @classmethod
    def _window_not_empty(cls, value: float, info: pydantic.ValidationInfo) -> float:
        low = info.data.get("jet_pt_min")
        if low is not None and value <= low:
            raise ValueError(f"must exceed jet_pt_min ({low})")
        return value

    @pydantic.field_validator("pthat_max")
    @classmethod
    def _pthat_range_not_empty(cls, value: float | None, info: pydantic.ValidationInfo) -> float | None:
        low = info.data.get("pthat_min")
        if value is not None and low is not None and value <= low:
            raise ValueError(f"must exceed pthat_min ({low})")
        return value

    @property
    def n_shards(self) -> int:
        return self.shards if self.shards is not None else self.workers


# -- seeds and work split ---------------------------------------------------------------------------------------
def derive_seed(master_seed: int, stream: str, shard: int) -> int:
    """Pythia seed of one shard: a hash of (master seed, stream, shard), so shards never share a random sequence."""
    digest = hashlib.sha256(f"jbot-edge/{master_seed}/{stream}/{shard}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % _MAX_PYTHIA_SEED + 1


def split_count(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal integers, the larger ones first."""
    base, extra = divmod(total, parts)
    return [base + (1 if k < extra else 0) for k in range(parts)]


def pythia_settings(config: GeneratorConfig, stream: Stream, seed: int) -> list[str]:
    """The full list of Pythia setting lines of one shard (recorded in the file's provenance)."""
    lines = [
        f"Beams:eCM = {config.sqrt_s}",
        *stream.pythia_settings,
        f"PhaseSpace:pTHatMin = {config.pthat_min}",
        f"PartonLevel:MPI = {'on' if config.mpi else 'off'}",
        f"HadronLevel:all = {'on' if config.hadronization else 'off'}",
        "ParticleDecays:limitTau0 = on",
        f"ParticleDecays:tau0Max = {config.stable_ctau_mm}",
        "Random:setSeed = on",
        f"Random:seed = {seed}",
        "Print:quiet = on",
    ]
    if config.pthat_max is not None:
        lines.append(f"PhaseSpace:pTHatMax = {config.pthat_max}")
    return lines + list(config.pythia_settings)


def make_pythia(lines: list[str]) -> Any:
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    for line in lines:
        if not pythia.readString(line):
            raise JbotEdgeError(f"pythia_settings: Pythia rejected the setting {line!r}")
    if not pythia.init():
        raise JbotEdgeError("Pythia failed to initialise with these settings (see pythia_settings in the config)")
    return pythia


# -- per-batch jet extraction -----------------------------------------------------------------------------------
def _delta_r(eta1: np.ndarray, phi1: np.ndarray, eta2: np.ndarray, phi2: np.ndarray) -> np.ndarray:
    dphi = np.mod(phi1 - phi2 + np.pi, 2 * np.pi) - np.pi
    return np.hypot(eta1 - eta2, dphi)


def _eta_phi(px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(np.where(pt > 0, pz / np.where(pt > 0, pt, 1.0), np.sign(pz) * 1e4))
    return pt, eta, np.arctan2(py, px)


@dataclass
class _TruthCandidates:
    """Objects a jet may be matched to, one row each, sorted by event."""

    event: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    label: np.ndarray  # final label index, -1 = matched jets are dropped (e.g. c/b quarks in the QCD stream)
    quark_eta: np.ndarray  # [n, 3], NaN-padded decay quarks (empty for QCD partons)
    quark_phi: np.ndarray


class JetExtractor:
    """Turns a batch of Pythia events (``pythia.nextBatch``) into labelled jets of the canonical format."""

    def __init__(self, config: GeneratorConfig, stream: Stream, label_index: dict[str, int], particle_data: Any):
        import fastjet
        import fastjet._swig

        fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)  # keep stdout machine-readable
        self.config = config
        self.stream = stream
        self.label_index = label_index
        self.particle_data = particle_data
        self.jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, config.jet_r)
        self._charges: dict[int, float] = {}

    def charges(self, pid: np.ndarray) -> np.ndarray:
        unique, inverse = np.unique(pid, return_inverse=True)
        for code in unique.tolist():
            if code not in self._charges:
                self._charges[code] = float(self.particle_data.charge(int(code)))
        return np.array([self._charges[c] for c in unique.tolist()], dtype=np.float32)[inverse]

    def __call__(self, events: Any) -> tuple[JetBatch, int]:
        """Return the accepted jets (event order) and the number of events in the batch."""
        import awkward as ak
        import fastjet

        prt = events["prt"]
        n_events = len(prt)
        per_event = ak.to_numpy(ak.num(prt.id, axis=1)).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(per_event)])
        event_of = np.repeat(np.arange(n_events), per_event)
        pid = ak.to_numpy(ak.flatten(prt.id)).astype(np.int64)
        status = ak.to_numpy(ak.flatten(prt.status)).astype(np.int64)
        mother = ak.to_numpy(ak.flatten(prt.mother1)).astype(np.int64) + offsets[:-1][event_of]
        px, py, pz, energy = (ak.to_numpy(ak.flatten(prt.p[c])) for c in ("px", "py", "pz", "e"))

        visible = np.flatnonzero((status > 0) & ~np.isin(np.abs(pid), _NEUTRINOS))
        vis_counts = np.bincount(event_of[visible], minlength=n_events)
        vis_offsets = np.concatenate([[0], np.cumsum(vis_counts)])
        particles = ak.unflatten(
            ak.zip({"px": px[visible], "py": py[visible], "pz": pz[visible], "E": energy[visible]}), vis_counts)
        cluster = fastjet.ClusterSequence(particles, self.jet_def)
        jets = cluster.inclusive_jets(min_pt=self.config.jet_pt_min)
        constituents = ak.flatten(cluster.constituent_index(min_pt=self.config.jet_pt_min), axis=1)
        jet_event = np.repeat(np.arange(n_events), ak.to_numpy(ak.num(jets, axis=1)))
        jpx, jpy, jpz, je = (ak.to_numpy(ak.flatten(jets[c])) for c in ("px", "py", "pz", "E"))
        jpt, jeta, jphi = _eta_phi(jpx, jpy, jpz)
        in_window = np.flatnonzero((jpt < self.config.jet_pt_max) & (np.abs(jeta) < self.config.jet_abs_eta_max))

        truth = self._truth(pid, status, mother, px, py, pz, event_of)
        accepted, labels = self._match(jet_event[in_window], jeta[in_window], jphi[in_window], truth)
        jets_kept = in_window[accepted]

        # Constituents of the kept jets → flat particle indices, pT-ordered inside each jet.
        idx = constituents[jets_kept]
        n_const = ak.to_numpy(ak.num(idx, axis=1)).astype(np.int64)
        jet_of = np.repeat(np.arange(len(jets_kept)), n_const)
        local = ak.to_numpy(ak.flatten(idx)).astype(np.int64)
        flat = visible[vis_offsets[jet_event[jets_kept]][jet_of] + local]
        cpt, ceta, cphi = _eta_phi(px[flat], py[flat], pz[flat])
        order = np.lexsort((-cpt, jet_of))
        flat, cpt, ceta, cphi = flat[order], cpt[order], ceta[order], cphi[order]
        slot = np.arange(len(flat)) - np.repeat(np.cumsum(n_const) - n_const, n_const)
        keep = slot < self.config.n_particles
        rows, cols = jet_of[keep], slot[keep]

        n_jets, n_slots = len(jets_kept), self.config.n_particles
        k_pt, k_eta, k_phi = jpt[jets_kept], jeta[jets_kept], jphi[jets_kept]
        values = {
            "part_pt": cpt[keep],
            "part_eta": ceta[keep],
            "part_phi": cphi[keep],
            "part_energy": energy[flat[keep]],
            "part_pid": pid[flat[keep]].astype(np.float64),
            "part_charge": self.charges(pid[flat[keep]]),
            "part_deta": ceta[keep] - k_eta[rows],
            "part_dphi": np.mod(cphi[keep] - k_phi[rows] + np.pi, 2 * np.pi) - np.pi,
            "part_pt_rel": cpt[keep] / k_pt[rows],
        }
        particles_out = {}
        for name in PARTICLE_FEATURES:
            grid = np.zeros((n_jets, n_slots), dtype=np.float32)
            grid[rows, cols] = values[name]
            particles_out[name] = grid
        mask = np.zeros((n_jets, n_slots), dtype=bool)
        mask[rows, cols] = True
        mass2 = je[jets_kept] ** 2 - jpx[jets_kept] ** 2 - jpy[jets_kept] ** 2 - jpz[jets_kept] ** 2
        jets_out = {
            "jet_pt": k_pt, "jet_eta": k_eta, "jet_phi": k_phi, "jet_mass": np.sqrt(np.maximum(mass2, 0.0)),
            "jet_n_constituents": n_const.astype(np.float64),
        }
        batch = JetBatch(particles=particles_out, mask=mask, jets=jets_out, labels=labels.astype(np.int32))
        return batch, n_events

    # -- truth --------------------------------------------------------------------------------------------------
    def _truth(self, pid, status, mother, px, py, pz, event_of) -> _TruthCandidates:
        if self.stream.resonance_id is None:
            return self._hard_partons(pid, status, mother, px, py, pz, event_of)
        return self._resonances(pid, status, mother, px, py, pz, event_of)

    def _hard_partons(self, pid, status, mother, px, py, pz, event_of) -> _TruthCandidates:
        # Outgoing partons of the hardest 2→2 process, before the shower (status ±23, mother incoming ±21).
        hard = np.flatnonzero((np.abs(status) == 23) & (np.abs(status[mother]) == 21))
        flavour = np.abs(pid[hard])
        label = np.full(len(hard), -1, dtype=np.int64)
        if "g" in self.label_index:
            label[flavour == 21] = self.label_index["g"]
        if "q" in self.label_index:
            label[np.isin(flavour, self.config.light_quark_ids)] = self.label_index["q"]
        _, eta, phi = _eta_phi(px[hard], py[hard], pz[hard])
        empty = np.full((len(hard), 0), np.nan)
        return _TruthCandidates(event_of[hard], eta, phi, label, empty, empty.copy())

    def _resonances(self, pid, status, mother, px, py, pz, event_of) -> _TruthCandidates:
        apid = np.abs(pid)
        decay_quark = np.flatnonzero((np.abs(status) == 23) & (apid >= 1) & (apid <= 5)
                                     & np.isin(apid[mother], (6, 23, 24, 25)))
        owner = mother[decay_quark]
        # A top's W: walk the W back through its recoil copies to the top that emitted it.
        from_w = apid[owner] == 24
        if from_w.any():
            first = owner[from_w].copy()
            for _ in range(64):
                up = mother[first]
                same = pid[up] == pid[first]
                if not same.any():
                    break
                first = np.where(same, up, first)
            grandparent = mother[first]
            owner[from_w] = np.where(apid[grandparent] == 6, grandparent, owner[from_w])
        wanted = apid[owner] == self.stream.resonance_id
        decay_quark, owner = decay_quark[wanted], owner[wanted]
        resonance, slot_of = np.unique(owner, return_inverse=True)  # sorted flat index ⇒ sorted by event
        n = len(resonance)
        _, q_eta, q_phi = _eta_phi(px[decay_quark], py[decay_quark], pz[decay_quark])
        width = 3 if n == 0 else max(3, int(np.bincount(slot_of).max()))
        quark_eta = np.full((n, width), np.nan)
        quark_phi = np.full((n, width), np.nan)
        order = np.argsort(slot_of, kind="stable")
        counts = np.bincount(slot_of, minlength=n)
        position = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
        quark_eta[slot_of[order], position] = q_eta[order]
        quark_phi[slot_of[order], position] = q_phi[order]
        _, eta, phi = _eta_phi(px[resonance], py[resonance], pz[resonance])
        label = np.full(n, self.label_index[self.stream.labels[0]], dtype=np.int64)
        return _TruthCandidates(event_of[resonance], eta, phi, label, quark_eta, quark_phi)

    def _match(self, jet_event, jet_eta, jet_phi, truth: _TruthCandidates) -> tuple[np.ndarray, np.ndarray]:
        """Indices (into the given jets) of jets matched to exactly one truth object, and their labels."""
        lo = np.searchsorted(truth.event, jet_event, side="left")
        hi = np.searchsorted(truth.event, jet_event, side="right")
        n_pairs = hi - lo
        pair_jet = np.repeat(np.arange(len(jet_event)), n_pairs)
        pair_obj = np.repeat(lo, n_pairs) + np.arange(n_pairs.sum()) - np.repeat(np.cumsum(n_pairs) - n_pairs, n_pairs)
        dr_axis = _delta_r(jet_eta[pair_jet], jet_phi[pair_jet], truth.eta[pair_obj], truth.phi[pair_obj])
        cfg = self.config
        if self.stream.resonance_id is None:
            ok = dr_axis < cfg.parton_match_dr
        else:
            with np.errstate(invalid="ignore"):
                dr_quarks = _delta_r(jet_eta[pair_jet, None], jet_phi[pair_jet, None],
                                     truth.quark_eta[pair_obj], truth.quark_phi[pair_obj])
                inside = dr_quarks < cfg.signal_match_dr  # NaN padding compares False
            padded = np.isnan(truth.quark_eta[pair_obj])
            if cfg.signal_match == "contained":
                ok = (dr_axis < cfg.signal_match_dr) & np.all(inside | padded, axis=1) & (~padded).any(axis=1)
            else:
                ok = inside.any(axis=1)
        n_matched = np.bincount(pair_jet[ok], minlength=len(jet_event))
        label = np.full(len(jet_event), -1, dtype=np.int64)
        label[pair_jet[ok]] = truth.label[pair_obj[ok]]
        accepted = np.flatnonzero((n_matched == 1) & (label >= 0))
        return accepted, label[accepted]


# -- one shard ----------------------------------------------------------------------------------------------------
@dataclass
class ShardTask:
    config: dict[str, Any]
    stream: str
    shard: int
    seed: int
    quotas: dict[str, int]  # label → jets to produce
    label_names: list[str]
    directory: str

    def path(self, label: str) -> Path:
        return Path(self.directory) / f"{self.stream}-{self.shard:04d}-{label}.h5"


@dataclass
class ShardResult:
    stream: str
    shard: int
    seed: int
    events: int = 0
    accepted: dict[str, int] = field(default_factory=dict)  # before truncation to the quota
    kept: dict[str, int] = field(default_factory=dict)
    time_s: float = 0.0
    pythia_time_s: float = 0.0  # inside pythia.nextBatch
    loop_time_s: float = 0.0  # the event loop: Pythia + clustering + labelling + writing (no imports, no init)
    init_time_s: float = 0.0
    pythia_version: str = ""


ProgressCallback = Callable[[int], None]


def run_shard(task: ShardTask, progress: ProgressCallback | None = None) -> ShardResult:
    """Generate one shard: run Pythia until every class has its quota, writing jets to per-class shard files."""
    start = time.perf_counter()
    config = GeneratorConfig.model_validate(task.config)
    stream = catalogue(config.preset)[task.stream]
    pythia = make_pythia(pythia_settings(config, stream, task.seed))
    result = ShardResult(task.stream, task.shard, task.seed, init_time_s=time.perf_counter() - start,
                         pythia_version=f"{pythia.parm('Pythia:versionNumber'):.3f}")
    label_index = {name: i for i, name in enumerate(task.label_names)}
    extractor = _make_extractor(config, stream, label_index, pythia.particleData)
    particle_features, jet_features = _features(config)
    remaining = dict(task.quotas)
    result.accepted = {label: 0 for label in remaining}
    result.kept = {label: 0 for label in remaining}
    with contextlib.ExitStack() as stack:
        writers = {
            label: stack.enter_context(JetFileWriter(
                task.path(label), config.n_particles, particle_features, jet_features, task.label_names,
                source="pythia8-shard", compression=None, split_spec=None))  # split: by position in the merged file
            for label, quota in remaining.items() if quota > 0
        }
        n_batch = min(50, config.max_events_per_batch)
        loop_start = time.perf_counter()
        while any(n > 0 for n in remaining.values()):
            tick = time.perf_counter()
            events = pythia.nextBatch(n_batch)
            result.pythia_time_s += time.perf_counter() - tick
            batch, n_events = extractor(events)
            result.events += n_events
            new = 0
            for label, writer in writers.items():
                mine = batch.select(batch.labels == label_index[label])
                result.accepted[label] += len(mine)
                take = min(len(mine), remaining[label])
                if take:
                    writer.append(mine.select(slice(0, take)))
                    remaining[label] -= take
                    result.kept[label] += take
                    new += take
            if progress is not None and new:
                progress(new)
            starved = [lab for lab, n in remaining.items() if n > 0 and result.accepted[lab] == 0]
            if starved and result.events >= _GIVE_UP_EVENTS:
                raise JbotEdgeError(
                    f"process {starved[0]!r}: no jet passed the cuts in {result.events} events; check "
                    f"jet_pt_min/jet_pt_max/jet_abs_eta_max against pthat_min={config.pthat_min}")
            n_batch = _next_batch_size(remaining, result, config.max_events_per_batch)
        result.loop_time_s = time.perf_counter() - loop_start
    result.time_s = time.perf_counter() - start
    return result


def _features(config: GeneratorConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Particle and jet feature names written by ``config.preset``."""
    if config.preset in EVENT_PRESETS:
        from jbot_edge.data import events

        return events.PARTICLE_FEATURES, events.JET_FEATURES
    return PARTICLE_FEATURES, JET_FEATURES


def _make_extractor(config: GeneratorConfig, stream: Stream, label_index: dict[str, int],
                    particle_data: Any) -> Callable[[Any], tuple[JetBatch, int]]:
    if config.preset in EVENT_PRESETS:
        from jbot_edge.data.events import EventExtractor

        return EventExtractor(config, label_index[stream.labels[0]])
    return JetExtractor(config, stream, label_index, particle_data)


def _next_batch_size(remaining: dict[str, int], result: ShardResult, cap: int) -> int:
    """Enough events to (just) fill the largest outstanding quota at the efficiency seen so far."""
    needed = 0.0
    for label, n in remaining.items():
        if n > 0:
            efficiency = (result.accepted[label] + 0.5) / (result.events + 1.0)
            needed = max(needed, 1.1 * n / efficiency)
    return int(min(cap, max(10, math.ceil(needed))))


# -- worker pool --------------------------------------------------------------------------------------------------
_worker_queue: Any = None


def _init_worker(progress_queue: Any) -> None:
    global _worker_queue
    _worker_queue = progress_queue


def _run_shard_in_worker(task: ShardTask) -> ShardResult:
    return run_shard(task, progress=_worker_queue.put)


def _run_tasks(tasks: list[ShardTask], workers: int, progress: ProgressCallback) -> list[ShardResult]:
    if workers <= 1 or len(tasks) <= 1:
        return [run_shard(task, progress) for task in tasks]
    # spawn: a fresh interpreter per worker (Pythia objects are not fork-safe or picklable; the parent may hold
    # threads from rich).
    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()
    with context.Pool(min(workers, len(tasks)), initializer=_init_worker, initargs=(progress_queue,)) as pool:
        pending = [pool.apply_async(_run_shard_in_worker, (task,)) for task in tasks]
        while not all(p.ready() for p in pending):
            _drain(progress_queue, progress, timeout=0.2)
            for failed in (p for p in pending if p.ready() and not p.successful()):
                failed.get()  # re-raise now; leaving the with-block terminates the other workers
        _drain(progress_queue, progress, timeout=0.0)
        return [p.get() for p in pending]  # re-raises a worker's error (JbotEdgeError included)


def _drain(progress_queue: Any, progress: ProgressCallback, timeout: float) -> None:
    try:
        progress(progress_queue.get(timeout=timeout) if timeout else progress_queue.get_nowait())
        while True:
            progress(progress_queue.get_nowait())
    except queue_module.Empty:
        pass


# -- merge --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Source:
    """Jets ``[start, start + size)`` of a file: one (shard, label) piece of the output."""

    path: Path
    start: int = 0
    size: int | None = None  # None: to the end of the file


def _merge(sources: list[_Source], out: Path, config: GeneratorConfig, provenance: dict[str, Any],
           shuffle: bool | None = None, split_spec: SplitSpec | None | str = "config") -> int:
    """Concatenate the sources in the given order into ``out`` (atomically); with ``shuffle`` (default: the
    config's), interleave them. ``split_spec``: the config's (default), or None for a ``--shard`` piece, whose
    held-out split is assigned only by position in the merged file (so the union equals the unsharded run)."""
    from jbot_edge.data.reader import JetFile

    shuffle = config.shuffle if shuffle is None else shuffle
    split_spec = config.split_spec() if split_spec == "config" else split_spec
    with contextlib.ExitStack() as stack:
        opened = {path: stack.enter_context(JetFile(path)) for path in dict.fromkeys(s.path for s in sources)}
        files = [opened[s.path] for s in sources]
        starts = [s.start for s in sources]
        sizes = [len(f) - s.start if s.size is None else s.size for f, s in zip(files, sources)]
        total = sum(sizes)
        writer = stack.enter_context(JetFileWriter(
            out, config.n_particles, *_features(config), config.processes, source="pythia8",
            provenance=provenance, split_spec=split_spec))
        if not shuffle:
            for f, start, size in zip(files, starts, sizes):
                for lo in range(0, size, _MERGE_ROUND_JETS):
                    writer.append(f.read(slice(start + lo, start + min(lo + _MERGE_ROUND_JETS, size))))
            return total
        # Round r takes the r-th proportional slice of every source, so all sources run out together and each
        # round is a mixture in the file's class proportions; a seeded permutation then mixes the round.
        rng = np.random.default_rng([config.seed, 0x6A62])
        n_rounds = max(1, math.ceil(total / _MERGE_ROUND_JETS))
        for r in range(n_rounds):
            parts = []
            for f, start, size in zip(files, starts, sizes):
                lo, hi = size * r // n_rounds, size * (r + 1) // n_rounds
                if hi > lo:
                    parts.append(f.read(slice(start + lo, start + hi)))
            if parts:
                block = JetBatch.concatenate(parts)
                writer.append(block.select(rng.permutation(len(block))))
    return total


# -- the whole run ------------------------------------------------------------------------------------------------
def output_paths(out: str | os.PathLike[str]) -> dict[str, Path]:
    """The files ``generate`` writes for output ``out``: the jets, ``<stem>.summary.json``, ``<stem>.config.yaml``."""
    out = Path(out)
    return {"jets": out, "summary": out.with_name(out.stem + ".summary.json"),
            "config": out.with_name(out.stem + ".config.yaml")}


def _shard_workdir(out: Path) -> Path:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        from jbot_edge.atomic import temp_prefix  # named so the next run recognises it as litter if this one dies

        return Path(tempfile.mkdtemp(prefix=temp_prefix(out, "shards"), suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise JbotEdgeError(f"--out: cannot write to output directory {out.parent}: {exc.strerror}") from exc


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def plan_tasks(config: GeneratorConfig, workdir: str | os.PathLike[str]) -> list[ShardTask]:
    """Every Pythia run of the full output, in the fixed order the output is merged in (by stream, then shard).
    It depends on the settings, ``seed`` and ``shards`` only — never on ``workers`` or ``--shard K/N``."""
    label_names = list(config.processes)
    tasks = []
    for stream in streams_for(label_names, catalogue(config.preset)):
        split = split_count(config.n_jets, config.n_shards)
        for k in range(config.n_shards):
            quotas = {label: split[k] for label in stream.labels if label in label_names}
            if any(quotas.values()):
                tasks.append(ShardTask(config.model_dump(mode="json"), stream.name, k,
                                       derive_seed(config.seed, stream.name, k), quotas, label_names, str(workdir)))
    return tasks


def source_order(tasks: list[ShardTask], label_names: list[str]) -> list[tuple[ShardTask, str]]:
    """(task, label) pieces in merge order: by label in the requested order, then by task."""
    return [(task, label) for label in label_names for task in tasks if task.quotas.get(label, 0) > 0]


def run_provenance(config: GeneratorConfig, tasks: list[ShardTask], pythia_version: str) -> dict[str, Any]:
    """Provenance of the whole output (identical for an unsharded run and a merge of its ``--shard`` pieces)."""
    streams = catalogue(config.preset)
    shard_seeds: dict[str, list[int]] = {}
    for task in tasks:
        shard_seeds.setdefault(task.stream, []).append(task.seed)
    # Everything that determines the jets, and nothing that does not (``workers`` only sets the speed), so
    # the file is byte-identical whenever the jets are.
    settings = config.model_dump(mode="json", exclude={"workers"})
    settings["shards"] = config.n_shards
    provenance = {
        "generator": "pythia8+fastjet",
        "preset": config.preset,
        "settings": settings,
        "seed": config.seed,
        "shard_seeds": shard_seeds,
        # Shard 0's lines; the other shards differ only in Random:seed (see shard_seeds).
        "pythia_settings": {s: pythia_settings(config, streams[s], seeds[0]) for s, seeds in shard_seeds.items()},
        "pythia_version": pythia_version,
        "pythia8mc_version": _package_version("pythia8mc"),
        "fastjet_version": _package_version("fastjet"),
        "schema_version": SCHEMA_VERSION,
        "jet_definition": f"anti-kT R={config.jet_r}",
    }
    if config.preset in EVENT_PRESETS:
        from jbot_edge.data.events import PROVENANCE

        provenance.update(PROVENANCE)
    return provenance


def parse_shard(value: str) -> tuple[int, int]:
    """``"K/N"`` → (K, N) with 0 <= K < N; anything else is a one-line error naming --shard."""
    try:
        k, n = (int(part) for part in value.split("/"))
    except ValueError:
        raise JbotEdgeError(f"--shard {value!r}: expected K/N, e.g. 0/4 (piece K of N, counted from 0)") from None
    if n < 1 or not 0 <= k < n:
        raise JbotEdgeError(f"--shard {value!r}: expected 0 <= K < N")
    return k, n


def generate(config: GeneratorConfig, out: str | os.PathLike[str], show_progress: bool = True,
             shard: tuple[int, int] | None = None) -> dict[str, Any]:
    """Generate ``config.n_jets`` jets of every process into ``out``; return (and write) the run summary.

    With ``shard = (K, N)`` only the Pythia runs ``K, K + N, K + 2N, ...`` of :func:`plan_tasks` are made and
    ``out`` is a *piece*: their jets unshuffled, with the piece layout in the provenance. ``jbot-edge merge`` joins
    all N pieces into exactly the file the unsharded run writes (same jets, same order, same provenance)."""
    from jbot_edge.atomic import write_json
    from jbot_edge.config import save_config
    from jbot_edge.logs import progress_bar

    paths = output_paths(out)
    out = paths["jets"]
    label_names = list(config.processes)
    workdir = _shard_workdir(out)
    tasks = plan_tasks(config, workdir)
    mine = tasks if shard is None else tasks[shard[0]::shard[1]]
    if not mine:
        shutil.rmtree(workdir, ignore_errors=True)
        raise JbotEdgeError(f"--shard {shard[0]}/{shard[1]}: this run has only {len(tasks)} Pythia runs "
                            f"(processes × shards); raise --shards to at least N / streams")
    total_jets = sum(sum(task.quotas.values()) for task in mine)
    log.info("generating %d jets (%s × %d%s) with preset %s, %d shard(s) per stream on %d worker(s), MPI %s",
             total_jets, ",".join(label_names), config.n_jets,
             "" if shard is None else f", piece {shard[0]}/{shard[1]}: {len(mine)} of {len(tasks)} runs",
             config.preset, config.n_shards, config.workers, "on" if config.mpi else "off")
    start = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            callback: ProgressCallback = lambda n: None
            if show_progress:
                from rich.progress import TextColumn

                bar = stack.enter_context(progress_bar(TextColumn("{task.fields[rate]} jets/s")))
                task_id = bar.add_task("generate", total=total_jets, rate="-")

                def callback(n: int) -> None:
                    bar.advance(task_id, n)
                    done = bar.tasks[task_id].completed
                    bar.update(task_id, rate=f"{done / max(time.perf_counter() - start, 1e-9):.0f}")

            results = _run_tasks(mine, config.workers, callback)
        generation_s = time.perf_counter() - start
        provenance = run_provenance(config, tasks, results[0].pythia_version if results else "unknown")
        pieces = source_order(mine, label_names)
        sources = [_Source(task.path(label)) for task, label in pieces]
        if shard is not None:
            provenance["piece"] = {
                "index": shard[0], "of": shard[1],
                "sources": [{"stream": task.stream, "shard": task.shard, "label": label,
                             "n": result_of(results, task).kept[label]} for task, label in pieces],
                "results": [asdict(r) for r in results],
            }
        n_written = _merge(sources, out, config, provenance, shuffle=False if shard is not None else None,
                           split_spec=None if shard is not None else "config")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    wall_s = time.perf_counter() - start
    summary = _summary(config, out, results, label_names, n_written, wall_s, generation_s)
    if shard is not None:
        summary["piece"] = {"index": shard[0], "of": shard[1], "runs": len(mine), "of_runs": len(tasks)}
    write_json(paths["summary"], summary)
    save_config(config, paths["config"])
    for label in label_names:
        entry = summary["processes"][label]
        log.info("%s: %d jets from %d events (efficiency %.3f jets/event)", label, entry["jets"], entry["events"],
                 entry["efficiency"])
    log.info("wrote %s (%d jets, %.1f s, %.0f jets/s)", out, n_written, wall_s, n_written / max(wall_s, 1e-9))
    return summary


def result_of(results: list[ShardResult], task: ShardTask) -> ShardResult:
    return next(r for r in results if r.stream == task.stream and r.shard == task.shard)


def merge_pieces(inputs: list[Path], out: Path) -> dict[str, Any]:
    """Join the N pieces of one ``generate --shard K/N`` run (any order) into ``out``: the file, summary and
    config the unsharded run would have written."""
    from jbot_edge.atomic import write_json
    from jbot_edge.config import save_config
    from jbot_edge.data.reader import JetFile

    start = time.perf_counter()
    provenances = []
    for path in inputs:
        with JetFile(path) as f:
            provenances.append(f.provenance)
    first = provenances[0]
    of = first["piece"]["of"]
    for path, prov in zip(inputs, provenances):
        rest = {k: v for k, v in prov.items() if k != "piece"}
        if rest != {k: v for k, v in first.items() if k != "piece"} or prov["piece"]["of"] != of:
            raise JbotEdgeError(f"{path}: is a piece of a different generate run than {inputs[0]} "
                                "(settings, seed or N differ)")
    indices = sorted(prov["piece"]["index"] for prov in provenances)
    if indices != list(range(of)):
        missing = sorted(set(range(of)) - set(indices))
        repeated = sorted({i for i in indices if indices.count(i) > 1})
        raise JbotEdgeError(f"merge: pieces of a {of}-piece run are incomplete (missing {missing}, "
                            f"repeated {repeated})")
    config = GeneratorConfig.model_validate(first["settings"])
    tasks = plan_tasks(config, "")
    where: dict[tuple[str, int, str], _Source] = {}
    results: list[ShardResult] = []
    for path, prov in zip(inputs, provenances):
        offset = 0
        for entry in prov["piece"]["sources"]:
            where[(entry["stream"], entry["shard"], entry["label"])] = _Source(Path(path), offset, entry["n"])
            offset += entry["n"]
        results += [ShardResult(**r) for r in prov["piece"]["results"]]
    order = source_order(tasks, list(config.processes))
    results.sort(key=lambda r: [(t.stream, t.shard) for t in tasks].index((r.stream, r.shard)))
    provenance = {k: v for k, v in first.items() if k != "piece"}
    paths = output_paths(out)
    n_written = _merge([where[(task.stream, task.shard, label)] for task, label in order], paths["jets"], config,
                       provenance)
    wall_s = time.perf_counter() - start
    summary = _summary(config, paths["jets"], results, list(config.processes), n_written, wall_s,
                       sum(r.time_s for r in results))
    summary["merged_from"] = [str(p) for p in inputs]
    write_json(paths["summary"], summary)
    save_config(config, paths["config"])
    return summary


def _summary(config: GeneratorConfig, out: Path, results: list[ShardResult], label_names: list[str],
             n_written: int, wall_s: float, generation_s: float) -> dict[str, Any]:
    processes = {}
    for label in label_names:
        mine = [r for r in results if label in r.kept]
        events = sum(r.events for r in mine)
        accepted = sum(r.accepted[label] for r in mine)
        processes[label] = {"jets": sum(r.kept[label] for r in mine), "events": events, "accepted": accepted,
                            "efficiency": accepted / events if events else 0.0,
                            "stream": stream_of(label, catalogue(config.preset)).name}
    streams = {}
    for stream in dict.fromkeys(r.stream for r in results):
        mine = [r for r in results if r.stream == stream]
        time_s = sum(r.time_s for r in mine)
        pythia_s = sum(r.pythia_time_s for r in mine)
        loop_s = sum(r.loop_time_s for r in mine)
        jets = sum(sum(r.kept.values()) for r in mine)
        streams[stream] = {"events": sum(r.events for r in mine), "jets": jets, "cpu_time_s": time_s,
                           "pythia_time_s": pythia_s, "init_time_s": sum(r.init_time_s for r in mine),
                           # Steady-state share of the event loop spent inside Pythia (the rest is our overhead).
                           "pythia_share": pythia_s / loop_s if loop_s else 0.0,
                           "jets_per_s_per_worker": jets / time_s if time_s else 0.0}
    return {
        "out": str(out),
        "n_jets": n_written,
        "counts": {label: processes[label]["jets"] for label in label_names},
        "processes": processes,
        "streams": streams,
        "shards": [asdict(r) for r in results],
        "preset": config.preset,
        "seed": config.seed,
        "workers": config.workers,
        "n_shards": config.n_shards,
        "generation_time_s": generation_s,
        "wall_time_s": wall_s,
        "jets_per_s": n_written / wall_s if wall_s else 0.0,
    }
