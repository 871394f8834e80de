import dataclasses
import json
import math

import pytest
import torch
from sklearn.decomposition import PCA as SklearnPCA

from analysis.pca import (
    CovarianceAccumulator,
    PCA,
    abs_cosine,
    crop_vectors,
    fit_pca,
    mean_energy,
    projection_psnr,
    psnr,
    summary,
)
from inpaint.errors import InpaintError
from inpaint.masks import CenterMask


def decaying_data(n: int = 300, dim: int = 64, seed: int = 0) -> torch.Tensor:
    """Vectors around 0.5 whose covariance has well-separated eigenvalues 0.1 * 0.81^i, in random directions."""
    g = torch.Generator().manual_seed(seed)
    rotation, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    scales = 0.3 * 0.9 ** torch.arange(dim, dtype=torch.float64)
    return 0.5 + (torch.randn(n, dim, generator=g, dtype=torch.float64) * scales) @ rotation.T


@pytest.fixture(scope="module")
def data() -> torch.Tensor:
    return decaying_data()


@pytest.fixture(scope="module")
def pca(data) -> PCA:
    return fit_pca([data])


def test_matches_sklearn(data, pca):
    reference = SklearnPCA(svd_solver="full").fit(data.numpy())
    expected_values = torch.from_numpy(reference.explained_variance_)
    torch.testing.assert_close(pca.eigenvalues, expected_values, rtol=1e-8, atol=0)
    torch.testing.assert_close(pca.mean, torch.from_numpy(reference.mean_), rtol=0, atol=1e-12)
    dots = (pca.eigenvectors * torch.from_numpy(reference.components_).T).sum(dim=0).abs()
    assert dots.min() > 1 - 1e-8
    assert pca.count == 300 and pca.dim == 64
    assert pca.total_variance == pytest.approx(data.var(dim=0).sum().item(), rel=1e-10)
    assert pca.energy == pytest.approx(mean_energy(data), rel=1e-12)


def test_fewer_vectors_than_dimensions_uses_the_gram_matrix_exactly():
    """N <= D: the N x N Gram path gives the covariance path's nonzero spectrum and eigenvectors."""
    data = decaying_data(n=40, dim=64)
    via_gram = fit_pca(data.split(15))
    accumulator = CovarianceAccumulator(64, gram_limit=0)  # forces the D x D covariance
    accumulator.update(data)
    via_covariance = accumulator.finish()
    assert via_gram.rank == 39 and via_covariance.rank == 64
    torch.testing.assert_close(via_gram.eigenvalues, via_covariance.eigenvalues[:39], rtol=1e-8, atol=1e-14)
    assert ((via_gram.eigenvectors * via_covariance.eigenvectors[:, :39]).sum(0) - 1).abs().max() < 1e-8  # same signs
    assert via_gram.total_variance == pytest.approx(via_covariance.total_variance, rel=1e-10)
    with pytest.raises(InpaintError, match="39"):
        via_gram.components(40)


def test_eigenvectors_orthonormal_with_deterministic_sign(pca):
    torch.testing.assert_close(pca.eigenvectors.T @ pca.eigenvectors, torch.eye(64, dtype=torch.float64))
    peaks = pca.eigenvectors.gather(0, pca.eigenvectors.abs().argmax(dim=0, keepdim=True))
    assert (peaks > 0).all()
    assert (pca.eigenvalues[:-1] >= pca.eigenvalues[1:]).all()


