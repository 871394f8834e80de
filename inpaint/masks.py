"""Centre-mask geometry (Pathak et al.): the predicted square, the zeroed hole, the overlap ring.

The network predicts the whole m x m centre square. Only its inner (m - 2*overlap)^2 part, the
hole, is removed from the input; the ring of width ``overlap`` stays visible and is weighted
``ring_weight`` times in the L2 loss so that the prediction joins its border seamlessly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from fractions import Fraction
from numbers import Integral, Real

import cv2
import numpy as np
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


# Random holes (Pathak's random blocks, LaMa / DeepFill v2 free-form strokes): numpy bool
# [S, S] arrays, True = removed, each a pure function of an integer key such as (seed, epoch, index).

HOLE_KINDS = ("random_block", "freeform")


def _show(value) -> str:
    """A setting's value as a config writes it: pairs as [low, high]."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ", ".join(map(str, value)) + "]"
    return repr(value)


def _pair(setting: str, value, whole: bool, example: str) -> tuple:
    """``value`` as a (low, high) tuple of numbers (whole numbers if ``whole``): a config's list too."""
    number = Integral if whole else Real
    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or len(value) != 2
        or not all(isinstance(v, number) and not isinstance(v, bool) for v in value)
    ):
        kind = "whole numbers" if whole else "numbers"
        raise InpaintError(
            f"mask.{setting}={_show(value)}: give two {kind} [low, high] (e.g. mask.{setting}={example})."
        )
    return tuple(int(v) if whole else float(v) for v in value)


def _counts(setting: str, value, least: int, example: str) -> tuple[int, int]:
    """A range of shape counts: whole numbers with ``least <= low <= high``."""
    low, high = _pair(setting, value, True, example)
    if not least <= low <= high:
        raise InpaintError(
            f"mask.{setting}={_show(value)}: the count must satisfy {least} <= low <= high "
            f"(e.g. mask.{setting}={example})."
        )
    return low, high


def _image_size(value) -> int:
    """``image_size`` checked: a whole number of pixels with room for a hole and a known pixel."""
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 2:
        raise InpaintError(
            f"image size {value!r} cannot hold a random hole: use a whole number of pixels >= 2 (e.g. 128)."
        )
    return int(value)


def _pixel_range(area: tuple[float, float], image_size: int) -> tuple[int, int]:
    """The hole sizes K (pixels) with ``low <= K / S^2 <= high`` exactly, so ``mask.mean()`` lies in
    ``area``; K >= 1 and K <= S^2 - 1 since 0 < low and high < 1."""
    pixels = image_size**2
    return math.ceil(Fraction(area[0]) * pixels), math.floor(Fraction(area[1]) * pixels)


def _area(value, image_size: int, example: str) -> tuple[float, float]:
    """``area`` checked: 0 < low <= high < 1, holding a whole number of pixels."""
    low, high = _pair("area", value, False, example)
    if not 0 < low <= high < 1:
        raise InpaintError(
            f"mask.area={_show(value)}: the hole's fraction of the image must satisfy 0 < low <= high < 1 "
            f"(e.g. mask.area={example})."
        )
    k_lo, k_hi = _pixel_range((low, high), image_size)
    if k_lo > k_hi:
        raise InpaintError(
            f"mask.area={_show(value)}: no whole number of pixels of a {image_size}x{image_size} image lies in "
            f"this range; widen it (e.g. mask.area={example})."
        )
    return low, high


