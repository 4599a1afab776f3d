"""Named features → model inputs. The one place where per-particle inputs are derived.

A model's inputs are described by an :class:`InputSpec` (feature names + number of particles) that is stored with
every checkpoint, so evaluation, distillation and firmware all rebuild exactly the inputs the model was trained on.

Besides the stored features (see :mod:`jbot_edge.data.format`), these derived names are available:

* ``mask``: 1.0 for real particles, 0.0 for padding (the jBOT reference input)
* ``part_log_pt`` = log(pT / GeV), ``part_log_energy`` = log(E / GeV)  (needs ``part_pt`` / ``part_energy``)
* ``part_log_pt_rel`` = log(pT / jet pT)
* ``part_dr`` = sqrt(Δη² + Δφ²)

Log features are 0 in padded slots so that padding stays all-zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pydantic import Field, field_validator

from jbot_edge.config import StrictModel
from jbot_edge.data.format import JetBatch
from jbot_edge.errors import JbotEdgeError

#: jBOT reference inputs (Δη, Δφ, pT fraction, mask).
JBOT_FEATURES = ("part_deta", "part_dphi", "part_pt_rel", "mask")


def _log_of(name: str) -> Callable[[JetBatch], np.ndarray]:
    def derive(batch: JetBatch) -> np.ndarray:
        values = batch.particles[name]
        out = np.zeros_like(values, dtype=np.float32)
        valid = batch.mask & (values > 0)
        out[valid] = np.log(values[valid])
        return out

    return derive


DERIVED_FEATURES: dict[str, tuple[tuple[str, ...], Callable[[JetBatch], np.ndarray]]] = {
    "mask": ((), lambda b: b.mask.astype(np.float32)),
    "part_log_pt": (("part_pt",), _log_of("part_pt")),
    "part_log_energy": (("part_energy",), _log_of("part_energy")),
    "part_log_pt_rel": (("part_pt_rel",), _log_of("part_pt_rel")),
    "part_dr": (("part_deta", "part_dphi"),
                lambda b: np.hypot(b.particles["part_deta"], b.particles["part_dphi"]).astype(np.float32)),
}


class InputSpec(StrictModel):
    """Which named features, in which order, and how many leading particles a model reads."""

    features: list[str] = Field(default_factory=lambda: list(JBOT_FEATURES))
    n_particles: int = Field(default=30, ge=1, le=512)

    @field_validator("features")
    @classmethod
    def _non_empty_unique(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one input feature is needed")
        if len(set(value)) != len(value):
            raise ValueError(f"input features must be unique, got {value}")
        return value

    def stored_features(self) -> list[str]:
        """Features that must be present in the file to build these inputs."""
        needed: list[str] = []
        for name in self.features:
            sources = DERIVED_FEATURES[name][0] if name in DERIVED_FEATURES else (name,)
            for s in sources:
                if s not in needed:
                    needed.append(s)
        return needed

    def index(self, name: str) -> int:
        """Column of ``name`` in the model input (for augmentations that need e.g. Δη, Δφ, pT fraction)."""
        try:
            return self.features.index(name)
        except ValueError:
            raise JbotEdgeError(f"input feature '{name}' is needed but the input spec has {self.features}") from None

    def check_file(self, jet_file) -> None:  # jet_file: jbot_edge.data.reader.JetFile (avoids an import cycle)
        """Refuse files that cannot provide these inputs, naming what is missing."""
        jet_file.require_particle_features(self.stored_features(), option="input spec")
        if jet_file.n_particles < self.n_particles:
            raise JbotEdgeError(
                f"{jet_file.path}: holds {jet_file.n_particles} particles per jet, the model needs "
                f"n_particles={self.n_particles} (too few particles)"
            )


def build_inputs(batch: JetBatch, spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x [N, P, F] float32, mask [N, P] bool)`` for the leading ``spec.n_particles`` particles."""
    if batch.n_particles < spec.n_particles:
        raise JbotEdgeError(f"batch has {batch.n_particles} particles per jet, input spec needs {spec.n_particles}")
    columns = []
    for name in spec.features:
        if name in DERIVED_FEATURES:
            sources, derive = DERIVED_FEATURES[name]
            missing = [s for s in sources if s not in batch.particles]
            if missing:
                raise JbotEdgeError(f"input feature '{name}' needs stored feature(s) {missing}")
            columns.append(derive(batch))
        elif name in batch.particles:
            columns.append(batch.particles[name].astype(np.float32))
        else:
            raise JbotEdgeError(f"input feature '{name}' is neither stored in the file nor a derived feature "
                                f"({sorted(DERIVED_FEATURES)})")
    p = spec.n_particles
    x = np.stack([c[:, :p] for c in columns], axis=-1).astype(np.float32, copy=False)
    return np.ascontiguousarray(x), np.ascontiguousarray(batch.mask[:, :p])


def relative_coordinates(
    pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mask: np.ndarray,
    jet_pt: np.ndarray, jet_eta: np.ndarray, jet_phi: np.ndarray,
) -> dict[str, np.ndarray]:
    """Δη, Δφ (wrapped to (-π, π]) and pT fraction relative to the jet axis; zero in padded slots."""
    deta = np.where(mask, eta - jet_eta[:, None], 0.0)
    dphi = np.where(mask, np.mod(phi - jet_phi[:, None] + np.pi, 2 * np.pi) - np.pi, 0.0)
    pt_rel = np.where(mask, pt / np.maximum(jet_pt[:, None], 1e-12), 0.0)
    return {"part_deta": deta.astype(np.float32), "part_dphi": dphi.astype(np.float32),
            "part_pt_rel": pt_rel.astype(np.float32)}


def pt_order(pt: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-jet permutation that sorts real particles by decreasing pT and puts padding last."""
    key = np.where(mask, -pt, np.inf)
    return np.argsort(key, axis=1, kind="stable")


def gather_particles(values: dict[str, np.ndarray], order: np.ndarray, n_particles: int) -> dict[str, np.ndarray]:
    """Apply a per-jet permutation and truncate/pad to ``n_particles`` slots."""
    out = {}
    for name, v in values.items():
        g = np.take_along_axis(v, order, axis=1)[:, :n_particles]
        if g.shape[1] < n_particles:
            g = np.pad(g, ((0, 0), (0, n_particles - g.shape[1])))
        out[name] = g
    return out


def check_features(names: Sequence[str], available: Sequence[str], where: str) -> None:
    missing = [n for n in names if n not in available and n not in DERIVED_FEATURES]
    if missing:
        raise JbotEdgeError(f"{where}: feature(s) {missing} not available (has {sorted(available)})")
