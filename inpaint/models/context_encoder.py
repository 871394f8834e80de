"""The Context Encoder generator (Pathak et al. 2016), bias-free by default.

``bias_free=True`` makes every layer positively homogeneous of degree 1 (no biases, bias-free
batch norm, no output Tanh, images in [0, 1] with the hole filled by 0), so in eval mode the
network is exactly linear at each input: f(y) = A_y y with A_y its Jacobian.
``bias_free=False`` is the original model (biases, batch norm, Tanh, inputs in [-1, 1], hole
filled with Pathak's per-channel constants): the comparison row.

The two 4x4-on-4x4 bottleneck convolutions (E6 and D1) are exactly dense layers; written as
``nn.Linear`` they compute the same function and train 2-3x faster on CPU
(``dense_bottleneck=False`` keeps the convolutions, the reference for benchmarks).

``pca_components=k`` gives the generator the training originals' top-k principal components
(:class:`~inpaint.models.basis.PCABasis`, fitted when training starts, the decoder's last layer);
``pca_head=True`` makes that layer the projection on them, uncentred so that the bias-free model
stays homogeneous.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inpaint.errors import InpaintError
from inpaint.masks import SUPPORTED_SIZES, CenterMask
from inpaint.models.basis import PCABasis
from inpaint.models.batchnorm import BiasFreeBatchNorm

# Pathak's hole fill for the original model: the ImageNet mean colour, mapped to [-1, 1].
ORIGINAL_FILL = (2 * 117 / 255 - 1, 2 * 104 / 255 - 1, 2 * 123 / 255 - 1)


def init_weights(module: nn.Module) -> None:
    """DCGAN init: conv and linear weights N(0, 0.02), norm scales N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, (BiasFreeBatchNorm, nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)


