"""DINO-style local crops for jets: student-only views that keep the particles near one hard particle.

DINO trains the student to map a small crop of an image to what the teacher sees in the whole image
("local-to-global" correspondence). The jet analogue used here: pick a seed particle with probability ∝ pT, keep the
real particles within ΔR < r of it (r ~ U(radius_min, radius_max) · R, R the jet radius), move them to the front
(padding stays an all-zero suffix) and drop the rest. Coordinates stay relative to the jet axis and pT fractions
relative to the whole jet, so a crop still says where it sits and how much of the jet it holds. For a boosted decay
a crop of ≈ R/4 … R/2 around a hard particle is roughly one prong; predicting the whole jet's [CLS] distribution
from one prong asks the embedding to encode how the jet's energy is shared among its prongs.

Crops are built from a fresh augmentation of the batch (rotation, smearing, splitting), are never masked (iBOT does
not see them, as in DINOv2) and enter only the DINO [CLS] loss, against both global teacher views.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator

from jbot_edge.config import StrictModel
from jbot_edge.data.preprocessing import InputSpec


class LocalCropsConfig(StrictModel):
    n_crops: int = Field(default=0, ge=0, le=8, description="local crops per jet; 0 = off (reference)")
    radius_min: float = Field(default=0.25, gt=0.0, description="crop radius, lower end, in units of R")
    radius_max: float = Field(default=0.5, gt=0.0, description="crop radius, upper end, in units of R")
    jet_radius: float | None = Field(default=None, gt=0.0, description="R; null: the training file's jet radius")

    @model_validator(mode="after")
    def _ordered(self) -> LocalCropsConfig:
        if self.radius_min > self.radius_max:
            raise ValueError(f"radius_min={self.radius_min} must not exceed radius_max={self.radius_max}")
        return self


def local_crop(x: torch.Tensor, mask: torch.Tensor, pt: torch.Tensor, deta_col: int, dphi_col: int,
               radius: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One local crop per jet: ``(x', mask')`` of the same shape, kept particles first in their original order.

    ``pt`` [B, P] is each particle's pT (0 in padding), ``radius`` [B] the crop radius per jet. The seed is drawn
    ∝ pT among the real particles and is always kept, so every crop holds at least one particle."""
    weights = torch.where(mask, pt.clamp(min=0) + 1e-12, torch.zeros_like(pt))
    seed = torch.multinomial(weights.float(), 1, generator=generator)  # [B, 1]
    eta, phi = x[..., deta_col], x[..., dphi_col]
    d_eta = eta - eta.gather(1, seed)
    d_phi = phi - phi.gather(1, seed)
    keep = mask & (d_eta.square() + d_phi.square() < radius[:, None].to(x.dtype).square())
    keep = keep.scatter(1, seed, True)
    # Stable sort on "not kept": kept particles move to the front in their original (pT-ordered) order.
    order = (~keep).to(torch.int8).argsort(dim=1, stable=True)
    kept_sorted = keep.gather(1, order)
    out = x.gather(1, order[..., None].expand_as(x))
    out = torch.where(kept_sorted[..., None], out, torch.zeros_like(out))
    return out, kept_sorted


def crop_radii(n: int, config: LocalCropsConfig, jet_radius: float, generator: torch.Generator | None,
               device: torch.device) -> torch.Tensor:
    """Crop radii in ΔR, U(radius_min, radius_max) · R, one per jet."""
    u = torch.rand(n, generator=generator, device=device)
    return (config.radius_min + (config.radius_max - config.radius_min) * u) * jet_radius


class LocalCropMaker:
    """``make(x, mask, augmenter, generator) -> (x, mask)`` for ``n_crops`` crops per jet, concatenated."""

    def __init__(self, spec: InputSpec, config: LocalCropsConfig):
        self.config = config
        self.deta, self.dphi = spec.index("part_deta"), spec.index("part_dphi")
        self.jet_radius = config.jet_radius or 0.8

    def make(self, x: torch.Tensor, mask: torch.Tensor, augmenter, generator: torch.Generator | None):
        xs, ms = [], []
        for _ in range(self.config.n_crops):
            xa, ma = augmenter(x, mask, generator)
            radius = crop_radii(x.shape[0], self.config, self.jet_radius, generator, x.device)
            xc, mc = local_crop(xa, ma, augmenter.particle_pt(xa, ma), self.deta, self.dphi, radius, generator)
            xs.append(xc)
            ms.append(mc)
        return torch.cat(xs), torch.cat(ms)
