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

:class:`UpsamplingPartialConv2d` is a U-Net decoder's layer: a 3x3 partial convolution of the
nearest x2 upsampling of its first group beside the others, computed without the upsampled copy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def spread(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A one-channel ``mask`` ``[N or 1, 1, H, W]`` in ``like``'s dtype, ready to multiply ``like``:
    repeated over ``like``'s channels when ``like`` is a channels-last CPU tensor. There the channels
    are the innermost axis, and torch's CPU kernels do not vectorise a broadcast along it when it is
    narrower than a vector: a 64 x 24 x 64 x 64 bf16 activation times a [1, 1, 64, 64] map took 4.4 ms
    on 2 cores, times the map repeated over channels 0.7 ms (1.2 ms with one map per image)."""
    mask = mask.to(like.dtype)
    channels = like.shape[1]
    if like.device.type != "cpu" or channels == 1 or like.is_contiguous() or not like.is_contiguous(memory_format=torch.channels_last):
        return mask
    return mask.expand(-1, channels, -1, -1).contiguous(memory_format=torch.channels_last)


def concat(groups: Sequence[torch.Tensor]) -> torch.Tensor:
    """The groups along the channels; a single group as it is (``torch.cat`` would copy it)."""
    return groups[0] if len(groups) == 1 else torch.cat(list(groups), dim=1)


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
        ratio, updated = self.mask_update(self.window_masks(masks), torch.promote_types(features[0].dtype, torch.float32))
        zeroed = zeroed or [False] * len(features)
        device = features[0].device.type
        # the dtype the convolution computes in: concatenating a float32 group (the image) with bf16 ones
        # under autocast would make a float32 copy of the whole input, cast back to bf16 by the convolution
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else features[0].dtype
        groups = [f.to(dtype) for f in features]
        out = self.convolve([f if z else f * spread(m, f) for f, m, z in zip(groups, masks, zeroed, strict=True)])
        out = out * spread(ratio, out)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1).to(out.dtype) * updated.to(out.dtype)
        return out, updated

    def window_masks(self, masks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The groups' masks at the resolution the kernel slides over (here: as given)."""
        return list(masks)

    def convolve(self, groups: Sequence[torch.Tensor]) -> torch.Tensor:
        """The convolution of the masked groups, concatenated (bf16 under autocast, whatever they are)."""
        return F.conv2d(concat(groups), self.weight, None, self.stride, self.padding)

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


# Nearest x2 upsampling then a 3-tap filter w, along one axis, is a stride-2 transposed filter of 4
# taps: the even outputs 2i read x[i-1] by w0 and x[i] by w1 + w2, the odd ones 2i+1 read x[i] by
# w0 + w1 and x[i+1] by w2; conv_transpose2d(stride 2, padding 1) places tap k of input i at
# output 2i - 1 + k, so its kernel is (w2, w1 + w2, w0 + w1, w0) = FOLD @ w.
FOLD = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


class UpsamplingPartialConv2d(PartialConv2d):
    """A 3x3 partial convolution (stride 1) of ``[up(features[0]), features[1:]]``, where ``up`` is
    nearest x2 upsampling: ``features[0]`` and ``masks[0]`` come at half the others' resolution.

    The same function as upsampling then :class:`PartialConv2d` (up to the order of the sums), but
    the first group's part is one stride-2 transposed convolution of the half-resolution features
    with a 4x4 kernel folded from the 3x3 weights: 4 taps per output pixel instead of 9, and neither
    the upsampled copy nor the concatenation is made (forward or backward). On 2 CPU cores that made
    a decoder stage 1.2 to 2.8 times faster. The weights are the 3x3 ones, so checkpoints are those
    of the plain layer."""

    def __init__(self, group_channels: Sequence[int], out_channels: int, bias: bool = False) -> None:
        super().__init__(group_channels, out_channels, 3, 1, bias)

    def window_masks(self, masks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The first group's mask upsampled to the output's resolution (masking commutes with nearest upsampling)."""
        return [F.interpolate(masks[0], scale_factor=2.0, mode="nearest"), *masks[1:]]

    def convolve(self, groups: Sequence[torch.Tensor]) -> torch.Tensor:
        low = self.group_channels[0]
        dtype = torch.promote_types(self.weight.dtype, torch.float32)  # fold in float32 or wider: one rounding, the convolution's cast
        with torch.autocast(groups[0].device.type, enabled=False):
            fold = FOLD.to(self.weight.device, dtype)
            kernel = torch.einsum("pk,ql,oikl->iopq", fold, fold, self.weight[:, :low].to(dtype))
        out = F.conv_transpose2d(groups[0], kernel.to(self.weight.dtype), None, 2, 1)
        if len(groups) > 1:
            out = out + F.conv2d(concat(groups[1:]), self.weight[:, low:], None, 1, 1)
        return out
