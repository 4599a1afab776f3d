"""Per-feature input normalisation inside the encoder (``model.input_norm: standardize``).

Why: the jBOT reference inputs have very different, small scales — Δη, Δφ have an RMS of ~0.17, the pT fraction
is mostly ≪ 0.1 (median ~0.015), while the ``mask`` column is exactly 1 for every real particle. Fed raw into
``Dense(F→d)``, the token embeddings are dominated by the constant mask direction, every particle (and hence every
jet) looks alike to the untrained network, and short self-distillation runs have almost no signal to bootstrap
from (the centred teacher starts at ~97% of the maximum entropy and drifts to the uniform fixed point). Standard
practice for particle transformers (ParT / weaver) is to log-transform pT-like features and standardise each
input; this module does that, with statistics fitted once on the training data.

Transform per column, by feature name (:func:`transform_kind`):

* ``log``: pT-like, positive, heavy-tailed (``part_pt_rel``, ``part_pt``, ``part_energy``): ``(log v − μ) / σ``
* ``angle``: ``part_deta``, ``part_dphi``, ``part_dr``: ``v / s`` with ONE scale ``s`` (the RMS of Δη and Δφ
  together) and no shift, so the jet axis stays at the origin and a rotation about it stays a rotation — the
  augmentations keep acting on physical coordinates and the network sees the same geometry, rescaled.
* ``identity``: indicator columns (``mask``) and any column that is constant on real particles
* ``standardize``: everything else (``part_log_*``, charge, ...): ``(v − μ) / σ``

Statistics use real particles only; padded slots are set to exactly 0 after the transform (as they were before).
The buffers (``log_columns``, ``shift``, ``scale``) live in the encoder's ``state_dict`` — so they are in every
checkpoint and in ``teacher.pt`` — and the same numbers are also recorded as plain lists in the artifact's
``model_config["input_norm_stats"]`` so that :func:`jbot_edge.models.transformer.build_encoder` rebuilds an
identically-normalised *untrained* encoder (fine-tuning's from-scratch arm, benchmarks' untrained baseline).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from jbot_edge.config import StrictModel

LOG_FEATURES = ("part_pt_rel", "part_pt", "part_energy")
ANGLE_FEATURES = ("part_deta", "part_dphi", "part_dr")
IDENTITY_FEATURES = ("mask",)
#: Columns whose spread on real particles is below this are left untouched (a constant carries no information).
MIN_STD = 1e-6
#: Floor inside the log (pT fractions of real particles are > 0; this only guards against exact zeros).
LOG_FLOOR = 1e-8


class InputNormStats(StrictModel):
    """Fitted normalisation, stored with the model: ``x' = (T(x) − shift) · scale`` with T = log where ``log``."""

    features: list[str] = Field(description="input feature names, in column order")
    log: list[bool]
    shift: list[float]
    scale: list[float]

    @model_validator(mode="after")
    def _same_length(self) -> InputNormStats:
        n = len(self.features)
        if not (len(self.log) == len(self.shift) == len(self.scale) == n):
            raise ValueError(f"input_norm_stats: features/log/shift/scale must all have {n} entries")
        return self


def transform_kind(name: str) -> str:
    if name in LOG_FEATURES:
        return "log"
    if name in ANGLE_FEATURES:
        return "angle"
    if name in IDENTITY_FEATURES:
        return "identity"
    return "standardize"


def fit_input_norm(x: np.ndarray, mask: np.ndarray, features: Sequence[str]) -> InputNormStats:
    """Fit the statistics on prepared inputs ``x [N, P, F]`` (real particles where ``mask [N, P]``)."""
    features = list(features)
    if x.shape[-1] != len(features):
        raise ValueError(f"inputs have {x.shape[-1]} columns, features {features}")
    real = x[mask.astype(bool)].astype(np.float64)  # [n_particles, F]
    if real.shape[0] < 2:
        raise ValueError("input normalisation needs at least two real particles to fit")
    kinds = [transform_kind(n) for n in features]
    log = [k == "log" for k in kinds]
    # One common scale for all angles (the RMS of Δη and Δφ together): rotations about the axis stay rotations
    # and ΔR stays hypot(Δη, Δφ).
    angle_cols = [i for i, n in enumerate(features) if n in ("part_deta", "part_dphi")]
    angle_cols = angle_cols or [i for i, k in enumerate(kinds) if k == "angle"]
    angle_rms = float(np.sqrt(np.mean(real[:, angle_cols] ** 2))) if angle_cols else 0.0
    shift, scale = [], []
    for i, kind in enumerate(kinds):
        v = real[:, i]
        if kind == "log":
            v = np.log(np.maximum(v, LOG_FLOOR))
        if kind == "identity" or np.std(v) < MIN_STD:
            shift.append(0.0)
            scale.append(1.0)
        elif kind == "angle":
            shift.append(0.0)
            scale.append(1.0 / angle_rms)
        else:
            shift.append(float(np.mean(v)))
            scale.append(1.0 / float(np.std(v)))
    return InputNormStats(features=features, log=log, shift=shift, scale=scale)


class InputNormalizer(nn.Module):
    """``x [B, P, F]``, ``mask [B, P]`` → normalised inputs, padded slots exactly 0. Identity until fitted."""

    def __init__(self, in_features: int, stats: InputNormStats | None = None):
        super().__init__()
        self.register_buffer("log_columns", torch.zeros(in_features, dtype=torch.bool))
        self.register_buffer("shift", torch.zeros(in_features))
        self.register_buffer("scale", torch.ones(in_features))
        if stats is not None:
            self.set_stats(stats)

    @torch.no_grad()
    def set_stats(self, stats: InputNormStats) -> None:
        if len(stats.shift) != self.shift.numel():
            raise ValueError(f"input_norm_stats has {len(stats.shift)} columns, the encoder {self.shift.numel()}")
        self.log_columns.copy_(torch.tensor(stats.log, dtype=torch.bool))
        self.shift.copy_(torch.tensor(stats.shift, dtype=torch.float32))
        self.scale.copy_(torch.tensor(stats.scale, dtype=torch.float32))

    def stats(self, features: Sequence[str]) -> InputNormStats:
        return InputNormStats(features=list(features), log=self.log_columns.tolist(),
                              shift=self.shift.tolist(), scale=self.scale.tolist())

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logged = torch.where(self.log_columns, x.clamp(min=LOG_FLOOR).log(), x)
        out = (logged - self.shift.to(x.dtype)) * self.scale.to(x.dtype)
        return out * mask.unsqueeze(-1).to(out.dtype)
