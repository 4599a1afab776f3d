"""Baseline objectives, one module each (DINOv2 style)."""

from jbot_edge.baselines.loss.distance_correlation import distance_correlation
from jbot_edge.baselines.loss.nt_xent import nt_xent_loss
from jbot_edge.baselines.loss.supcon import supcon_loss
from jbot_edge.baselines.loss.vae_losses import gaussian_kl, margin_loss, masked_reconstruction_error
from jbot_edge.baselines.loss.vicreg import vicreg_loss

__all__ = ["distance_correlation", "gaussian_kl", "margin_loss", "masked_reconstruction_error", "nt_xent_loss",
           "supcon_loss", "vicreg_loss"]
