"""The bias-free guarantee: in eval mode f(0) = 0, f(a y) = a f(y) and A_y y = f(y), for every
mask size, with and without the PCA projection head; the original model measurably breaks all three."""

import pytest
import torch
from torch.func import jvp

from inpaint.errors import InpaintError
from inpaint.models import BiasFreeBatchNorm, ContextEncoder, Discriminator
from inpaint.models.batchnorm import TrainNorm
from tolerances import rel_tol

SIZES = (16, 32, 64)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def trained_like(mask_size: int, bias_free: bool = True, **kwargs) -> ContextEncoder:
    """A small generator whose batch-norm statistics were set by train-mode passes, in eval mode."""
    torch.manual_seed(mask_size)
    g = ContextEncoder(mask_size, bias_free, base_channels=8, bottleneck=64, **kwargs)
    if g.basis is not None:  # a random orthonormal basis stands in for the training crops' PCA
        d = mask_size * mask_size
        components = torch.linalg.qr(torch.randn(d, g.basis.k, dtype=torch.float64)).Q.float()
        g.basis.set(components, torch.rand(d), 100)
    norms = [m for m in g.modules() if hasattr(m, "running_var")]
    for m in norms:
        m.momentum = 1.0  # running statistics = those of one batch
    with torch.no_grad():
        g(g.mask_input(torch.rand(8, 3, 128, 128)))
    for m in norms:
        m.momentum = 0.1
    return g.eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(1, 3, 128, 128)


# Two float32 forward passes of the same function (f(a y) against a f(y), forward mode against the
# forward): each output is a conv chain over all 3 x 128 x 128 inputs, rounded in its own order. The
# original model misses by more than 1e-2 (its biases), orders of magnitude above this.
CHAIN = rel_tol(torch.float32, 3 * 128 * 128)


@pytest.mark.parametrize("head", [{}, dict(pca_components=16, pca_head=True)], ids=["plain", "pca_head"])
@pytest.mark.parametrize("mask_size", SIZES)
def test_bias_free_is_homogeneous_and_linear_at_each_input(mask_size, head, image):
    g = trained_like(mask_size, **head)
    y = g.mask_input(image)
    with torch.no_grad():
        fy = g(y)
        assert fy.shape == (1, 3, mask_size, mask_size)
        assert fy.abs().max() > 1e-3  # not trivially zero
        assert g(torch.zeros_like(y)).abs().max() == 0  # no bias anywhere: exactly zero
        for a in (0.01, 0.5, 2.0, 37.0):
            assert rel(g(a * y), a * fy) < CHAIN, a
    _, ay_y = jvp(g, (y,), (y,))  # A_y applied to y, by forward mode
    assert rel(ay_y, fy) < CHAIN


@pytest.mark.parametrize("mask_size", SIZES)
def test_original_model_is_not_homogeneous(mask_size, image):
    g = trained_like(mask_size, bias_free=False)
    y = g.mask_input(image)
    with torch.no_grad():
        fy = g(y)
        assert g(torch.zeros_like(y)).abs().max() > 1e-3
        assert rel(g(0.5 * y), 0.5 * fy) > 1e-2
    _, ay_y = jvp(g, (y,), (y,))
    assert rel(ay_y, fy) > 1e-2


def test_paper_width_model_is_bias_free(image):
    g = ContextEncoder(64).eval()
    assert sum(p.numel() for p in g.parameters()) == pytest.approx(71.1e6, rel=0.01)
    assert not any(name.endswith("bias") for name, _ in g.named_parameters())
    y = g.mask_input(image)
    with torch.no_grad():
        assert rel(g(3.0 * y), 3.0 * g(y)) < CHAIN


