"""The partial-convolution U-Net: exactly homogeneous in eval mode for every hole shape, known
pixels passed through, hole values ignored, every pixel of a half-size hole filled at the
default depth (and the receptive field is exactly the narrowest window), settings refused."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from tolerances import rel_tol
from torch.func import jacrev, jvp

from inpaint.errors import InpaintError
from inpaint.models.partial_conv import PartialConv2d, UpsamplingPartialConv2d, spread
from inpaint.models.unet import PartialConvUNet

S = 128


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def centre_mask(size: int = S) -> torch.Tensor:
    """``[1, 1, size, size]``, 0 on the centred square of half the side."""
    known = torch.ones(1, 1, size, size)
    known[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 0
    return known


def rectangles_mask(size: int = S, count: int = 4, seed: int = 0) -> torch.Tensor:
    """A few random, possibly overlapping rectangles, each up to a third of the side."""
    g = torch.Generator().manual_seed(seed)
    known = torch.ones(1, 1, size, size)
    for _ in range(count):
        h, w = torch.randint(4, size // 3, (2,), generator=g).tolist()
        top, left = torch.randint(0, size - h, (1,), generator=g).item(), torch.randint(0, size - w, (1,), generator=g).item()
        known[..., top : top + h, left : left + w] = 0
    return known


def strokes_mask(size: int = S, seed: int = 0) -> torch.Tensor:
    """Free-form brush strokes (DeepFill-style polylines of random width)."""
    rng = np.random.default_rng(seed)
    hole = np.zeros((size, size), np.uint8)
    for _ in range(3):
        points = rng.integers(0, size, (5, 2))
        for a, b in zip(points[:-1], points[1:]):
            cv2.line(hole, tuple(map(int, a)), tuple(map(int, b)), 1, int(rng.integers(3, 12)))
    return torch.from_numpy(1 - hole).float()[None, None]


MASKS = {"centre": centre_mask, "rectangles": rectangles_mask, "strokes": strokes_mask}


def trained_like(bias_free: bool = True, size: int = S, **kwargs) -> PartialConvUNet:
    """A narrow U-Net whose norms' running statistics were set by two train-mode passes, in eval mode."""
    torch.manual_seed(1)
    net = PartialConvUNet(size, bias_free, base_channels=4, **kwargs)
    with torch.no_grad():
        for known in (centre_mask(size), rectangles_mask(size, seed=1)):
            net(net.mask_input(torch.rand(4, 3, size, size), known), known)
    return net.eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(1, 3, S, S)


# Two float32 computations of one function (f(a y) against a f(y), forward mode against the forward,
# channels_last against contiguous kernels): each output is a chain of convolutions over up to all
# 3 x 128 x 128 inputs, rounded in its own order. The biased twin misses by more than 1e-2.
CHAIN = rel_tol(torch.float32, 3 * S * S)


@pytest.mark.parametrize("kind", MASKS)
def test_bias_free_is_homogeneous_and_linear_for_every_hole_shape(kind, image):
    net, known = trained_like(), MASKS[kind]()
    y, hole = net.mask_input(image, known), known.expand(1, 3, S, S) == 0
    with torch.no_grad():
        fy = net(y, known)
        assert fy[hole].abs().min() > 0  # every hole pixel filled, not trivially zero
        assert torch.equal(net(torch.zeros_like(y), known), torch.zeros_like(y))  # no bias anywhere: exactly zero
        for a in (0.3, 7.0):
            assert rel(net(a * y, known)[hole], a * fy[hole]) < CHAIN, a
    _, ay_y = jvp(lambda v: net(v, known), (y,), (y,))  # A_y applied to y, by forward mode
    assert rel(ay_y[hole], fy[hole]) < CHAIN


@pytest.mark.parametrize("kind", MASKS)
def test_biased_twin_is_not_homogeneous(kind, image):
    net, known = trained_like(bias_free=False), MASKS[kind]()
    y, hole = net.mask_input(image, known), known.expand(1, 3, S, S) == 0
    assert y.min() < 0 and any(name.endswith("bias") for name, _ in net.named_parameters())
    with torch.no_grad():
        fy = net(y, known)
        assert fy[hole].abs().max() < 1  # its Tanh
        assert net(torch.zeros_like(y), known)[hole].abs().max() > 1e-4
        for a in (0.3, 7.0):
            assert rel(net(a * y, known)[hole], a * fy[hole]) > 100 * CHAIN, a
    _, ay_y = jvp(lambda v: net(v, known), (y,), (y,))
    assert rel(ay_y[hole], fy[hole]) > 100 * CHAIN


