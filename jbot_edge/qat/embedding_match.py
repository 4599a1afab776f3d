"""Embedding matching: an optional auxiliary distillation target for the student's last hidden layer.

Besides the score, the student can be asked to carry the teacher's representation: a float linear map (training
only — it is not part of ``student.pt`` and never reaches firmware) projects the input of the student's output layer
onto the teacher's standardised raw [CLS] embedding, and ``weight × MSE`` joins the loss. The richer target shapes the
hidden features like the teacher's, which the score alone may not pin down when few training jets are anomalous.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from jbot_edge.config import StrictModel


class EmbeddingMatchingConfig(StrictModel):
    enabled: bool = False
    weight: float = Field(default=0.1, gt=0, description="weight of the embedding MSE next to the score loss")


class EmbeddingMatcher(nn.Module):
    """Captures the student's last hidden layer (the input of ``model.head``) and scores it against the teacher."""

    def __init__(self, student: nn.Module, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.proj = nn.Linear(student.head.in_features, mean.numel())
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float().clamp_min(1e-6))
        self._hidden: torch.Tensor | None = None
        student.head.register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, inputs: tuple, output: object) -> None:
        hidden = inputs[0]
        self._hidden = getattr(hidden, "value", hidden)  # Brevitas may pass a QuantTensor

    def loss(self, teacher_embeddings: torch.Tensor) -> torch.Tensor:
        """MSE between the projected hidden layer of the last forward pass and the standardised teacher [CLS]."""
        assert self._hidden is not None, "run the student forward first"
        target = (teacher_embeddings - self.mean) / self.std
        return nn.functional.mse_loss(self.proj(self._hidden.float()), target)
