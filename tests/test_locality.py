"""Locality measures for any hole: on centred squares they are analysis.jacobian's, exactly; on
brush strokes and random rectangles they keep their definitions and phi_p's properties."""

import math

import numpy as np
import pytest
import torch
from holes import brush
from scipy.ndimage import distance_transform_edt
from tolerances import rel_tol

from analysis import jacobian
from analysis.locality import PIXEL_NAMES, boundary_distance, named_pixels, phi_p, phi_windows, reach
from inpaint.masks import CenterMask

S = 128
PS = sorted({*np.linspace(0, 1, 21).tolist(), *(k / 100 for k in range(101)), 0.125, 0.35, 1 / 3})


def square(start: int, stop: int, size: int = S) -> np.ndarray:
    region = np.zeros((size, size), bool)
    region[start:stop, start:stop] = True
    return region



def rectangle(seed: int, size: int = S) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top, left = rng.integers(0, size - 8, 2)
    height, width = rng.integers(1, size - top), rng.integers(1, size - left)
    region = np.zeros((size, size), bool)
    region[top : top + height, left : left + width] = True
    return region


SHAPES = {
    "brush0": brush(0),
    "brush1": brush(1, strokes=2, width=3),
    "rect0": rectangle(0),
    "rect1": rectangle(1),
    "pixel": square(0, 1),
    "two": square(10, 12) | square(100, 120),
    "known": ~brush(0),
}


def code_windows(bounds: list[tuple[int, int]]) -> np.ndarray:
    """analysis.jacobian's windows [lo, hi) in both axes as [P, S, S] masks."""
    windows = np.zeros((len(bounds), S, S), bool)
    for window, (lo, hi) in zip(windows, bounds):
        window[lo:hi, lo:hi] = True
    return windows


@pytest.mark.parametrize("m", [16, 32, 64])
def test_named_pixels_of_centred_squares_are_the_code_s(m):
    s = (S - m) // 2
    expected = {name: (i + s, j + s) for name, (i, j) in jacobian.named_pixels(m).items()}
    assert named_pixels(square(s, s + m)) == expected == named_pixels(torch.from_numpy(square(s, s + m)))
    assert list(named_pixels(square(s, s + m))) == list(PIXEL_NAMES) == list(jacobian.PIXEL_NAMES)


@pytest.mark.parametrize("m", [16, 32, 64])
def test_named_pixels_of_the_centre_hole(m):
    """The hole (square less its overlap ring) has a side m - 2 overlap, not always a multiple of 8."""
    mask = CenterMask(S, m)
    a, side = mask.hole.start, mask.hole.stop - mask.hole.start
    half = side // 2
    assert named_pixels(square(a, a + side)) == {
        "corner": (a, a),
        "diagonal": (a + math.floor(half / 4 + 0.5),) * 2,  # 14: 7/4 -> 2, 28: 3.5 -> 4 (half up), 56: 7
        "centre": (a + half, a + half),
        "edge": (a + half, a + side - 1),
    }


def check_named(region: np.ndarray, named: dict[str, tuple[int, int]]) -> None:
    """The definitions, against all region pixels."""
    assert list(named) == list(PIXEL_NAMES) and all(region[p] for p in named.values())
    pixels = np.argwhere(region)  # row-major

    def nearest(point) -> tuple[int, int]:  # the first of the region pixels nearest to point
        squared = ((pixels - np.asarray(point)) ** 2).sum(axis=1)
        return tuple(pixels[squared == squared.min()][0].tolist())

    depth = distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    assert depth[named["centre"]] == depth.max()
    assert named["corner"] == nearest(pixels.min(axis=0))
    (r, c), e = named["centre"], named["edge"][1]
    assert named["edge"][0] == r and region[r, c : e + 1].all() and (e == S - 1 or not region[r, e + 1])
    quarter = [math.floor(a + (b - a) / 4 + 0.5) for a, b in zip(named["corner"], named["centre"])]
    assert named["diagonal"] == nearest(quarter)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_named_pixels_follow_their_definitions(name):
    check_named(SHAPES[name], named_pixels(SHAPES[name]))


