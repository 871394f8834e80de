import dataclasses
import json
import math

import pytest
import torch
from sklearn.decomposition import PCA as SklearnPCA

from analysis.pca import abs_cosine, mean_energy, projection_psnr, psnr, summary
from inpaint.errors import InpaintError
from inpaint.masks import CenterMask
from inpaint.pca import PCA, CovarianceAccumulator, crop_vectors, fit_pca
from tolerances import rel_tol

F64 = torch.float64


def gaps(values: torch.Tensor) -> torch.Tensor:
    """Distance of each (descending) eigenvalue to its nearest neighbour: how far an eigenvector can
    turn is the size of the perturbation over this gap (Davis-Kahan)."""
    step = values[:-1] - values[1:]
    inf = step.new_tensor([math.inf])
    return torch.minimum(torch.cat([step, inf]), torch.cat([inf, step]))


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
    # float64 eigh of the covariance against sklearn's SVD of the 300 x 64 centred data: both backward
    # stable, so by Weyl every eigenvalue is off by ~eps sqrt(300 x 64) of the largest (the smallest
    # are 1e-6 of it: relative to themselves they are far less accurate)
    decomposition = rel_tol(F64, 300 * 64)
    torch.testing.assert_close(pca.eigenvalues, expected_values, rtol=0, atol=decomposition * expected_values[0].item())
    mean_tol = rel_tol(F64, 300) * data.abs().max().item()  # means of 300 values
    torch.testing.assert_close(pca.mean, torch.from_numpy(reference.mean_), rtol=0, atol=mean_tol)
    dots = (pca.eigenvectors * torch.from_numpy(reference.components_).T).sum(dim=0).abs()
    # 1 - |cos| of two unit vectors an angle theta <= ||dC|| / gap apart is theta^2 / 2, plus the
    # rounding of the 64-term dot product
    theta = decomposition * expected_values[0] / gaps(expected_values)
    assert (1 - dots <= theta**2 / 2 + rel_tol(F64, 64)).all()
    assert pca.count == 300 and pca.dim == 64
    assert pca.total_variance == pytest.approx(data.var(dim=0).sum().item(), rel=decomposition)  # the trace, two ways
    assert pca.energy == pytest.approx(mean_energy(data), rel=rel_tol(F64, 300 * 64))  # a sum of 300 x 64 squares


def test_fewer_vectors_than_dimensions_uses_the_gram_matrix_exactly():
    """N <= D: the N x N Gram path gives the covariance path's nonzero spectrum and eigenvectors."""
    data = decaying_data(n=40, dim=64)
    via_gram = fit_pca(data.split(15))
    accumulator = CovarianceAccumulator(64, gram_limit=0)  # forces the D x D covariance
    accumulator.update(data)
    via_covariance = accumulator.finish()
    assert via_gram.rank == 39 and via_covariance.rank == 64
    # the 40 x 40 Gram and the 64 x 64 covariance of the same 40 x 64 data: by Weyl, each eigenvalue is
    # off by ~eps sqrt(40 x 64) of the largest
    decomposition = rel_tol(F64, 40 * 64)
    values = via_covariance.eigenvalues[:39]
    torch.testing.assert_close(via_gram.eigenvalues, values, rtol=0, atol=decomposition * values[0].item())
    # the Gram path's eigenvectors are X^T v / sqrt((N - 1) l): l's relative error scales their norm
    # (1 - v.w is half of it), on top of theta^2 / 2 for the turn of the direction (see test_matches_sklearn)
    scaling = decomposition * values[0] / values / 2
    theta = decomposition * values[0] / gaps(via_covariance.eigenvalues)[:39]
    dots = (via_gram.eigenvectors * via_covariance.eigenvectors[:, :39]).sum(0)
    assert ((dots - 1).abs() <= scaling + theta**2 / 2 + rel_tol(F64, 64)).all()  # same signs
    assert via_gram.total_variance == pytest.approx(via_covariance.total_variance, rel=decomposition)
    with pytest.raises(InpaintError, match="39"):
        via_gram.components(40)


