"""The numbers of the weight-map explorer: for one image and any pixel of what the generator
predicts, where that pixel's value comes from.

A bias-free generator is linear at each input, f(y) = A_y y, so a pixel's weight map is its rows of
A_y, one reverse-mode product with the network (:func:`analysis.jacobian.pixel_rows`), milliseconds
at the demo's width: the live page (``analyze.py explore=``) computes each on the click, the page a
run writes (``analysis/explorer.html``) holds those of a grid of pixels. Beside it, at the same
pixel: the biharmonic fill's map (diffusion, exact) and the exemplar fill's (its correspondence
field), phi_p by the "hole" definition with its windows, and the centroid of the weights.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from analysis.baselines import biharmonic_weight_maps
from analysis.exemplar import ExemplarField, exemplar_field
from analysis.jacobian import centroid_offset, exact, pixel_rows
from analysis.locality import phi_p, phi_windows
from analysis.report import known_of
from inpaint.data.datamodule import split_batch
from inpaint.errors import InpaintError
from inpaint.masks import CenterMask
from inpaint.models.contract import Generator

CHANNELS = ("red", "green", "blue")


def first_image(batches: Iterable, mask: CenterMask | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first image of ``batches`` (a holdout loader: plain images or (images, known) pairs) and its
    ``known`` ``[1, 1, S, S]``: the first image the analyses measure."""
    images, known = split_batch(next(iter(batches)))
    return images[0], known_of(images[:1], None if known is None else known[:1], mask)


@dataclass
class PixelMaps:
    """One output pixel's weight maps, each ``[S, S]`` float32: ``cnn`` the network's ("colour": the
    square root of the sum of squares over both channel axes; "red", "green", "blue": that output
    channel's weights on the same input channel, "red" being what the paper's figures draw),
    ``biharmonic`` and ``exemplar`` the two classical poles' (one map: they fill each channel alike);
    ``phi_p`` of the colour map at the scene's ``ps`` and the (rows, cols) offset of its centroid."""

    pixel: tuple[int, int]
    cnn: dict[str, np.ndarray]
    biharmonic: np.ndarray
    exemplar: np.ndarray
    phi_p: list[float]
    centroid: tuple[float, float]


@dataclass
class Scene:
    """One image as the explorer shows it: ``original`` ``[3, S, S]`` in [0, 1] with its ``known``
    mask ``[1, 1, S, S]`` (1 = known), filled by ``generator`` (the analyses' generator contract,
    :mod:`inpaint.models.contract`). ``ps`` are the p of the phi_p curves; ``patch`` the exemplar's."""

    generator: Generator
    original: torch.Tensor
    known: torch.Tensor
    ps: list[float]
    patch: int = 7
    masked: torch.Tensor = field(init=False)
    inpainted: torch.Tensor = field(init=False)
    hole: np.ndarray = field(init=False)
    region: np.ndarray = field(init=False)
    windows: np.ndarray = field(init=False)
    _field: ExemplarField | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        device = next(self.generator.parameters()).device
        self.original, self.known = self.original.to(device, torch.float32), self.known.to(device, torch.float32)
        with exact(self.generator, device):
            self.masked = self.generator.mask_input(self.original[None], self.known)[0]  # the network's input y
            filled = self.generator.to_image(self.generator.fill(self.masked[None], self.known).float())
            self.inpainted = torch.where(self.known > 0.5, self.original, filled)[0]
        self.hole = (self.known[0, 0] < 0.5).cpu().numpy()
        self.region = self.generator.predicted(self.known)[0, 0].cpu().numpy().astype(bool)
        # each p's window, grown from the hole ("hole" definition): the smallest p whose window holds a pixel
        windows = phi_windows(self.hole, self.ps)
        self.windows = np.where(windows.any(0), windows.argmax(0), len(self.ps)).astype(np.uint8)

    @property
    def size(self) -> int:
        return self.hole.shape[0]

    def pictures(self) -> dict[str, torch.Tensor]:
        """What the page shows of the image, ``[3, S, S]`` in [0, 1] each: the masked input (the
        hole blacked out), the inpainting (known pixels kept), the original."""
        return {"masked": self.original * self.known[0], "inpainted": self.inpainted, "original": self.original}

    def grid(self, most: int) -> list[tuple[int, int]]:
        """At most ``most`` predicted pixels on an even grid over the predicted region's bounding box,
        row-major: the pixels whose maps a page without a server holds."""
        rows, cols = np.nonzero(self.region)
        top, left = rows - rows.min(), cols - cols.min()  # offsets in the region's bounding box
        for step in range(1, self.size + 1):
            on_grid = (top % step == step // 2) & (left % step == step // 2)
            picked = [(int(r), int(c)) for r, c in zip(rows[on_grid], cols[on_grid])]
            if 0 < len(picked) <= most:
                return picked
        return [(int(rows[len(rows) // 2]), int(cols[len(cols) // 2]))]

    def exemplar(self) -> ExemplarField:
        """The exemplar fill's correspondence field, found on first use (a fraction of a second): it
        serves every pixel of the image."""
        if self._field is None:
            self._field = exemplar_field(self.original.cpu(), self.hole, self.patch)[1]
        return self._field

    def maps(self, pixels: list[tuple[int, int]]) -> list[PixelMaps]:
        """The weight maps of ``pixels`` (image (row, col), each predicted by the generator)."""
        outside = [p for p in pixels if not (0 <= p[0] < self.size and 0 <= p[1] < self.size and self.region[p])]
        if outside:
            raise InpaintError(f"pixel(s) {outside} are not predicted by the generator (a known pixel passes through: "
                               f"its map is the pixel itself); pick pixels of the hole.")
        rows = pixel_rows(self.generator, self.masked, self.known[0], pixels).cpu()  # (P, 3, 3, S, S)
        colour = rows.square().sum(dim=(1, 2)).sqrt()
        biharmonic = biharmonic_weight_maps(self.hole, pixels).float()
        exemplar = self.exemplar().weight_maps(pixels).float()
        curves = phi_p(colour, self.hole, self.ps, zeroed=self.hole)
        acting = colour.masked_fill(torch.from_numpy(self.hole), 0)  # weights on the hole act on zeros
        return [
            PixelMaps(
                pixel=pixel,
                cnn={"colour": colour[k].numpy(), **{name: rows[k, c, c].numpy() for c, name in enumerate(CHANNELS)}},
                biharmonic=biharmonic[k].numpy(),
                exemplar=exemplar[k].numpy(),
                phi_p=curves[k].tolist(),
                centroid=centroid_offset(acting[k], pixel, 0),
            )
            for k, pixel in enumerate(pixels)
        ]