def test_named_pixels_break_ties_and_round_half_up():
    """A 2 x 10 bar: every pixel is 1 from outside, so the centre is the box's (top + h // 2, left + w // 2).
    Two 3 x 3 squares as far from the box centre (1, 4): the first in row-major order. A 20 x 20 square
    from 0: the diagonal's 2.5 rounds to 3."""
    bar = np.zeros((32, 32), bool)
    bar[4:6, 3:13] = True
    assert named_pixels(bar) == {"corner": (4, 3), "diagonal": (4, 4), "centre": (5, 8), "edge": (5, 12)}
    pair = square(0, 3, 16)
    pair[:3, 6:9] = True
    assert named_pixels(pair) == {"corner": (0, 0), "diagonal": (0, 0), "centre": (1, 1), "edge": (1, 2)}
    expected = {"corner": (0, 0), "diagonal": (3, 3), "centre": (10, 10), "edge": (10, 19)}
    assert named_pixels(square(0, 20, 32)) == expected


SMALL = {
    "brush": brush(2, 32, 3, 3),
    "rect": rectangle(2, 32),
    "corner": square(0, 1, 32),
    "two": square(3, 5, 32) | square(20, 30, 32),
}


def test_reach():
    assert [reach(square(s, S - s)) for s in (56, 48, 32, 36)] == [56, 48, 32, 36]
    for region in SMALL.values():  # brute force: every pixel against every region pixel
        pixels, inside = np.argwhere(np.ones_like(region)), np.argwhere(region)
        assert reach(region) == np.abs(pixels[:, None] - inside[None]).max(axis=2).min(axis=1).max()


@pytest.mark.parametrize("m", [16, 32, 64])
def test_windows_are_the_code_s(m):
    """Bit for bit, for p whose p s is a rounding error off an integer too (0.3 * 50 = 15.000000000000002)."""
    mask = CenterMask(S, m)
    predicted = square(mask.start, mask.end)
    assert np.array_equal(phi_windows(predicted, PS), code_windows(jacobian.phi_windows(m, PS, S, "code")[1]))
    hole = square(mask.hole.start, mask.hole.stop)
    assert np.array_equal(phi_windows(hole, PS), code_windows(jacobian.phi_windows(m, PS, S, "hole")[1]))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_windows_grow_with_p(name):
    region = SHAPES[name]
    windows = phi_windows(region, PS)
    assert windows.shape == (len(PS), S, S)
    assert np.array_equal(windows[0], region) and windows[-1].all()
    assert (windows[:-1] <= windows[1:]).all()  # nested


@pytest.mark.parametrize("name", sorted(SMALL))
def test_windows_are_the_region_dilated(name):
    """A pixel x is in the window when x - y lies in the box [floor(-p d), floor(p d)]^2 for some region
    pixel y: the union of the region shifted by every offset of the box."""
    region = SMALL[name]
    size, d = len(region), reach(region)
    ps = [k / 32 for k in range(33)]  # dyadic: p d is exact, so floor(+-p d) is the definition itself
    for p, window in zip(ps, phi_windows(region, ps)):
        lo, hi = math.floor(-p * d), math.floor(p * d)
        padded, dilated = np.pad(region, size), np.zeros_like(region)
        for dr in range(lo, hi + 1):
            for dc in range(lo, hi + 1):
                dilated |= np.roll(padded, (dr, dc), axis=(0, 1))[size:-size, size:-size]
        assert np.array_equal(window, dilated)


