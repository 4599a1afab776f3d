"""Set encoder with pooling, used by JetCLR, SimCLR, VICReg and SupCon (jets and event-level object sets).

Follows JetCLR (arXiv 2108.04253): ``Linear(F→d)`` token embedding, post-LN transformer blocks whose attention
logits are biased towards hard particles (``+ α·log pT`` of the *key*, α = 0.5 in JetCLR; padding keys get −∞),
no [CLS] token, and (pT-weighted) sum pooling over the real particles; then an MLP projection head. The inputs
are normalised inside the model (:class:`jbot_edge.models.input_norm.InputNormalizer`), fitted on training data.

``backbone: mlp`` (Metzger et al. 2502.15926 compare MLP and transformer encoders) replaces the transformer by an
MLP over the flattened, normalised, zero-padded P × F inputs (``num_layers`` layers of width ``embed_dim``, GELU);
its output is the representation (no pooling, no per-particle tokens: the token tensor is ``[B, P, 0]``).

``forward(x, mask) -> (embedding [B, D], tokens [B, P, d])`` is the teacher encoder contract
(:mod:`jbot_edge.models.registry`). ``embedding`` is the pooled representation (``embed_output: pooled``, JetCLR's representation
for the linear classifier test) or the projection-head output (``embed_output: projection``: the 4–16-dim
embedding of arXiv 2502.15926, where anomaly detection happens). ``project(x, mask)`` is the training output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from jbot_edge.config import StrictModel
from jbot_edge.models.input_norm import InputNormalizer, InputNormStats
from jbot_edge.models.transformer import PostLNBlock

#: Columns that give a particle's pT for the attention bias and pT-weighted pooling, in order of preference.
PT_FEATURES = ("part_pt", "part_pt_rel")


class SetEncoderConfig(StrictModel):
    backbone: Literal["transformer", "mlp"] = Field(default="transformer", description=(
        "transformer: attention over the particles + pooling (JetCLR); mlp: MLP on the flattened padded inputs"))
    embed_dim: int = Field(default=64, ge=1, description="token width d (JetCLR: 1000)")
    num_heads: int = Field(default=4, ge=1)
    num_layers: int = Field(default=2, ge=1, description="JetCLR: 4")
    ffn_ratio: int = Field(default=4, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    attention_bias: float = Field(default=0.5, ge=0.0, description="α in the key logit bias α·log pT; 0 disables")
    pooling: Literal["pt_sum", "sum", "mean"] = Field(default="pt_sum", description=(
        "pt_sum: Σ (pT_i / Σ pT) h_i (JetCLR); sum: Σ h_i; mean: average over real particles"))
    head_dims: list[int] = Field(default_factory=lambda: [64, 64], description=(
        "projection head widths; the last is the contrastive output dimension"))
    embed_output: Literal["pooled", "projection"] = Field(default="pooled", description=(
        "what evaluate sees as the embedding: the pooled representation or the projection-head output"))
    normalize_projection: bool = Field(default=False, description="L2-normalise the projection output")
    input_norm: Literal["standardize", "none"] = "standardize"
    input_norm_stats: InputNormStats | None = None

    @model_validator(mode="after")
    def _check(self) -> SetEncoderConfig:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim={self.embed_dim} must be divisible by num_heads={self.num_heads}")
        if not self.head_dims:
            raise ValueError("head_dims needs at least one layer")
        return self


class SetEncoder(nn.Module):
    def __init__(self, in_features: int, config: SetEncoderConfig, pt_index: int | None,
                 n_particles: int | None = None):
        super().__init__()
        self.config = config
        self.in_features = int(in_features)
        self.pt_index = pt_index
        d = config.embed_dim
        self.input_norm = (InputNormalizer(self.in_features, config.input_norm_stats)
                           if config.input_norm == "standardize" else None)
        if config.backbone == "mlp":
            if not n_particles:
                raise ValueError("backbone mlp needs n_particles (the flattened input width is P × F)")
            self.n_particles = int(n_particles)
            # ``blocks`` so that fine-tuning's layer-wise learning-rate decay treats both backbones alike.
            widths = [self.n_particles * self.in_features, *([d] * config.num_layers)]
            self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(a, b), nn.GELU())
                                        for a, b in zip(widths[:-1], widths[1:]))
        else:
            self.embed = nn.Linear(self.in_features, d)
            self.blocks = nn.ModuleList(PostLNBlock(d, config.num_heads, config.ffn_ratio, config.dropout)
                                        for _ in range(config.num_layers))
        layers: list[nn.Module] = []
        width = d
        for i, out in enumerate(config.head_dims):
            layers.append(nn.Linear(width, out))
            if i < len(config.head_dims) - 1:
                layers.append(nn.GELU())
            width = out
        self.head = nn.Sequential(*layers)

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim if self.config.embed_output == "pooled" else self.config.head_dims[-1]

    def _pt(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        if self.pt_index is None:
            return None
        return torch.where(mask, x[..., self.pt_index].clamp(min=1e-8), torch.ones_like(x[..., 0]))

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled representation [B, d], tokens [B, P, d])."""
        mask = mask.bool()
        if self.config.backbone == "mlp":
            return self._encode_mlp(x, mask)
        pt = self._pt(x, mask)
        h = self.embed(self.input_norm(x, mask) if self.input_norm is not None else x)
        bias = torch.zeros(mask.shape, dtype=h.dtype, device=h.device)
        if pt is not None and self.config.attention_bias > 0:
            bias = self.config.attention_bias * pt.log().to(h.dtype)
        bias = bias.masked_fill(~mask, float("-inf"))[:, None, None, :]
        for block in self.blocks:
            h = block(h, bias)
        m = mask.unsqueeze(-1).to(h.dtype)
        if self.config.pooling == "pt_sum" and pt is not None:
            w = torch.where(mask, pt, torch.zeros_like(pt)).to(h.dtype)
            pooled = (h * (w / w.sum(dim=1, keepdim=True).clamp(min=1e-12)).unsqueeze(-1)).sum(dim=1)
        elif self.config.pooling == "mean":
            pooled = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)
        else:  # "sum", or pt_sum without a pT column
            pooled = (h * m).sum(dim=1)
        return pooled, h

    def _encode_mlp(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xn = self.input_norm(x, mask) if self.input_norm is not None else x
        h = (xn * mask.unsqueeze(-1).to(xn.dtype)).flatten(1)
        for layer in self.blocks:
            h = layer(h)
        return h, h.new_zeros(x.shape[0], x.shape[1], 0)

    def project(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        z = self.head(self.encode(x, mask)[0])
        return F.normalize(z, dim=-1) if self.config.normalize_projection else z

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled, tokens = self.encode(x, mask)
        if self.config.embed_output == "pooled":
            return pooled, tokens
        z = self.head(pooled)
        return (F.normalize(z, dim=-1) if self.config.normalize_projection else z), tokens


def pt_index_for(features: Sequence[str]) -> int | None:
    for name in PT_FEATURES:
        if name in features:
            return list(features).index(name)
    return None


def set_encoder_config_dict(config: SetEncoderConfig, features: Sequence[str], n_particles: int) -> dict[str, Any]:
    """The ``model_config`` stored in ``teacher.pt``: the config plus the input width, pT column and P."""
    return {**config.model_dump(mode="json"), "in_features": len(features), "pt_index": pt_index_for(features),
            "n_particles": int(n_particles)}


def build_set_encoder(model_config: Mapping[str, Any]) -> SetEncoder:
    fields = dict(model_config)
    in_features, pt_index = fields.pop("in_features"), fields.pop("pt_index", None)
    n_particles = fields.pop("n_particles", None)  # absent in files written before the mlp backbone
    return SetEncoder(int(in_features), SetEncoderConfig.model_validate(fields), pt_index, n_particles)
