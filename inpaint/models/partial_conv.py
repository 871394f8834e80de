"""Partial convolution (Liu et al. 2018): a convolution that sees only known pixels.

For a window X, its mask window M (1 = known) and weights W the layer computes
x' = W^T (X * M) * sum(1) / sum(M) (+ b) where sum(M) > 0, else 0, and the updated mask is 1
where sum(M) > 0. The re-normalisation sum(1) / sum(M) depends on the mask only, so without b
the layer is linear in X for a fixed mask: the image path is a masked, rescaled convolution and
the mask path a small convolution of 0/1 maps that needs no autograd.

Inputs come as channel groups (a decoder stage concatenates upsampled features with an encoder
skip, or with the image), each with its own single-channel mask. sum(M) counts every input
channel's own mask: one convolution of the stacked group masks with a kernel weighted by each
group's channel count, so no full-channel copy of a mask is ever made.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class PartialConv2d(nn.Conv2d):
    """A ``kernel_size`` partial convolution, padding ``kernel_size // 2`` (the padding counts as
    unknown), over inputs made of channel groups with one mask each.

    Args:
        group_channels: channels of each input group, in concatenation order.
        out_channels: output channels.
        kernel_size: odd side of the square kernel.
        stride: 1, or 2 to halve the resolution.
        bias: add a bias on the output's known pixels (the biased twin only).
    """

    def __init__(self, group_channels: Sequence[int], out_channels: int, kernel_size: int, stride: int = 1, bias: bool = False) -> None:
        super().__init__(sum(group_channels), out_channels, kernel_size, stride, kernel_size // 2, bias=bias)
        self.group_channels = tuple(group_channels)
        weights = torch.tensor(self.group_channels, dtype=torch.float32).view(1, -1, 1, 1)
        # sum(M) over a window = this kernel applied to the stacked group masks; not a parameter
        # and not saved (it follows from the architecture)
        self.register_buffer("mask_kernel", weights.expand(1, -1, kernel_size, kernel_size).contiguous(), persistent=False)

    def forward(self, features: Sequence[torch.Tensor], masks: Sequence[torch.Tensor],
                zeroed: Sequence[bool] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output, updated mask)`` for groups ``features[g]`` ``[N, C_g, H, W]`` with masks
        ``masks[g]`` ``[N or 1, 1, H, W]`` (1 = known). Linear in the features without a bias.

        ``zeroed[g]``: the group is already 0 wherever its mask is (a bias-free layer's output, after
        scale-only norms and ReLUs), so X * M = X and the multiplication is skipped: on a CPU it cost
        more than the convolutions. The output is 0 wherever the updated mask is (without a bias)."""
        ratio, updated = self.mask_update(masks, torch.promote_types(features[0].dtype, torch.float32))
        zeroed = zeroed or [False] * len(features)
        device = features[0].device.type
        # the dtype the convolution computes in: concatenating a float32 group (the image) with bf16 ones
        # under autocast would make a float32 copy of the whole input, cast back to bf16 by the convolution
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else features[0].dtype
        groups = [f.to(dtype) for f in features]
        x = torch.cat([f if z else f * m.to(dtype) for f, m, z in zip(groups, masks, zeroed, strict=True)], dim=1)
        out = F.conv2d(x, self.weight, None, self.stride, self.padding)  # bf16 under autocast, whatever x is
        out = out * ratio.to(out.dtype)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1).to(out.dtype) * updated.to(out.dtype)
        return out, updated

    @torch.no_grad()
    def mask_update(self, masks: Sequence[torch.Tensor], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sum(1) / sum(M) where sum(M) > 0 else 0, updated mask)``, each ``[N or 1, 1, H', W']``,
        computed in ``dtype`` (float32 or wider: the counts reach ``C_in * k * k``, which bf16 would
        round) outside autocast and autograd: they depend on the masks only."""
        with torch.autocast(masks[0].device.type, enabled=False):
            stacked = torch.cat([m.to(dtype) for m in masks], dim=1)
            counts = F.conv2d(stacked, self.mask_kernel.to(dtype), None, self.stride, self.padding)
        updated = (counts > 0).to(dtype)
        window = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        return window / counts.clamp(min=1) * updated, updated

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, group_channels={self.group_channels}"
