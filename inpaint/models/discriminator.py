"""The adversarial critic of the centre patch (not analysed, so it keeps biases and plain BN)."""

from __future__ import annotations

import torch
from torch import nn

from inpaint.errors import InpaintError
from inpaint.masks import SUPPORTED_SIZES
from inpaint.models.context_encoder import init_weights


class Discriminator(nn.Module):
    """Maps ``[N, 3, m, m]`` patches to ``[N]`` real/fake logits (use BCE-with-logits).

    64: Pathak's four stride-2 convolutions then a 4x4 one; 32: one stride-2 layer fewer;
    16: the authors' 3x3 stem (two stride-1 layers) before two stride-2 layers.
    """

    def __init__(self, patch_size: int = 64, base_channels: int = 64) -> None:
        super().__init__()
        if patch_size not in SUPPORTED_SIZES:
            raise InpaintError(f"no discriminator for patch size {patch_size}; choose one of {SUPPORTED_SIZES}.")
        c = base_channels

        def block(cin: int, cout: int, kernel: int = 4, stride: int = 2, pad: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, kernel, stride, pad), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)]

        if patch_size == 16:
            layers = [nn.Conv2d(3, c, 3, 1, 1), nn.LeakyReLU(0.2)] + block(c, 2 * c, 3, 1, 1)
            layers += block(2 * c, 4 * c) + block(4 * c, 8 * c)
            top = 8 * c
        else:
            layers = [nn.Conv2d(3, c, 4, 2, 1), nn.LeakyReLU(0.2)] + block(c, 2 * c) + block(2 * c, 4 * c)
            top = 4 * c
            if patch_size == 64:
                layers += block(4 * c, 8 * c)
                top = 8 * c
        layers.append(nn.Conv2d(top, 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.net(patches).flatten()
