"""Pseudo-anomalous jets built from background jets only: the "outlier exposure" samples of the anomaly scores.

Rarity under QCD is not signal-likeness: a density score on a background-only embedding flags odd QCD jets as
readily as boosted decays. Outlier exposure (OE-VAE, arXiv 2007.01850) gives a score a direction without any signal
sample: it is trained to tell background jets from *pseudo-anomalies* made of background jets. This module makes the
pseudo-anomalies, with a generic prior that a new heavy particle decaying hadronically leaves a jet of **k hard,
narrow prongs** (k = 2, 3) and no assumption about its mass beyond the jet's own acceptance:

1. each prong is a whole background jet whose (Δη, Δφ) are shrunk by ``f ~ U(shrink_min, shrink_max)`` (a prong of
   a boosted decay is narrower than a QCD jet of the same pT);
2. prong pT fractions ``z ~ Dirichlet(concentration)`` of the first jet's pT (so the pT spectrum stays the
   background's);
3. prong axes are placed at random around the origin and the layout is rescaled so that the small-angle mass of the
   prong system, ``m² / pT² = Σ_{i<j} z_i z_j ΔR_ij²``, equals ``ρ² `` with ``ρ ~ U(rho_min, rho_max)``.
   The range of ρ = m / pT is set by the jet, not by any signal: prongs must be resolvable (ΔR ≳ 0.1, ρ ≳ R/8) and
   contained in the jet (ΔR ≲ R, ρ ≲ R/2); ``rho_min/rho_max`` default to those fractions of the file's jet radius.
4. the merged particles are re-centred on their pT-weighted axis, pT-ordered and truncated to the file's particle
   count; ``part_pt_rel`` is pT over the merged jet's total pT (before truncation, as in the canonical format).

``mode: overlay`` keeps the older recipe (two unshrunk jets, the second scaled in pT by U(scale_min, scale_max) and
displaced by U(offset_min, offset_max)), used by ``qat``'s outlier exposure before prongs existed.

Only the features that can be rebuilt from (pT, Δη, Δφ) are available on pseudo-anomalies: ``part_pt``,
``part_deta``, ``part_dphi``, ``part_pt_rel`` (and what :mod:`jbot_edge.data.preprocessing` derives from them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from jbot_edge.config import StrictModel
from jbot_edge.data.format import JetBatch
from jbot_edge.data.preprocessing import DERIVED_FEATURES, gather_particles, pt_order
from jbot_edge.errors import JbotEdgeError

#: Stored features a pseudo-anomaly can be rebuilt with (everything else would need the full four-vectors).
REBUILDABLE_FEATURES = ("part_pt", "part_deta", "part_dphi", "part_pt_rel")


class PseudoAnomalyConfig(StrictModel):
    """How pseudo-anomalies are made from background jets (see the module docstring)."""

    mode: Literal["prongs", "overlay"] = "prongs"
    prongs: list[int] = Field(default_factory=lambda: [2, 3], description="prong counts, drawn uniformly")
    concentration: float = Field(default=2.0, gt=0, description="Dirichlet concentration of the prong pT fractions")
    shrink_min: float = Field(default=0.2, gt=0, le=1, description="angular shrink of each prong jet")
    shrink_max: float = Field(default=0.5, gt=0, le=1)
    rho_min: float | None = Field(default=None, gt=0, description="m/pT of the prong system; null: R/8")
    rho_max: float | None = Field(default=None, gt=0, description="null: R/2")
    rho_sampling: Literal["uniform", "log"] = Field(default="uniform", description=(
        "ρ uniform in [rho_min, rho_max], or log-uniform (no preferred mass scale)"))
    # mode: overlay
    scale_min: float = Field(default=0.3, gt=0, le=1)
    scale_max: float = Field(default=1.0, gt=0, le=1)
    offset_min: float = Field(default=0.1, ge=0, description="displacement of the second jet in (η, φ)")
    offset_max: float = Field(default=0.3, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> PseudoAnomalyConfig:
        pairs = {"shrink": (self.shrink_min, self.shrink_max), "scale": (self.scale_min, self.scale_max),
                 "offset": (self.offset_min, self.offset_max)}
        if self.rho_min is not None and self.rho_max is not None:
            pairs["rho"] = (self.rho_min, self.rho_max)
        for name, (lo, hi) in pairs.items():
            if lo > hi:
                raise ValueError(f"{name}_min={lo} must not exceed {name}_max={hi}")
        if not self.prongs or any(k < 2 or k > 4 for k in self.prongs):
            raise ValueError(f"prongs must be a non-empty list of 2, 3 or 4, got {self.prongs}")
        return self

    def rho_range(self, jet_radius: float) -> tuple[float, float]:
        lo = self.rho_min if self.rho_min is not None else jet_radius / 8.0
        hi = self.rho_max if self.rho_max is not None else jet_radius / 2.0
        if lo > hi:
            raise JbotEdgeError(f"pseudo-anomalies: rho_min={lo} exceeds rho_max={hi} (jet radius {jet_radius})")
        return lo, hi

    def rho_quantile(self, u, jet_radius: float):
        """ρ at quantile ``u`` ∈ [0, 1) (a numpy array or a torch tensor) of the ``rho_sampling`` distribution."""
        lo, hi = self.rho_range(jet_radius)
        return lo + (hi - lo) * u if self.rho_sampling == "uniform" else lo * (hi / lo) ** u


def check_rebuildable(features: Sequence[str], option: str = "outlier exposure") -> None:
    """Refuse input features that pseudo-anomalies cannot provide, in one line."""
    stored: list[str] = []
    for name in features:
        stored += list(DERIVED_FEATURES[name][0]) if name in DERIVED_FEATURES else [name]
    unsupported = sorted(set(stored) - set(REBUILDABLE_FEATURES))
    if unsupported:
        raise JbotEdgeError(f"{option}: pseudo-anomalous jets can only provide {list(REBUILDABLE_FEATURES)} (and "
                            f"features derived from them), but the inputs need {unsupported}")


def _merge(pt: np.ndarray, deta: np.ndarray, dphi: np.ndarray, mask: np.ndarray, n_particles: int) -> JetBatch:
    """Re-centre concatenated particles on their pT-weighted axis, pT-order, truncate, recompute pT fractions."""
    weight = np.where(mask, pt, 0.0)
    total = weight.sum(axis=1, keepdims=True)
    deta = deta - (weight * deta).sum(axis=1, keepdims=True) / total
    dphi = dphi - (weight * dphi).sum(axis=1, keepdims=True) / total
    order = pt_order(pt, mask)
    # part_pt_rel is relative to the whole merged jet (as in the canonical format), before truncation
    gathered = gather_particles({"part_pt": pt, "part_deta": deta, "part_dphi": dphi, "mask": mask,
                                 "part_pt_rel": pt / np.maximum(total, 1e-12)}, order, n_particles)
    keep = gathered.pop("mask").astype(bool)
    particles = {k: np.where(keep, v, 0.0).astype(np.float32) for k, v in gathered.items()}
    return JetBatch(particles=particles, mask=keep, jets={}, labels=np.full(len(pt), -1, dtype=np.int64))


def overlay_jets(first: JetBatch, second: JetBatch, cfg: PseudoAnomalyConfig,
                 rng: np.random.Generator) -> JetBatch:
    """``mode: overlay``: one pseudo-anomaly per pair ``(first[k], second[k])``."""
    n = len(first)
    theta = rng.uniform(-np.pi, np.pi, n)
    offset = rng.uniform(cfg.offset_min, cfg.offset_max, n)
    scale = rng.uniform(cfg.scale_min, cfg.scale_max, n)
    mask = np.concatenate([first.mask, second.mask], axis=1)
    pt = np.concatenate([first.particles["part_pt"], second.particles["part_pt"] * scale[:, None]], axis=1)
    deta = np.concatenate([first.particles["part_deta"],
                           second.particles["part_deta"] + (offset * np.cos(theta))[:, None]], axis=1)
    dphi = np.concatenate([first.particles["part_dphi"],
                           second.particles["part_dphi"] + (offset * np.sin(theta))[:, None]], axis=1)
    return _merge(pt, deta, dphi, mask, first.n_particles)


def _prong_layout(z: np.ndarray, rho: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Prong axes ``(Δη, Δφ) [N, k]`` around the origin whose small-angle m/pT is ``rho`` for pT fractions ``z``."""
    n, k = z.shape
    radius = np.sqrt(rng.uniform(0.0, 1.0, (n, k)))
    theta = rng.uniform(-np.pi, np.pi, (n, k))
    x, y = radius * np.cos(theta), radius * np.sin(theta)
    d2 = (x[:, :, None] - x[:, None, :]) ** 2 + (y[:, :, None] - y[:, None, :]) ** 2
    m2 = 0.5 * np.einsum("ni,nj,nij->n", z, z, d2)  # Σ_{i<j} z_i z_j ΔR_ij²
    stretch = rho / np.sqrt(np.maximum(m2, 1e-12))
    return x * stretch[:, None], y * stretch[:, None]