def test_eigenvectors_orthonormal_with_deterministic_sign(pca):
    # float64 eigh; each entry of Q^T Q is a 64-term dot product
    gram = pca.eigenvectors.T @ pca.eigenvectors
    torch.testing.assert_close(gram, torch.eye(64, dtype=F64), rtol=0, atol=rel_tol(F64, 64))
    peaks = pca.eigenvectors.gather(0, pca.eigenvectors.abs().argmax(dim=0, keepdim=True))
    assert (peaks > 0).all()
    assert (pca.eigenvalues[:-1] >= pca.eigenvalues[1:]).all()


def test_streaming_equals_one_batch(data, pca):
    accumulator = CovarianceAccumulator(64)
    for batch in (data[:100], data[100:101], data[101:].float()):
        accumulator.update(batch)
    streamed = accumulator.finish()
    assert streamed.count == pca.count
    # the float32 batch rounds its inputs once: a perturbation of the covariance of ~eps32 of its
    # norm, which by Weyl moves every eigenvalue by at most that, and turns the top ten eigenvectors
    # (well apart) by at most that over their gap
    largest = pca.eigenvalues[0].item()
    rounding = rel_tol(torch.float32) * largest
    torch.testing.assert_close(streamed.eigenvalues, pca.eigenvalues, rtol=0, atol=rounding)
    turn = (rounding / gaps(pca.eigenvalues)[:10]).max().item()
    torch.testing.assert_close(streamed.eigenvectors[:, :10], pca.eigenvectors[:, :10], rtol=0, atol=turn)
    # float64 both ways, the sum of 300 outer products in batches of 7 or at once; the tail
    # eigenvectors are close to degenerate (gaps ~1e-7 of the largest eigenvalue), so each column
    # gets the tolerance of its own gap
    exact = fit_pca(data.split(7))
    summation = rel_tol(F64, 300) * largest
    torch.testing.assert_close(exact.eigenvalues, pca.eigenvalues, rtol=0, atol=summation)
    turns = summation / gaps(pca.eigenvalues)
    assert ((exact.eigenvectors - pca.eigenvectors).abs().amax(dim=0) <= turns).all()


def test_accumulator_rejects_bad_input():
    accumulator = CovarianceAccumulator(8)
    with pytest.raises(InpaintError, match=r"\[n, 8\]"):
        accumulator.update(torch.zeros(3, 9))
    accumulator.update(torch.zeros(1, 8))
    with pytest.raises(InpaintError, match="at least 2"):
        accumulator.finish()


def test_projection_limits(data, pca):
    scale = data.abs().max().item()
    product = rel_tol(F64, 64) * scale  # one float64 product of 64 terms, on vectors of this size
    for centred in (True, False):  # two products in a row: x Q, then (x Q) Q^T
        torch.testing.assert_close(pca.project(data, 64, centred), data, rtol=0, atol=2 * product)
    # no components: an empty sum is exactly zero, and the mean plus zero is the mean
    assert torch.equal(pca.project(data, 0, centred=True), pca.mean.expand_as(data))
    assert torch.equal(pca.project(data, 0, centred=False), torch.zeros_like(data))
    partial = pca.project(data, 5, centred=True)
    assert not torch.allclose(partial, data, atol=1e-3)
    # the residual is orthogonal to the components used (three products in a row)
    residual = (data - partial) @ pca.components(5)
    torch.testing.assert_close(residual, torch.zeros(300, 5, dtype=F64), rtol=0, atol=3 * product)


@pytest.mark.parametrize("centred", [False, True])
def test_energy_captured(data, pca, centred):
    ks = list(range(65))
    ec = pca.energy_captured(data, ks, centred=centred)
    values = torch.tensor([ec[k] for k in ks])
    tol = rel_tol(F64, 64)  # ratios of float64 norms of 64-vectors
    assert ec[0] == 0 and ec[64] == pytest.approx(1, abs=tol)
    assert (values[1:] >= values[:-1]).all() and values[1] < values[10] < values[64]
    # against an explicit norm of the projection
    offset = pca.mean if centred else 0
    for k in (1, 7, 30):
        explicit = (pca.project(data, k, centred) - offset).norm(dim=1) / (data - offset).norm(dim=1)
        assert ec[k] == pytest.approx(explicit.mean().item(), rel=2 * tol)  # and the projection's two products


