"""A benchmark worker process: ``python -m benchmarks.worker [--retain-freed-memory]``.

Each line on stdin is a job, ``{"job": NAME, ...arguments}``; the worker answers
``RESULT {"value": ...}`` on stdout. A case keeps one worker for the reference and one for the
project's method and alternates between them, so process-wide settings (the allocator,
:mod:`inpaint.malloc`) and each side's heap stay with that side.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
import warnings

import lightning as L
import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from analysis.jacobian import dense_spectrum, jacobian, region_jacobian
from benchmarks import synchronize, timed
from inpaint.malloc import retain_freed_memory
from inpaint.models import ContextEncoder, PartialConvUNet
from inpaint.module import InpaintingModule


class StepTimer(L.Callback):
    """perf_counter at the start and end of every training batch, the device's work included."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.starts: list[float] = []
        self.ends: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        synchronize(self.device)
        self.starts.append(time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        synchronize(self.device)
        self.ends.append(time.perf_counter())


class StepFlops(L.Callback):
    """FLOPs of the training steps, forward and backward, as :class:`FlopCounterMode` counts them
    (matrix products and convolutions: the work a matmul peak bounds)."""

    def __init__(self) -> None:
        self.counter = FlopCounterMode(display=False)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.counter.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.counter.__exit__(None, None, None)


def _accelerator(device: str) -> dict:
    """Lightning's accelerator and devices for "cpu", "cuda" or "cuda:N"."""
    if device.startswith("cuda"):
        return {"accelerator": "cuda", "devices": [torch.device(device).index or 0]}
    return {"accelerator": "cpu", "devices": 1}


def _fit(settings: dict, width: dict, batch: int, steps: int, device: str, callback: L.Callback) -> None:
    """``steps`` generator + critic steps of :class:`InpaintingModule` with ``settings`` on random images
    (with ``settings["pca_components"] = k``: the PCA projection head on k components; ``architecture``
    and ``adv_weight`` as the module's, default the Context Encoder with Pathak's critic; the U-Net
    fills the centred 64 mask's hole)."""
    torch.manual_seed(0)
    images = torch.rand(batch * steps, 3, 128, 128)
    k = settings.get("pca_components", 0)  # the PCA head on k components, or none
    model = InpaintingModule(
        architecture=settings.get("architecture", "context_encoder"),
        adv_weight=settings.get("adv_weight", 0.001),
        dense_bottleneck=settings["dense_bottleneck"],
        channels_last=settings["channels_last"],
        fused_adam=settings["fused_adam"],
        pca_head=bool(k),
        pca_components=k or 32,
        **width,
    )
    if k:  # a random orthonormal basis, set before fitting (which would fit one from a data module)
        basis = model.generator.basis
        basis.set(torch.linalg.qr(torch.randn(basis.mask_size**2, k)).Q, torch.zeros(basis.mask_size**2), len(images))
    trainer = L.Trainer(
        **_accelerator(device),
        precision=settings["precision"],
        max_steps=(2 if model.discriminator is not None else 1) * steps,  # manual optimisation: each optimiser.step() counts
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[callback],
    )
    trainer.fit(model, DataLoader(images, batch_size=batch, shuffle=True, drop_last=True))


def fit_rate(settings: dict, width: dict, batch: int, steps: int, warmup: int, device: str = "cpu") -> float:
    """Images/s of ``steps`` training steps, from the start of step ``warmup + 1`` to the end of the
    last (data fetching between steps included)."""
    timer = StepTimer(device)
    _fit(settings, width, batch, steps, device, timer)
    if len(timer.ends) != steps:
        raise RuntimeError(f"expected {steps} training batches, Lightning ran {len(timer.ends)}")
    return batch * (steps - warmup) / (timer.ends[-1] - timer.starts[warmup])


def step_flops(settings: dict, width: dict, batch: int, device: str = "cpu") -> int:
    """FLOPs of one training step at ``batch``, counted on a real step: the generator's forward, the
    critic's forward and backward on real and fake centres, the critic's forward on the fake again
    for the adversarial term, and the generator's backward through both."""
    flops = StepFlops()
    _fit(settings, width, batch, 1, device, flops)
    return flops.counter.get_total_flops()


def _generator(width: dict, dense_bottleneck: bool, channels_last: bool, device: str) -> ContextEncoder:
    """The m = 64 generator in eval mode on ``device``, its batch-norm scales set from one train-mode pass."""
    torch.manual_seed(0)
    generator = ContextEncoder(64, dense_bottleneck=dense_bottleneck, **width)
    with torch.no_grad():
        generator(generator.mask_input(torch.rand(8, 3, 128, 128)))
    generator.eval().to(device)
    return generator.to(memory_format=torch.channels_last) if channels_last else generator


def _input(generator: ContextEncoder, channels_last: bool, device: str) -> torch.Tensor:
    masked = generator.mask_input(torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))).to(device)
    return (masked.contiguous(memory_format=torch.channels_last) if channels_last else masked)[0]


