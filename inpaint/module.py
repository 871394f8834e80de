"""The LightningModule: inpainting generators trained with Pathak's weighted L2 (and critic).

Two architectures (``architecture``): the Context Encoder, which predicts the centred m x m square
(Pathak's weighted L2 on it, with the overlap ring 10x, and optionally his adversarial loss), and the
partial-convolution U-Net, which fills any hole (the L2 over the hole's pixels). The centred square
is applied here; random holes come with the batch (``(images, known)``, inpaint/data/datamodule.py).
Generator and discriminator take turns in one manual-optimisation step (two Adam optimisers). PSNR
and the L2 are measured on the hole, the pixels actually removed from the input, for every split,
and SSIM for val and holdout (over the square hole; over the whole inpainted image for random holes).
With a PCA basis (the regulariser or the projection head), it is fitted on the training originals
when fitting starts, on rank zero, and broadcast to every process.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from inpaint.checkpoint import read_model_checkpoint
from inpaint.checks import check_model
from inpaint.data import to_float
from inpaint.data.datamodule import Batch, split_batch
from inpaint.errors import InpaintError
from inpaint.masks import CenterMask
from inpaint.models import BiasFreeBatchNorm, ContextEncoder, Discriminator, PartialConvUNet
from inpaint.models.partial_conv import spread
from inpaint.pca import CovarianceAccumulator, crop_vectors

log = logging.getLogger(__name__)


class InpaintingModule(L.LightningModule):
    """An inpainting generator (+ the Context Encoder's patch critic), rebuilt from its
    hyperparameters alone.

    Args:
        architecture: ``context_encoder`` (Pathak's, :class:`inpaint.models.ContextEncoder`) or ``unet``
            (partial convolutions, :class:`inpaint.models.PartialConvUNet`: any hole, no critic).
        mask_size, bias_free, image_size, base_channels, bottleneck, overlap, dense_bottleneck, bn_momentum:
            the generator, see :class:`inpaint.models.ContextEncoder`; for the U-Net, ``mask_size`` and
            ``overlap`` give the centred hole of batches that bring none (``bottleneck`` and
            ``dense_bottleneck`` are the Context Encoder's only).
        depth: the U-Net's number of stride-2 stages.
        mask: the mask group's settings (``kind`` and its parameters), kept so that a checkpoint alone
            says which holes it was trained and analysed on; None: the centred square.
        adv_weight: weight of the adversarial term; the L2 gets ``1 - adv_weight`` (Pathak:
            0.001). 0 trains by pure L2 and builds no discriminator.
        ring_weight: L2 weight of the overlap ring relative to the hole (Pathak: 10).
        lr_g, lr_d, beta1, beta2: the two Adam optimisers (PyTorch port: 2e-4, 2e-4, 0.5, 0.999).
        lr_schedule: ``constant`` (Pathak) or ``cosine``: a linear warm-up over the first
            ``warmup_fraction`` of the run's batches, then a cosine decay to zero at its end (both
            optimisers, stepped once per optimiser step; the run's length is Lightning's
            ``estimated_stepping_batches``, so it follows max_epochs, max_steps and the limits).
        warmup_fraction: the warm-up's share of the run under ``cosine``.
        channels_last: NHWC memory layout for both networks and their inputs (same results,
            faster convolutions on CPUs and tensor cores).
        fused_adam: one fused kernel per optimiser step instead of a loop over parameters
            (same update; at paper width on CPU, where the dense bottleneck holds 65 M parameters,
            a step of both optimisers takes 0.04 s instead of 0.15 s).
        compile: run both networks' forward and backward in training, validation and test through
            ``torch.compile`` (fused kernels for the device, after a one-off compile of tens of
            seconds). Off by default: on the 2-core CPU here it was slower (51 vs 59 img/s at
            paper width). Checkpoints, ``forward`` and the analyses use the plain modules.
        pca_weight: weight of the PCA regulariser (0: off): the generator's loss adds this times the
            prediction's mean squared energy outside the top ``pca_components`` principal components
            of the training originals' crops (logged as ``train/pca_outside``, and for val and holdout).
        pca_head: pass the prediction through the projection on those components (a fixed linear
            layer: the bias-free model stays homogeneous). Its prediction has no energy outside them,
            so it is refused together with the regulariser.
        pca_components: k, the number of components of both.
        pca_centred: measure and project about the crops' mean instead of through 0. Uncentred (the
            default) the regulariser and the head constrain the same linear subspace, and the head
            stays linear; centred, the head adds an offset, refused for the bias-free model.
    """

    def __init__(
        self,
        mask_size: int = 64,
        bias_free: bool = True,
        image_size: int = 128,
        base_channels: int = 64,
        bottleneck: int = 4000,
        overlap: int | None = None,
        dense_bottleneck: bool = True,
        bn_momentum: float = 0.1,
        adv_weight: float = 0.001,
        ring_weight: float = 10.0,
        lr_g: float = 2e-4,
        lr_d: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        lr_schedule: str = "constant",
        warmup_fraction: float = 0.05,
        channels_last: bool = True,
        fused_adam: bool = True,
        compile: bool = False,
        pca_weight: float = 0.0,
        pca_head: bool = False,
        pca_components: int = 32,
        pca_centred: bool = False,
        architecture: str = "context_encoder",
        depth: int = 5,
        mask: dict | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_model(dict(self.hparams), image_size)  # the checks train.py runs on the config, for Python callers too
        self.automatic_optimization = False
        self.set_step_options()
        if architecture == "unet":
            self.generator = PartialConvUNet(image_size, bias_free, base_channels, depth, bn_momentum)
            self.discriminator = None
        else:
            basis = pca_components if pca_weight > 0 or pca_head else 0
            self.generator = ContextEncoder(mask_size, bias_free, image_size, base_channels, bottleneck, overlap,
                                            dense_bottleneck, bn_momentum, basis, pca_head, pca_centred)
            self.discriminator = Discriminator(mask_size, base_channels) if adv_weight > 0 else None
        self.centre = CenterMask(image_size, mask_size, overlap) if mask_size is not None else None
        if channels_last:
            self.to(memory_format=torch.channels_last)
        self._compiled: dict[str, torch.nn.Module] = {}  # a plain dict: not submodules, so not in checkpoints
        if self.centre is not None:
            self.register_buffer("loss_weights", self.centre.loss_weights(ring_weight), persistent=False)
            known = torch.ones(1, 1, image_size, image_size)
            known[..., self.centre.hole, self.centre.hole] = 0
            self.register_buffer("centre_known", known, persistent=False)
        psnr = PeakSignalNoiseRatio(data_range=1.0, reduction="elementwise_mean", dim=(1, 2, 3))
        evaluation = MetricCollection({"psnr": psnr, "ssim": StructuralSimilarityIndexMeasure(data_range=1.0)})
        # Training logs PSNR only: SSIM would cost 0.11 s a step at batch 64 on CPU (10 % of a paper-width step).
        self.metrics = torch.nn.ModuleDict(
            {
                "train_": MetricCollection({"psnr": psnr.clone()}, prefix="train/"),
                "val_": evaluation.clone(prefix="val/"),
                "holdout_": evaluation.clone(prefix="holdout/"),
            }
        )

    @property
    def mask(self) -> CenterMask | None:
        """The centred square (the Context Encoder's, or the U-Net's default hole); None for random holes."""
        return self.centre

    @property
    def is_unet(self) -> bool:
        return self.hparams.architecture == "unet"

    def setup(self, stage: str) -> None:
        """Under ``Trainer(sync_batchnorm=True)`` with several processes, synchronise the bias-free
        batch norms too: Lightning converts only torch's batch norms and would leave ours local."""
        trainer = self.trainer
        # the strategy holds the trainer's layer-sync plugin (torch's SyncBatchNorm) when one was asked for
        sync = getattr(trainer.strategy, "_layer_sync", None) is not None and trainer.world_size > 1
        torch_norms = any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) for m in self.modules())
        if sync and torch_norms and trainer.strategy.root_device.type == "cpu":
            raise InpaintError(
                "trainer.sync_batchnorm=true on CPUs: torch's SyncBatchNorm, which Lightning puts in place of the "
                "critic's batch norm (and model=original's), runs on GPUs only. On CPUs set "
                "trainer.sync_batchnorm=false, or train without a critic (model=bias_free model.adv_weight=0)."
            )
        for layer in self.modules():
            if isinstance(layer, BiasFreeBatchNorm):
                layer.sync = sync
        if self.hparams.compile and not self._compiled:
            self._compiled = {"generator": torch.compile(self.generator)}
            if self.discriminator is not None:
                self._compiled["discriminator"] = torch.compile(self.discriminator)

    def on_fit_start(self) -> None:
        """Fit the PCA basis, if the model has one and no checkpoint brought it: on rank zero, over
        the training originals' m x m luma crops (the analyses' PCA), then broadcast, so that every
        process trains with the same components. Every rank checks first that there are enough
        crops, so that none waits on a rank-zero failure."""
        basis = getattr(self.generator, "basis", None)  # the U-Net has none
        if basis is None or basis.ready:
            return
        trainer = self.trainer
        loader = getattr(trainer.datamodule, "pca_loader", None)
        if loader is None:
            raise InpaintError("the PCA basis is fitted on the training set through the data module's pca_loader(): train with an inpaint data module.")
        loader = loader()
        if len(loader.dataset) <= basis.k:
            raise InpaintError(
                f"model.pca_components={basis.k} needs more than {basis.k} training images to fit them on, "
                f"the training set has {len(loader.dataset)}: lower model.pca_components or train on more images."
            )
        fitted = None
        if trainer.is_global_zero:
            start = time.perf_counter()
            accumulator = CovarianceAccumulator(basis.mask_size**2, self.device)
            for batch in loader:
                accumulator.update(crop_vectors(to_float(batch.to(self.device)), self.mask))
            pca = accumulator.finish()
            components = pca.components(basis.k)
            share = pca.eigenvalues[: basis.k].sum().item() / max(pca.total_variance, 1e-300)
            log.info("PCA basis: top %d of %d components of %d training crops (%d x %d luma), %.1f%% of their variance, in %.1f s",
                     basis.k, pca.rank, pca.count, basis.mask_size, basis.mask_size, 100 * share, time.perf_counter() - start)
            fitted = (components.float().cpu(), pca.mean.float().cpu(), pca.count)
        components, mean, count = trainer.strategy.broadcast(fitted, src=0)
        basis.set(components.to(self.device), mean.to(self.device), count)
        if trainer.world_size > 1:  # each process's log says which basis it holds
            digest = hashlib.sha256(components.numpy().tobytes()).hexdigest()[:16]
            log.info("PCA basis on rank %d: sha256 %s of its %d x %d components", trainer.global_rank, digest, *components.shape)

    def _run(self, network: str, *inputs: torch.Tensor) -> torch.Tensor:
        """``network``'s forward as the steps call it: compiled under ``compile=True``."""
        return self._compiled.get(network, getattr(self, network))(*inputs)

    def known_of(self, images: torch.Tensor, known: torch.Tensor | None) -> torch.Tensor:
        """A batch's ``known`` ``[N, 1, S, S]`` (1 = known pixel): its own, or the centred square's."""
        if known is not None:
            return known
        if self.centre is None:
            raise InpaintError("this model was trained on random holes: give each image's hole (known = 0 on it).")
        return self.centre_known.expand(len(images), -1, -1, -1)

    def forward(self, images: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] -> the same images with the hole (``known`` == 0, default the centred
        square) inpainted."""
        if not self.is_unet:
            return self.generator.inpaint(images)
        known = self.known_of(images, known)
        with torch.no_grad():
            return self.generator.to_image(self.generator(self.generator.mask_input(images, known), known)).to(images.dtype)

    def shared_step(self, batch: Batch, stage: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Predict the hole, log hole metrics; return (prediction, target, weighted L2, energy
        outside the PCA basis or None without one)."""
        images, known = split_batch(batch)
        if self.is_unet:
            return self._unet_step(images, known, stage)
        g = self.generator
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        prediction = self._run("generator", g.mask_input(images))
        target = g.from_image(self.mask.crop(images))
        l2 = ((prediction.float() - target) ** 2 * self.loss_weights).mean()
        inner = self.mask.inner
        hole_pred = g.to_image(prediction.detach().float())[..., inner, inner]
        with torch.autocast(images.device.type, enabled=False):  # SSIM's variances cancel badly in bf16
            self.metrics[f"{stage}_"](hole_pred, self.mask.hole_of(images).float())
        self.log(f"{stage}/l2", l2.detach(), prog_bar=stage != "train", sync_dist=stage != "train", batch_size=len(images))
        self.log_dict(self.metrics[f"{stage}_"], prog_bar=stage != "train", on_step=False, on_epoch=True, batch_size=len(images))
        outside = None
        if g.basis is not None:
            outside = g.basis.outside(prediction)
            self.log(f"{stage}/pca_outside", outside.detach(), sync_dist=stage != "train", batch_size=len(images))
        return prediction, target, l2, outside

    def _unet_step(self, images: torch.Tensor, known: torch.Tensor | None, stage: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, None]:
        """The U-Net's step: the whole image out, known pixels pasted back, so the L2 is the mean over
        the hole's pixels (and channels) of each batch. On the centred square the metrics are the
        Context Encoder's (hole crop); on random holes PSNR over each image's hole pixels and SSIM
        over the whole inpainted image."""
        g = self.generator
        known = self.known_of(images, known)
        known = known[:1] if known.stride(0) == 0 else known  # one centred square for the batch: its mask arithmetic once
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        prediction = self._run("generator", g.mask_input(images, known), known)
        target = g.from_image(images)
        hole = 1 - known
        error = prediction.float() - target
        l2 = (error.square() * spread(hole, error)).sum() / (3 * hole.expand(len(images), -1, -1, -1).sum()).clamp(min=1)
        inpainted = g.to_image(prediction.detach().float())
        n = len(images)
        with torch.autocast(images.device.type, enabled=False):
            if self.hparams.mask is None or self.hparams.mask.get("kind", "center") == "center":
                hole_slice = self.centre.hole
                self.metrics[f"{stage}_"](inpainted[..., hole_slice, hole_slice], images[..., hole_slice, hole_slice].float())
                self.log_dict(self.metrics[f"{stage}_"], prog_bar=stage != "train", on_step=False, on_epoch=True, batch_size=n)
            else:
                error = ((inpainted - images.float()) ** 2 * hole).sum((1, 2, 3)) / (3 * hole.sum((1, 2, 3))).clamp(min=1)
                psnr = (-10 * torch.log10(error.clamp(min=1e-10))).mean()
                self.log(f"{stage}/psnr", psnr, prog_bar=stage != "train", on_step=False, on_epoch=True, sync_dist=stage != "train", batch_size=n)
                if stage != "train":
                    ssim = self.metrics[f"{stage}_"]["ssim"]
                    ssim(inpainted, images.float())
                    self.log(f"{stage}/ssim", ssim, prog_bar=True, on_step=False, on_epoch=True, batch_size=n)
        self.log(f"{stage}/l2", l2.detach(), prog_bar=stage != "train", sync_dist=stage != "train", batch_size=n)
        return prediction, target, l2, None

    def set_step_options(self, gradient_clip_val: float | None = None, gradient_clip_algorithm: str | None = None,
                         accumulate_grad_batches: int = 1) -> None:
        """The trainer's clipping and accumulation, applied to both optimisers. This module steps its
        optimisers itself (manual optimisation), where Lightning refuses these Trainer arguments, so
        train.py hands them here instead."""
        self.gradient_clip_val = gradient_clip_val or None
        self.gradient_clip_algorithm = gradient_clip_algorithm or "norm"
        self.accumulate_grad_batches = accumulate_grad_batches

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        prediction, target, l2, outside = self.shared_step(batch, "train")
        # with accumulation, each batch adds 1/N of its gradient and the optimisers step every N batches
        accumulate = self.accumulate_grad_batches
        step = (batch_idx + 1) % accumulate == 0 or self.trainer.is_last_batch
        g_loss = l2
        if self.discriminator is not None:
            opt_g, opt_d = self.optimizers()
            d_loss = self._critic_loss(target, prediction.detach())
            self._check_finite(d_loss, "critic")
            self.manual_backward(d_loss / accumulate)
            if step:
                opt_d.step()
                opt_d.zero_grad(set_to_none=True)
            self.discriminator.requires_grad_(False)  # its gradients here would be thrown away
            fooled = self._run("discriminator", prediction)
            self.discriminator.requires_grad_(True)
            adv = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
            g_loss = (1 - self.hparams.adv_weight) * l2 + self.hparams.adv_weight * adv
            self.log_dict({"train/d_loss": d_loss.detach(), "train/adv": adv.detach()}, batch_size=len(prediction))
        else:
            opt_g = self.optimizers()
        if self.hparams.pca_weight > 0:
            g_loss = g_loss + self.hparams.pca_weight * outside
        self._check_finite(g_loss, "generator")
        self.manual_backward(g_loss / accumulate)
        if step:
            opt_g.step()
            opt_g.zero_grad(set_to_none=True)
            for scheduler in self.schedulers():
                scheduler.step()
        self.log("train/g_loss", g_loss.detach(), prog_bar=True, batch_size=len(prediction))

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip here, where Lightning has unscaled 16-mixed gradients, just before the step."""
        if self.gradient_clip_val:
            self.clip_gradients(optimizer, self.gradient_clip_val, self.gradient_clip_algorithm)

    def _check_finite(self, loss: torch.Tensor, network: str) -> None:
        """Stop before a non-finite loss reaches the weights (one host sync a step)."""
        if not torch.isfinite(loss):
            precision = self.trainer.precision if self._trainer is not None else "?"
            raise InpaintError(
                f"the {network}'s loss is {loss.item()} at step {self.global_step} (precision {precision}): training "
                f"diverged. Likely causes: a learning rate too high (model.lr_g={self.hparams.lr_g}, "
                f"model.lr_d={self.hparams.lr_d}), 16-bit overflow "
                f"(use trainer.precision=32-true or bf16-mixed), or images that are not finite. Resume an earlier "
                f"checkpoint with a lower learning rate."
            )

    def _critic_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """BCE of the critic: real centres labelled 1, predictions 0 (separate batches, as Pathak)."""
        real_logits, fake_logits = self._run("discriminator", real), self._run("discriminator", fake)
        return F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits)) + F.binary_cross_entropy_with_logits(
            fake_logits, torch.zeros_like(fake_logits)
        )

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.shared_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self.shared_step(batch, "holdout")

    def schedulers(self) -> list[torch.optim.lr_scheduler.LRScheduler]:
        """The learning-rate schedulers as a list (Lightning gives one bare, several as a list)."""
        schedulers = self.lr_schedulers()
        return [] if schedulers is None else schedulers if isinstance(schedulers, list) else [schedulers]

    def configure_optimizers(self):
        hp = self.hparams
        betas = (hp.beta1, hp.beta2)
        fused = True if hp.fused_adam else None  # None: PyTorch's default implementation for the device
        optimizers = [torch.optim.Adam(self.generator.parameters(), lr=hp.lr_g, betas=betas, fused=fused)]
        if self.discriminator is not None:
            optimizers.append(torch.optim.Adam(self.discriminator.parameters(), lr=hp.lr_d, betas=betas, fused=fused))
        if hp.lr_schedule == "constant":
            return optimizers
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(hp.warmup_fraction * total)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        return optimizers, [torch.optim.lr_scheduler.LambdaLR(optimizer, factor) for optimizer in optimizers]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> InpaintingModule:
    """An :class:`InpaintingModule` from a checkpoint of this project, in eval mode, or one clear
    :class:`InpaintError` for a missing file, a file that is not a checkpoint, someone else's, or one
    holding anything but tensors and plain data (read as data: :func:`inpaint.checkpoint.read_model_checkpoint`)."""
    return module_from_checkpoint(read_model_checkpoint(path, map_location), path, map_location)


def module_from_checkpoint(checkpoint: dict, path: str | Path, map_location: str | torch.device = "cpu") -> InpaintingModule:
    """The :class:`InpaintingModule` of a checkpoint already read (:func:`~inpaint.checkpoint.read_model_checkpoint`),
    in eval mode on ``map_location``; ``path`` names it in the error when it does not match this version."""
    try:
        model = InpaintingModule(**checkpoint["hyper_parameters"])
        model.load_state_dict(checkpoint["state_dict"])
    except (TypeError, RuntimeError) as error:
        raise InpaintError(f"checkpoint '{path}' does not match this version's InpaintingModule: {error}") from error
    return model.to(map_location).eval()
