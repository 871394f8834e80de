"""The generator (bias-free or original Context Encoder), its critic and bias-free batch norm."""

from inpaint.models.batchnorm import BiasFreeBatchNorm
from inpaint.models.context_encoder import ContextEncoder
from inpaint.models.discriminator import Discriminator

__all__ = ["BiasFreeBatchNorm", "ContextEncoder", "Discriminator"]
