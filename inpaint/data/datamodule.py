"""The shared LightningDataModule: train / val / holdout splits of plain uint8 images.

Data sets return ``uint8`` tensors ``[3, S, S]``: a quarter of the bytes of float through worker
pipes and host-to-device copies. Conversion to float in [0, 1] and the random horizontal flip
happen on the device, batched, in :meth:`ImageDataModule.on_after_batch_transfer`. Masks are not
the data's business: the LightningModule applies them.
"""

from __future__ import annotations

import os
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

Split = Literal["train", "val", "holdout"]


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, 3, S, S]`` -> float32 in [0, 1] (float input passes through)."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images


class EpochSampler(Sampler):
    """The training order for data sets whose items change every epoch (random crops): a
    permutation of ``range(length)`` drawn from ``(seed, epoch)``, yielded as ``(epoch, index)``
    pairs, so epoch e's order and items are a pure function of (seed, e) in any worker process.
    Lightning calls :meth:`set_epoch` before every training epoch (through its
    ``DistributedSamplerWrapper`` under DDP, which then shards the pairs across ranks)."""

    def __init__(self, length: int, seed: int) -> None:
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.length)
        return ((self.epoch, int(i)) for i in order)


class ImageDataModule(L.LightningDataModule):
    """Base class: subclasses implement :meth:`make_split`; this class does loaders and flips.

    ``batch_size`` is per device (under DDP the global batch is ``batch_size * world_size``).
    ``num_workers`` and ``pin_memory`` default (None) to what the trainer's device wants: on a GPU,
    pinned memory and loader workers sharing the process's CPUs among its devices; on a CPU, no
    workers (they would take cores from the training step) and no pinning.
    The holdout split is what the analyses run on; ``test_dataloader`` serves it too, so
    ``trainer.test`` reports holdout metrics. A training set with ``by_epoch = True`` (and a
    ``seed``) is drawn through :class:`EpochSampler`: its items are ``(epoch, index)`` pairs.
    """

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int | None = None,
        image_size: int = 128,
        flip: bool = True,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.image_size = image_size
        self.flip = flip
        self.pin_memory = pin_memory
        self._splits: dict[str, Dataset] = {}

    def make_split(self, split: Split) -> Dataset:
        """Return the data set of one split; items are uint8 tensors [3, image_size, image_size]."""
        raise NotImplementedError

    def split(self, split: Split) -> Dataset:
        """The data set of one split, built once."""
        if split not in self._splits:
            self._splits[split] = self.make_split(split)
        return self._splits[split]

    def setup(self, stage: str | None = None) -> None:
        wanted: tuple[Split, ...] = {
            "fit": ("train", "val"), "validate": ("val",), "test": ("holdout",), "predict": ("holdout",)
        }.get(stage, ("train", "val", "holdout"))
        for name in wanted:
            self.split(name)

    def loader_settings(self) -> tuple[int, bool]:
        """(num_workers, pin_memory): the configured values, or the defaults for the trainer's device."""
        trainer = self.trainer
        on_gpu = trainer is not None and trainer.strategy.root_device.type == "cuda"
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = min(8, max(1, cpus // max(1, trainer.num_devices))) if on_gpu else 0
        return (
            workers if self.num_workers is None else self.num_workers,
            on_gpu if self.pin_memory is None else self.pin_memory,
        )

    def _loader(self, split: Split, train: bool = False) -> DataLoader:
        workers, pin = self.loader_settings()
        dataset = self.split(split)
        sampler = EpochSampler(len(dataset), dataset.seed) if train and getattr(dataset, "by_epoch", False) else None
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=train,  # a last batch of one would break batch norm
            num_workers=workers,
            pin_memory=pin,
            persistent_workers=workers > 0,
        )

    def pca_loader(self) -> DataLoader:
        """The training images once, in a fixed order and unflipped (epoch 0's items for a data set
        drawn by epoch): what the model's PCA basis is fitted on when fitting starts."""
        workers, pin = self.loader_settings()
        dataset = self.split("train")
        sampler = EpochSampler(len(dataset), dataset.seed) if getattr(dataset, "by_epoch", False) else None
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, num_workers=workers, pin_memory=pin)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def holdout_dataloader(self) -> DataLoader:
        return self._loader("holdout")

    test_dataloader = holdout_dataloader

    def on_after_batch_transfer(self, batch: torch.Tensor, dataloader_idx: int) -> torch.Tensor:
        images = to_float(batch)
        if self.flip and self.trainer is not None and self.trainer.training:
            flip = torch.rand(images.shape[0], 1, 1, 1, device=images.device) < 0.5
            images = torch.where(flip, images.flip(-1), images)
        return images
