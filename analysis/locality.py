"""Locality measures for a hole of any shape: the named output pixels, the windows of phi_p and
phi_p itself, and the distance to the hole's boundary.

:mod:`analysis.jacobian` defines them for the centred square of the Context Encoder; here a region
is any bool ``[S, S]`` array (True = in the region: the pixels a network predicts, or the hole) and
every pixel coordinate is in the image, (row, col). For the centred square each function gives
exactly the square's numbers (tests/test_locality.py), so results on other holes set beside them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.ndimage import distance_transform_cdt, distance_transform_edt

from analysis.jacobian import PIXEL_NAMES  # the order of the paper's figure 10


def _region(region: np.ndarray | torch.Tensor, name: str = "region") -> np.ndarray:
    """``region`` as a numpy bool ``[S, S]`` array, after checking that it is one and that it is
    neither empty nor the whole image (a locality measure needs pixels inside and outside)."""
    array = region.detach().cpu().numpy() if isinstance(region, torch.Tensor) else np.asarray(region)
    if array.dtype != bool:
        raise ValueError(f"{name} must be a bool array (True = in the {name}), not dtype {array.dtype}.")
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise ValueError(f"{name} must be a square [S, S] image, not shape {array.shape}.")
    if not array.any():
        raise ValueError(f"{name} is empty: it needs at least one True pixel.")
    if array.all():
        raise ValueError(f"{name} covers the whole image: it needs at least one pixel outside it.")
    return array


def _ps(ps: Sequence[float]) -> np.ndarray:
    values = np.asarray(ps, dtype=np.float64)
    if values.ndim != 1 or not np.all((values >= 0) & (values <= 1)):
        raise ValueError(f"ps must be a 1-D sequence of numbers in [0, 1], not {ps}.")
    return values


def _nearest(pixels: np.ndarray, point: tuple[float, float]) -> tuple[int, int]:
    """The first (in the given, row-major order) of ``pixels`` ``[n, 2]`` nearest to ``point``."""
    k = np.argmin(((pixels - np.asarray(point)) ** 2).sum(axis=1))
    return int(pixels[k, 0]), int(pixels[k, 1])


def named_pixels(region: np.ndarray | torch.Tensor) -> dict[str, tuple[int, int]]:
    """The pixels the figures follow, in image coordinates, keyed as :data:`PIXEL_NAMES`.

    centre: the most interior region pixel by the Euclidean distance transform (the image border
    counts as outside), ties to the nearest to the bounding box's centre (top + h // 2, left + w // 2),
    then row-major; corner: the region pixel nearest to the bounding box's top-left corner; edge: in
    the centre's row, the rightmost pixel of the run of region pixels holding the centre; diagonal:
    a quarter of the way from corner to centre, rounded half up, snapped to the nearest region pixel
    if outside. For the centred m x m square from s this is ``analysis.jacobian.named_pixels(m)``
    shifted by s: (s, s), (s + m//8, s + m//8) when 8 divides m, (s + m//2, s + m//2), (s + m//2, s + m - 1).
    """
    region = _region(region)
    pixels = np.argwhere(region)  # row-major
    (top, left), (bottom, right) = pixels.min(axis=0), pixels.max(axis=0)
    depth = distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    deepest = np.argwhere(depth == depth.max())
    centre = _nearest(deepest, (top + (bottom - top + 1) // 2, left + (right - left + 1) // 2))
    corner = _nearest(pixels, (top, left))
    row = region[centre[0], centre[1] :]
    run = len(row) if row.all() else int(np.argmin(row))  # length of the run from the centre rightwards
    edge = (centre[0], centre[1] + run - 1)
    quarter = tuple(math.floor(a + (b - a) / 4 + 0.5) for a, b in zip(corner, centre))
    diagonal = quarter if region[quarter] else _nearest(pixels, quarter)
    return dict(zip(PIXEL_NAMES, (corner, diagonal, centre, edge)))


def reach(region: np.ndarray | torch.Tensor) -> int:
    """The largest Chebyshev distance max(|dr|, |dc|) from an image pixel to its nearest region
    pixel: how far phi_p's window must grow to cover the image (the margin (S - m) / 2 of a centred square)."""
    return int(distance_transform_cdt(~_region(region), metric="chessboard").max())


def _offsets(p: float, d: int, size: int) -> tuple[int, int]:
    """The window's offsets (floor(-p d), floor(p d)), computed as the authors' code rounds them.

    Exactly, floor(d - p d) - d = floor(-p d) and floor(e + p d) - e = floor(p d) for any integer e.
    In floats p d can land a rounding error off an integer (0.3 * 50 = 15.000000000000002), and then
    the code's floor(s - p s) and floor(e + p s), which add it to the square's bounds s and e = S - s
    first, differ from s + floor(-p s) and e + floor(p s). Adding it to the same bounds, d and S - d
    (= s and e for the centred square, where d = s), gives the code's windows bit for bit."""
    return math.floor(d - p * d) - d, math.floor(size - d + p * d) - (size - d)


def phi_windows(region: np.ndarray | torch.Tensor, ps: Sequence[float]) -> np.ndarray:
    """``[P, S, S]`` bool: each p's window, the region dilated by the box of offsets [floor(-p d),
    floor(p d)] in both axes, d = :func:`reach`; the region itself at p = 0, the whole image at p = 1.

    For the centred square [s, e)^2 (d = s) this is the authors' window [floor(s - p s), floor(e + p s))
    in both axes: for integer y, x - y >= floor(-p d) <=> x >= y + floor(-p d) = floor(y - p d), and
    x - y <= floor(p d) <=> x <= floor(y + p d) <=> x < floor(y + 1 + p d); the union over y in [s, e)
    is [floor(s - p d), floor(e - 1 + 1 + p d)). Floats round as the code does (see :func:`_offsets`).
    """
    region, ps = _region(region), _ps(ps)
    size, d = region.shape[0], reach(region)
    lo, hi = np.array([_offsets(p, d, size) for p in ps]).reshape(-1, 2).T
    # x is in a 1-D dilation when a region pixel lies in [x - hi, x - lo]: a difference of cumulative
    # counts, for every p at once; rows first, then columns of the result (the box is separable).
    x = np.arange(size)
    upper = np.clip(x - lo[:, None] + 1, 0, size)  # [P, S], one past the range
    lower = np.clip(x - hi[:, None], 0, size)
    counts = np.pad(region.cumsum(axis=0), ((1, 0), (0, 0)))  # [S + 1, S]
    rows = (counts[upper] - counts[lower]) > 0  # [P, S, S]
    counts = np.pad(rows.cumsum(axis=2), ((0, 0), (0, 0), (1, 0)))  # [P, S, S + 1]
    p = np.arange(len(ps))[:, None, None]
    return (counts[p, x[:, None], upper[:, None, :]] - counts[p, x[:, None], lower[:, None, :]]) > 0


def phi_p(
    weight_maps: torch.Tensor,
    region: np.ndarray | torch.Tensor,
    ps: Sequence[float],
    zeroed: np.ndarray | torch.Tensor | None = None,
) -> torch.Tensor:
    """Locality ratio phi_p = ||map on window_p||_F / ||map||_F of ``(..., S, S)`` weight maps, after
    zeroing the pixels of ``zeroed`` (None: none), with the windows of :func:`phi_windows`.

    Returns float64 ``(..., P)``, NaN for an all-zero map. region = zeroed = the centred m x m square
    gives ``analysis.jacobian.phi_p(maps, m, ps, definition="code")``, region = zeroed = the hole its
    "hole" definition. Windows are nested, so phi_p is non-decreasing in p and lies in [0, 1].
    """
    region = _region(region)
    windows = phi_windows(region, ps)
    if weight_maps.shape[-2:] != region.shape:
        raise ValueError(f"weight maps of shape {tuple(weight_maps.shape)} do not match the {region.shape} region.")
    energy = weight_maps.to(torch.float64).square()
    if zeroed is not None:
        zeroed = zeroed.detach().cpu().numpy() if isinstance(zeroed, torch.Tensor) else np.asarray(zeroed)
        if zeroed.dtype != bool or zeroed.shape != region.shape:
            raise ValueError(f"zeroed must be a bool {region.shape} array, not {zeroed.dtype} {zeroed.shape}.")
        energy = energy.masked_fill(torch.from_numpy(zeroed).to(energy.device), 0.0)
    flat, windows = energy.flatten(-2), windows.reshape(len(windows), -1)
    cover = torch.from_numpy(windows).to(energy.device, torch.float64)
    total = flat.sum(dim=-1, keepdim=True)
    # A window covering the image holds the total itself, so that phi_1 = 1 exactly.
    inside = torch.where(torch.from_numpy(windows.all(axis=1)).to(energy.device), total, flat @ cover.T)
    return (inside / total).sqrt()


def boundary_distance(hole: np.ndarray | torch.Tensor) -> np.ndarray:
    """``[S, S]`` float64 Euclidean distance of every known pixel to the nearest hole pixel, 0 on the
    hole: how far from the hole's boundary a method draws its weight."""
    return distance_transform_edt(~_region(hole, "hole"))


def source_distance(weight_maps: torch.Tensor, hole: np.ndarray | torch.Tensor, far: float) -> tuple[torch.Tensor, torch.Tensor]:
    """How far from the hole ``(..., S, S)`` weight maps draw their weight: the mean distance to the
    hole (:func:`boundary_distance`) of the |weight| on known pixels (the hole's weights act on
    zeros), and the share of that |weight| farther than ``far`` pixels. Diffusion stays within a
    few pixels of the hole; an exemplar method copies from wherever the best patch lies.

    Returns two float64 ``(...)`` tensors, NaN for a map with no weight on known pixels."""
    distance = torch.from_numpy(boundary_distance(hole)).to(weight_maps.device)
    weight = weight_maps.abs().to(torch.float64) * (distance > 0)
    total = weight.sum((-2, -1))
    return (weight * distance).sum((-2, -1)) / total, (weight * (distance > far)).sum((-2, -1)) / total
