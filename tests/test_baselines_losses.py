"""Baseline objectives and the sculpting metric against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jbot_edge.baselines.loss import (distance_correlation, gaussian_kl, margin_loss, masked_reconstruction_error,
                                      nt_xent_loss, vicreg_loss)
from jbot_edge.baselines.loss.vicreg import vicreg_terms
from jbot_edge.baselines.physics import jet_mass_from_inputs
from jbot_edge.data.preprocessing import InputSpec
from jbot_edge.evaluate.sculpting import jensen_shannon, mass_sculpting


def test_nt_xent_two_orthogonal_pairs():
    e = torch.eye(2)
    # Each anchor: positive similarity 1, two negatives at 0 → −log(e^{1/τ} / (e^{1/τ} + 2)).
    for tau in (1.0, 0.1):
        expected = math.log(1 + 2 * math.exp(-1 / tau))
        assert nt_xent_loss(e, e.clone(), tau).item() == pytest.approx(expected, rel=1e-3)  # float32


def test_nt_xent_prefers_aligned_views_and_is_scale_invariant():
    torch.manual_seed(0)
    z = torch.randn(8, 4)
    aligned = nt_xent_loss(z, 3 * z, 0.1)
    shuffled = nt_xent_loss(z, z[torch.randperm(8)], 0.1)
    assert aligned < shuffled
    assert aligned.item() == pytest.approx(nt_xent_loss(z, z, 0.1).item(), rel=1e-5)


def test_gaussian_kl_hand_computed():
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)]])
    # ½[(1 + 1 − 0 − 1) + (0 + 2 − log 2 − 1)] = 1 − ½ log 2
    assert gaussian_kl(mu, logvar).item() == pytest.approx(1 - 0.5 * math.log(2))
    assert gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max().item() == 0.0


def test_masked_reconstruction_ignores_padding():
    x = torch.tensor([[[1.0, 2.0], [0.0, 0.0]]])
    x_hat = torch.tensor([[[0.0, 2.0], [5.0, 5.0]]])
    mask = torch.tensor([[True, False]])
    assert masked_reconstruction_error(x, x_hat, mask).item() == pytest.approx(0.5)   # (1² + 0²) / 2
    assert masked_reconstruction_error(x, x_hat, torch.ones_like(mask)).item() == pytest.approx(51 / 4)


def test_margin_loss_modes():
    inl, out = torch.tensor([1.0, 3.0]), torch.tensor([0.5, 4.0])
    assert margin_loss(inl, out, 1.0, "absolute").item() == pytest.approx(0.25)        # relu(1−.5), relu(1−4)
    assert margin_loss(inl, out, 1.0, "relative").item() == pytest.approx((2.5 + 0.0) / 2)  # m + mean(in) = 3


def _dcor_reference(x: np.ndarray, y: np.ndarray) -> float:
    def centred(v):
        d = np.abs(v[:, None] - v[None, :])
        return d - d.mean(0) - d.mean(1)[:, None] + d.mean()

    a, b = centred(x), centred(y)
    return float((a * b).mean() / np.sqrt((a * a).mean() * (b * b).mean()))


def test_distance_correlation_exact_cases():
    x = torch.tensor([0.0, 1.0, 2.0, 5.0])
    assert distance_correlation(x, 2 * x + 1).item() == pytest.approx(1.0, abs=1e-6)
    # Balanced 2×2 design: x and y are independent, and the sample dCor² is exactly 0.
    a, b = torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.tensor([0.0, 1.0, 0.0, 1.0])
    assert distance_correlation(a, b).item() == pytest.approx(0.0, abs=1e-7)
    # A non-monotone dependence that Pearson correlation misses entirely.
    t = torch.linspace(-1, 1, 41)
    assert abs(float(np.corrcoef(t, t**2)[0, 1])) < 1e-6
    assert distance_correlation(t, t**2).item() > 0.2
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=50), rng.normal(size=50)
    v = v + 0.5 * u
    assert distance_correlation(torch.tensor(u), torch.tensor(v)).item() == pytest.approx(_dcor_reference(u, v),
                                                                                         rel=1e-5)


def test_distance_correlation_is_differentiable():
    x = torch.randn(32, requires_grad=True)
    distance_correlation(x, x.detach() ** 2 + torch.randn(32)).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_vicreg_terms_hand_computed():
    z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    t = vicreg_terms(z, z.clone())
    assert t["invariance"].item() == 0.0
    # dim 0: std √2 ≥ 1 → 0; dim 1: std √1e-4 → 1 − 0.01; mean over dims, summed over both views.
    assert t["variance"].item() == pytest.approx(2 * 0.99 / 2, rel=1e-5)
    assert t["covariance"].item() == pytest.approx(0.0)
    zc = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    # cov = [[2, 2], [2, 2]]: off-diagonal squares 8, / D = 4 per view
    assert vicreg_terms(zc, zc)["covariance"].item() == pytest.approx(8.0)
    loss, _ = vicreg_loss(z, z + 1.0, sim_weight=1.0, var_weight=0.0, cov_weight=0.0)
    assert loss.item() == pytest.approx(1.0)   # MSE of a unit shift


def test_jensen_shannon_hand_computed():
    assert jensen_shannon(np.array([1, 2, 3]), np.array([2, 4, 6])) == pytest.approx(0.0)
    assert jensen_shannon(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)
    expected = 0.5 * math.log2(1 / 0.75) + 0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(2))
    assert jensen_shannon(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(expected)


def test_mass_sculpting_flags_mass_correlated_scores():
    rng = np.random.default_rng(1)
    mass = rng.gamma(3.0, 20.0, size=20000)
    sculpted = mass_sculpting(mass + rng.normal(0, 5, mass.size), mass)["by_bkg_eff"]["0.1"]
    neutral = mass_sculpting(rng.normal(size=mass.size), mass)["by_bkg_eff"]["0.1"]
    assert sculpted["jsd"] > 0.3 and sculpted["n_pass"] == 2000
    assert neutral["jsd"] < 3 * neutral["jsd_random"] and neutral["jsd"] < 0.05


def test_jet_mass_from_two_massless_particles():
    a = 0.3
    # Two 1-GeV particles at Δη = ±a, Δφ = 0: m = 2 sinh(a) for massless constituents.
    x = torch.tensor([[[a, 0.0, 1.0], [-a, 0.0, 1.0], [0.0, 0.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])
    spec = InputSpec(features=["part_deta", "part_dphi", "part_pt"], n_particles=3)
    assert jet_mass_from_inputs(x, mask, spec).item() == pytest.approx(2 * math.sinh(a), rel=1e-5)
