"""CelebA ("Align&Cropped Images") from disk, with the official train / valid / test partition.

Accepted layouts, under ``ROOT`` or ``ROOT/celeba`` (torchvision's)::

    ROOT/img_align_celeba/000001.jpg ... 202599.jpg    (178 wide x 218 high)
    ROOT/list_eval_partition.txt                        lines "000001.jpg 0": 0 train, 1 valid, 2 test

or the Kaggle archive as it unpacks (its other CSV files are ignored)::

    ROOT/img_align_celeba/img_align_celeba/000001.jpg ... 202599.jpg
    ROOT/list_eval_partition.csv                        header "image_id,partition", lines "000001.jpg,0"

Either image folder goes with either partition file. The layout and the partition are checked
when the data module is built, before any image is decoded, so a wrong ``root`` fails at once
rather than after a model has been built.

The holdout is the first ``holdout_size`` images of the test split, or (``holdout="authors"``)
the paper's: images 120000.jpg ... 120999.jpg of the train split, then left out of training.

With ``cache_dir`` set, each split is decoded, cropped and resized once into a memory-mapped
cache there (:mod:`inpaint.data.cache`) (``prepare_data`` builds it, on one process per node), and every later epoch and
run reads pixels straight from it: no JPEG decoding on the training path.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from inpaint.data.cache import CachedImages, ImageCache, build_cache
from inpaint.data.datamodule import ImageDataModule, Split
from inpaint.errors import InpaintError

IMAGES = "img_align_celeba"
PARTITION = "list_eval_partition.txt"
PARTITION_CSV = "list_eval_partition.csv"
CSV_HEADER = "image_id,partition"
SPLIT_NAMES = {"0": "train", "1": "valid", "2": "test"}
# the paper's holdout: 1000 images of the official train split, never trained on
AUTHORS_HOLDOUT = tuple(f"{i:06d}.jpg" for i in range(120000, 121000))
Holdout = Literal["test", "authors"]


class CelebALayout(NamedTuple):
    """Where one CelebA copy lies: the ``data.root`` given, its image folder and partition file."""

    root: Path
    images: Path
    partition: Path


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


def _layout(root: Path) -> str:
    return (
        f"expected {root}/{IMAGES}/000001.jpg ... 202599.jpg and {root}/{PARTITION} (CelebA's own files), "
        f"or {root}/{IMAGES}/{IMAGES}/000001.jpg ... and {root}/{PARTITION_CSV} (the Kaggle archive), "
        f"or either under {root}/celeba/ (torchvision's layout). Download CelebA's 'Align&Cropped Images' "
        f"(img_align_celeba.zip) and 'Eval/{PARTITION}', or the Kaggle archive, and extract them there, "
        f"or set data.root=PATH to where they are."
    )


def _images_dir(base: Path) -> Path | None:
    """The folder of JPEGs under ``base``: Kaggle's nested one when present, else the flat one."""
    for folder in (base / IMAGES / IMAGES, base / IMAGES):
        if folder.is_dir():
            return folder
    return None


def _partition_file(base: Path) -> Path | None:
    """The partition file under ``base``: the original .txt when present, else Kaggle's .csv."""
    for path in (base / PARTITION, base / PARTITION_CSV):
        if path.is_file():
            return path
    return None