def test_original_model_has_biases_tanh_and_pathak_fill(image):
    g = ContextEncoder(64, bias_free=False, base_channels=8, bottleneck=64)
    assert any(name.endswith("bias") for name, _ in g.named_parameters())
    assert isinstance(g.decoder[-1], torch.nn.Tanh)
    y = g.mask_input(image)
    assert y.min() < 0  # inputs in [-1, 1]
    fill = torch.tensor([2 * 117 / 255 - 1, 2 * 104 / 255 - 1, 2 * 123 / 255 - 1])
    assert torch.equal(y[0, :, 60, 60], fill)  # copied in


@pytest.mark.parametrize("bias_free", [True, False])
def test_dense_bottleneck_equals_convolution(bias_free, image):
    """E6 and D1 as Linear layers compute the same function as Pathak's 4x4 convolutions."""
    conv = trained_like(64, bias_free, dense_bottleneck=False)
    dense = ContextEncoder(64, bias_free, base_channels=8, bottleneck=64).eval()
    pairs = list(zip(dense.state_dict().items(), conv.state_dict().values()))  # same order, other names
    assert len(pairs) == len(conv.state_dict())
    for (key, target), value in pairs:
        if target.shape != value.shape:  # E6: (out, c, 4, 4) -> (out, in); D1: (in, c, 4, 4) -> (out, in)
            if key.startswith("encoder"):
                value = value.reshape(target.shape)
            elif value.ndim == 4:
                value = value.reshape(value.shape[0], -1).T
            else:  # D1's per-channel bias, repeated over the 4x4 positions
                value = value.repeat_interleave(16)
        target.copy_(value)
    y = dense.mask_input(image)
    with torch.no_grad():  # only E6 and D1 differ; E6, the longer of their sums, has 8c x 4 x 4 = 1024 terms
        assert rel(dense(y), conv(y)) < rel_tol(torch.float32, 1024)


def test_bias_free_batch_norm_scales_without_shifting():
    bn = BiasFreeBatchNorm(4)
    x = torch.randn(16, 4, 5, 5) * 3 + 2
    out = bn(x)
    std = x.var(dim=(0, 2, 3), unbiased=True).sqrt()
    tol = rel_tol(torch.float32, 16 * 5 * 5)  # float32 statistics over batch x pixels, two algorithms
    assert torch.allclose(out, x / (std + 1e-5).view(1, -1, 1, 1), rtol=tol, atol=0)
    assert torch.allclose(bn.running_var, 0.9 + 0.1 * std**2, rtol=tol, atol=0)
    bn.eval()
    assert torch.equal(bn(2 * x), 2 * bn(x))  # one fixed scale: doubling commutes with it exactly
    assert bn(torch.randn(3, 4)).shape == (3, 4)  # dense layers too


def test_train_norm_gradients_match_finite_differences():
    x = (torch.randn(6, 3, 4, 5, dtype=torch.double) * 2 + 5).requires_grad_(True)  # mean well off zero
    w = (torch.rand(3, dtype=torch.double) + 0.5).requires_grad_(True)
    out, var = TrainNorm.apply(x, w, 1e-5)
    tol = rel_tol(torch.float64, 6 * 4 * 5)  # float64 sums over batch x pixels, against torch's var
    assert torch.allclose(var, x.var(dim=(0, 2, 3)), rtol=tol, atol=0) and not var.requires_grad
    assert torch.allclose(out, x * (w / (x.var(dim=(0, 2, 3)).sqrt() + 1e-5)).view(1, -1, 1, 1), rtol=tol, atol=0)
    for layout in (torch.contiguous_format, torch.channels_last):
        assert torch.autograd.gradcheck(lambda t, v: TrainNorm.apply(t, v, 1e-5)[0], (x.contiguous(memory_format=layout), w), fast_mode=True)
    dense = torch.randn(7, 5, dtype=torch.double, requires_grad=True)  # the dense bottleneck's [N, C]
    assert torch.autograd.gradcheck(lambda t, v: TrainNorm.apply(t, v, 1e-5)[0], (dense, w.detach()[:1].expand(5).clone().requires_grad_(True)), fast_mode=True)


