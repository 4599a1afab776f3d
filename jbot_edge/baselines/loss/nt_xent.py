"""NT-Xent (normalised temperature-scaled cross entropy), the SimCLR / JetCLR contrastive objective.

For a batch of N pairs ``(z_i, z'_i)`` the 2N L2-normalised vectors form N positive pairs; every other vector in
the batch is a negative. With cosine similarities ``s`` and temperature τ::

    ℓ(i, j) = −log( exp(s_ij / τ) / Σ_{k ≠ i} exp(s_ik / τ) ),   loss = mean over the 2N anchors

(JetCLR: τ = 0.1.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Mean NT-Xent over the 2N anchors of the paired views ``z1, z2 [N, D]`` (normalised here)."""
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"nt_xent_loss needs two [N, D] tensors of equal shape, got {tuple(z1.shape)}, "
                         f"{tuple(z2.shape)}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=-1)
    logits = z @ z.T / temperature
    # An anchor is never its own negative.
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, positives)
