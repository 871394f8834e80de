import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from analysis.baselines import (
    BASELINES,
    biharmonic,
    biharmonic_operator,
    biharmonic_weight_maps,
    compare_baselines,
    hole_metrics,
    mean_fill,
)
from inpaint.errors import InpaintError
from inpaint.masks import CenterMask
from tolerances import rel_tol

MASK = CenterMask(128, 64)
SMALL = CenterMask(32, 16)


def smooth_images(n: int = 3) -> torch.Tensor:
    """Images that are linear ramps: diffusion methods should fill them almost perfectly."""
    ramp = torch.linspace(0.2, 0.8, 128)
    images = torch.stack([ramp.view(1, -1).expand(128, 128), ramp.view(-1, 1).expand(128, 128), torch.full((128, 128), 0.5)])
    return images.expand(n, 3, 128, 128).clone()


def random_smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """float64 blurred noise in [0.2, 0.8] per channel, with pixel (0, 0) at 0 and the last pixel at 1:
    these corners fix scikit-image's clip range to [0, 1]."""
    noise = np.random.default_rng(seed).standard_normal((n, 3, size, size))
    field = gaussian_filter(noise, (0, 0, size / 16, size / 16))
    low, high = field.min(axis=(2, 3), keepdims=True), field.max(axis=(2, 3), keepdims=True)
    images = torch.from_numpy(0.2 + 0.6 * (field - low) / (high - low))
    images[..., 0, 0], images[..., -1, -1] = 0.0, 1.0
    return images


def solve_tol(mask: CenterMask) -> float:
    """Relative error of a float64 solve with the bi-Laplacian of the hole: eps times its condition
    number, which grows as side^4 for a side x side hole (and stays below it: 5.6e5 < 56^4 at the
    64 mask). The float64 results below are far closer than that; a wrong stencil is off by > 1e-3."""
    side = mask.hole.stop - mask.hole.start
    return rel_tol(torch.float64) * side**4


def distance_to_hole(mask: CenterMask) -> np.ndarray:
    """[S, S] Chebyshev distance of each pixel to the hole (0 inside it)."""
    axis = np.arange(mask.image_size)
    d = np.maximum(np.maximum(mask.hole.start - axis, axis - (mask.hole.stop - 1)), 0)
    return np.maximum(d[:, None], d[None, :])


@pytest.fixture(scope="module")
def operator64():
    return biharmonic_operator(MASK)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baselines_fill_only_the_hole(name):
    images = torch.rand(2, 3, 128, 128)
    filled = BASELINES[name](images, MASK)
    outside = torch.ones(128, 128, dtype=torch.bool)
    outside[MASK.hole, MASK.hole] = False
    assert filled.shape == images.shape
    assert torch.equal(filled[..., outside], images[..., outside])
    assert not torch.equal(MASK.hole_of(filled), MASK.hole_of(images))


@pytest.mark.parametrize("name", ["telea", "ns"])
def test_diffusion_continues_smooth_images(name):
    images = smooth_images()
    error = (MASK.hole_of(BASELINES[name](images, MASK)) - MASK.hole_of(images)).abs().mean()
    # Measured: Telea 0.018, NS 0.013, mean fill 0.044. Fixed images and 8-bit results, so another CPU
    # can change at most the rounding of some pixels by one level: 1 / 255 = 0.004 on the mean even if
    # every pixel moved, inside both margins.
    assert error < 0.025
    assert (MASK.hole_of(mean_fill(images, MASK)) - MASK.hole_of(images)).abs().mean() > 0.035


def test_biharmonic_is_exact_on_ramps(operator64):
    """The discrete bi-Laplacian of a linear (indeed cubic) image is zero, so the fill is the ramp itself."""
    images = smooth_images(1)
    # Up to float32: the ramp's pixels are rounded to float32 (off the line by eps32 of their size), the
    # fill weighs them with at most max_i sum_j |W_ij| (~27: signed weights), and is rounded back.
    amplification = np.abs(operator64).sum(axis=1).max()
    tol = rel_tol(torch.float32) * images.abs().max().item() * (1 + amplification)
    assert (MASK.hole_of(biharmonic(images, MASK)) - MASK.hole_of(images)).abs().max() < tol


@pytest.mark.parametrize("mask", [SMALL, MASK, CenterMask(20, 18, overlap=0)], ids=["32-16", "128-64", "border"])
def test_operator_reproduces_skimage(mask, operator64):
    """W applied to the image equals inpaint_biharmonic on the hole, also where the stencil is cut at the
    image border. The unclipped result must stay inside the clip range [0, 1] set by the corner pixels,
    so that scikit-image's clipping leaves it alone."""
    images = random_smooth_images(3, mask.image_size)
    weights = operator64 if mask == MASK else biharmonic_operator(mask)
    side = mask.hole.stop - mask.hole.start
    linear = torch.from_numpy(weights @ images.flatten(2).flatten(0, 1).T.numpy()).T.reshape(3, 3, side, side)
    assert 0 < linear.min() and linear.max() < 1
    reference = mask.hole_of(biharmonic(images, mask))
    assert ((linear - reference).abs().max() / reference.abs().max()).item() < solve_tol(mask)  # two float64 solves


