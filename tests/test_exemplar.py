"""The exemplar-based fill (analysis/exemplar.py): its correspondence field, its weight maps, and
where it draws from against diffusion."""

import numpy as np
import pytest
import torch

from analysis.baselines import BASELINES, biharmonic_weight_maps, compare_baselines
from analysis.exemplar import exemplar, exemplar_field
from analysis.locality import boundary_distance, source_distance
from analysis.settings import AnalysisSettings
from inpaint.errors import InpaintError

SIZE, PERIOD = 64, 8


def tiled(seed: int = 0) -> torch.Tensor:
    """A random PERIOD x PERIOD colour tile repeated over the image: every patch's exact copies lie a
    multiple of PERIOD away, so a hole's true content is found only far from it."""
    tile = torch.rand(3, PERIOD, PERIOD, generator=torch.Generator().manual_seed(seed))
    return tile.repeat(1, SIZE // PERIOD, SIZE // PERIOD)


def square(start: int, side: int, size: int = SIZE) -> np.ndarray:
    hole = np.zeros((size, size), bool)
    hole[start : start + side, start : start + side] = True
    return hole


def test_the_exemplar_copies_a_periodic_texture_from_far_away_and_diffusion_does_not():
    image, hole = tiled(), square(24, 16)
    filled, field = exemplar_field(image, hole)
    # the hole's content exists elsewhere: the exemplar restores it (float32 means of copies of the same values)
    assert (filled - image).abs().max() < 1e-5
    centre = (32, 32)
    maps = field.weight_maps([centre])[0]
    rows, cols = np.nonzero(maps.numpy())
    assert len(rows) and ((rows - centre[0]) % PERIOD == 0).all() and ((cols - centre[1]) % PERIOD == 0).all()
    assert not hole[rows, cols].any()  # only known pixels, at the texture's own period from the pixel
    distance = boundary_distance(hole)
    assert distance[rows, cols].min() >= PERIOD / 2  # the nearest copy in phase with the centre lies outside the hole
    diffusion = biharmonic_weight_maps(hole, [centre])[0]
    assert distance[np.nonzero(diffusion.numpy())].max() <= 2  # the biharmonic stencil's reach
    # the statistic orders them: the exemplar far, diffusion within 2 pixels
    ex_mean, ex_far = source_distance(maps, hole, far=2.0)
    bi_mean, bi_far = source_distance(diffusion, hole, far=2.0)
    assert bi_mean <= 2 < PERIOD / 2 <= ex_mean
    assert bi_far == 0 and ex_far == 1


def test_for_a_fixed_field_the_fill_is_its_weight_map_times_the_input():
    image, hole = torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)), square(20, 20)
    hole[10:14, 40:50] = True  # and a second, thin hole
    filled, field = exemplar_field(image, hole)
    weights = field.operator()
    assert weights.shape == (hole.sum(), SIZE * SIZE)
    assert np.allclose(weights.sum(1), 1.0) and weights.min() >= 0
    assert not hole.ravel()[weights.nonzero()[1]].any()  # weight on known pixels only
    # W y, in float64, against the algorithm's own vote (float32 means of at most 49 values in [0, 1])
    linear = weights @ image.double().reshape(3, -1).numpy().T
    assert np.abs(linear.T - filled.double().numpy()[:, hole]).max() < 64 * np.finfo(np.float32).eps
    # weight maps are W's rows; a known pixel's is one-hot at itself
    pixels = [tuple(p) for p in np.argwhere(hole)[[0, 57, -1]]] + [(0, 0)]
    maps = field.weight_maps(pixels)
    position = np.cumsum(hole.ravel()) - 1
    for k, (r, c) in enumerate(pixels[:3]):
        assert np.array_equal(maps[k].numpy().ravel(), weights[[position[r * SIZE + c]]].toarray()[0])
    assert maps[3].sum() == 1 and maps[3, 0, 0] == 1


def test_the_fill_never_reads_the_hole():
    image, hole = tiled(2), square(20, 24)
    spoiled = image.clone()
    spoiled[:, torch.from_numpy(hole)] = torch.rand(int(hole.sum()) * 3).reshape(3, -1)
    a, field_a = exemplar_field(image, hole)
    b, field_b = exemplar_field(spoiled, hole)
    assert torch.equal(a[:, ~torch.from_numpy(hole)], image[:, ~torch.from_numpy(hole)])
    assert torch.equal(a[:, torch.from_numpy(hole)], b[:, torch.from_numpy(hole)])
    assert np.array_equal(field_a.sources, field_b.sources)


def test_a_hole_without_a_known_patch_falls_back_to_a_smaller_patch():
    image, hole = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(3)), square(2, 12, size=16)
    filled, field = exemplar_field(image, hole, patch=7)  # a 2-pixel frame: no known 7 x 7 (nor 3 x 3) patch
    assert field.patch == 1
    assert np.allclose(field.operator().sum(1), 1.0) and torch.isfinite(filled).all()
    _, field = exemplar_field(image, square(5, 6, size=16), patch=7)  # a 5-pixel frame holds 5 x 5 patches only
    assert field.patch == 5


def test_bad_input_is_refused_in_one_message():
    with pytest.raises(InpaintError, match="does not fit a 16x16 image"):
        exemplar_field(torch.rand(3, 16, 16), square(4, 4, size=16), patch=17)
    with pytest.raises(InpaintError, match="whole image"):
        exemplar_field(torch.rand(3, 16, 16), np.ones((16, 16), bool), patch=3)
    with pytest.raises(InpaintError, match="empty hole"):
        exemplar_field(torch.rand(3, 16, 16), np.zeros((16, 16), bool))
    with pytest.raises(InpaintError, match="exemplar_patch=200 does not fit 128px"):
        AnalysisSettings.from_config({"exemplar_patch": 200}, image_size=128)
    with pytest.raises(InpaintError, match="exemplar_patch must be an integer >= 1"):
        AnalysisSettings.from_config({"exemplar_patch": 0})


def test_the_exemplar_and_shift_map_fill_a_batch_among_the_baselines():
    images = torch.stack([tiled(4), tiled(5)])
    holes = np.stack([square(24, 16), square(8, 12)])
    filled, fields = exemplar(images, holes)
    assert [f.hole.sum() for f in fields] == [256, 144]
    assert torch.equal(filled[:, :, ~torch.from_numpy(holes[0])][0], images[0][:, ~torch.from_numpy(holes[0])])
    metrics = compare_baselines(images, torch.from_numpy(holes), ("exemplar", "shiftmap", "biharmonic"))
    assert metrics["exemplar"]["psnr"] > 60  # the texture restored
    assert metrics["exemplar"]["psnr"] > metrics["biharmonic"]["psnr"] + 20
    shifted = BASELINES["shiftmap"](images, torch.from_numpy(holes))
    assert torch.equal(shifted[:, :, 0, 0], images[:, :, 0, 0]) and metrics["shiftmap"]["psnr"] > 20


def test_the_exhaustive_search_finds_the_same_copies_on_a_periodic_texture():
    """The benchmark's reference, every known patch compared at every level, restores the texture
    as the propagating search does."""
    image, hole = tiled(6), square(20, 20)
    near, _ = exemplar_field(image, hole)
    everywhere, field = exemplar_field(image, hole, exhaustive=True)
    assert (near - image).abs().max() < 1e-5 and (everywhere - image).abs().max() < 1e-5
    assert ((field.sources - field.targets) % PERIOD == 0).all()  # every copy in phase with its target
