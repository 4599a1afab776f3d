"""KoLeo regulariser (Sablayrolles et al. 2019, as in DINOv2): spreads embeddings uniformly within a batch.

loss = −mean_i log(‖x̂_i − x̂_{nn(i)}‖ + ε), x̂ = x/‖x‖, nn(i) the nearest other sample (by cosine).
Applied to the raw student [CLS] of one view (jBOT: λ = 0.01). Computed per process, as in DINOv2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KoLeoLoss(nn.Module):
    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x.float(), dim=-1, eps=self.eps)
        if x.shape[0] < 2:
            return x.new_zeros(())
        with torch.no_grad():
            dots = x @ x.t()
            dots.fill_diagonal_(-2.0)  # below any cosine: a sample is never its own neighbour
            nearest = dots.argmax(dim=1)
        distances = (x - x[nearest]).norm(dim=-1)
        return -torch.log(distances + self.eps).mean()