def test_streaming_equals_one_batch(data, pca):
    accumulator = CovarianceAccumulator(64)
    for batch in (data[:100], data[100:101], data[101:].float()):
        accumulator.update(batch)
    streamed = accumulator.finish()
    assert streamed.count == pca.count
    # the float32 batch rounds its inputs: agreement to float32 precision, not better
    torch.testing.assert_close(streamed.eigenvalues, pca.eigenvalues, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(streamed.eigenvectors[:, :10], pca.eigenvectors[:, :10], rtol=0, atol=1e-5)
    exact = fit_pca(data.split(7))
    torch.testing.assert_close(exact.eigenvalues, pca.eigenvalues, rtol=1e-10, atol=1e-15)
    torch.testing.assert_close(exact.eigenvectors, pca.eigenvectors, rtol=0, atol=1e-8)


def test_accumulator_rejects_bad_input():
    accumulator = CovarianceAccumulator(8)
    with pytest.raises(InpaintError, match=r"\[n, 8\]"):
        accumulator.update(torch.zeros(3, 9))
    accumulator.update(torch.zeros(1, 8))
    with pytest.raises(InpaintError, match="at least 2"):
        accumulator.finish()


def test_projection_limits(data, pca):
    for centred in (True, False):
        torch.testing.assert_close(pca.project(data, 64, centred), data)
    torch.testing.assert_close(pca.project(data, 0, centred=True), pca.mean.expand_as(data))
    assert torch.equal(pca.project(data, 0, centred=False), torch.zeros_like(data))
    partial = pca.project(data, 5, centred=True)
    assert not torch.allclose(partial, data, atol=1e-3)
    # the residual is orthogonal to the components used
    torch.testing.assert_close(
        (data - partial) @ pca.components(5), torch.zeros(300, 5, dtype=torch.float64), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("centred", [False, True])
def test_energy_captured(data, pca, centred):
    ks = list(range(65))
    ec = pca.energy_captured(data, ks, centred=centred)
    values = torch.tensor([ec[k] for k in ks])
    assert ec[0] == 0 and ec[64] == pytest.approx(1, abs=1e-12)
    assert (values[1:] >= values[:-1]).all() and values[1] < values[10] < values[64]
    # against an explicit norm of the projection
    offset = pca.mean if centred else 0
    for k in (1, 7, 30):
        explicit = (pca.project(data, k, centred) - offset).norm(dim=1) / (data - offset).norm(dim=1)
        assert ec[k] == pytest.approx(explicit.mean().item(), rel=1e-10)


def test_abs_cosine(pca):
    torch.testing.assert_close(abs_cosine(pca, pca, 64), torch.ones(64, dtype=torch.float64))
    flipped = dataclasses.replace(pca, eigenvectors=pca.eigenvectors * torch.where(torch.arange(64) % 2 == 0, 1, -1))
    torch.testing.assert_close(abs_cosine(pca, flipped, 64), torch.ones(64, dtype=torch.float64))
    angle = math.pi / 6  # rotate the first two eigenvectors within their plane
    givens = torch.eye(64, dtype=torch.float64)
    givens[:2, :2] = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    rotated = dataclasses.replace(pca, eigenvectors=pca.eigenvectors @ givens)
    expected = torch.ones(10, dtype=torch.float64)
    expected[:2] = math.cos(angle)
    torch.testing.assert_close(abs_cosine(pca, rotated, 10), expected)


@pytest.mark.parametrize("size", [16, 64])
def test_crop_vectors(size):
    images = torch.rand(2, 3, 128, 128)
    start = (128 - size) // 2
    centre = images[:, :, start : start + size, start : start + size].double()
    gray = crop_vectors(images, CenterMask(128, size))
    assert gray.shape == (2, size * size) and gray.dtype == torch.float64
    expected = 0.299 * centre[:, 0] + 0.587 * centre[:, 1] + 0.114 * centre[:, 2]
    torch.testing.assert_close(gray, expected.reshape(2, -1))
    rgb = crop_vectors(images, CenterMask(128, size), grayscale=False)
    assert rgb.shape == (2, 3 * size * size)
    assert torch.equal(rgb[:, size * size : 2 * size * size], centre[:, 1].reshape(2, -1))  # channel-major


def test_crop_vectors_known_colour():
    images = torch.zeros(1, 3, 128, 128)
    images[:, :, 32:96, 32:96] = torch.tensor([1.0, 0.5, 0.25]).view(3, 1, 1)
    gray = crop_vectors(images, CenterMask(128, 64))
    torch.testing.assert_close(gray, torch.full((1, 4096), 0.299 + 0.5 * 0.587 + 0.25 * 0.114, dtype=torch.float64))
    with pytest.raises(InpaintError, match="RGB"):
        crop_vectors(images[:, :1], CenterMask(128, 64))


def noisy_reconstructions(data: torch.Tensor, pca: PCA, kept: int) -> torch.Tensor:
    """The originals plus noise lying only in the components beyond ``kept``."""
    g = torch.Generator().manual_seed(1)
    rest = pca.eigenvectors[:, kept:]
    return data + 0.05 * torch.randn(len(data), rest.shape[1], generator=g, dtype=torch.float64) @ rest.T


def test_projection_psnr_rises_while_noise_is_outside(data, pca):
    reconstructions = noisy_reconstructions(data, pca, kept=40)
    ks = list(range(41))
    scores = projection_psnr(reconstructions, data, pca, ks)
    values = torch.tensor([scores[k] for k in ks])
    assert (values[1:] >= values[:-1] - 1e-9).all()
    assert values[40] > values[0] + 10
    # all components give back the reconstruction itself, which is noisier than its top-40 projection
    unprojected = psnr(reconstructions, data).mean().item()
    assert projection_psnr(reconstructions, data, pca, [64])[64] == pytest.approx(unprojected, rel=1e-10)
    assert unprojected < values[40]


def test_summary_is_json_ready(data, pca):
    reconstructions = noisy_reconstructions(data, pca, kept=40)
    out = summary(pca, fit_pca([reconstructions]), data, reconstructions, top=10)
    json.dumps(out)
    assert out["dim"] == 64 and len(out["eigenvalues"]["originals"]) == 10 and len(out["abs_cosine"]) == 10
    assert list(out["energy_captured"]["uncentred"]) == ["1", "2", "5", "10", "25", "50"]  # only ks <= D
    assert out["total_energy"]["reconstructions"] > out["total_energy"]["originals"]
    assert out["projection_psnr"]["centred"]["25"] > out["projection_psnr"]["centred"]["1"]
