"""Training-time callbacks that show what the model does."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from inpaint.data.datamodule import split_batch
from inpaint.images import grid, log_image, save_png
from inpaint.module import InpaintingModule


class SampleGrid(L.Callback):
    """After each validation epoch: masked input / inpainted / original for the first val images.

    Logged to every image-capable logger as ``samples/val`` and written to
    ``RUN_DIR/samples/epoch_NNN.png`` so runs without W&B or TensorBoard show it too.
    """

    def __init__(self, num_images: int = 8) -> None:
        self.num_images = num_images
        self._images: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0:
            images, known = split_batch(batch)
            self._images = (images[: self.num_images], None if known is None else known[: self.num_images])

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: InpaintingModule) -> None:
        if self._images is None or trainer.sanity_checking:
            return
        (images, known), g = self._images, pl_module.generator
        known = pl_module.known_of(images, known)
        masked = g.to_image(g.mask_input(images, known))
        picture = grid([masked, pl_module(images, known), images])
        step = trainer.global_step
        log_image(trainer.loggers, "samples/val", picture, step, "masked input / inpainted / original")
        save_png(picture, Path(trainer.default_root_dir) / "samples" / f"epoch_{trainer.current_epoch:03d}.png")
        self._images = None
