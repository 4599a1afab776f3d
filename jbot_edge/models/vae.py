"""Variational autoencoder over a jet's constituents (Cheng et al., arXiv 2007.01850).

The P × F normalised constituent inputs (padding = 0) are flattened and encoded by an MLP (reference widths
256-128-64) into a Gaussian latent (reference: 10 dimensions); a mirrored MLP decodes the latent mean/sample back
to P × F. Anomaly scores (:meth:`ConstituentVAE.anomaly_scores`): reconstruction error of the latent mean and the
KL term of the posterior, both per jet.

``forward(x, mask) -> (μ [B, latent], tokens [B, P, 0])`` is the :class:`~jbot_edge.pretrain.artifact.Teacher`
encoder contract: ``evaluate`` fits its scorers (Mahalanobis, kNN, ...) in the latent-mean space; the VAE's own
reconstruction and KL scores are available from :meth:`anomaly_scores` (and reported by
``benchmarks/baselines_compare.py``). A VAE has no per-particle tokens, so the token tensor is empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from jbot_edge.config import StrictModel
from jbot_edge.models.input_norm import InputNormalizer, InputNormStats


class VAEModelConfig(StrictModel):
    hidden: list[int] = Field(default_factory=lambda: [256, 128, 64], description="encoder widths (decoder mirrors)")
    latent_dim: int = Field(default=10, ge=1)
    reconstruct_padding: bool = Field(default=True, description=(
        "reconstruct padded slots too (as zeros), so the VAE models the multiplicity as in the reference; false "
        "scores real particles only"))
    input_norm: Literal["standardize", "none"] = "standardize"
    input_norm_stats: InputNormStats | None = None


def masked_reconstruction_error(x: torch.Tensor, x_hat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-jet MSE ``[B]`` over real particles (``mask [B, P]``) and all ``F`` features."""
    m = mask.to(x.dtype).unsqueeze(-1)
    sq = (x - x_hat).pow(2) * m
    return sq.sum(dim=(1, 2)) / (m.sum(dim=(1, 2)) * x.shape[-1]).clamp(min=1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-jet KL(N(μ, exp(logvar)) ‖ N(0, I)) ``[B]``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(dim=-1)


def _mlp(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


class ConstituentVAE(nn.Module):
    def __init__(self, in_features: int, n_particles: int, config: VAEModelConfig):
        super().__init__()
        self.config = config
        self.in_features, self.n_particles = int(in_features), int(n_particles)
        flat = self.in_features * self.n_particles
        self.input_norm = (InputNormalizer(self.in_features, config.input_norm_stats)
                           if config.input_norm == "standardize" else None)
        self.encoder_mlp = _mlp([flat, *config.hidden])
        self.to_mu = nn.Linear(config.hidden[-1], config.latent_dim)
        self.to_logvar = nn.Linear(config.hidden[-1], config.latent_dim)
        self.decoder = nn.Sequential(_mlp([config.latent_dim, *reversed(config.hidden)]),
                                     nn.Linear(config.hidden[0], flat))

    @property
    def embed_dim(self) -> int:
        return self.config.latent_dim

    def normalised(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.input_norm(x, mask.bool()) if self.input_norm is not None else x * mask.unsqueeze(-1).to(x.dtype)

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(normalised inputs [B, P, F], μ, log σ²)."""
        xn = self.normalised(x, mask)
        h = self.encoder_mlp(xn.flatten(1))
        # Clamped so that an early large step cannot overflow exp(logvar) in the KL.
        return xn, self.to_mu(h), self.to_logvar(h).clamp(-12.0, 12.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(z.shape[0], self.n_particles, self.in_features)

    def losses(self, x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
               ) -> dict[str, torch.Tensor]:
        """Per-jet ``recon`` (of a posterior sample) and ``kl`` for training."""
        xn, mu, logvar = self.encode(x, mask)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        x_hat = self.decode(mu + eps * (0.5 * logvar).exp())
        return {"recon": self._recon(xn, x_hat, mask), "kl": gaussian_kl(mu, logvar)}

    def _recon(self, xn: torch.Tensor, x_hat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weight = torch.ones_like(mask, dtype=torch.bool) if self.config.reconstruct_padding else mask.bool()
        return masked_reconstruction_error(xn, x_hat, weight)

    @torch.no_grad()
    def anomaly_scores(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Deterministic per-jet scores: ``recon`` (decoding μ) and ``kl`` (higher = more anomalous)."""
        xn, mu, logvar = self.encode(x, mask)
        return {"recon": self._recon(xn, self.decode(mu), mask), "kl": gaussian_kl(mu, logvar)}

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, mu, _ = self.encode(x, mask)
        return mu, mu.new_zeros(x.shape[0], x.shape[1], 0)


def vae_config_dict(config: VAEModelConfig, in_features: int, n_particles: int) -> dict[str, Any]:
    return {**config.model_dump(mode="json"), "in_features": int(in_features), "n_particles": int(n_particles)}


def build_vae(model_config: Mapping[str, Any]) -> ConstituentVAE:
    fields = dict(model_config)
    in_features, n_particles = fields.pop("in_features"), fields.pop("n_particles")
    return ConstituentVAE(int(in_features), int(n_particles), VAEModelConfig.model_validate(fields))
