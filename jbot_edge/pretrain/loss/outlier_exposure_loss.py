"""Outlier-exposure loss for pre-training: the student's [CLS] must tell background jets from pseudo-anomalies.

Self-distillation alone learns what varies among background jets (quark vs gluon, multiplicity, ...); nothing asks
the embedding to resolve the hard-prong structure that a boosted decay leaves. This auxiliary loss does, without any
signal sample: a linear head on the raw student [CLS] is trained with binary cross-entropy to separate the batch's
(augmented, masked) background view from pseudo-anomalies built **on the device from the same batch** — k narrow
prongs, each a shrunk background jet, at a random m/pT (:mod:`jbot_edge.data.pseudo_anomalies` describes the recipe;
this is its batched torch twin for model-input tensors). The head itself is discarded; the embedding it shaped is
what the EMA teacher inherits and what ``evaluate``'s ``oe`` score head is fitted on.

Model inputs it can rebuild: ``part_deta``, ``part_dphi``, ``part_pt_rel``, ``part_pt``, ``mask`` (others are refused).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from jbot_edge.config import StrictModel
from jbot_edge.data.preprocessing import InputSpec
from jbot_edge.data.pseudo_anomalies import PseudoAnomalyConfig
from jbot_edge.errors import JbotEdgeError

SUPPORTED_INPUTS = ("part_deta", "part_dphi", "part_pt_rel", "part_pt", "mask")


class OutlierExposureLossConfig(StrictModel):
    enabled: bool = False
    weight: float = Field(default=1.0, ge=0.0, description="weight of the BCE term in the total loss")
    fraction: float = Field(default=0.5, gt=0.0, le=2.0, description="pseudo-anomalies per batch jet")
    jet_radius: float | None = Field(default=None, gt=0.0, description=(
        "sets the default m/pT range (R/8 … R/2); null: the training file's jet radius (provenance)"))
    pseudo: PseudoAnomalyConfig = Field(default_factory=PseudoAnomalyConfig)


def _gamma_integer(shape: tuple[int, ...], alpha: int, generator: torch.Generator | None,
                   device: torch.device) -> torch.Tensor:
    """Gamma(alpha, 1) for integer alpha as a sum of exponentials (exact, and it takes a generator)."""
    u = torch.rand((*shape, alpha), generator=generator, device=device).clamp(min=1e-12)
    return -u.log().sum(dim=-1)


class PseudoAnomalyMaker:
    """``make(x, mask, generator) -> (x', mask')``: ``round(fraction·B)`` k-prong pseudo-anomalies from a batch."""

    def __init__(self, spec: InputSpec, config: OutlierExposureLossConfig):
        unsupported = [f for f in spec.features if f not in SUPPORTED_INPUTS]
        if unsupported:
            raise JbotEdgeError(f"outlier_exposure.enabled: pseudo-anomalies are rebuilt from (pT, Δη, Δφ) and "
                                f"cannot provide input feature(s) {unsupported} (supported: {list(SUPPORTED_INPUTS)})")
        self.cols = {name: i for i, name in enumerate(spec.features)}
        for needed in ("part_deta", "part_dphi"):
            if needed not in self.cols:
                raise JbotEdgeError(f"outlier_exposure.enabled: needs input feature {needed}")
        if "part_pt" not in self.cols and "part_pt_rel" not in self.cols:
            raise JbotEdgeError("outlier_exposure.enabled: needs a pT input (part_pt or part_pt_rel)")
        self.config = config
        self.jet_radius = config.jet_radius or 0.8
        config.pseudo.rho_range(self.jet_radius)  # an inverted range is an error here, before training starts
        if abs(config.pseudo.concentration - round(config.pseudo.concentration)) > 1e-9:
            raise JbotEdgeError("outlier_exposure.pseudo.concentration must be a whole number in pre-training")
        self.k_max = max(config.pseudo.prongs)

    def _pt(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        col = self.cols.get("part_pt", self.cols.get("part_pt_rel"))
        return torch.where(mask, x[..., col], torch.zeros_like(x[..., col]))

    def make(self, x: torch.Tensor, mask: torch.Tensor,
             generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, pa = self.config, self.config.pseudo
        b, p, _ = x.shape
        n, k, dev = max(1, round(cfg.fraction * b)), self.k_max, x.device
        mask = mask.bool()
        # Prong count per pseudo-anomaly; unused prong slots get z = 0 and are masked out.
        choices = torch.tensor(pa.prongs, device=dev)
        n_prongs = choices[torch.randint(len(pa.prongs), (n,), generator=generator, device=dev)]
        active = torch.arange(k, device=dev)[None, :] < n_prongs[:, None]
        g = _gamma_integer((n, k), int(round(pa.concentration)), generator, dev) * active
        z = g / g.sum(dim=1, keepdim=True)
        rho = pa.rho_quantile(torch.rand(n, generator=generator, device=dev), self.jet_radius)
        radius = torch.rand((n, k), generator=generator, device=dev).sqrt()
        theta = (torch.rand((n, k), generator=generator, device=dev) * 2 - 1) * torch.pi
        ax, ay = radius * theta.cos(), radius * theta.sin()
        d2 = (ax[:, :, None] - ax[:, None, :]) ** 2 + (ay[:, :, None] - ay[:, None, :]) ** 2
        m2 = 0.5 * torch.einsum("ni,nj,nij->n", z, z, d2)
        stretch = rho / m2.clamp(min=1e-12).sqrt()
        ax, ay = ax * stretch[:, None], ay * stretch[:, None]
        source = torch.randint(b, (n, k), generator=generator, device=dev)
        shrink = pa.shrink_min + (pa.shrink_max - pa.shrink_min) * torch.rand((n, k), generator=generator, device=dev)
        pt_all = self._pt(x, mask)[source]                                 # [n, k, P]
        m_all = mask[source] & active[..., None]
        target = pt_all[:, 0].sum(dim=1)                                   # pT of the first prong's jet
        share = z * target[:, None] / pt_all.sum(dim=2).clamp(min=1e-12)
        pt = (pt_all * share[..., None]).flatten(1)
        deta = (x[..., self.cols["part_deta"]][source] * shrink[..., None] + ax[..., None]).flatten(1)
        dphi = (x[..., self.cols["part_dphi"]][source] * shrink[..., None] + ay[..., None]).flatten(1)
        real = m_all.flatten(1) & (pt > 0)
        pt = torch.where(real, pt, torch.zeros_like(pt))
        total = pt.sum(dim=1, keepdim=True).clamp(min=1e-12)
        deta = deta - (pt * deta).sum(dim=1, keepdim=True) / total
        dphi = dphi - (pt * dphi).sum(dim=1, keepdim=True) / total
        order = torch.where(real, -pt, torch.full_like(pt, float("inf"))).argsort(dim=1)[:, :p]
        keep = real.gather(1, order)
        pt, deta, dphi = pt.gather(1, order), deta.gather(1, order), dphi.gather(1, order)
        # pT fraction of the whole merged jet, before truncation (the canonical format's part_pt_rel)
        columns = {"part_deta": deta, "part_dphi": dphi, "part_pt": pt, "part_pt_rel": pt / total,
                   "mask": keep.to(x.dtype)}
        out = torch.stack([torch.where(keep, columns[f], torch.zeros_like(pt)) for f in self.cols], dim=-1)
        return out.to(x.dtype), keep


class OutlierExposureLoss(nn.Module):
    """BCE of a linear head on raw [CLS]: background (0) vs pseudo-anomaly (1), classes weighted equally."""

    def __init__(self, embed_dim: int):
        super().__init__()
        self.head = nn.Linear(embed_dim, 1)

    def forward(self, background_cls: torch.Tensor, anomaly_cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits_b = self.head(background_cls.float()).squeeze(-1)
        logits_a = self.head(anomaly_cls.float()).squeeze(-1)
        loss = 0.5 * (F.binary_cross_entropy_with_logits(logits_b, torch.zeros_like(logits_b))
                      + F.binary_cross_entropy_with_logits(logits_a, torch.ones_like(logits_a)))
        accuracy = 0.5 * ((logits_b < 0).float().mean() + (logits_a > 0).float().mean())
        return loss, accuracy.detach()
