"""Local analysis of the bias-free generator: its exact Jacobian A_y at an input y.

In eval mode the bias-free network is linear at each input, f(y) = A_y y (SPEC section 3), so the
rows of A_y are the weights each output pixel puts on the input pixels. This module builds A_y
(batched vector-Jacobian products), checks f(y) = A_y y, turns rows into weight maps, measures
their locality phi_p (the authors' code and the paper's equation 8), and the spectrum of A_y
(Mohan et al.'s SVD analysis). Two measurements go beyond the paper: where the weight lies
relative to the output pixel (the "neck" observation) and the period of the faint grid.

A_y always has the shape (3, m, m, 3, H, W): output channel and pixel, then input channel and pixel.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import scipy.linalg
import scipy.linalg.blas
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import jvp, vjp, vmap

from inpaint.masks import CenterMask
from inpaint.models import ContextEncoder

PIXEL_NAMES = ("corner", "diagonal", "centre", "edge")  # the order of the paper's figure 10
# Pull-backs batched per pass for a whole A_y row by row: the U-Net's at the demo's width on 2 CPU
# cores took 6.8 ms a row in passes of 16 to 32, 7.7 at 64, 9.3 at 512 (its activations fall out of cache).
WHOLE_CHUNK = 32
AUTHORS_P = (0.1, 0.25, 0.35, 0.5)  # the p at which the authors reported phi_p (SPEC section 6)


def named_pixels(m: int) -> dict[str, tuple[int, int]]:
    """The output pixels the figures follow, in coordinates of the m x m prediction (paper's F8: corner
    [0, 0], edge [32, 63] and centre [32, 32] at m = 64; F10 adds one diagonally in from the corner)."""
    return {"corner": (0, 0), "diagonal": (m // 8, m // 8), "centre": (m // 2, m // 2), "edge": (m // 2, m - 1)}


@contextmanager
def exact(generator: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode (the network is only linear there), no autograd graph for the parameters and no
    autocast; every submodule's previous mode is restored afterwards."""
    modes = [(module, module.training) for module in generator.modules()]
    generator.eval()
    try:
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            yield
    finally:
        for module, training in modes:
            module.training = training


