"""VAE objective pieces (Cheng et al. 2007.01850): masked reconstruction, Gaussian KL, outlier-exposure margin.

* ``masked_reconstruction_error``: per-jet mean squared error over the real particles' input features (padding is
  not reconstructed: a jet's error does not grow with the number of empty slots).
* ``gaussian_kl``: per-jet KL(N(μ, σ²) ‖ N(0, 1)) = ½ Σ_d (μ² + σ² − log σ² − 1), the latent-space anomaly score.
* ``margin_loss``: outlier exposure (OE-VAE). ``absolute``: mean relu(m − s_out) pushes every outlier's score
  above the margin m; ``relative``: mean relu(m + mean(s_in) − s_out) keeps outliers m above the inlier mean.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

# The per-jet VAE terms live with the model (they are also its anomaly scores at evaluation time).
from jbot_edge.models.vae import gaussian_kl, masked_reconstruction_error

__all__ = ["gaussian_kl", "margin_loss", "masked_reconstruction_error"]


def margin_loss(inlier_scores: torch.Tensor, outlier_scores: torch.Tensor, margin: float,
                mode: Literal["absolute", "relative"] = "absolute") -> torch.Tensor:
    """Outlier-exposure hinge: penalise outliers whose score is not at least ``margin`` (above the inliers)."""
    if mode == "absolute":
        return F.relu(margin - outlier_scores).mean()
    return F.relu(margin + inlier_scores.detach().mean() - outlier_scores).mean()
