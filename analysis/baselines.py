"""Classical inpainting of the same hole, to set the CNN beside: mean fill, OpenCV's diffusion
methods (Telea's fast marching, Bertalmio's Navier-Stokes) and scikit-image's biharmonic fill.

Every function takes images in [0, 1], ``[N, 3, S, S]``, and a :class:`~inpaint.masks.CenterMask`,
and returns the images with the hole filled; pixels outside the hole are left as they are.

Biharmonic inpainting is linear in the known pixels (before scikit-image clips the result to their
range), so its exact "Jacobian" can be built from its sparse system and set beside the CNN's:
:func:`biharmonic_operator` gives all of it, :func:`biharmonic_weight_maps` the maps of a few pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np
import torch
from scipy import sparse
from scipy.ndimage import laplace
from scipy.sparse.linalg import splu
from skimage.restoration import inpaint_biharmonic
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from inpaint.errors import InpaintError
from inpaint.masks import CenterMask


def mean_fill(images: torch.Tensor, mask: CenterMask) -> torch.Tensor:
    """The hole filled with each image's mean colour over its known pixels."""
    known = torch.ones(images.shape[-2:], dtype=torch.bool)
    known[mask.hole, mask.hole] = False
    mean = images[..., known].mean(dim=-1)
    return mask.apply(images, 0.0) + (~known) * mean[..., None, None]


