"""The generators (the bias-free or original Context Encoder, the partial-convolution U-Net), the
critic, bias-free batch norm and the PCA basis of the projection head and regulariser; the contract
the analyses call generators through is inpaint/models/contract.py."""

from inpaint.models.basis import PCABasis
from inpaint.models.batchnorm import BiasFreeBatchNorm
from inpaint.models.context_encoder import ContextEncoder
from inpaint.models.discriminator import Discriminator
from inpaint.models.unet import PartialConvUNet

__all__ = ["BiasFreeBatchNorm", "ContextEncoder", "Discriminator", "PCABasis", "PartialConvUNet"]