def available_memory(device: torch.device) -> int:
    """Bytes free for new tensors: free device memory on CUDA, MemAvailable (else free pages) on CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def auto_chunk(network: nn.Module, x: torch.Tensor, share: float = 0.25, most: int = 1024) -> int:
    """Products to batch per pass so that their tensors fit in ``share`` of the free memory: each
    batched product holds about two copies of every activation of one forward pass (measured by
    hooks on one forward). Above ``most`` a larger batch is no faster (measured on CPU)."""
    numel = [x.numel()]

    def count(module: nn.Module, inputs, out) -> None:
        numel.extend(t.numel() for t in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(t, torch.Tensor))

    hooks = [m.register_forward_hook(count) for m in network.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            network(x)
    finally:
        for hook in hooks:
            hook.remove()
    per_product = 2 * sum(numel) * x.element_size()
    return max(1, min(most, int(share * available_memory(x.device)) // per_product))


def _one_hots(indices: torch.Tensor, size: int, shape: torch.Size) -> torch.Tensor:
    """``len(indices)`` unit vectors of length ``size``, shaped ``(len(indices), *shape)``."""
    units = torch.zeros(len(indices), size, device=indices.device)
    units[torch.arange(len(indices), device=indices.device), indices] = 1.0
    return units.view(len(indices), *shape)


def _pulled_back(network: nn.Module, x: torch.Tensor, rows: torch.Tensor, chunk: int | None) -> torch.Tensor:
    """Rows ``rows`` of the Jacobian of ``network`` at ``x`` (batch of one), flattened: one forward
    pass, then the pull-back vmapped over ``chunk`` one-hot cotangents at a time."""
    out, pull_back = vjp(network, x)
    chunk = chunk or auto_chunk(network, x)
    result = torch.empty(len(rows), x.numel(), device=x.device)
    for start in range(0, len(rows), chunk):
        block = rows[start : start + chunk]
        (grads,) = vmap(pull_back)(_one_hots(block, out.numel(), out.shape))
        result[start : start + len(block)] = grads.reshape(len(block), -1)
    return result


def _pushed_forward(network: nn.Module, x: torch.Tensor, chunk: int | None) -> torch.Tensor:
    """The whole Jacobian of ``network`` at ``x`` (batch of one), ``(outputs, inputs)``: forward-mode
    products with every unit tangent, vmapped ``chunk`` at a time (cheap when inputs are few)."""
    chunk = chunk or auto_chunk(network, x)
    columns = []
    for start in range(0, x.numel(), chunk):
        block = torch.arange(start, min(start + chunk, x.numel()), device=x.device)
        pushed = vmap(lambda t: jvp(network, (x,), (t,))[1])(_one_hots(block, x.numel(), x.shape))
        columns.append(pushed.reshape(len(block), -1).T)
    return torch.cat(columns, dim=1)


def _batch_of_one(masked: torch.Tensor, caller: str) -> torch.Tensor:
    """One masked input ``[3, H, W]`` as a float32 batch of one, detached; anything else is refused."""
    if masked.ndim != 3:
        raise ValueError(f"{caller} takes one masked input [3, H, W], not a tensor of shape {tuple(masked.shape)}.")
    return masked.detach().to(torch.float32).unsqueeze(0)


def jacobian(
    generator: nn.Module,
    masked: torch.Tensor,
    pixels: Sequence[tuple[int, int]] | None = None,
    chunk: int | None = None,
    method: str = "auto",
) -> torch.Tensor:
    """Exact Jacobian of the generator's output at one masked input ``[3, H, W]``, in eval mode, float32.

    ``pixels=None`` gives the whole A_y, ``(3, m, m, 3, H, W)``; a list of P output pixels (i, j) gives
    their rows, ``(P, 3, 3, H, W)`` (all three output channels of each pixel).

    Two exact methods; ``method="auto"`` takes "code" for a Context Encoder when at least twice as
    many rows as code units are asked for (the whole A_y), else "rows":

    - "rows": one forward pass (``torch.func.vjp``), then the pull-back vmapped over one-hot
      cotangents, one per row.
    - "code": the chain rule through the bottleneck code z, A_y = (dout/dz)(dz/dy). dz/dy takes one
      pull-back per code unit (4,000 at paper width, against 12,288 rows at m = 64), dout/dz one
      forward-mode product per code unit through the decoder, and the product is one matrix
      multiply, the most efficient operation a CPU or GPU has. At paper width and m = 64 on 2 CPU
      cores: about 55 s for the whole A_y, against 80 s by "rows" and about 20 min by a Python loop
      of one ``autograd.grad`` per row (the authors' code).

    ``chunk`` products are batched per pass; None sizes batches to a quarter of the free memory
    (:func:`auto_chunk`). The generator's modes, its parameters' ``requires_grad`` and ``.grad`` are
    left as they were (``torch.func`` differentiates the input only); channels-last models work too.
    """
    if method not in ("auto", "rows", "code"):
        raise ValueError(f'jacobian method must be "auto", "rows" or "code", not {method!r}.')
    y = _batch_of_one(masked, "jacobian")
    with exact(generator, y.device):
        out_shape = generator(y).shape[1:]  # one forward pass, cheap next to the products
        index = torch.arange(math.prod(out_shape), device=y.device).view(out_shape)  # row of A_y per output scalar
        if pixels is None:
            rows = index.flatten()
        else:
            i, j = torch.as_tensor(pixels, dtype=torch.long, device=y.device).reshape(-1, 2).T
            rows = index[:, i, j].T.flatten()  # pixel by pixel, its channels together
        if method != "rows" and isinstance(generator, ContextEncoder):
            z = generator.encoder(y)
            method = "code" if method == "code" or len(rows) >= 2 * z.numel() else "rows"
        elif method == "code":
            raise ValueError("jacobian method 'code' needs a ContextEncoder (an encoder and a decoder meeting at a code).")
        if method == "code":
            decoder, encoder = _factors(generator, y, z, chunk)
            result = decoder[rows] @ encoder
        else:
            result = _pulled_back(generator, y, rows, chunk)
    lead = out_shape if pixels is None else (-1, out_shape[0])
    return result.reshape(*lead, *y.shape[1:])


def _factors(generator: ContextEncoder, y: torch.Tensor, z: torch.Tensor, chunk: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(dout/dz, dz/dy) flattened, ``(outputs, k)`` and ``(k, inputs)``, at the input ``y`` (batch
    of one) whose code is ``z``; call under :func:`_exact`."""
    decoder = _pushed_forward(generator.decoder, z, chunk)
    return decoder, _pulled_back(generator.encoder, y, torch.arange(z.numel(), device=y.device), chunk)


def jacobian_factors(generator: ContextEncoder, masked: torch.Tensor, chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A_y in two halves through the bottleneck code z: ``(P, Q)`` with P = dout/dz ``(3, m, m, k)``
    and Q = dz/dy ``(k, 3, H, W)``, so that A_y = P Q (eval mode, float32; k = the code size).

    What :func:`jacobian` multiplies out, without the (3 m m) x k x (3 H W) product: A_y y = P (Q y)
    and the whole spectrum (:func:`factored_svd`) come cheaper from the halves. ``chunk`` as in
    :func:`jacobian`; the generator is left as it was."""
    y = _batch_of_one(masked, "jacobian_factors")
    with exact(generator, y.device):
        z = generator.encoder(y)
        decoder, encoder = _factors(generator, y, z, chunk)
        out_shape = generator.decoder(z).shape[1:]
    return decoder.reshape(*out_shape, -1), encoder.reshape(-1, *y.shape[1:])


class _Filled(nn.Module):
    """y -> ``generator.fill(y, known)``, the contract's whole image (inpaint/models/contract.py), for
    a fixed hole: the map whose Jacobian A_y is; a module, so that :func:`auto_chunk` can hook its layers."""

    def __init__(self, generator: nn.Module, known: torch.Tensor) -> None:
        super().__init__()
        self.generator, self.known = generator, known

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.generator.fill(y, self.known.to(y).expand(len(y), 1, *y.shape[-2:]))


def _network(generator: nn.Module, known: torch.Tensor | None) -> nn.Module:
    """y -> the generator's output: ``generator(y)`` (the Context Encoder's m x m square) without
    ``known``; with it, the contract's whole image (:class:`_Filled`)."""
    return generator if known is None else _Filled(generator, known)


def apply_jacobian(generator: nn.Module, masked: torch.Tensor, known: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(y), A_y y) by one forward-mode product (``torch.func.jvp``), without building A_y.

    ``masked`` is one input ``[3, H, W]`` or a batch ``[N, 3, H, W]``; the outputs match its batching.
    ``known`` (``[1 or N, 1, H, W]``): the contract's ``fill`` with that hole (else ``generator(y)``)."""
    y = masked.detach().to(torch.float32)
    single = y.ndim == 3
    y = y.unsqueeze(0) if single else y
    with exact(generator, y.device):
        fy, ay_y = jvp(_network(generator, known), (y,), (y,))
    return (fy[0], ay_y[0]) if single else (fy, ay_y)


def homogeneity_error(generator: nn.Module, masked: torch.Tensor, known: torch.Tensor | None = None) -> float:
    """||A_y y - f(y)|| / ||f(y)||: for the bias-free model zero up to float32 rounding (often exactly
    zero: with the tangent y, forward mode repeats the forward's own arithmetic); large for the
    biased one, whose biases, batch-norm shifts and Tanh the tangent does not see."""
    fy, ay_y = apply_jacobian(generator, masked, known)
    return ((ay_y - fy).norm() / fy.norm()).item()


def net_bias(generator: nn.Module, masked: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
    """f(y) - A_y y, shaped like the prediction: the biased model's net bias (zero when bias-free)."""
    fy, ay_y = apply_jacobian(generator, masked, known)
    return fy - ay_y


def pixel_rows(generator: nn.Module, masked: torch.Tensor, known: torch.Tensor, pixels: Sequence[tuple[int, int]],
               chunk: int | None = None) -> torch.Tensor:
    """Rows of A_y of any generator meeting the contract at output ``pixels`` (IMAGE coordinates
    (row, col)), ``(P, 3, 3, H, W)``, by reverse mode through ``generator.fill(y, known)``: one forward
    pass, then one vmapped pull-back per row (eval mode, float32; the generator is left as it was)."""
    y = _batch_of_one(masked, "pixel_rows")
    index = torch.arange(y.numel(), device=y.device).view(y.shape[1:])
    r, c = torch.as_tensor(pixels, dtype=torch.long, device=y.device).reshape(-1, 2).T
    with exact(generator, y.device):
        rows = _pulled_back(_network(generator, known), y, index[:, r, c].T.flatten(), chunk)
    return rows.reshape(-1, 3, *y.shape[1:])


def region_jacobian(generator: nn.Module, masked: torch.Tensor, known: torch.Tensor, chunk: int | None = None,
                    method: str = "auto") -> torch.Tensor:
    """The whole A_y of any generator meeting the contract: the rows of every predicted output pixel
    (``generator.predicted(known)``, row-major) by the whole input, ``(3, n, 3, H, W)``, exact.

    "rows": one vmapped pull-back per row through ``fill``. "code": the Context Encoder's chain rule
    through its bottleneck (:func:`jacobian`'s, cheaper for its whole square); "auto" takes "code" for a
    Context Encoder, else "rows". Both give the same matrix (tests)."""
    if method not in ("auto", "rows", "code"):
        raise ValueError(f'region_jacobian method must be "auto", "rows" or "code", not {method!r}.')
    y = _batch_of_one(masked, "region_jacobian")
    known = known.to(y).reshape(1, 1, *y.shape[-2:])
    region = generator.predicted(known)[0, 0]
    n = int(region.sum())
    if method != "rows" and isinstance(generator, ContextEncoder):
        return jacobian(generator, masked, chunk=chunk, method="code").reshape(3, n, *y.shape[1:])
    if method == "code":
        raise ValueError("region_jacobian method 'code' needs a ContextEncoder (an encoder and a decoder meeting at a code).")
    index = torch.arange(y.numel(), device=y.device).view(y.shape[1:])
    network = _network(generator, known)
    with exact(generator, y.device):
        chunk = chunk or min(WHOLE_CHUNK, auto_chunk(network, y))
        rows = _pulled_back(network, y, index[:, region].flatten(), chunk)
    return rows.reshape(3, n, *y.shape[1:])


def weight_map(rows: torch.Tensor, kind: str = "channel0") -> torch.Tensor:
    """Jacobian rows of output pixels, ``(..., 3, 3, H, W)``, to ``(..., H, W)`` weight maps.

    "channel0": output channel 0 w.r.t. input channel 0, what the authors' code drew;
    "colour": sqrt of the sum of squares over both channel axes, so no colour's weight is missed."""
    if kind == "channel0":
        return rows[..., 0, 0, :, :]
    if kind == "colour":
        return rows.square().sum(dim=(-4, -3)).sqrt()
    raise ValueError(f'weight_map kind must be "channel0" or "colour", not {kind!r}.')


def phi_windows(
    mask_size: int, ps: Sequence[float], image_size: int = 128, definition: str = "code", overlap: int | None = None
) -> tuple[tuple[int, int] | None, list[tuple[int, int]]]:
    """The square [lo, hi) that phi_p zeroes first (None if none) and each p's window [lo, hi),
    both axes; see :func:`phi_p` for the definitions."""
    s, e = (image_size - mask_size) // 2, (image_size + mask_size) // 2
    if definition == "code":  # the authors' arithmetic, in Python floats
        return (s, e), [(math.floor(s - q * s), math.floor(e + q * s)) for q in ps]
    if definition == "hole":
        a = s + (mask_size // 16 if overlap is None else overlap)
        b = image_size - a
        return (a, b), [(math.floor(a - q * a), math.floor(b + q * a)) for q in ps]
    if definition == "paper":
        starts = [math.floor((image_size - q * mask_size) / 2) for q in ps]
        return None, [(lo, image_size - lo) for lo in starts]
    raise ValueError(f'phi_p definition must be "code", "hole" or "paper", not {definition!r}.')


def phi_p(
    weight_map: torch.Tensor,
    mask_size: int,
    p: float | Sequence[float] | torch.Tensor,
    image_size: int = 128,
    definition: str = "code",
    overlap: int | None = None,
) -> torch.Tensor:
    """Locality ratio phi_p = ||window of the map||_F / ||map||_F of ``(..., H, W)`` weight maps.

    A scalar p gives ``(...)``; a sequence or 1-D tensor of p gives ``(..., len(p))`` (float64).

    "code", the authors' code, which produced their reported numbers (SPEC section 6): first zero
    the map at the input pixels inside the predicted square, [s, e) x [s, e) with s = (S - m) / 2 and
    e = s + m. The SPEC's "zero the columns inside the predicted square" means the columns of A_y
    (one per input pixel; a weight map is one row of A_y) that lie in the square, not a band of image
    columns [s, e) running through all rows. The square holds the hole, whose entries are not zero
    although they act on zero inputs, and the visible overlap ring, whose entries do act on y but
    are inside the square all the same. Then the window is [floor(s - p s), floor(e + p s)) in both
    axes, so p is the fraction of the margin between the square and the border: phi_0 = 0 and
    phi_1 = 1. Numerator and denominator both use the zeroed map.

    "hole", beyond the paper: the same with only the hole zeroed (the square less its ``overlap``
    ring, default m / 16), the window growing from the hole's edge. It keeps the ring, where every
    weight of a diffusion method lies (biharmonic's phi_p by "code" is 0 / 0 at m = 32 and 64).

    "paper", equation (8) as written: the window [(S - p m) / 2, (S + p m) / 2) in both axes of the
    unzeroed map, rounded outwards to whole pixels (floor of the start, same margin at the end).

    Windows grow with p, so phi_p is non-decreasing in p and lies in [0, 1] (NaN for an all-zero map).
    """
    ps = torch.as_tensor(p, dtype=torch.float64).cpu()
    if ps.ndim > 1 or (ps < 0).any() or (ps > 1).any():
        raise ValueError(f"p must be a number or a 1-D sequence of numbers in [0, 1], not {p}.")
    zeroed, windows = phi_windows(mask_size, ps.reshape(-1).tolist(), image_size, definition, overlap)
    energy = weight_map.to(torch.float64).square()
    if zeroed is not None:
        energy[..., zeroed[0] : zeroed[1], zeroed[0] : zeroed[1]] = 0.0
    lo, hi = zip(*windows)
    lo, hi = torch.tensor(lo, device=energy.device), torch.tensor(hi, device=energy.device)
    # Integral image: the energy of every window [lo, hi)^2 by four look-ups.
    table = F.pad(energy.cumsum(-1).cumsum(-2), (1, 0, 1, 0))
    inside = table[..., hi, hi] - table[..., lo, hi] - table[..., hi, lo] + table[..., lo, lo]
    ratio = (inside.clamp(min=0) / table[..., -1:, -1]).sqrt()
    return ratio[..., 0] if ps.ndim == 0 else ratio


def _known(jac: torch.Tensor, known_only: bool, mask: CenterMask | torch.Tensor | None) -> torch.Tensor:
    """(H, W) boolean: the input pixels whose columns of A_y are kept. ``mask``: a centre mask, or
    the known pixels themselves as a boolean ``(H, W)``."""
    if known_only and isinstance(mask, torch.Tensor):
        return mask.to(device=jac.device, dtype=torch.bool).reshape(jac.shape[-2:])
    keep = torch.ones(jac.shape[-2:], dtype=torch.bool, device=jac.device)
    if known_only:
        if mask is None:
            mask = CenterMask(jac.shape[-1], jac.shape[-5])  # read off a full (3, m, m, 3, S, S) A_y
        keep[mask.hole, mask.hole] = False
    return keep


def _gram(jac: torch.Tensor, keep: torch.Tensor, block_rows: int = 8) -> torch.Tensor:
    """A A^T in float64, A being A_y as (3 m m, 3 H W) with only the ``keep`` columns, summed over
    blocks of input rows so that only one block is ever converted to float64. Each block's product is
    a symmetric rank-k update (BLAS ``dsyrk``: half a general product's arithmetic, 1.5x faster here),
    so only the LOWER triangle is filled: what LAPACK's symmetric solvers and Cholesky read (torch's and
    scipy's defaults), and no second n x n copy (1.2 GB at m = 64) is made to mirror it. Blocks of 8
    input rows: a block's float32 selection and float64 copy are 0.45 GB for a 64 x 64 hole's 12,288
    rows, and BLAS still runs at speed (on 2 cores, 60 s and 4.7 GB peak against 67 s and 6.3 GB with 32)."""
    rows = jac.reshape(-1, *jac.shape[-3:])
    gram = np.zeros((len(rows), len(rows)), order="F")
    for r in range(0, rows.shape[-2], block_rows):
        block = rows[:, :, r : r + block_rows][:, :, keep[r : r + block_rows]].reshape(len(rows), -1).double().cpu().numpy()
        if block.shape[1]:
            gram = scipy.linalg.blas.dsyrk(1.0, block.T, beta=1.0, c=gram, trans=1, overwrite_c=1)
    return torch.from_numpy(gram.T).to(jac.device)  # the F-ordered upper triangle, read row-major: the lower

def svd_spectrum(jac: torch.Tensor, known_only: bool = True, mask: CenterMask | torch.Tensor | None = None) -> torch.Tensor:
    """Singular values of A_y as a (3 m m, 3 H W) matrix, descending, float64.

    ``known_only`` keeps only the columns of input pixels outside the hole: the hole's inputs are zero,
    so its columns never act on y. ``mask`` defaults to the centre mask matching a full A_y; for any
    other hole pass the known pixels as a boolean ``(H, W)`` tensor (A_y of any shape ``(..., 3, H, W)``).

    Computed as the square roots of the eigenvalues (``eigvalsh``) of the Gram matrix A A^T formed in
    float64 (never A itself in float64: at m = 64 it is 12288 x 39744 known columns, 1.8 GiB in
    float32). At m = 64 on 2 CPU cores that is about 4 minutes for A A^T and 2 for ``eigvalsh``;
    at m = 16 a second or two. Squaring loses only values below ~1e-8 of the largest, and the float32
    A_y is accurate to ~1e-7 anyway.
    """
    values = torch.linalg.eigvalsh(_gram(jac, _known(jac, known_only, mask)))
    return values.clamp(min=0).sqrt().flip(0)


def top_singular_vectors(
    jac: torch.Tensor, k: int = 4, known_only: bool = True, mask: CenterMask | torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k largest singular values s of A_y (as in :func:`svd_spectrum`) with their left singular
    vectors U as ``(k, 3, m, m)`` output images and right ones V as ``(k, 3, H, W)`` input images.

    U are the top eigenvectors of the float64 Gram matrix A A^T (scipy's subset ``eigh``, which skips
    the other eigenvectors: about 3 minutes at m = 64 on top of the Gram's 4), V = A^T U / s (zero in
    the hole when ``known_only``). Each pair's sign makes the output image U sum to >= 0.
    """
    keep = _known(jac, known_only, mask)
    gram = _gram(jac, keep)
    n = len(gram)
    values, vectors = scipy.linalg.eigh(gram.cpu().numpy(), subset_by_index=[n - k, n - 1])
    s = torch.from_numpy(values).flip(0).clamp(min=0).sqrt()
    u = torch.from_numpy(vectors).flip(1)
    u = u * torch.where(u.sum(0) < 0, -1.0, 1.0)
    u = u.to(device=jac.device, dtype=jac.dtype)
    v = (u.T @ jac.reshape(n, -1)).reshape(k, *jac.shape[-3:]) * keep
    v = v / s.to(v)[:, None, None, None]
    return s, u.T.reshape(k, *jac.shape[:-3]), v


def effective_dimensionality(s: torch.Tensor) -> float:
    """sum s^2 (Mohan et al.): the squared Frobenius norm of A_y, the rank for an orthogonal projection."""
    return s.double().square().sum().item()


def participation_ratio(s: torch.Tensor) -> float:
    """(sum s^2)^2 / sum s^4: how many singular values carry the energy (the rank for a projection)."""
    s2 = s.double().square()
    return (s2.sum().square() / s2.square().sum()).item()


def centroid_offset(weight_map: torch.Tensor, pixel: tuple[int, int], mask_start: int) -> tuple[float, float]:
    """Where an ``(H, W)`` weight map's weight lies relative to its output pixel, beyond the paper (its
    "neck" observation): the centroid (row, col) of |map| minus the pixel's position in the input,
    (mask_start + i, mask_start + j). A positive row offset means the weight lies below the pixel."""
    weight = weight_map.abs().double()
    total = weight.sum()
    rows = (weight.sum(1) * torch.arange(weight.shape[0], dtype=torch.float64, device=weight.device)).sum() / total
    cols = (weight.sum(0) * torch.arange(weight.shape[1], dtype=torch.float64, device=weight.device)).sum() / total
    return rows.item() - (mask_start + pixel[0]), cols.item() - (mask_start + pixel[1])


def _folded(spectrum: torch.Tensor) -> torch.Tensor:
    """Power at frequencies 0..n/2 of a length-n power spectrum, adding the negative frequencies."""
    n = len(spectrum)
    folded = spectrum[: n // 2 + 1].clone()
    folded[1 : (n + 1) // 2] += spectrum.flip(0)[: (n + 1) // 2 - 1]
    return folded


def grid_period(weight_map: torch.Tensor, smooth: int = 64) -> dict[str, float]:
    """The faint grid in an ``(H, W)`` weight map, beyond the paper: its period in pixels and how
    far it stands above the map's own spectrum, down the rows and across the columns.

    The residual |map| - (its ``smooth`` x ``smooth`` local mean) removes the smooth envelope. Its
    2-D power spectrum, summed over the other axis, gives the power per frequency f; the background
    at f is the median power 2 to 4 frequencies away on either side (a grid's peak is a few bins
    wide, since the envelope blurs it). The grid is the frequency with the most power above its
    background, among periods shorter than ``smooth / 2`` (longer ones sit where the local mean
    only partly removes the envelope); ``prominence_*`` is its power over the background.

    Calibration (128 px maps, tests): uniform noise reaches about 1.3, a smooth off-centre blob's
    envelope about 2.0, a 10 % grid of period 4 to 24 on that blob 7 to 400. So a prominence near
    2 is no evidence of a grid, whereas the argmax of raw power (this function's first version) sat
    at the search's longest period for every map, grid or not.

    Reading it: the map is a gradient w.r.t. the input, which passes back through the encoder's five
    stride-2 convolutions; a period of 2, 4, 8 or 16 input pixels matches the sampling grid after
    encoder layer 1..4. Those strides are the same for every m, so a period growing with m, as the
    paper describes, would point at what was learned rather than at the strides. Periods come in
    steps of H / f, and a square wave's harmonics can win over a weak fundamental.
    """
    weight = weight_map.abs().double()[None, None]
    padding = (smooth // 2, smooth - 1 - smooth // 2) * 2
    residual = (weight - F.avg_pool2d(F.pad(weight, padding, mode="reflect"), smooth, stride=1))[0, 0]
    power = torch.fft.fft2(residual).abs().square()
    result = {}
    for axis, name in ((0, "rows"), (1, "cols")):
        folded = _folded(power.sum(1 - axis))
        n, top = power.shape[axis], power.shape[axis] // 2
        freqs = list(range(2 * n // smooth + 1, top + 1))
        background = torch.stack([folded[[g for d in (2, 3, 4) for g in (f - d, f + d) if 1 <= g <= top]].median() for f in freqs])
        best = int((folded[freqs] - background).argmax())
        result[f"period_{name}"] = n / freqs[best]
        result[f"prominence_{name}"] = (folded[freqs[best]] / background[best]).item()
    return result


def factored_svd(
    decoder: torch.Tensor, encoder: torch.Tensor, k: int = 4, known_only: bool = True, mask: CenterMask | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every nonzero singular value of A_y = P Q from its halves (:func:`jacobian_factors`), exactly,
    with the top ``k`` singular vectors: s ``[min(3 m m, code)]`` descending (float64), U ``(k, 3, m, m)``
    and V ``(k, 3, H, W)`` as in :func:`top_singular_vectors`. ``known_only`` and ``mask`` as in
    :func:`svd_spectrum`; A_y's rank is at most the code size, so no other value is nonzero.

    A A^T = P (Q Q^T) P^T = B B^T with B = P L and L L^T = Q Q^T (Cholesky; the eigen-decomposition
    if Q Q^T is singular), so the singular values are the square roots of the eigenvalues of the
    smaller of B B^T and B^T B. Everything after Q Q^T is code-sized, in float64 as the Gram path of
    :func:`svd_spectrum`: at paper width (code 4,000) about 30 s on 2 CPU cores, most of it the
    4,000 x 4,000 Q Q^T; at the demo's code of 1,024 about a second.
    """
    n, code = decoder[..., 0].numel(), decoder.shape[-1]
    if code != encoder.shape[0]:
        raise ValueError(f"the halves of A_y do not meet: P has {code} code columns, Q {encoder.shape[0]} code rows.")
    keep = _known(encoder, known_only, mask if mask is not None else CenterMask(encoder.shape[-1], decoder.shape[-2]))
    code_gram = _gram(encoder, keep)  # Q Q^T over the kept columns
    root, failed = torch.linalg.cholesky_ex(code_gram)
    if failed:
        values, vectors = torch.linalg.eigh(code_gram)
        root = vectors * values.clamp(min=0).sqrt()
    b = decoder.reshape(n, code).double() @ root
    wide = n <= code
    small = b @ b.T if wide else b.T @ b
    s = torch.linalg.eigvalsh(small).flip(0)[: min(n, code)].clamp(min=0).sqrt()
    _, top = scipy.linalg.eigh(small.cpu().numpy(), subset_by_index=[len(small) - k, len(small) - 1])
    top = torch.from_numpy(top).flip(1).to(b.device)
    u = top if wide else b @ top / s[:k]
    u = (u * torch.where(u.sum(0) < 0, -1.0, 1.0)).to(decoder.dtype)
    v = encoder.reshape(code, -1).T @ (decoder.reshape(n, code).T @ u)
    v = v.T.reshape(k, *encoder.shape[1:]) * keep / s[:k].to(v)[:, None, None, None]
    return s, u.T.reshape(k, *decoder.shape[:-1]), v


def spectrum_stats(decoder: torch.Tensor, encoder: torch.Tensor, mask: CenterMask, vectors: int = 4) -> dict:
    """The SVD analysis of A_y over the known-pixel columns, exact, from its halves (:func:`factored_svd`).

    Returns ``{"summary": JSON-ready numbers, "singular_values": s, "vectors": (U, V, s) of the top
    ``vectors``}``; ``summary["method"]`` says how the values were computed.
    """
    s, u, v = factored_svd(decoder, encoder, vectors, True, mask)
    summary = {
        "method": f"exact: all {len(s)} singular values that can be nonzero (A_y = (dout/dz)(dz/dy) has rank at most "
        f"the code size, {encoder.shape[0]}), from float64 Gram matrices of its halves",
        "columns": "known input pixels only (the hole's inputs are zero)",
        "singular_values": s.tolist(),
        "effective_dim": effective_dimensionality(s),
        "participation_ratio": participation_ratio(s),
    }
    return {"summary": summary, "singular_values": s, "vectors": (u, v, s[:vectors])}


def _summary(s: torch.Tensor, method: str) -> dict:
    return {
        "method": method,
        "columns": "known input pixels only (the hole's inputs are zero)",
        "singular_values": s.tolist(),
        "effective_dim": effective_dimensionality(s),
        "participation_ratio": participation_ratio(s),
    }


def dense_spectrum(jac: torch.Tensor, known: torch.Tensor, vectors: int = 4) -> dict:
    """The SVD analysis of a whole A_y held densely, ``(..., 3, H, W)`` (e.g. :func:`region_jacobian`'s),
    over the ``known`` input pixels' columns (boolean ``(H, W)``): every singular value, from the float64
    Gram matrix A A^T (:func:`svd_spectrum`), and the top ``vectors`` triplets. Returns what
    :func:`spectrum_stats` returns."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    keep = _known(jac, True, known)
    gram = _gram(jac, keep)
    s = torch.linalg.eigvalsh(gram).clamp(min=0).sqrt().flip(0)
    n = len(gram)
    k = min(vectors, n - 1)
    # the top k eigenvectors by Lanczos on the lower triangle (BLAS dsymv): a second dense
    # eigen-decomposition, even of a subset, would reduce the whole matrix again (a minute at m = 64)
    lower = np.asfortranarray(gram.cpu().numpy().T)  # a view: column-major, its upper triangle is gram's lower
    product = LinearOperator((n, n), matvec=lambda v: scipy.linalg.blas.dsymv(1.0, lower, np.ravel(v), lower=0), dtype=np.float64)
    values, top = eigsh(product, k=k, which="LA", tol=0, v0=np.ones(n), ncv=min(n, max(2 * k + 1, 20)))
    top = top[:, np.argsort(values)]
    u = torch.from_numpy(top).flip(1)
    u = (u * torch.where(u.sum(0) < 0, -1.0, 1.0)).to(device=jac.device, dtype=jac.dtype)
    v = (u.T @ jac.reshape(n, -1)).reshape(k, *jac.shape[-3:]) * keep / s[:k].to(jac)[:, None, None, None]
    summary = _summary(s, f"exact: all {n} singular values of the dense A_y ({n} rows: the predicted pixels' channels), "
                          "from its float64 Gram matrix")
    return {"summary": summary, "singular_values": s, "vectors": (u.T.reshape(k, *jac.shape[:-3]), v, s[:k])}


def matrix_free_spectrum(generator: nn.Module, masked: torch.Tensor, known: torch.Tensor, k: int = 64, vectors: int = 4,
                         tol: float = 1e-4) -> dict:
    """The top ``k`` singular values of a generator's A_y (its predicted pixels' rows, the known pixels'
    columns) without forming it: Lanczos bidiagonalisation (``scipy.sparse.linalg.svds``, ARPACK) on a
    linear operator whose products are reverse-mode passes through ``fill`` (A^T u; A v by
    transposing that linear map). For holes whose dense A_y would not fit (hundreds of thousands
    of products otherwise); the summary states each value's relative residual ||A v - s u|| / s,
    the proof of its accuracy.
    ``effective_dim`` and ``participation_ratio`` are then over the top k only (said in ``method``)."""
    from scipy.sparse.linalg import LinearOperator, svds

    y = _batch_of_one(masked, "matrix_free_spectrum")
    known = known.to(y).reshape(1, 1, *y.shape[-2:])
    region = generator.predicted(known)[0, 0]
    keep = known[0, 0] > 0.5
    network = _network(generator, known)
    rows, cols = 3 * int(region.sum()), 3 * int(keep.sum())
    if not 0 < k < min(rows, cols):
        raise ValueError(f"matrix_free_spectrum: k={k} must lie in (0, {min(rows, cols)}).")
    with exact(generator, y.device):
        _, pull_back = vjp(network, y)
        # A v as the transpose of the linear map u -> A^T u: reverse mode twice, a few times faster
        # than forward mode (jvp) through these networks, which computes the forward pass again
        _, push_forward = vjp(lambda u: pull_back(u)[0], torch.zeros_like(y))

        def forward(v: np.ndarray) -> np.ndarray:
            tangent = torch.zeros_like(y)
            tangent[0][:, keep] = torch.from_numpy(np.asarray(v, dtype=np.float32).reshape(3, -1)).to(y)
            return push_forward(tangent)[0][0][:, region].double().cpu().numpy().ravel()

        def backward(u: np.ndarray) -> np.ndarray:
            cotangent = torch.zeros_like(y)
            cotangent[0][:, region] = torch.from_numpy(np.asarray(u, dtype=np.float32).reshape(3, -1)).to(y)
            return pull_back(cotangent)[0][0][:, keep].double().cpu().numpy().ravel()

        operator = LinearOperator((rows, cols), matvec=forward, rmatvec=backward, dtype=np.float64)
        u, values, vt = svds(operator, k=k, tol=tol, random_state=0)
        order = np.argsort(values)[::-1]
        u, values, vt = u[:, order], values[order], vt[order]
        residuals = [float(np.linalg.norm(forward(vt[i]) - values[i] * u[:, i]) / values[i]) for i in range(k)]
    s = torch.from_numpy(values.copy())
    top = min(vectors, k)
    signs = np.where(u[:, :top].sum(0) < 0, -1.0, 1.0)
    u_images = torch.zeros(top, 3, *y.shape[-2:], dtype=torch.float64)
    u_images[:, :, region.cpu()] = torch.from_numpy((u[:, :top] * signs).T.reshape(top, 3, -1).copy())
    v_images = torch.zeros(top, 3, *y.shape[-2:], dtype=torch.float64)
    v_images[:, :, keep.cpu()] = torch.from_numpy((vt[:top].T * signs).T.reshape(top, 3, -1).copy())
    summary = _summary(s, f"matrix-free: the top {k} of {min(rows, cols)} singular values (Lanczos, ARPACK tol {tol:g}); "
                          f"effective_dim and participation_ratio over those {k} only")
    summary["residuals"] = residuals
    summary["max_residual"] = max(residuals)
    return {"summary": summary, "singular_values": s, "vectors": (u_images.float(), v_images.float(), s[:top])}