def test_train_norm_of_a_constant_channel_has_finite_gradients():
    x = torch.randn(4, 2, 3, 3)
    x[:, 1] = 0.7  # zero variance: autograd through the square root gave NaN here
    x.requires_grad_(True)
    out, var = TrainNorm.apply(x, torch.ones(2), 1e-5)
    out.square().sum().backward()
    assert var[1] == 0 and var[0] > 0 and torch.isfinite(x.grad).all() and x.grad[:, 1].abs().max() > 0


def test_train_norm_of_bf16_keeps_dtype_and_layout_with_float32_statistics():
    x = (torch.randn(32, 8, 6, 6) * 0.1 + 3).bfloat16().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    w = (torch.rand(8) + 0.5).requires_grad_(True)
    with torch.autocast("cpu", torch.bfloat16):
        out, var = TrainNorm.apply(x, w, 1e-5)
    exact = x.detach().double().var(dim=(0, 2, 3))
    n = x[:, 0].numel()  # values per channel
    # float32 sums over n values; a bf16 variance would be off by up to 2^-8 relative, far above this
    assert var.dtype == torch.float32 and torch.allclose(var.double(), exact, rtol=rel_tol(torch.float32, n), atol=0)
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    grad = torch.randn(out.shape).bfloat16().contiguous(memory_format=torch.channels_last)
    out.backward(grad)
    assert x.grad.dtype == torch.bfloat16 and x.grad.is_contiguous(memory_format=torch.channels_last)
    xd, wd = x.detach().double().requires_grad_(True), w.detach().double().requires_grad_(True)
    (xd * (wd / (xd.var(dim=(0, 2, 3)).sqrt() + 1e-5)).view(1, -1, 1, 1) * grad.double()).sum().backward()
    # x's gradient: grad * s (s rounded to bf16 as the forward uses it: 2^-8 relative) plus a float32
    # term, the sum rounded to bf16 (2^-8): two bf16 roundings of the largest term, one eps (2^-7) of it.
    # Before, that float32 term came from a bf16 mean of deviations, off by ~2^-8 of the mean (3 here).
    assert (x.grad.double() - xd.grad).abs().max() <= torch.finfo(torch.bfloat16).eps * xd.grad.abs().max()
    # w's gradient: float32 sums of grad * x over n values, rounded once to float32
    assert torch.allclose(w.grad.double(), wd.grad, rtol=rel_tol(torch.float32, n), atol=0)


@pytest.mark.parametrize("mask_size", SIZES)
def test_discriminator_scores_patches(mask_size):
    d = Discriminator(mask_size, base_channels=8)
    assert d(torch.rand(5, 3, mask_size, mask_size)).shape == (5,)


@pytest.mark.parametrize("kwargs", [dict(mask_size=48), dict(mask_size=64, image_size=100), dict(mask_size=64, bottleneck=0)])
def test_impossible_models_are_refused(kwargs):
    with pytest.raises(InpaintError):
        ContextEncoder(**kwargs)


@pytest.mark.parametrize("bias_free", [True, False])
def test_bn_momentum_reaches_every_norm_and_the_checkpoint(bias_free):
    from inpaint.module import InpaintingModule

    module = InpaintingModule(16, bias_free, base_channels=8, bottleneck=32, bn_momentum=0.01, adv_weight=0.0)
    norms = [m for m in module.generator.modules() if hasattr(m, "running_var")]
    assert len(norms) == 9 and {m.momentum for m in norms} == {0.01}
    rebuilt = InpaintingModule(**module.hparams)  # a checkpoint rebuilds the model from these
    assert {m.momentum for m in rebuilt.generator.modules() if hasattr(m, "running_var")} == {0.01}
    bn = BiasFreeBatchNorm(2, momentum=0.01)
    bn(torch.full((4, 2), 3.0) * torch.tensor([[1.0], [-1.0], [1.0], [-1.0]]))  # batch variance 12
    assert torch.allclose(bn.running_var, torch.full((2,), 0.99 + 0.01 * 12.0))