class ContextEncoder(nn.Module):
    """Encoder-decoder mapping a masked ``[N, 3, S, S]`` image to its ``[N, 3, m, m]`` centre.

    Args:
        mask_size: side m of the predicted centre square (16, 32 or 64).
        bias_free: the homogeneous variant (default) or Pathak's original.
        image_size: side S of the input, a multiple of 32.
        base_channels: width of the first layer (64 in the paper); the widths double to 8x.
        bottleneck: size of the code (4000 in the paper).
        overlap: width of the visible overlap ring; None for Pathak's m / 16.
        dense_bottleneck: E6 and D1 as dense layers (same function, faster) or as convolutions.
        bn_momentum: weight of each training batch in the norms' running statistics (PyTorch's
            and Torch7's 0.1). The bias-free network's eval-mode output scales with every
            running std, so a noisy estimate moves validation PSNR from epoch to epoch; 0.01
            averages over ~100 batches.
        pca_components: k of the PCA basis the generator holds (0: none).
        pca_head: project the prediction on that basis (needs ``pca_components``).
        pca_centred: project about the crops' mean (an offset: the original model only).
    """

    def __init__(
        self,
        mask_size: int = 64,
        bias_free: bool = True,
        image_size: int = 128,
        base_channels: int = 64,
        bottleneck: int = 4000,
        overlap: int | None = None,
        dense_bottleneck: bool = True,
        bn_momentum: float = 0.1,
        pca_components: int = 0,
        pca_head: bool = False,
        pca_centred: bool = False,
    ) -> None:
        super().__init__()
        if mask_size not in SUPPORTED_SIZES:
            raise InpaintError(
                f"the Context Encoder has decoders for mask sizes {SUPPORTED_SIZES}, not {mask_size}: "
                f"choose mask=center16, center32 or center64."
            )
        if image_size < 32 or image_size % 32:
            raise InpaintError(f"image_size must be a positive multiple of 32 (the encoder halves it 5 times), not {image_size}.")
        if base_channels < 1 or bottleneck < 1:
            raise InpaintError(f"base_channels and bottleneck must be positive, not {base_channels} and {bottleneck}.")
        self.mask = CenterMask(image_size, mask_size, overlap)
        self.bias_free = bias_free
        c, k = base_channels, image_size // 32
        bias = not bias_free

        def norm(channels: int, dims: int = 2) -> nn.Module:
            if bias_free:
                return BiasFreeBatchNorm(channels, bn_momentum)
            return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(channels, momentum=bn_momentum)

        def down(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 4, 2, 1, bias=bias), norm(cout), nn.LeakyReLU(0.2)]

        def up(cin: int, cout: int) -> list[nn.Module]:
            return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=bias), norm(cout), nn.ReLU()]

        encoder = [nn.Conv2d(3, c, 4, 2, 1, bias=bias), nn.LeakyReLU(0.2)]
        encoder += down(c, c) + down(c, 2 * c) + down(2 * c, 4 * c) + down(4 * c, 8 * c)
        if dense_bottleneck:
            encoder += [nn.Flatten(), nn.Linear(8 * c * k * k, bottleneck, bias=bias), norm(bottleneck, 1)]
            decoder = [nn.Linear(bottleneck, 8 * c * 16, bias=bias), nn.Unflatten(1, (8 * c, 4, 4))]
        else:
            encoder += [nn.Conv2d(8 * c, bottleneck, k, 1, 0, bias=bias), norm(bottleneck)]
            decoder = [nn.ConvTranspose2d(bottleneck, 8 * c, 4, 1, 0, bias=bias)]
        encoder.append(nn.LeakyReLU(0.2))
        decoder += [norm(8 * c), nn.ReLU()] + up(8 * c, 4 * c) + up(4 * c, 2 * c)  # 4 -> 16
        if mask_size == 64:
            decoder += up(2 * c, c) + [nn.ConvTranspose2d(c, 3, 4, 2, 1, bias=bias)]
        elif mask_size == 32:
            decoder += up(2 * c, c) + [nn.Conv2d(c, 3, 3, 1, 1, bias=bias)]
        else:  # 16, the authors' decoder
            decoder += [nn.Conv2d(2 * c, c, 3, 1, 1, bias=bias), norm(c), nn.ReLU(), nn.Conv2d(c, 3, 3, 1, 1, bias=bias)]
        if not bias_free:
            decoder.append(nn.Tanh())
        if pca_head and not pca_components:
            raise InpaintError("model.pca_head=true projects on model.pca_components principal components: set it to 1 or more.")
        if pca_components:  # the last layer: the head, or the identity holding the regulariser's basis
            decoder.append(PCABasis(mask_size, pca_components, bias_free, pca_centred, pca_head))
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)
        init_weights(self)

    @property
    def basis(self) -> PCABasis | None:
        """The PCA basis (the decoder's last layer), or None for a model without one."""
        last = self.decoder[-1]
        return last if isinstance(last, PCABasis) else None

    def forward(self, masked: torch.Tensor) -> torch.Tensor:
        """Predict the m x m centre (in the model's own value range) from a masked input."""
        return self.decoder(self.encoder(masked))

    def from_image(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] to the model's value range ([0, 1] bias-free, [-1, 1] original)."""
        return images if self.bias_free else images * 2 - 1

    def to_image(self, values: torch.Tensor) -> torch.Tensor:
        """Model values back to displayable images, clamped to [0, 1] (outside the analysed map)."""
        return (values if self.bias_free else (values + 1) / 2).clamp(0, 1)

    def mask_input(self, images: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] -> the masked network input: hole filled with 0 (bias-free) or
        Pathak's constants (original). ``known`` is the generator contract's: the hole is always the
        centred square's."""
        return self.mask.apply(self.from_image(images), 0.0 if self.bias_free else torch.tensor(ORIGINAL_FILL))

    def fill(self, y: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
        """The generator contract (inpaint/models/contract.py): the whole image in model values, the
        centred m x m square replaced by the prediction (linear in y: a copy and the network)."""
        before, after = self.mask.start, self.mask.image_size - self.mask.end
        square = torch.zeros(y.shape[-2:], dtype=torch.bool, device=y.device)
        square[before : self.mask.end, before : self.mask.end] = True
        return torch.where(square, F.pad(self(y).to(y.dtype), (before, after, before, after)), y)

    def predicted(self, known: torch.Tensor) -> torch.Tensor:
        """The generator contract: the predicted square, overlap ring included, ``[N, 1, S, S]`` bool."""
        region = torch.zeros_like(known, dtype=torch.bool)
        region[..., self.mask.start : self.mask.end, self.mask.start : self.mask.end] = True
        return region

    @torch.no_grad()
    def inpaint(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] with the hole filled by the model's prediction (in [0, 1])."""
        prediction = self.to_image(self(self.mask_input(images)))
        return self.mask.paste(images, prediction.to(images.dtype))
