"""The jBOT objective, one module per term (as in DINOv2)."""

from jbot_edge.pretrain.loss.dino_clstoken_loss import DINOClsTokenLoss
from jbot_edge.pretrain.loss.ibot_patch_loss import IBOTPatchLoss
from jbot_edge.pretrain.loss.koleo_loss import KoLeoLoss
from jbot_edge.pretrain.loss.outlier_exposure_loss import OutlierExposureLoss, OutlierExposureLossConfig, PseudoAnomalyMaker

__all__ = ["DINOClsTokenLoss", "IBOTPatchLoss", "KoLeoLoss", "OutlierExposureLoss", "OutlierExposureLossConfig",
           "PseudoAnomalyMaker"]