def jacobian_seconds(width: dict, device: str = "cpu") -> float:
    """Seconds for the whole A_y by :func:`analysis.jacobian.jacobian`, the model as trained here
    (dense bottleneck, channels last)."""
    generator = _generator(width, dense_bottleneck=True, channels_last=True, device=device)
    masked = _input(generator, channels_last=True, device=device)
    return timed(lambda: jacobian(generator, masked), device)


def loop_seconds(width: dict, rows: list[int], device: str = "cpu") -> float:
    """Seconds for the given rows of A_y by one ``torch.autograd.grad`` per output scalar on the
    authors' model (convolutional bottleneck, channels first): Mohan et al.'s code."""
    generator = _generator(width, dense_bottleneck=False, channels_last=False, device=device)
    y = _input(generator, channels_last=False, device=device).unsqueeze(0).requires_grad_(True)

    def loop() -> None:
        out = generator(y).flatten()
        for r in rows:
            torch.autograd.grad(out[r], y, retain_graph=True)

    return timed(loop, device)


def unet_jacobian_seconds(width: dict, device: str = "cpu") -> dict:
    """Seconds for the whole A_y of a 64 x 64 hole of the U-Net (channels last, as trained) by
    :func:`analysis.jacobian.region_jacobian`, and for its spectrum by :func:`dense_spectrum`, with the
    peak resident memory of this process."""
    torch.manual_seed(0)
    net = PartialConvUNet(base_channels=width["base_channels"])
    known = unet_hole()
    with torch.no_grad():
        net.train()(net.mask_input(torch.rand(8, 3, 128, 128), known), known)
    net = net.eval().to(device).to(memory_format=torch.channels_last)
    known = known.to(device)
    y = net.mask_input(torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1)).to(device), known)[0]
    jac = []
    whole = timed(lambda: jac.append(region_jacobian(net, y, known)), device)
    spectrum = timed(lambda: dense_spectrum(jac[0], known[0, 0] > 0.5), device)
    return {"whole_seconds": whole, "spectrum_seconds": spectrum, "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def unet_hole() -> torch.Tensor:
    """``[1, 1, 128, 128]`` known mask of a centred 64 x 64 hole: 12,288 rows of A_y."""
    known = torch.ones(1, 1, 128, 128)
    known[..., 32:96, 32:96] = 0
    return known


JOBS = {"fit": fit_rate, "step_flops": step_flops, "jacobian": jacobian_seconds, "loop": loop_seconds,
        "unet_jacobian": unet_jacobian_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker", description=__doc__)
    parser.add_argument("--retain-freed-memory", action="store_true", help="inpaint.malloc.retain_freed_memory() first")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    if args.retain_freed_memory:
        retain_freed_memory()
    for line in sys.stdin:
        request = json.loads(line)
        value = JOBS[request.pop("job")](**request)
        print("RESULT " + json.dumps({"value": value}), flush=True)


if __name__ == "__main__":
    main()
