"""The encoder's pairwise interaction bias (``model.pair_bias``): features against hand-computed values, masking."""

from __future__ import annotations

import math

import pytest
import torch

from jbot_edge.models.transformer import ModelConfig, build_encoder, model_config_dict, pair_features

FEATURES = ["part_deta", "part_dphi", "part_pt_rel", "part_pt", "mask"]


def _jets(n: int = 3, p: int = 8, n_real: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n, p, dtype=torch.bool)
    mask[:, :n_real] = True
    pt = torch.rand(n, p, generator=g) * 100 + 1
    x = torch.stack([torch.randn(n, p, generator=g) * 0.2, torch.randn(n, p, generator=g) * 0.2,
                     pt / pt.sum(1, keepdim=True), pt, torch.ones(n, p)], -1) * mask[..., None]
    return x, mask


def test_pair_features_match_a_hand_computed_pair() -> None:
    # two particles: pT 30 and 10 GeV at (Δη, Δφ) = (0.1, 0.0) and (−0.2, 0.4); pT relative to the jet sum 40
    x = torch.tensor([[[0.1, 0.0, 0.75, 30.0, 1.0], [-0.2, 0.4, 0.25, 10.0, 1.0]]])
    valid = torch.ones(1, 2, dtype=torch.bool)
    got = pair_features(x, valid, (0, 1, 3))[0, 0, 1]
    delta = math.hypot(0.3, 0.4)                                   # 0.5
    z1, z2 = 0.75, 0.25
    m2 = 2 * z1 * z2 * (math.cosh(0.3) - math.cos(0.4))            # m²/pT_jet², massless particles
    want = [math.log(delta), math.log(z2 * delta), math.log(z2 / (z1 + z2)), math.log(m2)]
    torch.testing.assert_close(got, torch.tensor(want), rtol=1e-5, atol=1e-6)
    # symmetric, and the pT column's scale does not matter (part_pt_rel gives the same features)
    torch.testing.assert_close(got, pair_features(x, valid, (0, 1, 2))[0, 1, 0], rtol=1e-5, atol=1e-6)


def test_masked_and_padded_particles_do_not_reach_the_output() -> None:
    encoder = build_encoder(ModelConfig(pair_bias=True, input_features=FEATURES), in_features=5).eval()
    x, mask = _jets()
    token_mask = torch.zeros_like(mask)
    token_mask[:, 2] = True
    moved = x.clone()
    moved[:, 2, :4] *= 1.7        # a masked particle's kinematics change
    moved[:, 7, :4] = 5.0         # garbage in a padded slot
    with torch.no_grad():
        cls, _ = encoder(x, mask, token_mask)
        cls_moved, _ = encoder(moved, mask, token_mask)
        cls_unmasked, _ = encoder(moved, mask)
    torch.testing.assert_close(cls, cls_moved)
    # ... while the same change to a visible particle does move the [CLS] (the bias is not inert)
    assert (cls_unmasked - cls).abs().max() > 1e-3


def test_pair_bias_rebuilds_from_the_artifact_dictionary() -> None:
    cfg = ModelConfig(pair_bias=True, input_features=FEATURES)
    encoder = build_encoder(cfg, in_features=5).eval()
    rebuilt = build_encoder(model_config_dict(cfg, 5)).eval()
    rebuilt.load_state_dict(encoder.state_dict())
    x, mask = _jets()
    with torch.no_grad():
        torch.testing.assert_close(encoder(x, mask)[0], rebuilt(x, mask)[0])


def test_pair_bias_without_angles_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="part_deta, part_dphi"):
        build_encoder(ModelConfig(pair_bias=True, input_features=["part_pt_rel", "mask"]), in_features=2)
