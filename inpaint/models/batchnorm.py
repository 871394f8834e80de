"""Bias-free batch norm (Mohan et al. 2020): scale by the standard deviation, never shift.

Training mode divides by the batch std over every axis but channels (unbiased, eps added to the
std) and tracks ``running_var``; eval mode divides by ``sqrt(running_var) + eps``. There is no
mean subtraction and no beta, so in eval mode the layer is linear, and the whole network is
positively homogeneous of degree 1: f(a*y) = a*f(y). (Train mode is scale-invariant instead,
which is why every analysis runs in eval mode.)

With ``sync = True`` (set by :class:`inpaint.module.InpaintingModule` under DDP with
``Trainer(sync_batchnorm=True)``) the training variance is that of the global batch, all
processes' images together, and gradients flow through it to every process's inputs.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class BiasFreeBatchNorm(nn.Module):
    """Bias-free batch norm over ``[N, C]`` or ``[N, C, H, W]`` inputs."""

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.sync = False  # a plain attribute, so checkpoints never carry it
        self.weight = nn.Parameter(torch.ones(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = [0, *range(2, x.ndim)]
        if self.training:
            x32 = x.float()  # float32 even under bf16 autocast
            var = global_variance(x32, dims) if self.sync else x32.var(dim=dims, unbiased=True)
            with torch.no_grad():
                self.running_var.lerp_(var.detach(), self.momentum)
        else:
            var = self.running_var
        scale = self.weight / (var.sqrt() + self.eps)
        return x * scale.to(x.dtype).view(1, -1, *([1] * (x.ndim - 2)))

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, momentum={self.momentum}, eps={self.eps}"


def global_variance(x: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """Unbiased per-channel variance of ``x`` over ``dims`` and over every process of the default
    group, differentiable: all-reduce the count and the sum, then the squared deviations from the
    global mean. Two passes because a sum of squares minus the squared sum cancels in float32 when
    the mean is large against the std; processes may hold batches of different sizes."""
    count = x.new_tensor([x.numel() / x.shape[1]])
    totals = AllReduceSum.apply(torch.cat([count, x.sum(dims)]))
    n, mean = totals[0], totals[1:] / totals[0]
    squares = AllReduceSum.apply(((x - mean.view(1, -1, *([1] * (x.ndim - 2)))) ** 2).sum(dims))
    return squares / (n - 1)


class AllReduceSum(torch.autograd.Function):
    """Sum of a tensor over all processes, with its gradient: each process's input feeds every
    process's output, so its gradient is the sum of all processes' output gradients. (torch's
    ``torch.distributed.nn.functional.all_reduce`` does the same but warns that it is deprecated
    in torch 2.13; its replacement, in the private ``_functional_collectives``, has gradients only
    in recent releases, and this project accepts torch >= 2.3.)"""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        total = x.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total
