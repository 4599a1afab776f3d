"""Jet augmentations as batched tensor ops on the training device (shared by jBOT and the JetCLR baseline).

Inputs are model-input tensors ``x [B, P, F]`` + ``mask [B, P]`` built by
:func:`jbot_edge.data.preprocessing.build_inputs`; the columns are found by name through the
:class:`~jbot_edge.data.preprocessing.InputSpec`, so any input layout works as long as it carries what an
augmentation needs:

* ``rotation``: (Δη, Δφ) rotated about the jet axis by θ ~ U(−π, π) per jet          — needs part_deta, part_dphi
* ``smearing``: Δη, Δφ += N(0, σ²) with σ = Λ / pT per particle (soft particles move most). With an absolute
  ``part_pt`` column Λ is in GeV (``smear_gev``, JetCLR: 0.1 GeV, pT floored at ``smear_min_pt_gev``); otherwise
  Λ is relative to the pT fraction (``smear_rel``, jBOT reference: 3e-4)                 — needs Δη, Δφ and a pT column
* ``splitting``: collinear splitting of min(#empty, #real) random particles per jet into empty slots: the new
  particle takes a fraction a ~ U(0.3, 0.7) of the pT (and energy), the parent keeps 1 − a, both at the same
  (Δη, Δφ). Total pT and the pT-weighted centroid are conserved.                          — needs a pT column
* ``translation`` (JetCLR, off by default): Δη, Δφ shifted per jet by N(0, width²).

Pipeline order: rotation → smearing → splitting → translation. pT-like columns (``part_pt_rel``, ``part_pt``,
``part_energy``) are scaled on splitting; their log versions shifted by log a; ``part_dr`` recomputed whenever the
coordinates move; ``mask`` follows the validity mask. Other columns (charge, pid, ...) are copied to split
products. Padding stays all-zero and stays a suffix. Absolute ``part_eta``/``part_phi`` inputs cannot be rotated
consistently and are refused when a geometric augmentation is on.

Every random draw comes from the ``torch.Generator`` passed in, so runs are reproducible and resumable.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, model_validator

from jbot_edge.config import StrictModel
from jbot_edge.data.preprocessing import InputSpec
from jbot_edge.errors import JbotEdgeError

SCALE_COLUMNS = ("part_pt_rel", "part_pt", "part_energy")
LOG_COLUMNS = ("part_log_pt_rel", "part_log_pt", "part_log_energy")
ABSOLUTE_ANGLES = ("part_eta", "part_phi")


class AugmentationConfig(StrictModel):
    rotation: bool = True
    smearing: bool = True
    smear_rel: float = Field(default=3e-4, ge=0.0, description="Λ for σ = Λ / pT-fraction (no absolute pT)")
    smear_gev: float = Field(default=0.1, ge=0.0, description="Λ [GeV] for σ = Λ / pT when part_pt is an input")
    smear_min_pt_gev: float = Field(default=0.1, gt=0.0)
    splitting: bool = True
    split_min: float = Field(default=0.3, gt=0.0, lt=1.0)
    split_max: float = Field(default=0.7, gt=0.0, lt=1.0)
    translation: bool = False
    translation_width: float = Field(default=0.5, ge=0.0)

    @model_validator(mode="after")
    def _ordered_split_range(self) -> AugmentationConfig:
        if self.split_min > self.split_max:
            raise ValueError(f"split_min={self.split_min} must not exceed split_max={self.split_max}")
        return self


class JetAugmenter:
    """Apply the enabled augmentations to a batch: ``x, mask = augmenter(x, mask, generator)``."""

    def __init__(self, spec: InputSpec, config: AugmentationConfig | None = None):
        self.spec = spec
        self.config = config or AugmentationConfig()
        cfg = self.config
        cols = {name: i for i, name in enumerate(spec.features)}
        self._cols = cols
        geometric = cfg.rotation or cfg.smearing or cfg.translation
        if geometric:
            self.deta, self.dphi = spec.index("part_deta"), spec.index("part_dphi")
            clash = [n for n in ABSOLUTE_ANGLES if n in cols]
            if clash:
                raise JbotEdgeError(f"augmentations: input features {clash} are absolute angles that rotation/"
                                    "smearing/translation cannot update consistently; use part_deta/part_dphi")
        self.pt_col, self.pt_is_absolute, self.pt_is_log = self._pt_column(cols)
        if (cfg.smearing or cfg.splitting) and self.pt_col is None:
            raise JbotEdgeError(f"augmentations: smearing/splitting need a pT input ({SCALE_COLUMNS + LOG_COLUMNS[:2]}),"
                                f" the input spec has {spec.features}")
        self.scale_cols = [cols[n] for n in SCALE_COLUMNS if n in cols]
        self.log_cols = [cols[n] for n in LOG_COLUMNS if n in cols]
        self.dr_col = cols.get("part_dr")
        self.mask_col = cols.get("mask")

    @staticmethod
    def _pt_column(cols: dict[str, int]) -> tuple[int | None, bool, bool]:
        """The column that gives each particle's pT: absolute if available (GeV smearing), else the fraction."""
        for name, absolute, log in (("part_pt", True, False), ("part_log_pt", True, True),
                                    ("part_pt_rel", False, False), ("part_log_pt_rel", False, True)):
            if name in cols:
                return cols[name], absolute, log
        return None, False, False

    def particle_pt(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-particle pT (GeV or fraction, whichever the inputs carry); 0 in padding."""
        assert self.pt_col is not None
        pt = x[..., self.pt_col]
        if self.pt_is_log:
            pt = pt.exp()
        return torch.where(mask, pt, torch.zeros_like(pt))

    def __call__(self, x: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        x = x.clone()
        mask = mask.bool()
        if cfg.rotation:
            x = self.rotate(x, mask, generator)
        if cfg.smearing:
            x = self.smear(x, mask, generator)
        if cfg.splitting:
            x, mask = self.split(x, mask, generator)
        if cfg.translation:
            x = self.translate(x, mask, generator)
        return x, mask

    # -- individual augmentations ----------------------------------------------------------------------------
    def rotate(self, x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        theta = (torch.rand((x.shape[0], 1), generator=generator, device=x.device) * 2 - 1) * math.pi
        c, s = torch.cos(theta).to(x.dtype), torch.sin(theta).to(x.dtype)
        eta, phi = x[..., self.deta], x[..., self.dphi]
        x = x.clone()
        x[..., self.deta] = torch.where(mask, c * eta - s * phi, eta)
        x[..., self.dphi] = torch.where(mask, s * eta + c * phi, phi)
        return x  # distances to the axis are unchanged, so part_dr needs no update

    def smear(self, x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        cfg = self.config
        pt = self.particle_pt(x, mask)
        if self.pt_is_absolute:
            sigma = cfg.smear_gev / pt.clamp(min=cfg.smear_min_pt_gev)
        else:
            sigma = cfg.smear_rel / pt.clamp(min=1e-6)
        noise = torch.randn((*mask.shape, 2), generator=generator, device=x.device, dtype=x.dtype)
        x = x.clone()
        sigma = torch.where(mask, sigma, torch.zeros_like(sigma)).to(x.dtype)
        x[..., self.deta] = x[..., self.deta] + sigma * noise[..., 0]
        x[..., self.dphi] = x[..., self.dphi] + sigma * noise[..., 1]
        return self._refresh_dr(x, mask)

    def translate(self, x: torch.Tensor, mask: torch.Tensor,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        shift = torch.randn((x.shape[0], 2), generator=generator, device=x.device, dtype=x.dtype)
        shift = shift * self.config.translation_width
        x = x.clone()
        x[..., self.deta] = torch.where(mask, x[..., self.deta] + shift[:, :1], x[..., self.deta])
        x[..., self.dphi] = torch.where(mask, x[..., self.dphi] + shift[:, 1:], x[..., self.dphi])
        return self._refresh_dr(x, mask)

    def split(self, x: torch.Tensor, mask: torch.Tensor,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        b, p, f = x.shape
        device = x.device
        n_real = mask.sum(dim=1, keepdim=True)
        n_split = torch.minimum(p - n_real, n_real)
        # A random permutation whose first n_real entries are the real particles in random order.
        keys = torch.rand((b, p), generator=generator, device=device)
        source = torch.where(mask, keys, torch.full_like(keys, 2.0)).argsort(dim=1)
        slot = torch.arange(p, device=device)[None, :]
        active = slot < n_split
        a = cfg.split_min + (cfg.split_max - cfg.split_min) * torch.rand((b, p), generator=generator, device=device)
        a = a.to(x.dtype)
        # Children: copies of their parents carrying the fraction a.
        child = torch.gather(x, 1, source[..., None].expand(b, p, f))
        child = self._scale_pt(child, a)
        # Parents keep 1 − a; `source` is a full permutation, so every slot is written exactly once.
        keep = torch.ones_like(a).scatter(1, source, torch.where(active, 1 - a, torch.ones_like(a)))
        out = self._scale_pt(x, keep)
        # Children go to the first empty slots; inactive ones go to a dummy slot P that is dropped afterwards.
        dest = torch.where(active, n_real + slot, torch.full_like(slot.expand(b, p), p))
        out = torch.cat([out, out.new_zeros(b, 1, f)], dim=1)
        out = out.scatter(1, dest[..., None].expand(b, p, f), child)[:, :p]
        new_mask = torch.cat([mask, mask.new_zeros(b, 1)], dim=1).scatter(1, dest, active)[:, :p]
        return out, new_mask | mask

    # -- helpers ---------------------------------------------------------------------------------------------
    def _scale_pt(self, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        for c in self.scale_cols:
            x[..., c] = x[..., c] * factor
        if self.log_cols:
            log_factor = factor.log()
            for c in self.log_cols:
                # factors are exactly 1 wherever nothing is split (padding included), so padding stays 0
                x[..., c] = x[..., c] + log_factor
        return x

    def _refresh_dr(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.dr_col is None:
            return x
        dr = torch.hypot(x[..., self.deta], x[..., self.dphi])
        x[..., self.dr_col] = torch.where(mask, dr, torch.zeros_like(dr))
        return x
