"""pT-fraction masking: statistics, ≥1 masked and ≥1 visible, never padding."""

from __future__ import annotations

import numpy as np
import torch

from jbot_edge.pretrain.masking import pt_fraction_mask


def _jets(n: int = 4000, p: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n_real = torch.randint(1, p + 1, (n,), generator=g)
    mask = torch.arange(p)[None] < n_real[:, None]
    pt = torch.distributions.Exponential(1.0).sample((n, p)) * mask
    pt = pt / pt.sum(1, keepdim=True)
    return pt, mask


def test_masks_real_particles_only_with_one_masked_and_one_visible() -> None:
    pt, mask = _jets()
    token_mask, _ = pt_fraction_mask(pt, mask, torch.Generator().manual_seed(1))
    assert not (token_mask & ~mask).any(), "padding was masked"
    n_real = mask.sum(1)
    n_masked = token_mask.sum(1)
    multi = n_real >= 2
    assert (n_masked[multi] >= 1).all()
    assert (n_masked[multi] <= n_real[multi] - 1).all()
    assert (n_masked[~multi] == 0).all(), "single-particle jets cannot keep one visible"


def test_masked_pt_fraction_is_closest_prefix_to_target() -> None:
    pt, mask = _jets(n=3000, p=30, seed=2)
    token_mask, r = pt_fraction_mask(pt, mask, torch.Generator().manual_seed(3))
    frac = (pt * token_mask).sum(1)
    multi = mask.sum(1) >= 5
    # with many soft particles the achieved fraction tracks the target r ~ U(0, 0.5)
    err = (frac - r)[multi].abs()
    assert float(err.median()) < 0.1
    assert 0.0 <= float(r.min()) and float(r.max()) <= 0.5
    corr = np.corrcoef(frac[multi].numpy(), r[multi].numpy())[0, 1]
    assert corr > 0.6
    # average masked fraction near E[r] = 0.25 (≥1 masked pushes it slightly up)
    assert 0.18 < float(frac[multi].mean()) < 0.4


def test_masking_is_random_and_reproducible() -> None:
    pt, mask = _jets(n=500)
    a, _ = pt_fraction_mask(pt, mask, torch.Generator().manual_seed(7))
    b, _ = pt_fraction_mask(pt, mask, torch.Generator().manual_seed(7))
    c, _ = pt_fraction_mask(pt, mask, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # not always the leading (hardest) particles: the subset is random
    first_masked = a[:, 0][mask.sum(1) >= 5].float().mean()
    assert 0.05 < float(first_masked) < 0.95