def test_known_pixels_pass_through_and_hole_values_never_reach_the_output():
    size = 32
    net, known = trained_like(size=size, depth=2), rectangles_mask(size, seed=3)
    torch.manual_seed(2)
    y = net.mask_input(torch.rand(1, 3, size, size), known)
    noisy = y + torch.randn_like(y) * (1 - known)  # garbage in the hole
    with torch.no_grad():
        fy = net(y, known)
        assert torch.equal(net(noisy, known), fy)
        assert torch.equal(fy * known, y * known)
        assert torch.equal(net.fill(y, known), fy) and torch.equal(net.predicted(known), known == 0)  # the generator contract
    jacobian = jacrev(lambda v: net(v, known))(y).reshape(y.numel(), y.numel())  # [output pixel, input pixel]
    on_hole = (known.expand_as(y) == 0).flatten()
    assert torch.equal(jacobian[~on_hole], torch.eye(y.numel())[~on_hole])  # known rows: the identity
    assert torch.equal(jacobian[:, on_hole], torch.zeros(y.numel(), int(on_hole.sum())))  # hole columns: zero
    assert jacobian[on_hole][:, ~on_hole].abs().amax(1).min() > 0  # every hole pixel draws on known ones
    # f(y) = A_y y: float32 sums over the 3 x 32 x 32 inputs
    assert rel(jacobian @ y.flatten(), fy.flatten()) < rel_tol(torch.float32, y.numel())


def test_known_mask_broadcasts_over_the_batch():
    size = 32
    net = trained_like(size=size, depth=2)
    torch.manual_seed(3)
    images = torch.rand(2, 3, size, size)
    masks = [centre_mask(size), rectangles_mask(size, seed=4)]
    with torch.no_grad():
        shared = net(net.mask_input(images, masks[0]), masks[0])
        assert torch.equal(net(net.mask_input(images, masks[0]), masks[0][0, 0]), shared)  # an [S, S] mask
        per_image = net(net.mask_input(images, torch.cat(masks)), torch.cat(masks))
        for i, known in enumerate(masks):
            alone = net(net.mask_input(images[i : i + 1], known), known)
            assert rel(per_image[i : i + 1], alone) < rel_tol(torch.float32, 3 * size * size)  # batch 2 vs 1 kernels


def test_default_depth_fills_a_half_size_hole():
    assert PartialConvUNet.receptive_field(5) >= S // 2
    net, known = PartialConvUNet(S, base_channels=4).eval(), centre_mask()
    torch.manual_seed(4)
    with torch.no_grad():
        out = net(net.mask_input(torch.rand(1, 3, S, S), known), known)
    assert out[..., S // 4 : 3 * S // 4, S // 4 : 3 * S // 4].abs().min() > 0


@pytest.mark.parametrize("depth", [2, 3])
def test_receptive_field_is_the_narrowest_window(depth):
    """A vertical band one pixel narrower than the receptive field is filled wherever it lies; one
    of its width leaves pixels at exactly 0 somewhere. Positive weights and inputs: no ReLU cuts a
    path, so a pixel is nonzero exactly when its window holds a known pixel."""
    field, size = PartialConvUNet.receptive_field(depth), 2 ** (depth + 3)  # the smallest size the depth is accepted for
    net = PartialConvUNet(size, base_channels=2, depth=depth).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    images = torch.rand(2**depth, 3, size, size) + 0.1
    for width, all_filled in ((field - 1, True), (field, False)):
        known = torch.ones(2**depth, 1, size, size)
        for offset in range(2**depth):  # one band per image, at each phase of the coarsest grid
            known[offset, ..., 4 + offset : 4 + offset + width] = 0
        with torch.no_grad():
            out = net(net.mask_input(images, known), known)
        filled = (out.sum(1, keepdim=True) > 0) | (known > 0)
        assert bool(filled.all()) is all_filled, width


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"depth": 4}, "model.depth=4 is too shallow.*model.depth=5"),  # window 63 < 65 at 128
        ({"image_size": 256}, "model.depth=5 is too shallow.*model.depth=6"),
        ({"image_size": 100}, "image_size 100 is not divisible"),
        ({"depth": 0}, "model.depth must be at least 1"),
        ({"base_channels": 0}, "model.base_channels must be a positive"),
    ],
)
def test_impossible_settings_are_refused(kwargs, match):
    with pytest.raises(InpaintError, match=match):
        PartialConvUNet(**kwargs)


def test_trains_with_a_batch_and_gradients_reach_the_first_layer():
    net = PartialConvUNet(64, base_channels=4, depth=3).train()
    torch.manual_seed(5)
    images, known = torch.rand(2, 3, 64, 64), torch.cat([centre_mask(64), strokes_mask(64)])
    out = net(net.mask_input(images, known), known)
    ((out - images) ** 2).mean().backward()
    assert net.encoder[0].weight.grad.abs().max() > 0
    assert all(p.grad is not None for p in net.parameters())
    assert not torch.equal(net.decoder_norms[0].running_var, torch.ones_like(net.decoder_norms[0].running_var))


