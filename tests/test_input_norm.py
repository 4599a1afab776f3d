"""Input normalisation inside the encoder, and the run-length-aware teacher momentum."""

from __future__ import annotations

import math

import numpy as np
import torch

from jbot_edge.models.input_norm import InputNormalizer, fit_input_norm
from jbot_edge.models.transformer import ModelConfig, build_encoder, model_config_dict
from jbot_edge.pretrain.meta_arch import effective_momentum_start

FEATURES = ["part_deta", "part_dphi", "part_pt_rel", "mask"]


def _inputs(n: int = 400, p: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_real = rng.integers(2, p + 1, n)
    mask = np.arange(p)[None] < n_real[:, None]
    pt = rng.lognormal(-4.0, 1.2, (n, p)) * mask
    pt /= pt.sum(1, keepdims=True)
    x = np.stack([rng.normal(0, 0.15, (n, p)) * mask, rng.normal(0, 0.2, (n, p)) * mask, pt, mask * 1.0], -1)
    return x.astype(np.float32), mask


def test_fit_standardises_log_pt_and_shares_one_angle_scale() -> None:
    x, mask = _inputs()
    stats = fit_input_norm(x, mask, FEATURES)
    assert stats.log == [False, False, True, False]
    assert stats.shift[0] == stats.shift[1] == 0.0 and stats.scale[0] == stats.scale[1]  # rotations stay rotations
    assert (stats.shift[3], stats.scale[3]) == (0.0, 1.0)  # the mask indicator is left as is
    out = InputNormalizer(4, stats)(torch.from_numpy(x), torch.from_numpy(mask)).numpy()
    real = out[mask]
    assert abs(real[:, 2].mean()) < 1e-4 and abs(real[:, 2].std() - 1) < 1e-3
    assert abs(np.sqrt((real[:, :2] ** 2).mean()) - 1) < 1e-3
    np.testing.assert_array_equal(real[:, 3], 1.0)
    assert not out[~mask].any(), "padded slots must stay exactly zero"


def test_rotation_commutes_with_normalisation() -> None:
    x, mask = _inputs()
    norm = InputNormalizer(4, fit_input_norm(x, mask, FEATURES))
    theta = 0.7
    rot = x.copy()
    rot[..., 0] = math.cos(theta) * x[..., 0] - math.sin(theta) * x[..., 1]
    rot[..., 1] = math.sin(theta) * x[..., 0] + math.cos(theta) * x[..., 1]
    a = norm(torch.from_numpy(rot), torch.from_numpy(mask)).numpy()
    b = norm(torch.from_numpy(x), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(np.hypot(a[..., 0], a[..., 1]), np.hypot(b[..., 0], b[..., 1]), atol=1e-5)


def test_stats_travel_with_model_config_and_state_dict() -> None:
    x, mask = _inputs()
    cfg = ModelConfig(input_norm_stats=fit_input_norm(x, mask, FEATURES))
    trained = build_encoder(cfg, in_features=4)
    assert {"input_norm.shift", "input_norm.scale", "input_norm.log_columns"} <= set(trained.state_dict())
    # a fresh encoder rebuilt from the artifact dictionary normalises identically (untrained / scratch baselines)
    rebuilt = build_encoder(model_config_dict(cfg, 4))
    for k in ("shift", "scale", "log_columns"):
        assert torch.equal(getattr(rebuilt.input_norm, k), getattr(trained.input_norm, k))
    # artifacts written before normalisation existed have no input_norm key and keep feeding raw inputs
    legacy = {k: v for k, v in model_config_dict(ModelConfig(), 4).items() if not k.startswith("input_norm")}
    assert build_encoder(legacy).input_norm is None
    assert build_encoder(model_config_dict(ModelConfig(input_norm="none"), 4)).input_norm is None


def test_teacher_momentum_start_is_capped_for_short_runs_only() -> None:
    assert math.isclose(effective_momentum_start(0.996, 200, 0.05), 0.9)
    assert effective_momentum_start(0.996, 78_000, 0.05) == 0.996  # reference-length runs are unchanged
    assert effective_momentum_start(0.996, 200, 0.0) == 0.996  # horizon 0 = reference
    assert effective_momentum_start(0.996, 10, 0.05) == 0.0
