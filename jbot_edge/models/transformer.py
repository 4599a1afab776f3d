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
* ``pair_bias`` (configs default on, off in the reference and in ``ModelConfig()``): a ParT-style interaction bias
  (Qu, Li, Qian 2022) — an MLP of each particle pair's (ln ΔR, ln kT, ln z, ln m²) adds one bias per head to the
  attention logits of every block (:class:`PairBias`; pairs with a masked or padded particle get none). It reads
  Δη, Δφ and a pT column by name from ``input_features``, which pretrain stores in the model config.
* masked-particle modelling (iBOT) replaces the embedded tokens of masked particles by a learnable mask token
  (initialised N(0, 0.02)); the encoder takes the boolean ``token_mask`` for that.

``build_encoder(model_config)`` rebuilds the backbone from the ``model_config`` dictionary stored in
``teacher.pt`` (see :mod:`jbot_edge.pretrain.artifact`), so downstream fine-tuning gets the identical module.
"""

from __future__ import annotations

import math
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
    pair_bias: bool = Field(default=False, description=(
        "ParT-style pairwise interaction: an MLP of (ln ΔR, ln kT, ln z, ln m²) of each particle pair adds a bias "
        "per head to the attention logits of every block (Qu, Li, Qian 2022); off in the reference"))
    pair_hidden: int = Field(default=8, ge=1, description="hidden width of the pair-bias MLP")
    input_features: list[str] | None = Field(default=None, description=(
        "input column names, in order; leave null: pretrain sets them from data.features (the pair bias finds "
        "Δη, Δφ and a pT column by name)"))

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


PAIR_PT_COLUMNS = ("part_pt", "part_pt_rel", "part_energy")
#: Floor inside the pair features' logs: padded, coincident (split) or zero-pT pairs give a finite, very small value.
PAIR_LOG_FLOOR = 1e-8


def pair_feature_columns(features: list[str] | None) -> tuple[int, int, int]:
    """Column indices of Δη, Δφ and the pT-like column the pair bias reads; a clear error if one is missing."""
    if not features:
        raise ValueError("model.pair_bias needs model.input_features (set by pretrain from data.features)")
    pt = next((c for c in PAIR_PT_COLUMNS if c in features), None)
    missing = [c for c in ("part_deta", "part_dphi") if c not in features] + ([] if pt else ["a pT column"])
    if missing:
        raise ValueError(f"model.pair_bias needs {', '.join(missing)} among the inputs {features}")
    return features.index("part_deta"), features.index("part_dphi"), features.index(pt)


def pair_features(x: torch.Tensor, valid: torch.Tensor, columns: tuple[int, int, int],
                  pairs: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """ln ΔR, ln kT = ln(min(pT) ΔR), ln z = ln(min(pT) / (pT_i + pT_j)) and ln m² (massless particles) of particle
    pairs, from the raw (un-normalised) inputs ``x [B, P, F]``: ``[B, P, P, 4]`` for every pair, or ``[B, n, 4]`` for
    the ``pairs = (i, j)`` index vectors. pT is taken relative to the sum over the ``valid`` particles, so the
    features do not depend on which pT column is the input. All four are symmetric in i and j."""
    eta, phi, pt = (x[..., c].float() for c in columns)
    pt = pt * valid
    pt = pt / pt.sum(dim=1, keepdim=True).clamp(min=PAIR_LOG_FLOOR)
    if pairs is None:
        first, second = (lambda t: t[:, :, None]), (lambda t: t[:, None, :])
    else:
        first, second = (lambda t: t[:, pairs[0]]), (lambda t: t[:, pairs[1]])
    deta, dphi = first(eta) - second(eta), first(phi) - second(phi)
    delta = torch.sqrt(deta.square() + dphi.square())
    pt_i, pt_j = first(pt), second(pt)
    pt_min = torch.minimum(pt_i, pt_j)
    m2 = 2.0 * pt_i * pt_j * (torch.cosh(deta) - torch.cos(dphi))
    feats = torch.stack([delta, pt_min * delta, pt_min / (pt_i + pt_j).clamp(min=PAIR_LOG_FLOOR), m2], dim=-1)
    return feats.clamp(min=PAIR_LOG_FLOOR).log()


class PairBias(nn.Module):
    """Pair features → one attention-logit bias per head, ``[B, heads, 1 + P, 1 + P]`` (0 on the [CLS] row and column
    and on any pair with a padded or masked particle, so a masked particle's kinematics never reach the student).

    The features are symmetric, so the MLP runs on the P(P−1)/2 pairs i < j only (half the cost) and the bias is
    mirrored; a particle's pair with itself has fixed features (ΔR = kT = m² = 0, z = 1/2), hence one learned value
    per head on the diagonal."""

    def __init__(self, columns: tuple[int, int, int], num_heads: int, hidden: int):
        super().__init__()
        self.columns = columns
        # Fixed standardisation (mean, 1/std of real-particle pairs in JetNet-like QCD jets; the features are
        # relative to the jet pT, so these hold across samples): the MLP starts in its useful range.
        self.register_buffer("shift", torch.tensor([-2.0, -6.9, -1.6, -12.4]), persistent=False)
        self.register_buffer("scale", torch.tensor([0.8, 0.8, 1.0, 0.43]), persistent=False)
        floor = math.log(PAIR_LOG_FLOOR)
        self.register_buffer("self_pair", torch.tensor([floor, floor, math.log(0.5), floor]), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(4, hidden), nn.GELU(), nn.Linear(hidden, num_heads))

    def _bias(self, feats: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.mlp(((feats - self.shift) * self.scale).to(dtype))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        b, p = valid.shape
        i, j = torch.triu_indices(p, p, offset=1, device=x.device)
        upper = self._bias(pair_features(x, valid, self.columns, (i, j)), x.dtype)
        upper = upper * (valid[:, i] & valid[:, j])[..., None]
        bias = upper.new_zeros(b, p + 1, p + 1, upper.shape[-1])
        bias[:, i + 1, j + 1] = upper
        bias[:, j + 1, i + 1] = upper
        diagonal = torch.arange(1, p + 1, device=x.device)
        bias[:, diagonal, diagonal] = self._bias(self.self_pair, x.dtype) * valid[..., None]
        return bias.permute(0, 3, 1, 2)


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
        self.pair_bias = (PairBias(pair_feature_columns(config.input_features), config.num_heads, config.pair_hidden)
                          if config.pair_bias else None)
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
        raw = x
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
        if self.pair_bias is not None:
            visible = mask.bool() if token_mask is None else mask.bool() & ~token_mask.bool()
            bias = self.pair_bias(raw, visible)
            attn_mask = bias if attn_mask is None else bias.masked_fill(~attn_mask, float("-inf"))
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