def _rectangles(k_lo: int, k_hi: int, image_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The heights h <= S of the rectangles h x w (w <= S) with k_lo <= h w <= k_hi, and for each the
    least and greatest such width."""
    heights = np.arange(1, image_size + 1)
    w_lo = -(-k_lo // heights)
    w_hi = np.minimum(k_hi // heights, image_size)
    fits = w_lo <= w_hi
    return heights[fits], w_lo[fits], w_hi[fits]


def _box(rng: np.random.Generator, area: float, image_size: int, longest: int) -> tuple[int, int]:
    """Height and width of a box of at most ``area`` pixels (for ``area`` >= 1), its aspect ratio
    log-uniform in [1/3, 3] and its sides at most ``longest``."""
    h = max(int(math.sqrt(area * _aspect(rng))), math.ceil(area / longest))  # tall enough for w <= longest
    h = max(1, min(h, longest, int(area)))
    return h, min(int(area / h), longest)


def _aspect(rng: np.random.Generator) -> float:
    """A rectangle's height / width, log-uniform in [1/3, 3]."""
    return math.exp(rng.uniform(-math.log(3), math.log(3)))


class _HoleSampler:
    """What both random hole kinds share: drawing from an integer key."""

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """A bool ``[S, S]`` hole, True = removed, drawn with ``rng``."""
        raise NotImplementedError

    def hole(self, *key: int) -> np.ndarray:
        """The hole of ``key`` (non-negative integers, e.g. seed, epoch, index): the same in any process."""
        return self.draw(np.random.default_rng(list(key)))


@dataclass(frozen=True)
class RandomBlockMasks(_HoleSampler):
    """Pathak et al. 2016's "random block" holes: ``blocks`` possibly overlapping axis-aligned
    rectangles covering a fraction ``area`` of the image (Pathak: up to 1/4).

    A hole size K is drawn uniformly among the whole pixel counts in ``area``. The rectangles take
    Dirichlet shares of what is still missing (aspect ratios log-uniform in [1/3, 3]), each at most
    its share, so none overshoots K; the last one, sized to the rest, is placed at random among the
    positions (all scored at once from a summed-area table) that bring the hole within 10 % of K and
    inside ``area``. If there is none (big rectangles, crowded), the draw is repeated, at most
    ``ATTEMPTS`` times, then falls back on a single rectangle of a size in ``area``; ``area`` must
    therefore admit one rectangle of the image, which ``__post_init__`` checks.
    """

    ATTEMPTS = 8

    image_size: int = 128
    area: tuple[float, float] = (0.05, 0.25)
    blocks: tuple[int, int] = (1, 5)

    def __post_init__(self) -> None:
        size = _image_size(self.image_size)
        area = _area(self.area, size, "[0.05,0.25]")
        object.__setattr__(self, "area", area)
        object.__setattr__(self, "blocks", _counts("blocks", self.blocks, 1, "[1,5]"))
        if not len(_rectangles(*_pixel_range(area, size), size)[0]):
            raise InpaintError(
                f"mask.area={_show(area)}: no single rectangle of a {size}x{size} image has a whole number of "
                f"pixels in this range, which the random blocks need; widen it (e.g. mask.area=[0.3,0.32])."
            )

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """A bool ``[S, S]`` hole (True = removed) of ``area``, the union of ``blocks`` rectangles."""
        k_lo, k_hi = _pixel_range(self.area, self.image_size)
        for _ in range(self.ATTEMPTS):
            mask = self._attempt(rng, int(rng.integers(k_lo, k_hi + 1)), k_lo, k_hi)
            if mask is not None:
                return mask
        heights, w_lo, w_hi = _rectangles(k_lo, k_hi, self.image_size)
        i = rng.integers(len(heights))
        width = int(rng.integers(w_lo[i], w_hi[i] + 1))
        return self._place(np.zeros((self.image_size,) * 2, bool), rng, int(heights[i]), width)

    def _attempt(self, rng: np.random.Generator, target: int, k_lo: int, k_hi: int) -> np.ndarray | None:
        """Rectangles towards ``target`` pixels; None if the last one cannot land in [k_lo, k_hi]."""
        size = self.image_size
        mask = np.zeros((size, size), bool)
        shares = rng.dirichlet(np.ones(rng.integers(self.blocks[0], self.blocks[1] + 1)))
        for i in range(len(shares) - 1):
            share = (target - int(mask.sum())) * shares[i] / shares[i:].sum()
            if share >= 1:
                mask = self._place(mask, rng, *_box(rng, share, size, size))
        covered = int(mask.sum())
        missing = target - covered
        h = min(max(round(math.sqrt(missing * _aspect(rng))), math.ceil(missing / size)), size)
        w = max(1, min(max(round(missing / h), math.ceil((k_lo - covered) / h)), (k_hi - covered) // h, size))
        table = np.zeros((size + 1, size + 1), np.int32)
        table[1:, 1:] = mask.cumsum(0).cumsum(1)
        overlap = table[h:, w:] - table[:-h, w:] - table[h:, :-w] + table[:-h, :-w]
        total = covered + h * w - overlap
        fits = (total >= k_lo) & (total <= k_hi)
        if not fits.any():
            return None
        error = np.abs(total - target)
        near = np.flatnonzero(fits & (error <= max(error[fits].min(), target // 10)))
        y, x = divmod(int(near[rng.integers(len(near))]), overlap.shape[1])
        mask[y : y + h, x : x + w] = True
        return mask

    def _place(self, mask: np.ndarray, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        """``mask`` with an h x w rectangle added at a uniformly random position."""
        y, x = rng.integers(self.image_size - h + 1), rng.integers(self.image_size - w + 1)
        mask[y : y + h, x : x + w] = True
        return mask


@dataclass(frozen=True)
class FreeformMasks(_HoleSampler):
    """Free-form holes as LaMa (Suvorov et al. 2022) and DeepFill v2 (Yu et al. 2019) draw them:
    ``strokes`` brush strokes (polylines with round joints) plus ``boxes`` rectangles, covering a
    fraction ``area`` of the image (LaMa: up to about half).

    Strokes follow DeepFill v2's released ``brush_stroke_mask``, scaled to the image: from a random
    vertex, 4 to 12 segments zig-zag about a direction (here a random one; a segment that would leave
    the image is clipped to it and the stroke heads on for a random point inside), pointing
    alternately -+(72 +- up to 24) degrees off it, of length N(r, r/2) clipped to [0, 2r] with
    r = diagonal / 8; one brush width per stroke, drawn with cv2.line's round caps. ``widths``
    (4, 24) at 128 spans LaMa's thin brushes (5-15 px at 256) to its medium ones (5-55) and
    DeepFill's 12-40 at 256. Boxes' sides are at most LaMa's bbox_max_size, 150 at 256.

    A hole size K is drawn uniformly among the whole pixel counts in ``area``; the shapes (boxes,
    then strokes) take Dirichlet shares of what is still missing. A box is at most its share; a
    stroke's width is set for its share to take its 4-12 segments (clipped to ``widths``) and
    segments are added until the share is reached, the one passing it keeping only its pixels nearest
    its start. The last stroke goes on (up to ``LAST_SEGMENTS``) until the hole has K pixels; a
    shortfall left then (a thin brush asked for a large area) is closed by growing the hole at its
    border, nearest known pixels first. Every hole thus has exactly K pixels, whatever the settings.
    """

    SEGMENTS = (4, 12)
    NEW_SHARE = 0.6  # about the share of a thick zig-zag's nominal area (width x length) not overlapped
    LAST_SEGMENTS = 48
    BOX_SIDE = 150 / 256

    image_size: int = 128
    area: tuple[float, float] = (0.1, 0.5)
    strokes: tuple[int, int] = (1, 5)
    widths: tuple[int, int] = (4, 24)
    boxes: tuple[int, int] = (0, 2)

    def __post_init__(self) -> None:
        size = _image_size(self.image_size)
        object.__setattr__(self, "area", _area(self.area, size, "[0.1,0.5]"))
        object.__setattr__(self, "strokes", _counts("strokes", self.strokes, 1, "[1,5]"))
        object.__setattr__(self, "boxes", _counts("boxes", self.boxes, 0, "[0,2]"))
        low, high = _pair("widths", self.widths, True, "[4,24]")
        if not 1 <= low <= high < size:
            raise InpaintError(
                f"mask.widths={_show(self.widths)}: brush widths in pixels must satisfy 1 <= low <= high < {size}, "
                f"the image size (e.g. mask.widths=[{max(1, size // 32)},{max(1, size * 3 // 16)}])."
            )
        object.__setattr__(self, "widths", (low, high))

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """A bool ``[S, S]`` hole (True = removed) of ``area``: strokes and boxes."""
        size = self.image_size
        k_lo, k_hi = _pixel_range(self.area, size)
        target = int(rng.integers(k_lo, k_hi + 1))
        n_boxes = int(rng.integers(self.boxes[0], self.boxes[1] + 1))
        n_strokes = int(rng.integers(self.strokes[0], self.strokes[1] + 1))
        shares = rng.dirichlet(np.ones(n_boxes + n_strokes))
        mask = np.zeros((size, size), np.uint8)
        longest = max(1, round(self.BOX_SIDE * size))
        for i in range(n_boxes):
            share = (target - cv2.countNonZero(mask)) * shares[i] / shares[i:].sum()
            if share >= 1:
                h, w = _box(rng, share, size, longest)
                y, x = rng.integers(size - h + 1), rng.integers(size - w + 1)
                mask[y : y + h, x : x + w] = 1
        for i in range(n_boxes, len(shares)):
            covered = cv2.countNonZero(mask)
            last = i == len(shares) - 1
            goal = target if last else covered + int((target - covered) * shares[i] / shares[i:].sum())
            if goal > covered:
                mask = self._stroke(rng, mask, covered, goal, last)
        missing = target - cv2.countNonZero(mask)
        if missing > 0:
            distance = cv2.distanceTransform(1 - mask, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            distance += rng.uniform(0, 1e-3, mask.shape)  # ties broken at random
            distance[mask > 0] = np.inf
            mask.flat[np.argpartition(distance.ravel(), missing - 1)[:missing]] = 1
        return mask.astype(bool)

    def _stroke(self, rng: np.random.Generator, mask: np.ndarray, covered: int, goal: int, last: bool) -> np.ndarray:
        """``mask`` (uint8, ``covered`` pixels set) with one DeepFill v2 stroke added, up to ``goal`` pixels."""
        size = self.image_size
        radius = size * math.sqrt(2) / 8
        planned = int(rng.integers(self.SEGMENTS[0], self.SEGMENTS[1] + 1))
        width = min(max(round((goal - covered) / (planned * radius * self.NEW_SHARE)), self.widths[0]), self.widths[1])
        n = self.LAST_SEGMENTS if last else self.SEGMENTS[1]
        spread = rng.uniform(0, 2 * math.pi / 15, 2)
        turns = rng.uniform(2 * math.pi / 5 - spread[0], 2 * math.pi / 5 + spread[1], n) * (-1) ** np.arange(1, n + 1)
        lengths = np.clip(rng.normal(radius, radius / 2, n), 0, 2 * radius)
        heading = rng.uniform(0, 2 * math.pi)
        start = rng.uniform(0, size - 1, 2)
        for turn, length in zip(turns, lengths):
            end = start + length * np.array([math.cos(heading + turn), math.sin(heading + turn)])
            if not ((end >= 0) & (end <= size - 1)).all():  # clipped; head for a random point inside
                end = np.clip(end, 0, size - 1)
                aim = rng.uniform(0, size - 1, 2) - end
                heading = math.atan2(aim[1], aim[0])
            before = mask.copy()
            cv2.line(mask, tuple(int(v) for v in np.rint(start)), tuple(int(v) for v in np.rint(end)), 1, width)
            reached = cv2.countNonZero(mask)
            if reached >= goal:
                if reached > goal:  # keep the segment's new pixels nearest its start
                    ys, xs = np.nonzero(mask > before)
                    nearest = np.argsort((xs - start[0]) ** 2 + (ys - start[1]) ** 2, kind="stable")[: goal - covered]
                    mask = before
                    mask[ys[nearest], xs[nearest]] = 1
                return mask
            covered, start = reached, end
        return mask


def hole_sampler(kind: str, image_size: int, **params) -> RandomBlockMasks | FreeformMasks:
    """The random holes of ``mask=kind`` on ``image_size`` images, with the mask group's ``params``
    (lists, as a config gives them, become tuples)."""
    samplers = {"random_block": RandomBlockMasks, "freeform": FreeformMasks}
    if kind not in samplers:
        raise InpaintError(f"mask.kind={kind!r} is not a random hole kind; the kinds are {', '.join(HOLE_KINDS)}.")
    settings = [f.name for f in fields(samplers[kind]) if f.name != "image_size"]
    for name in params:
        if name not in settings:
            raise InpaintError(f"mask.{name} is not a setting of mask={kind}; its settings are {', '.join(settings)}.")
    return samplers[kind](image_size, **params)


def hole_sampler_from(mask: Mapping | None, image_size: int) -> RandomBlockMasks | FreeformMasks | None:
    """The sampler of the mask group's settings (``kind`` and its parameters), or None for the
    centred square (``kind: center``, or no settings), which needs no drawing. ``size`` and
    ``overlap`` are the centred square's and are ignored here."""
    settings = dict(mask or {})
    kind = settings.pop("kind", "center")
    settings.pop("size", None), settings.pop("overlap", None)
    if kind == "center":
        return None
    if kind not in HOLE_KINDS:
        raise InpaintError(f"mask.kind={kind!r} is not a kind of hole: choose mask=center16, center32, center64 (center), "
                           f"random_block or freeform.")
    return hole_sampler(kind, image_size, **settings)
