"""The benchmark cases: one function per case, each returning a JSON-ready dict."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.func import vjp
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from analysis.jacobian import jacobian
from analysis.pca import fit_pca
from benchmarks import alternate, timed
from inpaint.data.celeba import CelebADataModule
from inpaint.module import InpaintingModule

BATCH = 32
DEMO_WIDTH = {"base_channels": 32, "bottleneck": 1024}
PAPER_WIDTH = {"base_channels": 64, "bottleneck": 4000}
REFERENCE = {"dense_bottleneck": False, "channels_last": False, "precision": "32-true"}
BEST = {"dense_bottleneck": True, "channels_last": True, "precision": "bf16-mixed"}


class StepTimer(L.Callback):
    """perf_counter at the start and end of every training batch."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.ends.append(time.perf_counter())


def _fit_rate(settings: dict, width: dict, images: torch.Tensor, steps: int, warmup: int = 2) -> float:
    """Images/s of ``steps`` generator + critic steps of the real Lightning loop, from the start of
    step ``warmup + 1`` to the end of the last (data fetching between steps included)."""
    torch.manual_seed(0)
    model = InpaintingModule(
        adv_weight=0.001,
        dense_bottleneck=settings["dense_bottleneck"],
        channels_last=settings["channels_last"],
        **width,
    )
    timer = StepTimer()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision=settings["precision"],
        max_steps=2 * steps,  # manual optimisation: each optimiser.step() (generator and critic) counts
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(model, DataLoader(images, batch_size=BATCH, shuffle=True, drop_last=True))
    if len(timer.ends) != steps:
        raise RuntimeError(f"expected {steps} training batches, Lightning ran {len(timer.ends)}")
    return BATCH * (steps - warmup) / (timer.ends[-1] - timer.starts[warmup])


def train(quick: bool) -> dict:
    """Training throughput of the reference settings (convolutional bottleneck, NCHW, float32) vs
    the project's best on CPU (dense bottleneck, channels_last, bf16 autocast)."""
    width = DEMO_WIDTH if quick else PAPER_WIDTH
    steps, repeats = (12, 5) if quick else (16, 5)
    images = torch.rand(BATCH * steps, 3, 128, 128)
    ref, best = alternate(
        lambda: _fit_rate(REFERENCE, width, images, steps), lambda: _fit_rate(BEST, width, images, steps), repeats
    )
    return {
        "width": width,
        "batch": BATCH,
        "steps_timed": f"{steps - 2} of {steps} per fit (first 2 dropped), median of {repeats} fits each, alternating",
        "reference_settings": REFERENCE,
        "best_settings": BEST,
        "reference_images_per_s": ref,
        "best_images_per_s": best,
        "ratio": best / ref,
    }


def _loop_rows(generator: torch.nn.Module, masked: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Jacobian rows by one ``torch.autograd.grad`` per output scalar (Mohan et al.'s code)."""
    y = masked.unsqueeze(0).clone().requires_grad_(True)
    out = generator(y).flatten()
    return torch.stack([torch.autograd.grad(out[r], y, retain_graph=True)[0][0] for r in rows.tolist()])


def peak_matmul_flops(n: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of an n x n float32 matmul (2 n^3 FLOPs), after one warm-up."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    return 2 * n**3 / min(timed(lambda: a @ b) for _ in range(repeats))


def jacobian_case(quick: bool) -> dict:
    """The full A_y at m = 64 by :func:`analysis.jacobian.jacobian` (one vjp, vmapped pull-backs) vs a
    loop of one ``autograd.grad`` per output scalar, timed on sampled rows and extrapolated."""
    width = DEMO_WIDTH if quick else PAPER_WIDTH
    torch.manual_seed(0)
    generator = InpaintingModule(mask_size=64, adv_weight=0.0, **width).generator.eval()
    masked = generator.mask_input(torch.rand(1, 3, 128, 128))[0]
    total = 3 * 64 * 64
    loop_rows, repeats = (48, 5) if quick else (192, 3)
    rows = torch.randperm(total, generator=torch.Generator().manual_seed(0))[:loop_rows]
    if quick:
        pixels = [(i, j) for i in range(64) for j in range(64)][::16]  # 256 pixels, 768 rows
        ours_rows, method = 3 * len(pixels), "768 of 12288 rows (pixels=, every 16th pixel), extrapolated"

        def ours() -> float:
            return timed(lambda: jacobian(generator, masked, pixels=pixels))
    else:
        ours_rows, method = total, "all 12288 rows, measured"

        def ours() -> float:
            return timed(lambda: jacobian(generator, masked))

    loop, our = alternate(lambda: timed(lambda: _loop_rows(generator, masked, rows)), ours, repeats)
    ours_full = our * total / ours_rows
    loop_full = loop * total / loop_rows

    with torch.no_grad():
        with FlopCounterMode(display=False) as forward:
            out, pull_back = vjp(generator, masked.unsqueeze(0))
        with FlopCounterMode(display=False) as backward:
            pull_back(torch.ones_like(out))
    forward_flops, backward_flops = forward.get_total_flops(), backward.get_total_flops()
    peak = peak_matmul_flops()
    return {
        "width": width,
        "mask_size": 64,
        "rows": total,
        "method": f"ours: {method}; loop: {loop_rows} random rows, extrapolated; medians of {repeats}, alternating",
        "ours_seconds": our,
        "ours_rows_timed": ours_rows,
        "loop_seconds_extrapolated": loop_full,
        "loop_rows_timed": loop_rows,
        "ratio": loop_full / ours_full,
        "full_seconds": ours_full,
        "full_seconds_is": "extrapolated" if quick else "measured",
        "forward_flops_per_image": forward_flops,
        "peak_matmul_flops_per_s": peak,
        "compute_bound_seconds": total * 2 * forward_flops / peak,
        "compute_bound_note": "rows x 2 x forward FLOPs (backward ~ 2 x forward) / peak 2048^2 float32 matmul FLOP/s",
        "backward_flops_per_row": backward_flops,
        "compute_bound_seconds_counted": total * backward_flops / peak,
        "compute_bound_counted_note": "rows x FLOPs of one pull-back counted by FlopCounterMode: the input's gradient "
        "only (no weight gradients), ~1 x forward, so the 2 x rule above overstates the bound",
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


def pca(quick: bool) -> dict:
    """:func:`analysis.pca.fit_pca` (streamed covariance; the N x N Gram matrix when N <= D) vs
    scikit-learn's exact PCA on the same float64 data."""
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

    def ours() -> float:
        start = time.perf_counter()
        fitted["ours"] = fit_pca(x.split(500)).eigenvalues[:100].numpy()
        return time.perf_counter() - start

    ref, our = alternate(sklearn, ours, repeats)
    rel = np.abs(fitted["ours"] - fitted["sklearn"]) / fitted["sklearn"]
    return {
        "shape": [n, x.shape[1]],
        "dtype": "float64",
        "ours_path": "N x N Gram matrix" if n <= x.shape[1] else "D x D covariance",
        "ours_seconds": our,
        "sklearn_seconds": ref,
        "ratio": ref / our,
        "max_eigenvalue_rel_diff": float(rel.max()),
        "repeats": repeats,
    }


def data(quick: bool) -> dict:
    """Images/s of :class:`CelebADataModule` (num_workers=0, batch 64) on a generated CelebA-layout
    tree: decoding the JPEGs every epoch (reference) vs reading the uint8 decode cache (ours)."""
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