def find_celeba(root: str | Path) -> CelebALayout:
    """The image folder and partition file of the first accepted layout (see the module docstring)
    under ROOT, then ROOT/celeba; both must sit under the same one."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InpaintError(f"CelebA root '{root}' does not exist: {_layout(root)}")
    found = {base: (_images_dir(base), _partition_file(base)) for base in (root, root / "celeba")}
    for base, (images, partition) in found.items():
        if images is not None and partition is not None:
            return CelebALayout(root, images, partition)
    # name what is missing where half a layout is (ROOT first), else under ROOT
    base = next((b for b, pair in found.items() if pair != (None, None)), root)
    images, partition = found[base]
    missing = ([f"{base / IMAGES}/"] if images is None else []) + (
        [f"{base / PARTITION} or {base / PARTITION_CSV}"] if partition is None else []
    )
    raise InpaintError(f"CelebA not found at '{root}' (missing {' and '.join(missing)}): {_layout(root)}")


def read_partition(layout: CelebALayout) -> dict[str, list[str]]:
    """File names per official split ("0", "1", "2"), sorted, each listed once and checked to exist
    on disk. The .csv's first line must be Kaggle's header ``image_id,partition``."""
    path, csv = layout.partition, layout.partition.suffix == ".csv"
    sep, source = (",", f"Kaggle's {PARTITION_CSV}") if csv else (" ", f"CelebA's {PARTITION}")
    lines = path.read_text(encoding="utf-8-sig").splitlines()  # utf-8-sig: a byte-order mark is dropped
    if csv and (not lines or lines[0].replace(" ", "") != CSV_HEADER):
        raise InpaintError(
            f"{path} line 1 is {lines[0] if lines else ''!r}, not the header '{CSV_HEADER}' of Kaggle's "
            f"{PARTITION_CSV}. Replace the file with the original: {_layout(layout.root)}"
        )
    splits: dict[str, list[str]] = {"0": [], "1": [], "2": []}
    for number, line in enumerate(lines[1:] if csv else lines, start=2 if csv else 1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")] if csv else line.split()
        if len(fields) != 2 or fields[1] not in splits or not fields[0]:
            raise InpaintError(
                f"{path} line {number} is malformed: {line!r}; expected '<image>.jpg{sep}<0|1|2>' as in {source}. "
                f"Replace the file with the original: {_layout(layout.root)}"
            )
        splits[fields[1]].append(fields[0])
    listed = [name for names in splits.values() for name in names]
    twice = sorted(name for name, count in Counter(listed).items() if count > 1)
    if twice:
        raise InpaintError(
            f"{path} lists images more than once ({len(twice)} of them, first: {', '.join(twice[:5])}), so the "
            f"splits would overlap. Replace the file with the original: {_layout(layout.root)}"
        )
    missing = sorted(set(listed) - set(os.listdir(layout.images)))
    if missing:
        raise InpaintError(
            f"{len(missing)} of the {len(listed)} images listed in {path} are missing from "
            f"{layout.images}/ (first: {', '.join(missing[:5])}). Re-extract the archive so the .jpg "
            f"files sit directly in that folder: {_layout(layout.root)}"
        )
    for split_id, names in splits.items():
        if not names:
            raise InpaintError(
                f"{path} lists no images of the {SPLIT_NAMES[split_id]} split ({split_id}): "
                f"use the original partition file. {_layout(layout.root)}"
            )
        names.sort()
    return splits


def _first(names: list[str], size: int | None, what: str, where: str) -> list[str]:
    """The first ``size`` of ``names`` (all of them for None), which ``where`` describes."""
    if size is None:
        return names
    if not 1 <= size <= len(names):
        raise InpaintError(f"{what}={size} but {where} has {len(names)} images: choose 1 <= {what} <= {len(names)}.")
    return names[:size]


def select_splits(
    splits: dict[str, list[str]],
    holdout: Holdout,
    holdout_size: int | None,
    val_size: int | None,
    train_size: int | None,
    partition: Path,
) -> dict[str, list[str]]:
    """File names of train, val and holdout from the official splits (see :class:`CelebADataModule`);
    ``holdout`` is "test" or "authors"."""
    train, train_where = splits["0"], "CelebA's train split"
    held, held_where = splits["2"], "CelebA's test split"
    if holdout == "authors":
        absent = sorted(set(AUTHORS_HOLDOUT) - set(train))
        if absent:
            raise InpaintError(
                f"data.holdout=authors needs images 120000.jpg ... 120999.jpg in CelebA's train split, but "
                f"{partition} does not list {len(absent)} of them there (first: {', '.join(absent[:5])}): "
                f"use the original partition file, or data.holdout=test."
            )
        excluded = set(AUTHORS_HOLDOUT)
        train = [name for name in train if name not in excluded]
        train_where = "CelebA's train split less the authors' holdout"
        held, held_where = list(AUTHORS_HOLDOUT), "the authors' holdout (120000.jpg ... 120999.jpg)"
    return {
        "train": _first(train, train_size, "train_size", train_where),
        "val": _first(splits["1"], val_size, "val_size", "CelebA's valid split"),
        "holdout": _first(held, holdout_size, "holdout_size", held_where),
    }


class CelebADataModule(ImageDataModule):
    """CelebA's official splits, each sorted by file name: train = 0 (optionally the first
    ``train_size``; the authors used the first 100,000), val = 1 (optionally the first
    ``val_size``), and the holdout by ``holdout``:

    - ``"test"``: the first ``holdout_size`` images of test = 2;
    - ``"authors"``: the paper's, the first ``holdout_size`` (at most 1000) of 120000.jpg ...
      120999.jpg, which lie in the train split; all 1000 leave train whatever ``holdout_size``
      is, so the training set does not depend on how many are analysed (``train_size`` then takes
      the first of the rest; null: 161,770 images).

    ``cache_dir``: where the decoded uint8 caches live (None decodes the JPEGs every time)."""

    def __init__(
        self,
        root: str,
        holdout_size: int = 1000,
        val_size: int | None = None,
        train_size: int | None = None,
        holdout: Holdout = "test",
        cache_dir: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if holdout not in ("test", "authors"):
            raise InpaintError(
                f"data.holdout={holdout!r}: choose 'test' (the first holdout_size images of CelebA's test split) "
                f"or 'authors' (the paper's: images 120000.jpg ... 120999.jpg of the train split)."
            )
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        self.layout = find_celeba(root)
        splits = read_partition(self.layout)
        self.names = select_splits(splits, holdout, holdout_size, val_size, train_size, self.layout.partition)

    def decoder(self, split: Split) -> CelebADataset:
        """The split read from its JPEG files."""
        return CelebADataset([self.layout.images / name for name in self.names[split]], self.image_size)

    def cache_path(self, split: Split) -> Path | None:
        """The split's cache folder, named by a hash of its image folder, images and size (None
        without a cache): another selection (sizes, holdout) is another file."""
        if self.cache_dir is None:
            return None
        names = self.names[split]
        key = hashlib.sha1(f"{self.layout.images.resolve()}|{self.image_size}|{','.join(names)}".encode()).hexdigest()
        return self.cache_dir / f"celeba_{split}_{self.image_size}px_{len(names)}_{key[:12]}"

    def prepare_data(self) -> None:
        """Build the decode caches (Lightning runs this on one process per node, before setup)."""
        for split in ("train", "val", "holdout"):
            if self.cache_dir is not None:
                build_cache(self.cache_path(split), self.decoder(split))

    def make_split(self, split: Split) -> Dataset:
        path = self.cache_path(split)
        if path is None:
            return self.decoder(split)
        return CachedImages(ImageCache(build_cache(path, self.decoder(split))))