def _opencv(images: torch.Tensor, mask: CenterMask, method: int, radius: int) -> torch.Tensor:
    hole = np.zeros(images.shape[-2:], np.uint8)
    hole[mask.hole, mask.hole] = 255
    pixels = (images.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    filled = np.stack([cv2.inpaint(p, hole, radius, method) for p in pixels])
    out = torch.from_numpy(filled).permute(0, 3, 1, 2).to(images.dtype) / 255
    return mask.paste(images, mask.crop(out.to(images.device)))


def telea(images: torch.Tensor, mask: CenterMask, radius: int = 5) -> torch.Tensor:
    """Telea (2004) fast-marching inpainting (``cv2.INPAINT_TELEA``), on 8-bit pixels."""
    return _opencv(images, mask, cv2.INPAINT_TELEA, radius)


def navier_stokes(images: torch.Tensor, mask: CenterMask, radius: int = 5) -> torch.Tensor:
    """Bertalmio et al. (2001) Navier-Stokes inpainting (``cv2.INPAINT_NS``), on 8-bit pixels."""
    return _opencv(images, mask, cv2.INPAINT_NS, radius)


def _hole_mask(mask: CenterMask) -> np.ndarray:
    """``[S, S]`` bool, True on the hole (the pixels to fill)."""
    hole = np.zeros((mask.image_size, mask.image_size), bool)
    hole[mask.hole, mask.hole] = True
    return hole


def biharmonic(images: torch.Tensor, mask: CenterMask) -> torch.Tensor:
    """``skimage.restoration.inpaint_biharmonic`` per image, in float64 (a linear fill, then
    clipped per channel to the range of the known pixels)."""
    hole = _hole_mask(mask)
    pixels = images.permute(0, 2, 3, 1).cpu().double().numpy()
    filled = np.stack([inpaint_biharmonic(p, hole, channel_axis=-1) for p in pixels])
    out = torch.from_numpy(filled).permute(0, 3, 1, 2).to(images.dtype).to(images.device)
    return mask.paste(images, mask.crop(out))


BASELINES = {"mean": mean_fill, "telea": telea, "ns": navier_stokes, "biharmonic": biharmonic}


@lru_cache(maxsize=4)
def _biharmonic_system(mask: CenterMask) -> tuple[sparse.linalg.SuperLU, sparse.csr_array]:
    """Scikit-image's biharmonic system for the hole: one row per hole pixel (row-major), the
    stencil ``laplace(laplace(delta))`` on the pixel's 5x5 neighbourhood cut at the image border
    (as ``skimage.restoration.inpaint``), split into the sparse LU of ``A_uu`` (hole columns) and
    ``A_uk`` of shape ``(n_hole, S*S)`` (the other columns; zero on the hole)."""
    size, hole = mask.image_size, _hole_mask(mask)
    rows, cols = np.divmod(np.flatnonzero(hole), size)
    lo_r, lo_c = np.maximum(rows - 2, 0), np.maximum(cols - 2, 0)
    hi_r, hi_c = np.minimum(rows + 3, size), np.minimum(cols + 3, size)
    windows = np.stack([hi_r - lo_r, rows - lo_r, hi_c - lo_c, cols - lo_c], 1)
    keys, which = np.unique(windows, axis=0, return_inverse=True)
    entries = []  # (row index, flat column, coefficient) per distinct window shape
    for k, (height, r, width, c) in enumerate(keys):
        delta = np.zeros((height, width))
        delta[r, c] = 1.0
        coef = laplace(laplace(delta))
        dr, dc = np.nonzero(coef)
        sel = np.flatnonzero(which.ravel() == k)
        flat = (rows[sel, None] + dr - r) * size + cols[sel, None] + dc - c
        entries.append((np.repeat(sel, len(dr)), flat.ravel(), np.tile(coef[dr, dc], len(sel))))
    row, col, val = (np.concatenate(e) for e in zip(*entries))
    unknown = hole.ravel()[col]
    position = np.cumsum(hole.ravel()) - 1  # a hole pixel's index among the unknowns
    a_uu = sparse.csc_array((val[unknown], (row[unknown], position[col[unknown]])), shape=(len(rows),) * 2)
    a_uk = sparse.csr_array((val[~unknown], (row[~unknown], col[~unknown])), shape=(len(rows), size * size))
    return splu(a_uu), a_uk


def biharmonic_operator(mask: CenterMask) -> sparse.csr_array:
    """The exact linear map of biharmonic inpainting before clipping, ``W = -A_uu^-1 A_uk``, per
    channel: shape ``(n_hole, S*S)``, row r the weights of all pixels for the r-th hole pixel
    (row-major). Sparse because only known pixels within 2 of the hole (the stencil's reach) have
    weight: about 23 MB as CSR at the 64 mask instead of 411 MB dense."""
    lu, a_uk = _biharmonic_system(mask)
    support = np.unique(a_uk.indices)
    dense = -lu.solve(a_uk[:, support].toarray())
    columns = np.broadcast_to(support, dense.shape)
    rows = np.broadcast_to(np.arange(dense.shape[0])[:, None], dense.shape)
    return sparse.csr_array((dense.ravel(), (rows.ravel(), columns.ravel())), shape=a_uk.shape)


def biharmonic_weight_maps(mask: CenterMask, pixels: Sequence[tuple[int, int]]) -> torch.Tensor:
    """``(P, S, S)`` float64 weight maps of output pixels ``(i, j)`` of the m x m predicted square,
    like rows of the CNN's Jacobian. A hole pixel's map is its row of :func:`biharmonic_operator`,
    found with one transposed solve, ``w = -(A_uu^-T e_r)^T A_uk``; a pixel of the visible overlap
    ring is an input, so its map is one-hot at that pixel."""
    size, m, overlap = mask.image_size, mask.size, mask.overlap
    if any(not (0 <= i < m and 0 <= j < m) for i, j in pixels):
        raise InpaintError(f"weight-map pixels must lie in the {m}x{m} predicted square, not {list(pixels)}.")
    maps = np.zeros((len(pixels), size * size))
    for k, (i, j) in enumerate(pixels):
        maps[k, (mask.start + i) * size + mask.start + j] = 1.0  # hole pixels' rows are replaced below
    in_hole = [k for k, (i, j) in enumerate(pixels) if overlap <= min(i, j) and max(i, j) < m - overlap]
    if in_hole:
        lu, a_uk = _biharmonic_system(mask)
        side = m - 2 * overlap
        picks = np.zeros((side * side, len(in_hole)))
        picks[[(pixels[k][0] - overlap) * side + pixels[k][1] - overlap for k in in_hole], range(len(in_hole))] = 1.0
        maps[in_hole] = -(a_uk.T @ lu.solve(picks, trans="T")).T
    return torch.from_numpy(maps.reshape(len(pixels), size, size))


def hole_metrics(filled: torch.Tensor, originals: torch.Tensor, mask: CenterMask) -> dict[str, float]:
    """Mean per-image PSNR (data range 1) and mean SSIM over the hole, computed as the model's
    metrics are (torchmetrics on float32 ``[N, 3, h, h]`` hole crops), so the numbers compare."""
    preds, target = mask.hole_of(filled).float(), mask.hole_of(originals).float()
    psnr = peak_signal_noise_ratio(preds, target, data_range=1.0, reduction="elementwise_mean", dim=(1, 2, 3))
    return {"psnr": psnr.item(), "ssim": structural_similarity_index_measure(preds, target, data_range=1.0).item()}


def compare_baselines(
    images: torch.Tensor, mask: CenterMask, names: Sequence[str] = ("mean", "telea", "ns", "biharmonic")
) -> dict[str, dict[str, float]]:
    """Hole PSNR and SSIM of each named baseline on ``images``."""
    unknown = set(names) - set(BASELINES)
    if unknown:
        raise InpaintError(f"unknown baselines {sorted(unknown)}: choose from {sorted(BASELINES)}.")
    return {name: hole_metrics(BASELINES[name](images, mask), images, mask) for name in names}
