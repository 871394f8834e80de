"""Random holes (random blocks, free-form strokes): keyed, within their area range, the right shapes."""

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from inpaint.errors import InpaintError
from inpaint.masks import HOLE_KINDS, FreeformMasks, RandomBlockMasks, hole_sampler

KEYS = [(0, 0, 0), (0, 0, 1), (3, 7, 41), (12345, 2, 999)]


def digest(mask: np.ndarray) -> str:
    return hashlib.sha256(mask.tobytes()).hexdigest()


def changes(mask: np.ndarray, axis: int) -> int:
    """How often the hole's row (axis 0) or column (axis 1) pattern changes, the image's border
    included: at most 2 k for a union of k rectangles (each starts and ends once)."""
    return int(np.diff(np.pad(mask, 1), axis=axis).any(axis=1 - axis).sum())


def test_a_key_gives_the_same_hole_in_a_fresh_process():
    here = [digest(hole_sampler(kind, 128).hole(*key)) for kind in HOLE_KINDS for key in KEYS]
    assert here == [digest(hole_sampler(kind, 128).hole(*key)) for kind in HOLE_KINDS for key in KEYS]
    code = (
        "import hashlib; from inpaint.masks import HOLE_KINDS, hole_sampler\n"
        f"for kind in HOLE_KINDS:\n"
        f"    for key in {KEYS!r}: print(hashlib.sha256(hole_sampler(kind, 128).hole(*key).tobytes()).hexdigest())"
    )
    root = Path(__file__).parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.split() == here


@pytest.mark.parametrize("kind", HOLE_KINDS)
def test_seeds_epochs_and_indices_give_different_holes(kind):
    holes = hole_sampler(kind, 128)
    keys = [(seed, epoch, index) for seed in (0, 1) for epoch in (0, 1, 2) for index in range(10)]
    assert len({digest(holes.hole(*key)) for key in keys}) == len(keys)


@pytest.mark.parametrize(
    "holes",
    [
        RandomBlockMasks(),
        RandomBlockMasks(area=(0.3, 0.32)),
        RandomBlockMasks(area=(0.01, 0.05), blocks=(5, 5)),
        RandomBlockMasks(area=(0.55, 0.6)),
        FreeformMasks(),
        FreeformMasks(area=(0.3, 0.32)),
        FreeformMasks(area=(0.01, 0.05)),
        FreeformMasks(area=(0.55, 0.6)),
        FreeformMasks(area=(0.55, 0.6), strokes=(1, 1), widths=(4, 4), boxes=(0, 0)),  # grown at its border
        FreeformMasks(image_size=64, area=(0.2, 0.4), widths=(2, 12), boxes=(2, 2)),
    ],
    ids=repr,
)
def test_every_hole_lies_in_its_area_range(holes):
    masks = [holes.hole(5, 1, index) for index in range(300)]
    assert all(mask.shape == (holes.image_size,) * 2 and mask.dtype == bool for mask in masks)
    areas = np.array([mask.mean() for mask in masks])
    low, high = holes.area
    assert ((areas >= low) & (areas <= high)).all(), (areas.min(), areas.max())
    spread = (high - low) / 5  # drawn across the range, not stuck at one end
    assert areas.min() < low + spread and areas.max() > high - spread


@pytest.mark.parametrize("kind", HOLE_KINDS)
def test_a_hole_keeps_at_least_one_pixel_of_each(kind):
    assert all(hole_sampler(kind, 128, area=[1e-6, 1e-4]).hole(0, index).sum() == 1 for index in range(20))
    if kind == "freeform":  # a block hole this large is no rectangle of the image, refused below
        assert all((~FreeformMasks(area=(0.9999, 0.99999)).hole(0, index)).sum() == 1 for index in range(20))


def test_random_blocks_are_unions_of_at_most_blocks_rectangles():
    holes = RandomBlockMasks(area=(0.05, 0.4), blocks=(1, 4))
    for index in range(300):
        mask = holes.hole(2, 0, index)
        assert max((np.diff(row.astype(np.int8)) == 1).sum() + row[0] for row in mask) <= 4  # runs per row
        assert changes(mask, 0) <= 8 and changes(mask, 1) <= 8


class Fallback(RandomBlockMasks):
    """Random blocks that go straight to the fallback."""

    ATTEMPTS = 0


@pytest.mark.parametrize("holes", [RandomBlockMasks(blocks=(1, 1)), Fallback()])
def test_one_block_and_the_fallback_are_one_rectangle(holes):
    for index in range(100):
        mask = holes.hole(0, index)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all()
        assert holes.area[0] <= mask.mean() <= holes.area[1]


def test_freeform_strokes_are_not_rectangles():
    holes = FreeformMasks(boxes=(0, 0))
    for index in range(100):
        mask = holes.hole(0, 0, index)
        assert changes(mask, 0) + changes(mask, 1) > 4 * 10  # more than a union of 10 rectangles could have


def test_config_lists_are_accepted_as_tuples():
    cfg = OmegaConf.create({"area": [0.1, 0.5], "strokes": [1, 5], "widths": [4, 24], "boxes": [0, 2]})
    for params in (OmegaConf.to_container(cfg), dict(cfg)):
        holes = hole_sampler("freeform", 128, **params)
        assert holes == FreeformMasks() and hash(holes) == hash(FreeformMasks())
    assert hole_sampler("random_block", 128, area=[0.05, 0.25], blocks=[1, 5]) == RandomBlockMasks()


@pytest.mark.parametrize(
    "kind, params, named",
    [
        ("random_block", {"area": [0.0, 0.5]}, "mask.area=[0.0, 0.5]"),
        ("freeform", {"area": [0.5, 1.0]}, "mask.area=[0.5, 1.0]"),
        ("freeform", {"area": [0.4, 0.3]}, "mask.area"),
        ("freeform", {"area": 0.3}, "mask.area=0.3"),
        ("freeform", {"area": [0.3, 0.3]}, "no whole number of pixels"),
        ("random_block", {"area": [0.9999, 0.99999]}, "no single rectangle"),
        ("random_block", {"blocks": [0, 3]}, "mask.blocks"),
        ("random_block", {"blocks": [3, 2]}, "mask.blocks"),
        ("freeform", {"strokes": [1.5, 3]}, "mask.strokes"),
        ("freeform", {"boxes": [-1, 2]}, "mask.boxes"),
        ("freeform", {"widths": [0, 8]}, "mask.widths"),
        ("freeform", {"widths": [4, 128]}, "mask.widths"),
        ("circles", {}, "random_block, freeform"),
        (
            "random_block",
            {"blocks_max": 5},
            "mask.blocks_max is not a setting of mask=random_block; its settings are area, blocks",
        ),
        ("freeform", {"brush": [4, 8]}, "its settings are area, strokes, widths, boxes"),
    ],
)
def test_impossible_settings_are_refused(kind, params, named):
    with pytest.raises(InpaintError) as error:
        hole_sampler(kind, 128, **params)
    assert named in str(error.value)


def test_an_image_too_small_for_the_default_brush_is_refused():
    with pytest.raises(InpaintError, match=r"mask.widths=\[4, 24\].*< 16"):
        FreeformMasks(image_size=16)
