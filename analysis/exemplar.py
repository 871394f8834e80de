"""Exemplar-based inpainting whose weights can be read: the other pole of the paper's question.

The fill is Wexler, Shechtman and Irani's (2007) patch-based completion, in the family of
Criminisi et al. (2003) and PatchMatch (Barnes et al. 2009): every P x P patch that overlaps the
hole is matched to a similar patch lying wholly in the known pixels (small sum of squared
differences with the current estimate), and each hole pixel becomes the mean of what the matched
patches covering it put there. Matching and voting alternate, coarse to fine: the image is halved
while the halved hole still leaves a known patch, the coarsest level starts from a smooth fill and
compares every known patch, and each finer level starts from its parent's matches and runs
PatchMatch's propagation with a search within RADIUS pixels of each match (no random search: the
coarse levels have already looked everywhere). Patches are compared on their top FEATURES
principal components.

What it keeps is the correspondence field (:class:`ExemplarField`): which source patch each target
patch copies. For a fixed field the fill is linear in the image, ``y_hole = W y``, each hole pixel a
mean of known pixels (rows of W sum to 1), so W's rows are weight maps exactly as A_y's rows are the
CNN's, and can be set beside them and diffusion's. Hand-written: no Python library exposes the field
(OpenCV's shift-map, ``cv2.xphoto.inpaint``, returns the fill alone).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse

from inpaint.errors import InpaintError

PATCH = 7  # pixels a side: Criminisi et al. used 9 on larger photographs; 7 resolves an eye at 128 px
ITERATIONS = 4  # match-and-vote rounds per level at most (fewer when the field stops changing)
FEATURES = 24  # patches are compared on their top principal components: most of their variance, 6x fewer numbers
RADIUS = 2  # a finer level searches this far about each patch's current match
SEARCH_ROWS = 2048  # target patches matched per matrix product (a 2048 x 10,000 float32 block: 80 MB)


@dataclass(frozen=True)
class ExemplarField:
    """One image's correspondence field: target patch k (top-left corner ``targets[k]``, (row, col))
    copies the source patch at ``sources[k]``, which lies wholly in the known pixels. The targets are
    every P x P patch within the image that overlaps the hole."""

    hole: np.ndarray  # [S, S] bool, True = filled
    patch: int
    targets: np.ndarray  # [T, 2] int
    sources: np.ndarray  # [T, 2] int

    def operator(self) -> sparse.csr_array:
        """W, ``(n_hole, S*S)``: row r holds the weights of hole pixel r (row-major) on the image's
        pixels, the same for every channel; non-negative, on known pixels only, each row summing to 1."""
        size, hole = self.hole.shape[0], self.hole.ravel()
        dr, dc = np.divmod(np.arange(self.patch**2), self.patch)
        target = (self.targets[:, :1] + dr) * size + self.targets[:, 1:] + dc  # [T, P*P] flat pixels
        source = (self.sources[:, :1] + dr) * size + self.sources[:, 1:] + dc
        inside = hole[target]
        position = np.cumsum(hole) - 1  # a hole pixel's row
        rows, cols = position[target[inside]], source[inside]
        votes = np.bincount(rows, minlength=int(hole.sum()))
        return sparse.csr_array((1.0 / votes[rows], (rows, cols)), shape=(len(votes), size * size))

    def weight_maps(self, pixels: Sequence[tuple[int, int]]) -> torch.Tensor:
        """``(P, S, S)`` float64 weight maps of image pixels (row, col), as
        :func:`analysis.baselines.biharmonic_weight_maps`: a hole pixel's row of W, any other pixel
        one-hot at itself (the fill keeps known pixels)."""
        size = self.hole.shape[0]
        if any(not (0 <= r < size and 0 <= c < size) for r, c in pixels):
            raise InpaintError(f"weight-map pixels must lie in the {size}x{size} image, not {list(pixels)}.")
        flat = np.array([r * size + c for r, c in pixels], dtype=np.int64)
        maps = np.zeros((len(flat), size * size))
        maps[np.arange(len(flat)), flat] = 1.0
        in_hole = self.hole.ravel()[flat]
        if in_hole.any():
            position = np.cumsum(self.hole.ravel()) - 1
            maps[in_hole] = self.operator()[position[flat[in_hole]]].toarray()
        return torch.from_numpy(maps.reshape(len(flat), size, size))


def _windows(hole: torch.Tensor, patch: int) -> torch.Tensor:
    """``[S-P+1, S-P+1]``: how many hole pixels each P x P patch (by its top-left corner) holds."""
    box = torch.ones(1, 1, patch, patch)
    return F.conv2d(hole[None, None].float(), box)[0, 0].round().long()


def _vote(image: torch.Tensor, hole: torch.Tensor, targets: torch.Tensor, sources: torch.Tensor, patch: int) -> torch.Tensor:
    """The image with each hole pixel the mean of the matched source patches' pixels placed over it
    (the E-step), by folding the copied patches back onto the image: a path apart from
    :meth:`ExemplarField.operator`, so the two check each other."""
    size = image.shape[-1]
    grid = size - patch + 1
    columns = F.unfold(image[None], patch)[0]  # [3 P P, grid * grid]
    placed = torch.zeros_like(columns)
    placed[:, targets] = columns[:, sources]
    ones = torch.zeros(1, grid * grid, dtype=image.dtype)
    ones[:, targets] = 1.0
    fold = {"output_size": (size, size), "kernel_size": patch}
    total = F.fold(placed[None], **fold)[0]
    votes = F.fold(ones.expand(patch * patch, -1)[None], **fold)[0]
    return torch.where(hole, total / votes.clamp_min(1.0), image)


def _match_all(columns: torch.Tensor, targets: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """For each target patch (flat corner index), the source patch of least squared difference among
    all of them: one matrix product per block of targets."""
    source = columns[sources]
    norms = source.square().sum(1)
    best = torch.empty(len(targets), dtype=torch.long)
    for start in range(0, len(targets), SEARCH_ROWS):
        block = columns[targets[start : start + SEARCH_ROWS]]
        # ||t - s||^2 less ||t||^2, the same for every source of a row
        best[start : start + len(block)] = torch.addmm(norms, block, source.T, alpha=-2).argmin(1)
    return sources[best]


def _match_near(columns: torch.Tensor, targets: torch.Tensor, matched: torch.Tensor, is_source: torch.Tensor,
                grid: int) -> torch.Tensor:
    """PatchMatch's step (Barnes et al. 2009) without its random search: each target's best among
    the sources within RADIUS of its current match and its four neighbours' matches shifted by one
    (propagation). Targets left without a valid candidate are matched among all sources."""
    rows, cols = torch.div(targets, grid, rounding_mode="floor"), targets % grid
    index = torch.full((grid * grid,), -1, dtype=torch.long)
    index[targets] = torch.arange(len(targets))
    r, c = torch.div(matched, grid, rounding_mode="floor"), matched % grid
    span = torch.arange(-RADIUS, RADIUS + 1)
    dr, dc = span.repeat_interleave(len(span)), span.repeat(len(span))
    candidates_r, candidates_c = [r[:, None] + dr], [c[:, None] + dc]
    for er, ec in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        nr, nc = rows + er, cols + ec
        inside = (nr >= 0) & (nr < grid) & (nc >= 0) & (nc < grid)
        neighbour = torch.where(inside, index[(nr * grid + nc).clamp(0, grid * grid - 1)], -1)
        shifted = matched[neighbour.clamp_min(0)]
        ok = neighbour >= 0
        candidates_r.append(torch.where(ok, torch.div(shifted, grid, rounding_mode="floor") - er, -1)[:, None])
        candidates_c.append(torch.where(ok, shifted % grid - ec, -1)[:, None])
    cr, cc = torch.cat(candidates_r, 1), torch.cat(candidates_c, 1)  # [T, C]
    flat = (cr * grid + cc).clamp(0, grid * grid - 1)
    valid = (cr >= 0) & (cr < grid) & (cc >= 0) & (cc < grid) & is_source[flat]
    best = torch.empty(len(targets), dtype=torch.long)
    for start in range(0, len(targets), SEARCH_ROWS // 8):
        block = slice(start, start + SEARCH_ROWS // 8)
        distance = (columns[flat[block]] - columns[targets[block]][:, None]).square().sum(-1)
        best[block] = flat[block].gather(1, distance.masked_fill(~valid[block], float("inf")).argmin(1, keepdim=True))[:, 0]
    lost = ~valid.any(1)
    if lost.any():
        best[lost] = _match_all(columns, targets[lost], torch.nonzero(is_source)[:, 0])
    return best


def _from_parent(targets: torch.Tensor, grid: int, parent_targets: torch.Tensor, parent_matched: torch.Tensor,
                 parent_grid: int) -> torch.Tensor:
    """Each target's first match at a finer level: its parent's (the coarse patch at half its
    position) match, doubled and offset as the target is from twice its parent, kept in the grid."""
    rows, cols = torch.div(targets, grid, rounding_mode="floor"), targets % grid
    pr = torch.div(rows, 2, rounding_mode="floor").clamp_max(parent_grid - 1)
    pc = torch.div(cols, 2, rounding_mode="floor").clamp_max(parent_grid - 1)
    match = torch.full((parent_grid * parent_grid,), -1, dtype=torch.long)
    match[parent_targets] = parent_matched
    parent = match[pr * parent_grid + pc]
    sr = (2 * torch.div(parent, parent_grid, rounding_mode="floor") + rows - 2 * pr).clamp(0, grid - 1)
    sc = (2 * (parent % parent_grid) + cols - 2 * pc).clamp(0, grid - 1)
    return torch.where(parent >= 0, sr * grid + sc, targets)  # no parent: start from itself, found in the search


def _principal(patches: torch.Tensor) -> torch.Tensor:
    """``[D, FEATURES]``: the top principal directions of the (known) source patches ``[N, D]``, on
    which patches are compared (the identity when D is already small)."""
    if patches.shape[1] <= FEATURES:
        return torch.eye(patches.shape[1])
    centred = (patches - patches.mean(0)).double().numpy()
    return torch.from_numpy(np.linalg.eigh(centred.T @ centred)[1][:, -FEATURES:].copy()).float()


def _smooth_fill(image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """The hole filled from its boundary inwards, each ring the mean of its filled 3 x 3 neighbours:
    the coarsest level's first estimate."""
    image, known = image.clone(), (~hole).float()[None]
    while known.min() < 1:
        total = F.avg_pool2d((image * known)[None], 3, 1, 1, count_include_pad=False)[0]
        weight = F.avg_pool2d(known[None], 3, 1, 1, count_include_pad=False)[0]
        ring = (weight > 0) & (known == 0)
        image = torch.where(ring, total / weight.clamp_min(1e-12), image)
        known = known + ring.float()
    return image


