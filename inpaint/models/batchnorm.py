"""Bias-free batch norm (Mohan et al. 2020): scale by the standard deviation, never shift.

Training mode divides by the batch std over every axis but channels (unbiased, eps added to the
std) and tracks ``running_var``; eval mode divides by ``sqrt(running_var) + eps``. There is no
mean subtraction and no beta, so in eval mode the layer is linear, and the whole network is
positively homogeneous of degree 1: f(a*y) = a*f(y). (Train mode is scale-invariant instead,
which is why every analysis runs in eval mode.)
"""

from __future__ import annotations

import torch
from torch import nn


class BiasFreeBatchNorm(nn.Module):
    """Bias-free batch norm over ``[N, C]`` or ``[N, C, H, W]`` inputs."""

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = [0, *range(2, x.ndim)]
        if self.training:
            var = x.float().var(dim=dims, unbiased=True)  # float32 even under bf16 autocast
            with torch.no_grad():
                self.running_var.lerp_(var.detach(), self.momentum)
        else:
            var = self.running_var
        scale = self.weight / (var.sqrt() + self.eps)
        return x * scale.to(x.dtype).view(1, -1, *([1] * (x.ndim - 2)))

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, momentum={self.momentum}, eps={self.eps}"