def test_weight_maps_are_operator_rows():
    """Hole pixels' maps are rows of the full operator; overlap-ring pixels are inputs, mapped one-hot."""
    weights = biharmonic_operator(SMALL).toarray().reshape(-1, 32, 32)
    hole_pixels, ring_pixels = [(8, 8), (1, 1), (1, 14), (5, 9)], [(0, 0), (15, 7)]
    maps = biharmonic_weight_maps(SMALL, hole_pixels + ring_pixels).numpy()
    side = 16 - 2 * SMALL.overlap
    rows = [(i - SMALL.overlap) * side + j - SMALL.overlap for i, j in hole_pixels]
    # the same LU, solved transposed for single rows and plainly for all of them
    np.testing.assert_allclose(maps[:4], weights[rows], rtol=0, atol=solve_tol(SMALL) * np.abs(weights).max())
    for (i, j), one_hot in zip(ring_pixels, maps[4:]):
        assert one_hot[SMALL.start + i, SMALL.start + j] == 1 and one_hot.sum() == 1
    with pytest.raises(InpaintError, match="predicted square"):
        biharmonic_weight_maps(SMALL, [(16, 0)])


def test_operator_weights_sum_to_one(operator64):
    """Each row reproduces constants: the stencil's coefficients sum to zero, so W 1 = 1."""
    # each row sums the solve's results with weights up to max_i sum_j |W_ij| in size
    amplification = np.abs(operator64).sum(axis=1).max()
    np.testing.assert_allclose(operator64.sum(axis=1), 1.0, rtol=0, atol=solve_tol(MASK) * amplification)
    assert operator64.min() < -0.05  # signed weights: not an average of the border


def test_weights_lie_next_to_the_hole():
    """All of a map's weight is on the two pixel layers around the hole (the 5x5 stencil's reach), none
    further out; the centre pixel uses both layers, i.e. value and slope at the border."""
    distance = distance_to_hole(MASK)
    maps = biharmonic_weight_maps(MASK, [(32, 32), (MASK.overlap, MASK.overlap)]).numpy()
    assert np.all(maps[:, (distance == 0) | (distance > 2)] == 0)
    energy = maps[0] ** 2 / (maps[0] ** 2).sum()
    assert 0.35 < energy[distance == 1].sum() < 0.75  # measured 0.55 (0.45 on the outer layer); float64, fixed geometry


def test_hole_metrics_match_direct_computation():
    originals = torch.rand(4, 3, 128, 128)
    filled = (originals + 0.1 * torch.randn_like(originals)).clamp(0, 1)
    metrics = hole_metrics(filled, originals, MASK)
    x, y = MASK.hole_of(filled).double().numpy(), MASK.hole_of(originals).double().numpy()
    psnr = np.mean(10 * np.log10(1 / ((x - y) ** 2).mean(axis=(1, 2, 3))))

    def blur(a):  # torchmetrics: 11-tap Gaussian, sigma 1.5, reflect padding, SSIM averaged over all pixels
        return gaussian_filter(a, (0, 0, 1.5, 1.5), mode="mirror", truncate=3.5)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ssim = ((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean()
    # float32 (torchmetrics) against float64. PSNR: a relative error r of a mean over the 3 x 56 x 56
    # hole values is (10 / ln 10) r dB. SSIM: 11 x 11 Gaussian sums, with variances E[x^2] - E[x]^2
    # that cancel by E[x^2] / var (~4 for uniform pixels).
    values = x[0].size
    assert metrics["psnr"] == pytest.approx(psnr, abs=10 / np.log(10) * rel_tol(torch.float32, values))
    cancellation = (y**2).mean() / y.var()
    assert metrics["ssim"] == pytest.approx(ssim, abs=rel_tol(torch.float32, 11 * 11) * cancellation)
    filled[..., :10, :] = 0  # outside the hole: no effect
    assert hole_metrics(filled, originals, MASK) == metrics


def test_compare_baselines_ranks_smooth_fills():
    images = smooth_images(2)
    results = compare_baselines(images, MASK)
    assert list(results) == ["mean", "telea", "ns", "biharmonic", "exemplar"]
    assert results["biharmonic"]["psnr"] > 100 > results["ns"]["psnr"] > results["mean"]["psnr"]
    assert results["ns"]["ssim"] > results["mean"]["ssim"]
    # copies of known patches cannot continue a smooth gradient as diffusion does
    assert results["exemplar"]["psnr"] < results["biharmonic"]["psnr"]
    with pytest.raises(InpaintError, match="unknown baselines"):
        compare_baselines(images, MASK, ["criminisi"])
