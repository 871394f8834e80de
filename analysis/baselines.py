"""Classical inpainting of the same hole, to set the CNN beside: the two poles of the paper's
question, diffusion (OpenCV's Telea fast marching and Bertalmio's Navier-Stokes, scikit-image's
biharmonic fill) and exemplars (the patch-based fill of analysis/exemplar.py, whose weights can be
read, and OpenCV's shift-map), and the mean fill.

Every function takes images in [0, 1], ``[N, 3, S, S]``, and a hole: a :class:`~inpaint.masks.CenterMask`
(its square less the overlap ring), or a bool ``[S, S]`` array (True = fill; one hole for every
image) or ``[N, S, S]`` (one hole per image), as :func:`hole_array` reads them. The fills return the
images with each image's hole filled; pixels outside it are left as they are.

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

from analysis.exemplar import PATCH, exemplar
from analysis.settings import BASELINE_METHODS
from inpaint.errors import InpaintError
from inpaint.masks import CenterMask

Hole = CenterMask | torch.Tensor | np.ndarray


def hole_array(hole: Hole, n: int | None = None) -> np.ndarray:
    """The hole as a numpy bool array, True on the pixels to fill: ``[S, S]`` for a
    :class:`~inpaint.masks.CenterMask` (its square less the overlap ring) or a ``[S, S]`` array, and
    ``[N, S, S]`` for ``[N, S, S]`` arrays (one hole per image); with ``n``, always ``[n, S, S]``."""
    if isinstance(hole, CenterMask):
        array = np.zeros((hole.image_size, hole.image_size), bool)
        array[hole.hole, hole.hole] = True
    else:
        array = hole.detach().cpu().numpy() if isinstance(hole, torch.Tensor) else np.asarray(hole)
        if array.dtype != bool or array.ndim not in (2, 3) or array.shape[-1] != array.shape[-2]:
            raise InpaintError(
                f"a hole must be a CenterMask or a bool [S, S] or [N, S, S] array, not {array.dtype} {array.shape}."
            )
    if n is None:
        return array
    if array.ndim == 3 and len(array) != n:
        raise InpaintError(f"{len(array)} holes for {n} images: give one hole per image, or one [S, S] hole for all.")
    return np.broadcast_to(array, (n, *array.shape[-2:])).copy()


def _holes(hole: Hole, images: torch.Tensor) -> torch.Tensor:
    """``[N, 1, S, S]`` bool on ``images``' device: each image's hole, broadcast over channels."""
    holes = hole_array(hole, len(images))
    if holes.shape[-2:] != images.shape[-2:]:
        raise InpaintError(f"holes of shape {holes.shape[-2:]} do not fit images of shape {tuple(images.shape[-2:])}.")
    return torch.from_numpy(holes).to(images.device)[:, None]


def mean_fill(images: torch.Tensor, hole: Hole) -> torch.Tensor:
    """The hole filled with each image's mean colour over its known pixels."""
    holes = _holes(hole, images)
    if hole_array(hole).ndim == 2:  # one hole for all: every image's mean in one reduction, as before
        mean = images[..., ~holes[0, 0]].mean(dim=-1)
    else:
        mean = torch.stack([image[:, ~h[0]].mean(dim=-1) for image, h in zip(images, holes)])
    return torch.where(holes, mean[..., None, None], images)


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[N, S, S, 3]`` C-contiguous uint8 pixels, as OpenCV takes them (it writes an output it
    cannot take as it is into a copy, and the result is lost)."""
    return np.ascontiguousarray((images.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8))


def _filled(pixels: np.ndarray, images: torch.Tensor, holes: torch.Tensor) -> torch.Tensor:
    """OpenCV's uint8 fill back in ``images``' dtype and device, on the holes only."""
    out = (torch.from_numpy(pixels).permute(0, 3, 1, 2).to(images.dtype) / 255).to(images.device)
    return torch.where(holes, out, images)


def _opencv(images: torch.Tensor, hole: Hole, method: int, radius: int) -> torch.Tensor:
    holes = _holes(hole, images)
    masks = holes[:, 0].cpu().numpy().astype(np.uint8) * 255
    return _filled(np.stack([cv2.inpaint(p, h, radius, method) for p, h in zip(_to_uint8(images), masks)]), images, holes)


def telea(images: torch.Tensor, hole: Hole, radius: int = 5) -> torch.Tensor:
    """Telea (2004) fast-marching inpainting (``cv2.INPAINT_TELEA``), on 8-bit pixels."""
    return _opencv(images, hole, cv2.INPAINT_TELEA, radius)


def navier_stokes(images: torch.Tensor, hole: Hole, radius: int = 5) -> torch.Tensor:
    """Bertalmio et al. (2001) Navier-Stokes inpainting (``cv2.INPAINT_NS``), on 8-bit pixels."""
    return _opencv(images, hole, cv2.INPAINT_NS, radius)


def biharmonic(images: torch.Tensor, hole: Hole) -> torch.Tensor:
    """``skimage.restoration.inpaint_biharmonic`` per image, in float64 (a linear fill, then
    clipped per channel to the range of the known pixels)."""
    holes = _holes(hole, images)
    pixels = images.permute(0, 2, 3, 1).cpu().double().numpy()
    masks = holes[:, 0].cpu().numpy()
    filled = np.stack([inpaint_biharmonic(p, h, channel_axis=-1) for p, h in zip(pixels, masks)])
    out = torch.from_numpy(filled).permute(0, 3, 1, 2).to(images.dtype).to(images.device)
    return torch.where(holes, out, images)


def exemplar_fill(images: torch.Tensor, hole: Hole, patch: int = PATCH) -> torch.Tensor:
    """Patch-based exemplar inpainting (:func:`analysis.exemplar.exemplar`), in float32."""
    return exemplar(images, hole_array(hole, len(images)), patch)[0]


def shift_map(images: torch.Tensor, hole: Hole) -> torch.Tensor:
    """He and Sun's (2012) shift-map inpainting (``cv2.xphoto.inpaint``, OpenCV's contrib build),
    on 8-bit pixels in CIELab (as it expects colour images): each hole pixel copied from one known
    pixel by one of a few dominant offsets."""
    holes = _holes(hole, images)
    pixels = _to_uint8(images)
    known = (~holes[:, 0].cpu().numpy()).astype(np.uint8) * 255  # shift-map's mask marks the known pixels
    filled = np.empty_like(pixels)
    for image, mask, out in zip(pixels, known, filled):
        lab = np.zeros_like(image)
        cv2.xphoto.inpaint(cv2.cvtColor(image, cv2.COLOR_RGB2Lab), mask, lab, cv2.xphoto.INPAINT_SHIFTMAP)
        out[:] = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    return _filled(filled, images, holes)


BASELINES = dict(zip(BASELINE_METHODS, (mean_fill, telea, navier_stokes, biharmonic, exemplar_fill, shift_map), strict=True))


def _one_hole(hole: Hole) -> np.ndarray:
    """A single ``[S, S]`` hole with pixels both in and outside it, as the biharmonic system needs."""
    array = hole_array(hole)
    if array.ndim != 2 or not array.any() or array.all():
        raise InpaintError(
            f"the biharmonic operator needs one [S, S] hole with pixels in and outside it, not {array.sum()} "
            f"hole pixels of shape {array.shape}."
        )
    return array


def _biharmonic_system(hole: Hole) -> tuple[sparse.linalg.SuperLU, sparse.csr_array]:
    """Scikit-image's biharmonic system for the hole: one row per hole pixel (row-major), the
    stencil ``laplace(laplace(delta))`` on the pixel's 5x5 neighbourhood cut at the image border
    (as ``skimage.restoration.inpaint``), split into the sparse LU of ``A_uu`` (hole columns) and
    ``A_uk`` of shape ``(n_hole, S*S)`` (the other columns; zero on the hole). Cached by the hole's
    pixels, so a CenterMask and its hole as an array share one factorisation."""
    array = _one_hole(hole)
    return _cached_system(array.shape[0], array.tobytes())


@lru_cache(maxsize=4)
def _cached_system(size: int, hole_bytes: bytes) -> tuple[sparse.linalg.SuperLU, sparse.csr_array]:
    """:func:`_biharmonic_system` of the ``[size, size]`` hole whose bool pixels are ``hole_bytes``."""
    hole = np.frombuffer(hole_bytes, bool).reshape(size, size)
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


def biharmonic_operator(hole: Hole) -> sparse.csr_array:
    """The exact linear map of biharmonic inpainting before clipping, ``W = -A_uu^-1 A_uk``, per
    channel, for one hole (a CenterMask or a bool ``[S, S]`` array): shape ``(n_hole, S*S)``, row r
    the weights of all pixels for the r-th hole pixel (row-major). Sparse because only known pixels
    within 2 of the hole (the stencil's reach) have weight: about 23 MB as CSR at the 64 mask
    instead of 411 MB dense."""
    lu, a_uk = _biharmonic_system(hole)
    support = np.unique(a_uk.indices)
    dense = -lu.solve(a_uk[:, support].toarray())
    columns = np.broadcast_to(support, dense.shape)
    rows = np.broadcast_to(np.arange(dense.shape[0])[:, None], dense.shape)
    return sparse.csr_array((dense.ravel(), (rows.ravel(), columns.ravel())), shape=a_uk.shape)


def biharmonic_weight_maps(hole: Hole, pixels: Sequence[tuple[int, int]]) -> torch.Tensor:
    """``(P, S, S)`` float64 weight maps of output pixels, like rows of the CNN's Jacobian.

    With a CenterMask, ``pixels`` are (i, j) in the m x m predicted square; with a bool ``[S, S]``
    hole, (row, col) in the image. A hole pixel's map is its row of :func:`biharmonic_operator`,
    found with one transposed solve, ``w = -(A_uu^-T e_r)^T A_uk``; any other pixel (for the
    CenterMask, one of the visible overlap ring) is an input, so its map is one-hot at that pixel."""
    if isinstance(hole, CenterMask):
        m = hole.size
        if any(not (0 <= i < m and 0 <= j < m) for i, j in pixels):
            raise InpaintError(f"weight-map pixels must lie in the {m}x{m} predicted square, not {list(pixels)}.")
        pixels = [(hole.start + i, hole.start + j) for i, j in pixels]
    array = _one_hole(hole)
    size = array.shape[0]
    if any(not (0 <= r < size and 0 <= c < size) for r, c in pixels):
        raise InpaintError(f"weight-map pixels must lie in the {size}x{size} image, not {list(pixels)}.")
    flat = [r * size + c for r, c in pixels]
    maps = np.zeros((len(pixels), size * size))
    maps[range(len(pixels)), flat] = 1.0  # hole pixels' rows are replaced below
    in_hole = [k for k, f in enumerate(flat) if array.flat[f]]
    if in_hole:
        lu, a_uk = _biharmonic_system(array)
        position = np.cumsum(array.ravel()) - 1  # a hole pixel's index among the unknowns
        picks = np.zeros((a_uk.shape[0], len(in_hole)))
        picks[position[[flat[k] for k in in_hole]], range(len(in_hole))] = 1.0
        maps[in_hole] = -(a_uk.T @ lu.solve(picks, trans="T")).T
    return torch.from_numpy(maps.reshape(len(pixels), size, size))


SSIM_WINDOW = 11  # torchmetrics' Gaussian kernel size: the smallest crop SSIM can be taken on


def _ssim_box(hole: np.ndarray) -> tuple[slice, slice]:
    """The hole's bounding box, grown about its centre to at least SSIM_WINDOW a side within the image."""
    size, boxes = hole.shape[0], []
    for axis in (1, 0):
        inside = np.flatnonzero(hole.any(axis=axis))
        lo, hi = inside[0], inside[-1] + 1
        grow = max(SSIM_WINDOW - (hi - lo), 0)
        lo = min(max(lo - grow // 2, 0), size - max(hi - lo, SSIM_WINDOW))
        boxes.append(slice(lo, lo + max(hi - lo, SSIM_WINDOW)))
    return boxes[0], boxes[1]


def hole_metrics(filled: torch.Tensor, originals: torch.Tensor, hole: Hole) -> dict[str, float]:
    """Mean per-image PSNR (data range 1) and mean per-image SSIM over the hole, computed as the
    model's metrics are (torchmetrics on float32), so the numbers compare.

    A CenterMask: on ``[N, 3, h, h]`` hole crops, as the model's. A hole array: PSNR over each
    image's hole pixels (all channels), SSIM on the bounding box of its hole (at least 11 x 11)."""
    if isinstance(hole, CenterMask):
        preds, target = hole.hole_of(filled).float(), hole.hole_of(originals).float()
        psnr = peak_signal_noise_ratio(preds, target, data_range=1.0, reduction="elementwise_mean", dim=(1, 2, 3))
        return {"psnr": psnr.item(), "ssim": structural_similarity_index_measure(preds, target, data_range=1.0).item()}
    holes = _holes(hole, filled)[:, 0]
    if not holes.flatten(1).any(dim=1).all():
        raise InpaintError("hole_metrics needs every image's hole to have at least one pixel.")
    psnr, ssim = [], []
    for preds, target, h in zip(filled.float(), originals.float(), holes):
        psnr.append(peak_signal_noise_ratio(preds[:, h], target[:, h], data_range=1.0))
        rows, cols = _ssim_box(h.cpu().numpy())
        crop = (slice(None), slice(None), rows, cols)
        ssim.append(structural_similarity_index_measure(preds[None][crop], target[None][crop], data_range=1.0))
    return {"psnr": torch.stack(psnr).mean().item(), "ssim": torch.stack(ssim).mean().item()}


def compare_baselines(
    images: torch.Tensor, hole: Hole, names: Sequence[str] = ("mean", "telea", "ns", "biharmonic", "exemplar"),
    exemplar_patch: int = PATCH,
) -> dict[str, dict[str, float]]:
    """Hole PSNR and SSIM of each named baseline on ``images``."""
    unknown = set(names) - set(BASELINES)
    if unknown:
        raise InpaintError(f"unknown baselines {sorted(unknown)}: choose from {sorted(BASELINES)}.")
    fills = {**BASELINES, "exemplar": lambda x, h: exemplar_fill(x, h, exemplar_patch)}
    return {name: hole_metrics(fills[name](images, hole), images, hole) for name in names}
