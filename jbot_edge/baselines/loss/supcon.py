"""Supervised contrastive loss (SupCon, Khosla et al. arXiv 2004.11362), the supervised arm of Metzger et al.

For 2N L2-normalised projections (two views of N jets) with labels ``y``, every other view with the same label is
a positive of anchor i (at least its own other view)::

    ℓ_i = −1/|P(i)| Σ_{p ∈ P(i)} log( exp(s_ip / τ) / Σ_{a ≠ i} exp(s_ia / τ) ),   loss = mean_i ℓ_i

With all labels distinct it equals NT-Xent (:mod:`.nt_xent`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supcon_loss(z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Mean SupCon over the 2N anchors of the paired views ``z1, z2 [N, D]`` with ``labels [N]``."""
    if labels is None or labels.shape != z1.shape[:1] or z1.shape != z2.shape:
        raise ValueError("supcon_loss needs two [N, D] views and labels [N]")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=-1)
    y = torch.cat([labels, labels])
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (y[:, None] == y[None, :]) & ~self_mask
    return -(log_prob.masked_fill(~positives, 0.0).sum(dim=1) / positives.sum(dim=1)).mean()
