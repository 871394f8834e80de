"""The classical baselines on holes of any shape: a centred square given as an array is the
CenterMask, per-image holes fill each image by its own, and the biharmonic operator of a free-form
hole is scikit-image's fill, reproduces constants and reaches two pixels out."""

import numpy as np
import pytest
import torch
from holes import brush
from scipy.ndimage import distance_transform_cdt, distance_transform_edt, gaussian_filter
from tolerances import rel_tol

from analysis.baselines import (
    BASELINES,
    biharmonic,
    biharmonic_operator,
    biharmonic_weight_maps,
    compare_baselines,
    hole_array,
    hole_metrics,
)
from inpaint.errors import InpaintError
from inpaint.masks import CenterMask

S = 128
MASK = CenterMask(S, 64)



def rectangle(rows: slice, cols: slice) -> np.ndarray:
    hole = np.zeros((S, S), bool)
    hole[rows, cols] = True
    return hole


BRUSH = brush(0)
BORDER = rectangle(slice(0, 20), slice(1, 40))  # next to the top and left borders: the stencil is cut there
HOLES = np.stack([BRUSH, rectangle(slice(10, 40), slice(70, 120)), brush(1, strokes=2, width=5)])


def random_smooth_images(n: int, seed: int = 0) -> torch.Tensor:
    """float64 blurred noise in [0.2, 0.8] per channel, with pixel (0, 0) at 0 and the last pixel at 1:
    these known corners fix scikit-image's clip range to [0, 1]."""
    field = gaussian_filter(np.random.default_rng(seed).standard_normal((n, 3, S, S)), (0, 0, 8, 8))
    low, high = field.min(axis=(2, 3), keepdims=True), field.max(axis=(2, 3), keepdims=True)
    images = torch.from_numpy(0.2 + 0.6 * (field - low) / (high - low))
    images[..., 0, 0], images[..., -1, -1] = 0.0, 1.0
    return images


def solve_tol(hole: np.ndarray) -> float:
    """Relative error of a float64 solve with the hole's bi-Laplacian: eps times its condition number,
    which grows as the fourth power of the hole's width (side^4 for a square, as in test_baselines);
    the width of a free-form hole is the diameter of its largest inscribed disc."""
    return rel_tol(torch.float64) * (2 * distance_transform_edt(np.pad(hole, 1)).max()) ** 4


@pytest.fixture(scope="module")
def brush_operator():
    return biharmonic_operator(BRUSH)


def test_hole_array():
    square = np.zeros((S, S), bool)
    square[MASK.hole, MASK.hole] = True
    assert np.array_equal(hole_array(MASK), square)
    assert np.array_equal(hole_array(torch.from_numpy(square)), square)
    assert np.array_equal(hole_array(square, 3), np.stack([square] * 3))
    assert np.array_equal(hole_array(HOLES, 3), HOLES)
    with pytest.raises(InpaintError, match="3 holes for 2 images"):
        hole_array(HOLES, 2)
    with pytest.raises(InpaintError, match="bool"):
        hole_array(square.astype(np.uint8))
    with pytest.raises(InpaintError, match="do not fit"):
        BASELINES["mean"](torch.rand(1, 3, 64, 64), square)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_a_square_array_is_the_centre_mask(name):
    images = torch.rand(2, 3, S, S)
    square = torch.from_numpy(hole_array(MASK))
    filled = BASELINES[name](images, MASK)
    assert torch.equal(BASELINES[name](images, square), filled)
    assert torch.equal(BASELINES[name](images, square.expand(2, S, S)), filled)
    ours, theirs = hole_metrics(filled, images, square), hole_metrics(filled, images, MASK)
    # per image against torchmetrics' batch: PSNR's mean over the 3 x 56 x 56 hole values is summed in
    # another order, a relative error r giving (10 / ln 10) r dB; SSIM's 11 x 11 Gaussian sums cancel in
    # their variances by E[x^2] / var (~4 for uniform pixels, as in test_baselines)
    assert ours["psnr"] == pytest.approx(theirs["psnr"], abs=10 / np.log(10) * rel_tol(torch.float32, 3 * 56 * 56))
    assert ours["ssim"] == pytest.approx(theirs["ssim"], abs=rel_tol(torch.float32, 11 * 11) * 4)


def test_weight_maps_in_image_coordinates_are_the_centre_mask_s():
    small = CenterMask(32, 16)  # predicted square from 8, hole [9, 23)
    square_pixels = [(8, 8), (1, 1), (5, 9), (0, 0), (15, 7)]  # hole pixels, then overlap-ring pixels
    image_pixels = [(8 + i, 8 + j) for i, j in square_pixels]
    maps = biharmonic_weight_maps(small, square_pixels)
    assert torch.equal(biharmonic_weight_maps(hole_array(small), image_pixels), maps)
    with pytest.raises(InpaintError, match="32x32 image"):
        biharmonic_weight_maps(hole_array(small), [(32, 0)])


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_per_image_holes_fill_each_image_by_its_own(name):
    images = random_smooth_images(3).float()
    filled = BASELINES[name](images, torch.from_numpy(HOLES))
    for image, hole, out in zip(images, HOLES, filled):
        assert torch.equal(out[:, ~hole], image[:, ~hole])  # bit for bit
        assert not torch.equal(out[:, hole], image[:, hole])
        assert torch.equal(out, BASELINES[name](image[None], hole)[0])  # as if filled alone


