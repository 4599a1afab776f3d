"""Outlier exposure for distillation: pseudo-anomalous jets made from background jets.

A student trained on background alone only ever sees the low end of the teacher's score, yet a trigger selects on the
high end. Like the outlier exposure of OE-VAE (arXiv 2007.01850), we show the student jets the teacher finds
anomalous, without using any signal sample: each pseudo-anomaly **overlays two background jets**, the second one
scaled in pT by ``s ~ U(scale_min, scale_max)`` and displaced by ``r ~ U(offset_min, offset_max)`` in a random
(η, φ) direction — a two-prong, massive jet, the generic shape of a boosted decay. The combined particles are
re-centred on their pT-weighted axis, re-normalised (``part_pt_rel`` = pT / ΣpT), pT-ordered and truncated to the
file's particle count; the teacher scores them from full precision and the student sees their trigger-precision
codes, exactly as for real jets.

``mode: prongs`` uses the pre-training and score-head recipe instead (:mod:`jbot_edge.data.pseudo_anomalies`: k = 2, 3
narrow prongs, each a shrunk background jet, at m/pT from R/8 to R/2), a closer image of a boosted decay.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from jbot_edge.config import StrictModel
from jbot_edge.data.format import JetBatch
from jbot_edge.data.pseudo_anomalies import PseudoAnomalyConfig
from jbot_edge.errors import JbotEdgeError

#: Features an overlaid jet can be rebuilt with (everything else would need the full four-vectors).
OVERLAY_FEATURES = ("part_pt", "part_deta", "part_dphi", "part_pt_rel")


class OutlierExposureConfig(StrictModel):
    enabled: bool = False
    fraction: float = Field(default=0.25, gt=0, le=4, description="pseudo-anomalies per background training jet")
    mode: Literal["overlay", "prongs"] = Field(default="overlay", description=(
        "overlay: two background jets superimposed (the fields below); prongs: the pre-training recipe (pseudo)"))
    pseudo: PseudoAnomalyConfig = Field(default_factory=lambda: PseudoAnomalyConfig(mode="prongs"),
                                        description="mode: prongs only (jbot_edge.data.pseudo_anomalies)")
    scale_min: float = Field(default=0.3, gt=0, le=1)
    scale_max: float = Field(default=1.0, gt=0, le=1)
    offset_min: float = Field(default=0.1, ge=0, description="displacement of the second jet in (η, φ)")
    offset_max: float = Field(default=0.3, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> OutlierExposureConfig:
        if self.scale_min > self.scale_max or self.offset_min > self.offset_max:
            raise ValueError("outlier_exposure: *_min must not exceed *_max")
        if self.pseudo.mode != "prongs":
            raise ValueError("outlier_exposure.pseudo.mode: only prongs (use outlier_exposure.mode=overlay)")
        return self


def check_overlay_features(features: list[str]) -> None:
    unsupported = sorted(set(features) - set(OVERLAY_FEATURES))
    if unsupported:
        raise JbotEdgeError(f"outlier_exposure.enabled: overlaid jets can only provide {list(OVERLAY_FEATURES)}, "
                            f"but the teacher/student inputs need {unsupported}")


def overlay_jets(first: JetBatch, second: JetBatch, cfg: OutlierExposureConfig,
                 rng: np.random.Generator) -> JetBatch:
    """One pseudo-anomaly per pair ``(first[k], second[k])``; both batches need part_pt, part_deta, part_dphi.
    The recipe is the data layer's ``mode: overlay`` (:func:`jbot_edge.data.pseudo_anomalies.overlay_jets`)."""
    from jbot_edge.data.pseudo_anomalies import PseudoAnomalyConfig
    from jbot_edge.data.pseudo_anomalies import overlay_jets as overlay

    recipe = PseudoAnomalyConfig(mode="overlay", scale_min=cfg.scale_min, scale_max=cfg.scale_max,
                                 offset_min=cfg.offset_min, offset_max=cfg.offset_max)
    return overlay(first, second, recipe, rng)
