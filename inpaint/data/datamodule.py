"""The shared LightningDataModule: train / val / holdout splits of plain uint8 images.

Data sets return ``uint8`` tensors ``[3, S, S]``: a quarter of the bytes of float through worker
pipes and host-to-device copies. Conversion to float in [0, 1] and the random horizontal flip
happen on the device, batched, in :meth:`ImageDataModule.on_after_batch_transfer`. The centred
square needs nothing from the data (the LightningModule applies it). Random holes (``mask`` of kind
random_block or freeform) are drawn per item by :class:`Holed`, in the loader's workers, and batches
become ``(images, known)`` pairs: a training item's hole is a pure function of (train seed, epoch,
index), so it changes every epoch and differs across DDP ranks (which get different indices), while
the val and holdout holes are keyed by (split, index) alone: the same in every run.

Two seeds: a data set's own ``seed`` (``data.seed``, for the built-in faces and photographs) says
which images make up the splits; ``train_seed`` (the run's ``seed``) draws everything random about
training on them: the order, the training holes, and per-epoch crops or patches (train.py also
seeds torch with it: the model's initialisation, flips, the shuffle of the other training sets).
Runs that differ only in it are trained and measured on the same val and holdout images.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from inpaint.errors import InpaintError
from inpaint.masks import hole_sampler_from

Split = Literal["train", "val", "holdout"]
Batch = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

# The first entry of a val / holdout hole's key: apart from every training key (seed, epoch, index).
FIXED_HOLES = {"val": 1_000_003, "holdout": 1_000_033}


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, 3, S, S]`` -> float32 in [0, 1] (float input passes through)."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images


def split_batch(batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(images, known) of a batch: ``known`` ``[N, 1, S, S]`` float (1 = known pixel) for a batch of
    random holes, None for plain images (the centred square, which the model knows)."""
    if isinstance(batch, (tuple, list)):
        images, known = batch
        return to_float(images), known.to(torch.float32)
    return to_float(batch), None


class Holed(Dataset):
    """Items of ``images`` with their random holes: ``(uint8 [3, S, S], uint8 known [1, S, S])``.

    Training items are ``(epoch, index)`` pairs (:class:`EpochSampler`) and their hole is drawn from
    the key ``(seed, epoch, index)``; val and holdout items are indices, their hole keyed by
    ``(FIXED_HOLES[split], index, 1)``. Either way a hole depends on its key alone, in any process."""

    def __init__(self, images: Dataset, holes, split: Split, seed: int) -> None:
        self.images, self.holes, self.split, self.seed = images, holes, split, seed
        self.by_epoch = split == "train"

    def __len__(self) -> int:
        return len(self.images)

    def key(self, item: int | tuple[int, int]) -> tuple[int, ...]:
        """The hole's key of an item."""
        if self.by_epoch:
            epoch, index = item
            return (self.seed, epoch, index)
        return (FIXED_HOLES[self.split], item, 1)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = item[1] if self.by_epoch else item
        image = self.images[item if getattr(self.images, "by_epoch", False) else index]
        known = ~self.holes.hole(*self.key(item))
        return image, torch.from_numpy(known[None].astype(np.uint8))


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


SAMPLED = 64  # training images check_trainable looks at: enough to see variety, a blink to decode


def check_trainable(dataset: Dataset) -> None:
    """Refuse training images that cannot teach anything, before the fit: the first SAMPLED items,
    as the data set serves them (random crops included), all the same, or each of one colour (then
    batch norm's variance is zero, and the first loss would be NaN, which reads as a learning rate
    too high)."""
    count = min(len(dataset), SAMPLED)
    if count < 2:
        return
    keys = [(0, i) for i in range(count)] if getattr(dataset, "by_epoch", False) else range(count)
    images = torch.stack([dataset[key] for key in keys]).float()
    if (images.flatten(2).amax(2) == images.flatten(2).amin(2)).all():
        raise InpaintError(f"the first {count} training images are each a single colour: there is nothing to inpaint from "
                           "(and batch norm would divide by a zero variance). Check the data (data.root, or its settings).")
    if (images == images[:1]).all():
        raise InpaintError(f"the first {count} training images are all the same image: there is nothing to learn beyond it. "
                           "Check the data (data.root, or its settings).")


class ImageDataModule(L.LightningDataModule):
    """Base class: subclasses implement :meth:`make_split`; this class does loaders and flips.

    ``batch_size`` is per device (under DDP the global batch is ``batch_size * world_size``).
    ``num_workers`` and ``pin_memory`` default (None) to what the trainer's device wants: on a GPU,
    pinned memory and loader workers sharing the process's CPUs among its devices; on a CPU, no
    workers (they would take cores from the training step) and no pinning.
    The holdout split is what the analyses run on; ``test_dataloader`` serves it too, so
    ``trainer.test`` reports holdout metrics. A training set with ``by_epoch = True`` is drawn
    through :class:`EpochSampler`, its items ``(epoch, index)`` pairs; other training sets are
    shuffled by torch's generator (which train.py seeds with the run's seed, as it does the flips).
    ``train_seed`` (the run's seed) draws the rest of the training randomness: the EpochSampler's
    order, per-epoch crops or patches (subclasses pass it to their training set) and, for a random
    ``mask`` kind (the mask group's settings), the training holes; every split is then served with
    its holes (:class:`Holed`). Which images make up the splits never depends on it: that is the
    subclass's own ``seed`` (``data.seed``), if it has one.
    """

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int | None = None,
        image_size: int = 128,
        flip: bool = True,
        pin_memory: bool | None = None,
        mask: Mapping | None = None,
        train_seed: int = 0,
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.image_size = image_size
        self.flip = flip
        self.pin_memory = pin_memory
        self.holes = hole_sampler_from(mask, image_size)  # None: the centred square, nothing per item
        self.train_seed = train_seed
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
        if stage == "fit":
            check_trainable(self.split("train"))

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

    def served(self, split: Split) -> Dataset:
        """The split as its loader serves it: with its holes when the mask is random."""
        dataset = self.split(split)
        return dataset if self.holes is None else Holed(dataset, self.holes, split, self.train_seed)

    def _loader(self, split: Split, train: bool = False) -> DataLoader:
        workers, pin = self.loader_settings()
        dataset = self.served(split)
        by_epoch = train and getattr(dataset, "by_epoch", False)
        sampler = EpochSampler(len(dataset), self.train_seed) if by_epoch else None
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
        sampler = EpochSampler(len(dataset), self.train_seed) if getattr(dataset, "by_epoch", False) else None
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, num_workers=workers, pin_memory=pin)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def holdout_dataloader(self) -> DataLoader:
        return self._loader("holdout")

    test_dataloader = holdout_dataloader

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        """Float images in [0, 1], training images flipped at random; a hole stays as drawn (it is
        random already), so a key's hole is the hole the network sees."""
        images, known = split_batch(batch)
        if self.flip and self.trainer is not None and self.trainer.training:
            flip = torch.rand(images.shape[0], 1, 1, 1, device=images.device) < 0.5
            images = torch.where(flip, images.flip(-1), images)
        return images if known is None else (images, known)
