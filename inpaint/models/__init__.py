"""The generator (bias-free or original Context Encoder), its critic, bias-free batch norm and the
PCA basis of the projection head and regulariser."""

from inpaint.models.basis import PCABasis
from inpaint.models.batchnorm import BiasFreeBatchNorm
from inpaint.models.context_encoder import ContextEncoder
from inpaint.models.discriminator import Discriminator

__all__ = ["BiasFreeBatchNorm", "ContextEncoder", "Discriminator", "PCABasis"]
