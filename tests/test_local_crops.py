"""DINO-style local crops (``local_crops``): crop geometry, the pT-weighted seed, and the wiring into the DINO loss."""

from __future__ import annotations

import pydantic
import pytest
import torch

from jbot_edge.data.preprocessing import InputSpec
from jbot_edge.models.transformer import ModelConfig
from jbot_edge.pretrain.augmentations import AugmentationConfig
from jbot_edge.pretrain.local_crops import LocalCropsConfig, local_crop
from jbot_edge.pretrain.meta_arch import JBOTMetaArch, LossConfig, MaskingConfig

FEATURES = ["part_deta", "part_dphi", "part_pt_rel", "part_pt", "mask"]


def two_cluster_jets(n: int, hard_pt: float = 90.0, soft_pt: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Jets of two 3-particle clusters 0.6 apart in Δη (hard one at −0.3, soft one at +0.3), 2 padding slots."""
    p = 8
    x = torch.zeros(n, p, 5)
    mask = torch.zeros(n, p, dtype=torch.bool)
    mask[:, :6] = True
    offsets = torch.tensor([0.0, 0.02, -0.02])
    x[:, :3, 0] = -0.3 + offsets
    x[:, 3:6, 0] = 0.3 + offsets
    x[:, 0:3, 1] = offsets.flip(0)
    x[:, 3:6, 1] = offsets
    x[:, :3, 3] = hard_pt / 3
    x[:, 3:6, 3] = soft_pt / 3
    x[:, :6, 2] = x[:, :6, 3] / (hard_pt + soft_pt)
    x[:, :6, 4] = 1.0
    return x, mask


def test_a_crop_keeps_one_cluster_compacted_with_zero_padding() -> None:
    x, mask = two_cluster_jets(400)
    g = torch.Generator().manual_seed(0)
    xc, mc = local_crop(x, mask, x[..., 3] * mask, 0, 1, torch.full((400,), 0.2), g)
    assert mc.sum(1).tolist() == [3] * 400                      # one whole cluster, never both
    assert not mc[:, 3:].any()                                  # kept particles first, padding a suffix
    assert (xc[~mc] == 0).all()                                 # dropped slots are all-zero padding
    deta = xc[:, :3, 0]
    assert ((deta < 0).all(1) | (deta > 0).all(1)).all()        # the three kept come from the same cluster
    # pT fractions stay relative to the whole jet: a crop of the soft cluster holds 10 % of the jet
    held = xc[..., 2].sum(1)
    assert (torch.isclose(held, torch.tensor(0.9)) | torch.isclose(held, torch.tensor(0.1))).all()


def test_the_seed_is_drawn_in_proportion_to_pt() -> None:
    x, mask = two_cluster_jets(4000)
    g = torch.Generator().manual_seed(1)
    xc, _ = local_crop(x, mask, x[..., 3] * mask, 0, 1, torch.full((4000,), 0.2), g)
    hard = (xc[:, 0, 0] < 0).float().mean().item()
    assert hard == pytest.approx(0.9, abs=0.02)                 # 90 GeV of 100 in the hard cluster


def test_a_radius_larger_than_the_jet_keeps_every_particle_in_order() -> None:
    x, mask = two_cluster_jets(10)
    xc, mc = local_crop(x, mask, x[..., 3] * mask, 0, 1, torch.full((10,), 5.0), torch.Generator().manual_seed(2))
    assert torch.equal(mc, mask)
    assert torch.equal(xc, x)


def _meta(n_crops: int) -> JBOTMetaArch:
    torch.manual_seed(0)
    model = ModelConfig(embed_dim=16, num_heads=2, num_layers=1, proj_dim=8, input_norm="none")
    return JBOTMetaArch(InputSpec(features=FEATURES, n_particles=8), model, LossConfig(), AugmentationConfig(),
                        MaskingConfig(), local_crops=LocalCropsConfig(n_crops=n_crops, jet_radius=0.8)).train()


def test_crops_enter_the_dino_loss_and_reach_the_student_gradients() -> None:
    x, mask = two_cluster_jets(16)
    metrics, grads = {}, {}
    for n_crops in (0, 2):
        meta = _meta(n_crops)
        metrics[n_crops] = meta.forward_backward(x, mask, torch.Generator().manual_seed(3))
        grads[n_crops] = meta.student.backbone.cls_token.grad.clone()
        assert torch.isfinite(metrics[n_crops]["loss"])
    assert float(metrics[0]["dino_loss"]) != pytest.approx(float(metrics[2]["dino_loss"]))
    assert not torch.allclose(grads[0], grads[2])
    # the global views are drawn before the crops, so they are the same in both runs: iBOT and KoLeo, which see the
    # global views only, come out the same whatever the number of crops
    for key in ("ibot_loss", "koleo_loss", "masked_fraction"):
        assert float(metrics[0][key]) == pytest.approx(float(metrics[2][key]), rel=1e-5), key


def test_crop_radii_must_be_ordered() -> None:
    with pytest.raises(pydantic.ValidationError, match="radius_min"):
        LocalCropsConfig(n_crops=2, radius_min=0.6, radius_max=0.3)
