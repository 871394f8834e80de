"""The global analysis (paper section 3.2): PCA of the m x m centre crops of holdout originals and,
separately, of the network's reconstructions of the same crops.

The crops, the streamed covariance and its decomposition are :mod:`inpaint.pca` (training fits the
same PCA on its originals); this module holds what the paper measures with them. The authors centred
the covariance but measured energy on uncentred vectors; both are offered and every output says which.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from inpaint.errors import InpaintError
from inpaint.pca import PCA


def abs_cosine(a: PCA, b: PCA, k: int) -> torch.Tensor:
    """``[k]``: |cos| between the i-th eigenvector of ``a`` and the i-th of ``b`` (F4); abs because
    an eigenvector's sign is arbitrary."""
    return (a.components(k) * b.components(k).to(a.mean.device)).sum(dim=0).abs()


def subspace_overlap(a: PCA, b: PCA, k: int) -> torch.Tensor:
    """``[k]``: entry i is ||A_i^T B_i||_F^2 / i for the top-i eigenvectors A_i of ``a`` and B_i of
    ``b``, the mean squared cosine of the principal angles between the two top-i subspaces (1: the
    same subspace). Unlike :func:`abs_cosine`, two eigenvectors of near-equal eigenvalues that swap
    places, or mix, within the top i leave it unchanged."""
    gram = (a.components(k).T @ b.components(k).to(a.mean.device)).square()  # [k, k]
    sizes = torch.arange(1, k + 1, dtype=gram.dtype, device=gram.device)
    if k == 0:  # a PCA of one distinct crop (a resample of two images can draw one twice) has no components
        return gram.new_zeros(0)
    return torch.stack([gram[:i, :i].sum() for i in range(1, k + 1)]) / sizes


def mean_energy(vectors: torch.Tensor) -> float:
    """Mean squared norm ||x||^2 over the vectors (F7's "total energy")."""
    return vectors.to(torch.float64).square().sum(dim=1).mean().item()


def psnr(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-vector PSNR in dB for data range 1, ``[n, D]`` -> ``[n]``."""
    return -10 * (images.to(torch.float64) - targets.to(torch.float64)).square().mean(dim=1).log10()


def projection_psnr_per_image(
    reconstructions: torch.Tensor, originals: torch.Tensor, pca: PCA, ks: Sequence[int], centred: bool = True
) -> torch.Tensor:
    """Beyond the paper: ``[len(ks), n]`` PSNR of each reconstruction projected on the top-k
    components of ``pca`` (the originals' PCA) against its original. Does projecting drop the
    reconstruction's noise (F5)? Projections are not clamped to [0, 1]."""
    originals = originals.to(pca.mean.device)
    return torch.stack([psnr(pca.project(reconstructions, k, centred), originals) for k in ks])


def projection_psnr(
    reconstructions: torch.Tensor, originals: torch.Tensor, pca: PCA, ks: Sequence[int], centred: bool = True
) -> dict[int, float]:
    """The mean over images of :func:`projection_psnr_per_image`, for each k."""
    per_image = projection_psnr_per_image(reconstructions, originals, pca, ks, centred)
    return {k: row.mean().item() for k, row in zip(ks, per_image)}


def summary(
    pca_orig: PCA,
    pca_recon: PCA,
    orig_vectors: torch.Tensor,
    recon_vectors: torch.Tensor,
    ks: Sequence[int] = (1, 2, 5, 10, 25, 50, 100, 250, 500),
    top: int = 50,
    projection: torch.Tensor | None = None,
) -> dict:
    """The global analysis as a JSON-ready dict: spectra, eigenvector similarity (F4), energy of the
    reconstructions captured by the originals' components (F6), total energy (F7) and projection
    PSNR (from ``projection``, :func:`projection_psnr_per_image` at the kept ks, when the caller has it). ``ks`` beyond D are dropped; dict keys k are strings."""
    if pca_orig.dim != pca_recon.dim:
        raise InpaintError(f"PCAs of different dimensions: {pca_orig.dim} vs {pca_recon.dim}")
    ks = [k for k in ks if k <= pca_orig.rank]
    top = min(top, pca_orig.rank, pca_recon.rank)

    def by_k(values: dict[int, float]) -> dict[str, float]:
        return {str(k): v for k, v in values.items()}

    return {
        "dim": pca_orig.dim,
        "rank": {"originals": pca_orig.rank, "reconstructions": pca_recon.rank},
        "count": {"originals": pca_orig.count, "reconstructions": pca_recon.count, "vectors": len(orig_vectors)},
        "eigenvalues": {
            "originals": pca_orig.eigenvalues[:top].tolist(),
            "reconstructions": pca_recon.eigenvalues[:top].tolist(),
        },
        "total_variance": {"originals": pca_orig.total_variance, "reconstructions": pca_recon.total_variance},
        "abs_cosine": abs_cosine(pca_orig, pca_recon, top).tolist(),
        "energy_captured": {  # reconstructions on the originals' components, as the paper's F6
            "uncentred": by_k(pca_orig.energy_captured(recon_vectors, ks, centred=False)),
            "centred": by_k(pca_orig.energy_captured(recon_vectors, ks, centred=True)),
        },
        "total_energy": {"originals": mean_energy(orig_vectors), "reconstructions": mean_energy(recon_vectors)},
        "projection_psnr": {"centred": by_k(dict(zip(ks, (row.mean().item() for row in projection))) if projection is not None
                                            else projection_psnr(recon_vectors, orig_vectors, pca_orig, ks, centred=True))},
    }