def _level_patch(hole: torch.Tensor, patch: int) -> int:
    """The largest patch <= ``patch`` (odd sizes down to 1) that fits the image with a wholly known
    copy somewhere: the documented fallback for a hole that leaves no known P x P patch."""
    size = hole.shape[-1]
    for p in range(min(patch, size), 0, -1):
        if (p == patch or p % 2) and bool((_windows(hole, p) == 0).any()):
            return p
    raise InpaintError("the exemplar fill needs at least one known pixel, but the hole covers the whole image.")


@contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one thread meanwhile: the search's many small gathers and products lose more to
    thread hand-offs than they gain (200 faces at the 64 mask on 2 cores: 41 s on one thread, 82 s on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def exemplar_field(image: torch.Tensor, hole: np.ndarray | torch.Tensor, patch: int = PATCH,
                   iterations: int = ITERATIONS, exhaustive: bool = False) -> tuple[torch.Tensor, ExemplarField]:
    """Fill one image's hole by exemplar; returns the filled ``[3, S, S]`` image and its field.

    ``image`` is float ``[3, S, S]`` (filled in float32), ``hole`` bool ``[S, S]`` (True = fill).
    Where no wholly known ``patch`` x ``patch`` copy exists, the patch shrinks (odd sizes) until one
    does, down to single pixels; the field says which patch was used. ``exhaustive`` compares every
    known patch at every level, as Wexler et al. (the benchmark's reference: several times slower)."""
    checked = _checked(image, hole, patch)
    with _one_thread():
        return _fill(*checked, iterations, exhaustive)


def _checked(image: torch.Tensor, hole: np.ndarray | torch.Tensor, patch: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(image as float32 on the CPU, hole as a bool tensor, the patch to use), or one clear error."""
    hole = hole.cpu().bool() if isinstance(hole, torch.Tensor) else torch.from_numpy(np.array(hole, dtype=bool))
    size = image.shape[-1]
    if image.ndim != 3 or image.shape[0] != 3 or hole.shape != (size, size) or image.shape[-2] != size:
        raise InpaintError(f"the exemplar fill takes a [3, S, S] image and an [S, S] hole, not {tuple(image.shape)} "
                           f"and {tuple(hole.shape)}.")
    if patch < 1 or patch > size:
        raise InpaintError(f"an exemplar patch of {patch} pixels does not fit a {size}x{size} image: choose 1 to {size}.")
    if not hole.any():
        raise InpaintError("the exemplar fill got an empty hole: nothing to fill.")
    return image.detach().float().cpu(), hole, _level_patch(hole, patch)


def _fill(image: torch.Tensor, hole: torch.Tensor, patch: int, iterations: int,
          exhaustive: bool) -> tuple[torch.Tensor, ExemplarField]:
    """:func:`exemplar_field`'s work, on checked arguments."""
    size = image.shape[-1]
    levels = [(image, hole)]
    while levels[-1][0].shape[-1] // 2 >= 2 * patch:  # halve while the halved hole leaves known patches
        x, h = levels[-1]
        coarse = F.max_pool2d(h[None, None].float(), 2)[0, 0] > 0
        if not bool((_windows(coarse, patch) == 0).any()):
            break
        levels.append((F.avg_pool2d(x[None], 2)[0], coarse))
    estimate = parent = None
    for x, h in reversed(levels):
        n, grid = x.shape[-1], x.shape[-1] - patch + 1
        counts = _windows(h, patch).flatten()
        targets, is_source = torch.nonzero(counts > 0)[:, 0], counts == 0
        if estimate is None:  # the coarsest level: a smooth start, then every source compared
            estimate, matched = _smooth_fill(x, h), None
        else:
            upsampled = F.interpolate(estimate[None], size=(n, n), mode="bilinear", align_corners=False)[0]
            estimate, matched = torch.where(h, upsampled, x), _from_parent(targets, grid, *parent)
        basis = _principal(F.unfold(x[None], patch)[0].T[is_source])
        for _ in range(iterations):
            columns = F.unfold(estimate[None], patch)[0].T @ basis  # [grid * grid, FEATURES]
            previous = matched
            matched = (_match_all(columns, targets, torch.nonzero(is_source)[:, 0])
                       if previous is None or parent is None or exhaustive
                       else _match_near(columns, targets, previous, is_source, grid))
            estimate = _vote(x, h, targets, matched, patch)
            if previous is not None and torch.equal(previous, matched):
                break
        parent = (targets, matched, grid)
    grid = size - patch + 1
    field = ExemplarField(hole.numpy(), patch, np.stack(np.divmod(targets.numpy(), grid), 1),
                          np.stack(np.divmod(matched.numpy(), grid), 1))
    return estimate, field


def exemplar(images: torch.Tensor, holes: np.ndarray, patch: int = PATCH) -> tuple[torch.Tensor, list[ExemplarField]]:
    """:func:`exemplar_field` on each of ``images`` ``[N, 3, S, S]`` with its hole (``holes`` bool
    ``[N, S, S]``): the filled images (in ``images``' dtype and device) and the fields. Images are
    filled in parallel, one per core (torch's kernels release the GIL), each on one torch thread."""
    checked = [_checked(image, hole, patch) for image, hole in zip(images, holes)]
    with _one_thread(), ThreadPoolExecutor(max(1, min(len(checked), len(os.sched_getaffinity(0))))) as pool:
        done = list(pool.map(lambda args: _fill(*args, ITERATIONS, False), checked))
    return torch.stack([out for out, _ in done]).to(images.device, images.dtype), [field for _, field in done]
