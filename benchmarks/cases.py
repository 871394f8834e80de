"""The benchmark cases: one function per case, each returning a JSON-ready dict."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.func import vjp
from torch.utils.flop_counter import FlopCounterMode

from analysis.pca import fit_pca
from benchmarks import Worker, alternate, synchronize, timed
from inpaint.data.celeba import CelebADataModule
from inpaint.models import ContextEncoder

BATCH = 64  # the paper's
PAPER_WIDTH = {"base_channels": 64, "bottleneck": 4000}

REFERENCE = {"dense_bottleneck": False, "channels_last": False, "precision": "32-true", "fused_adam": False}
BEST = {"dense_bottleneck": True, "channels_last": True, "precision": "bf16-mixed", "fused_adam": True}


def best_settings(device: str) -> dict:
    """The project's defaults on ``device``: bf16 autocast where the device has it (CPUs and
    GPUs from Ampere on), else fp16 with loss scaling."""
    bf16 = not device.startswith("cuda") or torch.cuda.is_bf16_supported()
    return {**BEST, "precision": "bf16-mixed" if bf16 else "16-mixed"}


def train(quick: bool, device: str) -> dict:
    """Training throughput at paper width, batch 64, generator and critic steps through the real
    Lightning loop: the reference settings (convolutional bottleneck, float32, PyTorch's default
    Adam, channels first, glibc's default allocator) against the project's defaults on the device
    (dense bottleneck, bf16 autocast, fused Adam, channels last, freed memory retained)."""
    steps, warmup, repeats = (4, 1, 3) if quick else (10, 2, 5)  # ours needs 2 warm-up steps: 1 understates it
    fit = {"width": PAPER_WIDTH, "batch": BATCH, "steps": steps, "warmup": warmup, "device": device}
    best_on_device = best_settings(device)
    with Worker() as reference, Worker(retain_freed_memory=True) as best:
        ref, ours = alternate(
            lambda: reference("fit", settings=REFERENCE, **fit), lambda: best("fit", settings=best_on_device, **fit), repeats
        )
    return {
        "width": PAPER_WIDTH,
        "batch": BATCH,
        "steps_timed": f"{steps - warmup} of {steps} per fit ({warmup} warm-up), median of {repeats} fits each, alternating",
        "reference_settings": {**REFERENCE, "retain_freed_memory": False},
        "best_settings": {**best_on_device, "retain_freed_memory": True},
        "reference_images_per_s": ref,
        "best_images_per_s": ours,
        "ratio": ours / ref,
    }


def peak_matmul_flops(device: str, repeats: int = 5) -> float:
    """Best FLOP/s of an n x n float32 matmul (2 n^3 FLOPs) on ``device``, after one warm-up; n is
    2048 on CPUs, 8192 on GPUs (a smaller product would not fill one)."""
    n = 8192 if device.startswith("cuda") else 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    return 2 * n**3 / min(timed(lambda: a @ b, device) for _ in range(repeats))


def _flops(fn) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def jacobian_case(quick: bool, device: str) -> dict:
    """The whole A_y at m = 64 and paper width by :func:`analysis.jacobian.jacobian` (through the
    code: dz/dy by pull-backs, dout/dz by forward products, one matrix product), against the
    authors' loop of one ``autograd.grad`` per output scalar on their model (convolutional
    bottleneck), timed on random rows and extrapolated to all 12,288."""
    total = 3 * 64 * 64
    loop_rows, repeats = (12, 3) if quick else (64, 3)
    ours_repeats = 1 if quick else repeats
    rows = torch.randperm(total, generator=torch.Generator().manual_seed(0))[: loop_rows * repeats].view(repeats, -1).tolist()
    loops, ours = [], []
    with Worker() as reference, Worker(retain_freed_memory=True) as best:
        for i in range(repeats):
            loops.append(reference("loop", width=PAPER_WIDTH, rows=rows[i], device=device))
            if i < ours_repeats:
                ours.append(best("jacobian", width=PAPER_WIDTH, device=device))
    loop, our = statistics.median(loops), statistics.median(ours)
    loop_full = loop * total / loop_rows

    # The compute bound of our method: FLOPs counted for one product of each kind, times their number.
    torch.manual_seed(0)
    generator = ContextEncoder(64, **PAPER_WIDTH).eval()
    y = generator.mask_input(torch.rand(1, 3, 128, 128))
    z = generator.encoder(y).detach()
    code = z.numel()
    with torch.no_grad():
        _, pull_back = vjp(generator.encoder, y)
    pull = _flops(lambda: pull_back(torch.ones_like(z)))
    push = _flops(lambda: generator.decoder(z))  # a tangent takes the forward's own linear maps
    matmul = 2 * total * code * y.numel()
    counted = code * pull + code * push + matmul
    peak = peak_matmul_flops(device)
    return {
        "width": PAPER_WIDTH,
        "mask_size": 64,
        "rows": total,
        "method": f"ours: the whole A_y, measured, median of {ours_repeats}; loop: {loop_rows} random rows a repeat, "
        f"extrapolated, median of {repeats}; alternating, each side in its own process",
        "loop_seconds_extrapolated": loop_full,
        "loop_seconds_per_row": loop / loop_rows,
        "full_seconds": our,
        "ratio": loop_full / our,
        "flops_counted": counted,
        "flops_note": f"{code} encoder pull-backs + {code} decoder forward products (counted by FlopCounterMode: one pull-back; one decoder forward pass, which is what a tangent costs) "
        f"+ the {total} x {code} x {y.numel()} matrix product",
        "peak_matmul_flops_per_s": peak,
        "compute_bound_seconds": counted / peak,
    }


def _sample(n: int, dim: int = 4096, rank: int = 300, seed: int = 0) -> torch.Tensor:
    """n float64 vectors with a decaying spectrum (rank-``rank`` signal plus small isotropic noise),
    so the top eigenvalues are well separated."""
    g = torch.Generator().manual_seed(seed)
    scales = 1.0 / torch.arange(1, rank + 1, dtype=torch.float64)
    signal = (torch.randn(n, rank, generator=g, dtype=torch.float64) * scales) @ torch.randn(
        rank, dim, generator=g, dtype=torch.float64
    )
    return signal + 0.01 * torch.randn(n, dim, generator=g, dtype=torch.float64)


def pca(quick: bool, device: str) -> dict:
    """:func:`analysis.pca.fit_pca` on ``device`` (streamed covariance; the N x N Gram matrix when
    N <= D) vs scikit-learn's exact PCA on the CPU, on the same float64 data."""
    from sklearn.decomposition import PCA

    n, repeats = (1000, 5) if quick else (5000, 3)
    x = _sample(n)
    x_np = x.numpy()
    fitted = {}

    def sklearn() -> float:
        model = PCA(svd_solver="full")
        seconds = timed(lambda: model.fit(x_np))
        fitted["sklearn"] = model.explained_variance_[:100]
        return seconds

    on_device = x.to(device)

    def ours() -> float:
        synchronize(device)
        start = time.perf_counter()
        fitted["ours"] = fit_pca(on_device.split(500)).eigenvalues[:100].cpu().numpy()
        return time.perf_counter() - start

    ref, our = alternate(sklearn, ours, repeats)
    rel = np.abs(fitted["ours"] - fitted["sklearn"]) / fitted["sklearn"]
    return {
        "shape": [n, x.shape[1]],
        "dtype": "float64",
        "ours_path": "N x N Gram matrix" if n <= x.shape[1] else "D x D covariance",
        "ours_device": device,
        "ours_seconds": our,
        "sklearn_seconds": ref,
        "ratio": ref / our,
        "max_eigenvalue_rel_diff": float(rel.max()),
        "repeats": repeats,
    }