def prong_jets(prong_batches: Sequence[JetBatch], cfg: PseudoAnomalyConfig, jet_radius: float,
               rng: np.random.Generator) -> JetBatch:
    """``mode: prongs``: one k-prong pseudo-anomaly per index, prong i made from ``prong_batches[i]``."""
    k = len(prong_batches)
    n, p = len(prong_batches[0]), prong_batches[0].n_particles
    z = rng.dirichlet(np.full(k, cfg.concentration), size=n)
    rho = cfg.rho_quantile(rng.random(size=n), jet_radius)
    ax, ay = _prong_layout(z, rho, rng)
    target_pt = prong_batches[0].particles["part_pt"].sum(axis=1)
    pts, detas, dphis, masks = [], [], [], []
    for i, prong in enumerate(prong_batches):
        pt = np.where(prong.mask, prong.particles["part_pt"], 0.0).astype(np.float64)
        share = z[:, i] * target_pt / np.maximum(pt.sum(axis=1), 1e-12)
        shrink = rng.uniform(cfg.shrink_min, cfg.shrink_max, n)
        pts.append(pt * share[:, None])
        detas.append(prong.particles["part_deta"] * shrink[:, None] + ax[:, i, None])
        dphis.append(prong.particles["part_dphi"] * shrink[:, None] + ay[:, i, None])
        masks.append(prong.mask)
    return _merge(np.concatenate(pts, axis=1), np.concatenate(detas, axis=1), np.concatenate(dphis, axis=1),
                  np.concatenate(masks, axis=1), p)


