"""CelebA ("Align&Cropped Images") from disk, with the official train / valid / test partition.

Expected layout (torchvision's, the same files under ``ROOT/celeba/``, is accepted too)::

    ROOT/img_align_celeba/000001.jpg ... 202599.jpg    (178 wide x 218 high)
    ROOT/list_eval_partition.txt                        lines "000001.jpg 0": 0 train, 1 valid, 2 test

The layout and the partition are checked when the data module is built, before any image is
decoded, so a wrong ``root`` fails at once rather than after a model has been built.

With ``cache_dir`` set, each split is decoded, cropped and resized once into a uint8 ``.npy``
memory map there (``prepare_data`` builds it, on one process per node), and every later epoch and
run reads pixels straight from it: no JPEG decoding on the training path.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from inpaint.data.datamodule import ImageDataModule, Split
from inpaint.errors import InpaintError

IMAGES = "img_align_celeba"
PARTITION = "list_eval_partition.txt"
SPLIT_NAMES = {"0": "train", "1": "valid", "2": "test"}


class CelebADataset(Dataset):
    """CelebA images as uint8 ``[3, S, S]``: the centred square (rows 20..197 of a 178x218 image),
    resized with Pillow's BICUBIC filter, which Pillow antialiases when downscaling (its support
    widens by the scale factor, 178/128), the usual CelebA practice."""

    def __init__(self, files: list[Path], image_size: int = 128) -> None:
        self.files = files
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        path = self.files[i]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except (OSError, SyntaxError, ValueError) as error:
            raise InpaintError(
                f"Cannot read CelebA image '{path}' ({error}). The file is corrupt or truncated: "
                f"re-extract img_align_celeba.zip or replace this file."
            ) from error
        w, h = image.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
        image = image.resize((self.image_size, self.image_size), Image.BICUBIC)
        return torch.from_numpy(np.asarray(image).transpose(2, 0, 1).copy())


class CachedImages(Dataset):
    """Decoded images, uint8 ``[3, S, S]`` each, from a ``.npy`` memory map ``[N, 3, S, S]``
    (opened lazily, so every DataLoader worker maps the file itself)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.length = int(np.load(path, mmap_mode="r").shape[0])
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> torch.Tensor:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return torch.from_numpy(np.array(self._array[i]))


def build_cache(dataset: CelebADataset, path: Path) -> Path:
    """Decode every image of ``dataset`` once into ``path``. Written to a temporary file and renamed
    when complete, so an interrupted build never leaves a half-written cache behind."""
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npy")
    size = dataset.image_size
    try:
        array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(len(dataset), 3, size, size))
        for i in range(len(dataset)):
            array[i] = dataset[i].numpy()
        array.flush()
        del array
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _layout(root: Path) -> str:
    return (
        f"expected {root}/{IMAGES}/000001.jpg ... 202599.jpg and {root}/{PARTITION} "
        f"(or the same under {root}/celeba/, torchvision's layout). Download CelebA's "
        f"'Align&Cropped Images' (img_align_celeba.zip) and 'Eval/{PARTITION}' and extract "
        f"them there, or set data.root=PATH to where they are."
    )


def find_celeba(root: str | Path) -> Path:
    """The directory holding ``img_align_celeba/`` and the partition file: ROOT or ROOT/celeba."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InpaintError(f"CelebA root '{root}' does not exist: {_layout(root)}")
    for base in (root, root / "celeba"):
        if (base / IMAGES).is_dir() and (base / PARTITION).is_file():
            return base
    missing = [str(p) for p in (root / IMAGES, root / PARTITION) if not p.exists()]
    raise InpaintError(f"CelebA not found at '{root}' (missing {' and '.join(missing)}): {_layout(root)}")


def read_partition(base: Path) -> dict[str, list[str]]:
    """File names per official split ("0", "1", "2"), sorted, each checked to exist on disk."""
    path = base / PARTITION
    splits: dict[str, list[str]] = {"0": [], "1": [], "2": []}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or fields[1] not in splits:
            raise InpaintError(
                f"{path} line {number} is malformed: {line!r}; expected '<image>.jpg <0|1|2>' as in "
                f"CelebA's list_eval_partition.txt. Replace the file with the original: {_layout(base)}"
            )
        splits[fields[1]].append(fields[0])
    on_disk = set(os.listdir(base / IMAGES))
    listed = [name for names in splits.values() for name in names]
    missing = sorted(set(listed) - on_disk)
    if missing:
        raise InpaintError(
            f"{len(missing)} of the {len(listed)} images listed in {path} are missing from "
            f"{base / IMAGES}/ (first: {', '.join(missing[:5])}). Re-extract img_align_celeba.zip "
            f"so the .jpg files sit directly in that folder: {_layout(base)}"
        )
    for split_id, names in splits.items():
        if not names:
            raise InpaintError(
                f"{path} lists no images of the {SPLIT_NAMES[split_id]} split ({split_id}): "
                f"use the original partition file. {_layout(base)}"
            )
        names.sort()
    return splits


def _first(names: list[str], size: int | None, what: str, split: str) -> list[str]:
    if size is None:
        return names
    if not 1 <= size <= len(names):
        raise InpaintError(
            f"{what}={size} but CelebA's {split} split has {len(names)} images: "
            f"choose 1 <= {what} <= {len(names)}."
        )
    return names[:size]


class CelebADataModule(ImageDataModule):
    """CelebA's official splits: train = 0 (optionally the first ``train_size``; the authors used
    the first 100,000), val = 1 (optionally the first ``val_size``), holdout = the first
    ``holdout_size`` images of test = 2. Each split is sorted by file name. ``cache_dir``: where
    the decoded uint8 caches live (None decodes the JPEGs every time)."""

    def __init__(
        self,
        root: str,
        holdout_size: int = 1000,
        val_size: int | None = None,
        train_size: int | None = None,
        cache_dir: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        self.base = find_celeba(root)
        splits = read_partition(self.base)
        self.names: dict[str, list[str]] = {
            "train": _first(splits["0"], train_size, "train_size", "train"),
            "val": _first(splits["1"], val_size, "val_size", "valid"),
            "holdout": _first(splits["2"], holdout_size, "holdout_size", "test"),
        }

    def decoder(self, split: Split) -> CelebADataset:
        """The split read from its JPEG files."""
        return CelebADataset([self.base / IMAGES / name for name in self.names[split]], self.image_size)

    def cache_path(self, split: Split) -> Path | None:
        """The split's cache file, named by a hash of its images and size (None without a cache)."""
        if self.cache_dir is None:
            return None
        key = hashlib.sha1(f"{self.base.resolve()}|{self.image_size}|{','.join(self.names[split])}".encode()).hexdigest()
        return self.cache_dir / f"celeba_{split}_{self.image_size}px_{len(self.names[split])}_{key[:12]}.npy"

    def prepare_data(self) -> None:
        """Build the decode caches (Lightning runs this on one process per node, before setup)."""
        for split in ("train", "val", "holdout"):
            if self.cache_dir is not None:
                build_cache(self.decoder(split), self.cache_path(split))

    def make_split(self, split: Split) -> Dataset:
        path = self.cache_path(split)
        if path is None:
            return self.decoder(split)
        return CachedImages(build_cache(self.decoder(split), path))
