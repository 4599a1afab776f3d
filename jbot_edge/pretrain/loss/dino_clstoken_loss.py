"""Jet-level DINO loss on the [CLS] projections, with an EMA centre (DINO / DINOv2 style).

teacher:  p_t = softmax((z_t − c) / τ_t)          (centred + sharpened, no gradient)
student:  log p_s = log_softmax(z_s / τ_s)
loss:     mean over jets and over cross-view pairs (i ≠ j) of  −Σ_k p_t^(j)_k · log p_s^(i)_k
centre:   c ← m·c + (1 − m)·mean_batch(z_t)         (mean over all ranks)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from jbot_edge.pretrain import distributed


class DINOClsTokenLoss(nn.Module):
    def __init__(self, out_dim: int, student_temp: float = 0.1, teacher_temp: float = 0.04,
                 center_momentum: float = 0.9):
        super().__init__()
        self.student_temp = student_temp
        self.teacher_temp = teacher_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    @torch.no_grad()
    def softmax_center_teacher(self, teacher_output: torch.Tensor) -> torch.Tensor:
        """Teacher probabilities with the current centre (the centre is updated afterwards)."""
        return F.softmax((teacher_output.float() - self.center) / self.teacher_temp, dim=-1)

    def forward(self, student_outputs: Sequence[torch.Tensor], teacher_probs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Cross-view CE: student view i against teacher view j for every i ≠ j, averaged over pairs and jets."""
        total = student_outputs[0].new_zeros((), dtype=torch.float32)
        n_pairs = 0
        for i, s in enumerate(student_outputs):
            log_p = F.log_softmax(s.float() / self.student_temp, dim=-1)
            for j, t in enumerate(teacher_probs):
                if i == j:
                    continue
                total = total - (t * log_p).sum(dim=-1).mean()
                n_pairs += 1
        return total / max(n_pairs, 1)

    @torch.no_grad()
    def update_center(self, teacher_output: torch.Tensor) -> None:
        batch = teacher_output.float().reshape(-1, teacher_output.shape[-1])
        stats = torch.cat([batch.sum(dim=0), batch.new_tensor([batch.shape[0]])])
        distributed.all_reduce_sum(stats)
        mean = stats[:-1] / stats[-1].clamp(min=1.0)
        self.center.mul_(self.center_momentum).add_(mean[None], alpha=1.0 - self.center_momentum)
