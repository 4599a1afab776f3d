"""Backbone [CLS] → MLP classifier, the head of the jBOT reference's fine-tuning (``build_mlp`` in the authors' code).

Used by the fine-tuning study (:mod:`jbot_edge.evaluate.finetune`) and by imported published classifiers
(:mod:`jbot_edge.models.keras_weights`). The head is ``d → 2d → d → classes`` with GELU and dropout (0.2 in the
reference); it returns logits — the reference's softmax is applied by the caller.
"""

from __future__ import annotations

import torch
from torch import nn


class JetClassifier(nn.Module):
    """Backbone [CLS] → MLP head ``d → 2d → d → classes`` (GELU, dropout)."""

    def __init__(self, encoder: nn.Module, n_classes: int, dropout: float = 0.2):
        super().__init__()
        d = encoder.embed_dim
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * d, d),
                                  nn.GELU(), nn.Dropout(dropout), nn.Linear(d, n_classes))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        cls, _ = self.encoder(x, mask)
        return self.head(cls)
