"""A partial-convolution U-Net (Liu et al. 2018) for holes of any shape, bias-free by default.

Every convolution is a :class:`~inpaint.models.partial_conv.PartialConv2d`: it sees only the
known pixels of its window and rescales by sum(1) / sum(M), a factor that depends on the mask
alone. The hole is never an input value (a mask fed as an extra channel would act as a bias), so
with ``bias_free=True`` (no biases, bias-free batch norm, (leaky) ReLUs, no Tanh, images in
[0, 1]) the network in eval mode is positively homogeneous in the image for every fixed mask:
f(y) = A_y y with A_y its Jacobian at y. Known pixels are pasted back (out = y on them), so the
rows of A_y for known pixels are the identity, the columns of hole pixels are zero (their values
never reach the output), and what the analyses study is the block mapping known pixels to the
fill: each hole pixel's weights over the known pixels.

``bias_free=False`` is the biased twin, Liu's own layers: biases in every convolution, batch
norm, a Tanh on the prediction, images in [-1, 1].

Layers: ``depth`` encoder stages (stride 2, kernels 7, 5, 5, then 3; widths ``base_channels``
doubling up to 8x; batch norm from the second stage; ReLU) and ``depth`` decoder stages (nearest
upsampling x2 of features and mask, concatenation with the encoder's features at that scale or,
last, with the image, a 3x3 partial convolution; batch norm and LeakyReLU(0.2) but the last,
which maps to 3 channels). A decoder stage is one
:class:`~inpaint.models.partial_conv.UpsamplingPartialConv2d`, which computes exactly that without
making the upsampled copy or the concatenation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inpaint.errors import InpaintError
from inpaint.models.batchnorm import BiasFreeBatchNorm
from inpaint.models.context_encoder import init_weights
from inpaint.models.partial_conv import PartialConv2d, UpsamplingPartialConv2d, spread

ENCODER_KERNELS = (7, 5, 5)  # Liu's first three; 3 after them
DECODER_KERNEL = 3


def encoder_kernel(stage: int) -> int:
    """Kernel side of encoder stage ``stage`` (from 0)."""
    return ENCODER_KERNELS[stage] if stage < len(ENCODER_KERNELS) else 3


class PartialConvUNet(nn.Module):
    """Maps a masked image ``y`` and its mask ``known`` to ``y`` with the hole filled.

    Args:
        image_size: side S of the images, a multiple of 2**depth.
        bias_free: the homogeneous variant (default) or the biased twin.
        base_channels: width of the first stage (Liu's 64); widths double up to 8x.
        depth: encoder stages (Liu's 8 at 512 x 512); :meth:`receptive_field` must exceed S // 2, so
            that every pixel of a hole of half the image's side sees a known pixel.
        bn_momentum: weight of each training batch in the norms' running statistics.
    """

    def __init__(
        self, image_size: int = 128, bias_free: bool = True, base_channels: int = 32, depth: int = 5, bn_momentum: float = 0.1
    ) -> None:
        super().__init__()
        check_settings(image_size, base_channels, depth)
        self.image_size = image_size
        self.bias_free = bias_free
        bias = not bias_free
        widths = [min(base_channels * 2**i, 8 * base_channels) for i in range(depth)]

        def norm(channels: int) -> nn.Module:
            return BiasFreeBatchNorm(channels, bn_momentum) if bias_free else nn.BatchNorm2d(channels, momentum=bn_momentum)

        self.encoder = nn.ModuleList(
            [PartialConv2d([cin], cout, encoder_kernel(i), 2, bias) for i, (cin, cout) in enumerate(zip([3, *widths], widths))]
        )
        self.encoder_norms = nn.ModuleList([nn.Identity()] + [norm(c) for c in widths[1:]])
        # decoder stage i (from the deepest) ends at the scale of encoder input depth-1-i:
        # its skip has the channels of that input, and so has its output (3 at the image)
        skips = [3, *widths[:-1]][::-1]
        outs = [*skips[:-1], 3]
        ins = [widths[-1], *outs[:-1]]  # the deepest code, then each decoder stage's output
        self.decoder = nn.ModuleList(
            [UpsamplingPartialConv2d([cin, skip], cout, bias) for cin, skip, cout in zip(ins, skips, outs)]
        )
        self.decoder_norms = nn.ModuleList([norm(c) for c in outs[:-1]])
        self.encoder_act = nn.ReLU()
        self.decoder_act = nn.LeakyReLU(0.2)
        init_weights(self)

    @staticmethod
    def receptive_field(depth: int) -> int:
        """Side, in input pixels, of the narrowest window an output pixel depends on.

        Nearest upsampling gives pixels of one coarse pixel the same parents, so the window's side
        depends on the position (111 to 143 at depth 5) and is found by following every pixel's
        window ``[lo, hi]`` through the layer list on a line (border-free in its middle): a k x k
        layer takes the union of the windows of the k pixels it reads, a decoder layer also those
        of its skip. Every pixel of a hole narrower than this sees a known pixel; a wider hole
        can leave pixels at 0."""
        line = 32 * 2**depth  # windows are under 8 * 2**depth wide: the middle period is clear of the ends
        lo = torch.arange(line, dtype=torch.float64).view(1, 1, -1)
        hi, skips = lo, []

        def union(lo: torch.Tensor, hi: torch.Tensor, kernel: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
            return -F.max_pool1d(-lo, kernel, stride, kernel // 2), F.max_pool1d(hi, kernel, stride, kernel // 2)

        for stage in range(depth):
            skips.append((lo, hi))
            lo, hi = union(lo, hi, encoder_kernel(stage), 2)
        for skip_lo, skip_hi in reversed(skips):
            up = union(lo.repeat_interleave(2, -1), hi.repeat_interleave(2, -1), DECODER_KERNEL, 1)
            skip = union(skip_lo, skip_hi, DECODER_KERNEL, 1)
            lo, hi = torch.minimum(up[0], skip[0]), torch.maximum(up[1], skip[1])
        middle = slice(line // 2, line // 2 + 2**depth)
        return int((hi - lo)[..., middle].min()) + 1

    def forward(self, y: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """``[N, 3, S, S]`` masked input (model values) and its ``[N or 1, 1, S, S]`` or ``[S, S]``
        mask (1 = known) -> ``y`` on the known pixels, the network's prediction on the hole."""
        if known.ndim == 2:
            known = known[None, None]
        features, masks = [y], [known]
        zero = self.bias_free  # bias-free layers leave features 0 where their mask is: no need to mask them again
        for stage, (conv, norm) in enumerate(zip(self.encoder, self.encoder_norms)):
            x, m = conv([features[-1]], [masks[-1]], [zero and stage > 0])
            features.append(self.encoder_act(norm(x)))
            masks.append(m)
        x, m = features.pop(), masks.pop()
        for i, conv in enumerate(self.decoder):
            skip, skip_mask = features.pop(), masks.pop()
            x, m = conv([x, skip], [m, skip_mask], [zero, zero and bool(features)])  # upsamples x; the last skip: the image
            if i < len(self.decoder_norms):
                x = self.decoder_act(self.decoder_norms[i](x))
        prediction = x if self.bias_free else torch.tanh(x)
        known = spread(known, y)
        return y * known + prediction * (1 - known)

    def fill(self, y: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """The generator contract's name (inpaint/models/contract.py) for :meth:`forward`."""
        return self(y, known)

    def predicted(self, known: torch.Tensor) -> torch.Tensor:
        """The generator contract: the output pixels the network predicts, the hole (``[N, 1, S, S]`` bool)."""
        return known < 0.5

    def from_image(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] to the model's value range ([0, 1] bias-free, [-1, 1] biased)."""
        return images if self.bias_free else images * 2 - 1

    def to_image(self, values: torch.Tensor) -> torch.Tensor:
        """Model values back to displayable images, clamped to [0, 1] (outside the analysed map)."""
        return (values if self.bias_free else (values + 1) / 2).clamp(0, 1)

    def mask_input(self, images: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> the network input: model values with the hole set to 0."""
        return self.from_image(images) * known.to(images.dtype)


def check_settings(image_size: int, base_channels: int, depth: int) -> None:
    """Refuse settings the U-Net cannot be built for, or that leave a half-size hole unfilled."""
    if depth < 1:
        raise InpaintError(f"model.depth must be at least 1 (the number of encoder stages), not {depth}.")
    if base_channels < 1:
        raise InpaintError(f"model.base_channels must be a positive integer, not {base_channels}.")
    if image_size < 1 or image_size % 2**depth:
        raise InpaintError(
            f"image_size {image_size} is not divisible by 2**model.depth = {2**depth} (each of the {depth} encoder "
            f"stages halves it): use an image_size that is a multiple of {2**depth}."
        )
    field = PartialConvUNet.receptive_field(depth)
    if field <= image_size // 2:
        works = next(d for d in range(depth + 1, 64) if PartialConvUNet.receptive_field(d) > image_size // 2)
        raise InpaintError(
            f"model.depth={depth} is too shallow for {image_size}x{image_size} images: some output pixels see a window "
            f"of only {field} input pixels, so a hole of half the image's side ({image_size // 2}) could leave them "
            f"unfilled; use model.depth={works} or more"
            + ("." if image_size % 2**works == 0 else f" (and an image_size divisible by {2**works}).")
        )
