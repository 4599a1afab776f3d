"""JBOTMetaArch: wires the student, its EMA teacher, the views, the masks and the three losses.

One training step (``forward_backward``), for a batch of jets:

1. two augmented views u, v (:class:`~jbot_edge.pretrain.augmentations.JetAugmenter`);
2. a pT-fraction particle mask per view (:func:`~jbot_edge.pretrain.masking.pt_fraction_mask`);
3. teacher (eval mode, no grad) on u and v *unmasked*; student on u and v *masked* — both views concatenated
   into one batch so there is a single forward per network (and a single DDP all-reduce);
4. jet-level DINO loss cross-view (student u ↔ teacher v, student v ↔ teacher u), particle-level iBOT loss on
   masked positions same view (student u ↔ teacher u, v ↔ v), KoLeo on the raw student [CLS] of view u;
   with ``outlier_exposure.enabled``, pseudo-anomalies made from the batch (augmented and masked like a view) ride
   along in the student's forward, and a BCE term asks a linear head on the raw [CLS] to tell them from view u;
5. backward; then the [CLS] and particle centres are updated with the teacher outputs of this step.

The teacher is updated separately (:meth:`update_teacher`) after the optimiser step, as in DINO/DINOv2.
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Any

import torch
from pydantic import Field, model_validator
from torch import nn

from jbot_edge.config import StrictModel
from jbot_edge.data.preprocessing import InputSpec
from jbot_edge.errors import JbotEdgeError
from jbot_edge.models.transformer import (JetEncoder, ModelConfig, ProjectionHead, build_encoder, build_head,
                                          pair_feature_columns)
from jbot_edge.pretrain.augmentations import AugmentationConfig, JetAugmenter
from jbot_edge.pretrain.local_crops import LocalCropMaker, LocalCropsConfig
from jbot_edge.pretrain.loss import (DINOClsTokenLoss, IBOTPatchLoss, KoLeoLoss, OutlierExposureLoss,
                                     OutlierExposureLossConfig, PseudoAnomalyMaker)
from jbot_edge.pretrain.masking import pt_fraction_mask


class MaskingConfig(StrictModel):
    enabled: bool = True
    ratio_min: float = Field(default=0.0, ge=0.0, le=1.0)
    ratio_max: float = Field(default=0.5, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> MaskingConfig:
        if self.ratio_min > self.ratio_max:
            raise ValueError(f"ratio_min={self.ratio_min} must not exceed ratio_max={self.ratio_max}")
        return self


class LossConfig(StrictModel):
    student_temp: float = Field(default=0.1, gt=0.0)
    teacher_temp: float = Field(default=0.04, gt=0.0)
    center_momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    dino_weight: float = Field(default=1.0, ge=0.0)
    ibot_weight: float = Field(default=1.0, ge=0.0)
    koleo_weight: float = Field(default=0.1, ge=0.0, description="reference 0.01, DINOv2 0.1")
    teacher_momentum_start: float = Field(default=0.996, ge=0.0, le=1.0)
    teacher_momentum_end: float = Field(default=1.0, ge=0.0, le=1.0)
    teacher_ema_horizon: float = Field(default=0.05, ge=0.0, le=1.0, description=(
        "cap the teacher's EMA time constant 1/(1−m) at this fraction of the run's total steps (short runs); "
        "0 = always use teacher_momentum_start (reference)"))


def effective_momentum_start(start: float, total_steps: int, horizon: float) -> float:
    """The starting teacher momentum, capped so that the EMA time constant fits ``horizon`` of the run.

    0.996 (time constant 250 steps) is tuned for DINO/jBOT's ~10^5-step runs. In a run of a few hundred steps,
    0.996 → 1 moves the teacher only ~1/3 of the way from its random initialisation towards the student (Σ(1−m)
    ≈ 0.4), so the evaluated teacher is essentially untrained. With ``horizon`` h the start is
    ``min(start, 1 − 1/(h·T))``: unchanged for long runs (h = 0.05, T = 78k steps → cap 0.99974), 0.9 for T = 200.
    """
    if horizon <= 0 or total_steps <= 0:
        return start
    return min(start, max(0.0, 1.0 - 1.0 / (horizon * total_steps)))


def teacher_momentum(step: int, total_steps: int, start: float, end: float) -> float:
    """Cosine schedule from ``start`` (step 0) to ``end`` (last step), as in DINO."""
    if total_steps <= 1:
        return end
    progress = min(step / (total_steps - 1), 1.0)
    return end - (end - start) * (math.cos(math.pi * progress) + 1) / 2


class StudentNetwork(nn.Module):
    """Backbone + shared projection head: ``(raw [CLS], projected [CLS], projected tokens)``."""

    def __init__(self, backbone: JetEncoder, head: ProjectionHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor, mask: torch.Tensor, token_mask: torch.Tensor | None = None):
        cls, tokens = self.backbone(x, mask, token_mask)
        return cls, self.head(cls), self.head(tokens)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * probs.clamp(min=1e-12).log()).sum(dim=-1)


def with_input_features(model: ModelConfig, spec: InputSpec) -> ModelConfig:
    """The model config with ``input_features`` = the input columns (stored in teacher.pt, so the pair bias of a
    rebuilt encoder reads the same columns); a one-line error when ``model.pair_bias`` lacks a column it needs."""
    model = model.model_copy(update={"input_features": list(spec.features)})
    if model.pair_bias:
        try:
            pair_feature_columns(model.input_features)
        except ValueError as exc:
            raise JbotEdgeError(f"model.pair_bias / data.features: {exc}") from exc
    return model


class JBOTMetaArch(nn.Module):
    def __init__(self, spec: InputSpec, model: ModelConfig, loss: LossConfig,
                 augment: AugmentationConfig, masking: MaskingConfig,
                 outlier_exposure: OutlierExposureLossConfig | None = None,
                 local_crops: LocalCropsConfig | None = None):
        super().__init__()
        self.spec = spec
        model = model if model.input_features is not None else with_input_features(model, spec)
        self.model_config = model
        self.loss_config = loss
        self.masking = masking
        self.student = StudentNetwork(build_encoder(model, len(spec.features)), build_head(model))
        self.teacher = copy.deepcopy(self.student)
        self.teacher.requires_grad_(False)
        self.dino_loss = DINOClsTokenLoss(model.proj_dim, loss.student_temp, loss.teacher_temp, loss.center_momentum)
        self.ibot_loss = IBOTPatchLoss(model.proj_dim, loss.student_temp, loss.teacher_temp, loss.center_momentum)
        self.koleo_loss = KoLeoLoss()
        self.augmenter = JetAugmenter(spec, augment)
        self.outlier_exposure = outlier_exposure or OutlierExposureLossConfig()
        self.pseudo_anomalies = (PseudoAnomalyMaker(spec, self.outlier_exposure)
                                 if self.outlier_exposure.enabled else None)
        # Lives outside the student (not copied into the teacher, not saved with the backbone); under DDP its
        # gradient is averaged by sync_auxiliary_grads.
        self.oe_loss = OutlierExposureLoss(model.embed_dim) if self.pseudo_anomalies is not None else None
        self.local_crops = local_crops or LocalCropsConfig()
        self.crop_maker = LocalCropMaker(spec, self.local_crops) if self.local_crops.n_crops > 0 else None
        # The student the optimiser sees; replaced by its DDP wrapper under torchrun.
        self.student_forward: nn.Module = self.student

    def train(self, mode: bool = True) -> JBOTMetaArch:
        super().train(mode)
        self.teacher.eval()  # the teacher never uses dropout
        return self

    def make_view(self, x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None):
        """One augmented view and its particle mask: ``(x, mask, token_mask)``."""
        xv, mv = self.augmenter(x, mask, generator)
        if self.masking.enabled:
            tm, _ = pt_fraction_mask(self.augmenter.particle_pt(xv, mv), mv, generator,
                                     self.masking.ratio_min, self.masking.ratio_max)
        else:
            tm = torch.zeros_like(mv)
        return xv, mv, tm

    def make_views(self, x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None):
        """Two augmented views with their particle masks, concatenated along the batch: ``[u; v]``."""
        views = [self.make_view(x, mask, generator) for _ in range(2)]
        return tuple(torch.cat(parts) for parts in zip(*views))

    def forward_backward(self, x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None,
                         autocast: contextlib.AbstractContextManager | None = None,
                         update: bool = True) -> dict[str, torch.Tensor]:
        """One step's losses (backward already done) and monitoring scalars, all as 0-d tensors.

        ``update=False`` (validation, under ``torch.no_grad``): no backward and no centre update."""
        cfg = self.loss_config
        autocast = autocast or contextlib.nullcontext()
        n = x.shape[0]
        views, view_masks, token_masks = self.make_views(x, mask, generator)
        with torch.no_grad(), autocast:
            _, t_cls, t_tok = self.teacher(views, view_masks)
        # One student forward over [u; v; local crops; pseudo-anomalies] (a single DDP all-reduce).
        student_in = (views, view_masks, token_masks)
        n_crop_jets = 0
        if self.crop_maker is not None:
            crops, crop_masks = self.crop_maker.make(x, mask, self.augmenter, generator)
            n_crop_jets = crops.shape[0]
            student_in = tuple(torch.cat([a, b]) for a, b in
                               zip(student_in, (crops, crop_masks, torch.zeros_like(crop_masks))))
        if self.pseudo_anomalies is not None:
            anomalies = self.make_view(*self.pseudo_anomalies.make(x, mask, generator), generator)
            student_in = tuple(torch.cat([a, b]) for a, b in zip(student_in, anomalies))
        with autocast:
            s_raw, s_cls, s_tok = self.student_forward(*student_in)
        anomaly_raw = s_raw[2 * n + n_crop_jets:]
        crop_cls = s_cls[2 * n:2 * n + n_crop_jets]
        s_raw, s_cls, s_tok = s_raw[:2 * n], s_cls[:2 * n], s_tok[:2 * n]
        t_cls_probs = self.dino_loss.softmax_center_teacher(t_cls)
        t_tok_probs = self.ibot_loss.softmax_center_teacher(t_tok)
        student_cls = list(s_cls.chunk(2)) + (list(crop_cls.chunk(n_crop_jets // n)) if n_crop_jets else [])
        dino = self.dino_loss(student_cls, list(t_cls_probs.chunk(2)))
        ibot = self.ibot_loss(s_tok, t_tok_probs, token_masks)
        koleo = self.koleo_loss(s_raw[:n])
        total = cfg.dino_weight * dino + cfg.ibot_weight * ibot + cfg.koleo_weight * koleo
        extra: dict[str, torch.Tensor] = {}
        if self.oe_loss is not None:
            oe, oe_accuracy = self.oe_loss(s_raw[:n], anomaly_raw)
            total = total + self.outlier_exposure.weight * oe
            extra = {"oe_loss": oe.detach(), "oe_accuracy": oe_accuracy}
        if update:
            total.backward()
            self.dino_loss.update_center(t_cls)
            self.ibot_loss.update_center(t_tok, token_masks)
        with torch.no_grad():
            s_probs = torch.softmax(s_cls.float() / cfg.student_temp, dim=-1)
            metrics = {
                "loss": total.detach(),
                "dino_loss": dino.detach(),
                "ibot_loss": ibot.detach(),
                "koleo_loss": koleo.detach(),
                "teacher_entropy": entropy(t_cls_probs).mean(),
                "teacher_marginal_entropy": entropy(t_cls_probs.mean(dim=0)),
                "student_entropy": entropy(s_probs).mean(),
                "teacher_patch_entropy": (entropy(t_tok_probs) * token_masks).sum()
                / token_masks.sum().clamp(min=1),
                "center_norm": self.dino_loss.center.norm(),
                "patch_center_norm": self.ibot_loss.center.norm(),
                "masked_fraction": token_masks.sum() / view_masks.sum().clamp(min=1),
                **extra,
            }
        return metrics

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the optimiser updates: the student, plus the outlier-exposure head when enabled."""
        extra = list(self.oe_loss.parameters()) if self.oe_loss is not None else []
        return list(self.student.parameters()) + extra

    def sync_auxiliary_grads(self) -> None:
        """Average the gradients of modules outside the DDP-wrapped student across processes."""
        if self.oe_loss is None:
            return
        from jbot_edge.pretrain import distributed

        for p in self.oe_loss.parameters():
            if p.grad is not None:
                p.grad.copy_(distributed.all_reduce_mean(p.grad))

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """teacher ← m · teacher + (1 − m) · student, parameter by parameter."""
        t_params = list(self.teacher.parameters())
        s_params = [p.detach() for p in self.student.parameters()]
        torch._foreach_mul_(t_params, momentum)
        torch._foreach_add_(t_params, s_params, alpha=1.0 - momentum)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW groups: no decay on biases, LayerNorms and the [CLS]/mask tokens (1-d or token parameters)."""
        decay, no_decay = [], []
        named = list(self.student.named_parameters())
        if self.oe_loss is not None:
            named += [(f"oe_loss.{k}", p) for k, p in self.oe_loss.named_parameters()]
        for name, p in named:
            (no_decay if p.ndim <= 1 or name.endswith(("cls_token", "mask_token")) else decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
