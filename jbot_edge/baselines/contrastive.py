"""Contrastive methods on particle/object sets: JetCLR (NT-Xent), SimCLR, VICReg and SupCon.

One trainer for the four (``pretrain --method jetclr|simclr|vicreg|supcon``): two views of every jet (or event) from the
shared batched augmentations (:mod:`jbot_edge.pretrain.augmentations`), a :class:`~jbot_edge.models.set_encoder.SetEncoder`, and
the objective of the method:

* ``jetclr`` (Dillon et al. 2108.04253): NT-Xent, τ = 0.1; rotation + translation on both views, soft smearing
  (σ = Λ_soft / pT, Λ_soft = 0.1 GeV with absolute ``part_pt`` inputs) + collinear splitting on one view; the
  embedding evaluate sees is the pooled representation.
* ``simclr`` / ``vicreg`` (Metzger et al. 2502.15926, event-level anomaly detection): NT-Xent or VICReg with a
  low-dimensional (4–16) projection, which is also the embedding evaluate sees (``embed_output: projection``).
* ``supcon`` (Khosla et al. 2004.11362, the supervised arm of Metzger et al.): supervised contrastive loss with the
  process labels of the training file (every jet/event of the same label is a positive), same views and
  projection as ``simclr``. Train it on a file with several labels (``--train-labels`` of at least two).

The encoder (``model.backbone``) is the set transformer or an MLP on the flattened inputs (Metzger et al. compare
both); see :mod:`jbot_edge.models.set_encoder`.

View recipe (``views``): the ``both`` augmentations are applied independently to each view, the ``first`` ones
additionally to view 1 only. Every switch of :class:`~jbot_edge.pretrain.augmentations.AugmentationConfig` is
available in each, which is how the augmentation ablation (benchmarks/jetclr_ablation.py) is run.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from jbot_edge.baselines.loss.nt_xent import nt_xent_loss
from jbot_edge.baselines.loss.supcon import supcon_loss
from jbot_edge.baselines.loss.vicreg import vicreg_loss
from jbot_edge.models.set_encoder import SetEncoder, SetEncoderConfig, build_set_encoder, set_encoder_config_dict
from jbot_edge.baselines.train import BaselineMethod
from jbot_edge.config import StrictModel
from jbot_edge.pretrain.augmentations import AugmentationConfig, JetAugmenter
from jbot_edge.pretrain.train import DataConfig, OptimConfig, TrainConfig

CONTRASTIVE_METHODS = ("jetclr", "simclr", "vicreg", "supcon")


class ViewsConfig(StrictModel):
    both: AugmentationConfig = Field(default_factory=lambda: AugmentationConfig(
        rotation=True, translation=True, smearing=False, splitting=False))
    first: AugmentationConfig = Field(default_factory=lambda: AugmentationConfig(
        rotation=False, translation=False, smearing=True, splitting=True))


class ContrastiveLossConfig(StrictModel):
    temperature: float = Field(default=0.1, gt=0.0, description="NT-Xent / SupCon τ (JetCLR: 0.1)")
    sim_weight: float = Field(default=25.0, ge=0.0, description="VICReg λ (invariance)")
    var_weight: float = Field(default=25.0, ge=0.0, description="VICReg μ (variance)")
    cov_weight: float = Field(default=1.0, ge=0.0, description="VICReg ν (covariance)")
    gamma: float = Field(default=1.0, gt=0.0, description="VICReg target standard deviation")


class ContrastiveConfig(StrictModel):
    method: Literal["jetclr", "simclr", "vicreg", "supcon"] = "jetclr"
    model: SetEncoderConfig = Field(default_factory=SetEncoderConfig)
    views: ViewsConfig = Field(default_factory=ViewsConfig)
    loss: ContrastiveLossConfig = Field(default_factory=ContrastiveLossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    data: DataConfig = Field(default_factory=lambda: DataConfig(features=["part_deta", "part_dphi", "part_pt"]))
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _vicreg_needs_batch(self) -> ContrastiveConfig:
        if self.method == "vicreg" and self.optim.batch_size < 4:
            raise ValueError("vicreg needs optim.batch_size ≥ 4 (variance and covariance are batch statistics)")
        if self.method == "supcon" and self.data.train_labels is not None and len(self.data.train_labels) < 2:
            raise ValueError("supcon needs at least two process labels to contrast (--train-labels a,b or none)")
        return self


class ContrastiveMethod(BaselineMethod):
    names = CONTRASTIVE_METHODS
    config_cls = ContrastiveConfig

    def build(self) -> nn.Module:
        cfg = self.config
        self.needs_labels = cfg.method == "supcon"
        self.both = JetAugmenter(self.spec, cfg.views.both)
        self.first = JetAugmenter(self.spec, cfg.views.first)
        self.model_config = set_encoder_config_dict(cfg.model, self.spec.features, self.spec.n_particles)
        return build_set_encoder(self.model_config)

    def views(self, x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator
              ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        x1, m1 = self.both(x, mask, generator)
        x1, m1 = self.first(x1, m1, generator)
        x2, m2 = self.both(x, mask, generator)
        return (x1, m1), (x2, m2)

    def training_step(self, x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator,
                      labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        (x1, m1), (x2, m2) = self.views(x, mask, generator)
        encoder: SetEncoder = self.module  # type: ignore[assignment]
        z1, z2 = encoder.project(x1, m1), encoder.project(x2, m2)
        lc = self.config.loss
        if self.config.method == "vicreg":
            loss, terms = vicreg_loss(z1, z2, lc.sim_weight, lc.var_weight, lc.cov_weight, lc.gamma)
            return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}
        if self.config.method == "supcon":
            loss = supcon_loss(z1, z2, labels, lc.temperature)
        else:
            loss = nt_xent_loss(z1, z2, lc.temperature)
        with torch.no_grad():
            # Alignment: mean cosine similarity of positive pairs (→ 1 as the views are learned to be invariant).
            cos = torch.nn.functional.cosine_similarity(z1, z2, dim=-1).mean()
        return {"loss": loss, "positive_cosine": cos}

    def export(self) -> tuple[nn.Module, dict[str, Any]]:
        return self.module, self.model_config
