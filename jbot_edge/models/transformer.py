"""The jBOT encoder: a post-LayerNorm transformer over particle tokens with a learnable [CLS] token.

Follows the authors' Keras reference (arXiv 2601.11719): ``Dense(F→d)`` token embedding, a zero-initialised
[CLS] token prepended to the particles, blocks of ``MHA → add+LN → FFN(4d, GELU) → add+LN`` (post-LN, dropout
after attention and FFN), and one projection head ``Dense(8p, GELU) → Dense(p) → L2-normalise`` shared by the
[CLS] and the particle tokens. There are no positional embeddings: particles form a set.

Deliberate, switchable differences from the reference:

* ``input_norm`` (default ``standardize``): the raw inputs are log-transformed (pT-like) and standardised inside
  the encoder, with statistics fitted on the training data (:mod:`jbot_edge.models.input_norm`). Without it the
  token embedding of the reference inputs is dominated by the constant ``mask`` column and short runs do not
  learn; ``model.input_norm=none`` reproduces the reference.
* ``dropout`` default 0 (reference 0.2): with ~26k parameters and short runs, dropout mainly slows the student.
* ``padding_mask`` (default on): padded particle slots are excluded as attention *keys*. The reference has no
  attention mask and relies on the all-zero padded inputs (with their 0 "mask" feature); set
  ``model.padding_mask=false`` to reproduce it exactly.
* ``layer_norm_eps`` (default 1e-5, PyTorch's) — the reference uses 1e-6; ``head_dim`` (default ``d / heads``) —
  Keras' ``MultiHeadAttention(num_heads, key_dim)`` allows ``heads · key_dim ≠ d`` (the published 64/6/4 models
  use ``key_dim = 64 // 6 = 10``). :mod:`jbot_edge.models.keras_weights` sets both when importing published
  weights. The FFN's ``nn.GELU()`` is the exact erf form, as Keras' ``"gelu"``.
* masked-particle modelling (iBOT) replaces the embedded tokens of masked particles by a learnable mask token
  (initialised N(0, 0.02)); the encoder takes the boolean ``token_mask`` for that.

``build_encoder(model_config)`` rebuilds the backbone from the ``model_config`` dictionary stored in
``teacher.pt`` (see :mod:`jbot_edge.pretrain.artifact`), so downstream fine-tuning gets the identical module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from jbot_edge.config import StrictModel
from jbot_edge.models.input_norm import InputNormalizer, InputNormStats


class ModelConfig(StrictModel):
    """Architecture of the backbone and projection head (the ``model:`` section of a pretrain config)."""

    embed_dim: int = Field(default=32, ge=1, description="token width d")
    num_heads: int = Field(default=4, ge=1)
    num_layers: int = Field(default=2, ge=1)
    head_dim: int | None = Field(default=None, ge=1, description=(
        "width of one attention head; null = embed_dim / num_heads (Keras key_dim may differ)"))
    layer_norm_eps: float = Field(default=1e-5, gt=0.0, description="LayerNorm epsilon (reference: 1e-6)")
    ffn_ratio: int = Field(default=4, ge=1, description="FFN hidden width = ffn_ratio · d")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="after attention and FFN (reference: 0.2)")
    padding_mask: bool = Field(default=True, description="mask padded particles as attention keys "
                                                         "(the reference implementation has no mask)")
    proj_dim: int = Field(default=16, ge=2, description="projection output p = number of softmax dimensions")
    proj_hidden_ratio: int = Field(default=8, ge=1, description="projection hidden width = ratio · p")
    input_norm: Literal["standardize", "none"] = Field(default="standardize", description=(
        "per-feature input normalisation inside the encoder (log pT, common angle scale, standardise), fitted on "
        "the training data; 'none' feeds the raw inputs like the reference (see jbot_edge.models.input_norm)"))
    input_norm_stats: InputNormStats | None = Field(default=None, description=(
        "fitted normalisation; leave null: pretrain fits it on the training data and stores it in teacher.pt"))

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        if self.head_dim is None and self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim={self.embed_dim} must be divisible by num_heads={self.num_heads}")
        return self


def keras_init(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases, the Keras defaults of the reference implementation.

    PyTorch's default (small uniform weights, non-zero biases) makes the untrained network map all jets to almost
    the same projection, so the sharpened teacher starts closer to the uniform-collapse fixed point.
    """
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


