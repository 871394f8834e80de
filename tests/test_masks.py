import pytest
import torch

from inpaint.errors import InpaintError
from inpaint.masks import CenterMask


@pytest.mark.parametrize("size, overlap, start, hole", [(64, 4, 32, (36, 92)), (32, 2, 48, (50, 78)), (16, 1, 56, (57, 71))])
def test_geometry_matches_pathak(size, overlap, start, hole):
    mask = CenterMask(128, size)
    assert (mask.overlap, mask.start, mask.end) == (overlap, start, start + size)
    assert (mask.hole.start, mask.hole.stop) == hole


def test_apply_fills_only_the_hole_and_paste_restores_it():
    mask = CenterMask(128, 64)
    images = torch.rand(2, 3, 128, 128) + 1
    masked = mask.apply(images, torch.tensor([0.1, 0.2, 0.3]))
    changed = (masked != images).all(dim=(0, 1))
    assert changed.sum() == 56 * 56 and changed[36:92, 36:92].all()
    assert torch.equal(masked[:, :, 50, 50], torch.tensor([0.1, 0.2, 0.3]).expand(2, 3))  # copied in, exactly
    assert torch.equal(mask.paste(masked, mask.crop(images)), images)


def test_loss_weights_ring_is_heavier():
    weights = CenterMask(128, 64).loss_weights(10.0)
    assert weights.shape == (64, 64)
    assert (weights == 1).sum() == 56 * 56 and (weights == 10).sum() == 64 * 64 - 56 * 56
    assert weights[0, 0] == 10 and weights[4, 4] == 1 and weights[59, 59] == 1 and weights[60, 60] == 10


@pytest.mark.parametrize("kwargs", [dict(size=128), dict(size=63), dict(size=0), dict(size=16, overlap=8), dict(size=16, overlap=-1)])
def test_impossible_masks_are_refused(kwargs):
    with pytest.raises(InpaintError, match="mask"):
        CenterMask(128, **kwargs)
