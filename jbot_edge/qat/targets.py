"""The teacher's anomaly score in a form a fixed-point student can regress, and where the regression must be good.

Two targets (``target.kind``), both fitted on the **training** background only and both monotonic in the score, so
ROC curves and trigger thresholds of the teacher are unchanged by them:

* ``log_standardize``: like CICADA (which regresses 32·log(MSE)), a log standardised on training background::

      target = (log(max(score - offset, floor)) - mean) / std

  ``offset`` is 0 for scores that are positive on the training background, otherwise just below their minimum (GMM
  NLL can be negative); ``floor`` keeps the log finite. The bulk of the background dominates this target's loss.
* ``survival`` (the default): the background **surprise** ``-ln S(score)``, S the fraction of training background
  scoring higher (Hazen plotting position ``(N - i - 1/2) / N`` for the i-th lowest of N). A trigger threshold at
  per-jet rate f sits at target ``-ln f`` whatever the score head, so equal target errors are equal rate errors:
  1e-3 → 6.9, 1e-4 → 9.2. For an exponential background score the target is the score itself. Stored as at most
  ``n_knots`` (log-score, target) knots, linearly interpolated; above the highest background score it continues
  with the slope of the upper tail (top 1 % or 50 jets), below the lowest it is 0.

The tail weight (``TailWeightConfig``) multiplies each training jet's loss by ``(1 + t)^power`` with ``t`` the
survival target of its teacher score, capped at ``max`` and normalised to mean 1 over the weighted jets: the few
background jets near a trigger threshold count as much as the bulk they are outnumbered by.

The transform's parameters are stored in the student checkpoint (``extra.target_transform``).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from jbot_edge.config import StrictModel
from jbot_edge.errors import JbotEdgeError

N_KNOTS = 256


def _finite_background(background_scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(background_scores, dtype=np.float64).ravel()
    if scores.size < 2 or not np.isfinite(scores).all():
        raise JbotEdgeError("target transform: need at least two finite background teacher scores")
    return scores


def _log_offset(scores: np.ndarray) -> tuple[float, float]:
    """``(offset, floor)`` so that ``log(max(score - offset, floor))`` is finite and monotonic on the background."""
    spread = float(np.ptp(scores)) or 1.0
    low = float(scores.min())
    offset = 0.0 if low > 0 else low - 1e-3 * spread
    return offset, max(1e-6 * spread, 1e-12)


class TargetTransform(StrictModel):
    kind: Literal["log_standardize", "survival"] = "log_standardize"
    offset: float = 0.0
    floor: float = 1e-6
    mean: float = 0.0
    std: float = 1.0
    # survival only: knots (log(score - offset) → -ln S) and the slope used above the last knot
    knots_x: list[float] = Field(default_factory=list)
    knots_y: list[float] = Field(default_factory=list)
    tail_slope: float = 0.0

    @classmethod
    def fit(cls, background_scores: np.ndarray, kind: str = "log_standardize") -> TargetTransform:
        scores = _finite_background(background_scores)
        offset, floor = _log_offset(scores)
        logs = np.log(np.maximum(scores - offset, floor))
        if kind == "log_standardize":
            return cls(offset=offset, floor=floor, mean=float(logs.mean()), std=float(logs.std()) or 1.0)
        if kind != "survival":
            raise JbotEdgeError(f"target.kind must be 'log_standardize' or 'survival', got {kind!r}")
        return cls(kind="survival", offset=offset, floor=floor, **_survival_knots(np.sort(logs)))

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        logs = np.log(np.maximum(scores - self.offset, self.floor))
        if self.kind == "log_standardize":
            return (logs - self.mean) / self.std
        x, y = np.asarray(self.knots_x), np.asarray(self.knots_y)
        inside = np.interp(logs, x, y, left=0.0)
        return np.where(logs > x[-1], y[-1] + self.tail_slope * (logs - x[-1]), inside)

    def describe(self) -> dict[str, Any]:
        formula = ("(log(max(score - offset, floor)) - mean) / std" if self.kind == "log_standardize" else
                   "-ln S(score): interp(log(max(score - offset, floor)), knots_x, knots_y); "
                   "above knots_x[-1]: knots_y[-1] + tail_slope * (log(...) - knots_x[-1])")
        return {**self.model_dump(), "formula": formula}


def _survival_knots(sorted_logs: np.ndarray, n_knots: int = N_KNOTS) -> dict[str, Any]:
    """Knots of ``-ln S`` against the sorted log-scores: half spread evenly over the bulk, half geometrically
    towards the top (where a trigger operates), always including the highest background jet."""
    n = len(sorted_logs)
    survival_levels = np.geomspace(1.0, 0.5 / n, n_knots // 2)
    top = np.floor(n - survival_levels * n).astype(np.int64)
    index = np.unique(np.clip(np.r_[np.linspace(0, n - 1, n_knots // 2).astype(np.int64), top, n - 1], 0, n - 1))
    x = sorted_logs[index]
    y = -np.log((n - index - 0.5) / n)
    # Tied scores share one knot, the highest target (np.interp needs increasing x).
    keep = np.r_[np.diff(x) > 0, True]
    x, y = x[keep], y[keep]
    if len(x) < 2:
        raise JbotEdgeError("target transform: the training background scores are all equal; nothing to rank")
    tail_start = int(np.searchsorted(y, y[-1] - np.log(min(0.01 * n, 50.0) + 1.0)))
    tail_start = min(tail_start, len(x) - 2)
    slope = (y[-1] - y[tail_start]) / (x[-1] - x[tail_start])
    return {"knots_x": x.tolist(), "knots_y": y.tolist(), "tail_slope": float(slope)}


class TailWeightConfig(StrictModel):
    """Per-jet loss weight ``min((1 + t)^power, max)``, t = background surprise -ln S of the teacher score."""

    power: float = Field(default=0.0, ge=0, description="0: unweighted (every training jet counts the same)")
    max: float = Field(default=100.0, ge=1, description="cap on the weight before normalisation")


def tail_weights(surprise: np.ndarray, cfg: TailWeightConfig) -> np.ndarray:
    """Loss weights for jets with background surprise ``surprise`` (-ln S ≥ 0), normalised to mean 1."""
    surprise = np.maximum(np.asarray(surprise, dtype=np.float64), 0.0)
    weights = np.minimum((1.0 + surprise) ** cfg.power, cfg.max)
    return weights / weights.mean() if weights.size else weights
