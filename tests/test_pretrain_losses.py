"""jBOT loss modules against small cases computed by hand with numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jbot_edge.pretrain.loss import DINOClsTokenLoss, IBOTPatchLoss, KoLeoLoss
from jbot_edge.pretrain.meta_arch import teacher_momentum


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    return z - z.max(axis=-1, keepdims=True) - np.log(np.exp(z - z.max(axis=-1, keepdims=True)).sum(-1, keepdims=True))


def test_dino_loss_cross_view_matches_hand_computation() -> None:
    rng = np.random.default_rng(0)
    s_u, s_v, t_u, t_v = (rng.normal(size=(3, 4)) for _ in range(4))
    center = rng.normal(size=(1, 4)) * 0.1
    loss = DINOClsTokenLoss(out_dim=4, student_temp=0.1, teacher_temp=0.04, center_momentum=0.9)
    loss.center.copy_(torch.tensor(center, dtype=torch.float32))
    pt_u = loss.softmax_center_teacher(torch.tensor(t_u, dtype=torch.float32))
    pt_v = loss.softmax_center_teacher(torch.tensor(t_v, dtype=torch.float32))
    got = loss([torch.tensor(s_u, dtype=torch.float32), torch.tensor(s_v, dtype=torch.float32)], [pt_u, pt_v])

    p_u, p_v = _softmax((t_u - center) / 0.04), _softmax((t_v - center) / 0.04)
    # student u against teacher v, student v against teacher u — never the same view
    ce_uv = -(p_v * _log_softmax(s_u / 0.1)).sum(-1).mean()
    ce_vu = -(p_u * _log_softmax(s_v / 0.1)).sum(-1).mean()
    np.testing.assert_allclose(pt_u.numpy(), p_u, rtol=1e-5, atol=1e-7)
    assert got.item() == pytest.approx((ce_uv + ce_vu) / 2, rel=1e-5)


def test_dino_centre_is_an_ema_of_the_teacher_batch_mean() -> None:
    loss = DINOClsTokenLoss(out_dim=2, center_momentum=0.9)
    teacher = torch.tensor([[1.0, 3.0], [3.0, 5.0]])
    loss.update_center(teacher)
    np.testing.assert_allclose(loss.center.numpy(), [[0.2, 0.4]], rtol=1e-6)
    loss.update_center(teacher)
    np.testing.assert_allclose(loss.center.numpy(), [[0.9 * 0.2 + 0.2, 0.9 * 0.4 + 0.4]], rtol=1e-6)


def test_ibot_loss_uses_masked_positions_only_per_jet_mean() -> None:
    rng = np.random.default_rng(1)
    s = rng.normal(size=(2, 3, 4))
    t = rng.normal(size=(2, 3, 4))
    masks = np.array([[True, False, True], [False, False, False]])
    loss = IBOTPatchLoss(out_dim=4)
    probs = loss.softmax_center_teacher(torch.tensor(t, dtype=torch.float32))
    got = loss(torch.tensor(s, dtype=torch.float32), probs, torch.tensor(masks))
    ce = -(_softmax(t / 0.04) * _log_softmax(s / 0.1)).sum(-1)
    # jet 0 averages its two masked particles; jet 1 has none and does not dilute the mean
    assert got.item() == pytest.approx((ce[0, 0] + ce[0, 2]) / 2, rel=1e-5)
    # changing unmasked positions changes nothing
    s2 = s.copy()
    s2[0, 1] += 5.0
    s2[1] -= 3.0
    got2 = loss(torch.tensor(s2, dtype=torch.float32), probs, torch.tensor(masks))
    assert got2.item() == pytest.approx(got.item(), rel=1e-6)


def test_ibot_centre_averages_masked_teacher_tokens() -> None:
    loss = IBOTPatchLoss(out_dim=2, center_momentum=0.5)
    tokens = torch.tensor([[[1.0, 1.0], [100.0, 100.0]], [[3.0, 5.0], [7.0, 9.0]]])
    masks = torch.tensor([[True, False], [True, True]])
    loss.update_center(tokens, masks)
    np.testing.assert_allclose(loss.center.numpy().ravel(), [0.5 * 11 / 3, 0.5 * 15 / 3], rtol=1e-6)


def test_koleo_matches_nearest_neighbour_log_distance() -> None:
    x = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-3.0, 0.1]])
    got = KoLeoLoss()(torch.tensor(x, dtype=torch.float32)).item()
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    d = np.linalg.norm(xn[:, None] - xn[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert got == pytest.approx(-np.log(d.min(axis=1) + 1e-8).mean(), rel=1e-5)


def test_koleo_rewards_spread_embeddings() -> None:
    clustered = torch.tensor([[1.0, 0.0], [1.0, 0.01], [1.0, -0.01], [0.99, 0.0]])
    spread = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    assert KoLeoLoss()(spread) < KoLeoLoss()(clustered)


def test_teacher_momentum_cosine_schedule_endpoints() -> None:
    assert teacher_momentum(0, 101, 0.996, 1.0) == pytest.approx(0.996)
    assert teacher_momentum(50, 101, 0.996, 1.0) == pytest.approx(0.998)
    assert teacher_momentum(100, 101, 0.996, 1.0) == pytest.approx(1.0)
