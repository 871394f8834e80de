"""The training originals' principal components inside the network: the fixed basis of the PCA
projection head and of the PCA regulariser (the paper's proposed extension, its Discussion).

The basis is the top k eigenvectors of the luma m x m crops of the training originals
(:mod:`inpaint.pca`, the analyses' own PCA), applied to each colour channel alone: the same space
the analyses measure (F4-F6), a D = m * m eigenproblem instead of 3 m * m (27x cheaper, 9x less
memory at m = 64), and a projection that treats the three channels alike.

Projections are uncentred by default, P x = Q Q^T x: linear, so a bias-free network with the head
stays positively homogeneous and every Jacobian analysis applies. Centred, ``mean + P (x - mean)``
adds an offset, which only the biased model may have (it joins that model's net bias).
"""

from __future__ import annotations

import torch
from torch import nn

from inpaint.errors import InpaintError
from inpaint.pca import PCA


class PCABasis(nn.Module):
    """Top-``k`` components of the ``mask_size`` x ``mask_size`` training crops, held as buffers so
    that a checkpoint alone rebuilds them; empty (``ready`` False) until :meth:`set` fills them.

    The generator's last layer: the projection head when ``head``, else the identity (the basis is
    then there for the regulariser, :meth:`outside`). Takes ``[N, 3, m, m]`` predictions in the
    model's values ([0, 1] bias-free, [-1, 1] original: projected in [0, 1] image units, where the
    basis was fitted), each channel a D = m * m vector, in float32 (float64 stays float64) with
    autocast off: the residual x - P x is a small difference of large terms, which bf16 would round
    away."""

    def __init__(self, mask_size: int, k: int, bias_free: bool = True, centred: bool = False, head: bool = False) -> None:
        super().__init__()
        dim = mask_size * mask_size
        if not 1 <= k <= dim:
            raise InpaintError(f"model.pca_components={k}: a {mask_size} x {mask_size} crop has between 1 and {dim} principal components.")
        if head and centred and bias_free:
            raise InpaintError(
                "a centred projection head adds the crops' mean, an offset the bias-free model cannot have: "
                "keep model.pca_centred=false, or use model=original."
            )
        self.mask_size, self.k, self.bias_free, self.centred, self.head = mask_size, k, bias_free, centred, head
        self.register_buffer("components", torch.zeros(dim, k))  # [D, k], orthonormal columns once set
        self.register_buffer("mean", torch.zeros(dim))  # [D], the crops' mean (used only when centred)
        self.register_buffer("count", torch.zeros((), dtype=torch.long))  # crops fitted; 0 = not fitted
        self.ready = False

    def set(self, components: torch.Tensor, mean: torch.Tensor, count: int) -> None:
        """Fill the basis: ``[D, k]`` orthonormal columns, the ``[D]`` mean and how many crops it came from."""
        if components.shape != self.components.shape or mean.shape != self.mean.shape or count < 2:
            raise InpaintError(
                f"a PCA basis of shape {tuple(components.shape)} from {count} crops does not fit this model's "
                f"{tuple(self.components.shape)} (model.pca_components={self.k})."
            )
        with torch.no_grad():
            self.components.copy_(components)
            self.mean.copy_(mean)
            self.count.fill_(count)
        self.ready = True

    def set_from(self, pca: PCA) -> None:
        """Fill the basis from a fitted :class:`~inpaint.pca.PCA` of luma crop vectors."""
        self.set(pca.components(self.k), pca.mean, pca.count)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.ready = bool(self.count > 0)  # a checkpoint's basis, once per load (not a sync per forward)

    def _vectors(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Model values -> ``[N, 3, D]`` image-unit vectors, and the basis in their dtype."""
        if not self.ready:
            raise InpaintError(
                "the model's PCA basis is not fitted: it is fitted on the training crops when training starts "
                "(trainer.fit), or loaded with the checkpoint; a fresh model cannot use it yet."
            )
        dtype = torch.promote_types(values.dtype, torch.float32)
        x = values.to(dtype).reshape(*values.shape[:-2], -1)
        if not self.bias_free:
            x = (x + 1) / 2
        return x, self.components.to(dtype), self.mean.to(dtype)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """The head: ``[N, 3, m, m]`` with each channel projected on the top-k components (centred
        or not); the identity when the basis only serves the regulariser."""
        if not self.head:
            return values
        with torch.autocast(values.device.type, enabled=False):
            x, q, mean = self._vectors(values)
            projected = mean + (x - mean) @ q @ q.T if self.centred else x @ q @ q.T
            if not self.bias_free:
                projected = projected * 2 - 1
            return projected.reshape(values.shape)

    def outside(self, values: torch.Tensor) -> torch.Tensor:
        """Mean over pixels of the squared residual ``x - P x`` of the predictions in image units:
        their energy outside the top k components (about the mean when centred), on the scale of a
        per-pixel L2; 0 for predictions in the span."""
        with torch.autocast(values.device.type, enabled=False):
            x, q, mean = self._vectors(values)
            if self.centred:
                x = x - mean
            return (x - x @ q @ q.T).square().mean()