def data(quick: bool, device: str) -> dict:
    """Images/s of :class:`CelebADataModule` (num_workers=0, batch 64) on a generated CelebA-layout
    tree: decoding the JPEGs every epoch (reference) vs reading the uint8 decode cache (ours). Both
    run on the CPU whatever the device: this is the loader's side of the pipeline."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from celeba_tree import make_celeba_tree

    n, repeats = (512, 5) if quick else (2048, 5)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_celeba_tree(Path(tmp), n_train=n, n_val=1, n_test=1)

        def loader(cache_dir):
            module = CelebADataModule(str(root), holdout_size=1, batch_size=64, num_workers=0, cache_dir=cache_dir)
            module.prepare_data()
            module.setup("fit")
            return module.train_dataloader()

        jpeg, cached = loader(None), loader(str(Path(tmp) / "cache"))
        build = timed(lambda: loader(str(Path(tmp) / "cache2")))
        ref, our = alternate(lambda: n / timed(lambda: sum(len(b) for b in jpeg)),
                             lambda: n / timed(lambda: sum(len(b) for b in cached)), repeats)
    return {
        "images": n,
        "batch": 64,
        "num_workers": 0,
        "jpeg_images_per_s": ref,
        "cache_images_per_s": our,
        "ratio": our / ref,
        "cache_build_seconds": build,
        "note": f"median of {repeats} passes over the train split, alternating; the cache is built once (cache_build_seconds)",
    }


CASES = {"train": train, "jacobian": jacobian_case, "pca": pca, "data": data}
