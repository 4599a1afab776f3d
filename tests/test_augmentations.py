"""Batched jet augmentations: physical invariants, padding untouched, InputSpec-driven columns."""

from __future__ import annotations

import math

import pytest
import torch

from jbot_edge.data.preprocessing import InputSpec
from jbot_edge.errors import JbotEdgeError
from jbot_edge.pretrain.augmentations import AugmentationConfig, JetAugmenter

ONLY = dict(rotation=False, smearing=False, splitting=False, translation=False)


def _batch(spec: InputSpec, n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    p = spec.n_particles
    n_real = torch.randint(1, p + 1, (n,), generator=g)
    mask = torch.arange(p)[None] < n_real[:, None]
    pt = torch.rand((n, p), generator=g) * mask
    pt = pt / pt.sum(1, keepdim=True)
    cols = {
        "part_deta": torch.randn((n, p), generator=g) * 0.2 * mask,
        "part_dphi": torch.randn((n, p), generator=g) * 0.2 * mask,
        "part_pt_rel": pt,
        "part_pt": pt * 800.0,
        "mask": mask.float(),
        "part_charge": torch.randint(-1, 2, (n, p), generator=g).float() * mask,
    }
    cols["part_log_pt_rel"] = torch.where(mask, pt.clamp(min=1e-12).log(), torch.zeros_like(pt))
    cols["part_dr"] = torch.hypot(cols["part_deta"], cols["part_dphi"])
    x = torch.stack([cols[f] for f in spec.features], dim=-1)
    return x, mask


def _col(x: torch.Tensor, spec: InputSpec, name: str) -> torch.Tensor:
    return x[..., spec.index(name)]


def test_splitting_conserves_pt_and_centroid_and_fills_empty_slots() -> None:
    spec = InputSpec(features=["part_deta", "part_dphi", "part_pt_rel", "mask", "part_log_pt_rel", "part_charge"],
                     n_particles=20)
    x, mask = _batch(spec)
    aug = JetAugmenter(spec, AugmentationConfig(**{**ONLY, "splitting": True}))
    y, new_mask = aug(x, mask, torch.Generator().manual_seed(1))
    pt0, pt1 = _col(x, spec, "part_pt_rel"), _col(y, spec, "part_pt_rel")
    torch.testing.assert_close(pt1.sum(1), pt0.sum(1), rtol=1e-5, atol=1e-6)
    for c in ("part_deta", "part_dphi"):
        torch.testing.assert_close((pt1 * _col(y, spec, c)).sum(1), (pt0 * _col(x, spec, c)).sum(1),
                                   rtol=1e-4, atol=1e-6)
    n0, n1 = mask.sum(1), new_mask.sum(1)
    assert torch.equal(n1, torch.minimum(2 * n0, torch.full_like(n0, spec.n_particles)))
    assert not (new_mask[:, 1:] & ~new_mask[:, :-1]).any(), "padding must stay a suffix"
    assert (y[~new_mask] == 0).all(), "padding must stay all-zero"
    assert torch.equal(_col(y, spec, "mask"), new_mask.float())
    # log pT column follows the split pT; charge is inherited
    torch.testing.assert_close(_col(y, spec, "part_log_pt_rel")[new_mask], pt1[new_mask].log(), rtol=1e-4,
                               atol=1e-5)
    assert set(_col(y, spec, "part_charge")[new_mask].unique().tolist()) <= {-1.0, 0.0, 1.0}
    # split fractions within [0.3, 0.7] of the parent: every new pT is ≥ 0.3·min parent pT
    assert (pt1[new_mask] > 0).all()


def test_rotation_preserves_distance_to_axis_and_padding() -> None:
    spec = InputSpec(features=["part_deta", "part_dphi", "part_pt_rel", "part_dr", "mask"], n_particles=16)
    x, mask = _batch(spec, seed=3)
    aug = JetAugmenter(spec, AugmentationConfig(**{**ONLY, "rotation": True}))
    y, new_mask = aug(x, mask, torch.Generator().manual_seed(2))
    assert torch.equal(new_mask, mask)
    r0 = torch.hypot(_col(x, spec, "part_deta"), _col(x, spec, "part_dphi"))
    r1 = torch.hypot(_col(y, spec, "part_deta"), _col(y, spec, "part_dphi"))
    torch.testing.assert_close(r1, r0, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(_col(y, spec, "part_deta"), _col(x, spec, "part_deta"))
    assert (y[~mask] == 0).all()
    # one angle per jet: the angle between particles of a jet is unchanged
    ang0 = torch.atan2(_col(x, spec, "part_dphi"), _col(x, spec, "part_deta"))
    ang1 = torch.atan2(_col(y, spec, "part_dphi"), _col(y, spec, "part_deta"))
    shift = torch.remainder(ang1 - ang0, 2 * math.pi)
    jets = mask.sum(1) >= 2
    spread = (shift[jets][:, 1] - shift[jets][:, 0] + math.pi) % (2 * math.pi) - math.pi
    assert spread.abs().max() < 1e-4


def test_smearing_scales_as_one_over_pt_fraction() -> None:
    spec = InputSpec(features=["part_deta", "part_dphi", "part_pt_rel", "mask"], n_particles=2)
    n = 20000
    x = torch.zeros(n, 2, 4)
    x[:, 0, 2], x[:, 1, 2] = 0.1, 0.001  # hard and soft particle
    x[..., 3] = 1.0
    mask = torch.ones(n, 2, dtype=torch.bool)
    aug = JetAugmenter(spec, AugmentationConfig(**{**ONLY, "smearing": True, "smear_rel": 3e-4}))
    y, _ = aug(x, mask, torch.Generator().manual_seed(0))
    std = y[..., 0].std(0)
    assert float(std[0]) == pytest.approx(3e-4 / 0.1, rel=0.05)
    assert float(std[1]) == pytest.approx(3e-4 / 0.001, rel=0.05)
    torch.testing.assert_close(y[..., 2:], x[..., 2:])


def test_absolute_pt_smearing_uses_gev_and_padding_untouched() -> None:
    spec = InputSpec(features=["part_deta", "part_dphi", "part_pt", "mask"], n_particles=3)
    n = 20000
    x = torch.zeros(n, 3, 4)
    x[:, 0, 2], x[:, 1, 2] = 50.0, 1.0
    x[:, :2, 3] = 1.0
    mask = torch.tensor([True, True, False]).expand(n, 3)
    aug = JetAugmenter(spec, AugmentationConfig(**{**ONLY, "smearing": True, "smear_gev": 0.1}))
    y, _ = aug(x, mask, torch.Generator().manual_seed(0))
    std = y[..., 1].std(0)
    assert float(std[0]) == pytest.approx(0.1 / 50, rel=0.05)
    assert float(std[1]) == pytest.approx(0.1, rel=0.05)
    assert (y[:, 2] == 0).all()


def test_full_pipeline_keeps_padding_zero_and_is_reproducible() -> None:
    spec = InputSpec(n_particles=30)
    x, mask = _batch(spec, seed=5)
    aug = JetAugmenter(spec, AugmentationConfig(translation=True))
    y1, m1 = aug(x, mask, torch.Generator().manual_seed(9))
    y2, m2 = aug(x, mask, torch.Generator().manual_seed(9))
    assert torch.equal(y1, y2) and torch.equal(m1, m2)
    assert (y1[~m1] == 0).all() and torch.isfinite(y1).all()
    assert (m1 | ~mask).all(), "real particles are never dropped"


def test_missing_columns_are_a_clear_error() -> None:
    with pytest.raises(JbotEdgeError, match="part_deta"):
        JetAugmenter(InputSpec(features=["part_pt_rel", "mask"]), AugmentationConfig())
    with pytest.raises(JbotEdgeError, match="pT input"):
        JetAugmenter(InputSpec(features=["part_deta", "part_dphi", "mask"]), AugmentationConfig())
    with pytest.raises(JbotEdgeError, match="absolute angles"):
        JetAugmenter(InputSpec(features=["part_deta", "part_dphi", "part_pt_rel", "part_eta"]),
                     AugmentationConfig())