@pytest.mark.parametrize("bias_free", [True, False])
def test_channels_last_matches_contiguous(bias_free, image):
    net, known = trained_like(bias_free), strokes_mask()
    y = net.mask_input(image, known)
    with torch.no_grad():
        expected = net(y, known)
        net = net.to(memory_format=torch.channels_last)
        out = net(y.contiguous(memory_format=torch.channels_last), known.contiguous(memory_format=torch.channels_last))
    assert rel(out, expected) < CHAIN


def test_partial_conv_renormalises_by_each_groups_own_mask():
    """Two groups of 3 and 1 channels: sum(M) counts each channel's own mask, so an all-ones input
    with ones for weights gives sum(1) = 4 x 9 wherever any input is known, and 0 elsewhere."""
    conv = PartialConv2d([3, 1], 1, 3)
    torch.nn.init.ones_(conv.weight)
    a, b = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    a[..., :4, :4], b[..., 4:, 4:] = 1, 1
    out, updated = conv([torch.ones(1, 3, 8, 8), torch.ones(1, 1, 8, 8)], [a, b])
    reachable = (torch.nn.functional.max_pool2d(torch.maximum(a, b), 3, 1, 1) > 0).float()
    assert torch.equal(updated, reachable)
    assert torch.allclose(out, 36 * reachable, rtol=rel_tol(torch.float32, 36), atol=0)  # ratio x a sum of 36 ones


@pytest.mark.parametrize("batch", [1, 4])
def test_spread_mask_multiplies_as_broadcasting_does_in_the_activations_layout(batch):
    """A mask repeated over a channels-last activation's channels (the CPU's fast path) gives the same
    products as broadcasting it, bit for bit, and keeps the layout; elsewhere it is left as it is."""
    x = torch.randn(4, 24, 8, 8).bfloat16()
    mask = torch.rand(batch, 1, 8, 8)
    cl = x.contiguous(memory_format=torch.channels_last)
    spread_mask = spread(mask, cl)
    assert spread_mask.shape == (batch, 24, 8, 8) and spread_mask.dtype == torch.bfloat16
    product = cl * spread_mask
    assert product.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(product, x * mask.bfloat16())
    assert spread(mask, x).shape == (batch, 1, 8, 8)  # channels first: broadcasting is vectorised already


@pytest.mark.parametrize("bias", [False, True])
def test_upsampling_layer_is_upsampling_then_the_partial_conv(bias):
    """The decoder's folded layer (a stride-2 transposed convolution for the upsampled group) is the
    same function as nearest x2 upsampling then the 3x3 partial convolution with the same weights,
    outputs and gradients, on odd masks at every border (float64: only the sums' order differs)."""
    torch.manual_seed(0)
    folded = UpsamplingPartialConv2d([5, 2], 4, bias).double()
    plain = PartialConv2d([5, 2], 4, 3, 1, bias).double()
    plain.load_state_dict(folded.state_dict())
    if bias:
        torch.nn.init.normal_(folded.bias), plain.bias.data.copy_(folded.bias)
    low, skip = torch.randn(2, 5, 6, 6, dtype=torch.float64), torch.randn(2, 2, 12, 12, dtype=torch.float64)
    low_mask = (torch.rand(2, 1, 6, 6) > 0.4).double()
    skip_mask = (torch.rand(2, 1, 12, 12) > 0.6).double()
    up = torch.nn.functional.interpolate
    for x in (low, skip):
        x.requires_grad_(True)
    out, updated = folded([low, skip], [low_mask, skip_mask])
    grads = torch.autograd.grad(out.square().sum(), [low, skip, folded.weight])
    expected, expected_mask = plain([up(low, scale_factor=2.0), skip], [up(low_mask, scale_factor=2.0), skip_mask])
    expected_grads = torch.autograd.grad(expected.square().sum(), [low, skip, plain.weight])
    assert torch.equal(updated, expected_mask)
    eps = torch.finfo(torch.float64).eps * 100  # sums of ~60 terms of order 1 in another order
    assert torch.allclose(out, expected, rtol=0, atol=eps * expected.abs().max().item())
    for g, e in zip(grads, expected_grads, strict=True):
        assert torch.allclose(g, e, rtol=0, atol=eps * e.abs().max().item())


@pytest.mark.parametrize("bias_free", [True, False])
def test_image_value_ranges(bias_free):
    net = PartialConvUNet(64, bias_free, base_channels=2, depth=3)
    images, known = torch.rand(1, 3, 64, 64), centre_mask(64)
    assert torch.equal(net.mask_input(images, known), net.from_image(images) * known)
    assert torch.allclose(net.to_image(net.from_image(images)), images, rtol=0, atol=torch.finfo(torch.float32).eps)
    assert (net.from_image(images).min() < 0) is not bias_free
