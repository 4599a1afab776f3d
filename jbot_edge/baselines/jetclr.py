"""JetCLR (Dillon et al., arXiv 2108.04253): the contrastive jet-representation baseline.

The trainer is :class:`jbot_edge.baselines.contrastive.ContrastiveMethod` with ``method: jetclr`` (NT-Xent with
τ = 0.1, set transformer with α·log pT attention bias and pT-weighted sum pooling, JetCLR's view recipe); this
module re-exports the **linear classifier test** (LCT), which lives in :mod:`jbot_edge.evaluate.lct` and is an
``evaluate`` section for every teacher.
"""

from __future__ import annotations

from jbot_edge.baselines.contrastive import ContrastiveConfig, ContrastiveMethod
from jbot_edge.evaluate.lct import linear_classifier_test

__all__ = ["ContrastiveConfig", "ContrastiveMethod", "linear_classifier_test"]
