"""Model code: the I3D encoder, the U-Net decoder, the predictor and predictor–corrector."""

from .centrifuge import MODEL_CONFIGS, CentrifugeNet, ModelConfig, build_model
from .fuse import fold_batchnorm
from .i3d import FINAL_ENDPOINTS, I3DEncoder, load_i3d_weights
from .unet import UNet

__all__ = ["MODEL_CONFIGS", "CentrifugeNet", "ModelConfig", "build_model", "FINAL_ENDPOINTS", "I3DEncoder", "load_i3d_weights", "UNet", "fold_batchnorm"]
