"""Principal components of image crops: the m x m centre crops as vectors, their streamed
covariance and its exact eigen-decomposition.

Shared by training (the basis of the PCA regulariser and projection head, fitted on the training
originals) and the analyses (analysis/pca.py, fitted on the holdout). Vectors are float64 and in
[0, 1] pixel units; the covariance is streamed, so memory is independent of the number of images.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from inpaint.errors import InpaintError
from inpaint.masks import CenterMask

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


def crop_vectors(images: torch.Tensor, mask: CenterMask, grayscale: bool = True) -> torch.Tensor:
    """``[N, 3, S, S]`` images in [0, 1] -> ``[N, D]`` float64 vectors of their m x m centre crops.

    Grayscale (the paper's default) takes BT.601 luma, D = m * m; RGB keeps the channels, D = 3 * m * m,
    channel-major. Values stay in [0, 1] units, those of the authors' numbers (total variance ~177.6).
    """
    return to_vectors(mask.crop(images), grayscale)


def to_vectors(crops: torch.Tensor, grayscale: bool = True) -> torch.Tensor:
    """``[N, 3, m, m]`` crops (e.g. the network's predictions) -> ``[N, D]`` float64 vectors, as
    :func:`crop_vectors`."""
    if crops.ndim != 4 or crops.shape[1] != 3:
        raise InpaintError(f"expected RGB images [N, 3, H, W], got shape {tuple(crops.shape)}")
    crops = crops.to(torch.float64)
    if grayscale:
        crops = torch.einsum("c,nchw->nhw", crops.new_tensor(LUMA), crops)
    return crops.reshape(len(crops), -1)


@dataclass
class PCA:
    """Principal components of a set of vectors: the eigen-decomposition of their covariance."""

    mean: torch.Tensor  # [D]
    eigenvalues: torch.Tensor  # [r], descending, clipped at 0 (r = D, or the rank when N <= D)
    eigenvectors: torch.Tensor  # [D, r], one unit eigenvector per column, same order
    count: int  # number of vectors fitted
    energy: float  # their mean squared norm ||x||^2 (F7), available without keeping the vectors

    @property
    def dim(self) -> int:
        return len(self.mean)

    @property
    def rank(self) -> int:
        """Number of components: D, or fewer when fitted on N <= D vectors (at most N - 1 nonzero)."""
        return self.eigenvectors.shape[1]

    @property
    def total_variance(self) -> float:
        """Sum of the eigenvalues (= trace of the covariance)."""
        return self.eigenvalues.sum().item()

    def components(self, k: int) -> torch.Tensor:
        """The top-k eigenvectors as columns, ``[D, k]``."""
        if not 0 <= k <= self.rank:
            raise InpaintError(f"asked for {k} principal components of a PCA with {self.rank} (fitted on {self.count} vectors)")
        return self.eigenvectors[:, :k]

    def project(self, vectors: torch.Tensor, k: int, centred: bool = True) -> torch.Tensor:
        """``[n, D]`` vectors projected on the top-k components: ``mean + Q_k Q_k^T (x - mean)`` if
        centred, else ``Q_k Q_k^T x`` (the authors' code)."""
        q = self.components(k)
        x = self._as_vectors(vectors)
        if centred:
            return self.mean + (x - self.mean) @ q @ q.T
        return x @ q @ q.T

    def energy_captured(self, vectors: torch.Tensor, ks: Sequence[int], centred: bool = False) -> dict[int, float]:
        """Mean over the vectors of EC_k = ||proj_k(x)|| / ||x|| (paper's equation 9), for each k in ks.

        Uncentred (the authors): ``||Q_k^T x|| / ||x||``; centred: ``||Q_k^T (x - mean)|| / ||x - mean||``.
        One matmul with the top-max(ks) components; each EC_k is a cumulative sum of squared coefficients.
        """
        if not ks or min(ks) < 0:
            raise InpaintError(f"energy captured needs numbers of components k >= 0, got {list(ks)}")
        x = self._as_vectors(vectors)
        if centred:
            x = x - self.mean
        coefficients = x @ self.components(max(ks))
        captured = torch.cat([coefficients.new_zeros(len(x), 1), coefficients.square().cumsum(dim=1)], dim=1)
        ratios = captured[:, list(ks)].sqrt() / x.norm(dim=1, keepdim=True)
        return dict(zip(ks, ratios.mean(dim=0).tolist()))

    def _as_vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InpaintError(f"expected [n, {self.dim}] vectors, got shape {tuple(vectors.shape)}")
        return vectors.to(self.mean.device, torch.float64)


class CovarianceAccumulator:
    """Streams batches of ``[n, D]`` vectors, keeping in float64 their count, sum and the D x D sum
    of outer products, so memory is independent of N (D = 12288 RGB crops take 1.2 GB).

    While N <= ``gram_limit`` (default D) it keeps the vectors themselves instead, at most the memory
    of the D x D sum, so that :meth:`finish` can decompose the N x N Gram matrix: the same nonzero
    spectrum, exactly, at a fraction of the cost (1000 grayscale 64 x 64 crops: a 1000 x 1000
    instead of a 4096 x 4096 eigenproblem). Past the limit they are folded into the D x D sum."""

    def __init__(self, dim: int, device: torch.device | str | None = None, gram_limit: int | None = None) -> None:
        self.dim = dim
        self.count = 0
        self.gram_limit = dim if gram_limit is None else gram_limit
        self.sum = torch.zeros(dim, dtype=torch.float64, device=device)
        self.outer: torch.Tensor | None = None  # built once N passes gram_limit
        self.rows: list[torch.Tensor] = []

    def update(self, vectors: torch.Tensor) -> None:
        """Adds a batch: kept as is while N <= gram_limit, else one in-place ``x^T x`` matmul."""
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InpaintError(f"expected [n, {self.dim}] vectors, got shape {tuple(vectors.shape)}")
        x = vectors.to(self.sum.device, torch.float64)
        self.count += len(x)
        self.sum += x.sum(dim=0)
        self.rows.append(x)
        if self.count > self.gram_limit:
            if self.outer is None:
                self.outer = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=self.sum.device)
            for kept in self.rows:
                self.outer.addmm_(kept.T, kept)
            self.rows = []

    def finish(self) -> PCA:
        """Exact eigen-decomposition of the unbiased (N - 1) covariance, sorted by descending eigenvalue.

        Each eigenvector's sign is fixed so that its largest-magnitude entry is positive, making
        eigenimages and cosines comparable across runs."""
        if self.count < 2:
            raise InpaintError(f"PCA needs at least 2 vectors, got {self.count}")
        mean = self.sum / self.count
        if self.outer is None:
            eigenvalues, eigenvectors = self._from_gram(mean)
            energy = sum(x.square().sum().item() for x in self.rows) / self.count
        else:
            covariance = (self.outer - self.count * torch.outer(mean, mean)) / (self.count - 1)
            eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
            eigenvalues, eigenvectors = eigenvalues.flip(0).clamp(min=0), eigenvectors.flip(1)
            energy = self.outer.trace().item() / self.count
        peaks = eigenvectors.gather(0, eigenvectors.abs().argmax(dim=0, keepdim=True))
        eigenvectors = eigenvectors * peaks.sign()
        return PCA(mean, eigenvalues, eigenvectors, self.count, energy)

    def _from_gram(self, mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eigenpairs with nonzero eigenvalue from the Gram matrix of the centred vectors X: if
        X X^T v = (N - 1) l v then X^T v / sqrt((N - 1) l) is a unit eigenvector of the covariance."""
        x = torch.cat(self.rows) - mean
        values, vectors = torch.linalg.eigh(x @ x.T / (self.count - 1))
        values, vectors = values.flip(0), vectors.flip(1)
        keep = values > values[0].clamp(min=1e-300) * 1e-12  # drop the null space (rank <= N - 1)
        values, vectors = values[keep], vectors[:, keep]
        return values, x.T @ vectors / (values * (self.count - 1)).sqrt()


def fit_pca(batches: Iterable[torch.Tensor]) -> PCA:
    """PCA of all the ``[n, D]`` batches together."""
    accumulator = None
    for batch in batches:
        if accumulator is None:
            accumulator = CovarianceAccumulator(batch.shape[1], batch.device)
        accumulator.update(batch)
    if accumulator is None:
        raise InpaintError("PCA needs at least one batch of vectors, got none")
    return accumulator.finish()