def random_maps(seed: int = 0) -> torch.Tensor:
    """16 images x 4 pixels of float64 maps with heavy-tailed entries, as Jacobian rows are."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(16, 4, S, S, dtype=torch.float64, generator=generator) ** 3


@pytest.mark.parametrize("m", [16, 32, 64])
def test_phi_is_the_code_s(m):
    """Both sum the same squares over the same windows, in other orders (an integral image of S x S
    running sums against a matmul): phi^2 agrees to float64 rounding of sums of S * S terms. phi itself
    differs by up to 1e-8 only where phi^2 is ~1e-16, the square root of the integral image's
    cancellation where the window is the zeroed region (exactly 0 here)."""
    mask, maps = CenterMask(S, m), random_maps(m)
    predicted, hole = square(mask.start, mask.end), square(mask.hole.start, mask.hole.stop)
    tol = rel_tol(torch.float64, S * S)
    ours = phi_p(maps, predicted, PS, zeroed=predicted)
    assert ours.shape == (16, 4, len(PS)) and ours.dtype == torch.float64
    assert (ours.square() - jacobian.phi_p(maps, m, PS, S, "code").square()).abs().max() < tol
    ours = phi_p(maps, hole, PS, zeroed=hole)
    assert (ours.square() - jacobian.phi_p(maps, m, PS, S, "hole", mask.overlap).square()).abs().max() < tol
    assert (ours[..., 0] == 0).all()


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_phi_is_monotone_and_bounded(name):
    region, maps = SHAPES[name], random_maps()[:4]
    phi = phi_p(maps, region, PS)
    # nested windows: a larger window's sum can be below a smaller one's by the rounding of S * S terms only
    slack = rel_tol(torch.float64, S * S)
    assert (phi.square().diff(dim=-1) >= -slack).all()
    assert (phi >= 0).all() and (phi.square() <= 1 + slack).all()
    assert (phi[..., -1] == 1).all()  # the whole image, exactly
    zeroed = phi_p(maps, region, PS, zeroed=torch.from_numpy(region))
    assert (zeroed[..., 0] == 0).all() and (zeroed[..., -1] == 1).all()
    assert phi_p(torch.zeros(S, S), region, [0.5]).isnan().all()


def test_phi_on_a_uniform_map_is_a_ratio_of_areas():
    region = SHAPES["brush0"]
    windows = phi_windows(region, [0.25])
    expected = math.sqrt((windows[0] & ~region).sum() / (~region).sum())
    phi = phi_p(torch.ones(S, S), region, [0.25], zeroed=region).item()
    assert phi == pytest.approx(expected, rel=rel_tol(torch.float64, S * S))


def test_boundary_distance():
    hole = square(5, 6, 16)
    rows, cols = np.mgrid[:16, :16]
    np.testing.assert_array_equal(boundary_distance(hole), np.hypot(rows - 5, cols - 5))
    region = SHAPES["brush1"]
    distance = boundary_distance(region)
    assert (distance[region] == 0).all() and (distance[~region] >= 1).all()
    holes = np.argwhere(region)
    for r, c in np.argwhere(~region)[::997]:
        assert distance[r, c] == pytest.approx(np.hypot(*(holes - (r, c)).T).min(), rel=1e-15)


@pytest.mark.parametrize(
    ("region", "message"),
    [
        (square(10, 20).astype(np.uint8), "bool"),
        (np.zeros((2, S, S), bool), "square"),
        (np.zeros((S, S - 1), bool), "square"),
        (np.zeros((S, S), bool), "empty"),
        (np.ones((S, S), bool), "whole image"),
    ],
)
def test_bad_regions_are_refused(region, message):
    windows, phi = lambda r: phi_windows(r, [0.5]), lambda r: phi_p(torch.ones(S, S), r, [0.5])
    for call in (named_pixels, reach, windows, phi, boundary_distance):
        with pytest.raises(ValueError, match=message):
            call(region)


def test_bad_arguments_are_refused():
    region = square(10, 20)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        phi_windows(region, [1.5])
    with pytest.raises(ValueError, match="do not match"):
        phi_p(torch.ones(S, S + 1), region, [0.5])
    with pytest.raises(ValueError, match="zeroed"):
        phi_p(torch.ones(S, S), region, [0.5], zeroed=region[:10])
