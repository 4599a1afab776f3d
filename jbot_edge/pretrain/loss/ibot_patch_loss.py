"""Particle-level iBOT loss: teacher/student CE on *masked* particle positions only, same view.

The student sees the view with masked particles replaced by the mask token; the teacher sees the same view
unmasked. Per jet, the CE is averaged over that jet's masked particles, then averaged over jets that have at
least one masked particle (DINOv2's ``iBOTPatchLoss.forward`` normalisation). The centre is separate from the
[CLS] one and is an EMA of the teacher outputs at masked positions (mean over all ranks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jbot_edge.pretrain import distributed


class IBOTPatchLoss(nn.Module):
    def __init__(self, out_dim: int, student_temp: float = 0.1, teacher_temp: float = 0.04,
                 center_momentum: float = 0.9):
        super().__init__()
        self.student_temp = student_temp
        self.teacher_temp = teacher_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, 1, out_dim))

    @torch.no_grad()
    def softmax_center_teacher(self, teacher_tokens: torch.Tensor) -> torch.Tensor:
        return F.softmax((teacher_tokens.float() - self.center) / self.teacher_temp, dim=-1)

    def forward(self, student_tokens: torch.Tensor, teacher_probs: torch.Tensor,
                token_mask: torch.Tensor) -> torch.Tensor:
        """``student_tokens`` [B, P, K] (raw projections), ``teacher_probs`` [B, P, K], ``token_mask`` [B, P]."""
        ce = -(teacher_probs * F.log_softmax(student_tokens.float() / self.student_temp, dim=-1)).sum(dim=-1)
        weights = token_mask.float()
        n_masked = weights.sum(dim=-1)
        per_jet = (ce * weights).sum(dim=-1) / n_masked.clamp(min=1.0)
        has_masked = (n_masked > 0).float()
        return (per_jet * has_masked).sum() / has_masked.sum().clamp(min=1.0)

    @torch.no_grad()
    def update_center(self, teacher_tokens: torch.Tensor, token_mask: torch.Tensor) -> None:
        w = token_mask.float().unsqueeze(-1)
        k = teacher_tokens.shape[-1]
        stats = torch.cat([(teacher_tokens.float() * w).reshape(-1, k).sum(dim=0), w.sum().reshape(1)])
        distributed.all_reduce_sum(stats)
        if stats[-1] <= 0:
            return
        mean = stats[:-1] / stats[-1]
        self.center.mul_(self.center_momentum).add_(mean[None, None], alpha=1.0 - self.center_momentum)