def test_abs_cosine(pca):
    close = {"rtol": 0, "atol": rel_tol(F64, 64)}  # float64 dot products of unit 64-vectors
    torch.testing.assert_close(abs_cosine(pca, pca, 64), torch.ones(64, dtype=F64), **close)
    flipped = dataclasses.replace(pca, eigenvectors=pca.eigenvectors * torch.where(torch.arange(64) % 2 == 0, 1, -1))
    torch.testing.assert_close(abs_cosine(pca, flipped, 64), torch.ones(64, dtype=F64), **close)
    angle = math.pi / 6  # rotate the first two eigenvectors within their plane
    givens = torch.eye(64, dtype=torch.float64)
    givens[:2, :2] = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=F64)
    rotated = dataclasses.replace(pca, eigenvectors=pca.eigenvectors @ givens)
    expected = torch.ones(10, dtype=torch.float64)
    expected[:2] = math.cos(angle)
    # rotated, then dotted: two products
    torch.testing.assert_close(abs_cosine(pca, rotated, 10), expected, rtol=0, atol=2 * close["atol"])


@pytest.mark.parametrize("size", [16, 64])
def test_crop_vectors(size):
    images = torch.rand(2, 3, 128, 128)
    start = (128 - size) // 2
    centre = images[:, :, start : start + size, start : start + size].double()
    gray = crop_vectors(images, CenterMask(128, size))
    assert gray.shape == (2, size * size) and gray.dtype == torch.float64
    expected = 0.299 * centre[:, 0] + 0.587 * centre[:, 1] + 0.114 * centre[:, 2]
    # 3 float64 terms, in two orders
    torch.testing.assert_close(gray, expected.reshape(2, -1), rtol=rel_tol(F64, 3), atol=0)
    rgb = crop_vectors(images, CenterMask(128, size), grayscale=False)
    assert rgb.shape == (2, 3 * size * size)
    assert torch.equal(rgb[:, size * size : 2 * size * size], centre[:, 1].reshape(2, -1))  # channel-major


def test_crop_vectors_known_colour():
    images = torch.zeros(1, 3, 128, 128)
    images[:, :, 32:96, 32:96] = torch.tensor([1.0, 0.5, 0.25]).view(3, 1, 1)
    gray = crop_vectors(images, CenterMask(128, 64))
    expected = torch.full((1, 4096), 0.299 + 0.5 * 0.587 + 0.25 * 0.114, dtype=F64)
    torch.testing.assert_close(gray, expected, rtol=rel_tol(F64, 3), atol=0)  # 3 float64 terms, two orders
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
    values = torch.tensor([scores[k] for k in ks], dtype=F64)
    # PSNR is 10 log10 of 1 / MSE: a relative error r of the MSE is (10 / ln 10) r dB. A projection is
    # off by two 64-term products of vectors of size <= max|x|, and the MSE, a sum of squared errors
    # of rms e, then by 2 max|x| tol / e relative (real steps here are > 0.5 dB)
    error = (reconstructions - data).square().mean().sqrt().item()
    db = 10 / math.log(10) * 2 * data.abs().max().item() * 2 * rel_tol(F64, 64) / error
    assert (values[1:] >= values[:-1] - db).all()
    assert values[40] > values[0] + 10
    # all components give back the reconstruction itself, which is noisier than its top-40 projection
    unprojected = psnr(reconstructions, data).mean().item()
    assert projection_psnr(reconstructions, data, pca, [64])[64] == pytest.approx(unprojected, abs=db)
    assert unprojected < values[40]


def test_summary_is_json_ready(data, pca):
    reconstructions = noisy_reconstructions(data, pca, kept=40)
    out = summary(pca, fit_pca([reconstructions]), data, reconstructions, top=10)
    json.dumps(out)
    assert out["dim"] == 64 and len(out["eigenvalues"]["originals"]) == 10 and len(out["abs_cosine"]) == 10
    assert list(out["energy_captured"]["uncentred"]) == ["1", "2", "5", "10", "25", "50"]  # only ks <= D
    assert out["total_energy"]["reconstructions"] > out["total_energy"]["originals"]
    assert out["projection_psnr"]["centred"]["25"] > out["projection_psnr"]["centred"]["1"]
