"""VICReg (Bardes et al., arXiv 2105.04906): variance–invariance–covariance regularisation.

For paired embeddings ``z, z' [N, D]``::

    invariance  = mean_i ||z_i − z'_i||² / D                         (MSE between the views)
    variance    = mean_d relu(γ − sqrt(Var_d(z) + ε))  (+ same for z')   (hinge on each dimension's std)
    covariance  = Σ_{d ≠ e} Cov(z)_de² / D   (+ same for z')          (decorrelates dimensions)
    loss = λ·invariance + μ·variance + ν·covariance    (reference: λ = μ = 25, ν = 1, γ = 1)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4
                 ) -> dict[str, torch.Tensor]:
    """The three VICReg terms (unweighted) for ``z1, z2 [N, D]``, N ≥ 2."""
    if z1.shape != z2.shape or z1.dim() != 2 or z1.shape[0] < 2:
        raise ValueError(f"vicreg needs two [N≥2, D] tensors of equal shape, got {tuple(z1.shape)}, "
                         f"{tuple(z2.shape)}")
    z1, z2 = z1.float(), z2.float()
    d = z1.shape[1]
    invariance = F.mse_loss(z1, z2)

    def variance(z: torch.Tensor) -> torch.Tensor:
        return F.relu(gamma - torch.sqrt(z.var(dim=0) + eps)).mean()

    def covariance(z: torch.Tensor) -> torch.Tensor:
        zc = z - z.mean(dim=0)
        cov = zc.T @ zc / (z.shape[0] - 1)
        off = cov - torch.diag(torch.diagonal(cov))
        return off.pow(2).sum() / d

    return {"invariance": invariance, "variance": variance(z1) + variance(z2),
            "covariance": covariance(z1) + covariance(z2)}


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim_weight: float = 25.0, var_weight: float = 25.0,
                cov_weight: float = 1.0, gamma: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted VICReg loss and its terms."""
    t = vicreg_terms(z1, z2, gamma)
    loss = sim_weight * t["invariance"] + var_weight * t["variance"] + cov_weight * t["covariance"]
    return loss, t
