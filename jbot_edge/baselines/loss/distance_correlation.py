"""Distance correlation (Székely et al. 2007), the DisCo decorrelation penalty (Kasieczka & Shih, 2001.05310).

For samples ``x, y [N]`` with optional weights, the doubly-centred distance matrices ``A, B`` give
``dCov²(x, y) = mean(A ∘ B)`` and ``dCor² = dCov²(x, y) / sqrt(dCov²(x, x) · dCov²(y, y))`` ∈ [0, 1]; it is 0 iff
x and y are independent (in the large-N limit), unlike Pearson correlation which misses non-monotone dependence.
DisCo adds ``λ · dCor²(score, mass)`` on background jets (2007.01850 uses λ = 100).
"""

from __future__ import annotations

import torch


def _centred_distances(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    d = (v[:, None] - v[None, :]).abs()
    row = (d * w[None, :]).sum(dim=1, keepdim=True)   # weighted row means (w sums to 1)
    col = (d * w[:, None]).sum(dim=0, keepdim=True)
    total = (row.squeeze(1) * w).sum()
    return d - row - col + total


def distance_correlation(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None,
                         power: int = 2) -> torch.Tensor:
    """Squared distance correlation dCor²(x, y) (``power=1``: its square root). Differentiable in x and y."""
    x, y = x.reshape(-1).float(), y.reshape(-1).float()
    if x.shape != y.shape or x.numel() < 2:
        raise ValueError(f"distance_correlation needs two 1-D samples of equal length ≥ 2, got {x.numel()}, "
                         f"{y.numel()}")
    w = torch.ones_like(x) if weights is None else weights.reshape(-1).float()
    w = w / w.sum()
    a, b = _centred_distances(x, w), _centred_distances(y, w)
    ww = w[:, None] * w[None, :]
    xy = (a * b * ww).sum()
    xx = (a * a * ww).sum()
    yy = (b * b * ww).sum()
    dcor2 = xy / torch.sqrt(xx * yy).clamp(min=1e-12)
    return dcor2 if power == 2 else dcor2.clamp(min=0).sqrt()
