"""VAE and OE-VAE with an optional DisCo mass-decorrelation penalty (Cheng et al., arXiv 2007.01850).

Objective per batch of background jets (β = 0.1 in the reference)::

    L = mean(recon) + β · mean(KL)                                              (vae)
      + λ_OE · margin_loss(s(inliers), s(outliers), margin, mode)              (oe-vae; λ_OE = 2 in the reference)
      + λ_DisCo · dCor²(s(inliers), m_jet)                                      (any, when loss.disco_weight > 0)

``s`` is the per-jet anomaly score chosen by ``loss.score`` (``elbo`` = recon + β·KL, ``recon`` or ``kl``). The
outlier sample for OE-VAE is a second stream (``loss.outlier.file``, default the training file, restricted to
``loss.outlier.labels``), read in step with the training stream so resumption stays exact. The DisCo mass is
computed from the (unaugmented) inputs by :func:`jbot_edge.baselines.physics.jet_mass_from_inputs` (GeV with
``part_pt`` inputs, m/pT_jet with ``part_pt_rel`` only).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from jbot_edge.baselines.loss.distance_correlation import distance_correlation
from jbot_edge.baselines.loss.vae_losses import margin_loss
from jbot_edge.baselines.physics import jet_mass_from_inputs
from jbot_edge.baselines.train import BaselineMethod
from jbot_edge.models.vae import ConstituentVAE, VAEModelConfig, build_vae, vae_config_dict
from jbot_edge.config import StrictModel
from jbot_edge.errors import JbotEdgeError
from jbot_edge.pretrain.stream import JetStream, StreamPosition
from jbot_edge.pretrain.train import DataConfig, OptimConfig, TrainConfig

VAE_METHODS = ("vae", "oe-vae")


class OutlierConfig(StrictModel):
    file: str | None = Field(default=None, description="outlier jets (default: the training file)")
    labels: list[str] | None = Field(default=None, description="labels used as the outlier sample (oe-vae)")
    weight: float = Field(default=2.0, ge=0.0, description="λ_OE (reference: 2)")
    margin: float = Field(default=1.0, ge=0.0, description="score margin the outliers must clear")
    mode: Literal["absolute", "relative"] = Field(default="relative", description=(
        "absolute: s_out ≥ margin; relative: s_out ≥ mean(s_in) + margin"))
    batch_size: int | None = Field(default=None, ge=1, description="outlier jets per step (default: optim.batch_size)")


class VAELossConfig(StrictModel):
    beta: float = Field(default=0.1, ge=0.0, description="KL weight β (reference: 0.1)")
    score: Literal["elbo", "recon", "kl"] = Field(default="elbo", description=(
        "per-jet score used by the outlier margin and DisCo"))
    disco_weight: float = Field(default=0.0, ge=0.0, description="λ_DisCo (reference: 100); 0 disables DisCo")
    outlier: OutlierConfig = Field(default_factory=OutlierConfig)


class VAEConfig(StrictModel):
    method: Literal["vae", "oe-vae"] = "vae"
    model: VAEModelConfig = Field(default_factory=VAEModelConfig)
    loss: VAELossConfig = Field(default_factory=VAELossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    data: DataConfig = Field(default_factory=lambda: DataConfig(features=["part_deta", "part_dphi", "part_pt_rel"]))
    train: TrainConfig = Field(default_factory=TrainConfig)

    def check(self) -> None:
        """Cross-field checks, raised as one-line errors naming the key (pydantic would echo the whole config)."""
        outliers = self.loss.outlier.labels or []
        if self.method == "oe-vae" and not outliers:
            raise JbotEdgeError("loss.outlier.labels: method oe-vae needs an outlier-exposure sample, e.g. "
                                "loss.outlier.labels=[h]")
        if self.method == "oe-vae" and self.loss.outlier.file is None and not self.data.train_labels:
            raise JbotEdgeError("--train-labels: oe-vae takes its outliers from the training file, so the "
                                "training jets must be restricted to background labels (e.g. --train-labels q,g)")
        if self.method == "oe-vae" and set(outliers) & set(self.data.train_labels or []):
            raise JbotEdgeError(f"loss.outlier.labels {outliers} must not overlap --train-labels "
                                f"{self.data.train_labels}")


class VAEMethod(BaselineMethod):
    names = VAE_METHODS
    config_cls = VAEConfig

    def build(self) -> nn.Module:
        self.config.check()
        self.model_config = vae_config_dict(self.config.model, len(self.spec.features), self.spec.n_particles)
        self._outliers: Iterator | None = None
        return build_vae(self.model_config)

    def start(self, step: int) -> None:
        cfg = self.config
        if cfg.method != "oe-vae":
            return
        o = cfg.loss.outlier
        path = o.file or cfg.data.file
        batch = o.batch_size or cfg.optim.batch_size
        try:
            stream = JetStream(path, self.spec, batch, o.labels, cfg.train.seed + 7919, 0, 1,
                               cfg.data.block_jets, cfg.data.shuffle_buffer_jets)
        except JbotEdgeError as exc:
            raise JbotEdgeError(f"loss.outlier: {exc}") from exc
        n = stream.batches_per_epoch
        self._outliers = stream.batches(StreamPosition(step // n, step % n), self.device)

    def stop(self) -> None:
        if self._outliers is not None:
            self._outliers.close()  # stops the stream's reader thread

    def _score(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        beta, kind = self.config.loss.beta, self.config.loss.score
        if kind == "recon":
            return terms["recon"]
        if kind == "kl":
            return terms["kl"]
        return terms["recon"] + beta * terms["kl"]

    def training_step(self, x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator,
                      labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        lc = self.config.loss
        vae: ConstituentVAE = self.module  # type: ignore[assignment]
        terms = vae.losses(x, mask, generator)
        elbo = terms["recon"].mean() + lc.beta * terms["kl"].mean()
        out = {"recon": terms["recon"].mean().detach(), "kl": terms["kl"].mean().detach(), "elbo": elbo.detach()}
        loss = elbo
        if self._outliers is not None:
            _, xo, mo = next(self._outliers)
            s_out = self._score(vae.losses(xo, mo, generator))
            oe = margin_loss(self._score(terms), s_out, lc.outlier.margin, lc.outlier.mode)
            loss = loss + lc.outlier.weight * oe
            out.update(oe=oe.detach(), outlier_score=s_out.mean().detach())
        if lc.disco_weight > 0:
            dcor = distance_correlation(self._score(terms), jet_mass_from_inputs(x, mask, self.spec))
            loss = loss + lc.disco_weight * dcor
            out["disco"] = dcor.detach()
        out["loss"] = loss
        return out

    def export(self) -> tuple[nn.Module, dict[str, Any]]:
        return self.module, self.model_config
