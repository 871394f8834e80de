"""The generator contract: the few things every analysis needs from an inpainting network.

A generator is an ``nn.Module`` offering

- ``fill(y, known) -> [N, 3, S, S]``: ``y`` the masked image in the model's values (``mask_input``),
  ``known`` ``[N, 1, S, S]`` float (1 = known pixel, 0 = hole). It returns the whole image in the
  model's values with the hole holding the network's fill. A bias-free generator is positively
  homogeneous in ``y`` for a fixed ``known`` (f(a y) = a f(y)), hence exactly linear at each input:
  f(y) = A_y y, A_y its Jacobian, which the analyses build, check and measure;
- ``predicted(known) -> [N, 1, S, S]`` bool: the output pixels the network predicts, the rows of A_y
  (the hole for the U-Net, whose known pixels pass through; the whole centred square, overlap ring
  included, for the Context Encoder);
- ``mask_input(images, known)`` and ``to_image(values)``: images in [0, 1] to the network's input
  (hole filled with 0 when bias-free) and its values back to [0, 1] (clamped, for display and metrics);
- ``bias_free``: whether f(y) = A_y y is expected (else the analyses report the net bias f(y) - A_y y).

The Context Encoder and the partial-convolution U-Net implement it. A researcher's own module needs only
``forward(y, known) -> [N, 3, S, S]`` in [0, 1] units: :func:`as_generator` supplies the rest (input =
images * known, output clamped for display, the hole predicted, bias-free).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Generator(Protocol):
    """What the analyses call (see the module docstring)."""

    bias_free: bool

    def fill(self, y: torch.Tensor, known: torch.Tensor) -> torch.Tensor: ...

    def predicted(self, known: torch.Tensor) -> torch.Tensor: ...

    def mask_input(self, images: torch.Tensor, known: torch.Tensor) -> torch.Tensor: ...

    def to_image(self, values: torch.Tensor) -> torch.Tensor: ...


class PlainGenerator(nn.Module):
    """A module ``net(y, known) -> [N, 3, S, S]`` in [0, 1] units, given the rest of the contract."""

    def __init__(self, net: nn.Module, bias_free: bool = True) -> None:
        super().__init__()
        self.net = net
        self.bias_free = bias_free

    def fill(self, y: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        return self.net(y, known)

    forward = fill

    def predicted(self, known: torch.Tensor) -> torch.Tensor:
        return known < 0.5

    def mask_input(self, images: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        return images * known

    def to_image(self, values: torch.Tensor) -> torch.Tensor:
        return values.clamp(0, 1)


def as_generator(module: nn.Module) -> Generator:
    """``module`` itself when it meets the contract, else wrapped as a :class:`PlainGenerator`
    (its ``bias_free`` attribute kept when it has one)."""
    if isinstance(module, Generator):
        return module
    return PlainGenerator(module, getattr(module, "bias_free", True))
