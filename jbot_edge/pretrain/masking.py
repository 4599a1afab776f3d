"""pT-fraction particle masking for the iBOT objective (jBOT reference), batched on the training device.

Per jet: draw a target r ~ U(r_min, r_max) (reference: U(0, 0.5)); take the real particles in a random order and
mask the leading k of that order, with k chosen so that their summed pT fraction (normalised to the jet's total
over real particles) is closest to r, subject to 1 ≤ k ≤ n − 1 (at least one masked, at least one visible).

"The random subset whose pT fraction is closest to r" is a subset-sum problem; like the reference we search the
prefixes of one random permutation, which is exact in distribution for the random part and O(P log P) per jet.
Jets with a single real particle cannot have both a masked and a visible particle and are left unmasked. Padding
is never masked.
"""

from __future__ import annotations

import torch


def pt_fraction_mask(
    pt: torch.Tensor,
    mask: torch.Tensor,
    generator: torch.Generator | None = None,
    ratio_min: float = 0.0,
    ratio_max: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(token_mask [B, P] bool, target ratio r [B])`` for pT-like weights ``pt`` and validity ``mask``."""
    b, p = mask.shape
    device = pt.device
    valid = mask.bool()
    n_valid = valid.sum(dim=1)
    weights = torch.where(valid, pt.float().clamp(min=0), torch.zeros((), device=device))
    weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-12)
    # Random order of the real particles; padding sorts last (key 2 > any uniform draw).
    keys = torch.rand((b, p), generator=generator, device=device)
    keys = torch.where(valid, keys, torch.full_like(keys, 2.0))
    order = keys.argsort(dim=1)
    cumulative = torch.gather(weights, 1, order).cumsum(dim=1)
    r = ratio_min + (ratio_max - ratio_min) * torch.rand((b,), generator=generator, device=device)
    # Prefix of length k = position + 1 is allowed for 1 ≤ k ≤ n − 1.
    k = torch.arange(1, p + 1, device=device)[None, :]
    allowed = k <= (n_valid[:, None] - 1)
    cost = torch.where(allowed, (cumulative - r[:, None]).abs(), torch.full_like(cumulative, float("inf")))
    best = cost.argmin(dim=1)
    chosen_in_order = (k - 1 <= best[:, None]) & allowed.any(dim=1, keepdim=True)
    token_mask = torch.zeros_like(valid)
    token_mask.scatter_(1, order, chosen_in_order)
    return token_mask & valid, r