@pytest.mark.parametrize("hole", [BRUSH, BORDER], ids=["brush", "border"])
def test_operator_reproduces_skimage_on_any_hole(hole, brush_operator):
    """W applied to the images is inpaint_biharmonic on the hole, where its unclipped fill stays inside
    the clip range [0, 1] set by the corner pixels (so that scikit-image's clipping leaves it alone)."""
    images = random_smooth_images(2, seed=1)
    weights = brush_operator if hole is BRUSH else biharmonic_operator(hole)
    linear = torch.from_numpy(weights @ images.flatten(2).flatten(0, 1).T.numpy()).T.reshape(2, 3, -1)
    assert 0 < linear.min() and linear.max() < 1
    reference = biharmonic(images, hole)[..., torch.from_numpy(hole)]
    assert ((linear - reference).abs().max() / reference.abs().max()).item() < solve_tol(hole)


def test_weights_sum_to_one_and_lie_next_to_the_hole(brush_operator):
    """The fill reproduces constants (the stencil's coefficients sum to zero, so W 1 = 1), and its 5x5
    stencil reaches the known pixels within 2 steps of the hole along rows and columns only."""
    amplification = np.abs(brush_operator).sum(axis=1).max()
    np.testing.assert_allclose(brush_operator.sum(axis=1), 1.0, rtol=0, atol=solve_tol(BRUSH) * amplification)
    steps = distance_transform_cdt(~BRUSH, metric="taxicab").ravel()
    columns = np.unique(brush_operator.nonzero()[1])
    assert steps[columns].min() == 1 and steps[columns].max() == 2
    inside, outside = [tuple(p) for p in np.argwhere(BRUSH)[[0, 1000]]], (0, 0)
    maps = biharmonic_weight_maps(torch.from_numpy(BRUSH), [*inside, outside]).numpy()
    rows = (np.cumsum(BRUSH.ravel()) - 1)[[r * S + c for r, c in inside]]
    scale = np.abs(brush_operator).max()
    atol = solve_tol(BRUSH) * scale
    np.testing.assert_allclose(maps[:2].reshape(2, -1), brush_operator[rows].toarray(), rtol=0, atol=atol)
    assert maps[2, 0, 0] == 1 and maps[2].sum() == 1  # a known pixel is an input


def test_the_operator_needs_one_proper_hole():
    for hole in (HOLES, np.zeros((S, S), bool), np.ones((S, S), bool)):
        with pytest.raises(InpaintError, match="one \\[S, S\\] hole"):
            biharmonic_operator(hole)


def test_hole_metrics_of_any_hole():
    originals = torch.rand(3, 3, S, S)
    perfect = hole_metrics(originals.clone(), originals, HOLES)
    assert perfect["psnr"] == float("inf") and perfect["ssim"] == pytest.approx(1, abs=rel_tol(torch.float32, 11 * 11))
    filled = (originals + 0.1 * torch.randn_like(originals)).clamp(0, 1)
    errors = [((f[:, h] - o[:, h]).double() ** 2).mean() for f, o, h in zip(filled, originals, torch.from_numpy(HOLES))]
    psnr = np.mean([10 * np.log10(1 / e.item()) for e in errors])
    metrics = hole_metrics(filled, originals, HOLES)
    values = 3 * HOLES.sum(axis=(1, 2)).max()  # a relative error r of a mean gives (10 / ln 10) r dB
    assert metrics["psnr"] == pytest.approx(psnr, abs=10 / np.log(10) * rel_tol(torch.float32, values))
    filled[..., torch.from_numpy(~HOLES.any(axis=0))] = 0  # outside every hole: no effect on PSNR
    assert hole_metrics(filled, originals, HOLES)["psnr"] == metrics["psnr"]


def test_ssim_of_a_small_hole_takes_an_11_pixel_box_inside_the_image():
    """A 3 x 7 hole at the top right: PSNR sees its pixels only, SSIM the 11 x 11 box rows [0, 11),
    columns [117, 128) (grown about the hole, then moved inside the image)."""
    hole = rectangle(slice(2, 5), slice(120, 127))
    originals = torch.rand(1, 3, S, S)
    filled = originals.clone()
    filled[..., 3, 121] += 0.1
    metrics = hole_metrics(filled, originals, hole)
    for pixel, ssim_sees_it in [((10, 117), True), ((2, 119), True), ((11, 117), False), ((5, 116), False)]:
        changed = filled.clone()
        changed[..., pixel[0], pixel[1]] = 1 - changed[..., pixel[0], pixel[1]]
        again = hole_metrics(changed, originals, hole)
        assert again["psnr"] == metrics["psnr"]
        assert (again["ssim"] != metrics["ssim"]) == ssim_sees_it


def test_compare_baselines_on_per_image_holes():
    ramp = torch.linspace(0.2, 0.8, S)
    images = torch.stack([ramp.view(1, -1).expand(S, S), ramp.view(-1, 1).expand(S, S), torch.full((S, S), 0.5)])
    results = compare_baselines(images.expand(3, 3, S, S).clone(), HOLES)
    assert list(results) == ["mean", "telea", "ns", "biharmonic", "exemplar"]
    # the bi-Laplacian of a linear image is zero: the biharmonic fill is the ramp itself
    assert results["biharmonic"]["psnr"] > 100 > results["ns"]["psnr"] > results["mean"]["psnr"]
    assert results["ns"]["ssim"] > results["mean"]["ssim"]