class PostLNBlock(nn.Module):
    """``x = LN(x + Drop(MHA(x))); x = LN(x + Drop(FFN(x)))`` — the reference's post-LN transformer block."""

    def __init__(self, dim: int, num_heads: int, ffn_ratio: int, dropout: float, *,
                 head_dim: int | None = None, eps: float = 1e-5):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim or dim // num_heads
        inner = num_heads * self.head_dim
        self.qkv = nn.Linear(dim, 3 * inner)
        self.attn_out = nn.Linear(inner, dim)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_ratio * dim), nn.GELU(), nn.Linear(ffn_ratio * dim, dim))
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        b, n, _ = x.shape
        h, hd = self.num_heads, self.head_dim
        q, k, v = self.qkv(x).view(b, n, 3, h, hd).permute(2, 0, 3, 1, 4).unbind(0)
        # scaled_dot_product_attention picks the fused (flash / memory-efficient) kernel where one applies.
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        a = a.transpose(1, 2).reshape(b, n, h * hd)
        x = self.norm1(x + self.drop(self.attn_out(a)))
        return self.norm2(x + self.drop(self.ffn(x)))


class JetEncoder(nn.Module):
    """Particle tokens → (raw [CLS] ``[B, d]``, particle tokens ``[B, P, d]``).

    ``forward(x [B, P, F], mask [B, P] bool (True = real particle), token_mask [B, P] bool | None)``;
    ``token_mask`` marks particles whose embedding is replaced by the learnable mask token (iBOT).
    """

    def __init__(self, in_features: int, config: ModelConfig):
        super().__init__()
        self.config = config
        self.in_features = int(in_features)
        d = config.embed_dim
        self.input_norm = (InputNormalizer(self.in_features, config.input_norm_stats)
                           if config.input_norm == "standardize" else None)
        self.embed = nn.Linear(self.in_features, d)
        # The reference initialises [CLS] to zero; the mask token follows BEiT/iBOT (truncated-normal-like 0.02).
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.mask_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.blocks = nn.ModuleList(
            PostLNBlock(d, config.num_heads, config.ffn_ratio, config.dropout, head_dim=config.head_dim,
                        eps=config.layer_norm_eps)
            for _ in range(config.num_layers)
        )
        self.apply(keras_init)

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, token_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.input_norm is not None:
            x = self.input_norm(x, mask)
        tokens = self.embed(x)
        if token_mask is not None:
            tokens = torch.where(token_mask.unsqueeze(-1), self.mask_token.to(tokens.dtype), tokens)
        cls = self.cls_token.to(tokens.dtype).expand(tokens.shape[0], -1, -1)
        h = torch.cat([cls, tokens], dim=1)
        attn_mask = None
        if self.config.padding_mask:
            # Keys only: [CLS] is always a valid key, so no query row is ever fully masked (no NaNs).
            keys = torch.cat([torch.ones_like(mask[:, :1]), mask.bool()], dim=1)
            attn_mask = keys[:, None, None, :]
        for block in self.blocks:
            h = block(h, attn_mask)
        return h[:, 0], h[:, 1:]


class ProjectionHead(nn.Module):
    """``Linear(d→h·p) → GELU → Linear(→p) → L2-normalise``; applied to [CLS] and particle tokens alike."""

    def __init__(self, in_dim: int, out_dim: int, hidden_ratio: int = 8):
        super().__init__()
        hidden = hidden_ratio * out_dim
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
        self.out_dim = out_dim
        self.apply(keras_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(x), dim=-1, eps=1e-6)


def model_config_dict(config: ModelConfig, in_features: int) -> dict[str, Any]:
    """The plain-type dictionary stored in artifacts: the architecture (with the fitted ``input_norm_stats``)
    plus the input width."""
    return {**config.model_dump(mode="json"), "in_features": int(in_features)}


def build_encoder(model_config: Mapping[str, Any] | ModelConfig, in_features: int | None = None) -> JetEncoder:
    """Rebuild the backbone from an artifact's ``model_config`` (which carries ``in_features``)."""
    if isinstance(model_config, ModelConfig):
        config, stored_in = model_config, None
    else:
        fields = dict(model_config)
        stored_in = fields.pop("in_features", None)
        # Artifacts written before input normalisation existed fed raw inputs.
        fields.setdefault("input_norm", "none")
        config = ModelConfig.model_validate(fields)
    width = in_features if in_features is not None else stored_in
    if width is None:
        raise ValueError("build_encoder needs in_features (from model_config['in_features'] or the argument)")
    return JetEncoder(int(width), config)


def build_head(config: ModelConfig) -> ProjectionHead:
    return ProjectionHead(config.embed_dim, config.proj_dim, config.proj_hidden_ratio)
