"""Centre-mask geometry (Pathak et al.): the predicted square, the zeroed hole, the overlap ring.

The network predicts the whole m x m centre square. Only its inner (m - 2*overlap)^2 part, the
hole, is removed from the input; the ring of width ``overlap`` stays visible and is weighted
``ring_weight`` times in the L2 loss so that the prediction joins its border seamlessly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from inpaint.errors import InpaintError

SUPPORTED_SIZES = (16, 32, 64)


@dataclass(frozen=True)
class CenterMask:
    """A centred m x m mask on S x S images. ``overlap=None`` takes Pathak's m / 16 (4 at 64)."""

    image_size: int = 128
    size: int = 64
    overlap: int | None = None

    def __post_init__(self) -> None:
        if self.overlap is None:
            object.__setattr__(self, "overlap", self.size // 16)
        if not 0 < self.size < self.image_size or (self.image_size - self.size) % 2:
            raise InpaintError(
                f"mask size {self.size} does not fit a {self.image_size}x{self.image_size} image: "
                f"it must be smaller than the image and leave an even margin (e.g. mask=center64)."
            )
        if not 0 <= 2 * self.overlap < self.size:
            raise InpaintError(
                f"mask overlap {self.overlap} leaves no hole in a {self.size} mask: "
                f"use 0 <= overlap < {self.size // 2} (Pathak's default is size / 16)."
            )

    @property
    def start(self) -> int:
        """First row / column of the predicted square."""
        return (self.image_size - self.size) // 2

    @property
    def end(self) -> int:
        """One past the last row / column of the predicted square."""
        return self.start + self.size

    @property
    def hole(self) -> slice:
        """Rows (and columns) removed from the input: the square less its overlap ring."""
        return slice(self.start + self.overlap, self.end - self.overlap)

    @property
    def inner(self) -> slice:
        """The hole in coordinates of the predicted square."""
        return slice(self.overlap, self.size - self.overlap)

    def crop(self, images: torch.Tensor) -> torch.Tensor:
        """The m x m centre of ``[..., S, S]`` images."""
        return images[..., self.start : self.end, self.start : self.end]

    def apply(self, images: torch.Tensor, fill: torch.Tensor | float = 0.0) -> torch.Tensor:
        """A copy of ``images`` with the hole set to ``fill`` (a scalar or one value per channel)."""
        masked = images.clone()
        fill = torch.as_tensor(fill, dtype=images.dtype, device=images.device)
        masked[..., self.hole, self.hole] = fill.reshape(-1, 1, 1) if fill.ndim else fill
        return masked

    def paste(self, images: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
        """``images`` with the hole replaced by the hole of an m x m ``prediction``."""
        out = images.clone()
        out[..., self.hole, self.hole] = prediction[..., self.inner, self.inner]
        return out

    def hole_of(self, images: torch.Tensor) -> torch.Tensor:
        """The hole's pixels of full ``[..., S, S]`` images."""
        return images[..., self.hole, self.hole]

    def loss_weights(self, ring_weight: float = 10.0) -> torch.Tensor:
        """``[m, m]`` L2 weights: 1 inside the hole, ``ring_weight`` on the overlap ring."""
        weights = torch.full((self.size, self.size), float(ring_weight))
        weights[self.inner, self.inner] = 1.0
        return weights