def make_pseudo_anomalies(background: JetBatch, n: int, cfg: PseudoAnomalyConfig, jet_radius: float,
                          rng: np.random.Generator) -> JetBatch:
    """``n`` pseudo-anomalies from random jets of ``background`` (which needs part_pt, part_deta, part_dphi)."""
    missing = [f for f in ("part_pt", "part_deta", "part_dphi") if f not in background.particles]
    if missing:
        raise JbotEdgeError(f"pseudo-anomalies need particle feature(s) {missing} (the jet file lacks them)")
    if len(background) < 2:
        raise JbotEdgeError("pseudo-anomalies need at least two background jets")
    if cfg.mode == "overlay":
        pick = lambda: background.select(rng.integers(0, len(background), n))  # noqa: E731
        return overlay_jets(pick(), pick(), cfg, rng)
    counts = rng.choice(np.asarray(cfg.prongs), size=n)
    pieces, order = [], []
    for k in sorted(set(counts.tolist())):
        rows = np.flatnonzero(counts == k)
        batches = [background.select(rng.integers(0, len(background), len(rows))) for _ in range(k)]
        pieces.append(prong_jets(batches, cfg, jet_radius, rng))
        order.append(rows)
    merged = JetBatch.concatenate(pieces)
    return merged.select(np.argsort(np.concatenate(order), kind="stable"))
