"""The teacher's anomaly score in a form a fixed-point student can regress.

Raw scores (Mahalanobis d², kNN distances, GMM NLL) span orders of magnitude with a long anomalous tail; like CICADA
(which regresses 32·log(MSE)) we compress them with a log and standardise on training background::

    target = (log(max(score - offset, floor)) - mean) / std

``offset`` is 0 for scores that are positive on the training background, otherwise just below their minimum (GMM
NLL can be negative); ``floor`` keeps the log finite for unseen, even-lower scores. The map is monotonic wherever the
score exceeds ``offset + floor``, i.e. everywhere that matters for selecting anomalies, so ROC curves and trigger
thresholds are unchanged by it. The parameters are stored in the student checkpoint (``extra.target_transform``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jbot_edge.config import StrictModel
from jbot_edge.errors import JbotEdgeError


class TargetTransform(StrictModel):
    kind: str = "log_standardize"
    offset: float = 0.0
    floor: float = 1e-6
    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, background_scores: np.ndarray) -> TargetTransform:
        scores = np.asarray(background_scores, dtype=np.float64)
        if scores.size < 2 or not np.isfinite(scores).all():
            raise JbotEdgeError("target transform: need at least two finite background teacher scores")
        spread = float(np.ptp(scores)) or 1.0
        low = float(scores.min())
        offset = 0.0 if low > 0 else low - 1e-3 * spread
        floor = max(1e-6 * spread, 1e-12)
        logs = np.log(np.maximum(scores - offset, floor))
        std = float(logs.std()) or 1.0
        return cls(offset=offset, floor=floor, mean=float(logs.mean()), std=std)

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        return (np.log(np.maximum(scores - self.offset, self.floor)) - self.mean) / self.std

    def describe(self) -> dict[str, Any]:
        return {**self.model_dump(), "formula": "(log(max(score - offset, floor)) - mean) / std"}
